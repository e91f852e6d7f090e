package falco

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// This file turns a rule's syntax tree into matchers: macros are inlined,
// list names in value lists are replaced by their items, every field is
// resolved against the field table and every operator checked against its
// field, so that evaluation does no lookups by name.

// matcher is a compiled condition. match must not keep c.
type matcher interface {
	match(c *evalCtx) bool
}

type (
	andM []matcher
	orM  []matcher
	notM struct{ m matcher }
)

func (m andM) match(c *evalCtx) bool {
	for _, k := range m {
		if !k.match(c) {
			return false
		}
	}
	return true
}

func (m orM) match(c *evalCtx) bool {
	for _, k := range m {
		if k.match(c) {
			return true
		}
	}
	return false
}

func (m notM) match(c *evalCtx) bool { return !m.m.match(c) }

// op is a comparison operator.
type op int

const (
	opExists op = iota
	opEq
	opNe
	opLt
	opLe
	opGt
	opGe
	opContains
	opIContains
	opStartsWith
	opEndsWith
	opGlob
	opIGlob
	opRegex
	opIn
	opIntersects
	opPmatch
)

var opNames = map[string]op{
	"exists": opExists, "=": opEq, "!=": opNe, "<": opLt, "<=": opLe, ">": opGt, ">=": opGe,
	"contains": opContains, "icontains": opIContains, "startswith": opStartsWith, "endswith": opEndsWith,
	"glob": opGlob, "iglob": opIGlob, "regex": opRegex, "in": opIn, "intersects": opIntersects, "pmatch": opPmatch,
}

// checkM compares one field with constant values or with another field.
type checkM struct {
	f     *fieldInst
	op    op
	lit   string
	num   uint64
	set   map[string]struct{}
	nums  map[uint64]struct{}
	globs []string
	re    *regexp.Regexp
	paths []string
	rhs   *fieldInst
}

func (m *checkM) match(c *evalCtx) bool {
	vals, ok := m.f.spec.get(c, m.f)
	if !ok || len(vals) == 0 {
		return false
	}
	if len(m.f.trans) > 0 {
		vals = applyTransformers(vals, m.f.trans)
	}
	if m.op == opExists {
		return true
	}
	if m.f.spec.list {
		// Falco's list semantics: in holds when every value is in the
		// set, intersects when one is.
		for _, v := range vals {
			_, in := m.set[v]
			if m.op == opIntersects && in {
				return true
			}
			if m.op == opIn && !in {
				return false
			}
		}
		return m.op == opIn
	}
	v := vals[0]
	if m.rhs != nil {
		r, ok := m.rhs.spec.get(c, m.rhs)
		if !ok || len(r) == 0 {
			return false
		}
		if len(m.rhs.trans) > 0 {
			r = applyTransformers(r, m.rhs.trans)
		}
		return compareStr(m.op, v, r[0], m)
	}
	if m.f.spec.numeric {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return false
		}
		return compareNum(m, n)
	}
	return compareStr(m.op, v, m.lit, m)
}

func compareNum(m *checkM, n uint64) bool {
	switch m.op {
	case opEq:
		return n == m.num
	case opNe:
		return n != m.num
	case opLt:
		return n < m.num
	case opLe:
		return n <= m.num
	case opGt:
		return n > m.num
	case opGe:
		return n >= m.num
	case opIn, opIntersects:
		_, in := m.nums[n]
		return in
	}
	return false
}

// compareStr compares a string field's value as libsinsp does for strings
// (ordering operators compare bytes, like strcmp).
func compareStr(o op, v, lit string, m *checkM) bool {
	switch o {
	case opEq:
		return v == lit
	case opNe:
		return v != lit
	case opLt:
		return v < lit
	case opLe:
		return v <= lit
	case opGt:
		return v > lit
	case opGe:
		return v >= lit
	case opContains:
		return strings.Contains(v, lit)
	case opIContains:
		return strings.Contains(strings.ToLower(v), strings.ToLower(lit))
	case opStartsWith:
		return strings.HasPrefix(v, lit)
	case opEndsWith:
		return strings.HasSuffix(v, lit)
	case opGlob:
		return globMatch(lit, v, false)
	case opIGlob:
		return globMatch(lit, v, true)
	case opRegex:
		return m.re.MatchString(v)
	case opIn, opIntersects:
		_, in := m.set[v]
		return in
	case opPmatch:
		for _, p := range m.paths {
			if pathPrefix(p, v) {
				return true
			}
		}
	}
	return false
}

