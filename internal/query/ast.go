package query

import (
	"strings"
)

// Op is a comparison operator of the filter language.
type Op uint8

// The comparison operators. OpNe, OpNotMatch and OpNotIn are the exact
// negations of OpEq, OpMatch and OpIn: on a field with several values (group,
// ip) "=" holds when any value matches, so "!=" holds when none does.
const (
	OpEq       Op = iota + 1 // field=value (glob with a bare *)
	OpNe                     // field!=value
	OpMatch                  // field~regexp (RE2, unanchored)
	OpNotMatch               // field!~regexp
	OpLt                     // field<value (code, level, time)
	OpLe                     // field<=value
	OpGt                     // field>value
	OpGe                     // field>=value
	OpIn                     // field in (v1, v2, ...)
	OpNotIn                  // field not in (v1, v2, ...)
)

var opStrings = [...]string{
	OpEq: "=", OpNe: "!=", OpMatch: "~", OpNotMatch: "!~",
	OpLt: "<", OpLe: "<=", OpGt: ">", OpGe: ">=",
	OpIn: "in", OpNotIn: "not in",
}

// String returns the operator as written in a canonical filter.
func (o Op) String() string {
	if int(o) < len(opStrings) && opStrings[o] != "" {
		return opStrings[o]
	}
	return "?"
}

// negated reports whether o is the negation of a positive operator, and
// returns that positive operator.
func (o Op) negated() (Op, bool) {
	switch o {
	case OpNe:
		return OpEq, true
	case OpNotMatch:
		return OpMatch, true
	case OpNotIn:
		return OpIn, true
	}
	return o, false
}

// ordered reports whether o is one of < <= > >=.
func (o Op) ordered() bool { return o >= OpLt && o <= OpGe }

// Expr is one node of a parsed filter: *And, *Or, *Not, *Cmp or *Text. The
// tree is what Parse returns and what a store planner walks to push
// conditions down to its indexes. String gives the canonical form, which
// parses back to the same tree.
type Expr interface {
	// String returns the canonical text of the expression.
	String() string
	isExpr()
}

// And holds when every term holds. Parsed filters never nest an And
// directly inside an And, and always have at least two terms.
type And struct{ Terms []Expr }

// Or holds when any term holds. Parsed filters never nest an Or directly
// inside an Or, and always have at least two terms.
type Or struct{ Terms []Expr }

// Not holds when X does not.
type Not struct{ X Expr }

// Cmp compares one field of the event with one value, or with a list of
// values for OpIn and OpNotIn.
type Cmp struct {
	Field Field
	Op    Op
	// Values has exactly one element except for OpIn and OpNotIn.
	Values []Value
	// Pos is the byte offset of the field name in the source, for errors.
	Pos int
}

// Text is free text in quotes standing alone: it holds when the text occurs,
// case-sensitively, in any of the fields listed in FreeTextFields.
type Text struct {
	Text string
	// Pos is the byte offset of the opening quote in the source.
	Pos int
}

// Field names an event field: Name is the canonical name (see Fields), and
// Key the annotation or extra key for the keyed fields annotation,
// user.extra and as.extra.
type Field struct {
	Name string
	Key  string
}

// Value is one operand of a comparison.
type Value struct {
	// Text is the value with quotes and escapes removed.
	Text string
	// Glob is set when the value was written without quotes and contains a
	// '*', which then matches any run of characters. A quoted value is
	// always literal. A glob's Text must consist of bare-word characters.
	Glob bool
	// Pos is the byte offset of the value in the source, for errors.
	Pos int
}

func (*And) isExpr()  {}
func (*Or) isExpr()   {}
func (*Not) isExpr()  {}
func (*Cmp) isExpr()  {}
func (*Text) isExpr() {}

// Precedence levels used by the printer: a child whose level is lower than
// its context needs parentheses.
const (
	precOr = iota + 1
	precAnd
	precNot
	precPrimary
)

func (e *And) String() string  { return exprString(e) }
func (e *Or) String() string   { return exprString(e) }
func (e *Not) String() string  { return exprString(e) }
func (e *Cmp) String() string  { return exprString(e) }
func (e *Text) String() string { return exprString(e) }

// String returns the field as written in a canonical filter.
func (f Field) String() string {
	var b strings.Builder
	writeField(&b, f)
	return b.String()
}

