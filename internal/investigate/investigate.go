// Package investigate answers the questions an analyst asks in an incident
// — who did this to that object, what did this user do, what happened to
// this object, who read secrets, who exec'd into pods, who was denied, who
// changed RBAC, what came from this address — over a store's events.
//
// Each investigation is one function that takes a Source (the embedded
// store's *local.Reader, or any store of internal/store bound to a
// context) and a query, and returns a Report that the CLI prints as a
// table or JSON and the HTTP API can serve as JSON. The functions only
// read: they select with the filter language (so the store answers from
// its columns, or ClickHouse from a WHERE, and reads only the events that
// can match) and then group, de-duplicate and sort.
//
// Two facts of the audit log shape every answer. One request gives one
// event per stage (ResponseStarted and ResponseComplete for a watch or an
// exec), so investigations report requests, not events: the last stage of
// each request, unless AllStages asks for every event. And only the last
// sourceIPs entry is the address the API server saw; the others come from
// headers any client can set, so reports mark the peer.
package investigate

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kubetrail/kubetrail/internal/audit"
	"github.com/kubetrail/kubetrail/internal/query"
	"github.com/kubetrail/kubetrail/internal/store/local"
)

// Source is what an investigation reads: Select calls fn for every event
// the selection selects, in arrival order, with the decoded event
// (sel.NeedEvent is always set), as local.Reader.Select does. Hits are
// valid only during the callback.
type Source interface {
	Select(sel local.Selection, fn func(*local.Hit) error) error
}

var _ Source = (*local.Reader)(nil)

// Scope narrows any investigation to a time window and to more conditions.
type Scope struct {
	// Since and Until bound the event time in unix microseconds (Since
	// inclusive, Until exclusive); 0 leaves a side open.
	Since, Until int64
	// Where is more conditions in the filter language (docs/query.md),
	// joined with the investigation's own by "and"; empty for none. A
	// mistake in it comes back as a *query.Error positioned in Where.
	Where string
	// Now resolves relative times such as time>-2h in Where; the zero time
	// means the current time.
	Now time.Time
	// IncludeSystem keeps the requests of the control plane's own
	// identities (see controlPlane), which every investigation but who
	// leaves out by default: they bury an attack under bootstrap noise.
	IncludeSystem bool
	// Limit keeps only the most recent Limit rows of a timeline (who,
	// activity, history, execs, rbac, from), or the first Limit groups of
	// a grouped report (secrets, denied), which are ordered by importance;
	// 0 keeps all.
	Limit int
	// Restrict is conditions the caller imposes and the parameters cannot
	// lift (the API's access scope of a viewer: its clusters and
	// namespaces), joined with the others by "and"; nil for none. It is
	// part of every selection, so counts and groups only ever see what it
	// allows.
	Restrict query.Expr
	// ctx, set by Run, stops the reading when cancelled; nil reads to the
	// end.
	ctx context.Context
}

// stopped returns the cause of the scope's cancellation, or nil.
func (sc *Scope) stopped() error {
	if sc.ctx == nil || sc.ctx.Err() == nil {
		return nil
	}
	return context.Cause(sc.ctx)
}

