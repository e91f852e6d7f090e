package investigate

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kubetrail/kubetrail/internal/query"
)

// DefaultGap is how far apart two similar requests may be and still fold
// into one row of a timeline: a script's or a retrying client's burst
// folds, the same command typed again after a pause starts a new row.
const DefaultGap = 10 * time.Second

// TimelineQuery asks for the story of an incident across users: every
// request that matters, in time order, one sentence a row, with the
// similar requests that follow each other folded into one row.
type TimelineQuery struct {
	// User keeps the requests made by the user, made as the user
	// (impersonated), and the writes of role bindings naming the user, as
	// activity does; '*' globs; empty for every user.
	User string
	// Gap is how far apart (received times) two similar requests may be to
	// fold into one row; 0 folds nothing.
	Gap time.Duration
	// Reads also shows the reads kept out by default (see visible).
	Reads bool
	Scope
}

// TimelineObject is what a row's requests touched.
type TimelineObject struct {
	// APIGroup, Resource, Subresource and Namespace come from objectRef.
	APIGroup    string `json:"apiGroup,omitempty"`
	Resource    string `json:"resource,omitempty"`
	Subresource string `json:"subresource,omitempty"`
	Namespace   string `json:"namespace,omitempty"`
	// Name is the object's name when every request of the row named the
	// same one; Names lists them, in order, when they named several.
	Name  string   `json:"name,omitempty"`
	Names []string `json:"names,omitempty"`
	// Path is the URL path of a non-resource request (/version).
	Path string `json:"path,omitempty"`
}

// TimelineRow is one line of the story: one request, or similar requests
// that followed each other folded together (see TimelineQuery.Gap and
// docs/investigations.md for the rule).
type TimelineRow struct {
	// Time is when the API server received the row's first request.
	Time time.Time `json:"time"`
	// Actor is the authenticated user; empty when authentication failed.
	Actor string `json:"actor"`
	// As is the user the requests impersonated; empty without.
	As string `json:"as,omitempty"`
	// Verb is the Kubernetes verb (get for a WebSocket exec).
	Verb   string         `json:"verb"`
	Object TimelineObject `json:"object"`
	// Result is the status code and the authorizer's decision ("403
	// forbid"), with the reason of another failure, as the other
	// investigations print it.
	Result string `json:"result"`
	// Count is how many requests the row folds.
	Count int `json:"count"`
	// First and Last are the received times of the first and last request
	// of a folded row; absent when Count is 1.
	First *time.Time `json:"first,omitempty"`
	Last  *time.Time `json:"last,omitempty"`
	// AuditIDs are the requests' audit IDs, in order, to drill down with
	// `kubetrail query auditid=ID` (not unique: a client may choose them).
	AuditIDs []string `json:"auditIDs"`
	// Peers are the addresses the API server saw, in order of appearance.
	Peers []string `json:"peers,omitempty"`
	// Sentence tells the row in words.
	Sentence string `json:"sentence"`

	key    timelineKey
	detail string // the exec command or RBAC grant, part of the sentence
	code   int
	msg    string
	last   time.Time
}

// timelineKey is what similar requests share. Besides the documented
// fields it holds the detail the sentence tells: an exec's command, what an
// RBAC write grants, so that folding never hides a different one.
type timelineKey struct {
	actor, as, verb, group, resource, sub, ns, path, result, detail string
}

// TimelineReport answers a TimelineQuery in time order.
type TimelineReport struct {
	Rows []*TimelineRow
	// Requests counts the requests the rows hold (after Limit).
	Requests int
	// Hidden counts the rows of the control plane left out (see
	// Scope.IncludeSystem); Reads the reads left out (see visible).
	Hidden, Reads int
	user          string
}

