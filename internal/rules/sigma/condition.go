package sigma

import (
	"fmt"
	"strings"
)

// The condition language, from least to most binding: or, and, not,
// `1 of` / `all of` (a search identifier pattern with * wildcards, or
// them: every identifier not starting with _), parentheses. The keywords
// are read in any case. Aggregations (`| count() > 5`) belong to the
// deprecated Sigma 1 syntax and are refused: correlations are native
// threshold rules in kubetrail.

// cop is a condition node's operator.
type cop uint8

const (
	cIdent cop = iota
	cAnd
	cOr
	cNot
	cOneOf
	cAllOf
)

// cnode is a parsed condition, before its identifiers are linked to the
// searches. For cOneOf and cAllOf, name is the pattern, "them" included.
type cnode struct {
	op   cop
	name string
	kids []*cnode
	// pos is the byte offset in the condition where the node starts.
	pos int
}

// String writes the node back in the condition language, fully
// parenthesized.
func (n *cnode) String() string {
	switch n.op {
	case cIdent:
		return n.name
	case cOneOf:
		return "1 of " + n.name
	case cAllOf:
		return "all of " + n.name
	case cNot:
		return "not " + n.kids[0].String()
	}
	sep := " and "
	if n.op == cOr {
		sep = " or "
	}
	parts := make([]string, len(n.kids))
	for i, k := range n.kids {
		parts[i] = k.String()
	}
	return "(" + strings.Join(parts, sep) + ")"
}

// condError is a condition syntax error at a byte offset.
type condError struct {
	pos int
	msg string
}

func (e *condError) Error() string { return e.msg }

type token struct {
	s   string
	pos int
}

// lexCondition splits a condition into words and parentheses.
func lexCondition(src string) ([]token, error) {
	var toks []token
	for i := 0; i < len(src); {
		c := src[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '(' || c == ')':
			toks = append(toks, token{src[i : i+1], i})
			i++
		case c == '|':
			return nil, &condError{i, "aggregations (| count() ...) are not supported; write a native threshold rule instead"}
		default:
			j := i
			for j < len(src) && !strings.ContainsRune(" \t\n\r()|", rune(src[j])) {
				j++
			}
			toks = append(toks, token{src[i:j], i})
			i = j
		}
	}
	return toks, nil
}

type condParser struct {
	toks []token
	i    int
	end  int
}

// parseCondition parses a condition. It never links identifiers: that
// is link's job, so that a syntax error is reported before an unknown
// name.
func parseCondition(src string) (*cnode, error) {
	toks, err := lexCondition(src)
	if err != nil {
		return nil, err
	}
	if len(toks) == 0 {
		return nil, &condError{0, "the condition is empty"}
	}
	p := &condParser{toks: toks, end: len(src)}
	n, err := p.or(0)
	if err != nil {
		return nil, err
	}
	if p.i < len(p.toks) {
		t := p.toks[p.i]
		if t.s == ")" {
			return nil, &condError{t.pos, "unbalanced ): no ( before it"}
		}
		return nil, &condError{t.pos, fmt.Sprintf("unexpected %q; want and, or or the end of the condition", t.s)}
	}
	return n, nil
}

// maxDepth bounds nesting so that a hostile condition cannot exhaust the
// stack.
const maxDepth = 200

func (p *condParser) peek() (token, bool) {
	if p.i < len(p.toks) {
		return p.toks[p.i], true
	}
	return token{pos: p.end}, false
}

func (p *condParser) keyword(w string) bool {
	t, ok := p.peek()
	if ok && strings.EqualFold(t.s, w) {
		p.i++
		return true
	}
	return false
}

func (p *condParser) or(depth int) (*cnode, error) {
	first, err := p.and(depth)
	if err != nil {
		return nil, err
	}
	n := first
	for p.keyword("or") {
		right, err := p.and(depth)
		if err != nil {
			return nil, err
		}
		if n == first {
			n = &cnode{op: cOr, kids: []*cnode{first}, pos: first.pos}
		}
		n.kids = append(n.kids, right)
	}
	return n, nil
}

func (p *condParser) and(depth int) (*cnode, error) {
	first, err := p.not(depth)
	if err != nil {
		return nil, err
	}
	n := first
	for p.keyword("and") {
		right, err := p.not(depth)
		if err != nil {
			return nil, err
		}
		if n == first {
			n = &cnode{op: cAnd, kids: []*cnode{first}, pos: first.pos}
		}
		n.kids = append(n.kids, right)
	}
	return n, nil
}

func (p *condParser) not(depth int) (*cnode, error) {
	if depth > maxDepth {
		t, _ := p.peek()
		return nil, &condError{t.pos, fmt.Sprintf("the condition nests deeper than %d", maxDepth)}
	}
	t, _ := p.peek()
	if p.keyword("not") {
		k, err := p.not(depth + 1)
		if err != nil {
			return nil, err
		}
		return &cnode{op: cNot, kids: []*cnode{k}, pos: t.pos}, nil
	}
	return p.primary(depth)
}

