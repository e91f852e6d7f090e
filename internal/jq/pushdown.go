package jq

import (
	"regexp"
	"strconv"
	"strings"

	"github.com/itchyny/gojq"

	"github.com/kubetrail/kubetrail/internal/query"
)

// This file derives, from a jq program, a filter of the query language that
// every event the program prints something for satisfies: a necessary
// condition the store answers from its indexes. The program still runs on
// every candidate, so the filter only has to be implied by the program, never
// equivalent to it; a condition that cannot be translated is simply left
// out (true).

// pathFields maps event paths, as jq writes them, to fields of the filter
// language with the same value. Multi-valued fields (group, ip) are reached
// through an iteration, .user.groups[].
var pathFields = map[string]string{
	"verb":                      "verb",
	"user.username":             "user",
	"user.uid":                  "user.uid",
	"user.groups[]":             "group",
	"impersonatedUser.username": "as",
	"impersonatedUser.uid":      "as.uid",
	"impersonatedUser.groups[]": "as.group",
	"objectRef.resource":        "resource",
	"objectRef.subresource":     "subresource",
	"objectRef.namespace":       "ns",
	"objectRef.name":            "name",
	"objectRef.apiGroup":        "apigroup",
	"objectRef.apiVersion":      "apiversion",
	"objectRef.uid":             "objectRef.uid",
	"objectRef.resourceVersion": "objectRef.resourceVersion",
	"responseStatus.code":       "code",
	"responseStatus.status":     "status",
	"responseStatus.reason":     "reason",
	"responseStatus.message":    "message",
	"sourceIPs[]":               "ip",
	"userAgent":                 "ua",
	"level":                     "level",
	"stage":                     "stage",
	"requestURI":                "uri",
	"auditID":                   "auditid",
}

// stringFields are the fields whose value is the event's string itself, so
// that regular expressions and prefixes carry over. code, level and ip
// compare differently and take only equality.
func stringField(name string) bool {
	switch name {
	case "code", "level", "ip":
		return false
	}
	return true
}

// pushdown returns a necessary condition for q to print anything, or nil.
func pushdown(q *gojq.Query) query.Expr {
	if q == nil || len(q.FuncDefs) > 0 || len(q.Imports) > 0 {
		return nil
	}
	switch q.Op {
	case gojq.OpPipe:
		switch {
		case isSelect(q.Left): // select(C) | rest: rest sees the same event
			return and(selectCond(q.Left), pushdown(q.Right))
		case isIdentity(q.Left):
			return pushdown(q.Right)
		}
		// Whatever the left side is, nothing comes out unless it yields.
		return pushdown(q.Left)
	case gojq.OpComma:
		return or(pushdown(q.Left), pushdown(q.Right))
	case 0:
		if c := selectCond(q); c != nil {
			return c
		}
		if t := q.Term; t != nil && t.Type == gojq.TermTypeQuery && len(t.SuffixList) == 0 {
			return pushdown(t.Query)
		}
	}
	return nil
}

func isIdentity(q *gojq.Query) bool {
	return q != nil && q.Op == 0 && q.Term != nil && q.Term.Type == gojq.TermTypeIdentity && len(q.Term.SuffixList) == 0
}

func isSelect(q *gojq.Query) bool {
	return q != nil && q.Op == 0 && q.Term != nil && q.Term.Type == gojq.TermTypeFunc &&
		q.Term.Func.Name == "select" && len(q.Term.Func.Args) == 1 && len(q.Term.SuffixList) == 0
}

// selectCond is the condition of select(C), or nil.
func selectCond(q *gojq.Query) query.Expr {
	if !isSelect(q) {
		return nil
	}
	return truthy(q.Term.Func.Args[0])
}

// truthy returns a condition that holds whenever c yields a true value.
func truthy(c *gojq.Query) query.Expr {
	if c == nil {
		return nil
	}
	switch c.Op {
	case gojq.OpAnd:
		return and(truthy(c.Left), truthy(c.Right))
	case gojq.OpOr:
		return or(truthy(c.Left), truthy(c.Right))
	case gojq.OpEq:
		if p, ok := eventPath(c.Left); ok {
			return equal(p, c.Right)
		}
		if p, ok := eventPath(c.Right); ok {
			return equal(p, c.Left)
		}
	case gojq.OpGt, gojq.OpGe, gojq.OpLt, gojq.OpLe:
		return compare(c)
	case gojq.OpPipe:
		// PATH | test("re"), startswith, endswith, contains, IN(...)
		if p, ok := eventPath(c.Left); ok {
			return onString(p, c.Right)
		}
	case 0:
		t := c.Term
		if t == nil || len(t.SuffixList) > 0 {
			return nil
		}
		switch t.Type {
		case gojq.TermTypeQuery:
			return truthy(t.Query)
		case gojq.TermTypeFunc:
			// any(.sourceIPs[]; . == "x")
			if gen, lit, ok := anyEquals(t); ok {
				if p, ok := eventPath(gen); ok && iterated(p) {
					return equal(p, lit)
				}
			}
		}
	}
	return nil
}

