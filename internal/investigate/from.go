package investigate

import (
	"fmt"
	"net/netip"
	"strings"
)

// FromQuery asks what came from an address or a network.
type FromQuery struct {
	// Addr is an IP address (10.0.0.5, 2001:db8::1) or a CIDR prefix
	// (10.0.0.0/8).
	Addr string
	// AllStages reports every event instead of one row per request.
	AllStages bool
	Scope
}

// FromRequest is one request with Addr among its source IPs.
type FromRequest struct {
	*Request
	// Match is "peer" when the address the API server saw (the last
	// sourceIPs entry) matched, and "forwarded" when only entries taken
	// from X-Forwarded-For or X-Real-Ip did: any client can write those.
	Match string `json:"match"`
}

// FromReport answers a FromQuery in time order.
type FromReport struct {
	Addr     string
	Requests []*FromRequest
	// Peer and Forwarded count the requests by Match.
	Peer, Forwarded int
	// Hidden counts the rows of the control plane left out (see
	// Scope.IncludeSystem).
	Hidden    int
	allStages bool
}

// From finds the requests that name an address or network in sourceIPs.
func From(r Source, q FromQuery) (*FromReport, error) {
	match, err := addrMatcher(q.Addr)
	if err != nil {
		return nil, err
	}
	reqs, hidden, err := collect(r, q.Scope, eq("ip", strings.TrimSpace(q.Addr)), q.AllStages, false)
	if err != nil {
		return nil, err
	}
	rep := &FromReport{Addr: q.Addr, Hidden: hidden, allStages: q.AllStages}
	for _, rq := range lastN(reqs, q.Limit) {
		fr := &FromRequest{Request: rq, Match: "forwarded"}
		if match(rq.Peer) {
			fr.Match = "peer"
			rep.Peer++
		} else {
			rep.Forwarded++
		}
		rep.Requests = append(rep.Requests, fr)
	}
	return rep, nil
}

// addrMatcher reads an address or prefix and returns a test for one
// source IP, comparing addresses as the filter language does
// (IPv4-mapped IPv6 is IPv4; zones are ignored).
func addrMatcher(s string) (func(string) bool, error) {
	s = strings.TrimSpace(s)
	parse := func(a string) (netip.Addr, bool) {
		ip, err := netip.ParseAddr(a)
		if err != nil {
			return netip.Addr{}, false
		}
		return ip.Unmap().WithZone(""), true
	}
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("%q: want an IP address or a CIDR prefix such as 10.0.0.0/8: %v", s, err)
		}
		p = p.Masked()
		if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
		}
		return func(ip string) bool { a, ok := parse(ip); return ok && p.Contains(a) }, nil
	}
	want, ok := parse(s)
	if !ok {
		return nil, fmt.Errorf("%q: want an IP address or a CIDR prefix such as 10.0.0.0/8", s)
	}
	return func(ip string) bool { a, ok := parse(ip); return ok && a == want }, nil
}

// Records returns the requests.
func (f *FromReport) Records() []any { return records(f.Requests) }

// Table lists the requests, each marked by whether the address was the
// peer or only a client-controlled entry.
func (f *FromReport) Table(wide bool) *Table {
	t := &Table{
		Head:  []string{"RECEIVED", "USER", "AS", "VERB", "NAMESPACE", "OBJECT", "RESULT", "SOURCE IPS", "MATCH"},
		Empty: fmt.Sprintf("no requests from %s", f.Addr),
	}
	if wide {
		t.Head = append(t.Head, "STAGE", "USER AGENT", "AUDIT ID", "CLUSTER")
	}
	users := counter{}
	for _, q := range f.Requests {
		m := q.Match
		if m == "forwarded" {
			m = "forwarded only"
		}
		cells := []string{fmtTime(q.Time), userOrNone(q.User), q.As, q.Verb, q.Namespace, q.object(), q.result(), fmtIPs(q.SourceIPs), m}
		if wide {
			cells = append(cells, q.Stage, q.UserAgent, q.AuditID, q.Cluster)
		}
		t.Rows = append(t.Rows, Row{Cells: cells})
		users[userOrNone(q.User)]++
	}
	if len(f.Requests) > 0 {
		what := nRows(len(f.Requests), "request", f.allStages)
		t.Notes = append(t.Notes, fmt.Sprintf("%s from %s by %s", what, f.Addr, fmtCounts(users, 5, ", ")))
		if f.Forwarded == 0 {
			t.Notes = append(t.Notes, "all matched the peer: the API server saw the address itself")
		} else {
			t.Notes = append(t.Notes, fmt.Sprintf("match peer: %d (the API server saw the address itself); forwarded only: %d (the address is only in X-Forwarded-For/X-Real-Ip entries, which any client can set: do not attribute these to %s)",
				f.Peer, f.Forwarded, f.Addr))
		}
	}
	t.Notes = append(t.Notes, hiddenNote(f.Hidden, f.allStages)...)
	return t
}