// Request is one API request as an investigation reports it: the event of
// its last stage, or of one stage when every stage is asked for.
type Request struct {
	// Time is when the API server received the request.
	Time time.Time `json:"time"`
	// StageTime is when the request reached Stage.
	StageTime time.Time `json:"stageTime"`
	// Cluster is the cluster kubetrail recorded the event for.
	Cluster string `json:"cluster,omitempty"`
	// AuditID is the request's audit ID; not unique, as a client may set it.
	AuditID string `json:"auditID"`
	// Stage is the stage of the event reported.
	Stage string `json:"stage"`
	// Stages lists every stage of the request that was found, in order.
	Stages []string `json:"stages,omitempty"`
	// Level is the audit level the request was logged at.
	Level string `json:"level"`
	// User is the authenticated user; empty when authentication failed.
	User string `json:"user"`
	// Groups are the authenticated user's groups.
	Groups []string `json:"groups,omitempty"`
	// As is the user the request impersonated; empty without impersonation.
	As string `json:"impersonatedUser,omitempty"`
	// AsGroups are the impersonated groups.
	AsGroups []string `json:"impersonatedGroups,omitempty"`
	// SourceIPs are all the request's source addresses; only the last one,
	// Peer, was seen by the API server itself.
	SourceIPs []string `json:"sourceIPs,omitempty"`
	// Peer is the last sourceIPs entry: the address the API server saw.
	Peer string `json:"peer,omitempty"`
	// UserAgent is the client's self-reported user agent.
	UserAgent string `json:"userAgent,omitempty"`
	// Verb is the Kubernetes verb, or the HTTP method of a non-resource request.
	Verb string `json:"verb"`
	// Resource, Subresource, Namespace, Name and APIGroup come from the
	// event's objectRef; all empty for a non-resource request.
	Resource    string `json:"resource,omitempty"`
	Subresource string `json:"subresource,omitempty"`
	Namespace   string `json:"namespace,omitempty"`
	Name        string `json:"name,omitempty"`
	APIGroup    string `json:"apiGroup,omitempty"`
	// URI is the request URI, query string included.
	URI string `json:"requestURI"`
	// Code is the HTTP status code; 0 when the event has none.
	Code int `json:"code,omitempty"`
	// Reason and Message are the response status reason and message.
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
	// Decision and AuthzReason are the authorizer's decision (allow,
	// forbid) and reason annotations.
	Decision    string `json:"decision,omitempty"`
	AuthzReason string `json:"authorizationReason,omitempty"`

	// requestObject and responseObject are the bodies, kept only by the
	// investigations that read them.
	requestObject, responseObject []byte
	stageRank                     int
	// received is requestReceivedTimestamp in unix microseconds, 0 when
	// the event has none: then Time is the stage time, which differs
	// between the stages of one request and so cannot identify it.
	received int64
}

// stageRank orders the stages of one request.
func stageRank(s audit.Stage) int {
	switch s {
	case audit.StageRequestReceived:
		return 0
	case audit.StageResponseStarted:
		return 1
	case audit.StageResponseComplete, audit.StagePanic:
		return 2
	}
	return -1
}

func newRequest(h *local.Hit, bodies bool) *Request {
	ev := h.Event
	q := &Request{
		Time:      ev.RequestReceivedTimestamp.Time,
		StageTime: ev.StageTimestamp.Time,
		Cluster:   h.Cluster,
		AuditID:   ev.AuditID,
		Stage:     string(ev.Stage),
		Level:     string(ev.Level),
		User:      ev.User.Username,
		Groups:    ev.User.Groups,
		SourceIPs: ev.SourceIPs,
		Peer:      ev.LastSourceIP(),
		UserAgent: ev.UserAgent,
		Verb:      ev.Verb,
		URI:       ev.RequestURI,
		stageRank: stageRank(ev.Stage),
	}
	if q.Time.IsZero() {
		q.Time = ev.Time()
	} else {
		q.received = q.Time.UnixMicro()
	}
	if q.StageTime.IsZero() {
		q.StageTime = ev.Time()
	}
	q.Time, q.StageTime = q.Time.UTC(), q.StageTime.UTC()
	if u := ev.ImpersonatedUser; u != nil {
		q.As, q.AsGroups = u.Username, u.Groups
	}
	if o := ev.ObjectRef; o != nil {
		q.Resource, q.Subresource, q.Namespace, q.Name, q.APIGroup = o.Resource, o.Subresource, o.Namespace, o.Name, o.APIGroup
	}
	if st := ev.ResponseStatus; st != nil {
		q.Code, q.Reason, q.Message = int(st.Code), st.Reason, st.Message
	}
	q.Decision = ev.Annotations["authorization.k8s.io/decision"]
	q.AuthzReason = ev.Annotations["authorization.k8s.io/reason"]
	if bodies {
		q.requestObject, q.responseObject = ev.RequestObject, ev.ResponseObject
	}
	return q
}