func (p *condParser) primary(depth int) (*cnode, error) {
	t, ok := p.peek()
	if !ok {
		return nil, &condError{t.pos, "the condition ends too early; want a search identifier"}
	}
	p.i++
	switch low := strings.ToLower(t.s); {
	case t.s == "(":
		n, err := p.or(depth + 1)
		if err != nil {
			return nil, err
		}
		if c, ok := p.peek(); !ok || c.s != ")" {
			return nil, &condError{c.pos, fmt.Sprintf("unbalanced (: no ) for the one at column %d", t.pos+1)}
		}
		p.i++
		return n, nil
	case t.s == ")":
		return nil, &condError{t.pos, "unexpected ); want a search identifier"}
	case low == "1" || low == "all":
		if !p.keyword("of") {
			// all alone is a search identifier like any other.
			if low == "1" {
				c, _ := p.peek()
				return nil, &condError{c.pos, "want of after 1"}
			}
			break
		}
		target, ok := p.peek()
		if !ok || target.s == "(" || target.s == ")" || isKeyword(target.s) && !strings.EqualFold(target.s, "them") {
			return nil, &condError{target.pos, fmt.Sprintf("want a search identifier pattern or them after %s of", t.s)}
		}
		p.i++
		op := cAllOf
		if low == "1" {
			op = cOneOf
		}
		name := target.s
		if strings.EqualFold(name, "them") {
			name = "them"
		}
		return &cnode{op: op, name: name, pos: t.pos}, nil
	case isKeyword(t.s):
		return nil, &condError{t.pos, fmt.Sprintf("unexpected %q; want a search identifier", t.s)}
	case strings.Contains(t.s, "*"):
		return nil, &condError{t.pos, fmt.Sprintf("%q: a pattern needs 1 of or all of before it", t.s)}
	case strings.Trim(t.s, "0123456789") == "":
		if c, ok := p.peek(); ok && strings.EqualFold(c.s, "of") {
			return nil, &condError{t.pos, fmt.Sprintf("%s of is not supported; write 1 of or all of", t.s)}
		}
	}
	return &cnode{op: cIdent, name: t.s, pos: t.pos}, nil
}

func isKeyword(s string) bool {
	switch strings.ToLower(s) {
	case "and", "or", "not", "of", "them":
		return true
	}
	return false
}

// expr is a condition linked to its searches.
type expr interface {
	eval(s *state) bool
	konst() tv
}

type andExpr []expr
type orExpr []expr
type notExpr struct{ e expr }
type searchExpr struct{ s *search }

func (a andExpr) eval(s *state) bool {
	for _, e := range a {
		if !e.eval(s) {
			return false
		}
	}
	return true
}

func (o orExpr) eval(s *state) bool {
	for _, e := range o {
		if e.eval(s) {
			return true
		}
	}
	return false
}

func (n notExpr) eval(s *state) bool    { return !n.e.eval(s) }
func (e searchExpr) eval(s *state) bool { return e.s.eval(s) }

func (a andExpr) konst() tv {
	k := tvTrue
	for _, e := range a {
		k = k.and(e.konst())
	}
	return k
}

func (o orExpr) konst() tv {
	k := tvFalse
	for _, e := range o {
		k = k.or(e.konst())
	}
	return k
}

func (n notExpr) konst() tv    { return n.e.konst().not() }
func (e searchExpr) konst() tv { return e.s.konst }

// link resolves a parsed condition's names against the searches, given in
// the order the rule defines them.
func link(n *cnode, searches []*search) (expr, error) {
	switch n.op {
	case cIdent:
		for _, s := range searches {
			if s.name == n.name {
				return searchExpr{s}, nil
			}
		}
		return nil, &condError{n.pos, fmt.Sprintf("no search identifier %q in the detection", n.name)}
	case cOneOf, cAllOf:
		var es []expr
		for _, s := range searches {
			if ofMatches(n.name, s.name) {
				es = append(es, searchExpr{s})
			}
		}
		if len(es) == 0 {
			return nil, &condError{n.pos, fmt.Sprintf("%s matches no search identifier", n.name)}
		}
		if n.op == cAllOf {
			return andExpr(es), nil
		}
		return orExpr(es), nil
	case cNot:
		e, err := link(n.kids[0], searches)
		if err != nil {
			return nil, err
		}
		return notExpr{e}, nil
	}
	es := make([]expr, 0, len(n.kids))
	for _, k := range n.kids {
		e, err := link(k, searches)
		if err != nil {
			return nil, err
		}
		es = append(es, e)
	}
	if n.op == cAnd {
		return andExpr(es), nil
	}
	return orExpr(es), nil
}

// ofMatches reports whether `1 of pattern` includes the identifier name:
// them is every identifier not starting with _; a pattern matches with *
// standing for any run of characters.
func ofMatches(pattern, name string) bool {
	if pattern == "them" {
		return !strings.HasPrefix(name, "_")
	}
	var p []patElem
	for _, r := range pattern {
		if r == '*' {
			p = append(p, patElem{kind: '*'})
		} else {
			p = append(p, patElem{r: r})
		}
	}
	return glob(p, name)
}

// tv is a truth value that may be unknown: what a part of a condition is
// whatever the event, as far as the fields it reads tell.
type tv uint8

const (
	tvUnknown tv = iota
	tvFalse
	tvTrue
)

func (a tv) and(b tv) tv {
	switch {
	case a == tvFalse || b == tvFalse:
		return tvFalse
	case a == tvTrue && b == tvTrue:
		return tvTrue
	}
	return tvUnknown
}

func (a tv) or(b tv) tv {
	switch {
	case a == tvTrue || b == tvTrue:
		return tvTrue
	case a == tvFalse && b == tvFalse:
		return tvFalse
	}
	return tvUnknown
}

func (a tv) not() tv {
	switch a {
	case tvTrue:
		return tvFalse
	case tvFalse:
		return tvTrue
	}
	return tvUnknown
}