// compileError is a problem found while compiling, at an offset of the
// condition it is in.
type compileError struct {
	src     texts
	at      int
	msg     string
	unknown bool // an unknown field, which skip-if-unknown-filter forgives
}

// compiler compiles the rules of one rule set.
type compiler struct {
	rs     *ruleset
	fields map[string]*fieldSpec
	// macros are compiled once per rule set; stack finds cycles.
	macros map[string]matcher
	stack  []string
	lists  map[string][]string
	// warns are problems that do not stop a rule (a list item naming a
	// list defined after it).
	warns []*loadError
}

func newCompiler(rs *ruleset, fields map[string]*fieldSpec) *compiler {
	return &compiler{rs: rs, fields: fields, macros: map[string]matcher{}, lists: map[string][]string{}}
}

// listItems returns a list's items with the names of other lists among
// them replaced by those lists' items.
func (c *compiler) listItems(name string, seen []string) ([]string, error) {
	if items, ok := c.lists[name]; ok {
		return items, nil
	}
	for _, s := range seen {
		if s == name {
			return nil, fmt.Errorf("list %q refers to itself through %s", name, strings.Join(seen, " -> "))
		}
	}
	def := c.rs.lists[name]
	var out []string
	for _, it := range def.items {
		if sub, isList := c.rs.lists[it]; isList && sub.index >= def.visibility {
			// Falco reads it as a string: the list is defined after.
			c.warns = append(c.warns, errAt(def.file, def.node, "list %q: item %q names a list defined after it, so it is the string %q, as Falco reads it; define list %q first to use its items", name, it, it, it))
		} else if isList {
			sub, err := c.listItems(it, append(seen, name))
			if err != nil {
				return nil, err
			}
			out = append(out, sub...)
			continue
		}
		out = append(out, it)
	}
	c.lists[name] = out
	return out, nil
}

// compileCondition compiles a condition written in src.
func (c *compiler) compileCondition(src texts) (matcher, *compileError) {
	ast, err := parseCondition(src.join())
	if err != nil {
		se := err.(*syntaxError)
		return nil, &compileError{src: src, at: se.at, msg: se.msg}
	}
	return c.compileExpr(ast, src)
}

func (c *compiler) compileExpr(e expr, src texts) (matcher, *compileError) {
	switch e := e.(type) {
	case *orExpr:
		out := make(orM, 0, len(e.kids))
		for _, k := range e.kids {
			m, err := c.compileExpr(k, src)
			if err != nil {
				return nil, err
			}
			out = append(out, m)
		}
		return out, nil
	case *andExpr:
		out := make(andM, 0, len(e.kids))
		for _, k := range e.kids {
			m, err := c.compileExpr(k, src)
			if err != nil {
				return nil, err
			}
			out = append(out, m)
		}
		return out, nil
	case *notExpr:
		m, err := c.compileExpr(e.x, src)
		if err != nil {
			return nil, err
		}
		return notM{m}, nil
	case *macroRef:
		return c.macro(e, src)
	case *checkExpr:
		return c.check(e, src)
	}
	panic(fmt.Sprintf("BUG: unknown condition node %T", e))
}

func (c *compiler) macro(ref *macroRef, src texts) (matcher, *compileError) {
	for _, s := range c.stack {
		if s == ref.name {
			return nil, &compileError{src: src, at: ref.at,
				msg: fmt.Sprintf("macro %q refers to itself through %s", ref.name, strings.Join(append(c.stack, ref.name), " -> "))}
		}
	}
	def, ok := c.rs.macros[ref.name]
	if ok && len(c.stack) > 0 {
		// In a macro's condition: Falco sees only the macros before it.
		if user := c.rs.macros[c.stack[len(c.stack)-1]]; def.index >= user.visibility {
			return nil, &compileError{src: src, at: ref.at, msg: fmt.Sprintf(
				"macro %q uses macro %q, which is defined after it: Falco refuses it (undefined macro); define %q first", user.name, ref.name, ref.name)}
		}
	}
	if !ok {
		msg := fmt.Sprintf("undefined macro %q", ref.name)
		if _, isList := c.rs.lists[ref.name]; isList {
			msg = fmt.Sprintf("%q is a list, not a macro: write it inside a value list, as in (%s)", ref.name, ref.name)
		}
		return nil, &compileError{src: src, at: ref.at, msg: msg}
	}
	if m, ok := c.macros[ref.name]; ok {
		return m, nil
	}
	c.stack = append(c.stack, ref.name)
	defer func() { c.stack = c.stack[:len(c.stack)-1] }()
	m, err := c.compileCondition(def.cond)
	if err != nil {
		return nil, err
	}
	c.macros[ref.name] = m
	return m, nil
}