// reqKey identifies one request across its stages. The audit ID alone is
// not enough: a client may send the same Audit-ID header with many
// requests, so the key also holds what every stage of one request shares.
type reqKey struct {
	cluster, auditID, uri, verb, user string
	received                          int64
}

// collect selects the events of base and the scope, and returns the
// requests they belong to in time order: one per request (its last stage)
// or, with allStages, one per event. bodies keeps request and response
// bodies for the caller. Unless the scope includes the system, it leaves
// out the requests of the control plane that were not denied, and
// returns how many rows it left out, for the report to say so.
//
// A base that is an "or" of terms (user=X or as=X) is folded as its
// parts, each term excluding the terms before it (A, then B and not A,
// then C and not (A or B)), as if each were selected on its own: the
// requests, their stages and ties in time keep the order they have when
// the parts are read one after the other. The parts are read in one
// selection, though, and sorted into parts by matching each event read
// against the terms: each part read on its own read again the time
// columns, group heads and keys of every segment (activity selected three
// parts). collectEach reads several such questions in one selection.
func collect(r Source, sc Scope, base query.Expr, allStages, bodies bool) ([]*Request, int, error) {
	got, err := collectEach(r, sc, collectSpec{base, allStages, bodies})
	if err != nil {
		return nil, 0, err
	}
	return got[0].reqs, got[0].hidden, nil
}

// collectSpec is one question of collectEach: collect's base, allStages
// and bodies.
type collectSpec struct {
	base              query.Expr
	allStages, bodies bool
}

// collected is collect's answer to one collectSpec.
type collected struct {
	reqs   []*Request
	hidden int
}

