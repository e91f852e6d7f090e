package cli

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/kubetrail/kubetrail/internal/investigate/investigatetest"
	"github.com/kubetrail/kubetrail/internal/store/local"
)

// incidentLog writes the recorded incident as an audit log file.
func incidentLog(t *testing.T) string {
	t.Helper()
	recs, err := investigatetest.Records(investigatetest.Incident())
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, r := range recs {
		b.Write(r.Raw)
		b.WriteByte('\n')
	}
	path := filepath.Join(t.TempDir(), "audit.log")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// alertLines parses detect -o jsonl, checking the contract's fields.
func alertLines(t *testing.T, out string) []string {
	t.Helper()
	var got []string
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var a map[string]any
		if err := json.Unmarshal(sc.Bytes(), &a); err != nil {
			t.Fatalf("not JSON: %q", sc.Text())
		}
		for _, k := range []string{"rule", "severity", "source", "auditIDs", "user", "message", "time"} {
			if _, ok := a[k]; !ok {
				t.Fatalf("alert without %q: %s", k, sc.Text())
			}
		}
		if !slices.Contains([]string{"info", "low", "medium", "high", "critical"}, a["severity"].(string)) {
			t.Fatalf("severity %v", a["severity"])
		}
		ids := a["auditIDs"].([]any)
		got = append(got, a["rule"].(string)+" "+a["user"].(string)+" "+ids[len(ids)-1].(string))
	}
	return got
}

// TestDetectIncident runs the built-in pack over the recorded incident,
// from the log file and from a data folder holding it: the same alerts,
// each named; the exec over WebSocket (logged at two stages) alerts once.
func TestDetectIncident(t *testing.T) {
	log := incidentLog(t)
	code, out, errOut := run("detect", log, "-o", "jsonl")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	got := alertLines(t, out)
	// Alerts about namespaced objects name the namespace (Alertmanager's
	// namespace label); the incident reads secrets in one.
	if !strings.Contains(out, `"namespace":"`) {
		t.Errorf("no alert names a namespace:\n%s", out)
	}
	var rules []string
	for _, g := range got {
		rules = append(rules, strings.SplitN(g, " ", 2)[0])
	}
	want := map[string]int{
		"Secret read by a person":                 2, // alice, eve
		"Exec, attach or port-forward into a pod": 4, // WebSocket once, SPDY, port-forward, attach
		"Binding to cluster-admin":                1,
		"Powerful ClusterRole written":            1,
	}
	count := map[string]int{}
	for _, g := range got {
		for r := range want {
			if strings.HasPrefix(g, r+" ") {
				count[r]++
			}
		}
	}
	for r, n := range want {
		if count[r] != n {
			t.Errorf("%s: %d alerts, want %d; all:\n%s", r, count[r], n, strings.Join(got, "\n"))
		}
	}
	if len(got) != 8 {
		t.Errorf("%d alerts, want 8:\n%s", len(got), strings.Join(got, "\n"))
	}
	if !slices.Contains(got, "Exec, attach or port-forward into a pod admin exec-ws") {
		t.Errorf("the exec over WebSocket is not alerted by its audit ID:\n%s", strings.Join(got, "\n"))
	}

	data := filepath.Join(t.TempDir(), "data")
	if code, _, errOut := run("import", "--data", data, log); code != 0 {
		t.Fatalf("import: %s", errOut)
	}
	code, out2, errOut := run("detect", "--data", data, "-o", "jsonl")
	if code != 0 {
		t.Fatalf("detect --data: exit %d: %s", code, errOut)
	}
	if got2 := alertLines(t, out2); !slices.Equal(got2, got) {
		t.Errorf("detect --data gives\n%s\nand detect FILE\n%s", strings.Join(got2, "\n"), strings.Join(got, "\n"))
	}

	// -o falco: Falco's own alert shape.
	code, out, _ = run("detect", log, "-o", "falco")
	first := strings.SplitN(out, "\n", 2)[0]
	var fa map[string]any
	if code != 0 || json.Unmarshal([]byte(first), &fa) != nil || fa["priority"] == nil || fa["output_fields"] == nil || fa["rule"] == nil || fa["output"] == nil {
		t.Errorf("-o falco: %q", first)
	}
}

