package falco

import (
	"encoding/json"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/kubetrail/kubetrail/internal/query"
	"github.com/kubetrail/kubetrail/internal/rules"
)

// prefilterRules reach every part of Prefilters: each translated field
// (empty meaning not available, and the annotations, where empty is a
// value), each operator with an empty and a non-empty value, lists with
// "", not over and and or, exceptions, rawtime, and checks left
// untranslated under not.
const prefilterRules = `
- list: users
  items: [admin, "", "system:anonymous"]
- macro: sys
  condition: ka.user.name startswith "system:"
- macro: never_true
  condition: (jevt.rawtime=0)
- rule: exists and not exists
  desc: d
  output: o
  priority: INFO
  source: k8s_audit
  condition: ka.target.subresource exists and not ka.impuser.name exists and not ka.target.namespace exists
- rule: eq empty
  desc: d
  output: o
  priority: INFO
  source: k8s_audit
  condition: ka.target.name="" or ka.auth.decision="" or not ka.verb!=""
- rule: ne
  desc: d
  output: o
  priority: INFO
  source: k8s_audit
  condition: ka.verb!=get and not ka.auth.decision!=allow and ka.target.namespace!=""
- rule: in with empty
  desc: d
  output: o
  priority: INFO
  source: k8s_audit
  condition: ka.user.name in (users) or ka.auth.decision in ("", forbid) or not ka.useragent in ("", curl)
- rule: prefixes
  desc: d
  output: o
  priority: INFO
  source: k8s_audit
  condition: (sys or ka.uri startswith "" or ka.auth.reason startswith "") and not ka.uri endswith "?verbose" and not ka.useragent contains "kube"
- rule: untranslated under not
  desc: d
  output: o
  priority: INFO
  source: k8s_audit
  condition: ka.verb=create and not (ka.user.name icontains ADMIN or ka.target.name glob "x*" or ka.user.groups intersects (dev)) and not jevt.value[/stage]=ResponseStarted
- rule: double not
  desc: d
  output: o
  priority: INFO
  source: k8s_audit
  condition: not (not ka.target.resource in (pods, secrets) or ka.user.name=admin) and not (ka.verb=get and not ka.auth.decision=allow)
- rule: never
  desc: d
  output: o
  priority: INFO
  source: k8s_audit
  condition: ka.verb=get and never_true
- rule: rawtime
  desc: d
  output: o
  priority: INFO
  source: k8s_audit
  condition: evt.rawtime < 1000000000 or evt.rawtime.ns=5
- rule: exceptions
  desc: d
  output: o
  priority: INFO
  source: k8s_audit
  condition: ka.verb in (create, delete)
  exceptions:
    - name: known
      fields: [ka.user.name, ka.target.namespace]
      comps: [startswith, "="]
      values:
        - ["system:", kube-system]
        - [admin, ""]
`

// prefilterEvents are events made of every value the rules above compare
// with, its neighbours and its absence, in random combinations (a fixed
// seed): parts missing, present and empty, annotations present with "",
// times at 1970, before it and where UnixNano wraps (to 0 in 2554).
func prefilterEvents(t *testing.T, n int) []*rules.Event {
	t.Helper()
	rnd := rand.New(rand.NewPCG(12, 1))
	pick := func(vs ...any) any { return vs[rnd.IntN(len(vs))] }
	const absent = "\x00absent"
	set := func(m map[string]any, k string, v any) {
		if v != absent {
			m[k] = v
		}
	}
	wrapMin := time.Unix(0, 0).Add(time.Duration(1<<63 - 1)).Add(time.Nanosecond) // UnixNano: 1<<63 wraps to the minimum
	wrapZero := time.Unix(18446744073, 709551616)                                 // 1<<64 ns: UnixNano wraps to 0
	if wrapZero.UnixNano() != 0 {
		t.Fatalf("%v: UnixNano %d", wrapZero, wrapZero.UnixNano())
	}
	var out []*rules.Event
	for range n {
		m := map[string]any{"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata", "auditID": "a", "stage": pick("ResponseComplete", "ResponseStarted")}
		user := map[string]any{}
		set(user, "username", pick(absent, "", "admin", "Admin", "system:anonymous", "system:kube-scheduler", "system:", "alice", "kubelet"))
		set(user, "groups", pick(absent, []string{"dev"}, []string{"ops", "system:authenticated"}))
		set(m, "user", pick(absent, user, user, user))
		set(m, "impersonatedUser", pick(absent, absent, map[string]any{}, map[string]any{"username": ""}, map[string]any{"username": "system:admin"}))
		set(m, "verb", pick(absent, "", "get", "create", "delete", "CREATE", "patch"))
		ref := map[string]any{}
		set(ref, "resource", pick(absent, "", "pods", "secrets", "Pods"))
		set(ref, "subresource", pick(absent, absent, "", "exec", "portforward"))
		set(ref, "namespace", pick(absent, "", "kube-system", "default"))
		set(ref, "name", pick(absent, "", "x1", "system:coredns", "app"))
		set(m, "objectRef", pick(absent, ref, ref, ref))
		set(m, "requestURI", pick(absent, "", "/healthz", "/healthz?verbose", "/api/v1/pods", "/livez?verbose"))
		set(m, "userAgent", pick(absent, "", "curl", "kubectl/v1.30", "kube-probe/1.30"))
		ann := map[string]any{}
		set(ann, "authorization.k8s.io/decision", pick(absent, "", "allow", "forbid"))
		set(ann, "authorization.k8s.io/reason", pick(absent, "", "RBAC: allowed"))
		set(m, "annotations", pick(absent, ann, ann))
		ts := pick("2026-03-01T10:00:00.5Z", "1970-01-01T00:00:00Z", "1970-01-01T00:00:00.000000005Z", "1970-01-01T00:00:00.9Z",
			"1969-12-31T23:59:59Z", wrapMin.UTC().Format(time.RFC3339Nano), wrapZero.UTC().Format(time.RFC3339Nano)).(string)
		set(m, "requestReceivedTimestamp", pick(absent, ts))
		set(m, "stageTimestamp", ts)
		line, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, event(t, string(line)))
	}
	return out
}