// Timeline tells what happened, in time order.
func Timeline(r Source, q TimelineQuery) (*TimelineReport, error) {
	if q.Gap < 0 {
		return nil, fmt.Errorf("gap %s: want 0 or more", q.Gap)
	}
	var base query.Expr
	sc := q.Scope
	if q.User != "" {
		terms, err := userTerms(q.User)
		if err != nil {
			return nil, err
		}
		base = or(terms...)
		if controlPlane(q.User) {
			sc.IncludeSystem = true // as activity: asking for it by name shows it
		}
	}
	// RBAC writes are read with their bodies, to say what they grant; the
	// rest without, as bodies may be large.
	rbacWrites := and(eq("apigroup", "rbac.authorization.k8s.io"), in("resource", "roles", "rolebindings", "clusterroles", "clusterrolebindings"), in("verb", writeVerbs...))
	got, err := collectEach(r, sc, collectSpec{base: within(base, &query.Not{X: rbacWrites})}, collectSpec{base: within(base, rbacWrites), bodies: true})
	if err != nil {
		return nil, err
	}
	reqs, grants := got[0].reqs, got[1].reqs
	rep := &TimelineReport{Hidden: got[0].hidden + got[1].hidden, user: q.User}
	details := map[reqKey]string{}
	for _, g := range grants {
		c := &RBACChange{Request: g, Kind: rbacKinds[g.Resource]}
		c.read()
		details[g.key()] = grantText(c)
		g.requestObject, g.responseObject = nil, nil
	}
	reqs = append(reqs, grants...)
	sortRequests(reqs)
	open := map[timelineKey]*TimelineRow{}
	for _, rq := range reqs {
		if !q.Reads && !visible(rq) {
			rep.Reads++
			continue
		}
		detail := details[rq.key()]
		if isSessionSub(rq.Subresource) {
			detail = sessionText(newExec(rq))
		}
		k := timelineKey{rq.User, rq.As, rq.Verb, rq.APIGroup, rq.Resource, rq.Subresource, rq.Namespace, "", rq.result(), detail}
		if rq.Resource == "" {
			k.path = rq.object()
		}
		if row := open[k]; row != nil && q.Gap > 0 && rq.Time.Sub(row.last) <= q.Gap {
			row.add(rq)
			continue
		}
		row := newTimelineRow(rq, k)
		open[k] = row
		rep.Rows = append(rep.Rows, row)
	}
	for _, row := range rep.Rows {
		row.finish()
	}
	rep.Rows = lastN(rep.Rows, q.Limit)
	for _, row := range rep.Rows {
		rep.Requests += row.Count
	}
	return rep, nil
}

// userTerms selects a user's story as activity does: by the user, as the
// user, and the bindings naming the user.
func userTerms(user string) ([]query.Expr, error) {
	byUser, err := globEq("user", user)
	if err != nil {
		return nil, err
	}
	asUser, err := globEq("as", user)
	if err != nil {
		return nil, err
	}
	terms := []query.Expr{byUser, asUser}
	if b := bindingNaming(user); b != nil {
		terms = append(terms, b)
	}
	return terms, nil
}

// within is base and x, with "and" distributed over a base that is an "or",
// so that collect still selects each term of it on its own.
func within(base, x query.Expr) query.Expr {
	o, ok := base.(*query.Or)
	if !ok {
		return and(base, x)
	}
	terms := make([]query.Expr, len(o.Terms))
	for i, t := range o.Terms {
		terms[i] = and(t, x)
	}
	return or(terms...)
}

// visible reports whether a request belongs in the story by default. Every
// request shows except a read — get, list or watch, or a GET of a
// non-resource path such as /version — that was not denied, was made by an
// authenticated user as themselves, and touched neither secrets, RBAC
// objects nor pods' exec, attach and portforward. Those reads are what
// every client does all day (kubectl asks /version before each command).
func visible(q *Request) bool {
	switch {
	case !slices.Contains(readVerbs, q.Verb),
		q.denied(),
		isAnonymous(q.User),
		q.As != "",
		q.Resource == "secrets" && q.APIGroup == "",
		q.APIGroup == "rbac.authorization.k8s.io",
		isSessionSub(q.Subresource):
		return true
	}
	return false
}

// isSessionSub reports whether a pods subresource opens a session into a
// container.
func isSessionSub(sub string) bool {
	return sub == "exec" || sub == "attach" || sub == "portforward"
}

func newTimelineRow(q *Request, k timelineKey) *TimelineRow {
	row := &TimelineRow{
		Time: q.Time, Actor: q.User, As: q.As, Verb: q.Verb, Result: k.result,
		Object: TimelineObject{APIGroup: q.APIGroup, Resource: q.Resource, Subresource: q.Subresource, Namespace: q.Namespace, Path: k.path},
		key:    k, detail: k.detail, code: q.Code, msg: cmp.Or(q.Message, q.Reason),
	}
	row.add(q)
	return row
}

func (row *TimelineRow) add(q *Request) {
	row.Count++
	row.last = q.Time
	row.AuditIDs = append(row.AuditIDs, q.AuditID)
	if q.Peer != "" && !slices.Contains(row.Peers, q.Peer) {
		row.Peers = append(row.Peers, q.Peer)
	}
	if q.Name != "" && !slices.Contains(row.Object.Names, q.Name) {
		row.Object.Names = append(row.Object.Names, q.Name)
	}
}

// finish sets the fields that depend on every request of the row.
func (row *TimelineRow) finish() {
	if len(row.Object.Names) == 1 {
		row.Object.Name, row.Object.Names = row.Object.Names[0], nil
	}
	if row.Count > 1 {
		first, last := row.Time, row.last
		row.First, row.Last = &first, &last
	}
	row.Sentence = row.sentence()
}

