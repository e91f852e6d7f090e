package falco

import (
	"maps"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/kubetrail/kubetrail/internal/query"
)

// Prefilters returns a filter of the query language per rule that may
// match an event, each holding for every event its rule matches: a store
// decides them on its columns (or the event's keys) and gives the rules
// only the events one of them may match (rules.Lazy). ok is false when a
// rule that may match has no such filter: the rules then read every
// event.
//
// Falco's conditions are mostly negative (kevt and not ka.user.name in
// (...)), so a check only narrows under not if it is translated exactly.
// Each condition gets two filters: one every event it matches also
// matches (necessary) and one that only events it matches match
// (sufficient); not swaps them. A check on a field the filter language
// reads from the same decoded event, with an operator it can say, is
// exact (both); any other check is necessary "true" and sufficient
// "false".
func (ev *Evaluator) Prefilters(now time.Time) (filters []*query.Filter, ok bool) {
	for _, r := range ev.rules {
		n, _ := bounds(r.m, now)
		switch {
		case n.e == nil && !n.k:
			// Never matches.
		case n.e == nil:
			return nil, false
		default:
			f, err := query.CompileExpr(n.e, now)
			if err != nil {
				return nil, false
			}
			filters = append(filters, f)
		}
	}
	return filters, true
}

// bound is a filter, or the constant k when e is nil.
type bound struct {
	e query.Expr
	k bool
}

var (
	always = bound{k: true}
	never  = bound{k: false}
)

// bounds returns m's necessary and sufficient filters.
func bounds(m matcher, now time.Time) (n, s bound) {
	switch m := m.(type) {
	case andM:
		ns, ss := make([]bound, len(m)), make([]bound, len(m))
		for i, k := range m {
			ns[i], ss[i] = bounds(k, now)
		}
		return join(ns, false), join(ss, false)
	case orM:
		ns, ss := make([]bound, len(m)), make([]bound, len(m))
		for i, k := range m {
			ns[i], ss[i] = bounds(k, now)
		}
		return join(ns, true), join(ss, true)
	case notM:
		n, s := bounds(m.m, now)
		return negate(s), negate(n)
	case *checkM:
		if e, ok := m.exact(now); ok {
			return e, e
		}
		if e, ok := m.rawTimeAtMost(now); ok {
			return e, never
		}
	}
	return always, never
}

// lastNano is the last time whose nanoseconds since 1970 an int64 holds;
// Go's UnixNano wraps outside [1677-09-21, 2262-04-11].
var lastNano = time.Unix(0, math.MaxInt64).UTC()

// rawTimeAtMost is a necessary filter of jevt.rawtime = (or <, <=) N,
// the event time's nanoseconds since 1970 in decimal: the time is before
// N's time plus a second (the time column holds microseconds), or so late
// that UnixNano wrapped. k8s_audit_never_true (jevt.rawtime=0) is this
// check, and without it "All K8s Audit Events" would read every event.
func (m *checkM) rawTimeAtMost(now time.Time) (bound, bool) {
	switch m.f.spec.name {
	case "jevt.rawtime", "json.rawtime", "evt.rawtime", "evt.rawtime.ns":
	default:
		return bound{}, false
	}
	if m.rhs != nil || len(m.f.trans) > 0 || (m.op != opEq && m.op != opLt && m.op != opLe) {
		return bound{}, false
	}
	var n int64
	if m.f.spec.numeric {
		if m.num > math.MaxInt64 {
			return bound{}, false
		}
		n = int64(m.num)
	} else {
		// A string compared as a string: = is the only one whose meaning
		// on numbers is known.
		v, err := strconv.ParseInt(m.lit, 10, 64)
		if err != nil || m.op != opEq || strconv.FormatInt(v, 10) != m.lit {
			return bound{}, false
		}
		n = v
	}
	at := func(op query.Op, t time.Time) *query.Cmp {
		return &query.Cmp{Field: query.Field{Name: "time"}, Op: op, Values: []query.Value{{Text: t.Format(time.RFC3339Nano)}}}
	}
	return checked(&query.Or{Terms: []query.Expr{
		at(query.OpLt, time.Unix(0, n).UTC().Add(time.Second)),
		at(query.OpGt, lastNano.Add(-time.Second)),
	}}, now)
}

// join is the and (or, with or) of bs.
func join(bs []bound, or bool) bound {
	var terms []query.Expr
	for _, b := range bs {
		switch {
		case b.e != nil:
			terms = append(terms, b.e)
		case b.k == or:
			return b // true in an or, false in an and
		}
	}
	switch {
	case len(terms) == 0:
		return bound{k: !or}
	case len(terms) == 1:
		return bound{e: terms[0]}
	case or:
		return bound{e: &query.Or{Terms: terms}}
	}
	return bound{e: &query.And{Terms: terms}}
}