// anyEquals recognizes any(GEN; . == LIT) (or LIT == .) and returns GEN
// and LIT.
func anyEquals(t *gojq.Term) (gen, lit *gojq.Query, ok bool) {
	if t.Type != gojq.TermTypeFunc || t.Func.Name != "any" || len(t.Func.Args) != 2 {
		return nil, nil, false
	}
	cond := t.Func.Args[1]
	switch {
	case cond.Op != gojq.OpEq:
		return nil, nil, false
	case isIdentity(cond.Left):
		return t.Func.Args[0], cond.Right, true
	case isIdentity(cond.Right):
		return t.Func.Args[0], cond.Left, true
	}
	return nil, nil, false
}

// eventPath recognizes .a.b, .a["b"] and .a[] (also .a[]? and .a?) on
// the event, returning the keys with "[]" appended to an iterated one.
func eventPath(q *gojq.Query) ([]string, bool) {
	if q == nil || q.Op != 0 || q.Term == nil {
		return nil, false
	}
	t := q.Term
	var parts []string
	switch t.Type {
	case gojq.TermTypeIndex:
		name, ok := indexName(t.Index)
		if !ok {
			return nil, false
		}
		parts = append(parts, name)
	case gojq.TermTypeQuery:
		if len(t.SuffixList) == 0 {
			return eventPath(t.Query)
		}
		return nil, false
	default:
		return nil, false
	}
	for _, s := range t.SuffixList {
		switch {
		case s.Index != nil:
			name, ok := indexName(s.Index)
			if !ok {
				return nil, false
			}
			parts = append(parts, name)
		case s.Iter:
			parts[len(parts)-1] += "[]"
		case s.Optional:
			// .a[]? and .a? yield the same values when they yield any.
		default:
			return nil, false
		}
	}
	return parts, true
}

func iterated(path []string) bool { return strings.HasSuffix(path[len(path)-1], "[]") }

func indexName(ix *gojq.Index) (string, bool) {
	if ix == nil || ix.IsSlice || ix.End != nil {
		return "", false
	}
	name := ix.Name
	switch {
	case ix.Start != nil: // .a["b"]
		s, isStr, _ := literal(ix.Start)
		if !isStr {
			return "", false
		}
		name = s
	case ix.Str != nil: // ."b"
		if len(ix.Str.Queries) > 0 {
			return "", false
		}
		name = ix.Str.Str
	}
	if name == "" || strings.HasSuffix(name, "[]") {
		return "", false
	}
	return name, true
}

// literal returns the constant a term is: a string or an integer.
func literal(q *gojq.Query) (s string, isString, isInt bool) {
	if q == nil || q.Op != 0 || q.Term == nil || len(q.Term.SuffixList) > 0 {
		return "", false, false
	}
	t := q.Term
	switch t.Type {
	case gojq.TermTypeString:
		if t.Str != nil && len(t.Str.Queries) == 0 {
			return t.Str.Str, true, false
		}
	case gojq.TermTypeNumber:
		if _, err := strconv.Atoi(t.Number); err == nil {
			return t.Number, false, true
		}
	case gojq.TermTypeQuery:
		return literal(t.Query)
	}
	return "", false, false
}

func field(path []string) (query.Field, bool) {
	// .annotations["k"] is a keyed field.
	if len(path) == 2 && path[0] == "annotations" && !iterated(path) {
		return query.Field{Name: "annotation", Key: path[1]}, true
	}
	for _, p := range path {
		if strings.Contains(strings.TrimSuffix(p, "[]"), ".") {
			return query.Field{}, false
		}
	}
	if name, ok := pathFields[strings.Join(path, ".")]; ok {
		return query.Field{Name: name}, true
	}
	return query.Field{}, false
}

