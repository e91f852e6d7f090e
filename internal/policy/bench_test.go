package policy

import (
	"testing"

	upstream "k8s.io/apiserver/pkg/audit/policy"
	"k8s.io/apiserver/pkg/authorization/authorizer"
)

// benchRequests is a request mix like a small cluster's: control-plane
// leader election, kubelets, kube-proxy, probes, discovery, and people
// reading, writing, exec'ing and changing RBAC.
func benchRequests() []*Request {
	node := &UserInfo{Name: "system:node:worker-1", Groups: []string{"system:nodes", "system:authenticated"}}
	alice := &UserInfo{Name: "alice", Groups: []string{"dev", "system:authenticated"}}
	admin := &UserInfo{Name: "admin", Groups: []string{"system:masters", "system:authenticated"}}
	kcm := &UserInfo{Name: "system:kube-controller-manager", Groups: []string{"system:authenticated"}}
	anon := &UserInfo{Name: "system:anonymous", Groups: []string{"system:unauthenticated"}}
	res := func(u *UserInfo, verb, group, resource, sub, ns, name string) *Request {
		return &Request{User: u, Verb: verb, APIGroup: group, APIVersion: "v1", Resource: resource, Subresource: sub,
			Namespace: ns, Name: name, ResourceRequest: true, Path: "/api/v1/" + resource}
	}
	url := func(u *UserInfo, path string) *Request { return &Request{User: u, Verb: "get", Path: path} }
	return []*Request{
		res(&UserInfo{Name: "system:kube-proxy", Groups: []string{"system:authenticated"}}, "watch", "discovery.k8s.io", "endpointslices", "", "", ""),
		res(node, "get", "", "nodes", "", "", "worker-1"),
		res(kcm, "update", "coordination.k8s.io", "leases", "", "kube-system", "kube-controller-manager"),
		res(&UserInfo{Name: "system:kube-scheduler"}, "get", "coordination.k8s.io", "leases", "", "kube-system", "kube-scheduler"),
		url(kcm, "/healthz"),
		url(anon, "/readyz"),
		res(node, "patch", "", "pods", "status", "default", "web-1"),
		res(node, "watch", "", "configmaps", "", "default", ""),
		res(alice, "get", "", "pods", "", "default", "web-1"),
		res(alice, "list", "", "pods", "", "default", ""),
		res(alice, "create", "", "pods", "exec", "default", "web-1"),
		res(alice, "get", "", "secrets", "", "default", "db-password"),
		res(kcm, "list", "", "secrets", "", "", ""),
		res(alice, "patch", "apps", "deployments", "", "default", "web"),
		res(admin, "create", "rbac.authorization.k8s.io", "clusterrolebindings", "", "", "ops"),
		res(&UserInfo{Name: "ci-bot"}, "create", "authentication.k8s.io", "tokenreviews", "", "", ""),
		res(kcm, "update", "apps", "deployments", "status", "default", "web"),
		res(kcm, "create", "", "events", "", "default", ""),
		url(alice, "/version"),
		url(alice, "/api"),
		url(alice, "/apis/apps/v1"),
		res(&UserInfo{Name: "prometheus-operator"}, "watch", "monitoring.coreos.com", "servicemonitors", "", "monitoring", ""),
		res(&UserInfo{Name: "system:serviceaccount:kube-system:namespace-controller"}, "deletecollection", "", "pods", "", "old", ""),
		{Verb: "get", Path: "/api"},
		res(alice, "update", "apps", "deployments", "scale", "default", "web"),
		res(admin, "get", "", "nodes", "proxy", "", "worker-1"),
	}
}

func benchPolicy(tb testing.TB) *Policy {
	p, err := LoadFile("testdata/recommended-30.good.yaml")
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// TestBenchMixMatchesUpstream checks that the benchmark mix spreads over
// the policy and that kubetrail and upstream decide it alike.
func TestBenchMixMatchesUpstream(t *testing.T) {
	p := benchPolicy(t)
	ev, or := NewEvaluator(p), newOracle(p)
	rules := map[int]bool{}
	for _, r := range benchRequests() {
		got, want := ev.Evaluate(r), or.decide(r)
		if d := disagreement(got, want); d != "" {
			t.Errorf("%+v: %s", r, d)
		}
		rules[got.Rule] = true
	}
	if len(rules) < 15 {
		t.Errorf("the mix matches only %d different rules", len(rules))
	}
}

func TestEvaluateDoesNotAllocate(t *testing.T) {
	p := benchPolicy(t)
	ev := NewEvaluator(p)
	reqs := benchRequests()
	allocs := testing.AllocsPerRun(100, func() {
		for _, r := range reqs {
			ev.Evaluate(r)
		}
	})
	if allocs != 0 {
		t.Fatalf("Evaluate allocates %v times per mix", allocs)
	}
}

// BenchmarkEvaluate and BenchmarkUpstream decide the same mix under the
// same 30-rule policy; one op is one request.
func BenchmarkEvaluate(b *testing.B) {
	ev := NewEvaluator(benchPolicy(b))
	reqs := benchRequests()
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		ev.Evaluate(reqs[i])
		if i++; i == len(reqs) {
			i = 0
		}
	}
}

func BenchmarkUpstream(b *testing.B) {
	ev := upstream.NewPolicyRuleEvaluator(toUpstream(benchPolicy(b)))
	var attrs []authorizer.Attributes
	for _, r := range benchRequests() {
		attrs = append(attrs, toAttributes(r))
	}
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		ev.EvaluatePolicyRule(attrs[i])
		if i++; i == len(attrs) {
			i = 0
		}
	}
}

func BenchmarkNewEvaluator(b *testing.B) {
	p := benchPolicy(b)
	b.ReportAllocs()
	for b.Loop() {
		NewEvaluator(p)
	}
}