// sentence tells the row: "attacker was denied list secrets in production
// 6 times in 218 ms", "admin as developer read secret db-creds in
// production", "admin created clusterrolebinding backdoor granting
// cluster-admin to attacker".
func (row *TimelineRow) sentence() string {
	who := row.Actor
	if who == "" {
		who = "an unauthenticated client"
	}
	if row.As != "" {
		who += " as " + row.As
	}
	what := row.what()
	var s string
	switch {
	case row.code == 401:
		s = who + " failed to authenticate to " + row.Verb + " " + what
	case row.code == 403 || strings.HasSuffix(row.Result, "forbid"):
		s = who + " was denied " + row.verbBase() + " " + what
	case row.code >= 400:
		s = who + " failed to " + row.verbBase() + " " + what
	case row.code == 0:
		// No response stage was found (only RequestReceived: the log
		// ends there, or the window does): the request may have been
		// refused, so it is not told as done.
		s = who + " asked to " + row.verbBase() + " " + what
	default:
		s = who + " " + row.pastTense() + " " + what
	}
	if row.detail != "" {
		s += " " + row.detail
	}
	switch {
	case row.Count > 1 && row.Count == len(row.Object.Names):
		s += " in " + fmtSpan(row.last.Sub(row.Time)) // once each: the names count
	case row.Count > 1:
		s += fmt.Sprintf(" %d times in %s", row.Count, fmtSpan(row.last.Sub(row.Time)))
	}
	if row.code >= 400 && row.code != 401 && row.code != 403 && row.msg != "" {
		s += fmt.Sprintf(" (%d: %s)", row.code, row.msg)
	}
	if row.code == 0 && !strings.HasSuffix(row.Result, "forbid") {
		s += "; no response is in the log"
	}
	return s
}

// verbBase is the verb in the infinitive, as "was denied" and "failed to"
// take it: exec into, attach to, port-forward to a pod.
func (row *TimelineRow) verbBase() string {
	switch row.Object.Subresource {
	case "exec":
		return "exec into"
	case "attach":
		return "attach to"
	case "portforward":
		return "port-forward to"
	}
	return row.Verb
}

// pastTense says what a request that went through did.
func (row *TimelineRow) pastTense() string {
	switch row.Object.Subresource {
	case "exec":
		return "exec'd into"
	case "attach":
		return "attached to"
	case "portforward":
		return "port-forwarded to"
	}
	switch row.Verb {
	case "get":
		return "read"
	case "list":
		return "listed"
	case "watch":
		return "watched"
	case "create":
		return "created"
	case "update":
		return "updated"
	case "patch":
		return "patched"
	case "delete":
		return "deleted"
	case "deletecollection":
		return "deleted every"
	}
	return "did " + row.Verb + " on"
}

// what names the object: "secrets in production", "secret db-creds in
// production", "secrets db-creds, api-key in production", "the status of
// pod web", "pod web in production", "/version".
func (row *TimelineRow) what() string {
	o := row.Object
	if o.Resource == "" {
		return o.Path
	}
	res := o.Resource
	var s string
	switch {
	case o.Name != "":
		s = singular(res) + " " + o.Name
	case len(o.Names) > 0:
		names := o.Names
		more := ""
		if len(names) > 3 {
			names, more = names[:3], fmt.Sprintf(", +%d more", len(o.Names)-3)
		}
		s = res + " " + strings.Join(names, ", ") + more
	default:
		s = res
	}
	if o.Subresource != "" && !isSessionSub(o.Subresource) {
		s = "the " + o.Subresource + " of " + s
	}
	switch {
	case o.Namespace != "":
		s += " in " + o.Namespace
	case o.Name == "" && len(o.Names) == 0 && !clusterScoped[res] && !rbacClusterScoped(res):
		s += " in every namespace"
	}
	return s
}

// rbacClusterScoped is true for the cluster-wide RBAC kinds, which
// clusterScoped does not list as they are named apart.
func rbacClusterScoped(res string) bool {
	return res == "clusterroles" || res == "clusterrolebindings"
}

// singular is the kind a resource name stands for, lower-cased: the
// singular resourceAliases knows, else the name without its plural ending.
func singular(res string) string {
	for _, r := range resourceAliases {
		if r.resource != res {
			continue
		}
		for _, a := range r.aliases {
			if plural(a) == res {
				return a
			}
		}
	}
	if s, ok := strings.CutSuffix(res, "ies"); ok {
		return s + "y"
	}
	return strings.TrimSuffix(res, "s")
}

