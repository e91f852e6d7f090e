package policy

import (
	"slices"
	"testing"

	"github.com/kubetrail/kubetrail/internal/audit"
)

// TestTraps pins down each trap of the policy language that docs/policy.md
// describes, with the example used there, and checks it against upstream.
func TestTraps(t *testing.T) {
	f := func(name, rules, request string, level audit.Level, rule int) {
		t.Helper()
		src := "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n" + rules
		p, err := Load(name+".yaml", []byte(src))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		r, err := ParseRequest([]byte(request))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got := NewEvaluator(p).Evaluate(r)
		if got.Level != level || got.Rule != rule {
			t.Errorf("%s: got %s (rule %d), want %s (rule %d)", name, got.Level, got.Rule, level, rule)
		}
		if d := disagreement(got, newOracle(p).decide(r)); d != "" {
			t.Errorf("%s: %s", name, d)
		}
	}
	const catchAll = "  - level: Metadata\n"

	f("first-match-wins", `
  - level: None
    resources: [{group: "", resources: ["secrets"]}]
  - level: RequestResponse
    users: ["admin"]
`, `{"user":"admin","verb":"get","resource":"secrets","namespace":"prod","name":"db"}`, "None", 0)

	f("nothing-matches-is-none", `
  - level: Metadata
    verbs: ["delete"]
`, `{"user":"alice","verb":"get","resource":"pods","namespace":"default"}`, "None", -1)

	f("star-verb-is-literal", `
  - level: RequestResponse
    verbs: ["*"]
    resources: [{group: "", resources: ["secrets"]}]
`+catchAll, `{"user":"alice","verb":"get","resource":"secrets","namespace":"prod","name":"db"}`, "Metadata", 1)

	f("omitted-group-is-core-only", `
  - level: RequestResponse
    resources: [{resources: ["deployments"]}]
`+catchAll, `{"user":"alice","verb":"patch","apiGroup":"apps","resource":"deployments","namespace":"default","name":"web"}`, "Metadata", 1)

	f("star-group-is-any", `
  - level: RequestResponse
    resources: [{group: "*", resources: ["deployments"]}]
`+catchAll, `{"user":"alice","verb":"patch","apiGroup":"apps","resource":"deployments","namespace":"default","name":"web"}`, "RequestResponse", 0)

	f("pods-star-matches-pods", `
  - level: Request
    resources: [{group: "", resources: ["pods/*"]}]
`+catchAll, `{"user":"alice","verb":"get","resource":"pods","namespace":"default","name":"web"}`, "Request", 0)

	f("pods-does-not-match-exec", `
  - level: RequestResponse
    resources: [{group: "", resources: ["pods"]}]
`+catchAll, `{"user":"alice","verb":"create","resource":"pods","subresource":"exec","namespace":"default","name":"web"}`, "Metadata", 1)

	f("exec-is-get-over-websockets", `
  - level: RequestResponse
    verbs: ["create"]
    resources: [{group: "", resources: ["pods/exec"]}]
`+catchAll, `{"user":"alice","verb":"get","resource":"pods","subresource":"exec","namespace":"default","name":"web"}`, "Metadata", 1)

	f("star-status-any-group", `
  - level: None
    resources: [{group: "*", resources: ["*/status"]}]
`+catchAll, `{"user":"system:serviceaccount:kube-system:deployment-controller","verb":"update","apiGroup":"apps","resource":"deployments","subresource":"status","namespace":"default","name":"web"}`, "None", 0)

	f("star-status-not-the-resource", `
  - level: None
    resources: [{group: "*", resources: ["*/status"]}]
`+catchAll, `{"user":"alice","verb":"update","apiGroup":"apps","resource":"deployments","namespace":"default","name":"web"}`, "Metadata", 1)

	f("resource-names-never-match-list", `
  - level: RequestResponse
    resources: [{group: "", resources: ["configmaps"], resourceNames: ["cluster-config"]}]
`+catchAll, `{"user":"alice","verb":"list","resource":"configmaps","namespace":"kube-system"}`, "Metadata", 1)

	f("resource-names-never-match-create", `
  - level: RequestResponse
    resources: [{group: "", resources: ["configmaps"], resourceNames: ["cluster-config"]}]
`+catchAll, `{"user":"alice","verb":"create","resource":"configmaps","namespace":"kube-system"}`, "Metadata", 1)

	f("resource-names-match-get", `
  - level: RequestResponse
    resources: [{group: "", resources: ["configmaps"], resourceNames: ["cluster-config"]}]
`+catchAll, `{"user":"alice","verb":"get","resource":"configmaps","namespace":"kube-system","name":"cluster-config"}`, "RequestResponse", 0)

	f("url-star-is-a-prefix", `
  - level: None
    nonResourceURLs: ["/healthz*"]
`+catchAll, `{"user":"system:anonymous","groups":["system:unauthenticated"],"verb":"get","path":"/healthzzz/anything"}`, "None", 0)

	f("url-without-star-is-exact", `
  - level: None
    nonResourceURLs: ["/healthz"]
`+catchAll, `{"user":"system:anonymous","groups":["system:unauthenticated"],"verb":"get","path":"/healthz/etcd"}`, "Metadata", 1)

	f("url-rule-never-matches-resources", `
  - level: None
    nonResourceURLs: ["*"]
`+catchAll, `{"user":"alice","verb":"get","resource":"pods","namespace":"default"}`, "Metadata", 1)

	f("resource-rule-never-matches-urls", `
  - level: None
    namespaces: ["kube-system"]
`+catchAll, `{"user":"alice","verb":"get","path":"/metrics"}`, "Metadata", 1)

	f("empty-namespace-is-cluster-scoped", `
  - level: RequestResponse
    namespaces: [""]
`+catchAll, `{"user":"alice","verb":"delete","resource":"namespaces","name":"prod"}`, "RequestResponse", 0)

	f("users-never-match-unauthenticated", `
  - level: None
    users: [""]
  - level: None
    userGroups: ["system:unauthenticated"]
`+catchAll, `{"verb":"get","path":"/api"}`, "Metadata", 2)

	f("anonymous-is-authenticated-info", `
  - level: None
    userGroups: ["system:unauthenticated"]
`+catchAll, `{"user":"system:anonymous","groups":["system:unauthenticated"],"verb":"get","path":"/api"}`, "None", 0)
}

