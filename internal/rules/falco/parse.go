package falco

import (
	"fmt"
	"strings"
)

// This file parses Falco's condition language (libsinsp's filter grammar)
// into a syntax tree: "or" binds loosest, then "and", then "not"; a check
// is a field, an operator and a value, a list or nothing ("exists"); a bare
// identifier is a macro. Positions are byte offsets into the condition.

type expr interface{ offset() int }

type (
	orExpr struct {
		kids []expr
		at   int
	}
	andExpr struct {
		kids []expr
		at   int
	}
	notExpr struct {
		x  expr
		at int
	}
	// macroRef names a macro.
	macroRef struct {
		name string
		at   int
	}
	// checkExpr compares a field with values.
	checkExpr struct {
		field fieldRef
		op    string
		opAt  int
		// vals are the right-hand side's values; for a list operator
		// they are the parenthesised items, or the one identifier of
		// "in some_list" with listIdent set.
		vals      []litValue
		listIdent bool
		// rhs is set when the right-hand side is another field (val()).
		rhs *fieldRef
	}
	// fieldRef is a field as written, with its argument and transformers
	// (outermost first).
	fieldRef struct {
		name         string
		arg          string
		hasArg       bool
		transformers []string
		at           int
	}
	// litValue is a value as written; bare values may name a list.
	litValue struct {
		s      string
		quoted bool
		at     int
	}
)

func (e *orExpr) offset() int    { return e.at }
func (e *andExpr) offset() int   { return e.at }
func (e *notExpr) offset() int   { return e.at }
func (e *macroRef) offset() int  { return e.at }
func (e *checkExpr) offset() int { return e.field.at }

// syntaxError is a parse error at a byte offset of the condition.
type syntaxError struct {
	at  int
	msg string
}

func (e *syntaxError) Error() string { return e.msg }

// maxDepth bounds nesting, as libsinsp does, so a hostile condition cannot
// exhaust the stack.
const maxDepth = 100

type parser struct {
	in    string
	i     int
	depth int
}

// parseCondition parses a whole condition.
func parseCondition(s string) (expr, error) {
	p := &parser{in: s}
	e, err := p.parseOr()
	if err != nil {
		return nil, err
	}
	p.blank()
	if p.i < len(p.in) {
		return nil, p.errf("unexpected %q after a complete condition", p.rest(12))
	}
	return e, nil
}

func (p *parser) errf(format string, args ...any) error {
	return &syntaxError{at: p.i, msg: fmt.Sprintf(format, args...)}
}

func (p *parser) rest(n int) string {
	r := p.in[p.i:]
	if len(r) > n {
		r = r[:n] + "..."
	}
	if r == "" {
		return "end of condition"
	}
	return r
}

