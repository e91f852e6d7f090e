package query

import (
	"strings"
	"time"
)

// maxDepth bounds the nesting of parentheses and "not", so that hostile
// input cannot exhaust the stack.
const maxDepth = 100

// Parse parses a filter and checks its meaning (known fields, operators
// allowed on them, valid regular expressions, IPs, codes and times). The
// empty filter gives a nil Expr, which matches every event. Errors are
// *Error, located in src.
func Parse(src string) (Expr, error) {
	f, err := Compile(src)
	if err != nil {
		return nil, err
	}
	return f.Expr(), nil
}

// parse is the syntax-only parser behind Parse and Compile.
func parse(src string) (Expr, error) {
	toks, err := lex(src)
	if err != nil {
		return nil, err
	}
	p := &parser{src: src, toks: toks}
	if p.peek().kind == tEOF {
		return nil, nil
	}
	e, err := p.parseOr()
	if err != nil {
		return nil, err
	}
	if t := p.peek(); t.kind != tEOF {
		return nil, p.unexpected(t)
	}
	return e, nil
}

// unexpected reports a token that cannot continue the filter, with a hint
// for the usual mistakes.
func (p *parser) unexpected(t token) *Error {
	switch t.kind {
	case tRParen:
		return p.errAt(t, "unexpected ')' with no matching '('")
	case tComma:
		return p.errAt(t, "unexpected ',': to match several values write field in (a, b)")
	}
	return p.errAt(t, "unexpected %s", t.describe())
}

type parser struct {
	src   string
	toks  []token
	i     int
	depth int
}

func (p *parser) peek() token  { return p.toks[p.i] }
func (p *parser) peek2() token { return p.toks[min(p.i+1, len(p.toks)-1)] }

func (p *parser) next() token {
	t := p.toks[p.i]
	if t.kind != tEOF {
		p.i++
	}
	return t
}

func (p *parser) errAt(t token, format string, args ...any) *Error {
	return errorAt(p.src, t.pos, format, args...)
}

func isKeyword(t token, kw string) bool {
	return t.kind == tWord && strings.EqualFold(t.text, kw)
}

func (p *parser) atOr() bool  { t := p.peek(); return t.kind == tOr || isKeyword(t, "or") }
func (p *parser) atAnd() bool { t := p.peek(); return t.kind == tAnd || isKeyword(t, "and") }
func (p *parser) atNot() bool { t := p.peek(); return t.kind == tNot || isKeyword(t, "not") }

// atTermStart reports whether the next token begins a term, which makes an
// implicit "and" with the term before it.
func (p *parser) atTermStart() bool {
	switch t := p.peek(); t.kind {
	case tLParen, tString, tNot:
		return true
	case tWord:
		return !isKeyword(t, "or") && !isKeyword(t, "and")
	}
	return false
}

// or = and { "or" and }
func (p *parser) parseOr() (Expr, error) {
	first, err := p.parseAnd()
	if err != nil {
		return nil, err
	}
	terms := []Expr{first}
	for p.atOr() {
		op := p.next()
		t, err := p.parseTerm(op)
		if err != nil {
			return nil, err
		}
		t, err = p.parseAndRest(t)
		if err != nil {
			return nil, err
		}
		terms = append(terms, t)
	}
	return flattenOr(terms), nil
}

// and = not { ["and"] not }
func (p *parser) parseAnd() (Expr, error) {
	first, err := p.parseNot()
	if err != nil {
		return nil, err
	}
	return p.parseAndRest(first)
}

func (p *parser) parseAndRest(first Expr) (Expr, error) {
	terms := []Expr{first}
	for {
		var t Expr
		var err error
		switch {
		case p.atAnd():
			t, err = p.parseTerm(p.next())
		case p.atTermStart():
			t, err = p.parseNot()
		default:
			return flattenAnd(terms), nil
		}
		if err != nil {
			return nil, err
		}
		terms = append(terms, t)
	}
}

// parseTerm parses the term that must follow the operator op.
func (p *parser) parseTerm(op token) (Expr, error) {
	if !p.atTermStart() {
		t := p.peek()
		return nil, p.errAt(t, "expected a term after %s, got %s", describeOp(op), t.describe())
	}
	return p.parseNot()
}

func describeOp(t token) string {
	if t.kind == tWord {
		return "'" + strings.ToLower(t.text) + "'"
	}
	return tokNames[t.kind]
}