// field resolves a field as written.
func (c *compiler) field(f fieldRef, src texts) (*fieldInst, *compileError) {
	spec, ok := c.fields[f.name]
	if !ok {
		return nil, &compileError{src: src, at: f.at, msg: fmt.Sprintf("unknown field %q (see docs/detection.md for the fields kubetrail supports)", f.name), unknown: true}
	}
	fi := &fieldInst{spec: spec, text: f.name, arg: f.arg, index: -1, trans: f.transformers}
	if f.hasArg {
		fi.text += "[" + f.arg + "]"
	}
	switch {
	case spec.arg == argNone && f.hasArg:
		return nil, &compileError{src: src, at: f.at, msg: fmt.Sprintf("field %s takes no argument", f.name)}
	case spec.arg == argKeyRequired && !f.hasArg:
		return nil, &compileError{src: src, at: f.at, msg: fmt.Sprintf("field %s needs an argument, as in %s[...]", f.name, f.name)}
	case spec.arg == argIndex && f.hasArg:
		n, err := strconv.Atoi(f.arg)
		if err != nil || n < 0 || (len(f.arg) > 1 && f.arg[0] == '0') {
			return nil, &compileError{src: src, at: f.at, msg: fmt.Sprintf("field %s: index %q is not a number", f.name, f.arg)}
		}
		fi.index = n
	}
	if strings.HasSuffix(f.name, ".value") && (strings.HasPrefix(f.name, "json.") || strings.HasPrefix(f.name, "jevt.")) {
		if f.arg == "" {
			// The json plugin refuses it ("value argument is required");
			// it is not the key "", which is json.value[/].
			return nil, &compileError{src: src, at: f.at, msg: fmt.Sprintf("field %s needs a JSON pointer, as in %s[/user/username] (json.obj is the whole event)", f.name, f.name)}
		}
		fi.toks = splitPointer(f.arg)
	}
	return fi, nil
}

func (c *compiler) check(e *checkExpr, src texts) (matcher, *compileError) {
	fi, err := c.field(e.field, src)
	if err != nil {
		return nil, err
	}
	o, ok := opNames[e.op]
	if !ok {
		return nil, &compileError{src: src, at: e.opAt, msg: fmt.Sprintf("operator %s is not supported on k8s_audit fields", e.op)}
	}
	m := &checkM{f: fi, op: o}
	if fi.spec.list && o != opExists && o != opIn && o != opIntersects {
		return nil, &compileError{src: src, at: e.opAt,
			msg: fmt.Sprintf("%s is a list field: Falco allows only exists, in and intersects on it, as in %s intersects (...)", fi.text, fi.text)}
	}
	if e.rhs != nil {
		if m.rhs, err = c.field(*e.rhs, src); err != nil {
			return nil, err
		}
		if o == opIn || o == opIntersects || o == opPmatch || o == opRegex || fi.spec.list {
			return nil, &compileError{src: src, at: e.opAt, msg: fmt.Sprintf("operator %s cannot compare with another field", e.op)}
		}
		return m, nil
	}
	vals, err := c.values(e, src)
	if err != nil {
		return nil, err
	}
	switch o {
	case opExists:
	case opIn, opIntersects, opPmatch:
		m.set = make(map[string]struct{}, len(vals))
		for _, v := range vals {
			m.set[v.s] = struct{}{}
			if o == opPmatch {
				m.paths = append(m.paths, v.s)
			}
		}
		if fi.spec.numeric {
			m.nums = map[uint64]struct{}{}
			for _, v := range vals {
				n, err := strconv.ParseUint(v.s, 0, 64)
				if err != nil {
					return nil, &compileError{src: src, at: v.at, msg: fmt.Sprintf("%s is numeric: %q is not a number", fi.text, v.s)}
				}
				m.nums[n] = struct{}{}
			}
		}
	default:
		v := vals[0]
		m.lit = v.s
		switch {
		case fi.spec.numeric && o <= opGe:
			n, err := strconv.ParseUint(v.s, 0, 64)
			if err != nil {
				return nil, &compileError{src: src, at: v.at, msg: fmt.Sprintf("%s is numeric: %q is not a number", fi.text, v.s)}
			}
			m.num = n
		case o == opGlob || o == opIGlob:
			if err := checkGlob(v.s); err != nil {
				return nil, &compileError{src: src, at: v.at, msg: fmt.Sprintf("invalid glob %q: %v", v.s, err)}
			}
		case o == opRegex:
			re, err := regexp.Compile(`^(?:` + v.s + `)$`)
			if err != nil {
				return nil, &compileError{src: src, at: v.at, msg: fmt.Sprintf("invalid regex %q: %v", v.s, err)}
			}
			m.re = re
		}
	}
	return m, nil
}