func equal(path []string, lit *gojq.Query) query.Expr {
	f, ok := field(path)
	if !ok {
		return nil
	}
	v, isStr, isInt := literal(lit)
	switch {
	case f.Name == "code" && isInt:
		if n, _ := strconv.Atoi(v); n <= 0 {
			return nil // the filter has no code 0: the event has none
		}
	case f.Name != "code" && isStr:
		if v == "" {
			// Missing and empty differ in jq, not in the filter; an
			// equality with "" narrows nothing worth the risk.
			return nil
		}
	default:
		return nil
	}
	return &query.Cmp{Field: f, Op: query.OpEq, Values: []query.Value{{Text: v}}}
}

// compare pushes .responseStatus.code > N and >= N (and N < code, N <=
// code) down. Only lower bounds: in jq null < N holds, so an upper bound
// would keep events without a code that the filter drops.
func compare(c *gojq.Query) query.Expr {
	op := c.Op
	p, ok := eventPath(c.Left)
	lit := c.Right
	if !ok {
		if p, ok = eventPath(c.Right); !ok {
			return nil
		}
		lit = c.Left
		switch op { // N < code is code > N
		case gojq.OpLt:
			op = gojq.OpGt
		case gojq.OpLe:
			op = gojq.OpGe
		default:
			return nil
		}
	}
	if strings.Join(p, ".") != "responseStatus.code" {
		return nil
	}
	v, _, isInt := literal(lit)
	if !isInt {
		return nil
	}
	qop := query.OpGt
	switch op {
	case gojq.OpGe:
		qop = query.OpGe
	case gojq.OpGt:
	default:
		return nil
	}
	if n, _ := strconv.Atoi(v); n <= 0 {
		return nil // code > -1 holds for events without a code too
	}
	return &query.Cmp{Field: query.Field{Name: "code"}, Op: qop, Values: []query.Value{{Text: v}}}
}

// onString handles PATH | f(...) for string tests on a string field.
func onString(path []string, fn *gojq.Query) query.Expr {
	f, ok := field(path)
	if !ok || !stringField(f.Name) {
		return nil
	}
	if fn == nil || fn.Op != 0 || fn.Term == nil || fn.Term.Type != gojq.TermTypeFunc || len(fn.Term.SuffixList) > 0 {
		return nil
	}
	call := fn.Term.Func
	if call.Name == "IN" {
		var vals []query.Value
		for _, a := range call.Args {
			if len(call.Args) != 1 {
				return nil
			}
			for _, alt := range commaList(a) {
				s, isStr, _ := literal(alt)
				if !isStr || s == "" {
					return nil
				}
				vals = append(vals, query.Value{Text: s})
			}
		}
		if len(vals) == 0 {
			return nil
		}
		return &query.Cmp{Field: f, Op: query.OpIn, Values: vals}
	}
	if len(call.Args) != 1 {
		return nil
	}
	s, isStr, _ := literal(call.Args[0])
	if !isStr {
		return nil
	}
	var re string
	switch call.Name {
	case "test":
		if _, err := regexp.Compile(s); err != nil {
			return nil
		}
		re = s
	case "startswith":
		re = "^" + regexp.QuoteMeta(s)
	case "endswith":
		re = regexp.QuoteMeta(s) + "$"
	case "contains":
		re = regexp.QuoteMeta(s)
	default:
		return nil
	}
	return &query.Cmp{Field: f, Op: query.OpMatch, Values: []query.Value{{Text: re}}}
}

func commaList(q *gojq.Query) []*gojq.Query {
	if q != nil && q.Op == gojq.OpComma {
		return append(commaList(q.Left), commaList(q.Right)...)
	}
	return []*gojq.Query{q}
}

func and(a, b query.Expr) query.Expr {
	switch {
	case a == nil:
		return b
	case b == nil:
		return a
	}
	var terms []query.Expr
	for _, e := range []query.Expr{a, b} {
		if x, ok := e.(*query.And); ok {
			terms = append(terms, x.Terms...)
		} else {
			terms = append(terms, e)
		}
	}
	return &query.And{Terms: terms}
}

func or(a, b query.Expr) query.Expr {
	if a == nil || b == nil {
		return nil
	}
	var terms []query.Expr
	for _, e := range []query.Expr{a, b} {
		if x, ok := e.(*query.Or); ok {
			terms = append(terms, x.Terms...)
		} else {
			terms = append(terms, e)
		}
	}
	return &query.Or{Terms: terms}
}
