package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestNamespaceFlags: -n NS answers as the filter ns=NS does, in query,
// stats and the investigations (from a data folder and through a
// server); -A is every namespace; both together is an error. Every
// command that shows namespaced events takes -n and -A, so a new one
// cannot forget them.
func TestNamespaceFlags(t *testing.T) {
	dir, url, tokenFile := serveIncident(t)
	same := func(a, b []string) {
		t.Helper()
		ca, oa, ea := run(a...)
		cb, ob, eb := run(b...)
		if ca != 0 || cb != 0 || oa != ob || oa == "" {
			t.Errorf("%v (exit %d, %s) and %v (exit %d, %s) differ:\n%s\n---\n%s", a, ca, ea, b, cb, eb, oa, ob)
		}
	}
	same([]string{"query", "-n", "production", "verb=delete", "--data", dir}, []string{"query", "ns=production verb=delete", "--data", dir})
	same([]string{"query", "-n", "production", "--count", "--server", url, "--token-file", tokenFile}, []string{"query", "ns=production", "--count", "--data", dir})
	same([]string{"stats", "-n", "production", "--by", "user", "--data", dir}, []string{"stats", "ns=production", "--by", "user", "--data", dir})
	same([]string{"secrets", "-n", "staging", "--data", dir}, []string{"secrets", "--where", "ns=staging", "--data", dir})
	same([]string{"timeline", "-n", "production", "--data", dir}, []string{"timeline", "--where", "ns=production", "--data", dir})
	same([]string{"query", "-A", "--count", "--data", dir}, []string{"query", "--count", "--data", dir})
	// detect: the store knows the cluster (prod), a log file does not.
	_, fromStore, _ := run("detect", "-n", "production", "--data", dir, "-o", "jsonl")
	_, fromFile, _ := run("detect", incidentLogIn(t, dir), "-n", "production", "-o", "jsonl")
	if fromStore == "" || strings.ReplaceAll(fromStore, `"cluster":"prod"`, `"cluster":"default"`) != fromFile || strings.Contains(fromStore, `"namespace":"staging"`) {
		t.Errorf("detect -n: from the store\n%s\nfrom the file\n%s", fromStore, fromFile)
	}
	if code, _, errOut := run("query", "-n", "a", "-A", "--data", dir); code == 0 || !strings.Contains(errOut, "choose one namespace or all") {
		t.Errorf("-n with -A: exit %d, %q", code, errOut)
	}
	// Every command that shows namespaced events takes -n and -A (who and
	// history take -n as the object's namespace).
	for _, name := range []string{"query", "stats", "timeline", "activity", "secrets", "execs", "denied", "rbac", "from", "detect"} {
		code, out, _ := run(name, "--help")
		if code != 0 || !strings.Contains(out, "-n, --namespace") || !strings.Contains(out, "-A, --all-namespaces") {
			t.Errorf("%s --help lacks -n/-A", name)
		}
	}
}

// incidentLogIn exports a data folder to a log file.
func incidentLogIn(t *testing.T, dir string) string {
	t.Helper()
	code, out, errOut := run("export", "--data", dir)
	if code != 0 {
		t.Fatalf("export: %s", errOut)
	}
	path := filepath.Join(t.TempDir(), "audit.log")
	if err := os.WriteFile(path, []byte(out), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