func negate(b bound) bound {
	if b.e == nil {
		return bound{k: !b.k}
	}
	if x, ok := b.e.(*query.Not); ok {
		return bound{e: x.X}
	}
	return bound{e: &query.Not{X: b.e}}
}

// columnFields are the fields a filter of the query language reads from
// the decoded event exactly as the Falco field does, where the Falco
// field's value is not available exactly when the string is empty
// (fieldSpec's nonEmpty).
var columnFields = map[string]string{
	"ka.user.name": "user", "ka.impuser.name": "as", "ka.verb": "verb", "ka.uri": "uri",
	"ka.target.name": "name", "ka.target.namespace": "ns", "ka.target.resource": "resource",
	"ka.target.subresource": "subresource", "ka.req.configmap.name": "name",
	"ka.useragent": "ua", "ka.auditid": "auditid", "ka.stage": "stage",
}

// annotationFields are the Falco fields that read an annotation: present
// with an empty value they are available (""), absent they are not, and
// the query language reads both as "".
var annotationFields = map[string]query.Field{
	"ka.auth.decision": {Name: "decision"},
	"ka.auth.reason":   {Name: "annotation", Key: "authorization.k8s.io/reason"},
}

// exact is the filter an event matches exactly when it matches m, or ok
// false when m has none.
func (m *checkM) exact(now time.Time) (bound, bool) {
	if m.rhs != nil || len(m.f.trans) > 0 || m.f.spec.list || m.f.spec.numeric {
		return bound{}, false
	}
	field, emptyMissing := query.Field{Name: columnFields[m.f.spec.name]}, true
	if field.Name == "" {
		var ok bool
		if field, ok = annotationFields[m.f.spec.name]; !ok {
			return bound{}, false
		}
		emptyMissing = false
	}
	val := func(s string) query.Value { return query.Value{Text: s} }
	match := func(re string) *query.Cmp {
		return &query.Cmp{Field: field, Op: query.OpMatch, Values: []query.Value{val(re)}}
	}
	var e query.Expr
	switch m.op {
	case opExists:
		return m.nonEmpty(field, nil, emptyMissing, now)
	case opEq, opNe:
		if m.op == opEq && m.lit == "" && emptyMissing {
			return never, true // "" is not available
		}
		op := query.OpEq
		if m.op == opNe {
			op = query.OpNe
		}
		e = &query.Cmp{Field: field, Op: op, Values: []query.Value{val(m.lit)}}
	case opIn, opIntersects:
		var vals []query.Value
		for _, s := range slices.Sorted(maps.Keys(m.set)) {
			if s != "" || !emptyMissing {
				vals = append(vals, val(s))
			}
		}
		if len(vals) == 0 {
			return never, true
		}
		e = &query.Cmp{Field: field, Op: query.OpIn, Values: vals}
	case opStartsWith, opEndsWith, opContains:
		// A regular expression of the literal finds it where the bytes do
		// when it is valid UTF-8 without U+FFFD (which RE2 also finds at an
		// invalid byte).
		if !utf8.ValidString(m.lit) || strings.ContainsRune(m.lit, utf8.RuneError) {
			return bound{}, false
		}
		re := regexp.QuoteMeta(m.lit)
		switch m.op {
		case opStartsWith:
			re = "^" + re
		case opEndsWith:
			re += "$"
		}
		e = match(re)
	default:
		return bound{}, false
	}
	inWithoutEmpty := (m.op == opIn || m.op == opIntersects) && emptyMissing
	if inWithoutEmpty || !compareStr(m.op, "", m.lit, m) {
		// The filter is false on "", as the check on a value not
		// available.
		return checked(e, now)
	}
	return m.nonEmpty(field, e, emptyMissing, now)
}

// nonEmpty is e (or true, e nil) on a value that is not empty: the check
// holds on "", which the Falco field gives when present only if it is
// not an emptyMissing one.
func (m *checkM) nonEmpty(field query.Field, e query.Expr, emptyMissing bool, now time.Time) (bound, bool) {
	if !emptyMissing {
		return bound{}, false
	}
	ne := &query.Cmp{Field: field, Op: query.OpNe, Values: []query.Value{{Text: ""}}}
	if e == nil {
		return checked(ne, now)
	}
	return checked(&query.And{Terms: []query.Expr{e, ne}}, now)
}

// checked returns e if the query language compiles it (a value it
// refuses, such as a stage that is none, leaves the check untranslated).
func checked(e query.Expr, now time.Time) (bound, bool) {
	if _, err := query.CompileExpr(e, now); err != nil {
		return bound{}, false
	}
	return bound{e: e}, true
}

// String is the filter, or the constant.
func (b bound) String() string {
	if b.e == nil {
		return strconv.FormatBool(b.k)
	}
	return b.e.String()
}
