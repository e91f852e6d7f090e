package native

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kubetrail/kubetrail/internal/audit"
	"github.com/kubetrail/kubetrail/internal/query"
	"github.com/kubetrail/kubetrail/internal/rules"
)

var t0 = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)

// ev builds an event: user, verb, resource[/subresource], namespace/name,
// code, seconds after t0; body is the requestObject (JSON) or "".
func ev(t *testing.T, id, user, verb, res, nsName string, code int, sec float64, body string) *rules.Event {
	t.Helper()
	resource, sub, _ := strings.Cut(res, "/")
	ns, name, _ := strings.Cut(nsName, "/")
	ts := t0.Add(time.Duration(sec * float64(time.Second)))
	obj := fmt.Sprintf(`{"resource":%q,"namespace":%q,"name":%q,"apiVersion":"v1"`, resource, ns, name)
	if sub != "" {
		obj += fmt.Sprintf(`,"subresource":%q`, sub)
	}
	obj += "}"
	raw := fmt.Sprintf(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Request","auditID":%q,"stage":"ResponseComplete","requestURI":"/x","verb":%q,"user":{"username":%q},"sourceIPs":["10.0.0.1"],"objectRef":%s,"responseStatus":{"metadata":{},"code":%d},`, id, verb, user, obj, code)
	if body != "" {
		raw += `"requestObject":` + body + `,`
	}
	raw += fmt.Sprintf(`"requestReceivedTimestamp":%q,"stageTimestamp":%q}`, ts.Format(time.RFC3339Nano), ts.Format(time.RFC3339Nano))
	e := &audit.Event{}
	if err := audit.DecodeStored([]byte(raw), e); err != nil {
		t.Fatalf("%s: %v", raw, err)
	}
	return &rules.Event{Ev: e, Raw: []byte(raw), Cluster: "prod"}
}

func load(t *testing.T, texts ...string) *Evaluator {
	t.Helper()
	var files []rules.File
	for i, s := range texts {
		files = append(files, rules.File{Name: fmt.Sprintf("r%d.yaml", i), Data: []byte(s)})
	}
	e, probs := Load(nil, files...)
	for _, p := range probs {
		t.Fatalf("%s", p)
	}
	return e
}

// fired runs events through e and returns "rule:id,id" per alert.
func fired(e *Evaluator, evs ...*rules.Event) []string {
	var out []string
	for _, x := range evs {
		for _, a := range e.Eval(x) {
			out = append(out, a.Rule+":"+strings.Join(a.AuditIDs, ","))
		}
	}
	return out
}

func TestSingleEventRules(t *testing.T) {
	e := load(t, `
- name: Exec
  severity: high
  description: exec, attach or port-forward, over SPDY (create) or WebSocket (get)
  condition: subresource in (exec,attach,portforward) verb in (create,get)
  tags: [T1609]
- name: Off
  enabled: false
  condition: verb=get
`)
	a := ev(t, "1", "alice", "get", "pods/exec", "prod/web", 101, 0, "")
	b := ev(t, "2", "alice", "create", "pods/exec", "prod/web", 101, 1, "")
	c := ev(t, "3", "alice", "get", "pods", "prod/web", 200, 2, "")
	if got := fired(e, a, b, c); !slices.Equal(got, []string{"Exec:1", "Exec:2"}) {
		t.Fatalf("fired %q", got)
	}
	al := e.Eval(a)[0]
	if al.Severity != rules.High || al.Source != rules.SourceKubetrail || al.User != "alice" || !al.Time.Equal(t0) || !slices.Equal(al.Tags, []string{"T1609"}) ||
		al.Message != "Exec: alice get pods/exec web in prod (101)" {
		t.Fatalf("alert %+v", al)
	}
}

// TestThreshold: 3 denials by one user within a minute fire once, with
// all three audit IDs; another user's denials count apart; events older
// than the window fall out.
// Mutations it catches: no window (the old denial counts), no grouping,
// firing on every event past the count.
func TestThreshold(t *testing.T) {
	e := load(t, `
- name: Denied burst
  condition: code in (401,403)
  threshold: {count: 3, window: 1m, by: [user]}
`)
	evs := []*rules.Event{
		ev(t, "a1", "alice", "get", "secrets", "prod/x", 403, 0, ""),
		ev(t, "a2", "alice", "get", "secrets", "prod/x", 403, 70, ""), // a1 is out of the window
		ev(t, "b1", "bob", "get", "secrets", "prod/x", 403, 71, ""),
		ev(t, "a3", "alice", "get", "secrets", "prod/x", 200, 72, ""), // not a denial
		ev(t, "a4", "alice", "get", "secrets", "prod/x", 403, 73, ""),
		ev(t, "b2", "bob", "get", "secrets", "prod/x", 403, 74, ""),
		ev(t, "a5", "alice", "get", "secrets", "prod/x", 403, 75, ""), // alice: a2 a4 a5
		ev(t, "a6", "alice", "get", "secrets", "prod/x", 403, 76, ""), // counting again from 1
	}
	if got := fired(e, evs...); !slices.Equal(got, []string{"Denied burst:a2,a4,a5"}) {
		t.Fatalf("fired %q", got)
	}
}

// TestSequence is the seed's incident: alice is denied, then someone binds
// her to cluster-admin, then alice reads a secret, within 30 minutes. The
// binding's step is grouped by the subject it names, not by who made it.
// Mutations it catches: steps out of order firing, the binding grouped by
// its author, no window.
func TestSequence(t *testing.T) {
	rule := `
- name: Denied, granted, then secrets
  severity: critical
  sequence:
    within: 30m
    by: user
    steps:
    - code=403
    - condition: resource in (clusterrolebindings,rolebindings) verb=create
      by: subject
    - resource=secrets verb in (get,list) code<400
`
	binding := `{"kind":"ClusterRoleBinding","subjects":[{"kind":"User","name":"alice"}],"roleRef":{"kind":"ClusterRole","name":"cluster-admin"}}`
	e := load(t, rule)
	got := fired(e,
		ev(t, "s0", "alice", "get", "secrets", "prod/db", 200, 0, ""), // a read before anything: no start
		ev(t, "d1", "alice", "list", "secrets", "prod/", 403, 10, ""),
		ev(t, "g1", "admin", "create", "clusterrolebindings", "/alice-admin", 201, 20, binding),
		ev(t, "r1", "alice", "get", "secrets", "prod/db", 200, 30, ""),
	)
	if !slices.Equal(got, []string{"Denied, granted, then secrets:d1,g1,r1"}) {
		t.Fatalf("fired %q", got)
	}
	// Too slow: the read comes 31 minutes after the denial.
	e = load(t, rule)
	got = fired(e,
		ev(t, "d1", "alice", "list", "secrets", "prod/", 403, 0, ""),
		ev(t, "g1", "admin", "create", "clusterrolebindings", "/alice-admin", 201, 20, binding),
		ev(t, "r1", "alice", "get", "secrets", "prod/db", 200, 31*60, ""),
	)
	if len(got) != 0 {
		t.Fatalf("outside the window fired %q", got)
	}
	// A binding naming someone else does not move alice on.
	e = load(t, rule)
	other := strings.Replace(binding, `"alice"`, `"carol"`, 1)
	got = fired(e,
		ev(t, "d1", "alice", "list", "secrets", "prod/", 403, 0, ""),
		ev(t, "g1", "admin", "create", "clusterrolebindings", "/carol-admin", 201, 20, other),
		ev(t, "r1", "alice", "get", "secrets", "prod/db", 200, 30, ""),
	)
	if len(got) != 0 {
		t.Fatalf("a binding of another user fired %q", got)
	}
}

// TestChanges: a later file disables, re-rates and adds an exception to a
// rule by name, and a file with an error changes nothing.
func TestChanges(t *testing.T) {
	base, probs := Load(nil, rules.File{Name: "builtin.yaml", Data: []byte(`
- name: Secret read
  severity: medium
  condition: resource=secrets verb=get
- name: Exec
  condition: subresource=exec
`)})
	if len(probs) > 0 {
		t.Fatal(probs)
	}
	e, probs := Load(base.Compiled(),
		rules.File{Name: "mine.yaml", Data: []byte(`
- name: Secret read
  severity: high
  except: user=system:serviceaccount:*
- name: Exec
  enabled: false
`)},
		rules.File{Name: "broken.yaml", Data: []byte(`
- name: Secret read
  enabled: false
- name: New
  condition: verb=nope(
`)})
	if len(probs) != 1 || probs[0].File != "broken.yaml" || probs[0].Line != 5 {
		t.Fatalf("problems %v", probs)
	}
	got := fired(e,
		ev(t, "1", "alice", "get", "secrets", "prod/x", 200, 0, ""),
		ev(t, "2", "system:serviceaccount:kube-system:x", "get", "secrets", "prod/x", 200, 1, ""),
		ev(t, "3", "alice", "get", "pods/exec", "prod/x", 101, 2, ""),
	)
	if !slices.Equal(got, []string{"Secret read:1"}) {
		t.Fatalf("fired %q", got)
	}
	if e.Eval(ev(t, "1", "alice", "get", "secrets", "prod/x", 200, 0, ""))[0].Severity != rules.High {
		t.Fatal("severity not changed")
	}
	// The base is untouched.
	if got := fired(base, ev(t, "3", "alice", "get", "pods/exec", "prod/x", 101, 2, "")); len(got) != 1 {
		t.Fatalf("changing a copy changed the base: %q", got)
	}
}

func TestLoadErrors(t *testing.T) {
	f := func(text, want string) {
		t.Helper()
		_, probs := Load(nil, rules.File{Name: "bad.yaml", Data: []byte(text)})
		var all []string
		for _, p := range probs {
			all = append(all, p.String())
		}
		if !strings.Contains(strings.Join(all, "\n"), want) {
			t.Errorf("problems %q, want %q", all, want)
		}
	}
	f("- name: x\n  conditon: verb=get\n", `bad.yaml:2:3: error: unknown key "conditon" in a rule (did you mean "condition"?)`)
	f("- name: x\n  condition: verb=get usr=alice\n", `bad.yaml:2:23: error: condition: unknown field "usr"`)
	f("- name: x\n  condition: verb=get\n  severity: urgent\n", `bad.yaml:3:13: error: severity "urgent": want one of info, low, medium, high, critical`)
	f("- name: x\n  condition: verb=get\n  threshold: {count: 0, window: 1m}\n", `bad.yaml:3:22: error: count "0"`)
	f("- name: x\n  condition: verb=get\n  threshold: {count: 2, window: soon}\n", `window "soon"`)
	f("- name: x\n  condition: verb=get\n  threshold: {count: 2, window: 1m, by: [usr]}\n", `unknown field "usr" to group by`)
	f("- name: x\n  sequence: {within: 1m, by: user, steps: [verb=get]}\n", `at least two conditions`)
	f("- name: x\n  enabled: false\n", `no rule named "x" to change`)
	f("- name: x\n  condition: verb=get\n- name: x\n  condition: verb=list\n", `bad.yaml:3:9: error: a rule named "x" is already loaded`)
	f("name: x\n", `a kubetrail rule file is a list of rules`)
	// A change may set only enabled, severity, except and tags: once on a
	// change entry was accepted and did nothing.
	f("- name: x\n  condition: verb=get\n- name: x\n  once: request\n", `bad.yaml:4:9: error: a change to rule "x" cannot set once`)
	// A key written twice: the first was used and the second ignored.
	f("- name: x\n  condition: verb=get\n  condition: verb=list\n", `bad.yaml:3:3: error: key "condition" appears twice in a rule`)
	f("- name: x\n  condition: verb=get\n  threshold: {count: 2, window: 1m, count: 5}\n", `bad.yaml:3:37: error: key "count" appears twice in threshold`)
	f("- name: x\n  condition: [\n", `bad.yaml:2: error: not YAML: yaml: line 2`)
}

// TestOncePerRequest: a request logged at ResponseStarted and
// ResponseComplete fires once; a request logged only at ResponseComplete
// (a policy omitting ResponseStarted) fires too; a second request reusing
// the first one's audit ID (the client chooses it) still fires.
// Mutation it catches: keying on the audit ID alone.
func TestOncePerRequest(t *testing.T) {
	e := load(t, `
- name: Exec
  condition: subresource=exec stage in (ResponseStarted,ResponseComplete)
  once: request
`)
	started := ev(t, "x", "alice", "get", "pods/exec", "prod/web", 101, 0, "")
	started.Ev.Stage = audit.StageResponseStarted
	complete := ev(t, "x", "alice", "get", "pods/exec", "prod/web", 101, 0, "")
	complete.Ev.StageTimestamp.Time = complete.Ev.StageTimestamp.Time.Add(time.Minute)
	reused := ev(t, "x", "alice", "get", "pods/exec", "prod/web", 101, 5, "") // received 5 s later
	only := ev(t, "y", "bob", "create", "pods/exec", "prod/web", 101, 9, "")
	if got := fired(e, started, complete, reused, only); !slices.Equal(got, []string{"Exec:x", "Exec:x", "Exec:y"}) {
		t.Fatalf("fired %q, want one per request", got)
	}
}

// TestFiltersCoverEveryAlert: every event an alert names matches one of
// the filters a store narrows with (Filters), for single-event, threshold
// and sequence rules; a disabled rule's events match none.
// Mutation it catches: leaving the sequence steps out of the filters
// (detect --data would then miss every sequence alert).
func TestFiltersCoverEveryAlert(t *testing.T) {
	e := load(t, `
- name: Exec
  condition: subresource=exec
- name: Burst
  condition: code=403
  threshold: {count: 2, window: 1m, by: [user]}
- name: Seq
  sequence:
    within: 30m
    by: user
    steps:
    - code=403 verb=list
    - condition: resource=clusterrolebindings verb=create
      by: subject
    - resource=secrets verb=get code<400
- name: Off
  enabled: false
  condition: verb=watch
`)
	binding := `{"kind":"ClusterRoleBinding","subjects":[{"kind":"User","name":"alice"}],"roleRef":{"kind":"ClusterRole","name":"x"}}`
	evs := []*rules.Event{
		ev(t, "d1", "alice", "list", "secrets", "prod/", 403, 0, ""),
		ev(t, "d2", "alice", "get", "pods", "prod/x", 403, 1, ""),
		ev(t, "g1", "admin", "create", "clusterrolebindings", "/x", 201, 2, binding),
		ev(t, "r1", "alice", "get", "secrets", "prod/db", 200, 3, ""),
		ev(t, "x1", "alice", "get", "pods/exec", "prod/web", 101, 4, ""),
	}
	filters := e.Filters()
	anyOf := func(ev *audit.Event) bool {
		return slices.ContainsFunc(filters, func(f *query.Filter) bool { return f.Match(ev, "prod") })
	}
	byID := map[string]*rules.Event{}
	for _, x := range evs {
		byID[x.Ev.AuditID] = x
	}
	alerted := 0
	for _, x := range evs {
		for _, a := range e.Eval(x) {
			for _, id := range a.AuditIDs {
				alerted++
				if !anyOf(byID[id].Ev) {
					t.Errorf("%s names %s, which no filter matches", a.Rule, id)
				}
			}
		}
	}
	if alerted < 6 {
		t.Fatalf("only %d events alerted on: the test proves little", alerted)
	}
	if anyOf(ev(t, "w", "alice", "watch", "pods", "prod/", 200, 5, "").Ev) {
		t.Error("a disabled rule's events match a filter")
	}
}

// TestSequenceLaterStartCompletes: the steps match in order within the
// window even when an earlier, now expired, first step started the group:
// alice is denied at 0 and again at 25 minutes, bound at 35, reads at 40.
// Denied at 25 -> bound at 35 -> read at 40 is 15 minutes, so the rule
// fires, naming the denial that started the run in time. Likewise a run
// that restarts after reaching a middle step (denied, bound, denied
// again, bound again, read) completes from the second denial.
// Mutation it catches: a group that keeps its first start time and
// ignores later first steps (the sequence was then missed whenever the
// user had been denied more than `within` before the grant).
func TestSequenceLaterStartCompletes(t *testing.T) {
	rule := `
- name: Denied, granted, then secrets
  sequence:
    within: 30m
    by: user
    steps:
    - code=403
    - condition: resource in (clusterrolebindings,rolebindings) verb=create
      by: subject
    - resource=secrets verb in (get,list) code<400
`
	binding := `{"kind":"ClusterRoleBinding","subjects":[{"kind":"User","name":"alice"}],"roleRef":{"kind":"ClusterRole","name":"cluster-admin"}}`
	e := load(t, rule)
	got := fired(e,
		ev(t, "d1", "alice", "list", "secrets", "prod/", 403, 0, ""),
		ev(t, "d2", "alice", "list", "secrets", "prod/", 403, 25*60, ""),
		ev(t, "g1", "admin", "create", "clusterrolebindings", "/alice-admin", 201, 35*60, binding),
		ev(t, "r1", "alice", "get", "secrets", "prod/db", 200, 40*60, ""),
	)
	if !slices.Equal(got, []string{"Denied, granted, then secrets:d2,g1,r1"}) {
		t.Fatalf("a run started by a later denial: fired %q, want d2,g1,r1", got)
	}
	e = load(t, rule)
	got = fired(e,
		ev(t, "d1", "alice", "list", "secrets", "prod/", 403, 0, ""),
		ev(t, "g1", "admin", "create", "clusterrolebindings", "/alice-admin", 201, 5*60, binding),
		ev(t, "d2", "alice", "list", "secrets", "prod/", 403, 20*60, ""),
		ev(t, "g2", "admin", "create", "clusterrolebindings", "/alice-admin", 201, 25*60, binding),
		ev(t, "r1", "alice", "get", "secrets", "prod/db", 200, 35*60, ""),
	)
	if !slices.Equal(got, []string{"Denied, granted, then secrets:d2,g2,r1"}) {
		t.Fatalf("a run restarted after a middle step: fired %q, want d2,g2,r1", got)
	}
	// Still no alert when no run fits the window.
	e = load(t, rule)
	got = fired(e,
		ev(t, "d1", "alice", "list", "secrets", "prod/", 403, 0, ""),
		ev(t, "d2", "alice", "list", "secrets", "prod/", 403, 25*60, ""),
		ev(t, "g1", "admin", "create", "clusterrolebindings", "/alice-admin", 201, 26*60, binding),
		ev(t, "r1", "alice", "get", "secrets", "prod/db", 200, 57*60, ""),
	)
	if len(got) != 0 {
		t.Fatalf("a run longer than within fired %q", got)
	}
}

// TestThresholdEventsOutOfOrder: events read out of time order (two API
// servers' logs, a late batch) count only when they fall within the
// window of each other: a denial at 0:05 then one read later but stamped
// 0:00:30 are 4.5 minutes apart, not two in a minute. An event exactly a
// window after another is within it (the window is inclusive), and the
// alert names the events in time order.
// Mutation it catches: measuring the window back from the event just
// read instead of the newest one (the late event kept the old one in).
func TestThresholdEventsOutOfOrder(t *testing.T) {
	rule := `
- name: Denied burst
  condition: code in (401,403)
  threshold: {count: 2, window: 1m, by: [user]}
`
	e := load(t, rule)
	got := fired(e,
		ev(t, "a1", "alice", "get", "secrets", "prod/x", 403, 300, ""),
		ev(t, "a2", "alice", "get", "secrets", "prod/x", 403, 30, ""),
	)
	if len(got) != 0 {
		t.Fatalf("two denials 4.5 minutes apart fired %q", got)
	}
	e = load(t, rule)
	got = fired(e,
		ev(t, "a1", "alice", "get", "secrets", "prod/x", 403, 60, ""),
		ev(t, "a2", "alice", "get", "secrets", "prod/x", 403, 30, ""),
	)
	if !slices.Equal(got, []string{"Denied burst:a2,a1"}) {
		t.Fatalf("two denials 30 s apart, read out of order: fired %q, want a2,a1", got)
	}
	e = load(t, rule)
	got = fired(e,
		ev(t, "a1", "alice", "get", "secrets", "prod/x", 403, 0, ""),
		ev(t, "a2", "alice", "get", "secrets", "prod/x", 403, 60, ""),
	)
	if !slices.Equal(got, []string{"Denied burst:a1,a2"}) {
		t.Fatalf("two denials exactly a window apart: fired %q, want a1,a2", got)
	}
}

// TestSequenceWindowEdge: a last step exactly `within` after the first
// completes the sequence (the window is inclusive, as a threshold's);
// a microsecond later it does not.
// Mutation it catches: expiring a run at `within` (>= for >).
func TestSequenceWindowEdge(t *testing.T) {
	rule := `
- name: Denied then read
  sequence:
    within: 10m
    by: user
    steps:
    - code=403
    - resource=secrets code<400
`
	for _, c := range []struct {
		sec  float64
		want int
	}{{600, 1}, {600.000001, 0}} {
		e := load(t, rule)
		got := fired(e,
			ev(t, "d1", "alice", "list", "secrets", "prod/", 403, 0, ""),
			ev(t, "r1", "alice", "get", "secrets", "prod/db", 200, c.sec, ""),
		)
		if len(got) != c.want {
			t.Errorf("last step %v s after the first: fired %q, want %d alert(s)", c.sec, got, c.want)
		}
	}
}

// TestSequenceStepReadLateButStampedEarly: an event read after a run
// started but stamped more than `within` before its start (a late batch,
// an older log file read after a newer one) does not move the run on: a
// binding made two hours before alice was denied is not "denied, then
// granted". One stamped a little earlier (API servers' clocks, batches
// interleaved) still does.
// Mutation it catches: measuring only how long after the start a step
// comes (a step before the start always joined).
func TestSequenceStepReadLateButStampedEarly(t *testing.T) {
	rule := `
- name: Denied, granted, then secrets
  sequence:
    within: 30m
    by: user
    steps:
    - code=403
    - condition: resource in (clusterrolebindings,rolebindings) verb=create
      by: subject
    - resource=secrets verb in (get,list) code<400
`
	binding := `{"kind":"ClusterRoleBinding","subjects":[{"kind":"User","name":"alice"}],"roleRef":{"kind":"ClusterRole","name":"cluster-admin"}}`
	for _, c := range []struct {
		grantSec float64
		want     int
	}{{0, 0}, {2*3600 - 2, 1}} {
		e := load(t, rule)
		got := fired(e,
			ev(t, "d1", "alice", "list", "secrets", "prod/", 403, 2*3600, ""),
			ev(t, "g1", "admin", "create", "clusterrolebindings", "/alice-admin", 201, c.grantSec, binding),
			ev(t, "r1", "alice", "get", "secrets", "prod/db", 200, 2*3600+300, ""),
		)
		if len(got) != c.want {
			t.Errorf("a grant stamped %v s before the denial, read after it: fired %q, want %d alert(s)", 2*3600-c.grantSec, got, c.want)
		}
	}
}

// TestEventWithoutStageTimestamp: an event the decoder accepts with only
// requestReceivedTimestamp has that time, as Sigma's and Falco's alerts
// give it (audit.Event.Time): the alert's time is not year 1, and a
// threshold measures its window with it.
// Mutation it catches: reading stageTimestamp alone (the alert said
// 0001-01-01 and such events all fell in one window).
func TestEventWithoutStageTimestamp(t *testing.T) {
	e := load(t, `
- name: Denied
  condition: code=403
- name: Denied burst
  condition: code=403
  threshold: {count: 2, window: 1m, by: [user]}
`)
	noStage := func(id string, sec float64) *rules.Event {
		x := ev(t, id, "alice", "get", "secrets", "prod/x", 403, sec, "")
		x.Ev.StageTimestamp = audit.MicroTime{}
		return x
	}
	a := e.Eval(noStage("a1", 0))
	if len(a) != 1 || !a[0].Time.Equal(t0) {
		t.Fatalf("alerts %+v, want one at %s", a, t0)
	}
	if got := fired(e, noStage("a2", 3600)); !slices.Equal(got, []string{"Denied:a2"}) {
		t.Errorf("two events an hour apart, without stageTimestamp: fired %q, want no burst", got)
	}
}

// TestSequenceCompletesSeveralKeys: one binding naming alice and bob,
// both denied before, completes both their runs: each is an alert. A run
// completed under two keys with the same events (alice and her group,
// keyed by member) is one alert.
// Mutation it catches: keeping only the first completed run (one alert
// for the binding, bob's run lost).
func TestSequenceCompletesSeveralKeys(t *testing.T) {
	rule := `
- name: Denied then granted
  sequence:
    within: 30m
    by: user
    steps:
    - code=403
    - condition: resource=clusterrolebindings verb=create
      by: subject
`
	binding := `{"kind":"ClusterRoleBinding","subjects":[{"kind":"User","name":"alice"},{"kind":"User","name":"bob"}],"roleRef":{"kind":"ClusterRole","name":"cluster-admin"}}`
	e := load(t, rule)
	got := fired(e,
		ev(t, "d1", "alice", "list", "secrets", "prod/", 403, 0, ""),
		ev(t, "d2", "bob", "list", "secrets", "prod/", 403, 10, ""),
		ev(t, "g1", "admin", "create", "clusterrolebindings", "/both-admin", 201, 20, binding),
	)
	slices.Sort(got)
	if want := []string{"Denied then granted:d1,g1", "Denied then granted:d2,g1"}; !slices.Equal(got, want) {
		t.Fatalf("fired %q, want %q", got, want)
	}

	member := `
- name: Denied then changed
  sequence:
    within: 30m
    by: member
    steps:
    - code=403
    - verb=delete
`
	e = load(t, member)
	deny := ev(t, "d1", "alice", "list", "secrets", "prod/", 403, 0, "")
	deny.Ev.User.Groups = []string{"devs"}
	del := ev(t, "x1", "alice", "delete", "pods", "prod/web", 200, 10, "")
	del.Ev.User.Groups = []string{"devs"}
	if got := fired(e, deny, del); !slices.Equal(got, []string{"Denied then changed:d1,x1"}) {
		t.Fatalf("one run under two keys fired %q, want it once", got)
	}
}
