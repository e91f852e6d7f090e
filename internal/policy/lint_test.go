package policy

import (
	"strings"
	"testing"

	"github.com/kubetrail/kubetrail/internal/policy/profiles"
)

func lintCodes(t *testing.T, src string) map[string][]Finding {
	t.Helper()
	p, err := Load("test.yaml", []byte(src))
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	got := map[string][]Finding{}
	for _, f := range Lint(p) {
		got[f.Code] = append(got[f.Code], f)
	}
	return got
}

func TestLintSeedMistakes(t *testing.T) {
	// The walkthrough policy: secrets at RequestResponse, no pods/exec rule,
	// everything else at Metadata.
	got := lintCodes(t, `apiVersion: audit.k8s.io/v1
kind: Policy
rules:
- level: RequestResponse
  resources:
  - group: ""
    resources: ["secrets"]
- level: Metadata
`)
	if f := got["secrets-above-metadata"]; len(f) != 1 || f[0].Severity != SevError || f[0].Rule != 0 || f[0].Line != 4 {
		t.Errorf("secrets-above-metadata: %+v", f)
	}
	if f := got["exec-not-covered"]; len(f) != 3 || f[0].Rule != 1 {
		t.Errorf("exec-not-covered: %+v", f)
	}
	if len(got["rbac-writes-below-request"]) != 4 || len(got["request-received-logged"]) != 1 || len(got["health-checks-logged"]) != 1 {
		t.Errorf("findings: %+v", got)
	}
}

func TestLintRuleShapes(t *testing.T) {
	got := lintCodes(t, `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: RequestResponse
  verbs: ["*"]
  resources:
  - group: ""
    resources: ["deployments", "pods/exec", "pods/attach", "pods/portforward"]
- level: Metadata
  verbs: ["list", "create"]
  resources:
  - group: ""
    resources: ["configmaps"]
    resourceNames: ["app-config"]
- level: Metadata
- level: RequestResponse
  resources:
  - group: "rbac.authorization.k8s.io"
`)
	want := map[string]int{"star-verb": 0, "resource-without-group": 0, "resourcenames-without-name": 1, "unreachable-rule": 3}
	for code, rule := range want {
		if f := got[code]; len(f) != 1 || f[0].Rule != rule {
			t.Errorf("%s: %+v, want one finding on rule %d", code, f, rule)
		}
	}
	if f := got["resource-without-group"]; len(f) == 1 && !strings.Contains(f[0].Fix, `"apps"`) {
		t.Errorf("fix should name the group: %+v", f)
	}
	// "*" never matches, so exec is not covered: rule 2 (the catch-all) decides.
	if f := got["exec-not-covered"]; len(f) != 3 || f[0].Rule != 2 {
		t.Errorf("exec-not-covered: %+v", f)
	}
	if len(got["no-catch-all"]) != 0 || len(got["request-received-logged"]) != 0 {
		t.Errorf("unexpected: %+v", got)
	}
	got = lintCodes(t, "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n  verbs: [get]\n")
	if len(got["no-catch-all"]) != 1 {
		t.Errorf("no-catch-all: %+v", got)
	}
}

// TestProfilesLintClean: every profile kubetrail writes passes its own
// check without errors or warnings.
func TestProfilesLintClean(t *testing.T) {
	for _, name := range profiles.Names {
		src, err := profiles.Get(name)
		if err != nil {
			t.Fatal(err)
		}
		p, err := Load(name+".yaml", src)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, f := range Lint(p) {
			if f.Severity != SevInfo {
				t.Errorf("%s: %s rule %d (line %d): %s", name, f.Code, f.Rule, f.Line, f.Message)
			}
		}
	}
}
