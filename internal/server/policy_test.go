package server

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/kubetrail/kubetrail/internal/audit"
	"github.com/kubetrail/kubetrail/internal/policy"
)

// leakyPolicy logs secrets with their bodies (a secrets-above-metadata
// error at rule 1, line 5), misspells omitStages in rule 0 (a field the
// API server ignores, at 4:5) and lists pods at Metadata.
const leakyPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
rules:
  - level: None
    omitStage: [RequestReceived]
    users: ["system:kube-proxy"]
  - level: RequestResponse
    resources:
      - group: ""
        resources: ["secrets"]
  - level: Metadata
`

// strictPolicy is leakyPolicy without the typo: explain and simulate load
// a policy strictly, as the CLI does.
var strictPolicy = strings.Replace(leakyPolicy, "omitStage:", "omitStages:", 1)

// TestPolicyCheckAPI: the answer is policy check's: the load's ignored
// fields and policy.Lint's findings of what the API server would apply,
// each with its line and column.
// Planted bug it caught: linting the strict load (policy.Load), which
// refuses the typo and leaves no findings.
func TestPolicyCheckAPI(t *testing.T) {
	fx := newRolesFixture(t, false)
	code, body := fx.do(t, "viewer", "POST", "/api/v1/policy/check", leakyPolicy)
	if code != 200 {
		t.Fatalf("check: %d %s", code, body)
	}
	var got policyCheckAnswer
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	p, ignored, err := policy.LoadAsAPIServer(policyName, []byte(leakyPolicy))
	if err != nil {
		t.Fatal(err)
	}
	want := policyCheckAnswer{File: policyName, Rules: 3, Errors: problems(ignored)}
	for _, f := range policy.Lint(p) {
		want.Findings = append(want.Findings, policyFinding{Finding: f, Column: lineStart([]byte(leakyPolicy), f.Line)})
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("check answer (-policy check +API):\n%s", diff)
	}
	// What a user looks for, by hand: the typo at 5:5, the leak at 7:5.
	if len(got.Errors) != 1 || got.Errors[0].Line != 5 || got.Errors[0].Column != 5 || !got.Errors[0].Ignored {
		t.Errorf("errors: %+v, want the ignored omitStage at 5:5", got.Errors)
	}
	found := false
	for _, f := range got.Findings {
		if f.Code == "secrets-above-metadata" && f.Line == 7 && f.Column == 5 && f.Rule == 1 {
			found = true
		}
	}
	if !found {
		t.Errorf("no secrets-above-metadata at 7:5 in %+v", got.Findings)
	}
	// A policy that does not load: its errors at line:column, no findings.
	code, body = fx.do(t, "viewer", "POST", "/api/v1/policy/check", "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n  - level: Loud\n")
	if code != 200 || !strings.Contains(body, `"line":4,"column":`) || !strings.Contains(body, `"findings":[]`) {
		t.Errorf("a bad level: %d %s", code, body)
	}
}

// TestPolicyExplainAPI: the answer is policy explain -o json's (the same
// policy.Report, from the same request read the same way).
// Planted bug it caught: the resource's group not cut from RES.GROUP.
func TestPolicyExplainAPI(t *testing.T) {
	fx := newRolesFixture(t, false)
	src := strictPolicy
	code, body := fx.do(t, "viewer", "POST", "/api/v1/policy/explain?user=alice&group=dev&verb=get&resource=secrets&namespace=prod&name=db", src)
	if code != 200 {
		t.Fatalf("explain: %d %s", code, body)
	}
	var got policy.Report
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	req, err := policy.RequestSpec{User: "alice", Groups: []string{"dev"}, Verb: "get", Resource: "secrets", Namespace: "prod", Name: "db"}.Request("--")
	if err != nil {
		t.Fatal(err)
	}
	p, err := policy.Load(policyName, []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(policy.NewReport(req, policy.Explain(p, []byte(src), req)), &got); diff != "" {
		t.Errorf("explain answer (-policy explain +API):\n%s", diff)
	}
	if got.Rule != 1 || got.Level != "RequestResponse" || got.RuleLine != 7 || len(got.Misses) != 1 || got.Misses[0].Criterion != "users" {
		t.Errorf("explain: %+v, want rule 1 at line 7, RequestResponse, rule 0 missed on users", got)
	}
	code, body = fx.do(t, "viewer", "POST", "/api/v1/policy/explain?user=alice&resource=deployments.apps", src)
	if code != 200 || !strings.Contains(body, `"apiGroup":"apps","resource":"deployments"`) {
		t.Errorf("deployments.apps: %d %s", code, body)
	}
	for q, msg := range map[string]string{
		"user=alice":                                   "give exactly one of resource and url",
		"resource=pods":                                "give exactly one of user and unauthenticated",
		"unauthenticated=1&group=g&url=/x":             "group needs user",
		"user=a&url=/x&namespace=n":                    "namespace, name and api-group apply to resource, not url",
		"user=a&resource=deployments.apps&api-group=x": "resource deployments.apps names group apps, api-group x",
	} {
		code, body := fx.do(t, "viewer", "POST", "/api/v1/policy/explain?"+q, src)
		if code != 400 || !strings.Contains(body, msg) {
			t.Errorf("explain?%s: %d %s, want 400 %q", q, code, body, msg)
		}
	}
	code, body = fx.do(t, "viewer", "POST", "/api/v1/policy/explain?user=a&resource=pods", "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n  - level: Loud\n")
	if code != 400 || !strings.Contains(body, `"errors":[{"line":4,"column":12,`) {
		t.Errorf("a policy that does not load: %d %s", code, body)
	}
}

// TestPolicySimulateAPI: the simulation is policy simulate's
// (policy.Simulator fed each stored event with its size) over exactly the
// events GET /api/v1/events gives the same caller for the same window:
// a scoped viewer's simulation counts its scope only.
// Planted bugs it caught: the scope not applied (team-a's simulation
// counted 8 events, want 4); the default since window left open.
func TestPolicySimulateAPI(t *testing.T) {
	fx := newRolesFixture(t, false)
	fx.load(t)
	const window = "since=2026-11-23T00:00:00Z&until=2026-11-24T00:00:00Z"
	for cred, events := range map[string]int64{"viewer": 8, "team-a": 4, "staging": 2} {
		code, body := fx.do(t, cred, "POST", "/api/v1/policy/simulate?"+window, strictPolicy)
		if code != 200 {
			t.Fatalf("simulate as %s: %d %s", cred, code, body)
		}
		var got policySimulation
		if err := json.Unmarshal([]byte(body), &got); err != nil {
			t.Fatal(err)
		}
		p, err := policy.Load(policyName, []byte(strictPolicy))
		if err != nil {
			t.Fatal(err)
		}
		sim := policy.NewSimulator(p)
		_, lines := fx.do(t, cred, "GET", "/api/v1/events?"+window, "")
		for _, l := range strings.Split(strings.TrimSpace(lines), "\n") {
			var ev audit.Event
			if err := audit.DecodeStored([]byte(l), &ev); err != nil {
				t.Fatal(err)
			}
			sim.Add(&ev, len(l)+1)
		}
		want := simulationAnswer(p, &sim.Sim)
		want.Since, want.Until = "2026-11-23T00:00:00Z", "2026-11-24T00:00:00Z"
		if diff := cmp.Diff(want, &got); diff != "" {
			t.Errorf("simulate as %s (-policy simulate +API):\n%s", cred, diff)
		}
		// Every stored event is alice listing pods or nodes: rule 2, Metadata.
		if got.Events != events || len(got.ByRule) != 1 || *got.ByRule[0].Rule != 2 || got.ByRule[0].Line != 11 || got.ByRule[0].Events != events ||
			len(got.ByLevel) != 1 || got.ByLevel[0].Level != "Metadata" {
			t.Errorf("simulate as %s: %+v, want %d events at rule 2 (line 11), Metadata", cred, got, events)
		}
	}
	// Without since, a day back from now: the fixture's events are older.
	code, body := fx.do(t, "viewer", "POST", "/api/v1/policy/simulate", strictPolicy)
	if code != 200 || !strings.Contains(body, `"events":0,`) {
		t.Errorf("simulate without since: %d %s", code, body)
	}
	// The policy the CLI would refuse is refused, at its line.
	code, body = fx.do(t, "viewer", "POST", "/api/v1/policy/simulate?"+window, leakyPolicy)
	if code != 400 || !strings.Contains(body, `"line":5,"column":5`) {
		t.Errorf("simulate a policy with a typo: %d %s", code, body)
	}
}

// TestPolicyBodyBounded: a policy larger than MaxPolicyBody is a 413 on
// every policy endpoint, one of exactly MaxPolicyBody bytes is read.
// Planted bug it caught: the limit off by one (MaxPolicyBody-1).
func TestPolicyBodyBounded(t *testing.T) {
	fx := newRolesFixture(t, false)
	pad := func(n int) string {
		return strictPolicy + "#" + strings.Repeat("x", n-len(strictPolicy)-2) + "\n"
	}
	for _, ep := range []string{"check", "explain?user=a&resource=pods", "simulate"} {
		code, body := fx.do(t, "viewer", "POST", "/api/v1/policy/"+ep, pad(MaxPolicyBody+1))
		if code != 413 || !strings.Contains(body, fmt.Sprintf("larger than %d bytes", MaxPolicyBody)) {
			t.Errorf("%s, %d bytes: %d %.200s, want 413", ep, MaxPolicyBody+1, code, body)
		}
		if code, body := fx.do(t, "viewer", "POST", "/api/v1/policy/"+ep, pad(MaxPolicyBody)); code != 200 {
			t.Errorf("%s, %d bytes: %d %.200s, want 200", ep, MaxPolicyBody, code, body)
		}
	}
}

// TestPolicyAccessLog: a policy call is logged as other reads are, with
// its parameters and not its body.
// Planted bug it caught: explain not counting its result (results 0).
func TestPolicyAccessLog(t *testing.T) {
	fx := newRolesFixture(t, false)
	fx.do(t, "team-a", "POST", "/api/v1/policy/explain?user=alice&resource=secrets", strictPolicy)
	fx.s.cfg.AccessLog.Sync()
	raw, err := os.ReadFile(fx.logPath)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw), "RequestResponse") || strings.Contains(string(raw), "kube-proxy") {
		t.Errorf("the access log holds the policy:\n%s", raw)
	}
	var e map[string]any
	if err := json.Unmarshal([]byte(strings.TrimSpace(string(raw))), &e); err != nil {
		t.Fatalf("not one JSON line: %s", raw)
	}
	if e["endpoint"] != "POST /api/v1/policy/explain" || e["role"] != "viewer" || e["status"] != 200.0 || e["results"] != 1.0 ||
		fmt.Sprint(e["params"]) != "map[resource:[secrets] user:[alice]]" {
		t.Errorf("the access log line: %v", e)
	}
}
