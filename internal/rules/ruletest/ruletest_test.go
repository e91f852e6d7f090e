package ruletest

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestPass(t *testing.T) {
	rep, err := RunFile("testdata/pass.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if rep.Tests != 2 || rep.Failed != 0 || len(rep.Failures) != 0 {
		t.Fatalf("%+v", rep)
	}
}

// TestFail pins the report of a fixture whose expectations are wrong:
// each mismatch at the line of the expectation it breaks.
func TestFail(t *testing.T) {
	rep, err := RunFile("testdata/fail.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range rep.Failures {
		got = append(got, f.String())
	}
	want := []string{
		`testdata/fail.yaml:10: test "wrong expectations": rule "Exec into production": want 1 alert of severity medium, got 0; raised instead: severity high, auditIDs [e-1]`,
		`testdata/fail.yaml:10: test "wrong expectations": rule "Exec into production": 1 unexpected alert(s): severity high, auditIDs [e-1]`,
		`testdata/fail.yaml:12: test "wrong expectations": rule "Exec, attach or port-forward into a pod": want 2 alerts, got 1`,
		`testdata/fail.yaml:14: test "wrong expectations": rule "Secret read by a person": want 1 alert, got 0`,
		`testdata/fail.yaml:18: test "a rule that must not fire does": rule "Exec into production": 1 unexpected alert(s): severity high, auditIDs [e-1]`,
		`testdata/fail.yaml:25: test "one alert meets one expectation": rule "Exec into production": want 1 alert, got 0`,
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("failures (-want +got):\n%s", d)
	}
	if rep.Tests != 4 || rep.Failed != 3 {
		t.Errorf("%d tests, %d failed; want 4, 3", rep.Tests, rep.Failed)
	}
}

// TestBadFixtures: a fixture that cannot run says where and why.
func TestBadFixtures(t *testing.T) {
	const ev = `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"x","stage":"ResponseComplete","requestURI":"/api","verb":"get","user":{"username":"a"},"requestReceivedTimestamp":"2026-03-01T10:00:00Z","stageTimestamp":"2026-03-01T10:00:00Z"}`
	f := func(fixture, want string) {
		t.Helper()
		_, err := Run("testdata/bad.yaml", []byte(fixture))
		if err == nil || err.Error() != want {
			t.Errorf("%s\ngot error  %v\nwant error %s", fixture, err, want)
		}
	}
	f("tests:\n- name: x\n  event: {}\n", `testdata/bad.yaml:3:3: error: unknown key "event" (want one of alerts, events, events_file, name)`)
	f("tests:\n- name: x\n  events: |\n    "+ev+"\n  alerts:\n  - rule: No such rule\n", `testdata/bad.yaml:6:5: error: test "x": no loaded rule is named "No such rule"`)
	f("tests:\n- name: x\n  events: |\n    "+ev+"\n    {\"kind\":\n  alerts: []\n", `testdata/bad.yaml:5: error: `+badLine(t))
	f("tests:\n- name: x\n  alerts: []\n", `testdata/bad.yaml:2:3: error: test "x": no events (events: JSON lines, or events_file: a path)`)
	f("tests:\n- name: x\n  events_file: missing.jsonl\n  alerts: []\n", `testdata/bad.yaml:3:16: error: test "x": open testdata/missing.jsonl: no such file or directory`)
	f("tests:\n- name: x\n  events: |\n    "+ev+"\n  alerts:\n  - rule: Permission enumeration\n    severity: urgent\n", `testdata/bad.yaml:7:15: error: severity "urgent": want one of info, low, medium, high, critical`)
	f("rules: [events.jsonl]\ntests:\n- events: |\n    "+ev+"\n  alerts: []\n", `testdata/events.jsonl: error: not a rule file: neither kubetrail rules (a list of - name: ... condition: ...), a Sigma rule (title, logsource, detection) nor a Falco rules file (- rule:, - macro:, - list:)`)
	f("rules: []\ntests: []\n", `testdata/bad.yaml:1:8: error: rules: want a list of rule files or folders (or builtin, the built-in pack)`)
	f("tests:\n- name: x\n  events: [\n", `testdata/bad.yaml:3: error: line 3: did not find expected node content`)
	// A key written twice is an error, not the last one kept.
	f("tests:\n- name: x\n  events: |\n    "+ev+"\n  alerts: []\n  alerts:\n  - rule: Permission enumeration\n",
		`testdata/bad.yaml:6:3: error: key "alerts" written twice (first at line 5)`)
	f("tests:\n- name: x\n  events: |\n    "+ev+"\n  alerts:\n  - rule: Permission enumeration\n    count: 1\n    count: 2\n",
		`testdata/bad.yaml:8:5: error: key "count" written twice (first at line 7)`)
	f("tests:\n- name: x\n  events: |\n    "+ev+"\n  alerts: []\ntests: []\n", `testdata/bad.yaml:6:1: error: key "tests" written twice (first at line 1)`)
	f("- a\n", `testdata/bad.yaml: error: a rule test file is a mapping with rules and tests (docs/detection.md, "Testing your rules")`)
}

// badLine is what the audit decoder says of a cut JSON line.
func badLine(t *testing.T) string {
	t.Helper()
	_, err := Run("testdata/bad.yaml", []byte("tests:\n- events: |\n    {\"kind\":\n  alerts: []\n"))
	if err == nil {
		t.Fatal("a cut event line is not an error")
	}
	_, msg, _ := strings.Cut(err.Error(), "error: ")
	return msg
}
