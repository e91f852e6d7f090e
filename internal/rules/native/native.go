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

// Key is what events are grouped by: a field of the filter language, or
// "subject", the users a (Cluster)RoleBinding's request body names (a
// ServiceAccount as system:serviceaccount:NS:NAME).
type Key struct {
	Name  string
	field query.Field
}

// values returns the key's values in an event.
func (k Key) values(e *rules.Event) []string {
	if k.Name == "subject" {
		return bindingSubjects(e.Raw)
	}
	return query.FieldValues(k.field, e.Ev, e.Cluster)
}

func parseKey(name string) (Key, error) {
	if name == "subject" {
		return Key{Name: name}, nil
	}
	f, ok := query.LookupField(name)
	if !ok {
		return Key{}, fmt.Errorf("unknown field %q to group by (a field of the filter language, or subject)", name)
	}
	return Key{Name: name, field: f}, nil
}

// Evaluator runs native rules. It is safe for concurrent use; threshold
// and sequence rules keep state across calls, so events must be given in
// time order (as the store gives them) for their windows to mean what
// they say.
type Evaluator struct {
	rules []*Rule
	mu    sync.Mutex
	state []*ruleState
	seen  []*requestSet // per rule with OncePerRequest
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

// Eval returns the alerts e raises.
func (ev *Evaluator) Eval(e *rules.Event) []rules.Alert {
	var out []rules.Alert
	for i, r := range ev.rules {
		if !r.Enabled {
			continue
		}
		if r.Sequence != nil {
			if ids, ok := ev.sequence(i, r, e); ok {
				out = append(out, alert(r, e, ids))
			}
			continue
		}
		if !r.matches(r.Condition, e) {
			continue
		}
		if r.Threshold == nil {
			if r.OncePerRequest && !ev.firstTime(i, e) {
				continue
			}
			out = append(out, alert(r, e, []string{e.Ev.AuditID}))
			continue
		}
		if ids, ok := ev.threshold(i, r, e); ok {
			out = append(out, alert(r, e, ids))
		}
	}
	return out
}

func (r *Rule) matches(f *query.Filter, e *rules.Event) bool {
	if !f.Match(e.Ev, e.Cluster) {
		return false
	}
	for _, x := range r.Except {
		if x.Match(e.Ev, e.Cluster) {
			return false
		}
	}
	return true
}

// alert builds the alert of r about the events ids, the last of which is e.
func alert(r *Rule, e *rules.Event, ids []string) rules.Alert {
	a := rules.Alert{
		Rule: r.Name, Severity: r.Severity, Source: rules.SourceKubetrail, AuditIDs: ids,
		User: e.Ev.User.Username, Time: e.Ev.StageTimestamp.Time.UTC(), Tags: r.Tags, Cluster: e.Cluster,
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
}

// group is what a rule remembers of one key: the times and audit IDs of
// the events in the window (threshold), or the steps matched so far
// (sequence: step is the next step's index).
type group struct {
	times []time.Time
	ids   []string
	step  int
	last  time.Time
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
			var oldest string
			var t time.Time
			for k, og := range st.groups {
				if oldest == "" || og.last.Before(t) {
					oldest, t = k, og.last
				}
			}
			delete(st.groups, oldest)
		}
		g = &group{}
		st.groups[key] = g
	}
	g.last = now
	return g
}

func (ev *Evaluator) threshold(i int, r *Rule, e *rules.Event) ([]string, bool) {
	t := r.Threshold
	key, ok := joinKeys(t.By, e)
	if !ok {
		return nil, false
	}
	now := e.Ev.StageTimestamp.Time
	ev.mu.Lock()
	defer ev.mu.Unlock()
	g := ev.groupOf(i, key, now)
	g.times = append(g.times, now)
	g.ids = append(g.ids, e.Ev.AuditID)
	drop := 0
	for drop < len(g.times) && now.Sub(g.times[drop]) > t.Window {
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

func (ev *Evaluator) sequence(i int, r *Rule, e *rules.Event) ([]string, bool) {
	s := r.Sequence
	now := e.Ev.StageTimestamp.Time
	ev.mu.Lock()
	defer ev.mu.Unlock()
	// An event may move several groups on (one per value of the step's
	// key), and may both start a group and move another.
	var fired []string
	for step := len(s.Steps) - 1; step >= 0; step-- {
		st := s.Steps[step]
		if !r.matches(st.Condition, e) {
			continue
		}
		for _, k := range st.By.values(e) {
			g := ev.groupOf(i, k, now)
			if g.step > 0 && now.Sub(g.times[0]) > s.Within {
				g.step, g.times, g.ids = 0, nil, nil
			}
			if g.step != step {
				continue
			}
			g.step++
			g.times = append(g.times, now)
			g.ids = append(g.ids, e.Ev.AuditID)
			if g.step == len(s.Steps) {
				if fired == nil {
					fired = g.ids
				}
				g.step, g.times, g.ids = 0, nil, nil
			}
		}
	}
	return fired, fired != nil
}

// joinKeys returns the group key of e for fields by; ok is false when e
// lacks one of them (it then belongs to no group).
func joinKeys(by []Key, e *rules.Event) (string, bool) {
	if len(by) == 0 {
		return "", true
	}
	var b strings.Builder
	for i, k := range by {
		vals := k.values(e)
		if len(vals) == 0 {
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

// Candidates returns a filter that every event an enabled rule could act
// on satisfies: the disjunction of their conditions and sequence steps. A
// store narrows what it reads with it (its indexes answer most of it);
// each rule still decides on every candidate. ok is false when no rule is
// enabled: no event is needed.
func (ev *Evaluator) Candidates() (f *query.Filter, ok bool) {
	var terms []query.Expr
	add := func(c *query.Filter) {
		if or, isOr := c.Expr().(*query.Or); isOr {
			terms = append(terms, or.Terms...)
			return
		}
		terms = append(terms, c.Expr())
	}
	for _, r := range ev.rules {
		if !r.Enabled {
			continue
		}
		if r.Sequence != nil {
			for _, s := range r.Sequence.Steps {
				add(s.Condition)
			}
			continue
		}
		add(r.Condition)
	}
	switch len(terms) {
	case 0:
		return nil, false
	case 1:
		f, err := query.CompileExpr(terms[0], time.Now())
		return f, err == nil
	}
	f, err := query.CompileExpr(&query.Or{Terms: terms}, time.Now())
	if err != nil {
		panic("BUG: the disjunction of compiled conditions does not compile: " + err.Error())
	}
	return f, true
}
