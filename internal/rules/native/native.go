// Package native loads kubetrail's own detection rules: YAML whose
// conditions are written in the filter language of `kubetrail query`
// (docs/query.md), with thresholds over time windows and sequences of
// steps (docs/detection.md, "kubetrail rules"). The built-in pack is
// written in it.
package native

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/kubetrail/kubetrail/internal/audit"
	"github.com/kubetrail/kubetrail/internal/query"
	"github.com/kubetrail/kubetrail/internal/rules"
)

// Rule is one compiled rule.
type Rule struct {
	Name        string
	Description string
	Severity    rules.Severity
	Tags        []string
	Enabled     bool
	// Condition selects the events of a single-event or threshold rule.
	Condition *query.Filter
	// Except, when set, removes the events it matches (a tuning added by
	// an override).
	Except    []*query.Filter
	Threshold *Threshold
	Sequence  *Sequence
	// OncePerRequest makes a single-event rule fire once per request: at
	// the first of its stages that matches (ResponseStarted when the
	// policy logs it, else ResponseComplete). A request is known by its
	// audit ID, receive time and user together: the audit ID alone is the
	// client's to choose, and an attacker reusing one must not silence
	// the rule.
	OncePerRequest bool
	File           string
	Line           int
}

// Threshold fires when Count matching events with the same values of By
// fall within Window of event time.
type Threshold struct {
	Count  int
	Window time.Duration
	By     []Key
}

// Sequence fires when its steps match in order, within Within of event
// time from the first step, for events whose keys agree: each step names
// the key it is grouped by (By, or the step's own By).
type Sequence struct {
	Within time.Duration
	Steps  []Step
}

// Step is one step of a sequence.
type Step struct {
	Condition *query.Filter
	By        Key
}

// Key is what events are grouped by: a field of the filter language,
// "subject", the users and groups a (Cluster)RoleBinding's request body
// names (a ServiceAccount as system:serviceaccount:NS:NAME), or "member",
// the user and each group the user is in: a step keyed by member meets a
// step keyed by subject when the binding named the user or one of their
// groups.
type Key struct {
	Name  string
	field query.Field
}

// values returns the key's values in an event, reading a lazy event when
// it lacks the field; ok is false when it cannot be read.
func (k Key) values(e *rules.Event) (vals []string, ok bool) {
	switch k.Name {
	case "subject":
		if !e.Load() {
			return nil, false
		}
		return bindingSubjects(e.Raw), true
	case "member":
		u := e.Ev.User
		if !(e.Has("user") && e.Has("group")) {
			if u, ok = e.User(); !ok {
				return nil, false
			}
		}
		if u.Username != "" {
			vals = append(vals, u.Username)
		}
		return append(vals, u.Groups...), true
	}
	if !e.Has(k.field.Name) && !e.Load() {
		return nil, false
	}
	return query.FieldValues(k.field, e.Ev, e.Cluster), true
}

func parseKey(name string) (Key, error) {
	if name == "subject" || name == "member" {
		return Key{Name: name}, nil
	}
	f, ok := query.LookupField(name)
	if !ok {
		return Key{}, fmt.Errorf("unknown field %q to group by (a field of the filter language, subject or member)", name)
	}
	return Key{Name: name, field: f}, nil
}

// Evaluator runs native rules. It is safe for concurrent use; threshold
// and sequence rules keep state across calls, so events must be given in
// time order (as the store gives them) for their windows to mean what
// they say.
type Evaluator struct {
	rules []*Rule
	// filters are the enabled rules' conditions, sequence steps and
	// excepts, each once (Filters); refs say where each rule's are.
	filters []*query.Filter
	refs    []filterRefs
	mu      sync.Mutex
	state   []*ruleState
	seen    []*requestSet // per rule with OncePerRequest
}

// filterRefs are the indexes of a rule's filters in Evaluator.filters.
type filterRefs struct {
	cond    int // -1 for a sequence
	steps   []int
	excepts []int
}

