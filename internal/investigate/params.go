package investigate

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kubetrail/kubetrail/internal/escape"
	"github.com/kubetrail/kubetrail/internal/query"
	"github.com/kubetrail/kubetrail/internal/timespec"
)

// Names lists the investigations Run knows, in the order the docs present
// them.
var Names = []string{"timeline", "who", "activity", "history", "secrets", "execs", "denied", "rbac", "from"}

// Parameters. Every investigation takes the scope parameters; each takes
// its own besides (see Run).
var (
	scopeParams    = []string{"since", "until", "where"}
	timelineParams = []string{"limit", "stages"}
	ownParams      = map[string][]string{
		// timeline folds requests into rows, so it takes limit (of rows)
		// but not stages.
		"timeline": {"user", "gap", "reads", "limit"},
		"who":      {"verb", "resource", "name", "namespace"},
		"activity": {"user"},
		"history":  {"resource", "name", "namespace", "reads", "diff"},
		"secrets":  nil,
		"execs":    nil,
		"denied":   nil,
		"rbac":     nil,
		"from":     {"addr"},
	}
	timelines = map[string]bool{"who": true, "activity": true, "history": true, "execs": true, "rbac": true, "from": true}
	// groupings print one row per group, in their order of importance;
	// limit keeps the first N.
	groupings = map[string]bool{"secrets": true, "denied": true}
)

// Params returns the parameters investigation name takes, or nil for an
// unknown name.
func Params(name string) []string {
	own, ok := ownParams[name]
	if !ok {
		return nil
	}
	ps := append(slices.Clone(own), scopeParams...)
	if name != "who" {
		// who answers about one object, the control plane included.
		ps = append(ps, "include-system")
	}
	if timelines[name] {
		ps = append(ps, timelineParams...)
	}
	if groupings[name] {
		ps = append(ps, "limit")
	}
	return ps
}

// ParamError is a mistake in one parameter of Run: the HTTP API answers it
// with 400 and the parameter's name.
type ParamError struct {
	// Param is the parameter's name.
	Param string
	// Err says what is wrong with it; a *query.Error for where.
	Err error
}

// Error names the parameter first, unless the message already does.
func (e *ParamError) Error() string {
	msg := e.Err.Error()
	if strings.HasPrefix(msg, e.Param+" ") {
		return msg
	}
	return e.Param + ": " + msg
}

func (e *ParamError) Unwrap() error { return e.Err }

func paramErr(param, format string, args ...any) error {
	return &ParamError{Param: param, Err: fmt.Errorf(format, args...)}
}

// Run runs investigation name with its parameters as the HTTP API takes
// them, so that the API and the CLI (which sends the same parameters to
// the API, or runs them here) answer alike. now resolves relative times.
//
//	all         since, until   inclusive bounds on the events' time, as
//	                           internal/timespec reads them: a duration
//	                           before now (2h, 7d), RFC 3339 or a date
//	            where          more conditions in the filter language
//	            include-system 1 to keep the control plane's requests
//	                           (all but who, which always keeps them)
//	timelines   limit          the N most recent rows (who, activity,
//	                           history, execs, rbac, from)
//	            stages=all     every event instead of one row per request
//	groupings   limit          the first N groups (secrets, denied)
//	who         verb           verbs as Verbs reads them ("deleted",
//	                           "get,list"); empty or * for any
//	            resource       RESOURCE[.GROUP][/NAME[/SUBRESOURCE]] (required)
//	            name           the name, when resource does not hold it
//	            namespace      '*' globs; empty for any
//	activity    user           the user ('*' globs; required)
//	history     resource, name, namespace as for who (a name is required)
//	            reads          1 to add get, list and watch
//	            diff           0 to leave out the body diffs
//	from        addr           an IP address or CIDR prefix (required)
//	timeline    user           the user's story only ('*' globs); empty for all
//	            gap            how far apart similar requests fold into one
//	                           row (a duration; 0 folds none; default 10s)
//	            reads          1 to show every read (see Timeline)
//	            limit          the N most recent rows
//
// A parameter the investigation does not take, or a bad value, is a
// *ParamError naming it; a mistake in where wraps a *query.Error.
//
// Run stops reading, returning ctx's cause, when ctx is cancelled (a
// signal to the CLI, a client gone from the API).
func Run(ctx context.Context, r Source, name string, p url.Values, now time.Time) (Report, error) {
	return RunRestricted(ctx, r, name, p, now, nil)
}

