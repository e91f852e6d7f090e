package investigate

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/kubetrail/kubetrail/internal/query"
)

// HistoryQuery asks for an object's life: its creation, updates and
// patches (its subresources' too, such as status), and deletion, in time
// order, with what each change did to the object where the audit policy
// recorded bodies.
type HistoryQuery struct {
	// Target names the object: resource and name ('*' globs; an empty
	// name follows every object of the resource, each on its own).
	Target Target
	// Namespace is the object's namespace; empty for any. It is ignored
	// for cluster-scoped resources.
	Namespace string
	// Reads adds get, list and watch requests to the writes.
	Reads bool
	// Diffs computes each change's diff (and the first state's body).
	Diffs bool
	// AllStages reports every event instead of one row per request.
	AllStages bool
	Scope
}

// Change is one request in an object's history.
type Change struct {
	*Request
	// Body says which body of the event held the object as it was after
	// the change: "responseObject" or "requestObject"; empty when the
	// event held none (logged at Metadata level, a failed request, a read,
	// or a body that is not the object, such as a Status).
	Body string `json:"body,omitempty"`
	// Patch is the patch the request sent, when the response did not show
	// the patched object.
	Patch json.RawMessage `json:"patch,omitempty"`
	// Diff is a unified diff of the object before and after the change,
	// when both are known; for a creation, or the first state seen, the
	// whole object as added lines. Empty when nothing is known or nothing
	// changed.
	Diff string `json:"diff,omitempty"`
	// Unchanged is set when both states are known and equal (ignoring
	// managedFields and resourceVersion).
	Unchanged bool `json:"unchanged,omitempty"`

	diff []string
}

// HistoryReport answers a HistoryQuery.
type HistoryReport struct {
	Target  string
	Changes []*Change
	// NoBody counts the successful writes whose event carried no body of
	// the object, so that their effect is unknown.
	NoBody int
	// Hidden counts the rows of the control plane left out (see
	// Scope.IncludeSystem).
	Hidden    int
	allStages bool
}

// History follows an object through its changes.
func History(r Source, q HistoryQuery) (*HistoryReport, error) {
	conds, err := q.Target.conds(q.Namespace, true, true)
	if err != nil {
		return nil, err
	}
	if !q.Reads {
		// Exec, attach, port-forward and proxy sessions are writes (create)
		// on a subresource, but do not change the object.
		conds = append(conds, in("verb", writeVerbs...),
			cmpExpr("subresource", query.OpNotIn, "exec", "attach", "portforward", "proxy"))
	}
	// Every change is read, the control plane's too, so that each diff
	// is against the state before it; the control plane's rows are left
	// out only afterwards, so that no diff blames a person for them.
	sc := q.Scope
	sc.IncludeSystem = true
	specs := []collectSpec{{and(conds...), q.AllStages, q.Diffs}}
	if q.Target.Name != "" && q.Target.Subresource == "" {
		gen, err := generatedCreations(q)
		if err != nil {
			return nil, err
		}
		specs = append(specs, gen)
	}
	got, err := collectEach(r, sc, specs...)
	if err != nil {
		return nil, err
	}
	reqs := got[0].reqs
	if len(got) > 1 {
		if gen := keepGenerated(got[1].reqs, q); len(gen) > 0 {
			reqs = append(reqs, gen...)
			sortRequests(reqs)
		}
	}
	rep := &HistoryReport{Target: q.Target.String(), allStages: q.AllStages}
	type state struct {
		lines []string
		kind  string
	}
	states := map[string]*state{}
	noBody := map[*Change]bool{}
	for _, rq := range reqs {
		c := &Change{Request: rq}
		rep.Changes = append(rep.Changes, c)
		if !slices.Contains(writeVerbs, rq.Verb) || rq.stageRank < 2 || rq.Code < 200 || rq.Code > 299 {
			continue
		}
		if !q.Diffs {
			continue
		}
		key := objectKey(rq)
		st := states[key]
		if st == nil || rq.Verb == "create" && rq.Subresource == "" {
			// A creation starts a new life, even for a name used before.
			st = &state{}
			states[key] = st
		}
		isObject := func(kind string) bool {
			return kind != "" && kind != "Status" && !strings.HasSuffix(kind, "Options") && (st.kind == "" || kind == st.kind)
		}
		var lines []string
		var kind string
		if l, k, ok := normalizeBody(rq.responseObject); ok && isObject(k) {
			lines, kind, c.Body = l, k, "responseObject"
		} else if rq.Verb == "create" || rq.Verb == "update" {
			if l, k, ok := normalizeBody(rq.requestObject); ok && isObject(k) {
				lines, kind, c.Body = l, k, "requestObject"
			}
		}
		if rq.Verb == "patch" && c.Body == "" && len(rq.requestObject) > 0 {
			c.Patch = json.RawMessage(rq.requestObject)
		}
		if c.Body == "" {
			if c.Patch == nil {
				noBody[c] = true
			}
			// The change is unknown: the next state cannot be diffed
			// against this one's predecessor.
			st.lines = nil
			continue
		}
		c.diff = unifiedDiff(st.lines, lines, 3)
		c.Unchanged = st.lines != nil && len(c.diff) == 0
		c.Diff = strings.Join(c.diff, "\n")
		st.lines, st.kind = lines, kind
	}
	if !q.IncludeSystem {
		rep.Changes, rep.Hidden = dropControlPlaneChanges(rep.Changes)
	}
	for _, c := range rep.Changes {
		if noBody[c] {
			rep.NoBody++
		}
	}
	if q.Limit > 0 && len(rep.Changes) > q.Limit {
		rep.Changes = rep.Changes[len(rep.Changes)-q.Limit:]
	}
	return rep, nil
}