func newEvaluator(ruleset []*Rule) *Evaluator {
	ev := &Evaluator{rules: ruleset, refs: make([]filterRefs, len(ruleset)),
		state: make([]*ruleState, len(ruleset)), seen: make([]*requestSet, len(ruleset))}
	add := func(f *query.Filter) int {
		ev.filters = append(ev.filters, f)
		return len(ev.filters) - 1
	}
	for i, r := range ruleset {
		if !r.Enabled {
			continue
		}
		ref := filterRefs{cond: -1}
		if r.Sequence != nil {
			for _, st := range r.Sequence.Steps {
				ref.steps = append(ref.steps, add(st.Condition))
			}
		} else {
			ref.cond = add(r.Condition)
		}
		for _, x := range r.Except {
			ref.excepts = append(ref.excepts, add(x))
		}
		ev.refs[i] = ref
	}
	return ev
}

// Filters returns every filter the enabled rules test (conditions,
// sequence steps, excepts), in the order of a lazy event's Known: a store
// decides what it can of them on its columns, and gives only the events
// that may match one of them.
func (ev *Evaluator) Filters() []*query.Filter { return ev.filters }

// WillRead reports whether Eval will surely read a lazy event whole,
// given what the store decided of Filters (known): some rule's condition
// or a sequence step is undecided, or a rule's condition or a sequence's
// first step matches and no except rules it out (an alert, a threshold or
// a sequence reads the event). A store reads those events ahead; a wrong
// guess costs time, never an answer.
func (ev *Evaluator) WillRead(known []int8) bool {
	excepted := func(xs []int) bool {
		return slices.ContainsFunc(xs, func(x int) bool { return known[x] > 0 })
	}
	for i, r := range ev.rules {
		if !r.Enabled {
			continue
		}
		ref := &ev.refs[i]
		first := ref.cond
		if r.Sequence != nil {
			first = ref.steps[0]
			if slices.ContainsFunc(ref.steps, func(j int) bool { return known[j] == 0 }) {
				return true
			}
		}
		if k := known[first]; k == 0 || (k > 0 && !excepted(ref.excepts)) {
			return true
		}
	}
	return false
}

