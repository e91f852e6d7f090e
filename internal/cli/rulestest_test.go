package cli

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestRulesTest runs rule unit tests from the command line: a passing
// fixture and a failing one, whose report is pinned line by line, exit 1.
func TestRulesTest(t *testing.T) {
	dir := "../rules/ruletest/testdata/"
	code, out, errOut := run("rules", "test", dir+"pass.yaml")
	if code != 0 || out != dir+"pass.yaml: 2 tests, 0 failed\n" || errOut != "" {
		t.Fatalf("pass.yaml: exit %d\n%s%s", code, out, errOut)
	}
	code, out, errOut = run("rules", "test", dir+"pass.yaml", dir+"fail.yaml")
	want := dir + `pass.yaml: 2 tests, 0 failed
` + dir + `fail.yaml:10: test "wrong expectations": rule "Exec into production": want 1 alert of severity medium, got 0; raised instead: severity high, auditIDs [e-1]
` + dir + `fail.yaml:10: test "wrong expectations": rule "Exec into production": 1 unexpected alert(s): severity high, auditIDs [e-1]
` + dir + `fail.yaml:12: test "wrong expectations": rule "Exec, attach or port-forward into a pod": want 2 alerts, got 1
` + dir + `fail.yaml:14: test "wrong expectations": rule "Secret read by a person": want 1 alert, got 0
` + dir + `fail.yaml:18: test "a rule that must not fire does": rule "Exec into production": 1 unexpected alert(s): severity high, auditIDs [e-1]
` + dir + `fail.yaml:25: test "one alert meets one expectation": rule "Exec into production": want 1 alert, got 0
` + dir + `fail.yaml: 4 tests, 3 failed
`
	if code != 1 || errOut != "" {
		t.Errorf("fail.yaml: exit %d, stderr %q; want 1 and nothing", code, errOut)
	}
	if d := cmp.Diff(want, out); d != "" {
		t.Errorf("report (-want +got):\n%s", d)
	}
}

// TestRulesTestBadFixture: a fixture that cannot run is named with its
// line on stderr, the other fixtures still run, and the exit status is 1.
func TestRulesTestBadFixture(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("tests:\n- name: x\n  evnts: []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pass := "../rules/ruletest/testdata/pass.yaml"
	code, out, errOut := run("rules", "test", bad, pass)
	if code != 1 || out != pass+": 2 tests, 0 failed\n" ||
		errOut != bad+":3:3: error: unknown key \"evnts\" (want one of alerts, events, events_file, name)\n" {
		t.Fatalf("exit %d\nstdout %q\nstderr %q", code, out, errOut)
	}
}