// generatedCreations finds the creations of the target whose name the API
// server chose (metadata.generateName): the create event's objectRef has
// no name (the audit log takes it from the request body, which has only
// the prefix), so the name condition misses it. The name is in the
// responseObject, at level RequestResponse: the creates with no name whose
// responseObject holds the target's name are read (this spec), and kept
// when their metadata.name matches it (keepGenerated).
func generatedCreations(q HistoryQuery) (collectSpec, error) {
	t := q.Target
	t.Name = ""
	conds, err := t.conds(q.Namespace, false, false)
	if err != nil {
		return collectSpec{}, err
	}
	body, err := globEq("responseObject", "*"+strings.Trim(q.Target.Name, "*")+"*")
	if err != nil {
		return collectSpec{}, err
	}
	conds = append(conds, eq("verb", "create"), eq("name", ""), body)
	return collectSpec{and(conds...), q.AllStages, true}, nil
}

// keepGenerated keeps the creations generatedCreations read whose
// metadata.name matches the target, each given that name.
func keepGenerated(reqs []*Request, q HistoryQuery) []*Request {
	out := reqs[:0]
	for _, rq := range reqs {
		var obj struct {
			Metadata struct{ Name string } `json:"metadata"`
		}
		if json.Unmarshal(rq.responseObject, &obj) != nil || !globMatch(q.Target.Name, obj.Metadata.Name) {
			continue
		}
		rq.Name = obj.Metadata.Name
		if !q.Diffs {
			rq.requestObject, rq.responseObject = nil, nil
		}
		out = append(out, rq)
	}
	return out
}

// globMatch reports whether s matches pattern, where '*' matches any run
// of characters (as globEq's patterns do).
func globMatch(pattern, s string) bool {
	parts := strings.Split(pattern, "*")
	if len(parts) == 1 {
		return s == pattern
	}
	if !strings.HasPrefix(s, parts[0]) {
		return false
	}
	s = s[len(parts[0]):]
	for _, p := range parts[1 : len(parts)-1] {
		i := strings.Index(s, p)
		if i < 0 {
			return false
		}
		s = s[i+len(p):]
	}
	return strings.HasSuffix(s, parts[len(parts)-1])
}

// dropControlPlaneChanges leaves out the control plane's changes as
// collect leaves out its requests (see dropControlPlane).
func dropControlPlaneChanges(cs []*Change) ([]*Change, int) {
	reqs := make([]*Request, len(cs))
	for i, c := range cs {
		reqs[i] = c.Request
	}
	kept, hidden := dropControlPlane(reqs)
	keep := make(map[*Request]bool, len(kept))
	for _, q := range kept {
		keep[q] = true
	}
	out := cs[:0]
	for _, c := range cs {
		if keep[c.Request] {
			out = append(out, c)
		}
	}
	return out, hidden
}

// objectKey names the object a request changed. A namespace's own
// objectRef.namespace is empty on create and its name on delete, so it is
// left out for namespaces.
func objectKey(q *Request) string {
	ns := q.Namespace
	if q.Resource == "namespaces" {
		ns = ""
	}
	return strings.Join([]string{q.Cluster, q.APIGroup, q.Resource, ns, q.Name}, "\x00")
}

// Records returns the changes.
func (h *HistoryReport) Records() []any { return records(h.Changes) }

// Table lists the changes, each followed by its diff.
func (h *HistoryReport) Table(wide bool) *Table {
	t := &Table{
		Head:  []string{"RECEIVED", "USER", "AS", "VERB", "NAMESPACE", "OBJECT", "RESULT", "SOURCE IPS"},
		Empty: fmt.Sprintf("no changes to %s", h.Target),
	}
	if wide {
		t.Head = append(t.Head, "STAGE", "BODY", "USER AGENT", "AUDIT ID")
	}
	for _, c := range h.Changes {
		cells := []string{fmtTime(c.Time), userOrNone(c.User), c.As, c.Verb, c.Namespace, c.object(), c.result(), fmtIPs(c.SourceIPs)}
		if wide {
			cells = append(cells, c.Stage, c.Body, c.UserAgent, c.AuditID)
		}
		row := Row{Cells: cells}
		switch {
		case c.Unchanged:
			row.Detail = []string{"(the object did not change, ignoring managedFields and resourceVersion)"}
		case c.diff != nil:
			row.Detail = c.diff
		case c.Patch != nil:
			row.Detail = append([]string{"patch sent (the response did not carry the object):"}, indentJSON(c.Patch)...)
		}
		t.Rows = append(t.Rows, row)
	}
	t.Notes = append(t.Notes, hiddenNote(h.Hidden, h.allStages)...)
	if h.NoBody > 0 {
		t.Notes = append(t.Notes, fmt.Sprintf("%s carried no body of the object (logged at Metadata level, or a Status reply): what they changed is not in the log.", nRows(h.NoBody, "successful change", false)))
	}
	return t
}
