package investigate

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"

	"github.com/kubetrail/kubetrail/internal/query"
)

// ActivityQuery asks for a user's timeline: every request made by the
// user, or made by someone else impersonating the user, and every write of
// a (Cluster)RoleBinding that names the user (the binding that granted
// them their rights is part of their story, though someone else made it).
type ActivityQuery struct {
	// User is the user name; a '*' in it matches any run of characters
	// (system:serviceaccount:ci:*).
	User string
	// AllStages reports every event instead of one row per request.
	AllStages bool
	Scope
}

// ActivityReport answers an ActivityQuery in time order.
type ActivityReport struct {
	User     string
	Requests []*Request
	// Hidden counts the rows of the control plane left out (see
	// Scope.IncludeSystem).
	Hidden    int
	allStages bool
}

// Activity finds what a user did: user=USER or as=USER.
func Activity(r Source, q ActivityQuery) (*ActivityReport, error) {
	if q.User == "" {
		return nil, fmt.Errorf("activity needs a user name")
	}
	byUser, err := globEq("user", q.User)
	if err != nil {
		return nil, err
	}
	asUser, err := globEq("as", q.User)
	if err != nil {
		return nil, err
	}
	terms := []query.Expr{byUser, asUser}
	if b := bindingNaming(q.User); b != nil {
		terms = append(terms, b)
	}
	sc := q.Scope
	if controlPlane(q.User) {
		// Asking for a control-plane identity by name (or by a pattern
		// that names only such identities) is asking to see it.
		sc.IncludeSystem = true
	}
	reqs, hidden, err := collect(r, sc, or(terms...), q.AllStages, false)
	if err != nil {
		return nil, err
	}
	return &ActivityReport{User: q.User, Requests: lastN(reqs, q.Limit), Hidden: hidden, allStages: q.AllStages}, nil
}

// Records returns the requests.
func (a *ActivityReport) Records() []any { return records(a.Requests) }

// Table is the timeline; USER and AS show whether the user acted as
// themselves, impersonated someone, or was impersonated.
func (a *ActivityReport) Table(wide bool) *Table {
	t := &Table{
		Head:  []string{"RECEIVED", "USER", "AS", "VERB", "NAMESPACE", "OBJECT", "RESULT", "SOURCE IPS"},
		Empty: fmt.Sprintf("no requests by or as %s", a.User),
	}
	if wide {
		t.Head = append(t.Head, "STAGE", "USER AGENT", "AUDIT ID", "CLUSTER")
	}
	verbs, failed := counter{}, 0
	for _, q := range a.Requests {
		cells := []string{fmtTime(q.Time), userOrNone(q.User), q.As, q.Verb, q.Namespace, q.object(), q.result(), fmtIPs(q.SourceIPs)}
		if wide {
			cells = append(cells, q.Stage, q.UserAgent, q.AuditID, q.Cluster)
		}
		t.Rows = append(t.Rows, Row{Cells: cells})
		verbs[q.Verb]++
		if q.Code >= 400 {
			failed++
		}
	}
	if n := len(a.Requests); n > 0 {
		what := nRows(n, "request", a.allStages)
		t.Notes = append(t.Notes, fmt.Sprintf("%s from %s to %s (%s); %d failed (code >= 400)",
			what, fmtTime(a.Requests[0].Time), fmtTime(a.Requests[n-1].Time), fmtCounts(verbs, 6, ", "), failed))
	}
	t.Notes = append(t.Notes, hiddenNote(a.Hidden, a.allStages)...)
	return t
}

// bindingNaming selects writes of RoleBindings and ClusterRoleBindings
// whose request body names user as a subject: "name":"USER" (a
// ServiceAccount, system:serviceaccount:NS:NAME, by its name and
// namespace, or as a User subject by its full name, which RBAC takes
// too). Bodies are logged at level Request and above; below it the
// binding cannot be seen. nil for a pattern with '*'.
func bindingNaming(user string) query.Expr {
	if strings.Contains(user, "*") {
		return nil
	}
	name := user
	var ns string
	if rest, ok := strings.CutPrefix(user, "system:serviceaccount:"); ok {
		if i := strings.LastIndexByte(rest, ':'); i > 0 {
			ns, name = rest[:i], rest[i+1:]
		}
	}
	quoted := func(s string) string {
		b, _ := json.Marshal(s)
		return regexp.QuoteMeta(string(b))
	}
	body := cmpExpr("requestObject", query.OpMatch, `"name":`+quoted(name))
	if ns != "" {
		byFullName := cmpExpr("requestObject", query.OpMatch, `"name":`+quoted(user))
		body = or(and(body, cmpExpr("requestObject", query.OpMatch, `"namespace":`+quoted(ns))), byFullName)
	}
	return and(in("resource", "clusterrolebindings", "rolebindings"), in("verb", "create", "update", "patch"), body)
}