// TestPrefiltersHoldWhereRulesMatch: over Falco's own rules and rules
// written to reach every part of Prefilters, each check Prefilters
// translates exactly answers as the Falco check on every event, every
// event a rule matches matches its necessary filter, every event its
// sufficient filter matches is matched, and the real rules' filters rule
// events out.
// Mutations it catches: not returning the negated necessary filter as
// necessary (n and s not swapped); the != "" conjunct dropped; annotations
// taken as empty-is-missing; rawtime's filter without the wrapped years;
// an "in" list's "" kept for an annotation.
func TestPrefiltersHoldWhereRulesMatch(t *testing.T) {
	now := time.Now()
	real := loadOK(t, Options{Matching: MatchAll}, falcoRulesFile(t))
	own := loadOK(t, Options{Matching: MatchAll}, ruleFile("own.yaml", prefilterRules))
	events := prefilterEvents(t, 4000)
	exactChecks, checks := 0, 0
	var walk func(m matcher)
	walk = func(m matcher) {
		switch m := m.(type) {
		case andM:
			for _, k := range m {
				walk(k)
			}
		case orM:
			for _, k := range m {
				walk(k)
			}
		case notM:
			walk(m.m)
		case *checkM:
			checks++
			b, ok := m.exact(now)
			if !ok {
				return
			}
			exactChecks++
			f := compiled(t, b, now)
			for _, e := range events {
				c := &evalCtx{e: e, ev: e.Ev}
				if got, want := f(e), m.match(c); got != want {
					t.Fatalf("check %s %v %q: filter %v says %v, Falco %v on %s", m.f.text, m.op, m.lit, b.e, got, want, e.Raw)
				}
			}
		}
	}
	for _, ev := range []*Evaluator{real, own} {
		for _, r := range ev.rules {
			walk(r.m)
			n, s := bounds(r.m, now)
			nf, sf := compiled(t, n, now), compiled(t, s, now)
			matched, ruledOut := 0, 0
			for _, e := range events {
				m := r.m.match(&evalCtx{e: e, ev: e.Ev})
				switch {
				case m && !nf(e):
					t.Fatalf("rule %q matches %s, its necessary filter %v does not", r.name, e.Raw, n)
				case !m && sf(e):
					t.Fatalf("rule %q does not match %s, its sufficient filter %v does", r.name, e.Raw, s)
				case m:
					matched++
				case !nf(e):
					ruledOut++
				}
			}
			if ev == own && (matched == 0 || n.e != nil && ruledOut == 0) {
				t.Errorf("rule %q: %d matched, %d ruled out by %v: the events prove little", r.name, matched, ruledOut, n)
			}
		}
	}
	if exactChecks < 40 || exactChecks == checks {
		t.Fatalf("%d of %d checks translated exactly", exactChecks, checks)
	}
	fs, ok := real.Prefilters(now)
	if !ok || len(fs) == 0 {
		t.Fatalf("Falco's rules: prefilters %v, ok %v", fs, ok)
	}
}

// compiled is b as a function of an event.
func compiled(t *testing.T, b bound, now time.Time) func(*rules.Event) bool {
	t.Helper()
	if b.e == nil {
		return func(*rules.Event) bool { return b.k }
	}
	f, err := query.CompileExpr(b.e, now)
	if err != nil {
		t.Fatalf("%v: %v", b.e, err)
	}
	return func(e *rules.Event) bool { return f.Match(e.Ev, e.Cluster) }
}

// TestPrefiltersRefuse: a rule whose condition narrows nothing the
// filter language can say (only fields no filter reads, or all under
// not untranslated) makes Prefilters refuse; a rule that can never match
// needs no filter.
func TestPrefiltersRefuse(t *testing.T) {
	rule := func(cond string) string {
		return "- rule: r\n  desc: d\n  output: o\n  priority: INFO\n  source: k8s_audit\n  condition: " + yamlQuote(cond) + "\n"
	}
	for _, cond := range []string{
		"jevt.value[/stage]=ResponseComplete",
		"not ka.user.name icontains admin",
		"ka.verb=get or ka.req.pod.host_network intersects (true)",
		"ka.response.code=200",
		"ka.auth.decision exists",
		"not ka.auth.decision in (\"\", allow)",
		"evt.rawtime > 5",
		"ka.verb=val(ka.user.name)",
	} {
		ev := loadOK(t, Options{}, ruleFile("r.yaml", rule(cond)))
		if fs, ok := ev.Prefilters(time.Now()); ok {
			t.Errorf("%s: prefilters %v, want none", cond, fs)
		}
	}
	ev := loadOK(t, Options{}, ruleFile("r.yaml", rule("ka.verb=\"\" and jevt.rawtime exists")))
	if fs, ok := ev.Prefilters(time.Now()); !ok || len(fs) != 0 {
		t.Errorf("a rule that never matches: prefilters %v, ok %v; want none, ok", fs, ok)
	}
	if strings.Contains(prefilterRules, "\t") {
		t.Fatal("tabs in YAML")
	}
}