// KeyFields returns the fields (canonical names) the enabled rules group
// events by, which a lazy event should hold: with them, an event that
// matches a later step of a sequence nobody has started is passed over
// unread.
func (ev *Evaluator) KeyFields() []string {
	var out []string
	addField := func(name string) {
		if !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	add := func(k Key) {
		switch k.Name {
		case "subject":
		case "member":
			addField("user")
			addField("group")
		default:
			addField(k.field.Name)
		}
	}
	for _, r := range ev.rules {
		switch {
		case !r.Enabled:
		case r.Threshold != nil:
			for _, k := range r.Threshold.By {
				add(k)
			}
		case r.Sequence != nil:
			for _, st := range r.Sequence.Steps {
				add(st.By)
			}
		}
	}
	return out
}

var _ rules.Evaluator = (*Evaluator)(nil)

// Rules describes the rules, in order.
func (ev *Evaluator) Rules() []rules.RuleInfo {
	out := make([]rules.RuleInfo, 0, len(ev.rules))
	for _, r := range ev.rules {
		out = append(out, rules.RuleInfo{Name: r.Name, Source: rules.SourceKubetrail, Severity: r.Severity,
			Description: r.Description, Tags: r.Tags, Enabled: r.Enabled, File: r.File, Line: r.Line})
	}
	return out
}

// Memory returns how far back in event time the rules' state reaches: the
// longest threshold window or sequence, and for rules that alert once per
// request, the time a request's stages take (requestMemory). Replaying
// the events of that span before a point rebuilds the state the rules had
// there, so alerts after it are the ones an uninterrupted run raises.
func (ev *Evaluator) Memory() time.Duration {
	var d time.Duration
	for _, r := range ev.rules {
		switch {
		case !r.Enabled:
		case r.Threshold != nil:
			d = max(d, r.Threshold.Window)
		case r.Sequence != nil:
			d = max(d, r.Sequence.Within)
		case r.OncePerRequest:
			d = max(d, requestMemory)
		}
	}
	return d
}

// Compiled returns the compiled rules, in order.
func (ev *Evaluator) Compiled() []*Rule { return ev.rules }

// Eval returns the alerts e raises. A lazy event (e.Lazy) is read only
// when a rule needs more than the store decided: a condition it could
// not, a threshold's or a sequence's state, an alert. When it cannot be
// read, Eval stops and e.Lazy.Err says why.
func (ev *Evaluator) Eval(e *rules.Event) []rules.Alert {
	var out []rules.Alert
	for i, r := range ev.rules {
		if !r.Enabled {
			continue
		}
		ref := &ev.refs[i]
		if e.Lazy != nil && ref.ruledOut(e.Lazy.Known) {
			continue // before sequence takes the lock
		}
		if r.Sequence != nil {
			if runs := ev.sequence(i, r, e); len(runs) > 0 && e.Load() {
				for _, ids := range runs {
					out = append(out, alert(r, e, ids))
				}
			}
		} else if ev.matches(ref.cond, ref.excepts, e) && e.Load() {
			switch {
			case r.Threshold != nil:
				if ids, ok := ev.threshold(i, r, e); ok {
					out = append(out, alert(r, e, ids))
				}
			case !r.OncePerRequest || ev.firstTime(i, e):
				out = append(out, alert(r, e, []string{e.Ev.AuditID}))
			}
		}
		if e.Lazy != nil && e.Lazy.Err != nil {
			return out
		}
	}
	return out
}

// ruledOut reports whether the store decided that the event matches none
// of the rule's condition or steps: the rule has nothing to do with it.
func (f *filterRefs) ruledOut(known []int8) bool {
	if f.cond >= 0 {
		return known[f.cond] < 0
	}
	for _, j := range f.steps {
		if known[j] >= 0 {
			return false
		}
	}
	return true
}

// test reports whether e matches filter j, from what the store decided
// when it can, else from the event, read for it.
func (ev *Evaluator) test(j int, e *rules.Event) bool {
	if k := e.Known(j); k != 0 {
		return k > 0
	}
	return e.Load() && ev.filters[j].Match(e.Ev, e.Cluster)
}

// matches reports whether e matches filter cond and none of excepts.
func (ev *Evaluator) matches(cond int, excepts []int, e *rules.Event) bool {
	if !ev.test(cond, e) {
		return false
	}
	for _, x := range excepts {
		if ev.test(x, e) {
			return false
		}
	}
	return true
}

// alert builds the alert of r about the events ids, the last of which is e.
func alert(r *Rule, e *rules.Event, ids []string) rules.Alert {
	a := rules.Alert{
		Rule: r.Name, Severity: r.Severity, Source: rules.SourceKubetrail, AuditIDs: ids,
		User: e.Ev.User.Username, Time: e.Ev.Time().UTC(), Tags: r.Tags, Cluster: e.Cluster,
	}
	if e.Ev.ImpersonatedUser != nil {
		a.ImpersonatedUser = e.Ev.ImpersonatedUser.Username
	}
	if e.Ev.ObjectRef != nil {
		a.Namespace = e.Ev.ObjectRef.Namespace
	}
	a.Message = r.Name + ": " + summary(e.Ev)
	if len(ids) > 1 {
		a.Message += fmt.Sprintf(" (the last of %d events)", len(ids))
	}
	return a
}

// summary says who did what to what, with the answer, in one line.
func summary(ev *audit.Event) string {
	var b strings.Builder
	user := ev.User.Username
	if user == "" {
		user = "(unauthenticated)"
	}
	b.WriteString(user)
	if ev.ImpersonatedUser != nil {
		b.WriteString(" as " + ev.ImpersonatedUser.Username)
	}
	b.WriteString(" " + ev.Verb + " ")
	if o := ev.ObjectRef; o != nil {
		b.WriteString(o.Resource)
		if o.Subresource != "" {
			b.WriteString("/" + o.Subresource)
		}
		if o.Name != "" {
			b.WriteString(" " + o.Name)
		}
		if o.Namespace != "" {
			b.WriteString(" in " + o.Namespace)
		}
	} else {
		b.WriteString(ev.RequestURI)
	}
	if ev.ResponseStatus != nil && ev.ResponseStatus.Code != 0 {
		fmt.Fprintf(&b, " (%d)", ev.ResponseStatus.Code)
	}
	return b.String()
}

// requestMemory is how long a request's stages are assumed to take, for
// Memory: a request that started longer before a restart than this and
// ends after it (a long exec session) may alert again as it ends.
const requestMemory = 5 * time.Minute

// requestSet remembers the requests a rule fired for, the newest maxKeys.
type requestSet struct {
	set  map[string]struct{}
	ring []string
	next int
}

// firstTime reports whether rule i has not fired for e's request yet, and
// remembers that it now has.
func (ev *Evaluator) firstTime(i int, e *rules.Event) bool {
	key := fmt.Sprintf("%s\x00%d\x00%s", e.Ev.AuditID, e.Ev.RequestReceivedTimestamp.Time.UnixMicro(), e.Ev.User.Username)
	ev.mu.Lock()
	defer ev.mu.Unlock()
	s := ev.seen[i]
	if s == nil {
		s = &requestSet{set: map[string]struct{}{}, ring: make([]string, 0, 1024)}
		ev.seen[i] = s
	}
	if _, ok := s.set[key]; ok {
		return false
	}
	if len(s.ring) < maxKeys {
		s.ring = append(s.ring, key)
	} else {
		delete(s.set, s.ring[s.next])
		s.ring[s.next] = key
		s.next = (s.next + 1) % maxKeys
	}
	s.set[key] = struct{}{}
	return true
}

// maxKeys bounds the groups a threshold or sequence rule remembers; past
// it the group seen longest ago is forgotten.
const maxKeys = 1 << 16

type ruleState struct {
	groups map[string]*group
	// odd counts the keys of groups that are empty or hold a control
	// byte, which a store's joined groups column cannot rule out
	// (mayBeMember).
	odd int
}

// drop forgets key's group.
func (st *ruleState) drop(key string) {
	if _, ok := st.groups[key]; ok && oddKey(key) {
		st.odd--
	}
	delete(st.groups, key)
}

// oddKey says whether key is empty or holds a control byte.
func oddKey(key string) bool {
	return key == "" || strings.ContainsFunc(key, func(r rune) bool { return r < 0x20 })
}

// mayBeMember reports whether a lazy event's user or one of its groups
// may have a run of rule i under way, from its user column and the
// store's joined groups column (rules.Lazy.Groups), without reading the
// event: false only when none can. A group holding the column's
// separator is split by it, and [""] reads as []: while a key that is
// empty or holds a control byte is under way, every event may be one.
// Reading each change's text for its groups, while any run was under
// way, took most of detect's time over a store.
func (ev *Evaluator) mayBeMember(i int, e *rules.Event) bool {
	l := e.Lazy
	if l == nil || l.Groups == nil || !e.Has("user") || e.Has("group") {
		return true
	}
	st := ev.state[i]
	if st == nil || st.odd > 0 || st.groups[e.Ev.User.Username] != nil {
		return true
	}
	joined, sep, ok := l.Groups()
	if !ok || sep >= 0x20 {
		return true
	}
	for g := range strings.SplitSeq(joined, string(sep)) {
		if st.groups[g] != nil {
			return true
		}
	}
	return false
}

// group is what a rule remembers of one key: the times and audit IDs of
// the events in the window (threshold), or the runs of a sequence under
// way (runs[k]: the run that has matched steps 0 to k).
type group struct {
	times []time.Time
	ids   []string
	runs  []*run
	last  time.Time
}

// run is a sequence under way: when its first step matched, and the audit
// IDs of the events its steps matched. Of the runs that reached a step, a
// group keeps only the one that started latest: it has the most time left
// to complete, so it completes whenever any of them would (a user denied
// again and again starts a new run each time, and the one that fits the
// window is found).
type run struct {
	start time.Time
	ids   []string
}

func (ev *Evaluator) groupOf(i int, key string, now time.Time) *group {
	st := ev.state[i]
	if st == nil {
		st = &ruleState{groups: map[string]*group{}}
		ev.state[i] = st
	}
	g := st.groups[key]
	if g == nil {
		if len(st.groups) >= maxKeys {
			// found, not oldest == "": the empty key is a key (events
			// without the field grouped by, such as a 401's user).
			var oldest string
			var t time.Time
			found := false
			for k, og := range st.groups {
				if !found || og.last.Before(t) {
					oldest, t, found = k, og.last, true
				}
			}
			st.drop(oldest)
		}
		g = &group{}
		st.groups[key] = g
		if oddKey(key) {
			st.odd++
		}
	}
	g.last = now
	return g
}

func (ev *Evaluator) threshold(i int, r *Rule, e *rules.Event) ([]string, bool) {
	t := r.Threshold
	key, ok := joinKeys(t.By, e)
	if !ok || !e.Load() {
		return nil, false
	}
	now := e.Ev.Time()
	ev.mu.Lock()
	defer ev.mu.Unlock()
	g := ev.groupOf(i, key, now)
	// Events may be read out of time order (two API servers' logs, a late
	// batch): keep the window's events in time order and measure it back
	// from the newest, so that only events within Window of each other
	// count together.
	at := len(g.times)
	for at > 0 && g.times[at-1].After(now) {
		at--
	}
	g.times = slices.Insert(g.times, at, now)
	g.ids = slices.Insert(g.ids, at, e.Ev.AuditID)
	newest := g.times[len(g.times)-1]
	drop := 0
	for drop < len(g.times) && newest.Sub(g.times[drop]) > t.Window {
		drop++
	}
	g.times, g.ids = g.times[drop:], g.ids[drop:]
	if len(g.times) < t.Count {
		return nil, false
	}
	ids := g.ids
	// One alert per burst: the next needs Count new events.
	g.times, g.ids = nil, nil
	return ids, true
}

// sequence moves rule i's groups on with e. A group exists only while
// its sequence is under way: the first step starts it, and it is
// forgotten when it completes or its runs' time runs out. So an event that
// matches a later step of a key with no group is passed over without its
// time, and a lazy event is then not read. It returns the audit IDs of
// every run e completed: one per key (a binding naming two users each
// denied before completes two runs, and each is an alert), but a run
// completed under two keys with the same events (a user and their group,
// keyed by member) only once.
func (ev *Evaluator) sequence(i int, r *Rule, e *rules.Event) [][]string {
	s := r.Sequence
	ref := &ev.refs[i]
	ev.mu.Lock()
	defer ev.mu.Unlock()
	// An event may move several groups on (one per value of the step's
	// key), and may both start a run and move another on. Steps are tried
	// from the last so that one event never matches two steps of one run.
	var fired [][]string
	last := len(s.Steps) - 1
	for step := last; step >= 0; step-- {
		st := s.Steps[step]
		if step > 0 && ev.idle(i) {
			continue // nothing under way: no key to read (a lazy event stays unread)
		}
		if !ev.matches(ref.steps[step], ref.excepts, e) {
			continue
		}
		if step > 0 && st.By.Name == "member" && !ev.mayBeMember(i, e) {
			continue // none of its member values has a run under way
		}
		keys, ok := st.By.values(e)
		if !ok {
			return nil
		}
		for _, k := range keys {
			g := ev.group(i, k)
			if g == nil && step > 0 {
				continue
			}
			if !e.Load() {
				return nil
			}
			now := e.Ev.Time()
			if g == nil {
				g = ev.groupOf(i, k, now)
				g.runs = make([]*run, last)
			}
			g.last = now
			live := false
			for j, ru := range g.runs {
				if ru != nil && now.Sub(ru.start) > s.Within {
					g.runs[j] = nil
				}
				live = live || g.runs[j] != nil
			}
			next := &run{start: now, ids: []string{e.Ev.AuditID}}
			if step > 0 {
				prev := g.runs[step-1]
				if prev != nil && prev.start.Sub(now) > s.Within {
					// Read after the run started, but stamped more than
					// within before it (a late batch, an older file):
					// it did not happen in the run's window.
					prev = nil
				}
				if prev == nil {
					if !live {
						ev.forget(i, k)
					}
					continue
				}
				next = &run{start: prev.start, ids: append(slices.Clip(prev.ids), e.Ev.AuditID)}
			}
			if step == last {
				if !slices.ContainsFunc(fired, func(ids []string) bool { return slices.Equal(ids, next.ids) }) {
					fired = append(fired, next.ids)
				}
				ev.forget(i, k)
				continue
			}
			if cur := g.runs[step]; cur == nil || !next.start.Before(cur.start) {
				g.runs[step] = next
			}
		}
	}
	return fired
}

// idle reports whether rule i has no sequence under way.
func (ev *Evaluator) idle(i int) bool {
	st := ev.state[i]
	return st == nil || len(st.groups) == 0
}

// group returns rule i's group of key, or nil.
func (ev *Evaluator) group(i int, key string) *group {
	if st := ev.state[i]; st != nil {
		return st.groups[key]
	}
	return nil
}

// forget drops rule i's group of key.
func (ev *Evaluator) forget(i int, key string) {
	if st := ev.state[i]; st != nil {
		st.drop(key)
	}
}

// joinKeys returns the group key of e for fields by; ok is false when e
// cannot be read. A field e does not have counts as the empty value:
// events without it have equal values (a 401 has no user, and the
// failed authentications of one client address are one burst).
func joinKeys(by []Key, e *rules.Event) (string, bool) {
	if len(by) == 0 {
		return "", true
	}
	var b strings.Builder
	for i, k := range by {
		vals, ok := k.values(e)
		if !ok {
			return "", false
		}
		if i > 0 {
			b.WriteByte(0)
		}
		b.WriteString(strings.Join(vals, ","))
	}
	return b.String(), true
}

// bindingSubjects reads requestObject.subjects of a (Cluster)RoleBinding
// from an event's stored bytes, as the usernames the API server gives
// them.
func bindingSubjects(raw []byte) []string {
	var ev struct {
		RequestObject struct {
			Subjects []struct {
				Kind, Name, Namespace string
			}
		}
	}
	if !bytes.Contains(raw, []byte(`"subjects"`)) || unmarshalLoose(raw, &ev) != nil {
		return nil
	}
	var out []string
	for _, s := range ev.RequestObject.Subjects {
		switch s.Kind {
		case "ServiceAccount":
			out = append(out, "system:serviceaccount:"+s.Namespace+":"+s.Name)
		case "User", "Group":
			out = append(out, s.Name)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// LooksLikeNative reports whether data is a kubetrail rule file: a YAML
// list of mappings each with a name (Falco's items have rule, macro or
// list instead).
func LooksLikeNative(data []byte) bool {
	var doc yaml.Node
	if yaml.Unmarshal(data, &doc) != nil || len(doc.Content) == 0 {
		return false
	}
	top := doc.Content[0]
	if top.Kind != yaml.SequenceNode || len(top.Content) == 0 {
		return false
	}
	for _, item := range top.Content {
		if item.Kind != yaml.MappingNode || mapValue(item, "name") == nil {
			return false
		}
	}
	return true
}
