package sigma

import (
	"strings"
	"testing"
	"time"
)

// prefilterRules are detections written to reach every part of
// Prefilters: case-insensitive and cased values, value lists, |all, codes
// as numbers and as strings, several searches, 1 of / all of, or and and,
// a search that can never match beside one that can.
var prefilterRules = []string{
	"s:\n  verb: DELETE\n  objectRef.resource: [SECRETS, configmaps]\ncondition: s",
	"s:\n  verb|cased: delete\n  objectRef.namespace: Production\ncondition: s",
	"s:\n  responseStatus.code: [401, '403']\ncondition: s",
	"a:\n  user.username: ADMIN\nb:\n  objectRef.subresource: Exec\ncondition: a or b",
	"a:\n  user.username: alice\nb:\n  verb: [get, list]\ncondition: all of them",
	"sel_a:\n  objectRef.apiGroup: RBAC.authorization.k8s.io\nsel_b:\n  stage: responsecomplete\ncondition: 1 of sel_*",
	"s:\n  - verb: create\n    objectRef.resource: pods\n  - userAgent: KUBECTL/v1\ncondition: s",
	"s:\n  verb|all: [get]\n  impersonatedUser.username: System:Admin\ncondition: s",
	"s:\n  verb: delete\n  hostPath: '*'\ncondition: s",
	"s:\n  verb: delete\nnever:\n  responseStatus.code: ALLOW\ncondition: s or never",
	"s:\n  verb: delete\n  requestURI|contains: secret\ncondition: s",
	"s:\n  stage|cased: [Custom, ResponseComplete]\n  verb: get\ncondition: s",
	"s:\n  stage|cased: responsecomplete\ncondition: s",
}

// prefilterEvents are events in every case of the values above, and some
// with none of them.
func prefilterEvents(t *testing.T) []*testEvent {
	var out []*testEvent
	cases := func(s string) []string {
		return []string{s, strings.ToUpper(s), title(s), "x" + s}
	}
	for _, verb := range cases("delete") {
		for _, res := range []string{"secrets", "SECRETS", "Secrets", "pods", "configmaps"} {
			for _, ns := range []string{"production", "PRODUCTION", "dev"} {
				out = append(out, &testEvent{"verb", verb, "objectRef.resource", res, "objectRef.namespace", ns})
			}
		}
	}
	for _, u := range append(cases("admin"), cases("alice")...) {
		for _, sub := range []string{"exec", "EXEC", "log"} {
			for _, code := range []float64{200, 401, 403} {
				out = append(out, &testEvent{"user.username", u, "objectRef.subresource", sub, "responseStatus.code", code, "verb", "get"})
			}
		}
	}
	for _, g := range []string{"rbac.authorization.k8s.io", "RBAC.AUTHORIZATION.K8S.IO", "apps"} {
		for _, st := range []string{"ResponseComplete", "RESPONSECOMPLETE", "RequestReceived"} {
			out = append(out, &testEvent{"objectRef.apiGroup", g, "stage", st})
		}
	}
	for _, ua := range []string{"kubectl/v1", "KubeCtl/V1", "kubectl/v2"} {
		out = append(out, &testEvent{"userAgent", ua, "verb", "create", "objectRef.resource", "pods"}, &testEvent{"userAgent", ua})
	}
	for _, as := range []string{"system:admin", "SYSTEM:ADMIN", "system:other"} {
		out = append(out, &testEvent{"impersonatedUser", map[string]any{"username": as}, "verb", "get"})
	}
	// Stages the filter language does not name: an event may hold any.
	for _, st := range []string{"Custom", "responsecomplete", "ResponseComplete", "RequestReceived"} {
		out = append(out, &testEvent{"stage", st, "verb", "get"})
	}
	// The Kelvin sign folds to k, as (?i) folds it.
	out = append(out, &testEvent{"userAgent", "\u212Aubectl/v1"})
	return out
}

type testEvent []any

func title(s string) string { return strings.ToUpper(s[:1]) + s[1:] }

// TestPrefiltersHoldWhereRulesMatch: for SigmaHQ's rules and rules written
// to reach every part of Prefilters, every event a rule matches matches
// its prefilter, and the prefilters rule some events out; a rule Prefilters
// cannot write a filter for (a not, a wildcard, a field no column holds)
// makes it refuse.
// Mutations it catches: values compared with case (no (?i)); a value list
// or an alternative of a search dropped; |all's values ORed when there is
// one; a string code skipped; a cased stage the filter language does not
// name dropped (or refused).
func TestPrefiltersHoldWhereRulesMatch(t *testing.T) {
	var all []*rule
	rs, probs := Load(sigmaHQFiles(t)...)
	for _, p := range probs {
		if !p.Warning {
			t.Fatal(p)
		}
	}
	all = append(all, rs.rules...)
	if _, ok := rs.Prefilters(time.Now()); !ok {
		t.Fatal("SigmaHQ's rules: no prefilters")
	}
	for _, d := range prefilterRules {
		all = append(all, compile(t, d).rules...)
	}
	events := prefilterEvents(t)
	checked := 0
	for _, r := range all {
		f, never, ok := r.prefilter(time.Now())
		if !ok {
			t.Fatalf("rule %s: no prefilter", r.info.Name)
		}
		ruledOut := 0
		for _, te := range events {
			e := event(t, (*te)...)
			matched := r.cond.eval(&state{e: e})
			if never && matched {
				t.Fatalf("rule %s said never to match, and matched %s", r.info.Name, e.Raw)
			}
			if never {
				continue
			}
			switch pre := f.Match(e.Ev, ""); {
			case matched && !pre:
				t.Fatalf("rule %s matches %s, its prefilter %s does not", r.info.Name, e.Raw, f)
			case matched:
				checked++
			case !pre:
				ruledOut++
			}
		}
		if !never && ruledOut == 0 {
			t.Errorf("rule %s: its prefilter %s rules out no event", r.info.Name, f)
		}
	}
	if checked < 50 {
		t.Fatalf("%d matches checked: the test proves little", checked)
	}
	for _, d := range []string{
		"s:\n  verb: delete\nf:\n  user.username: alice\ncondition: s or not f",
		"s:\n  verb: 'del*'\ncondition: s",
		"s:\n  requestURI: /api\ncondition: s",
		"s:\n  verb|contains: del\ncondition: s",
		"s:\n  - delete\ncondition: s",
		"s:\n  verb|exists: true\ncondition: s",
		"s:\n  responseStatus.code|gt: 400\ncondition: s",
	} {
		if f, ok := compile(t, d).Prefilters(time.Now()); ok {
			t.Errorf("%s\nprefilters %v, want none", d, f)
		}
	}
}
