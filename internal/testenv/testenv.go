// Package testenv lets tests ask for what the machine must provide (a tool,
// a privilege) and decides what a missing one means: a skip with the reason
// when a developer runs the tests by hand, a failure under CI (CI set in the
// environment), so that a broken CI machine cannot pass by skipping.
package testenv

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// JQVersion is what `jq --version` prints for the jq that kubetrail's --jq
// output is proven byte for byte against (docs/query.md, docs/adr/0004-jq.md).
// jq 1.7 prints numbers differently (it keeps a literal's digits), so a test
// that compares with any other jq proves nothing about the promise.
const JQVersion = "jq-1.6"

// Unavailable stops the test because the environment lacks something it
// needs: it fails under CI and skips otherwise. The message must say what is
// missing and how to get it.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv("CI") != "" {
		t.Fatalf("CI is set and the test environment is incomplete: %s", msg)
		return
	}
	t.Skip(msg)
}

// JQ returns the path of the jq on PATH after checking that it is
// JQVersion; any other jq, or none, is Unavailable.
func JQ(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("jq")
	if err != nil {
		Unavailable(t, "jq is not on PATH; the jq differential tests need %s (Debian 12: apt-get install jq)", JQVersion)
		return ""
	}
	out, err := exec.Command(p, "--version").Output()
	if err != nil {
		Unavailable(t, "%s --version: %v", p, err)
		return ""
	}
	if v := string(bytes.TrimSpace(out)); v != JQVersion {
		Unavailable(t, "%s is %s; kubetrail's --jq output is proven byte for byte against %s only (Debian 12's jq package)", p, v, JQVersion)
		return ""
	}
	return p
}

// SharedDir returns the project's shared folder, which holds the public
// rule sets the detection tests load unchanged (they are never copied into
// the repository): $KUBETRAIL_SHARED, else a folder "shared" holding
// rulesets beside the repository's clone (CI puts it there) or beside one
// of its parents (a git worktree in a folder of worktrees). Missing, it is
// Unavailable: a rule set that cannot be found must not pass for one that
// loads.
func SharedDir(t testing.TB) string {
	t.Helper()
	if d := os.Getenv("KUBETRAIL_SHARED"); d != "" {
		return d
	}
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		parent := filepath.Dir(dir)
		if parent == dir {
			Unavailable(t, "no folder shared/rulesets beside the repository or its parents; set KUBETRAIL_SHARED to the shared folder")
			return ""
		}
		dir = parent
		if st, err := os.Stat(filepath.Join(dir, "shared", "rulesets")); err == nil && st.IsDir() {
			return filepath.Join(dir, "shared")
		}
	}
}

// CPUTime is the CPU time the process has used so far, its own and the
// runtime's (user + system): on a machine others share it varies much
// less from run to run than the wall time a benchmark reports, so
// benchmarks report it per op beside the time.
func CPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