// values returns a check's right-hand side with list names replaced by
// their items. Only bare names are replaced, and only in value lists.
func (c *compiler) values(e *checkExpr, src texts) ([]litValue, *compileError) {
	if e.op != "in" && e.op != "intersects" && e.op != "pmatch" {
		return e.vals, nil
	}
	var out []litValue
	for _, v := range e.vals {
		if _, isList := c.rs.lists[v.s]; isList && !v.quoted {
			items, err := c.listItems(v.s, nil)
			if err != nil {
				return nil, &compileError{src: src, at: v.at, msg: err.Error()}
			}
			for _, it := range items {
				out = append(out, litValue{s: itemValue(it), quoted: true, at: v.at})
			}
			continue
		}
		if e.listIdent {
			return nil, &compileError{src: src, at: v.at, msg: fmt.Sprintf("undefined list %q", v.s)}
		}
		out = append(out, v)
	}
	return out, nil
}

// itemValue is a list item or an exception value as Falco reads it:
// Falco writes them into the condition's text as they are, so one written
// with quotes ('"a b"' in YAML) is a quoted string, without its quotes
// and escapes.
func itemValue(s string) string {
	if len(s) >= 2 && (s[0] == '"' || s[0] == '\'') && s[len(s)-1] == s[0] {
		p := &parser{in: s}
		if v, err := p.quoted(); err == nil && p.i == len(s) {
			return v
		}
	}
	return s
}

// checkGlob reports an unterminated character class, the one way a
// pattern can be malformed.
func checkGlob(p string) error {
	for i := 0; i < len(p); i++ {
		switch p[i] {
		case '\\':
			i++
		case '[':
			j := i + 1
			if j < len(p) && (p[j] == '!' || p[j] == '^') {
				j++
			}
			if j < len(p) && p[j] == ']' {
				j++
			}
			for j < len(p) && p[j] != ']' {
				j++
			}
			if j >= len(p) {
				return fmt.Errorf("unterminated '[' at %d", i)
			}
			i = j
		}
	}
	return nil
}

// globMatch matches like fnmatch(3) without flags: * and ? match any
// character, '/' included; [...] is a class; \ escapes.
func globMatch(p, s string, fold bool) bool {
	if fold {
		p, s = strings.ToLower(p), strings.ToLower(s)
	}
	// Iterative matching with one backtrack point for the last '*'.
	pi, si := 0, 0
	starP, starS := -1, 0
	for si < len(s) {
		if pi < len(p) {
			switch p[pi] {
			case '*':
				starP, starS = pi, si
				pi++
				continue
			case '?':
				pi++
				si++
				continue
			case '[':
				if n, ok := classMatch(p[pi:], s[si]); n > 0 && ok {
					pi += n
					si++
					continue
				}
			case '\\':
				if pi+1 < len(p) && p[pi+1] == s[si] {
					pi += 2
					si++
					continue
				}
			default:
				if p[pi] == s[si] {
					pi++
					si++
					continue
				}
			}
		}
		if starP < 0 {
			return false
		}
		starS++
		pi, si = starP+1, starS
	}
	for pi < len(p) && p[pi] == '*' {
		pi++
	}
	return pi == len(p)
}

// classMatch matches c against the class at the start of p and returns
// the class's length.
func classMatch(p string, c byte) (int, bool) {
	i := 1
	neg := false
	if i < len(p) && (p[i] == '!' || p[i] == '^') {
		neg = true
		i++
	}
	match := false
	first := true
	for i < len(p) && (p[i] != ']' || first) {
		first = false
		lo := p[i]
		hi := lo
		if i+2 < len(p) && p[i+1] == '-' && p[i+2] != ']' {
			hi = p[i+2]
			i += 2
		}
		if lo <= c && c <= hi {
			match = true
		}
		i++
	}
	if i >= len(p) {
		return 0, false
	}
	return i + 1, match != neg
}

// pathPrefix reports whether prefix is a path prefix of p, component by
// component ("/var/run" of "/var/run/docker.sock", not of "/var/runner").
func pathPrefix(prefix, p string) bool {
	prefix = strings.TrimSuffix(prefix, "/")
	if prefix == "" {
		return strings.HasPrefix(p, "/")
	}
	return p == prefix || strings.HasPrefix(p, prefix+"/")
}