// Canonical returns the canonical text of e; nil (the empty filter, which
// matches every event) gives "".
func Canonical(e Expr) string {
	if e == nil {
		return ""
	}
	return exprString(e)
}

func exprString(e Expr) string {
	var b strings.Builder
	writeExpr(&b, e, precOr)
	return b.String()
}

func prec(e Expr) int {
	switch e := e.(type) {
	case *Or:
		if len(e.Terms) == 1 {
			return prec(e.Terms[0])
		}
		return precOr
	case *And:
		if len(e.Terms) == 1 {
			return prec(e.Terms[0])
		}
		return precAnd
	case *Not:
		return precNot
	}
	return precPrimary
}

func writeExpr(b *strings.Builder, e Expr, ctx int) {
	if prec(e) < ctx {
		b.WriteByte('(')
		writeExpr(b, e, precOr)
		b.WriteByte(')')
		return
	}
	switch e := e.(type) {
	case *Or:
		for i, t := range e.Terms {
			if i > 0 {
				b.WriteString(" or ")
			}
			writeExpr(b, t, precAnd)
		}
	case *And:
		for i, t := range e.Terms {
			if i > 0 {
				b.WriteString(" and ")
			}
			writeExpr(b, t, precNot)
		}
	case *Not:
		b.WriteString("not ")
		writeExpr(b, e.X, precNot)
	case *Cmp:
		writeField(b, e.Field)
		switch e.Op {
		case OpIn, OpNotIn:
			b.WriteByte(' ')
			b.WriteString(e.Op.String())
			b.WriteString(" (")
			for i, v := range e.Values {
				if i > 0 {
					b.WriteString(", ")
				}
				writeValue(b, v)
			}
			b.WriteByte(')')
		default:
			b.WriteString(e.Op.String())
			switch {
			case len(e.Values) == 0:
			case e.Op == OpMatch || e.Op == OpNotMatch:
				// Regular expressions read best in quotes, whatever they hold.
				writeQuoted(b, e.Values[0].Text)
			default:
				writeValue(b, e.Values[0])
			}
		}
	case *Text:
		writeQuoted(b, e.Text)
	case nil:
		// Only reachable through a hand-built tree; print something that
		// does not parse rather than panic.
		b.WriteString("<nil>")
	}
}

func writeField(b *strings.Builder, f Field) {
	b.WriteString(f.Name)
	if spec, _, dotted := fields().resolve(f.Name); spec != nil && spec.keyed && !dotted {
		b.WriteByte('[')
		writeValue(b, Value{Text: f.Key})
		b.WriteByte(']')
	}
}

func writeValue(b *strings.Builder, v Value) {
	if v.Glob || (v.Text != "" && isBare(v.Text) && !strings.Contains(v.Text, "*")) {
		b.WriteString(v.Text)
		return
	}
	writeQuoted(b, v.Text)
}

// writeQuoted writes s in double quotes, escaping only '"' and '\', the two
// characters the lexer treats specially inside quotes.
func writeQuoted(b *strings.Builder, s string) {
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '"' || c == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(s[i])
	}
	b.WriteByte('"')
}

// isBare reports whether s can be written without quotes.
func isBare(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !isWordRune(r) {
			return false
		}
	}
	return true
}

// Walk calls fn for e and, while fn returns true, for each of its
// descendants in depth-first order.
func Walk(e Expr, fn func(Expr) bool) {
	if e == nil || !fn(e) {
		return
	}
	switch e := e.(type) {
	case *And:
		for _, t := range e.Terms {
			Walk(t, fn)
		}
	case *Or:
		for _, t := range e.Terms {
			Walk(t, fn)
		}
	case *Not:
		Walk(e.X, fn)
	}
}

// Conjuncts splits e into the terms that must all hold: the terms of a
// top-level And, or e itself. A planner answers the conjuncts it can from
// its indexes and evaluates the rest on each candidate event. The empty
// filter (nil) has no conjuncts.
func Conjuncts(e Expr) []Expr {
	switch e := e.(type) {
	case nil:
		return nil
	case *And:
		var out []Expr
		for _, t := range e.Terms {
			out = append(out, Conjuncts(t)...)
		}
		return out
	}
	return []Expr{e}
}