// TestDetectInputs: a file that holds no audit event is named on stderr;
// a rule file with an error stops detect and rules check with
// FILE:LINE:COL; rules check passes the real rule sets with warnings only.
func TestDetectInputs(t *testing.T) {
	junk := filepath.Join(t.TempDir(), "notes.txt")
	os.WriteFile(junk, []byte("hello\nworld\n"), 0o600)
	code, _, errOut := run("detect", junk)
	if code != 0 || !strings.Contains(errOut, "notes.txt: holds no audit event") {
		t.Errorf("a file without events: exit %d, %q", code, errOut)
	}
	bad := filepath.Join(t.TempDir(), "mine.yaml")
	os.WriteFile(bad, []byte("- name: x\n  condition: verb=get usr=alice\n"), 0o600)
	code, _, errOut = run("detect", "--rules", bad, incidentLog(t))
	if code != 1 || !strings.Contains(errOut, "mine.yaml:2:23: error: condition: unknown field \"usr\"") {
		t.Errorf("a bad rule file: exit %d, %q", code, errOut)
	}
	code, out, _ := run("rules", "check", bad)
	if code != 1 || !strings.Contains(out, "mine.yaml:2:23: error") {
		t.Errorf("rules check of a bad file: exit %d, %q", code, out)
	}
}

// TestRulesCheckBuiltin: a file that tunes a built-in rule by name loads
// with detect --builtin, so rules check --builtin passes it; without the
// pack the rule it names is not there, and check says so (exit 1), as
// detect --rules FILE does.
// Mutation it catches: rules check loading without the pack whatever its
// flags (it then failed every tuning file, which detect runs).
func TestRulesCheckBuiltin(t *testing.T) {
	tune := filepath.Join(t.TempDir(), "tune.yaml")
	os.WriteFile(tune, []byte("- name: Secret read by a person\n  except: user in (ci-deployer)\n"), 0o600)
	code, out, errOut := run("rules", "check", "--builtin", tune)
	if code != 0 || strings.Contains(out, "error") || !strings.Contains(errOut, "0 errors") {
		t.Errorf("rules check --builtin of a tuning file: exit %d, %q, %q", code, out, errOut)
	}
	code, out, _ = run("rules", "check", tune)
	if code != 1 || !strings.Contains(out, `tune.yaml:1:9: error: no rule named "Secret read by a person"`) {
		t.Errorf("rules check of a tuning file without the pack: exit %d, %q", code, out)
	}
}

// TestDetectFileDuplicates: an event given twice (a log file named twice,
// rotated files that overlap) is evaluated once, as import stores it once,
// so detect FILE and detect --data after import give the same alerts.
// Before, the copy raised Binding to cluster-admin again and, as a second
// "change" by the user the binding names, Changes by a user just granted
// a powerful role with the auditIDs [b1 b1].
// Mutation it catches: evaluating every record read.
func TestDetectFileDuplicates(t *testing.T) {
	line := `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Request","auditID":"b1","stage":"ResponseComplete","requestURI":"/apis/rbac.authorization.k8s.io/v1/clusterrolebindings","verb":"create","user":{"username":"mallory"},"sourceIPs":["10.0.0.9"],"objectRef":{"resource":"clusterrolebindings","name":"pwn","apiGroup":"rbac.authorization.k8s.io","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":201},"requestObject":{"kind":"ClusterRoleBinding","subjects":[{"kind":"User","name":"mallory"}],"roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"cluster-admin"}},"requestReceivedTimestamp":"2026-12-01T10:00:00.000000Z","stageTimestamp":"2026-12-01T10:00:00.100000Z"}` + "\n"
	dir := t.TempDir()
	a, b := filepath.Join(dir, "audit-1.log"), filepath.Join(dir, "audit.log")
	os.WriteFile(a, []byte(line), 0o600)
	os.WriteFile(b, []byte(line+line), 0o600)
	code, out, errOut := run("detect", a, b, "-o", "jsonl")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if got := alertLines(t, out); !slices.Equal(got, []string{"Binding to cluster-admin mallory b1"}) {
		t.Errorf("one event given three times raised:\n%s", strings.Join(got, "\n"))
	}
}

// TestSeenEventsForgetsTheOldest: the memory of events read is bounded;
// past it the oldest key is forgotten first.
func TestSeenEventsForgetsTheOldest(t *testing.T) {
	s := newSeenEvents(2)
	k := func(b byte) local.Key { return local.Key{b} }
	if !s.add(k(1)) || !s.add(k(2)) || s.add(k(1)) || s.add(k(2)) {
		t.Fatal("a key within the bound was not remembered")
	}
	if !s.add(k(3)) || !s.add(k(1)) || s.add(k(3)) {
		t.Fatal("past the bound, the oldest key was not the one forgotten")
	}
	if len(s.set) != 2 {
		t.Fatalf("%d keys held, bound 2", len(s.set))
	}
}