// grantText says what an RBAC write's body grants: "granting cluster-admin
// to attacker", "with 3 rules (! wildcard)"; empty without a body.
func grantText(c *RBACChange) string {
	if c.Body == "" {
		return ""
	}
	var s string
	switch {
	case c.RoleRef != "":
		role := c.RoleRef
		if name, ok := strings.CutPrefix(role, "ClusterRole/"); ok {
			role = name
		} else if name, ok := strings.CutPrefix(role, "Role/"); ok {
			role = "role " + name
		}
		subs := subjectWords(c.Subjects)
		s = "granting " + role
		if len(subs) > 0 {
			s += " to " + strings.Join(subs, ", ")
		}
	case len(c.Subjects) > 0:
		// A patch that adds subjects to a binding it does not show.
		s = "adding " + strings.Join(subjectWords(c.Subjects), ", ")
	case c.Aggregated:
		s = "aggregating other roles"
	case (c.Kind == "Role" || c.Kind == "ClusterRole") && c.rulesKnown:
		s = "with " + nRows(c.Rules, "rule", false)
	}
	var flags []string
	for _, f := range c.Flags {
		if f != "cluster-admin" { // already said by "granting cluster-admin"
			flags = append(flags, f)
		}
	}
	if len(flags) > 0 {
		s += " (! " + strings.Join(flags, ", ") + ")"
	}
	return strings.TrimSpace(s)
}

// subjectWords names RBAC subjects as a sentence does: a user by name,
// others by kind and name ("group devs", "serviceaccount ci/builder").
func subjectWords(subjects []string) []string {
	var out []string
	for _, sub := range subjects {
		if name, ok := strings.CutPrefix(sub, "User/"); ok {
			sub = name
		} else {
			kind, name, _ := strings.Cut(sub, "/")
			sub = strings.ToLower(kind) + " " + name
		}
		out = append(out, sub)
	}
	return out
}

// sessionText says how an exec, attach or portforward went and what it
// ran: "over WebSocket: cat /etc/shadow".
func sessionText(e *Exec) string {
	s := "over " + map[string]string{"websocket": "WebSocket", "spdy": "SPDY"}[e.Transport]
	if s == "over " {
		s = "by " + e.Verb
	}
	switch {
	case e.Kind == "portforward" && len(e.Ports) > 0:
		s += ": ports " + strings.Join(e.Ports, ",")
	case len(e.Command) > 0:
		s += ": " + shellJoin(e.Command)
	}
	return s
}

// fmtSpan prints how long a folded row lasted: "218 ms", "2.5 s", "16 s", "1m30s".
func fmtSpan(d time.Duration) string {
	switch {
	case d < time.Second:
		return strconv.FormatInt(d.Milliseconds(), 10) + " ms"
	case d < 10*time.Second:
		return strconv.FormatFloat(d.Seconds(), 'f', 1, 64) + " s"
	case d < time.Minute:
		return strconv.FormatFloat(d.Seconds(), 'f', 0, 64) + " s"
	}
	return d.Round(time.Second).String()
}

// Records returns the rows.
func (x *TimelineReport) Records() []any { return records(x.Rows) }

// Table tells the story, a sentence a row, at the time each row's first
// request was received (RECEIVED, as in the other investigations); wide
// adds the last one's, who, as whom, the
// verb, the result, the peers and every audit ID.
func (x *TimelineReport) Table(wide bool) *Table {
	t := &Table{
		Head:  []string{"RECEIVED", "WHAT HAPPENED", "AUDIT ID"},
		Empty: "nothing happened",
	}
	if x.user != "" {
		t.Empty = fmt.Sprintf("nothing by or as %s", x.user)
	}
	if wide {
		t.Head = []string{"RECEIVED", "LAST", "USER", "AS", "VERB", "RESULT", "COUNT", "WHAT HAPPENED", "PEERS", "AUDIT IDS"}
	}
	users := counter{}
	for _, row := range x.Rows {
		users[userOrNone(row.Actor)] += row.Count
		if !wide {
			id := row.AuditIDs[0]
			if n := len(row.AuditIDs); n > 1 {
				id += fmt.Sprintf(" +%d", n-1)
			}
			t.Rows = append(t.Rows, Row{Cells: []string{fmtTime(row.Time), row.Sentence, id}})
			continue
		}
		t.Rows = append(t.Rows, Row{Cells: []string{fmtTime(row.Time), fmtTime(row.last), userOrNone(row.Actor), row.As, row.Verb, row.Result,
			strconv.Itoa(row.Count), row.Sentence, strings.Join(row.Peers, ","), strings.Join(row.AuditIDs, ",")}})
	}
	if len(x.Rows) > 0 {
		t.Notes = append(t.Notes, fmt.Sprintf("%s in %s by %s", nRows(x.Requests, "request", false), nRows(len(x.Rows), "row", false), fmtCounts(users, 6, ", ")))
	}
	if x.Reads > 0 {
		t.Notes = append(t.Notes, fmt.Sprintf("%s hidden: allowed get, list and watch by users as themselves, of objects other than secrets and RBAC (and GET /version...); --reads shows them", nRows(x.Reads, "read", false)))
	}
	t.Notes = append(t.Notes, hiddenNote(x.Hidden, false)...)
	return t
}
