package cli

import (
	"bytes"
	"io"
	"strings"
	"testing"
)

// TestOneCommandBuildsOne checks the lean start: a process whose first
// argument names a command builds that command alone (and --version
// none), each topCommands entry builds the command its name says, and
// anything else (help, a flag first, a typo) gets every command.
// (Mutations tried: the "query" entry building statsCmd fails the names
// check; wanted returning ("", false) always fails the lean counts.)
func TestOneCommandBuildsOne(t *testing.T) {
	e := &env{stdin: strings.NewReader(""), stdout: io.Discard, stderr: io.Discard}
	for _, c := range topCommands {
		if got := c.build(e).Name(); got != c.name {
			t.Errorf("topCommands entry %q builds command %q", c.name, got)
		}
	}
	f := func(args []string, want ...string) {
		t.Helper()
		var got []string
		for _, c := range newRoot(e, args).Commands() {
			got = append(got, c.Name())
		}
		if want == nil {
			if len(got) != len(topCommands) {
				t.Errorf("%q builds %d commands, want all %d", args, len(got), len(topCommands))
			}
			return
		}
		if strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("%q builds %q, want %q", args, got, want)
		}
	}
	f([]string{"--version"}, []string{}...)
	f([]string{"query", "--count", "verb=get"}, "query")
	f([]string{"version"}, "version")
	f([]string{"policy", "check", "x.yaml"}, "policy")
	f(nil)
	f([]string{"--help"})
	f([]string{"help", "query"})
	f([]string{"--log-level", "debug", "query"})
	f([]string{"quer"})
	f([]string{"--version", "query"})
}

// TestLeanStartAnswersAsBefore runs what a lean tree answers: the version
// flag, a command's help, and the full tree's typo suggestion; Main's own
// --version answer is cobra's; the completion command is left out of lean
// trees only. (Mutations tried: Main printing the version without its
// newline; DisableDefaultCmd always true, then always false: each fails.)
func TestLeanStartAnswersAsBefore(t *testing.T) {
	run := func(args ...string) (string, int) {
		var out bytes.Buffer
		code := Main(args, strings.NewReader(""), &out, &out)
		return out.String(), code
	}
	if out, code := run("--version"); code != 0 || !strings.HasPrefix(out, "kubetrail ") {
		t.Errorf("--version: exit %d, %q", code, out)
	}
	if v, _ := run("version"); v != func() string { s, _ := run("--version"); return s }() {
		t.Errorf("version and --version differ: %q", v)
	}
	if out, code := run("query", "--help"); code != 0 || !strings.Contains(out, "--log-level") {
		t.Errorf("query --help: exit %d, lacks the root's --log-level:\n%s", code, out)
	}
	if out, code := run("quer"); code == 0 || !strings.Contains(out, "query") {
		t.Errorf("quer: exit %d, no suggestion:\n%s", code, out)
	}
	// Main answers --version without cobra: it must print what cobra's
	// --version flag prints.
	for _, flag := range []string{"--version", "-v"} {
		var viaCobra bytes.Buffer
		e := &env{stdin: strings.NewReader(""), stdout: &viaCobra, stderr: &viaCobra}
		if code := execute(e, newRoot(e, []string{flag})); code != 0 {
			t.Fatalf("cobra's %s: exit %d", flag, code)
		}
		if got, _ := run(flag); got != viaCobra.String() {
			t.Errorf("Main(%s) prints %q, cobra's flag %q", flag, got, viaCobra.String())
		}
	}
	// A lean tree has no completion command; the full one still does.
	if out, code := run("completion", "bash"); code != 0 || !strings.Contains(out, "bash completion") {
		t.Errorf("completion bash: exit %d:\n%.200s", code, out)
	}
	e := &env{stdin: strings.NewReader(""), stdout: io.Discard, stderr: io.Discard}
	lean := newRoot(e, []string{"query", "--count"})
	if !lean.CompletionOptions.DisableDefaultCmd {
		t.Errorf("query's lean tree builds cobra's completion command")
	}
}
