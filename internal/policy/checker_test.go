package policy

import (
	"slices"
	"strings"
	"testing"

	"github.com/kubetrail/kubetrail/internal/audit"
)

// The scenarios of k8s.io/apiserver/pkg/audit/policy/checker_test.go
// (v0.37.2), each decided by kubetrail and by upstream: both must give the
// expected answer, and they must agree with each other on everything
// (disagreement also checks the matched rule and the stage order).

var tim = &UserInfo{Name: "tim@k8s.io", Groups: []string{"humans", "developers"}}

var checkerRequests = map[string]*Request{
	"namespaced": {User: tim, Verb: "get", Namespace: "default", APIVersion: "v1", Resource: "pods", Name: "busybox",
		ResourceRequest: true, Path: "/api/v1/namespaces/default/pods/busybox"},
	"cluster": {User: tim, Verb: "get", APIGroup: "rbac.authorization.k8s.io", APIVersion: "v1beta1", Resource: "clusterroles",
		Name: "edit", ResourceRequest: true, Path: "/apis/rbac.authorization.k8s.io/v1beta1/clusterroles/edit"},
	"nonResource": {User: tim, Verb: "get", Path: "/logs/kubelet.log"},
	"subresource": {User: tim, Verb: "get", Namespace: "default", APIVersion: "v1", Resource: "pods", Subresource: "log",
		Name: "busybox", ResourceRequest: true, Path: "/api/v1/namespaces/default/pods/busybox"},
	"unauthenticated": {Verb: "get", Namespace: "default", APIVersion: "v1", Resource: "pods", Name: "busybox",
		ResourceRequest: true, Path: "/api/v1/namespaces/default/pods/busybox"},
	"clusterRoleStatusUpdate": {User: tim, Verb: "update", APIGroup: "rbac.authorization.k8s.io", APIVersion: "v1beta1",
		Resource: "clusterroles", Subresource: "status", Name: "somerole", ResourceRequest: true,
		Path: "/apis/rbac.authorization.k8s.io/v1beta1/clusterroles/somerole"},
}

func core(resources ...string) []GroupResources {
	return []GroupResources{{Resources: resources}}
}

var checkerRules = map[string]Rule{
	"default":         {Level: audit.LevelMetadata},
	"create":          {Level: audit.LevelRequest, Verbs: []string{"create"}},
	"tims":            {Level: audit.LevelMetadata, Users: []string{"tim@k8s.io"}},
	"humans":          {Level: audit.LevelMetadata, UserGroups: []string{"humans"}},
	"serviceAccounts": {Level: audit.LevelRequest, UserGroups: []string{"system:serviceaccounts"}},
	"getPods":         {Level: audit.LevelRequestResponse, Verbs: []string{"get"}, Resources: core("pods")},
	"getPodLogs":      {Level: audit.LevelRequest, Verbs: []string{"get"}, Resources: core("pods/log")},
	"getAnything":     {Level: audit.LevelRequest, Verbs: []string{"get"}, Resources: core("*")},
	"getAnyLog":       {Level: audit.LevelRequest, Verbs: []string{"get"}, Resources: core("*/log")},
	"getPodsAndSubs":  {Level: audit.LevelRequest, Verbs: []string{"get"}, Resources: core("pods/*")},
	"getClusterRoles": {Level: audit.LevelRequestResponse, Verbs: []string{"get"}, Namespaces: []string{""},
		Resources: []GroupResources{{Group: "rbac.authorization.k8s.io", Resources: []string{"clusterroles"}}}},
	"updateAnyStatus": {Level: audit.LevelRequestResponse, Verbs: []string{"update"},
		Resources: []GroupResources{{Group: "*", Resources: []string{"*/status"}}}},
	"getLogs":    {Level: audit.LevelRequestResponse, Verbs: []string{"get"}, NonResourceURLs: []string{"/logs*"}},
	"getMetrics": {Level: audit.LevelRequest, Verbs: []string{"get"}, NonResourceURLs: []string{"/metrics"}},
	"editRole": {Level: audit.LevelRequest, Resources: []GroupResources{{
		Group: "rbac.authorization.k8s.io", Resources: []string{"clusterroles"}, ResourceNames: []string{"edit"}}}},
	"omitReceived": {Level: audit.LevelRequest, OmitStages: []audit.Stage{audit.StageRequestReceived}},
	"panicOnly": {Level: audit.LevelRequest, OmitStages: []audit.Stage{
		audit.StageRequestReceived, audit.StageResponseStarted, audit.StageResponseComplete}},
}

