package policy

import (
	"strings"
	"testing"

	"github.com/kubetrail/kubetrail/internal/audit"
)

const explainPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  # 0: health checks
  - level: None
    nonResourceURLs: ["/healthz*"]
  # 1: the trap: "*" is literal in verbs
  - level: RequestResponse
    verbs: ["*"]
    resources:
      - group: ""
        resources: ["secrets"]
  # 2: the trap: deployments without group apps
  - level: Request
    resources:
      - resources: ["deployments"]
  # 3: pods/* covers pods/exec
  - level: RequestResponse
    omitManagedFields: true
    resources:
      - group: ""
        resources: ["pods/*"]

  # 4: only alice
  - level: Metadata
    users: ["alice"]
    namespaces: ["prod"]
`

func explain(t *testing.T, r *Request) *Explanation {
	t.Helper()
	p, err := Load("p.yaml", []byte(explainPolicy))
	if err != nil {
		t.Fatal(err)
	}
	x := Explain(p, []byte(explainPolicy), r)
	if want := NewEvaluator(p).Evaluate(r); x.Decision.Rule != want.Rule || x.Decision.Level != want.Level {
		t.Fatalf("decision %+v, evaluator says %+v", x.Decision, want)
	}
	return x
}

func missOf(t *testing.T, x *Explanation, rule int) Miss {
	t.Helper()
	for _, m := range x.Misses {
		if m.Rule == rule {
			return m
		}
	}
	t.Fatalf("no miss for rule %d in %+v", rule, x.Misses)
	return Miss{}
}

func TestExplainVerbsStar(t *testing.T) {
	bob := &UserInfo{Name: "bob"}
	x := explain(t, &Request{User: bob, Verb: "get", Resource: "secrets", Namespace: "prod", Name: "db", ResourceRequest: true})
	if x.Decision.Rule != -1 || x.Decision.Level != audit.LevelNone {
		t.Fatalf("decision %+v, want no match", x.Decision)
	}
	m := missOf(t, x, 1)
	if m.Criterion != "verbs" || !strings.Contains(m.Reason, "not a wildcard") {
		t.Errorf("rule 1: %+v", m)
	}
	if m.Pos.Line != 9 {
		t.Errorf("rule 1 at line %d, want 9", m.Pos.Line)
	}
	if m := missOf(t, x, 0); m.Criterion != "nonResourceURLs" {
		t.Errorf("rule 0: %+v", m)
	}
	if m := missOf(t, x, 4); m.Criterion != "users" {
		t.Errorf("rule 4: %+v", m)
	}
}

func TestExplainDeploymentsWithoutGroup(t *testing.T) {
	x := explain(t, &Request{User: &UserInfo{Name: "alice"}, Verb: "create", APIGroup: "apps", Resource: "deployments", Namespace: "dev", ResourceRequest: true})
	m := missOf(t, x, 2)
	if m.Criterion != "resources/group" || !strings.Contains(m.Reason, `write group: "apps"`) {
		t.Errorf("rule 2: %+v", m)
	}
	if m := missOf(t, x, 4); m.Criterion != "namespaces" {
		t.Errorf("rule 4: %+v", m)
	}
	if x.Decision.Rule != -1 || len(x.Misses) != 5 || x.Lines != nil {
		t.Errorf("want no match and 5 misses, got %+v", x)
	}
}

func TestExplainPodsExec(t *testing.T) {
	x := explain(t, &Request{User: &UserInfo{Name: "alice"}, Verb: "create", Resource: "pods", Subresource: "exec", Namespace: "prod", Name: "web", ResourceRequest: true})
	d := x.Decision
	if d.Rule != 3 || d.Level != audit.LevelRequestResponse || !d.OmitManagedFields || len(d.OmitStages) != 1 {
		t.Fatalf("decision %+v", d)
	}
	if len(x.Misses) != 3 {
		t.Fatalf("misses %+v", x.Misses)
	}
	wantCrit := []string{"nonResourceURLs", "verbs", "resources"}
	for i, m := range x.Misses {
		if m.Criterion != wantCrit[i] {
			t.Errorf("rule %d: %+v, want %s", i, m, wantCrit[i])
		}
	}
	var got []string
	for _, l := range x.Lines {
		got = append(got, strings.TrimSpace(l.Text))
	}
	if x.Lines[0].Line != 19 || strings.Join(got, "|") != `- level: RequestResponse|omitManagedFields: true|resources:|- group: ""|resources: ["pods/*"]` {
		t.Errorf("lines %+v", x.Lines)
	}
}

func TestExplainNoMatch(t *testing.T) {
	x := explain(t, &Request{User: &UserInfo{Name: "bob"}, Verb: "get", Path: "/version"})
	if x.Decision.Rule != -1 || x.Decision.Level != audit.LevelNone || len(x.Misses) != 5 {
		t.Fatalf("%+v", x)
	}
	if m := missOf(t, x, 0); m.Criterion != "nonResourceURLs" || !strings.Contains(m.Reason, "/version") {
		t.Errorf("rule 0: %+v", m)
	}
	if m := missOf(t, x, 2); m.Criterion != "resources" {
		t.Errorf("rule 2: %+v", m)
	}
	// Unauthenticated: users fails first.
	x = explain(t, &Request{Verb: "get", Resource: "configmaps", Namespace: "prod", ResourceRequest: true})
	if m := missOf(t, x, 4); m.Criterion != "users" || !strings.Contains(m.Reason, "unauthenticated") {
		t.Errorf("rule 4: %+v", m)
	}
	// The healthz rule matches; its lines are quoted.
	x = explain(t, &Request{Verb: "get", Path: "/healthz/etcd"})
	if x.Decision.Rule != 0 || len(x.Lines) != 2 || x.Lines[0].Line != 6 {
		t.Errorf("%+v", x)
	}
}

func TestExplainResourceNames(t *testing.T) {
	src := "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Request\n  resources:\n  - group: \"\"\n    resources: [configmaps]\n    resourceNames: [cfg]\n- level: Metadata\n"
	p, err := Load("p.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	x := Explain(p, []byte(src), &Request{Verb: "list", Resource: "configmaps", Namespace: "a", ResourceRequest: true})
	if x.Decision.Rule != 1 || len(x.Misses) != 1 || x.Misses[0].Criterion != "resourceNames" {
		t.Errorf("%+v", x)
	}
	if len(x.Lines) != 1 || x.Lines[0].Line != 9 {
		t.Errorf("lines %+v", x.Lines)
	}
}