// RunRestricted is Run with restrict (Scope.Restrict) joined to every
// selection the investigation makes: the API passes a scoped viewer's
// clusters and namespaces, which no parameter can widen.
func RunRestricted(ctx context.Context, r Source, name string, p url.Values, now time.Time, restrict query.Expr) (Report, error) {
	known := Params(name)
	if known == nil {
		return nil, fmt.Errorf("no investigation %q; there are %s", name, strings.Join(Names, ", "))
	}
	for k, vs := range p {
		if !slices.Contains(known, k) {
			return nil, paramErr(k, "%s takes no parameter %q; it takes %s", name, k, strings.Join(known, ", "))
		}
		if len(vs) > 1 {
			return nil, paramErr(k, "given %d times", len(vs))
		}
	}
	sc, allStages, err := parseScope(p, now)
	if err != nil {
		return nil, err
	}
	sc.ctx, sc.Restrict = ctx, restrict
	switch name {
	case "who":
		t, err := target(p, false)
		if err != nil {
			return nil, err
		}
		q := WhoQuery{Verbs: Verbs(p.Get("verb")), Target: t, Namespace: p.Get("namespace"), AllStages: allStages, Scope: sc}
		if err := checkGlobs(t, q.Namespace); err != nil {
			return nil, err
		}
		return Who(r, q)
	case "activity":
		u := p.Get("user")
		if u == "" {
			return nil, paramErr("user", "required: the user whose requests to list")
		}
		if _, err := globEq("user", u); err != nil {
			return nil, &ParamError{Param: "user", Err: err}
		}
		return Activity(r, ActivityQuery{User: u, AllStages: allStages, Scope: sc})
	case "history":
		t, err := target(p, true)
		if err != nil {
			return nil, err
		}
		q := HistoryQuery{Target: t, Namespace: p.Get("namespace"), Diffs: true, AllStages: allStages, Scope: sc}
		if err := checkGlobs(t, q.Namespace); err != nil {
			return nil, err
		}
		if q.Reads, err = boolParam(p, "reads", false); err != nil {
			return nil, err
		}
		if q.Diffs, err = boolParam(p, "diff", true); err != nil {
			return nil, err
		}
		return History(r, q)
	case "secrets":
		return Secrets(r, SecretsQuery{Scope: sc})
	case "execs":
		return Execs(r, ExecsQuery{AllStages: allStages, Scope: sc})
	case "denied":
		return Denied(r, DeniedQuery{Scope: sc})
	case "rbac":
		return RBAC(r, RBACQuery{AllStages: allStages, Scope: sc})
	case "from":
		a := p.Get("addr")
		if a == "" {
			return nil, paramErr("addr", "required: an IP address or a CIDR prefix such as 10.0.0.0/8")
		}
		if _, err := addrMatcher(a); err != nil {
			return nil, &ParamError{Param: "addr", Err: err}
		}
		return From(r, FromQuery{Addr: a, AllStages: allStages, Scope: sc})
	case "timeline":
		q := TimelineQuery{User: p.Get("user"), Gap: DefaultGap, Scope: sc}
		if q.User != "" {
			if _, err := globEq("user", q.User); err != nil {
				return nil, &ParamError{Param: "user", Err: err}
			}
		}
		if v := p.Get("gap"); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil || d < 0 {
				return nil, paramErr("gap", "%q: want a duration such as 10s or 2m, 0 to fold nothing", v)
			}
			q.Gap = d
		}
		if q.Reads, err = boolParam(p, "reads", false); err != nil {
			return nil, err
		}
		return Timeline(r, q)
	}
	return nil, fmt.Errorf("BUG: investigation %q has parameters but no case", name)
}