// levelCases are checked with no policy-wide omitStages and with some;
// either way the expected stages are the policy's.
var levelCases = []struct {
	req   string
	level audit.Level
	rules string // space-separated names of checkerRules, in policy order
}{
	{"namespaced", "Metadata", "default"},
	{"namespaced", "None", "create"},
	{"namespaced", "Metadata", "tims"},
	{"namespaced", "Metadata", "humans"},
	{"namespaced", "None", "serviceAccounts"},
	{"namespaced", "RequestResponse", "getPods"},
	{"namespaced", "None", "getClusterRoles"},
	{"namespaced", "None", "getLogs"},
	{"namespaced", "None", "getMetrics"},
	{"namespaced", "Metadata", "getMetrics serviceAccounts default"},
	{"namespaced", "RequestResponse", "getMetrics getPods default"},
	{"namespaced", "RequestResponse", "getPodLogs getPods"},

	{"cluster", "Metadata", "default"},
	{"cluster", "None", "create"},
	{"cluster", "Metadata", "tims"},
	{"cluster", "Metadata", "humans"},
	{"cluster", "None", "serviceAccounts"},
	{"cluster", "None", "getPods"},
	{"cluster", "RequestResponse", "getClusterRoles"},
	{"cluster", "Request", "editRole getClusterRoles"},
	{"cluster", "None", "getLogs"},
	{"cluster", "None", "getMetrics"},
	{"cluster", "Metadata", "getMetrics serviceAccounts default"},
	{"cluster", "RequestResponse", "getMetrics getClusterRoles default"},
	{"cluster", "None", "getPodLogs getPods"},

	{"nonResource", "Metadata", "default"},
	{"nonResource", "None", "create"},
	{"nonResource", "Metadata", "tims"},
	{"nonResource", "Metadata", "humans"},
	{"nonResource", "None", "serviceAccounts"},
	{"nonResource", "None", "getPods"},
	{"nonResource", "None", "getClusterRoles"},
	{"nonResource", "RequestResponse", "getLogs"},
	{"nonResource", "None", "getMetrics"},
	{"nonResource", "Metadata", "getMetrics serviceAccounts default"},
	{"nonResource", "RequestResponse", "getLogs getClusterRoles default"},
	{"nonResource", "None", "getPodLogs getPods"},

	{"subresource", "Request", "getPodLogs getPods"},
	{"subresource", "Request", "getAnything"},
	{"subresource", "Request", "getAnyLog"},
	{"subresource", "Request", "getPodsAndSubs"},

	{"unauthenticated", "None", "tims"},
	{"unauthenticated", "Metadata", "tims default"},
	{"unauthenticated", "None", "humans"},
	{"unauthenticated", "Metadata", "humans default"},
	{"clusterRoleStatusUpdate", "RequestResponse", "updateAnyStatus"},
}

// stageCases are checked with the given policy-wide omitStages.
var stageCases = []struct {
	req         string
	level       audit.Level
	policyOmits []audit.Stage
	wantOmits   []audit.Stage
	rules       string
}{
	{"namespaced", "Request", nil, stages("RequestReceived"), "omitReceived getPods default"},
	{"namespaced", "Request", nil, stages("RequestReceived ResponseStarted ResponseComplete"), "panicOnly getPods default"},
	{"cluster", "Request", nil, stages("RequestReceived"), "omitReceived getPods default"},
	{"cluster", "Request", nil, stages("RequestReceived ResponseStarted ResponseComplete"), "panicOnly getPods default"},
	{"nonResource", "Request", nil, stages("RequestReceived"), "omitReceived getPods default"},
	{"nonResource", "Request", nil, stages("RequestReceived ResponseStarted ResponseComplete"), "panicOnly getPods default"},

	{"namespaced", "Request", stages("RequestReceived ResponseStarted"), stages("RequestReceived ResponseStarted"), "omitReceived getPods default"},
	{"namespaced", "Request", stages("RequestReceived ResponseStarted"), stages("RequestReceived ResponseStarted ResponseComplete"), "panicOnly getPods default"},
	{"cluster", "Request", stages("RequestReceived ResponseStarted"), stages("RequestReceived ResponseStarted"), "omitReceived getPods default"},
	{"cluster", "Request", stages("RequestReceived ResponseStarted"), stages("RequestReceived ResponseStarted ResponseComplete"), "panicOnly getPods default"},
	{"nonResource", "Metadata", stages("RequestReceived ResponseStarted"), stages("RequestReceived ResponseStarted"), "default omitReceived getPods"},
	{"nonResource", "Request", stages("RequestReceived ResponseStarted"), stages("RequestReceived ResponseStarted ResponseComplete"), "panicOnly getPods default"},
}

func stages(s string) []audit.Stage {
	var out []audit.Stage
	for f := range strings.FieldsSeq(s) {
		out = append(out, audit.Stage(f))
	}
	return out
}

