package policy

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/kubetrail/kubetrail/internal/audit"

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

// TestCoversIsSound checks the symbolic subsumption behind
// unreachable-rule against the exact evaluator: whenever covers(a, b),
// every generated request b matches must match a too.
func TestCoversIsSound(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	pick := func(vals []string) []string {
		var out []string
		for _, v := range vals {
			if rng.IntN(3) == 0 {
				out = append(out, v)
			}
		}
		return out
	}
	users, groups, verbs := []string{"alice", "bob"}, []string{"dev", "ops"}, []string{"get", "list", "create", "*"}
	nss, grps := []string{"", "prod", "dev"}, []string{"", "apps", "*"}
	ress := []string{"pods", "pods/exec", "pods/*", "*/status", "*", "deployments", "secrets", "pods/status"}
	urls := []string{"/healthz", "/healthz*", "/api*", "/metrics"}
	genRule := func() Rule {
		r := Rule{Level: audit.LevelMetadata, Users: pick(users), UserGroups: pick(groups), Verbs: pick(verbs), Namespaces: pick(nss)}
		switch rng.IntN(3) {
		case 0:
			for k := 0; k < 1+rng.IntN(2); k++ {
				gr := GroupResources{Group: grps[rng.IntN(len(grps))], Resources: pick(ress)}
				if rng.IntN(4) == 0 {
					gr.ResourceNames = pick([]string{"a", "b"})
				}
				r.Resources = append(r.Resources, gr)
			}
		case 1:
			r.NonResourceURLs = pick(urls)
			r.Namespaces = nil
		}
		return r
	}
	var reqs []*Request
	for _, u := range []*UserInfo{nil, {Name: "alice", Groups: []string{"dev"}}, {Name: "bob", Groups: []string{"ops"}}, {Name: "carol"}} {
		for _, v := range []string{"get", "list", "create", "*", "delete"} {
			for _, g := range []string{"", "apps", "batch"} {
				for _, res := range []string{"pods", "deployments", "secrets", "nodes"} {
					for _, sub := range []string{"", "exec", "status"} {
						for _, ns := range []string{"", "prod", "dev"} {
							for _, name := range []string{"", "a", "c"} {
								reqs = append(reqs, &Request{User: u, Verb: v, APIGroup: g, Resource: res, Subresource: sub, Namespace: ns, Name: name, ResourceRequest: true})
							}
						}
					}
				}
			}
			for _, path := range []string{"/healthz", "/healthz/etcd", "/api", "/apis/apps", "/metrics"} {
				reqs = append(reqs, &Request{User: u, Verb: v, Path: path})
			}
		}
	}
	decided := 0
	for k := 0; k < 15000; k++ {
		a, b := genRule(), genRule()
		if !covers(&a, &b) {
			continue
		}
		decided++
		ea := NewEvaluator(&Policy{Rules: []Rule{a}})
		eb := NewEvaluator(&Policy{Rules: []Rule{b}})
		for _, r := range reqs {
			if eb.Evaluate(r).Rule == 0 && ea.Evaluate(r).Rule != 0 {
				t.Fatalf("covers(a, b) but a misses a request b matches:\na: %+v\nb: %+v\nrequest: %+v user %+v", a, b, r, r.User)
			}
		}
	}
	if decided < 300 {
		t.Errorf("only %d covering pairs in 15000: the generator needs work", decided)
	}
	t.Logf("%d covering pairs checked on %d requests each", decided, len(reqs))
}

func TestLintShadowedRule(t *testing.T) {
	got := lintCodes(t, `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: None
  users: ["system:kube-proxy"]
- level: RequestResponse
  users: ["system:kube-proxy"]
  verbs: ["watch"]
  resources:
  - group: ""
    resources: ["endpoints"]
- level: RequestResponse
  resources:
  - group: ""
    resources: ["pods/*"]
- level: Request
  verbs: ["create"]
  resources:
  - group: ""
    resources: ["pods/exec", "pods"]
- level: Metadata
`)
	f := got["unreachable-rule"]
	if len(f) != 2 || f[0].Rule != 1 || f[1].Rule != 3 || !strings.Contains(f[0].Message, "rule 0 above") || !strings.Contains(f[1].Message, "rule 2 above") {
		t.Errorf("unreachable-rule: %+v", f)
	}
}
