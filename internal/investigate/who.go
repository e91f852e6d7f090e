package investigate

import (
	"fmt"
	"slices"
	"strings"
)

// WhoQuery asks who did something to an object, or to any object of a
// kind: "who deleted secret important in production".
type WhoQuery struct {
	// Verbs are the verbs asked about (see Verbs); nil for any verb.
	Verbs []string
	// Target is the object or kind; without a subresource it means the
	// object itself, not its subresources.
	Target Target
	// Namespace limits the answer to one namespace ('*' globs); empty for
	// any. It is ignored for cluster-scoped resources.
	Namespace string
	// AllStages reports every event instead of one row per request.
	AllStages bool
	Scope
}

// WhoReport answers a WhoQuery: the matching requests in time order.
type WhoReport struct {
	Requests  []*Request
	allStages bool
}

// Who finds the requests that did Verbs to Target.
func Who(r Source, q WhoQuery) (*WhoReport, error) {
	// A deletecollection may have deleted the object, when that is asked.
	collections := len(q.Verbs) == 0 || slices.Contains(q.Verbs, "deletecollection")
	conds, err := q.Target.conds(q.Namespace, false, collections)
	if err != nil {
		return nil, err
	}
	if len(q.Verbs) > 0 {
		conds = append(conds, in("verb", q.Verbs...))
	}
	// who answers a precise question about one object: the control plane
	// is part of the answer (who deleted this pod? the node did).
	sc := q.Scope
	sc.IncludeSystem = true
	reqs, _, err := collect(r, sc, and(conds...), q.AllStages, false)
	if err != nil {
		return nil, err
	}
	return &WhoReport{Requests: lastN(reqs, q.Limit), allStages: q.AllStages}, nil
}

// Records returns the requests.
func (w *WhoReport) Records() []any { return records(w.Requests) }

// Table lists each request: who (user, groups, impersonation), from where
// (source IPs with the peer marked, user agent), when, and the result.
func (w *WhoReport) Table(wide bool) *Table {
	t := &Table{
		Head:  []string{"RECEIVED", "USER", "GROUPS", "AS", "SOURCE IPS", "USER AGENT", "VERB", "NAMESPACE", "OBJECT", "STAGE", "RESULT"},
		Empty: "no matching requests",
	}
	if wide {
		t.Head = append(t.Head, "TIME", "AUDIT ID", "CLUSTER")
	}
	users := counter{}
	forwarded := false
	for _, q := range w.Requests {
		ua := shortUA(q.UserAgent)
		if wide {
			ua = q.UserAgent
		}
		cells := []string{fmtTime(q.Time), userOrNone(q.User), strings.Join(q.Groups, ","), q.As, fmtIPs(q.SourceIPs), ua,
			q.Verb, q.Namespace, q.object(), q.Stage, q.result()}
		if wide {
			cells = append(cells, fmtTime(q.StageTime), q.AuditID, q.Cluster)
		}
		t.Rows = append(t.Rows, Row{Cells: cells})
		users[userOrNone(q.User)]++
		forwarded = forwarded || len(q.SourceIPs) > 1
	}
	if len(w.Requests) > 0 {
		what := nRows(len(w.Requests), "request", w.allStages)
		t.Notes = append(t.Notes, fmt.Sprintf("%s by %s", what, fmtCounts(users, 5, ", ")))
	}
	if forwarded {
		t.Notes = append(t.Notes, ipNote)
	}
	return t
}

// ipNote explains the peer mark when some request named more addresses.
const ipNote = "(peer) marks the address the API server saw; the addresses before it come from X-Forwarded-For/X-Real-Ip headers, which any client can set."