// TestDetectMemberKeyOverStore: a sequence keyed by member (a binding's
// subjects, then a change by that user or a member of that group) alerts
// the same from the log and from a store, where the change step reads
// neither the event nor its groups unless its user or one of the groups
// column's values has a run under way (native.mayBeMember). The groups
// column joins groups by a control byte, so it splits a group holding one
// in two and reads [""] as []: carol, in the group "ops\x1fteam" a binding
// named, and frank, in the group "", must alert; erin, in "ops" and "team",
// and gina, in none, must not.
// Mutations it catches: ignoring keys that are empty or hold a control
// byte (carol is missed over the store); ruling out by the groups column
// alone (bob) or by the user column alone (alice, alerted by her group).
func TestDetectMemberKeyOverStore(t *testing.T) {
	dir := t.TempDir()
	rulesFile := filepath.Join(dir, "rules.yaml")
	if err := os.WriteFile(rulesFile, []byte(`
- name: Granted then changed
  severity: high
  sequence:
    within: 30m
    by: user
    steps:
    - condition: resource=clusterrolebindings verb=create
      by: subject
    - condition: verb=delete
      by: member
`), 0o600); err != nil {
		t.Fatal(err)
	}
	n := 0
	line := func(user string, groups []string, verb, resource, name string, body string) string {
		n++
		g, _ := json.Marshal(groups)
		u, _ := json.Marshal(user)
		nm, _ := json.Marshal(name)
		ts := "2026-11-23T10:00:" + fmt.Sprintf("%02d", n) + ".000000Z"
		level, req := "Metadata", ""
		if body != "" {
			level, req = "Request", `,"requestObject":`+body
		}
		return `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"` + level + `","auditID":"id-` + strconv.Itoa(n) +
			`","stage":"ResponseComplete","requestURI":"/x","verb":"` + verb + `","user":{"username":` + string(u) + `,"groups":` + string(g) +
			`},"sourceIPs":["10.0.0.1"],"objectRef":{"resource":"` + resource + `","namespace":"prod","name":` + string(nm) +
			`,"apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"` + ts + `","stageTimestamp":"` + ts + `"` + req + `}`
	}
	binding := func(kind, name string) string {
		nm, _ := json.Marshal(name)
		return line("admin", []string{"system:masters"}, "create", "clusterrolebindings", "b", `{"kind":"ClusterRoleBinding","subjects":[{"kind":"`+kind+`","name":`+string(nm)+`}],"roleRef":{"kind":"ClusterRole","name":"cluster-admin"}}`)
	}
	check := func(name string, lines []string, want []string) {
		t.Helper()
		log := filepath.Join(dir, name+".log")
		if err := os.WriteFile(log, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		code, out, errOut := run("detect", "--rules", rulesFile, log, "-o", "jsonl")
		if code != 0 {
			t.Fatalf("%s: detect FILE: exit %d: %s", name, code, errOut)
		}
		got := alertLines(t, out)
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Fatalf("%s: detect FILE alerts %q, want %q", name, got, want)
		}
		data := filepath.Join(dir, name)
		if code, _, errOut := run("import", "--data", data, log); code != 0 {
			t.Fatalf("%s: import: %s", name, errOut)
		}
		code, out, errOut = run("detect", "--rules", rulesFile, "--data", data, "-o", "jsonl")
		if code != 0 {
			t.Fatalf("%s: detect --data: exit %d: %s", name, code, errOut)
		}
		got = alertLines(t, out)
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Fatalf("%s: detect --data alerts %q, want %q", name, got, want)
		}
	}
	// Keys the column decides: a user, a group among others.
	check("plain", []string{
		binding("Group", "devs"), binding("User", "bob"),
		line("alice", []string{"system:authenticated", "devs"}, "delete", "pods", "a", ""),
		line("bob", []string{"system:authenticated"}, "delete", "pods", "b", ""),
		line("dave", []string{"other", "devs-not"}, "delete", "pods", "d", ""),
	}, []string{"Granted then changed alice id-3", "Granted then changed bob id-4"})
	// Keys it cannot: a group holding the separator, an empty group.
	check("odd", []string{
		binding("Group", "ops\x1fteam"), binding("Group", ""),
		line("erin", []string{"ops", "team"}, "delete", "pods", "e", ""),
		line("carol", []string{"ops\x1fteam"}, "delete", "pods", "c", ""),
		line("gina", nil, "delete", "pods", "g", ""),
		line("frank", []string{""}, "delete", "pods", "f", ""),
	}, []string{"Granted then changed carol id-9", "Granted then changed frank id-11"})
}
