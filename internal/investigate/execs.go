package investigate

import (
	"fmt"
	"strings"
)

// ExecsQuery asks who exec'd into, attached to or port-forwarded to pods.
type ExecsQuery struct {
	// AllStages reports every event instead of one row per request.
	AllStages bool
	Scope
}

// Exec is one exec, attach or portforward request.
type Exec struct {
	*Request
	// Kind is the subresource: exec, attach or portforward.
	Kind string `json:"kind"`
	// Transport is "websocket" for verb get (kubectl 1.30 and later) and
	// "spdy" for verb create (older clients, and kubectl's fallback).
	Transport string `json:"transport"`
	// Command is the command of an exec, decoded from the repeated
	// command= parameters of the request URI.
	Command []string `json:"command,omitempty"`
	// Container is the container= parameter; empty means the pod's
	// default container.
	Container string `json:"container,omitempty"`
	// Ports are the ports= parameters of a portforward.
	Ports []string `json:"ports,omitempty"`
	// Stdin and TTY say whether the session was interactive.
	Stdin bool `json:"stdin,omitempty"`
	TTY   bool `json:"tty,omitempty"`
}

// ExecsReport answers an ExecsQuery in time order.
type ExecsReport struct {
	Execs []*Exec
	// Hidden counts the rows of the control plane left out (see
	// Scope.IncludeSystem).
	Hidden    int
	allStages bool
}

// Execs finds exec, attach and portforward requests on pods, whatever
// their verb: since kubectl 1.30 they are WebSocket gets, before (and as a
// fallback) SPDY creates.
func Execs(r Source, q ExecsQuery) (*ExecsReport, error) {
	base := and(eq("resource", "pods"), eq("apigroup", ""), in("subresource", "exec", "attach", "portforward"))
	reqs, hidden, err := collect(r, q.Scope, base, q.AllStages, false)
	if err != nil {
		return nil, err
	}
	rep := &ExecsReport{Hidden: hidden, allStages: q.AllStages}
	for _, rq := range lastN(reqs, q.Limit) {
		rep.Execs = append(rep.Execs, newExec(rq))
	}
	return rep, nil
}

func newExec(rq *Request) *Exec {
	e := &Exec{Request: rq, Kind: rq.Subresource}
	switch rq.Verb {
	case "get":
		e.Transport = "websocket"
	case "create":
		e.Transport = "spdy"
	default:
		e.Transport = rq.Verb
	}
	p := uriQuery(rq.URI)
	e.Command = p["command"]
	e.Container = p.Get("container")
	for _, ports := range p["ports"] {
		// kubectl sends one ports= per port; other clients may join them.
		for _, port := range strings.Split(ports, ",") {
			if port = strings.TrimSpace(port); port != "" {
				e.Ports = append(e.Ports, port)
			}
		}
	}
	e.Stdin = p.Get("stdin") == "true" || p.Get("stdin") == "1"
	e.TTY = p.Get("tty") == "true" || p.Get("tty") == "1"
	return e
}

// Records returns the requests.
func (x *ExecsReport) Records() []any { return records(x.Execs) }

// Table lists each request with its pod, container and command.
func (x *ExecsReport) Table(wide bool) *Table {
	t := &Table{
		Head:  []string{"RECEIVED", "USER", "AS", "NAMESPACE", "POD", "KIND", "CONTAINER", "COMMAND", "VIA", "RESULT", "SOURCE IPS"},
		Empty: "no exec, attach or portforward requests",
	}
	if wide {
		t.Head = append(t.Head, "STDIN/TTY", "STAGE", "USER AGENT", "AUDIT ID")
	}
	users := counter{}
	for _, e := range x.Execs {
		cmd := shellJoin(e.Command)
		if e.Kind == "portforward" && len(e.Ports) > 0 {
			cmd = "ports " + strings.Join(e.Ports, ",")
		}
		cells := []string{fmtTime(e.Time), userOrNone(e.User), e.As, e.Namespace, e.Name, e.Kind, e.Container, cmd,
			e.Transport + " (" + e.Verb + ")", e.result(), fmtIPs(e.SourceIPs)}
		if wide {
			var io []string
			if e.Stdin {
				io = append(io, "stdin")
			}
			if e.TTY {
				io = append(io, "tty")
			}
			cells = append(cells, strings.Join(io, ","), e.Stage, e.UserAgent, e.AuditID)
		}
		t.Rows = append(t.Rows, Row{Cells: cells})
		users[userOrNone(e.User)]++
	}
	if len(x.Execs) > 0 {
		what := nRows(len(x.Execs), "request", x.allStages)
		t.Notes = append(t.Notes, fmt.Sprintf("%s by %s. A WebSocket session is logged as verb get, an SPDY one as create: kubectl tries the first and falls back to the second, so one command may show twice.",
			what, fmtCounts(users, 5, ", ")))
	}
	t.Notes = append(t.Notes, hiddenNote(x.Hidden, x.allStages)...)
	return t
}

// shellJoin writes a command as a POSIX shell would read it back.
func shellJoin(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = shellQuote(a)
	}
	return strings.Join(out, " ")
}

func shellQuote(s string) string {
	if s == "" {
		return "''"
	}
	safe := true
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:=@%+,", r)) {
			safe = false
			break
		}
	}
	if safe {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