func isBlank(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\b' }

func (p *parser) blank() {
	for p.i < len(p.in) && isBlank(p.in[p.i]) {
		p.i++
	}
}

// word consumes w when it is followed by a blank or by one of follow (or
// the end, when end is true).
func (p *parser) word(w, follow string, end bool) bool {
	if !strings.HasPrefix(p.in[p.i:], w) {
		return false
	}
	j := p.i + len(w)
	if j == len(p.in) {
		if !end {
			return false
		}
	} else if c := p.in[j]; !isBlank(c) && strings.IndexByte(follow, c) < 0 {
		return false
	}
	p.i = j
	return true
}

func (p *parser) enter() error {
	p.depth++
	if p.depth > maxDepth {
		return p.errf("condition nested more than %d levels deep", maxDepth)
	}
	return nil
}

func (p *parser) parseOr() (expr, error) {
	if err := p.enter(); err != nil {
		return nil, err
	}
	defer func() { p.depth-- }()
	p.blank()
	at := p.i
	first, err := p.parseAnd()
	if err != nil {
		return nil, err
	}
	kids := []expr{first}
	for {
		save := p.i
		p.blank()
		if !p.word("or", "(", true) {
			p.i = save
			break
		}
		k, err := p.parseAnd()
		if err != nil {
			return nil, err
		}
		kids = append(kids, k)
	}
	if len(kids) == 1 {
		return first, nil
	}
	return &orExpr{kids: kids, at: at}, nil
}

func (p *parser) parseAnd() (expr, error) {
	p.blank()
	at := p.i
	first, err := p.parseNot()
	if err != nil {
		return nil, err
	}
	kids := []expr{first}
	for {
		save := p.i
		p.blank()
		if !p.word("and", "(", true) {
			p.i = save
			break
		}
		k, err := p.parseNot()
		if err != nil {
			return nil, err
		}
		kids = append(kids, k)
	}
	if len(kids) == 1 {
		return first, nil
	}
	return &andExpr{kids: kids, at: at}, nil
}

func (p *parser) parseNot() (expr, error) {
	p.blank()
	at := p.i
	if p.word("not", "(", false) {
		if err := p.enter(); err != nil {
			return nil, err
		}
		defer func() { p.depth-- }()
		x, err := p.parseNot()
		if err != nil {
			return nil, err
		}
		return &notExpr{x: x, at: at}, nil
	}
	return p.parseCheck()
}

var transformers = []string{"tolower", "toupper", "b64", "basename"}

func (p *parser) parseCheck() (expr, error) {
	p.blank()
	if p.i >= len(p.in) {
		return nil, p.errf("expected a field, a macro or '(' but found the end of the condition")
	}
	if p.in[p.i] == '(' {
		p.i++
		e, err := p.parseOr()
		if err != nil {
			return nil, err
		}
		p.blank()
		if p.i >= len(p.in) || p.in[p.i] != ')' {
			return nil, p.errf("expected ')' but found %q", p.rest(12))
		}
		p.i++
		return e, nil
	}
	at := p.i
	if f, ok, err := p.parseTransformed(); err != nil {
		return nil, err
	} else if ok {
		return p.parseOperator(f)
	}
	name := p.identifier()
	if name == "" {
		return nil, p.errf("expected a field, a macro or '(' but found %q", p.rest(12))
	}
	if !strings.Contains(name, ".") {
		return &macroRef{name: name, at: at}, nil
	}
	f, err := p.fieldRest(name, at)
	if err != nil {
		return nil, err
	}
	return p.parseOperator(f)
}

// parseTransformed parses tolower(field) and its kin, nested.
func (p *parser) parseTransformed() (fieldRef, bool, error) {
	at := p.i
	for _, t := range transformers {
		if strings.HasPrefix(p.in[p.i:], t+"(") {
			p.i += len(t) + 1
			if err := p.enter(); err != nil {
				return fieldRef{}, false, err
			}
			defer func() { p.depth-- }()
			p.blank()
			f, ok, err := p.parseTransformed()
			if err != nil {
				return fieldRef{}, false, err
			}
			if !ok {
				fat := p.i
				name := p.identifier()
				if !strings.Contains(name, ".") {
					p.i = fat
					return fieldRef{}, false, p.errf("expected a field inside %s()", t)
				}
				if f, err = p.fieldRest(name, fat); err != nil {
					return fieldRef{}, false, err
				}
			}
			p.blank()
			if p.i >= len(p.in) || p.in[p.i] != ')' {
				return fieldRef{}, false, p.errf("expected ')' to close %s(", t)
			}
			p.i++
			f.transformers = append([]string{t}, f.transformers...)
			f.at = at
			return f, true, nil
		}
	}
	return fieldRef{}, false, nil
}

// identifier lexes [a-zA-Z][a-zA-Z0-9_]* joined by dots (a field name has
// at least one dot, a macro none).
func (p *parser) identifier() string {
	start := p.i
	for {
		if p.i >= len(p.in) || !isAlpha(p.in[p.i]) {
			break
		}
		for p.i < len(p.in) && (isAlpha(p.in[p.i]) || isDigit(p.in[p.i]) || p.in[p.i] == '_') {
			p.i++
		}
		if p.i+1 < len(p.in) && p.in[p.i] == '.' && isAlpha(p.in[p.i+1]) {
			p.i++
			continue
		}
		break
	}
	return p.in[start:p.i]
}

func isAlpha(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// fieldRest parses a field's optional [argument].
func (p *parser) fieldRest(name string, at int) (fieldRef, error) {
	f := fieldRef{name: name, at: at}
	if p.i < len(p.in) && p.in[p.i] == '[' {
		p.i++
		if p.i < len(p.in) && (p.in[p.i] == '"' || p.in[p.i] == '\'') {
			s, err := p.quoted()
			if err != nil {
				return f, err
			}
			f.arg = s
		} else {
			start := p.i
			for p.i < len(p.in) && !strings.ContainsRune(" \b\t\n\r[]\"'", rune(p.in[p.i])) {
				p.i++
			}
			f.arg = p.in[start:p.i]
			if f.arg == "" {
				return f, p.errf("empty argument in %s[]", name)
			}
		}
		if p.i >= len(p.in) || p.in[p.i] != ']' {
			return f, p.errf("expected ']' to close the argument of %s", name)
		}
		p.i++
		f.hasArg = true
	}
	return f, nil
}

// The operators, longest first where one is a prefix of another.
var (
	numOps  = []string{"<=", "<", ">=", ">"}
	strOps  = []string{"==", "=", "!="}
	wordOps = []string{"glob", "iglob", "contains", "icontains", "bcontains", "startswith", "bstartswith", "endswith", "regex"}
	listOps = []string{"intersects", "in", "pmatch"}
)

func (p *parser) parseOperator(f fieldRef) (expr, error) {
	p.blank()
	c := &checkExpr{field: f, opAt: p.i}
	if p.word("exists", ")", true) {
		c.op = "exists"
		return c, nil
	}
	for _, op := range numOps {
		if strings.HasPrefix(p.in[p.i:], op) {
			p.i += len(op)
			c.op = op
			return c, p.numValue(c)
		}
	}
	for _, op := range strOps {
		if strings.HasPrefix(p.in[p.i:], op) {
			p.i += len(op)
			c.op = op
			if op == "==" {
				c.op = "="
			}
			return c, p.strValue(c)
		}
	}
	for _, op := range wordOps {
		if p.word(op, "", false) {
			c.op = op
			return c, p.strValue(c)
		}
	}
	for _, op := range listOps {
		if p.word(op, "(", false) {
			c.op = op
			return c, p.listValue(c)
		}
	}
	return nil, p.errf("expected an operator after %s but found %q", f.name, p.rest(12))
}

// rhsField parses val(field) or a transformed field on the right-hand side.
func (p *parser) rhsField(c *checkExpr) (bool, error) {
	if strings.HasPrefix(p.in[p.i:], "val(") {
		p.i += len("val(")
		p.blank()
		at := p.i
		name := p.identifier()
		if !strings.Contains(name, ".") {
			p.i = at
			return false, p.errf("expected a field inside val()")
		}
		f, err := p.fieldRest(name, at)
		if err != nil {
			return false, err
		}
		p.blank()
		if p.i >= len(p.in) || p.in[p.i] != ')' {
			return false, p.errf("expected ')' to close val(")
		}
		p.i++
		c.rhs = &f
		return true, nil
	}
	f, ok, err := p.parseTransformed()
	if ok {
		c.rhs = &f
	}
	return ok, err
}

func (p *parser) numValue(c *checkExpr) error {
	p.blank()
	if ok, err := p.rhsField(c); ok || err != nil {
		return err
	}
	at := p.i
	j := p.i
	if j < len(p.in) && (p.in[j] == '+' || p.in[j] == '-') {
		j++
	}
	for j < len(p.in) && (isDigit(p.in[j]) || isAlpha(p.in[j]) || p.in[j] == '.' || p.in[j] == '+' || p.in[j] == '-') {
		j++
	}
	s := p.in[at:j]
	if !isNumber(s) {
		return p.errf("expected a number after %s but found %q", c.op, p.rest(12))
	}
	p.i = j
	c.vals = []litValue{{s: s, at: at}}
	return nil
}

// isNumber matches libsinsp's HexNumber and Number tokens.
func isNumber(s string) bool {
	if len(s) > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X') {
		for i := 2; i < len(s); i++ {
			if !isDigit(s[i]) && !isAlpha(s[i]) {
				return false
			}
		}
		return true
	}
	i := 0
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		i++
	}
	d := i
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	if i == d {
		return false
	}
	if i < len(s) && s[i] == '.' {
		i++
		for i < len(s) && isDigit(s[i]) {
			i++
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i >= len(s) || (s[i] != '+' && s[i] != '-') {
			return false
		}
		i++
		e := i
		for i < len(s) && isDigit(s[i]) {
			i++
		}
		if i == e {
			return false
		}
	}
	return i == len(s)
}

func (p *parser) strValue(c *checkExpr) error {
	p.blank()
	if ok, err := p.rhsField(c); ok || err != nil {
		return err
	}
	v, err := p.value()
	if err != nil {
		return err
	}
	c.vals = []litValue{v}
	return nil
}

func (p *parser) listValue(c *checkExpr) error {
	p.blank()
	if ok, err := p.rhsField(c); ok || err != nil {
		return err
	}
	if p.i < len(p.in) && p.in[p.i] != '(' {
		at := p.i
		name := p.identifier()
		if name == "" || strings.Contains(name, ".") {
			p.i = at
			return p.errf("expected '(' or a list name after %s but found %q", c.op, p.rest(12))
		}
		c.vals = []litValue{{s: name, at: at}}
		c.listIdent = true
		return nil
	}
	if p.i >= len(p.in) {
		return p.errf("expected '(' or a list name after %s", c.op)
	}
	p.i++
	p.blank()
	if p.i < len(p.in) && p.in[p.i] == ')' {
		p.i++
		c.vals = []litValue{}
		return nil
	}
	for {
		p.blank()
		v, err := p.value()
		if err != nil {
			return err
		}
		c.vals = append(c.vals, v)
		p.blank()
		if p.i >= len(p.in) {
			return p.errf("expected ',' or ')' in the list after %s", c.op)
		}
		if p.in[p.i] == ')' {
			p.i++
			return nil
		}
		if p.in[p.i] != ',' {
			return p.errf("expected ',' or ')' in the list but found %q", p.rest(12))
		}
		p.i++
	}
}

// value lexes a quoted string or a bare one ([^ \b\t\n\r(),="']+).
func (p *parser) value() (litValue, error) {
	at := p.i
	if p.i < len(p.in) && (p.in[p.i] == '"' || p.in[p.i] == '\'') {
		s, err := p.quoted()
		return litValue{s: s, quoted: true, at: at}, err
	}
	for p.i < len(p.in) && !strings.ContainsRune(" \b\t\n\r(),=\"'", rune(p.in[p.i])) {
		p.i++
	}
	if p.i == at {
		return litValue{}, p.errf("expected a value but found %q", p.rest(12))
	}
	return litValue{s: p.in[at:p.i], at: at}, nil
}

// quoted lexes a single- or double-quoted string with backslash escapes.
func (p *parser) quoted() (string, error) {
	q := p.in[p.i]
	start := p.i
	p.i++
	var b strings.Builder
	for p.i < len(p.in) {
		c := p.in[p.i]
		switch {
		case c == q:
			p.i++
			return b.String(), nil
		case c == '\\' && p.i+1 < len(p.in):
			p.i++
			switch e := p.in[p.i]; e {
			case 'b':
				b.WriteByte('\b')
			case 'f':
				b.WriteByte('\f')
			case 'n':
				b.WriteByte('\n')
			case 'r':
				b.WriteByte('\r')
			case 't':
				b.WriteByte('\t')
			case '\\', '"', '\'', ' ', '/':
				b.WriteByte(e)
			default:
				b.WriteByte('\\')
				b.WriteByte(e)
			}
		default:
			b.WriteByte(c)
		}
		p.i++
	}
	p.i = start
	return "", p.errf("unterminated quoted string")
}