func checkerPolicy(t *testing.T, policyOmits []audit.Stage, names string) *Policy {
	t.Helper()
	p := &Policy{OmitStages: policyOmits}
	for name := range strings.FieldsSeq(names) {
		r, ok := checkerRules[name]
		if !ok {
			t.Fatalf("no rule %q", name)
		}
		p.Rules = append(p.Rules, r)
	}
	return clonePolicy(p)
}

func checkCase(t *testing.T, req string, level audit.Level, policyOmits, wantOmits []audit.Stage, rules string) {
	t.Helper()
	p := checkerPolicy(t, policyOmits, rules)
	r := checkerRequests[req]
	if r == nil {
		t.Fatalf("no request %q", req)
	}
	got, up := NewEvaluator(p).Evaluate(r), newOracle(p).decide(r)
	for _, c := range []struct {
		who string
		d   Decision
	}{{"kubetrail", got}, {"upstream", up}} {
		if c.d.Level != level || !sameStageSet(c.d.OmitStages, wantOmits) {
			t.Errorf("request %s, rules %q, policy omitStages %v: %s decided %s %v, want %s %v",
				req, rules, policyOmits, c.who, c.d.Level, c.d.OmitStages, level, wantOmits)
		}
	}
	if d := disagreement(got, up); d != "" {
		t.Errorf("request %s, rules %q: %s", req, rules, d)
	}
}

func TestUpstreamCheckerCases(t *testing.T) {
	for _, policyOmits := range [][]audit.Stage{nil, stages("RequestReceived ResponseStarted")} {
		for _, c := range levelCases {
			checkCase(t, c.req, c.level, policyOmits, policyOmits, c.rules)
		}
	}
	for _, c := range stageCases {
		checkCase(t, c.req, c.level, c.policyOmits, c.wantOmits, c.rules)
	}
}

func TestUpstreamOmitManagedFieldsCases(t *testing.T) {
	yes, no := true, false
	r := &Request{Verb: "get"}
	for _, c := range []struct {
		policy bool
		rule   *bool
		want   bool
	}{
		{false, nil, false},
		{true, nil, true},
		{true, &no, false},
		{false, &yes, true},
	} {
		p := &Policy{OmitManagedFields: c.policy, Rules: []Rule{{Level: audit.LevelRequestResponse, Verbs: []string{"get"}, OmitManagedFields: c.rule}}}
		got, up := NewEvaluator(p).Evaluate(r), newOracle(p).decide(r)
		if got.OmitManagedFields != c.want || up.OmitManagedFields != c.want {
			t.Errorf("policy %v, rule %v: kubetrail %v, upstream %v, want %v", c.policy, c.rule, got.OmitManagedFields, up.OmitManagedFields, c.want)
		}
		if d := disagreement(got, up); d != "" {
			t.Error(d)
		}
	}
}

func TestUnionStages(t *testing.T) {
	for _, c := range []struct{ a, b, want string }{
		{"", "", ""},
		{"RequestReceived", "", "RequestReceived"},
		{"RequestReceived", "RequestReceived", "RequestReceived"},
		{"RequestReceived", "ResponseStarted", "RequestReceived ResponseStarted"},
		{"RequestReceived RequestReceived", "RequestReceived RequestReceived", "RequestReceived"},
		{"RequestReceived ResponseStarted", "Panic RequestReceived", "RequestReceived ResponseStarted Panic"},
		{"Panic ResponseComplete", "ResponseStarted", "ResponseStarted ResponseComplete Panic"},
		{"Bogus Panic", "Another", "Panic Another Bogus"},
	} {
		got := unionStages(stages(c.a), stages(c.b))
		if want := stages(c.want); !slices.Equal(got, want) || got == nil {
			t.Errorf("unionStages(%q, %q) = %v, want %v", c.a, c.b, got, want)
		}
	}
}

// TestUpstreamStageOrderIsRandom documents why kubetrail does not copy the
// API server's order of a merged omitStages list: it is a Go map's
// iteration order and changes from run to run.
func TestUpstreamStageOrderIsRandom(t *testing.T) {
	p := &Policy{OmitStages: stages("RequestReceived ResponseStarted"), Rules: []Rule{{Level: "Metadata", OmitStages: stages("ResponseComplete Panic")}}}
	r := &Request{Verb: "get"}
	seen := map[string]bool{}
	for range 200 {
		seen[strings.Join(stageStrings(newOracle(p).decide(r).OmitStages), ",")] = true
	}
	t.Logf("upstream gave %d different orders of the same 4 stages in 200 runs", len(seen))
	want := stages("RequestReceived ResponseStarted ResponseComplete Panic")
	for range 3 {
		if got := NewEvaluator(p).Evaluate(r).OmitStages; !slices.Equal(got, want) {
			t.Fatalf("kubetrail order %v, want %v", got, want)
		}
	}
}

func stageStrings(s []audit.Stage) []string {
	out := make([]string, len(s))
	for i, v := range s {
		out[i] = string(v)
	}
	return out
}