// parseScope reads the parameters every investigation shares.
func parseScope(p url.Values, now time.Time) (Scope, bool, error) {
	sc := Scope{Where: p.Get("where"), Now: now}
	var err error
	if sc.IncludeSystem, err = boolParam(p, "include-system", false); err != nil {
		return sc, false, err
	}
	if sc.Since, sc.Until, err = timespec.Range("since", p.Get("since"), "until", p.Get("until"), now); err != nil {
		var te *timespec.Error
		errors.As(err, &te)
		return sc, false, &ParamError{Param: te.Name, Err: err}
	}
	if strings.TrimSpace(sc.Where) != "" {
		if _, err := query.CompileAt(sc.Where, now); err != nil {
			return sc, false, &ParamError{Param: "where", Err: err}
		}
	}
	if v := p.Get("limit"); v != "" {
		if sc.Limit, err = strconv.Atoi(v); err != nil || sc.Limit < 0 {
			return sc, false, paramErr("limit", "%q: want a number of rows, 0 for all", v)
		}
	}
	allStages := false
	switch v := p.Get("stages"); v {
	case "", "last":
	case "all":
		allStages = true
	default:
		return sc, false, paramErr("stages", "%q: want all (every event) or last (one row per request, the default)", v)
	}
	return sc, allStages, nil
}

func boolParam(p url.Values, param string, def bool) (bool, error) {
	v := p.Get(param)
	if v == "" {
		return def, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, paramErr(param, "%q: want 1 or 0", v)
	}
	return b, nil
}

// target reads resource and name; needName asks for an object name.
func target(p url.Values, needName bool) (Target, error) {
	res := p.Get("resource")
	if res == "" {
		return Target{}, paramErr("resource", "required: RESOURCE[.GROUP][/NAME[/SUBRESOURCE]], e.g. secrets/important")
	}
	t, err := ParseTarget(res)
	if err != nil {
		return Target{}, &ParamError{Param: "resource", Err: err}
	}
	if n := p.Get("name"); n != "" {
		if t.Name != "" {
			return Target{}, paramErr("name", "the name is given twice: %q in resource and %q", res, n)
		}
		t.Name = n
	}
	if needName && t.Name == "" {
		return Target{}, paramErr("name", "required: history follows one object, named in name or as resource=RESOURCE/NAME (a '*' glob follows several)")
	}
	return t, nil
}

// checkGlobs tests the name and namespace patterns, which the
// investigations would otherwise reject only once running.
func checkGlobs(t Target, ns string) error {
	if _, err := globEq("name", t.Name); err != nil {
		return &ParamError{Param: "name", Err: err}
	}
	if _, err := globEq("ns", ns); err != nil {
		return &ParamError{Param: "namespace", Err: err}
	}
	return nil
}

// IsParamError reports whether err is a mistake in a parameter of Run.
func IsParamError(err error) (*ParamError, bool) {
	var pe *ParamError
	ok := errors.As(err, &pe)
	return pe, ok
}

// Answer is a report as the HTTP API serves it: the records that -o json
// prints and, when asked, the table laid out for a terminal — as kubectl
// asks the API server for a Table — so that a client prints exactly what
// the same investigation prints over a local store.
type Answer struct {
	// Investigation is the investigation's name.
	Investigation string `json:"investigation"`
	// Records are the report's records, each encoded as Write encodes it.
	Records []json.RawMessage `json:"records"`
	// Table is the report laid out for a terminal; nil unless asked for.
	Table *Table `json:"table,omitempty"`
}

// TableWidth says whether an Answer carries a table, and how wide.
type TableWidth int

// The table widths.
const (
	NoTable TableWidth = iota
	NarrowTable
	WideTable
)

// NewAnswer encodes a report for the API, with a table of width tw.
func NewAnswer(name string, rep Report, tw TableWidth) (*Answer, error) {
	a := &Answer{Investigation: name, Records: []json.RawMessage{}}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false) // as Write does: the bytes must be the same
	for _, r := range rep.Records() {
		buf.Reset()
		if err := enc.Encode(r); err != nil {
			return nil, err
		}
		rec := escape.JSON(bytes.TrimSuffix(buf.Bytes(), []byte("\n"))) // as Write escapes it
		a.Records = append(a.Records, json.RawMessage(bytes.Clone(rec)))
	}
	if tw != NoTable {
		a.Table = rep.Table(tw == WideTable)
	}
	return a, nil
}

// Report returns the answer as a Report for Write: the records as they
// came, and the table the server laid out (whatever width Write asks for).
func (a *Answer) Report() Report { return answerReport{a} }

type answerReport struct{ a *Answer }

func (r answerReport) Records() []any { return records(r.a.Records) }

func (r answerReport) Table(bool) *Table {
	if r.a.Table == nil {
		return &Table{Empty: "(the answer holds no table)"}
	}
	return r.a.Table
}

var _ Report = answerReport{}
