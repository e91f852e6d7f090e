package policy

import (
	"strings"
	"testing"
)

func TestDiff(t *testing.T) {
	load := func(src string) *Policy {
		p, err := Load("p.yaml", []byte("apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\n"+src))
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	a := load(`rules:
- level: Metadata
`)
	b := load(`rules:
- level: RequestResponse
  resources:
  - group: ""
    resources: ["pods/exec"]
- level: None
  users: ["system:kube-proxy"]
  verbs: ["watch"]
- level: Metadata
`)
	diffs := Diff(a, b)
	var lines []string
	for _, d := range diffs {
		lines = append(lines, d.String())
	}
	all := strings.Join(lines, "\n")
	// exec: every user, namespace and name, every verb.
	for _, want := range []string{
		"create pods/exec by user *: Metadata (rule 0) -> RequestResponse (rule 0)",
		"get pods/exec by user *: Metadata (rule 0) -> RequestResponse (rule 0)",
		"watch other by user system:kube-proxy: Metadata (rule 0) -> None (rule 1)",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("missing %q in:\n%s", want, all)
		}
	}
	// Identical policies: no difference.
	if d := Diff(a, a); len(d) != 0 {
		t.Errorf("a policy differs from itself: %v", d)
	}
	// No difference for what both log alike.
	if strings.Contains(all, "get secrets") {
		t.Errorf("secrets are logged alike:\n%s", all)
	}
}