// flattenAnd builds an And of terms, splicing in the terms of nested Ands,
// and returns a lone term as it is.
func flattenAnd(terms []Expr) Expr {
	var out []Expr
	for _, t := range terms {
		if a, ok := t.(*And); ok {
			out = append(out, a.Terms...)
		} else {
			out = append(out, t)
		}
	}
	if len(out) == 1 {
		return out[0]
	}
	return &And{Terms: out}
}

// flattenOr is flattenAnd for Or.
func flattenOr(terms []Expr) Expr {
	var out []Expr
	for _, t := range terms {
		if o, ok := t.(*Or); ok {
			out = append(out, o.Terms...)
		} else {
			out = append(out, t)
		}
	}
	if len(out) == 1 {
		return out[0]
	}
	return &Or{Terms: out}
}

// not = ("not" | "!") not | primary
func (p *parser) parseNot() (Expr, error) {
	if !p.atNot() {
		return p.parsePrimary()
	}
	op := p.next()
	if p.depth++; p.depth > maxDepth {
		return nil, p.errAt(op, "filter nested more than %d levels deep", maxDepth)
	}
	x, err := p.parseTerm(op)
	if err != nil {
		return nil, err
	}
	p.depth--
	return &Not{X: x}, nil
}

// primary = "(" or ")" | STRING | comparison
func (p *parser) parsePrimary() (Expr, error) {
	t := p.peek()
	switch t.kind {
	case tLParen:
		p.next()
		if p.depth++; p.depth > maxDepth {
			return nil, p.errAt(t, "filter nested more than %d levels deep", maxDepth)
		}
		if p.peek().kind == tRParen {
			return nil, p.errAt(p.peek(), "empty parentheses: expected a filter inside")
		}
		e, err := p.parseOr()
		if err != nil {
			return nil, err
		}
		if c := p.peek(); c.kind != tRParen {
			if c.kind == tEOF {
				return nil, p.errAt(t, "unclosed '(': no matching ')'")
			}
			if c.kind == tComma {
				return nil, p.unexpected(c)
			}
			return nil, p.errAt(c, "expected ')' or a term, got %s", c.describe())
		}
		p.next()
		p.depth--
		return e, nil
	case tString:
		p.next()
		if isOperator(p.peek().kind) || p.peek().kind == tLBrack {
			return nil, p.errAt(t, "field names must not be quoted: write %s without quotes, or quote only the value", t.text)
		}
		return &Text{Text: t.text, Pos: t.pos}, nil
	case tWord:
		if isKeyword(t, "and") || isKeyword(t, "or") {
			return nil, p.errAt(t, "expected a term, got '%s'", strings.ToLower(t.text))
		}
		return p.parseCmp()
	case tEOF:
		return nil, p.errAt(t, "expected a term, got end of filter")
	case tComma, tRParen:
		return nil, p.unexpected(t)
	}
	return nil, p.errAt(t, "expected a term, got %s", t.describe())
}

func isOperator(k tokKind) bool {
	return k >= tEq && k <= tGe
}

var tokOps = [...]Op{
	tEq: OpEq, tNe: OpNe, tMatch: OpMatch, tNotMatch: OpNotMatch,
	tLt: OpLt, tLe: OpLe, tGt: OpGt, tGe: OpGe,
}

// comparison = field op value | field ["not"] "in" list
// field      = WORD [ "[" (WORD | STRING) "]" ]
func (p *parser) parseCmp() (Expr, error) {
	ft := p.next()
	var key *token
	if p.peek().kind == tLBrack {
		lb := p.next()
		k := p.next()
		if k.kind != tWord && k.kind != tString {
			return nil, p.errAt(k, "expected a key after '[', got %s", k.describe())
		}
		if rb := p.next(); rb.kind != tRBrack {
			if rb.kind == tEOF {
				return nil, p.errAt(lb, "unclosed '[': no matching ']'")
			}
			return nil, p.errAt(rb, "expected ']' after the key, got %s", rb.describe())
		}
		key = &k
	}

	var op Op
	opTok := p.peek()
	switch {
	case isOperator(opTok.kind):
		op = tokOps[opTok.kind]
		p.next()
	case isKeyword(opTok, "in"):
		op = OpIn
		p.next()
	case isKeyword(opTok, "not") && isKeyword(p.peek2(), "in"):
		op = OpNotIn
		p.next()
		p.next()
	default:
		if spec, _, _ := fields().resolve(ft.text); spec == nil && key == nil {
			return nil, p.errAt(ft, "expected a field name followed by an operator, got %s; to search free text, quote it: %s", ft.describe(), Canonical(&Text{Text: ft.text}))
		}
		return nil, p.errAt(opTok, "expected an operator after %s (=, !=, ~, !~, <, <=, >, >=, in, not in), got %s", ft.describe(), opTok.describe())
	}

	field, err := p.field(ft, key)
	if err != nil {
		return nil, err
	}
	c := &Cmp{Field: field, Op: op, Pos: ft.pos}
	if op == OpIn || op == OpNotIn {
		c.Values, err = p.parseList(opTok)
	} else {
		var v Value
		v, err = p.parseValue(opTok)
		if op == OpMatch || op == OpNotMatch {
			v.Glob = false // a regular expression has its own '*'
		}
		c.Values = []Value{v}
	}
	if err != nil {
		return nil, err
	}
	return c, nil
}

