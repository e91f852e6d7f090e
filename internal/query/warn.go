package query

import (
	"fmt"
	"slices"
	"time"
)

// knownValues are the values the API server writes for fields whose
// values form a set it keeps to, that the compiler does not already check:
// a filter asking for another value matches nothing, and says so
// (Warnings) instead of silently answering empty.
var knownValues = map[string][]string{
	// Resource verbs, then the lower-cased HTTP methods of non-resource
	// requests.
	"verb": {"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection", "proxy", "post", "put", "head", "options"},
	// The authorizer's decision annotation (the decision field, or the
	// annotation by its key).
	"decision": {"allow", "forbid"},
}

// Warnings says which of the filter's comparisons can never hold because
// they ask for a verb or an authorizer's decision the API server never
// writes (level and stage are checked when the filter compiles), with the
// nearest known value: `verb=lst` and `decision=Forbid` match nothing,
// and a person should hear why. Custom verbs of extension API servers
// exist, so this is a warning, not an error.
func (f *Filter) Warnings() []string {
	if f == nil {
		return nil
	}
	var out []string
	Walk(f.expr, func(e Expr) bool {
		if _, neg := e.(*Not); neg {
			return false // under a negation, a value that never occurs is not an empty answer
		}
		c, ok := e.(*Cmp)
		if !ok || (c.Op != OpEq && c.Op != OpIn) {
			return true
		}
		spec, key, _ := fields().resolve(c.Field.Name)
		if spec == nil {
			return true
		}
		if spec.kind == kTime {
			out = append(out, finerThanMicros(c, f.now)...)
			return true
		}
		if c.Field.Key != "" {
			key = c.Field.Key
		}
		field := spec.name
		if field == "annotation" && key == decisionAnnotation {
			field = "decision"
		}
		known := knownValues[field]
		if known == nil {
			return true
		}
		for _, v := range c.Values {
			if v.Glob || slices.Contains(known, v.Text) { // verbs compare case-sensitively
				continue
			}
			if field == "decision" && v.Text == "" {
				continue // no decision: authentication failed
			}
			w := fmt.Sprintf("%s=%s: %q is not a %s the API server writes, so it matches nothing", c.Field.Name, v.Text, v.Text, field)
			if s := suggest(v.Text, known); s != "" {
				w += fmt.Sprintf(" (did you mean %s?)", s)
			}
			out = append(out, w)
		}
		return true
	})
	return out
}

// finerThanMicros warns of a time compared with = that has more than six
// fraction digits: audit timestamps hold microseconds (MicroTime), so no
// event is at that instant, and the filter matches nothing.
func finerThanMicros(c *Cmp, now time.Time) []string {
	var out []string
	for _, v := range c.Values {
		t, err := parseTime(v.Text, now)
		if err != nil || v.Glob || t.Nanosecond()%1000 == 0 {
			continue
		}
		out = append(out, fmt.Sprintf("%s=%s: audit timestamps hold microseconds, so a time with more than 6 fraction digits matches nothing (write %s, or a range)",
			c.Field.Name, v.Text, t.Truncate(time.Microsecond).Format("2006-01-02T15:04:05.000000Z07:00")))
	}
	return out
}
