package investigate

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// DeniedQuery asks who was refused: 401 (authentication failed), 403
// (forbidden) and every request the authorizer decided to forbid.
type DeniedQuery struct {
	Scope
}

// DeniedUser is one user's refused requests, per identity they acted as:
// a request that impersonated someone is refused to that pair, not to the
// sender alone (blaming admin for what admin asked as developer would name
// the wrong person).
type DeniedUser struct {
	// User is the user name; empty when authentication failed.
	User string `json:"user"`
	// As is the user the requests impersonated; empty without.
	As string `json:"impersonatedUser,omitempty"`
	// Requests counts the refused requests.
	Requests int `json:"requests"`
	// First and Last are when the first and last were received.
	First time.Time `json:"first"`
	Last  time.Time `json:"last"`
	// Codes, Verbs, Resources (resource[/subresource], or the path of a
	// non-resource request), Namespaces and Peers (the address the API
	// server saw) count the requests, most frequent first.
	Codes      []Count `json:"codes"`
	Verbs      []Count `json:"verbs"`
	Resources  []Count `json:"resources"`
	Namespaces []Count `json:"namespaces"`
	Peers      []Count `json:"peers"`

	codes, verbs, resources, namespaces, peers counter
}

// DeniedReport answers a DeniedQuery, most refused user first.
type DeniedReport struct {
	Users    []*DeniedUser
	Requests int
	// Cut counts the users left out by Scope.Limit.
	Cut int
	// Hidden counts the rows of the control plane left out (see
	// Scope.IncludeSystem).
	Hidden int

	codes counter // of every user, those cut by Limit too, as Requests
}

// Denied groups refused requests by user.
func Denied(r Source, q DeniedQuery) (*DeniedReport, error) {
	base := or(in("code", "401", "403"), eq("decision", "forbid"))
	reqs, hidden, err := collect(r, q.Scope, base, false, false)
	if err != nil {
		return nil, err
	}
	rep := &DeniedReport{Requests: len(reqs), Hidden: hidden}
	byUser := map[[2]string]*DeniedUser{}
	for _, rq := range reqs {
		key := [2]string{rq.User, rq.As}
		u := byUser[key]
		if u == nil {
			u = &DeniedUser{User: rq.User, As: rq.As, First: rq.Time, codes: counter{}, verbs: counter{}, resources: counter{}, namespaces: counter{}, peers: counter{}}
			byUser[key] = u
			rep.Users = append(rep.Users, u)
		}
		u.Requests++
		u.Last = rq.Time
		code := "none"
		if rq.Code != 0 {
			code = strconv.Itoa(rq.Code)
		}
		u.codes[code]++
		u.verbs[rq.Verb]++
		res := rq.Resource
		if res == "" {
			res = rq.object()
		} else if rq.Subresource != "" {
			res += "/" + rq.Subresource
		}
		u.resources[res]++
		if rq.Namespace != "" {
			u.namespaces[rq.Namespace]++
		}
		if rq.Peer != "" {
			u.peers[rq.Peer]++
		}
	}
	for _, u := range rep.Users {
		u.Codes, u.Verbs, u.Resources, u.Namespaces, u.Peers = u.codes.top(0), u.verbs.top(0), u.resources.top(0), u.namespaces.top(0), u.peers.top(0)
	}
	slices.SortStableFunc(rep.Users, func(a, b *DeniedUser) int {
		return cmp.Or(cmp.Compare(b.Requests, a.Requests), cmp.Compare(a.User, b.User), cmp.Compare(a.As, b.As))
	})
	rep.codes = counter{}
	for _, u := range rep.Users {
		for c, k := range u.codes {
			rep.codes[c] += k
		}
	}
	rep.Users, rep.Cut = firstN(rep.Users, q.Limit)
	return rep, nil
}

// Records returns the users.
func (d *DeniedReport) Records() []any { return records(d.Users) }

// Table lists the users, most refused first, with their top verbs,
// resources and peers (all of them with wide).
func (d *DeniedReport) Table(wide bool) *Table {
	t := &Table{
		Head:  []string{"USER", "AS", "REQUESTS", "CODES", "FIRST", "LAST", "VERBS", "RESOURCES", "NAMESPACES", "PEERS"},
		Empty: "no denied requests",
	}
	n := 3
	if wide {
		n = 0
	}
	for _, u := range d.Users {
		as := u.As
		if as == "" {
			as = "-"
		}
		t.Rows = append(t.Rows, Row{Cells: []string{userOrNone(u.User), as, strconv.Itoa(u.Requests), fmtCounts(u.codes, 0, ","),
			fmtTime(u.First), fmtTime(u.Last), fmtCounts(u.verbs, n, ","), fmtCounts(u.resources, n, ","), fmtCounts(u.namespaces, n, ","), fmtCounts(u.peers, n, ",")}})
	}
	if len(d.Users) > 0 {
		var codes []string
		for _, c := range d.codes.top(0) {
			codes = append(codes, fmt.Sprintf("%d x %s", c.Count, c.Value))
		}
		t.Notes = append(t.Notes, fmt.Sprintf("%s denied to %s (%s). 401: authentication failed (no user); 403 or forbid: the authorizer said no.",
			nRows(d.Requests, "request", false), nRows(len(d.Users)+d.Cut, "user", false), strings.Join(codes, ", ")))
	}
	t.Notes = append(t.Notes, cutNote(d.Cut)...)
	t.Notes = append(t.Notes, hiddenNote(d.Hidden, false)...)
	return t
}