// field resolves the field name token ft, with its [key] if one was written.
func (p *parser) field(ft token, key *token) (Field, error) {
	spec, dottedKey, hasKey := fields().resolve(ft.text)
	if spec == nil {
		msg := "unknown field " + quoteForMsg(ft.text)
		if s := suggest(ft.text, fields().names()); s != "" {
			msg += " (did you mean " + quoteForMsg(s) + "?)"
		}
		return Field{}, p.errAt(ft, "%s; fields: %s", msg, fields().list())
	}
	f := Field{Name: spec.name}
	switch {
	case !spec.keyed && key != nil:
		return Field{}, p.errAt(*key, "field %s takes no [key]", spec.name)
	case spec.keyed && key != nil && hasKey:
		return Field{}, p.errAt(*key, "field %s has a key already", ft.text)
	case spec.keyed && key != nil:
		f.Key = key.text
	case spec.keyed && hasKey:
		f.Key = dottedKey
	case spec.keyed:
		return Field{}, p.errAt(ft, "field %s needs a key: %s[KEY]", spec.name, spec.name)
	}
	return f, nil
}

func (p *parser) parseValue(op token) (Value, error) {
	t := p.next()
	switch t.kind {
	case tWord:
		return Value{Text: t.text, Glob: strings.Contains(t.text, "*"), Pos: t.pos}, nil
	case tString:
		return Value{Text: t.text, Pos: t.pos}, nil
	case tLParen:
		return Value{}, p.errAt(t, "expected a value after %s, got '('; lists go with in: field in (a, b)", describeOp(op))
	}
	return Value{}, p.errAt(t, "expected a value after %s, got %s", describeOp(op), t.describe())
}

// list = value | "(" value { "," value } ")"
func (p *parser) parseList(op token) ([]Value, error) {
	lp := p.peek()
	if lp.kind != tLParen {
		v, err := p.parseValue(op)
		if err != nil {
			return nil, err
		}
		return []Value{v}, nil
	}
	p.next()
	if p.peek().kind == tRParen {
		return nil, p.errAt(p.peek(), "empty list: expected at least one value")
	}
	var vals []Value
	for {
		v, err := p.parseValue(lp)
		if err != nil {
			return nil, err
		}
		vals = append(vals, v)
		switch t := p.next(); t.kind {
		case tComma:
		case tRParen:
			return vals, nil
		case tEOF:
			return nil, p.errAt(lp, "unclosed '(': no matching ')'")
		default:
			return nil, p.errAt(t, "expected ',' or ')' in the list, got %s", t.describe())
		}
	}
}

// Compile parses a filter and compiles it into a matcher. Relative times
// such as time>-2h are resolved against the current time, once.
func Compile(src string) (*Filter, error) {
	return CompileAt(src, time.Now())
}

// CompileAt is Compile with relative times resolved against now.
func CompileAt(src string, now time.Time) (*Filter, error) {
	e, err := parse(src)
	if err != nil {
		return nil, err
	}
	return compile(src, e, now)
}

// CompileExpr compiles a tree built or rewritten by hand, such as the
// conjuncts a planner could not answer from its indexes. Errors carry
// positions only as far as the tree's Pos fields are meaningful.
func CompileExpr(e Expr, now time.Time) (*Filter, error) {
	return compile(Canonical(e), e, now)
}
