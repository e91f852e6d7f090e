package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/kubetrail/kubetrail/internal/testenv"
)

// importCorpus builds kubetrail, writes a generated audit log of n events
// and imports it into a fresh data folder.
func importCorpus(t *testing.T, n, seed int) (bin, logPath, data string) {
	t.Helper()
	bin, err := buildOnce()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	logPath = filepath.Join(dir, "audit.log")
	corpus, err := exec.Command("go", "run", "../../bench/gen", "--events", fmt.Sprint(n), "--seed", fmt.Sprint(seed)).Output()
	if err != nil {
		t.Fatalf("bench/gen: %v", err)
	}
	if err := os.WriteFile(logPath, corpus, 0o644); err != nil {
		t.Fatal(err)
	}
	data = filepath.Join(dir, "data")
	if out, err := exec.Command(bin, "import", "--data", data, logPath).CombinedOutput(); err != nil {
		t.Fatalf("import: %v\n%s", err, out)
	}
	return bin, logPath, data
}

// TestQueryJQMatchesJQ is the seed's acceptance test for --jq: every seed
// question, run with `kubetrail query --jq` over an imported log, prints the
// same bytes, in the same order, as `jq -c` over the raw log (jq 1.6, the
// version the promise is made for: testenv.JQ checks it).
func TestQueryJQMatchesJQ(t *testing.T) {
	jqBin := testenv.JQ(t)
	bin, logPath, data := importCorpus(t, 20000, 3)
	type jqCase struct {
		prog  string
		extra []string
	}
	cases := []jqCase{
		{`select(.objectRef.resource == "secrets")`, nil},
		{`select(.user.username == "admin")`, nil},
		{`select(.responseStatus.code >= 400)`, nil},
		{`select(.objectRef.subresource == "exec")`, nil},
		{`select(.sourceIPs[] == "192.168.1.100")`, nil},
		{`select(.objectRef.resource | test("role"))`, nil},
		{`{user: .user.username, time: .requestReceivedTimestamp}`, nil},
		{`select(.objectRef.resource == "secrets") | {user: .user.username, verb: .verb, ns: .objectRef.namespace, name: .objectRef.name}`, nil},
		{`select(.verb == "delete" and .objectRef.resource == "secrets" and .objectRef.namespace == "production" and .objectRef.name == "important")`, nil},
		{`select(.objectRef.apiGroup == "rbac.authorization.k8s.io" and (.verb == "create" or .verb == "update" or .verb == "patch" or .verb == "delete"))`, nil},
		{`select(.responseStatus.code == 403) | .user.username`, []string{"-r"}},
		{`.`, nil},
	}
	// The same through a running server: the program runs on the client,
	// over the events the server selects, in the stored order.
	addr := freePort(t)
	var proc *serveProc
	remote := []jqCase{
		{`select(.objectRef.resource == "secrets") | {user: .user.username, verb: .verb, ns: .objectRef.namespace, name: .objectRef.name}`, []string{"--server", "http://" + addr}},
		{`select(.responseStatus.code == 403) | .user.username`, []string{"-r", "--server", "http://" + addr}},
	}
	for i, c := range append(cases, remote...) {
		if i == len(cases) {
			proc = startServe(t, bin, addr, data)
			defer func() { proc.cmd.Process.Kill(); proc.cmd.Wait() }()
		}
		args := append([]string{"query", "--jq", c.prog}, c.extra...)
		if i < len(cases) {
			args = append(args, "--data", data)
		}
		cmd := exec.Command(bin, args...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		have, err := cmd.Output()
		if err != nil {
			t.Fatalf("kubetrail %v: %v\n%s", args, err, stderr.Bytes())
		}
		jqArgs := []string{"-c"}
		if len(c.extra) > 0 && c.extra[0] == "-r" {
			jqArgs = append(jqArgs, "-r")
		}
		want, err := exec.Command(jqBin, append(jqArgs, c.prog, logPath)...).Output()
		if err != nil {
			t.Fatalf("jq %s: %v", c.prog, err)
		}
		if len(want) == 0 {
			t.Fatalf("jq prints nothing for %s: the corpus does not exercise it", c.prog)
		}
		if !bytes.Equal(have, want) {
			hl, wl := bytes.Split(have, []byte("\n")), bytes.Split(want, []byte("\n"))
			for i := range min(len(hl), len(wl)) {
				if !bytes.Equal(hl[i], wl[i]) {
					t.Fatalf("%s: line %d differs (kubetrail %d lines, jq %d):\n  kubetrail %s\n  jq        %s", c.prog, i+1, len(hl), len(wl), hl[i], wl[i])
				}
			}
			t.Fatalf("%s: kubetrail printed %d lines, jq %d", c.prog, len(hl), len(wl))
		}
		t.Logf("%-70.70s %6d lines identical %v", c.prog, bytes.Count(want, []byte("\n")), c.extra)
	}
}

// TestQueryJQRuntimeErrors: like jq, a runtime error skips the event and
// the run ends with status 5; the errors are reported, but not one line
// per stored event when the program fails on all of them.
func TestQueryJQRuntimeErrors(t *testing.T) {
	bin, _, data := importCorpus(t, 500, 4)
	cmd := exec.Command(bin, "query", "--data", data, "--jq", `if .verb == "get" then .verb else error("not a get") end`)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 5 {
		t.Fatalf("exit %v, want status 5; stderr:\n%s", err, stderr.Bytes())
	}
	gets := bytes.Count(stdout.Bytes(), []byte("\n"))
	count := func(filter string) int {
		out, err := exec.Command(bin, "query", "--data", data, "--count", filter).Output()
		if err != nil {
			t.Fatal(err)
		}
		var n int
		fmt.Sscan(string(out), &n)
		return n
	}
	if want := count("verb=get"); gets != want || gets == 0 {
		t.Fatalf("printed %d gets, the store holds %d", gets, want)
	}
	total := count("")
	lines := bytes.Split(bytes.TrimSpace(stderr.Bytes()), []byte("\n"))
	if len(lines) != 12 {
		t.Fatalf("%d lines on standard error, want 10 errors, a note and a total:\n%s", len(lines), stderr.Bytes())
	}
	if !bytes.Contains(lines[0], []byte("not a get")) || !bytes.Contains(lines[11], []byte(fmt.Sprintf("failed on %d events", total-gets))) {
		t.Fatalf("standard error:\n%s", stderr.Bytes())
	}
	// An error names the event it failed on by its audit ID.
	ids, err := exec.Command(bin, "query", "--data", data, "--jq", `select(.verb != "get") | .auditID`, "-r").Output()
	if err != nil {
		t.Fatal(err)
	}
	first, _, _ := bytes.Cut(ids, []byte("\n"))
	if len(first) == 0 || !bytes.Contains(lines[0], []byte("(event "+string(first)+" at ")) {
		t.Fatalf("the first error does not name audit ID %q: %s", first, lines[0])
	}
}