// collectEach answers each spec as collect does, reading the events of
// them all in one selection (the "or" of their bases) and giving each
// spec the events its base matches: an investigation that asks two
// questions (timeline's reads and RBAC grants, history's changes and
// generated creations) reads the time columns, group heads and keys
// once.
func collectEach(r Source, sc Scope, specs ...collectSpec) ([]collected, error) {
	if sc.Now.IsZero() {
		sc.Now = time.Now() // once, so that every part means the same times
	}
	if err := sc.stopped(); err != nil {
		return nil, err
	}
	rs := make([]*reading, len(specs))
	bases := make([]query.Expr, len(specs))
	bodies, all := false, false
	for i, s := range specs {
		d, err := newReading(s, len(specs) > 1, sc.Now)
		if err != nil {
			return nil, err
		}
		rs[i], bases[i] = d, s.base
		bodies = bodies || s.bodies || (s.base != nil && readsBodies(s.base))
		all = all || s.base == nil
	}
	base := or(bases...)
	if all {
		base = nil
	}
	f, err := compile(sc, base)
	if err != nil {
		return nil, err
	}
	// Every report, its table as much as its records, needs the event's
	// text: a row's time is requestReceivedTimestamp, and a request is
	// its stages grouped by audit ID and request URI (reqKey). No column
	// holds these three, so the columns only choose which events are
	// read. Without bodies the store leaves the bodies' frames
	// compressed (docs/adr/0025-segment-v5.md), unless a term needs them
	// to be matched.
	sel := local.Selection{Filter: f, Since: sc.Since, Until: sc.Until, NeedEvent: true, NoBodies: !bodies, NoTimes: true}
	err = r.Select(sel, func(h *local.Hit) error {
		if err := sc.stopped(); err != nil {
			return err
		}
		some := false
		for _, d := range rs {
			ok, err := d.take(h)
			if err != nil {
				return err
			}
			some = some || ok
		}
		if !some {
			return fmt.Errorf("BUG: an event selected by %q matches none of its questions", query.Canonical(base))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]collected, len(rs))
	for i, d := range rs {
		out[i] = d.fold(sc.IncludeSystem)
	}
	return out, nil
}

// reading is one collectSpec's events as collectEach reads them, each in
// the part of its base it belongs to.
type reading struct {
	spec collectSpec
	// match is the spec's base, to tell its events from the other
	// specs'; nil when there are none, or its base is nil.
	match *query.Filter
	// terms are the terms of a base that is an "or" (orTerms).
	terms []*query.Filter
	parts [][]*Request
}

func newReading(s collectSpec, others bool, now time.Time) (*reading, error) {
	terms, err := orTerms(s.base, now)
	if err != nil {
		return nil, err
	}
	d := &reading{spec: s, terms: terms, parts: make([][]*Request, max(len(terms), 1))}
	if others && s.base != nil {
		if d.match, err = query.CompileExpr(s.base, now); err != nil {
			return nil, fmt.Errorf("BUG: investigation filter %q: %w", query.Canonical(s.base), err)
		}
	}
	return d, nil
}

// take adds h's request to the part of the spec's base it belongs to,
// and reports whether the base matches it.
func (d *reading) take(h *local.Hit) (bool, error) {
	if d.match != nil && !d.match.Match(h.Event, h.Cluster) {
		return false, nil
	}
	i := 0
	if len(d.terms) > 1 {
		i = slices.IndexFunc(d.terms, func(t *query.Filter) bool { return t.Match(h.Event, h.Cluster) })
		if i < 0 {
			return false, fmt.Errorf("BUG: an event selected by %q matches none of its terms", query.Canonical(d.spec.base))
		}
	}
	d.parts[i] = append(d.parts[i], newRequest(h, d.spec.bodies))
	return true, nil
}

// fold folds the parts' events in turn into requests, and leaves out
// the control plane's unless system.
func (d *reading) fold(system bool) collected {
	c := &collector{allStages: d.spec.allStages, byKey: map[reqKey]*Request{}}
	for _, p := range d.parts {
		for _, q := range p {
			c.add(q)
		}
	}
	out := c.out
	hidden := 0
	if !system {
		out, hidden = dropControlPlane(out)
	}
	for _, q := range out {
		if len(q.Stages) > 1 {
			slices.SortStableFunc(q.Stages, func(a, b string) int {
				return cmp.Compare(stageRank(audit.Stage(a)), stageRank(audit.Stage(b)))
			})
		}
	}
	sortRequests(out)
	return collected{out, hidden}
}

// orTerms compiles the terms of a base that is an "or", each alone, to
// tell which part an event belongs to; nil for any other base.
func orTerms(base query.Expr, now time.Time) ([]*query.Filter, error) {
	o, ok := base.(*query.Or)
	if !ok {
		return nil, nil
	}
	terms := make([]*query.Filter, len(o.Terms))
	for i, t := range o.Terms {
		f, err := query.CompileExpr(t, now)
		if err != nil {
			return nil, fmt.Errorf("BUG: investigation term %q: %w", query.Canonical(t), err)
		}
		terms[i] = f
	}
	return terms, nil
}

// readsBodies reports whether e has a condition on a request or response
// body, or on the whole text, which only an event read with its bodies
// can be matched against.
func readsBodies(e query.Expr) bool {
	found := false
	query.Walk(e, func(x query.Expr) bool {
		switch x := x.(type) {
		case *query.Text:
			found = true
		case *query.Cmp:
			if x.Field.Name == "requestObject" || x.Field.Name == "responseObject" {
				found = true
			}
		}
		return !found
	})
	return found
}

// collector folds requests' stages: one row per request, its last stage,
// or with allStages one per event, in the order they are added.
type collector struct {
	allStages bool
	out       []*Request
	byKey     map[reqKey]*Request
}

// add adds one event's request.
func (c *collector) add(q *Request) {
	if c.allStages {
		c.out = append(c.out, q)
		return
	}
	k := q.key()
	prev := c.byKey[k]
	if prev == nil {
		q.Stages = []string{q.Stage}
		c.byKey[k] = q
		c.out = append(c.out, q)
		return
	}
	stages := append(prev.Stages, q.Stage)
	first := minTime(prev.Time, q.Time) // the received time, or without one the first stage's
	if q.stageRank >= prev.stageRank {
		*prev = *q
	}
	prev.Time = first
	prev.Stages = stages
}

// key identifies the request q belongs to.
func (q *Request) key() reqKey {
	return reqKey{q.Cluster, q.AuditID, q.URI, q.Verb, q.User, q.received}
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// denied reports whether the request was refused: authentication failed
// (401) or the authorizer said no (403, forbid).
func (q *Request) denied() bool {
	return q.Code == 401 || q.Code == 403 || q.Decision == "forbid"
}

// dropControlPlane leaves out the requests of the control plane that were
// not denied and impersonated no one, and returns how many rows it left
// out. The control plane's components act as themselves: a request of
// theirs made as another user is a stolen token at work, not bootstrap
// noise. A request is kept or dropped whole: a denial in any of its
// stages keeps every stage.
func dropControlPlane(reqs []*Request) ([]*Request, int) {
	keep := map[reqKey]bool{}
	for _, q := range reqs {
		if !controlPlane(q.User) || q.denied() || q.As != "" {
			keep[q.key()] = true
		}
	}
	kept := make([]*Request, 0, len(keep))
	for _, q := range reqs {
		if keep[q.key()] {
			kept = append(kept, q)
		}
	}
	return kept, len(reqs) - len(kept)
}

// controlPlane reports whether u is one of the control plane's own
// identities, whose requests investigations hide unless asked
// (docs/investigations.md lists them): the API server, the controller
// manager, the scheduler, the kubelets, and the service accounts of
// kube-system, under which the controllers run. A workload's service
// account, system:anonymous and an unauthenticated request (no user) are
// never the control plane.
func controlPlane(u string) bool {
	switch u {
	case "system:apiserver", "system:kube-controller-manager", "system:kube-scheduler":
		return true
	}
	return strings.HasPrefix(u, "system:node:") || strings.HasPrefix(u, "system:serviceaccount:kube-system:")
}

// hiddenNote says how many rows the control-plane filter left out, so that
// an empty or short answer explains itself; none when none were.
func hiddenNote(n int, allStages bool) []string {
	if n == 0 {
		return nil
	}
	return []string{fmt.Sprintf("%s by the control plane hidden; --include-system shows them", nRows(n, "request", allStages))}
}

// sortRequests orders requests by the time they were received, then by
// stage, keeping arrival order for ties.
func sortRequests(rs []*Request) {
	slices.SortStableFunc(rs, func(a, b *Request) int {
		return cmp.Or(a.Time.Compare(b.Time), cmp.Compare(a.stageRank, b.stageRank), a.StageTime.Compare(b.StageTime))
	})
}

// firstN keeps the first n of rows in order of importance; n <= 0 keeps
// all. It returns how many it left out.
func firstN[T any](rows []T, n int) ([]T, int) {
	if n > 0 && len(rows) > n {
		return rows[:n], len(rows) - n
	}
	return rows, 0
}

// cutNote says how many groups a limit left out.
func cutNote(cut int) []string {
	if cut == 0 {
		return nil
	}
	return []string{nRows(cut, "more row", false) + " not shown (--limit); --limit 0 shows all"}
}

// lastN keeps the most recent n of rows sorted by time; n <= 0 keeps all.
func lastN[T any](rows []T, n int) []T {
	if n > 0 && len(rows) > n {
		return rows[len(rows)-n:]
	}
	return rows
}

// compile joins the investigation's own conditions with the scope's.
func compile(sc Scope, base query.Expr) (*query.Filter, error) {
	now := sc.Now
	if now.IsZero() {
		now = time.Now()
	}
	var terms []query.Expr
	if base != nil {
		terms = append(terms, base)
	}
	if strings.TrimSpace(sc.Where) != "" {
		// Compile the extra conditions alone first, so that a mistake is
		// reported at its column in the text the user wrote.
		if _, err := query.CompileAt(sc.Where, now); err != nil {
			return nil, err
		}
		e, err := query.Parse(sc.Where)
		if err != nil {
			return nil, err
		}
		if e != nil {
			terms = append(terms, e)
		}
	}
	e := and(append(terms, sc.Restrict)...)
	if e == nil {
		return nil, nil
	}
	f, err := query.CompileExpr(e, now)
	if err != nil {
		return nil, fmt.Errorf("BUG: investigation filter %q: %w", query.Canonical(e), err)
	}
	return f, nil
}

// Filter building blocks. Values are literal unless glob is asked for.

func cmpExpr(field string, op query.Op, vals ...string) query.Expr {
	c := &query.Cmp{Field: query.Field{Name: field}, Op: op}
	for _, v := range vals {
		c.Values = append(c.Values, query.Value{Text: v})
	}
	return c
}

func eq(field, v string) query.Expr { return cmpExpr(field, query.OpEq, v) }

// in is field in (vals...), or field=v for one value.
func in(field string, vals ...string) query.Expr {
	if len(vals) == 1 {
		return eq(field, vals[0])
	}
	return cmpExpr(field, query.OpIn, vals...)
}

// globEq is field=pattern where a '*' in pattern matches any run of
// characters, as an unquoted value in the filter language does.
func globEq(field, pattern string) (query.Expr, error) {
	if !strings.Contains(pattern, "*") {
		return eq(field, pattern), nil
	}
	for _, r := range pattern {
		if strings.ContainsRune(" \t\n()[],\"'=!~<>&|", r) {
			return nil, fmt.Errorf("%s pattern %q: a pattern with '*' cannot hold %q", field, pattern, r)
		}
	}
	return &query.Cmp{Field: query.Field{Name: field}, Op: query.OpEq, Values: []query.Value{{Text: pattern, Glob: true}}}, nil
}

func and(terms ...query.Expr) query.Expr {
	var flat []query.Expr
	for _, t := range terms {
		if t == nil {
			continue
		}
		if a, ok := t.(*query.And); ok {
			flat = append(flat, a.Terms...)
			continue
		}
		flat = append(flat, t)
	}
	switch len(flat) {
	case 0:
		return nil
	case 1:
		return flat[0]
	}
	return &query.And{Terms: flat}
}

func or(terms ...query.Expr) query.Expr {
	if len(terms) == 1 {
		return terms[0]
	}
	return &query.Or{Terms: terms}
}

// IsQueryError reports whether err is a mistake in Scope.Where, and
// returns it for printing with its position.
func IsQueryError(err error) (*query.Error, bool) {
	var qe *query.Error
	ok := errors.As(err, &qe)
	return qe, ok
}

// Formatting shared by the reports.

// timeLayout is how tables print times: UTC, milliseconds, like query.
const timeLayout = "2006-01-02T15:04:05.000Z"

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(timeLayout)
}

// object names what a request touched, the way its URL does:
// resource/name/subresource ("secrets/important", "pods/web/exec"), or the
// path of a non-resource request ("/healthz").
func (q *Request) object() string {
	if q.Resource == "" {
		p := q.URI
		if i := strings.IndexByte(p, '?'); i >= 0 {
			p = p[:i]
		}
		return p
	}
	s := q.Resource
	if q.Name != "" {
		s += "/" + q.Name
	} else if q.Subresource != "" {
		s += "/*"
	}
	if q.Subresource != "" {
		s += "/" + q.Subresource
	}
	return s
}

// result is the status code and the authorizer's decision: "201 allow",
// "403 forbid", "401" (no decision: authentication failed).
func (q *Request) result() string {
	var parts []string
	if q.Code != 0 {
		parts = append(parts, strconv.Itoa(q.Code))
	}
	if q.Decision != "" {
		parts = append(parts, q.Decision)
	}
	out := strings.Join(parts, " ")
	// A failure other than a refusal says why: "404 allow" alone reads as
	// a success the authorizer allowed (an exec into a pod that is gone).
	if q.Code >= 400 && q.Code != 401 && q.Code != 403 {
		why := q.Message
		if why == "" {
			why = q.Reason
		}
		if r := []rune(why); len(r) > 80 {
			why = string(r[:79]) + "…"
		}
		if why != "" {
			out += ": " + why
		}
	}
	return out
}

// fmtIPs lists source IPs with the peer, the only address the API server
// saw itself, marked: "203.0.113.9,10.0.0.5(peer)".
func fmtIPs(ips []string) string {
	if len(ips) == 0 {
		return ""
	}
	return strings.Join(ips, ",") + "(peer)"
}

// shortUA is the first word of a user agent: "kubectl/v1.32.4".
func shortUA(ua string) string {
	if i := strings.IndexByte(ua, ' '); i > 0 {
		return ua[:i]
	}
	return ua
}

func userOrNone(u string) string {
	if u == "" {
		return "(unauthenticated)"
	}
	return u
}

// isSystemUser reports whether a user name belongs to a Kubernetes
// component or service account (system:...), not a person.
func isSystemUser(u string) bool { return strings.HasPrefix(u, "system:") }

// isAnonymous reports whether a request came without credentials: the API
// server calls its user system:anonymous when anonymous access is on, and
// logs no user when authentication failed. Neither is a component, though
// the name starts with system:.
func isAnonymous(u string) bool { return u == "system:anonymous" || u == "" }

// isComponent reports whether u is the control plane or a service account:
// a system: identity that is not anonymous.
func isComponent(u string) bool { return isSystemUser(u) && !isAnonymous(u) }

// uriQuery returns the parsed query string of a request URI, read as the
// API server reads it (Go's url.ParseQuery): a pair holding a ';' or a bad
// %-escape is dropped and the others kept, so that an exec's command is
// the one that ran.
func uriQuery(uri string) url.Values {
	i := strings.IndexByte(uri, '?')
	if i < 0 {
		return url.Values{}
	}
	v, _ := url.ParseQuery(uri[i+1:]) // the pairs that parsed, as url.URL.Query
	return v
}

// counter counts values and lists them most frequent first.
type counter map[string]int

// Count is one value and how often it occurred.
type Count struct {
	Value string `json:"value"`
	Count int    `json:"count"`
}

func (c counter) top(n int) []Count {
	out := make([]Count, 0, len(c))
	for v, k := range c {
		out = append(out, Count{v, k})
	}
	slices.SortFunc(out, func(a, b Count) int { return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.Value, b.Value)) })
	if n > 0 && len(out) > n {
		out = out[:n]
	}
	return out
}

// fmtCounts prints counts most frequent first as "list(3),get(1)", with
// "+N more" past n (0 for all), joined by sep.
func fmtCounts(all counter, n int, sep string) string {
	top := all.top(0)
	var parts []string
	for i, c := range top {
		if n > 0 && i == n {
			parts = append(parts, fmt.Sprintf("+%d more", len(top)-n))
			break
		}
		v := c.Value
		if v == "" {
			v = `""`
		}
		parts = append(parts, fmt.Sprintf("%s(%d)", v, c.Count))
	}
	return strings.Join(parts, sep)
}

// nRows says how many rows a timeline has: "1 request", "3 changes", or
// "5 events" when every stage was asked for.
func nRows(n int, noun string, allStages bool) string {
	if allStages {
		noun = "event"
	}
	if n != 1 {
		noun += "s"
	}
	return fmt.Sprintf("%d %s", n, noun)
}