// TestStagesAndManagedFields pins the merge of omitStages and the override
// of omitManagedFields.
func TestStagesAndManagedFields(t *testing.T) {
	p, err := Load("p.yaml", []byte(`apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["ResponseStarted", "RequestReceived", "ResponseStarted"]
omitManagedFields: true
rules:
  - level: None
    verbs: ["watch"]
    omitStages: ["Panic"]
    omitManagedFields: false
  - level: Metadata
    verbs: ["get"]
`))
	if err != nil {
		t.Fatal(err)
	}
	ev := NewEvaluator(p)
	for _, c := range []struct {
		verb   string
		stages string
		omf    bool
	}{
		{"watch", "RequestReceived ResponseStarted Panic", false},
		{"get", "RequestReceived ResponseStarted", true},
		// No rule: the policy's list as written, duplicates and all.
		{"list", "ResponseStarted RequestReceived ResponseStarted", true},
	} {
		r := &Request{Verb: c.verb, Path: "/x"}
		got := ev.Evaluate(r)
		if !slices.Equal(got.OmitStages, stages(c.stages)) || got.OmitManagedFields != c.omf {
			t.Errorf("%s: got %v %v, want %s %v", c.verb, got.OmitStages, got.OmitManagedFields, c.stages, c.omf)
		}
		if d := disagreement(got, newOracle(p).decide(r)); d != "" {
			t.Errorf("%s: %s", c.verb, d)
		}
	}
}

// TestEmptyPolicy: the API server refuses a policy without rules, but its
// checker still decides one, and so does kubetrail.
func TestEmptyPolicy(t *testing.T) {
	p := &Policy{OmitStages: stages("Panic")}
	r := &Request{Verb: "get", Path: "/"}
	got := NewEvaluator(p).Evaluate(r)
	if got.Level != audit.LevelNone || got.Rule != -1 {
		t.Errorf("got %+v", got)
	}
	if d := disagreement(got, newOracle(p).decide(r)); d != "" {
		t.Error(d)
	}
}
