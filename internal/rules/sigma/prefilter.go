package sigma

import (
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kubetrail/kubetrail/internal/query"
)

// Prefilters returns a filter of the query language per rule that may
// match an event, each holding for every event its rule matches: a store
// decides them on its columns and gives the ruleset only the events one
// of them may match (rules.Lazy), where reading every event whole took
// most of detect's time. Only what the columns hold exactly is written:
// a plain value (no wildcard; case-insensitive unless |cased) of verb,
// objectRef's resource, subresource, namespace, name, apiGroup and
// apiVersion, user.username, impersonatedUser.username, userAgent and
// stage, and a number of responseStatus.code. ok is false when a rule
// that may match has no such filter (a keyword, another modifier or
// field, a not): the ruleset then reads every event.
func (rs *Ruleset) Prefilters(now time.Time) (filters []*query.Filter, ok bool) {
	for _, r := range rs.rules {
		f, never, ok := r.prefilter(now)
		switch {
		case never:
			// Needs no event.
		case !ok:
			return nil, false
		default:
			filters = append(filters, f)
		}
	}
	return filters, true
}

// prefilter is r's filter for Prefilters; never says r never matches.
func (r *rule) prefilter(now time.Time) (f *query.Filter, never, ok bool) {
	if r.cond.konst() == tvFalse {
		return nil, true, true
	}
	e, ok := necessary(r.cond)
	if !ok {
		return nil, false, false
	}
	f, err := query.CompileExpr(e, now)
	return f, false, err == nil
}

// necessary returns a filter every event x matches also matches, or ok
// false when it has none to give.
func necessary(x expr) (query.Expr, bool) {
	switch x := x.(type) {
	case andExpr:
		var terms []query.Expr
		for _, sub := range x {
			if e, ok := necessary(sub); ok {
				terms = append(terms, e)
			}
		}
		return join(terms, false)
	case orExpr:
		var terms []query.Expr
		for _, sub := range x {
			if sub.konst() == tvFalse {
				continue
			}
			e, ok := necessary(sub)
			if !ok {
				return nil, false
			}
			terms = append(terms, e)
		}
		return join(terms, true)
	case searchExpr:
		var alts []query.Expr
		for _, alt := range x.s.alts {
			var terms []query.Expr
			dead := false
			for _, it := range alt {
				if it.konst == tvFalse {
					dead = true
					break
				}
				if e, ok := it.necessary(); ok {
					terms = append(terms, e)
				}
			}
			if dead {
				continue
			}
			e, ok := join(terms, false)
			if !ok {
				return nil, false
			}
			alts = append(alts, e)
		}
		return join(alts, true)
	}
	return nil, false // not: its search's events are all but some
}

// join is the And (or Or) of terms, ok false when there are none.
func join(terms []query.Expr, or bool) (query.Expr, bool) {
	switch {
	case len(terms) == 0:
		return nil, false
	case len(terms) == 1:
		return terms[0], true
	case or:
		return &query.Or{Terms: terms}, true
	}
	return &query.And{Terms: terms}, true
}

// columnFields are the Sigma fields a store's columns hold as one string
// each, by the filter language's name.
var columnFields = map[string]string{
	"verb": "verb", "objectRef.resource": "resource", "objectRef.subresource": "subresource",
	"objectRef.namespace": "ns", "objectRef.name": "name", "objectRef.apiGroup": "apigroup",
	"objectRef.apiVersion": "apiversion", "user.username": "user", "impersonatedUser.username": "as",
	"userAgent": "ua", "stage": "stage",
}

// necessary is the item's filter: one of its values (every one, with
// |all), written as the columns hold them.
func (it *item) necessary() (query.Expr, bool) {
	if it.exists != 0 || len(it.values) == 0 {
		return nil, false
	}
	if it.field == "responseStatus.code" {
		var terms []query.Expr
		for _, v := range it.values {
			n, ok := codeOf(v)
			if !ok {
				return nil, false
			}
			terms = append(terms, &query.Cmp{Field: query.Field{Name: "code"}, Op: query.OpEq, Values: []query.Value{{Text: strconv.Itoa(n)}}})
		}
		return join(terms, !it.all)
	}
	name, ok := columnFields[it.field]
	if !ok {
		return nil, false
	}
	var folded, exact []string
	for _, v := range it.values {
		m, ok := v.(*stringMatcher)
		if !ok || m.anyValue || m.form != '=' || m.lit == "" {
			return nil, false
		}
		if m.cased {
			exact = append(exact, m.lit)
		} else {
			folded = append(folded, regexp.QuoteMeta(m.lit))
		}
	}
	if it.all && len(it.values) > 1 {
		return nil, false // values that all equal one string: rare, left whole
	}
	field := query.Field{Name: name}
	var terms []query.Expr
	if name == "stage" {
		exact, terms = stageTerms(exact)
	}
	if len(exact) > 0 {
		vals := make([]query.Value, len(exact))
		for i, s := range exact {
			vals[i] = query.Value{Text: s}
		}
		terms = append(terms, &query.Cmp{Field: field, Op: query.OpIn, Values: vals})
	}
	if len(folded) > 0 {
		// strings.EqualFold, as the matcher compares, is Unicode's simple
		// folding, as (?i) is.
		terms = append(terms, &query.Cmp{Field: field, Op: query.OpMatch, Values: []query.Value{{Text: "(?i)^(?:" + strings.Join(folded, "|") + ")$"}}})
	}
	return join(terms, true)
}

// stageTerms splits cased stage values into the stages the filter
// language names and, for any other value (an event may hold any string,
// but `stage=` refuses it), the filter "no stage it names", which every
// event holding such a value matches.
func stageTerms(exact []string) (named []string, terms []query.Expr) {
	stageNames := query.StageNames()
	other := false
	for _, v := range exact {
		if slices.Contains(stageNames, v) {
			named = append(named, v)
		} else {
			other = true
		}
	}
	if other {
		vals := make([]query.Value, len(stageNames))
		for i, s := range stageNames {
			vals[i] = query.Value{Text: s}
		}
		terms = append(terms, &query.Not{X: &query.Cmp{Field: query.Field{Name: "stage"}, Op: query.OpIn, Values: vals}})
	}
	return named, terms
}

// codeOf is the HTTP status a value of responseStatus.code equals: a
// number, or a string spelling one in decimal as the matcher reads the
// code's text.
func codeOf(v matcher) (int, bool) {
	switch m := v.(type) {
	case numberMatcher:
		if m.n >= 1 && m.n <= math.MaxInt32 && m.n == math.Trunc(m.n) {
			return int(m.n), true
		}
	case *stringMatcher:
		if m.form == '=' && !m.anyValue {
			if n, err := strconv.Atoi(m.lit); err == nil && n >= 1 && strconv.Itoa(n) == m.lit {
				return n, true
			}
		}
	}
	return 0, false
}
