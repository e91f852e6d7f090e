package query

import (
	"slices"
	"strconv"
	"strings"
	"time"
)

// This file holds what a store planner needs to push a filter down to its
// indexes without knowing the language: the exact values a field must have
// (for postings or bloom filters) and the time range (for partitions).
// Both are necessary conditions derived from the tree: every event the
// filter matches satisfies them, but not every event that satisfies them
// matches, so the planner must still run Match on the candidates.

// RequiredValues returns the exact values that field must take for the
// filter to match: with ok set, every matching event has (for multi-valued
// fields: at least one of) its field values in vals. ok is false when the
// filter does not restrict the field to a finite set of exact values, and the
// planner cannot use an index on it. ok with no vals means that no event
// can match (ns=a ns=b).
//
// Only = and in with literal values (no globs, regular expressions, CIDRs or
// negations) give values, combined through and (intersection; for
// multi-valued fields the smallest set) and or (union, only when every
// branch gives values). Values come back sorted and in the form the event
// holds them, except that ip and peer values are in the form NormalizeIP
// gives and code values in decimal.
func (f *Filter) RequiredValues(field Field) (vals []string, ok bool) {
	return RequiredValues(f.expr, field)
}

// RequiredValues is (*Filter).RequiredValues for a parsed or hand-built
// tree, such as one conjunct of a filter.
func RequiredValues(e Expr, field Field) (vals []string, ok bool) {
	spec, key, hasKey := fields().resolve(field.Name)
	if spec == nil || e == nil {
		return nil, false
	}
	if !hasKey {
		key = field.Key
	}
	want := Field{Name: spec.name}
	if spec.keyed {
		want.Key = key
	}
	vals, ok = required(e, want, spec)
	if !ok {
		return nil, false
	}
	slices.Sort(vals)
	return slices.Compact(vals), true
}

func required(e Expr, want Field, spec *fieldSpec) ([]string, bool) {
	switch e := e.(type) {
	case *Cmp:
		return cmpValues(e, want, spec)
	case *And:
		var best []string
		found := false
		for _, t := range e.Terms {
			vals, ok := required(t, want, spec)
			switch {
			case !ok:
			case !found:
				best, found = vals, true
			case spec.multi():
				// Each term asks for some value of its own, so any one of
				// the sets is a valid candidate: take the smallest.
				if len(vals) < len(best) {
					best = vals
				}
			default:
				best = intersect(best, vals)
			}
		}
		return best, found
	case *Or:
		var all []string
		for _, t := range e.Terms {
			vals, ok := required(t, want, spec)
			if !ok {
				return nil, false
			}
			all = append(all, vals...)
		}
		return all, true
	}
	return nil, false
}

func cmpValues(c *Cmp, want Field, spec *fieldSpec) ([]string, bool) {
	cs, key, hasKey := fields().resolve(c.Field.Name)
	if cs != spec {
		return nil, false
	}
	if !hasKey {
		key = c.Field.Key
	}
	if spec.keyed && key != want.Key {
		return nil, false
	}
	if c.Op != OpEq && c.Op != OpIn {
		return nil, false
	}
	out := make([]string, 0, len(c.Values))
	for _, v := range c.Values {
		if v.Glob {
			return nil, false
		}
		s := v.Text
		switch spec.kind {
		case kTime:
			return nil, false
		case kIP, kPeer:
			if strings.Contains(s, "/") {
				return nil, false
			}
			if s = NormalizeIP(s); s == "" {
				return nil, false
			}
		case kCode:
			n, err := parseCode(s)
			if err != nil {
				return nil, false
			}
			s = strconv.Itoa(n)
		}
		out = append(out, s)
	}
	return out, true
}

func intersect(a, b []string) []string {
	var out []string
	for _, s := range a {
		if slices.Contains(b, s) {
			out = append(out, s)
		}
	}
	return out
}

// TimeRange returns bounds on the time field (stageTimestamp, else
// requestReceivedTimestamp) of every event the filter can match: from <=
// time <= to, where a zero bound is no bound. Relative times are resolved
// against Now. from after to means that no event can match.
func (f *Filter) TimeRange() (from, to time.Time) {
	return TimeRange(f.expr, f.now)
}

// TimeRange is (*Filter).TimeRange for a parsed or hand-built tree, with
// relative times resolved against now.
func TimeRange(e Expr, now time.Time) (from, to time.Time) {
	switch e := e.(type) {
	case *Cmp:
		if spec, _, _ := fields().resolve(e.Field.Name); spec == nil || spec.name != "time" || len(e.Values) != 1 {
			return
		}
		t, err := parseTime(e.Values[0].Text, now)
		if err != nil || e.Values[0].Glob {
			return
		}
		switch e.Op {
		case OpEq:
			return t, t
		case OpGt, OpGe:
			return t, time.Time{}
		case OpLt, OpLe:
			return time.Time{}, t
		}
	case *And:
		for _, x := range e.Terms {
			f, t := TimeRange(x, now)
			if !f.IsZero() && (from.IsZero() || f.After(from)) {
				from = f
			}
			if !t.IsZero() && (to.IsZero() || t.Before(to)) {
				to = t
			}
		}
	case *Or:
		for i, x := range e.Terms {
			f, t := TimeRange(x, now)
			if i == 0 {
				from, to = f, t
				continue
			}
			if f.IsZero() || f.Before(from) {
				from = f
			}
			if t.IsZero() || (!to.IsZero() && t.After(to)) {
				to = t
			}
		}
	}
	return
}
