package cli

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestDetectMemberKeyRandomLog: over a random log of users and groups
// named alike (unicode, escapes, the column's separator, the empty
// group), with runs that expire, rules keyed by member in a later step,
// in step 0 and in a threshold alert the same from the log and from a
// store: detect --data's shortcuts (native.mayBeMember, StoredUser) are
// exact.
func TestDetectMemberKeyRandomLog(t *testing.T) {
	dir := t.TempDir()
	rulesFile := filepath.Join(dir, "rules.yaml")
	if err := os.WriteFile(rulesFile, []byte(`
- name: Granted then changed
  severity: high
  sequence:
    within: 2m
    by: user
    steps:
    - condition: resource=clusterrolebindings verb=create
      by: subject
    - condition: verb=delete
      by: member
    - condition: verb=get resource=secrets
      by: member
- name: Member denied then deleted
  severity: medium
  sequence:
    within: 90s
    by: member
    steps:
    - condition: code=403
    - condition: verb=delete
- name: Member burst
  severity: low
  condition: verb=delete
  threshold: {count: 2, window: 10m, by: [member]}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	for seed := range uint64(6) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { detectRandomLog(t, rulesFile, seed) })
	}
}

func detectRandomLog(t *testing.T, rulesFile string, seed uint64) {
	dir := t.TempDir()
	names := []string{"alice", "bob", "devs", "ops", "", "ops\x1fteam", "é\"q\\", "system:authenticated", "ALICE", "ops team"}
	rng := rand.New(rand.NewPCG(seed, 4))
	at := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	var lines []string
	for n := range 600 {
		at = at.Add(time.Duration(rng.IntN(20)) * time.Second)
		ts := at.Add(-time.Duration(rng.IntN(3)) * time.Second).Format("2006-01-02T15:04:05.000000Z")
		user := names[rng.IntN(len(names))]
		var groups []string
		switch k := rng.IntN(5); k {
		case 0:
		case 1:
			groups = []string{}
		default:
			for range k {
				groups = append(groups, names[rng.IntN(len(names))])
			}
		}
		u, _ := json.Marshal(user)
		g, _ := json.Marshal(groups)
		verb, resource, code, req, level := "delete", "pods", 200, "", "Metadata"
		switch rng.IntN(6) {
		case 0:
			subj := names[rng.IntN(len(names))]
			kind := []string{"User", "Group"}[rng.IntN(2)]
			s, _ := json.Marshal(subj)
			verb, resource, level = "create", "clusterrolebindings", "Request"
			req = `,"requestObject":{"kind":"ClusterRoleBinding","subjects":[{"kind":"` + kind + `","name":` + string(s) + `}],"roleRef":{"kind":"ClusterRole","name":"cluster-admin"}}`
		case 1:
			verb, resource = "get", "secrets"
		case 2:
			code = 403
			verb = "list"
		}
		userObj := `{"username":` + string(u) + `,"groups":` + string(g) + `}`
		if groups == nil {
			userObj = `{"username":` + string(u) + `}`
		}
		lines = append(lines, `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"`+level+`","auditID":"id-`+fmt.Sprint(n)+
			`","stage":"ResponseComplete","requestURI":"/x","verb":"`+verb+`","user":`+userObj+
			`,"sourceIPs":["10.0.0.1"],"objectRef":{"resource":"`+resource+`","namespace":"prod","name":"n","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":`+fmt.Sprint(code)+
			`},"requestReceivedTimestamp":"`+ts+`","stageTimestamp":"`+ts+`"`+req+`}`)
	}
	log := filepath.Join(dir, "random.log")
	if err := os.WriteFile(log, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := run("detect", "--rules", rulesFile, log, "-o", "jsonl")
	if code != 0 {
		t.Fatalf("detect FILE: exit %d: %s", code, errOut)
	}
	want := alertLines(t, out)
	slices.Sort(want)
	for _, r := range []string{"Granted then changed", "Member denied then deleted", "Member burst"} {
		if !slices.ContainsFunc(want, func(a string) bool { return strings.HasPrefix(a, r+" ") }) {
			t.Fatalf("the log raises no %q: the test is too weak (%d alerts)", r, len(want))
		}
	}
	for _, format := range []string{"4", "5"} {
		data := filepath.Join(dir, "data"+format)
		if code, _, errOut := run("import", "--data", data, "--segment-format", format, log); code != 0 {
			t.Fatalf("import: %s", errOut)
		}
		code, out, errOut = run("detect", "--rules", rulesFile, "--data", data, "-o", "jsonl")
		if code != 0 {
			t.Fatalf("detect --data: exit %d: %s", code, errOut)
		}
		got := alertLines(t, out)
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Fatalf("v%s: detect --data gives %d alerts, detect FILE %d:\n%q\n%q", format, len(got), len(want), got, want)
		}
	}
}
