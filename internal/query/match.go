package query

import (
	"bytes"
	"net/netip"
	"regexp"
	"regexp/syntax"
	"slices"
	"strings"
	"time"

	"github.com/kubetrail/kubetrail/internal/audit"
)

// Filter is a compiled filter. It is immutable and safe for concurrent use.
type Filter struct {
	expr Expr
	m    matcher
	now  time.Time
}

// Match reports whether ev satisfies the filter. cluster is the name of the
// cluster ev came from, which the event itself does not carry; it is what
// the cluster field compares. ev must not be nil and must not be modified
// during the call. Match does not allocate.
func (f *Filter) Match(ev *audit.Event, cluster string) bool {
	return f.m.match(ev, cluster)
}

// Expr returns the parsed filter; nil for the empty filter.
func (f *Filter) Expr() Expr { return f.expr }

// String returns the canonical text of the filter.
func (f *Filter) String() string { return Canonical(f.expr) }

// Conjuncts returns the terms that must all hold; see Conjuncts.
func (f *Filter) Conjuncts() []Expr { return Conjuncts(f.expr) }

// Now returns the time relative times in the filter were resolved against.
func (f *Filter) Now() time.Time { return f.now }

// matcher is one compiled node. match must not allocate.
type matcher interface {
	match(ev *audit.Event, cluster string) bool
	// cost estimates the price of match, so that And and Or try cheap
	// terms first.
	cost() int
}

type trueM struct{}

func (trueM) match(*audit.Event, string) bool { return true }
func (trueM) cost() int                       { return 0 }

type andM struct {
	ms []matcher
	c  int
}

func (m *andM) match(ev *audit.Event, cluster string) bool {
	for _, x := range m.ms {
		if !x.match(ev, cluster) {
			return false
		}
	}
	return true
}
func (m *andM) cost() int { return m.c }

type orM struct {
	ms []matcher
	c  int
}

func (m *orM) match(ev *audit.Event, cluster string) bool {
	for _, x := range m.ms {
		if x.match(ev, cluster) {
			return true
		}
	}
	return false
}
func (m *orM) cost() int { return m.c }

type notM struct{ m matcher }

func (m notM) match(ev *audit.Event, cluster string) bool { return !m.m.match(ev, cluster) }
func (m notM) cost() int                                  { return m.m.cost() }

// strM tests the one string value of a field.
type strM struct {
	get func(*audit.Event, string) string
	t   strTest
}

func (m *strM) match(ev *audit.Event, cluster string) bool { return m.t.test(m.get(ev, cluster)) }
func (m *strM) cost() int                                  { return 1 + m.t.cost() }

// strsM holds when any value of a multi-valued field passes the test.
type strsM struct {
	get func(*audit.Event) []string
	t   strTest
}

func (m *strsM) match(ev *audit.Event, _ string) bool {
	for _, s := range m.get(ev) {
		if m.t.test(s) {
			return true
		}
	}
	return false
}
func (m *strsM) cost() int { return 2 + 2*m.t.cost() }

// codeM compares the response code with one number (=, <, <=, >, >=).
type codeM struct {
	op Op
	n  int
}

func (m codeM) match(ev *audit.Event, _ string) bool {
	if ev.ResponseStatus == nil || ev.ResponseStatus.Code == 0 {
		return false
	}
	return compareInt(int(ev.ResponseStatus.Code), m.op, m.n)
}
func (codeM) cost() int { return 1 }

// codeSetM holds when the response code is in a set.
type codeSetM struct{ set []int }

func (m codeSetM) match(ev *audit.Event, _ string) bool {
	if ev.ResponseStatus == nil || ev.ResponseStatus.Code == 0 {
		return false
	}
	return slices.Contains(m.set, int(ev.ResponseStatus.Code))
}
func (codeSetM) cost() int { return 2 }

// levelM compares the audit level's rank.
type levelM struct {
	op   Op
	rank int
}

func (m levelM) match(ev *audit.Event, _ string) bool {
	r := levelRank(string(ev.Level))
	return r >= 0 && compareInt(r, m.op, m.rank)
}
func (levelM) cost() int { return 2 }

func compareInt(a int, op Op, b int) bool {
	switch op {
	case OpEq:
		return a == b
	case OpLt:
		return a < b
	case OpLe:
		return a <= b
	case OpGt:
		return a > b
	case OpGe:
		return a >= b
	}
	panic("BUG: compareInt with " + op.String())
}

// timeM compares a timestamp; an absent (zero) timestamp never matches.
// The timestamp compares to the microsecond, the precision of audit
// timestamps and of a store's time column, which decides a time
// condition alone: an event written with nanoseconds (by hand; the API
// server writes microseconds) compared with them was time>T over a log
// file and not over the store.
type timeM struct {
	get func(*audit.Event) time.Time
	op  Op
	t   time.Time
}

func (m *timeM) match(ev *audit.Event, _ string) bool {
	v := m.get(ev).Truncate(time.Microsecond)
	if v.IsZero() {
		return false
	}
	switch m.op {
	case OpEq:
		return v.Equal(m.t)
	case OpLt:
		return v.Before(m.t)
	case OpLe:
		return !v.After(m.t)
	case OpGt:
		return v.After(m.t)
	case OpGe:
		return !v.Before(m.t)
	}
	panic("BUG: timeM with " + m.op.String())
}
func (m *timeM) cost() int { return 1 }

// textM is free text: a case-sensitive substring of any of FreeTextFields.
type textM struct {
	s string
	b []byte
}

func (m *textM) match(ev *audit.Event, _ string) bool {
	s := m.s
	if strings.Contains(ev.RequestURI, s) || strings.Contains(ev.UserAgent, s) ||
		strings.Contains(ev.User.Username, s) {
		return true
	}
	if u := ev.ImpersonatedUser; u != nil && strings.Contains(u.Username, s) {
		return true
	}
	if o := ev.ObjectRef; o != nil && (strings.Contains(o.Namespace, s) || strings.Contains(o.Name, s)) {
		return true
	}
	if st := ev.ResponseStatus; st != nil && strings.Contains(st.Message, s) {
		return true
	}
	for _, v := range ev.Annotations {
		if strings.Contains(v, s) {
			return true
		}
	}
	return bytes.Contains(ev.RequestObject, m.b) || bytes.Contains(ev.ResponseObject, m.b)
}
func (m *textM) cost() int { return 50 }

// strTest is a compiled test of one string value.
type strTest interface {
	test(s string) bool
	cost() int
}

type exactT struct{ s string }

func (t exactT) test(s string) bool { return s == t.s }
func (exactT) cost() int            { return 1 }

type anyT struct{}

func (anyT) test(string) bool { return true }
func (anyT) cost() int        { return 0 }

type prefixT struct{ p string }

func (t prefixT) test(s string) bool { return strings.HasPrefix(s, t.p) }
func (prefixT) cost() int            { return 1 }

type suffixT struct{ p string }

func (t suffixT) test(s string) bool { return strings.HasSuffix(s, t.p) }
func (suffixT) cost() int            { return 1 }

type containsT struct{ p string }

func (t containsT) test(s string) bool { return strings.Contains(s, t.p) }
func (containsT) cost() int            { return 3 }

// globT is the general glob: prefix*mid1*mid2*...*suffix.
type globT struct {
	prefix, suffix string
	middle         []string
}

func (t *globT) test(s string) bool {
	if len(s) < len(t.prefix)+len(t.suffix) || !strings.HasPrefix(s, t.prefix) || !strings.HasSuffix(s, t.suffix) {
		return false
	}
	s = s[len(t.prefix) : len(s)-len(t.suffix)]
	// Taking the leftmost occurrence of each part in turn leaves the most
	// room for the parts after it, so it finds a match if there is one.
	for _, m := range t.middle {
		i := strings.Index(s, m)
		if i < 0 {
			return false
		}
		s = s[i+len(m):]
	}
	return true
}
func (t *globT) cost() int { return 3 + len(t.middle) }

// compileGlob turns a glob into its fastest test.
func compileGlob(p string) strTest {
	parts := strings.Split(p, "*")
	n := len(parts)
	switch {
	case n == 1:
		return exactT{p}
	case strings.Trim(p, "*") == "":
		return anyT{}
	case n == 2 && parts[1] == "":
		return prefixT{parts[0]}
	case n == 2 && parts[0] == "":
		return suffixT{parts[1]}
	case n == 3 && parts[0] == "" && parts[2] == "":
		return containsT{parts[1]}
	}
	g := &globT{prefix: parts[0], suffix: parts[n-1]}
	for _, m := range parts[1 : n-1] {
		if m != "" {
			g.middle = append(g.middle, m)
		}
	}
	return g
}

// compileRegexp returns a plain string test for the regular expressions
// that are only a literal, optionally anchored (kubectl, ^system:, \.local$,
// ^exact$), and the regexp itself otherwise.
func compileRegexp(re *regexp.Regexp) strTest {
	t := regexT{re}
	st, err := syntax.Parse(re.String(), syntax.Perl)
	if err != nil {
		return t
	}
	st = st.Simplify()
	lit := func(x *syntax.Regexp) (string, bool) {
		if x.Op != syntax.OpLiteral || x.Flags&syntax.FoldCase != 0 {
			return "", false
		}
		return string(x.Rune), true
	}
	if s, ok := lit(st); ok {
		return containsT{s}
	}
	if st.Op != syntax.OpConcat {
		return t
	}
	subs := st.Sub
	begin := len(subs) > 0 && subs[0].Op == syntax.OpBeginText
	if begin {
		subs = subs[1:]
	}
	end := len(subs) > 0 && subs[len(subs)-1].Op == syntax.OpEndText
	if end {
		subs = subs[:len(subs)-1]
	}
	if len(subs) != 1 {
		return t
	}
	s, ok := lit(subs[0])
	switch {
	case !ok:
		return t
	case begin && end:
		return exactT{s}
	case begin:
		return prefixT{s}
	case end:
		return suffixT{s}
	}
	return t
}

type regexT struct{ re *regexp.Regexp }

func (t regexT) test(s string) bool { return t.re.MatchString(s) }
func (regexT) cost() int            { return 10 }

// setT is an in list: exact values as a set, globs tried in turn.
type setT struct {
	small []string            // exact values, when there are few
	big   map[string]struct{} // exact values, when there are many
	globs []strTest
}

// smallSet is the size up to which a linear scan beats a map lookup.
const smallSet = 8

func (t *setT) test(s string) bool {
	if t.big != nil {
		if _, ok := t.big[s]; ok {
			return true
		}
	} else if slices.Contains(t.small, s) {
		return true
	}
	for _, g := range t.globs {
		if g.test(s) {
			return true
		}
	}
	return false
}
func (t *setT) cost() int { return 2 + 3*len(t.globs) }

// ipT tests an IP address string against addresses, CIDR prefixes and
// string globs.
type ipT struct {
	addrs    []netip.Addr
	prefixes []netip.Prefix
	globs    []strTest
}

func (t *ipT) test(s string) bool {
	if len(t.addrs)+len(t.prefixes) > 0 {
		if a, ok := eventAddr(s); ok {
			if slices.Contains(t.addrs, a) {
				return true
			}
			for _, p := range t.prefixes {
				if p.Contains(a) {
					return true
				}
			}
		}
	}
	for _, g := range t.globs {
		if g.test(s) {
			return true
		}
	}
	return false
}
func (t *ipT) cost() int { return 4 + len(t.prefixes) + 3*len(t.globs) }

// builder compiles a checked tree into matchers.
type builder struct {
	src string
	now time.Time
}

func compile(src string, e Expr, now time.Time) (*Filter, error) {
	f := &Filter{expr: e, now: now, m: trueM{}}
	if e == nil {
		return f, nil
	}
	b := &builder{src: src, now: now}
	m, err := b.build(e)
	if err != nil {
		return nil, err
	}
	f.m = m
	return f, nil
}

func (b *builder) errAt(pos int, format string, args ...any) *Error {
	return errorAt(b.src, pos, format, args...)
}

func (b *builder) build(e Expr) (matcher, error) {
	switch e := e.(type) {
	case *And:
		ms, c, err := b.buildAll(e.Terms)
		if err != nil {
			return nil, err
		}
		return &andM{ms: ms, c: c}, nil
	case *Or:
		ms, c, err := b.buildAll(e.Terms)
		if err != nil {
			return nil, err
		}
		return &orM{ms: ms, c: c}, nil
	case *Not:
		m, err := b.build(e.X)
		if err != nil {
			return nil, err
		}
		return notM{m}, nil
	case *Text:
		return &textM{s: e.Text, b: []byte(e.Text)}, nil
	case *Cmp:
		return b.cmp(e)
	}
	return nil, b.errAt(0, "invalid filter node %T", e)
}

// buildAll compiles terms and orders them cheapest first: And and Or have
// no side effects, so the order changes only the speed.
func (b *builder) buildAll(terms []Expr) ([]matcher, int, error) {
	ms := make([]matcher, 0, len(terms))
	c := 0
	for _, t := range terms {
		m, err := b.build(t)
		if err != nil {
			return nil, 0, err
		}
		ms = append(ms, m)
		c += m.cost()
	}
	slices.SortStableFunc(ms, func(x, y matcher) int { return x.cost() - y.cost() })
	return ms, c, nil
}

func (b *builder) cmp(c *Cmp) (matcher, error) {
	spec, _, _ := fields().resolve(c.Field.Name)
	if spec == nil {
		return nil, b.errAt(c.Pos, "unknown field %s; fields: %s", quoteForMsg(c.Field.Name), fields().list())
	}
	switch {
	case c.Op < OpEq || c.Op > OpNotIn:
		return nil, b.errAt(c.Pos, "invalid operator %d", c.Op)
	case len(c.Values) == 0:
		return nil, b.errAt(c.Pos, "%s %s needs a value", spec.name, c.Op)
	case len(c.Values) > 1 && c.Op != OpIn && c.Op != OpNotIn:
		return nil, b.errAt(c.Values[1].Pos, "%s takes one value", c.Op)
	}
	op, neg := c.Op.negated()
	m, err := b.positive(spec, c.Field.Key, op, c)
	if err != nil {
		return nil, err
	}
	if neg {
		return notM{m}, nil
	}
	return m, nil
}

// positive compiles c with its operator replaced by the positive op.
func (b *builder) positive(spec *fieldSpec, key string, op Op, c *Cmp) (matcher, error) {
	v0 := c.Values[0]
	if op.ordered() && spec.kind != kCode && spec.kind != kTime && spec.kind != kLevel {
		return nil, b.errAt(c.Pos, "operator %s applies to code, level, time and received only; compare %s with =, !=, ~, !~ or in", c.Op, spec.name)
	}
	switch spec.kind {
	case kCode:
		return b.code(op, c)
	case kTime:
		if op == OpMatch || op == OpIn {
			return nil, b.errAt(c.Pos, "operator %s does not apply to %s: compare times with =, !=, <, <=, >, >= (e.g. %s>=-2h)", c.Op, spec.name, spec.name)
		}
		if v0.Glob {
			return nil, b.errAt(v0.Pos, "%s takes a time, not a pattern", spec.name)
		}
		t, err := parseTime(v0.Text, b.now)
		if err != nil {
			return nil, b.errAt(v0.Pos, "invalid time %s: %v", quoteForMsg(v0.Text), err)
		}
		return &timeM{get: spec.time, op: op, t: t}, nil
	case kLevel:
		if op.ordered() {
			if levelRank(v0.Text) < 0 {
				return nil, b.errAt(v0.Pos, "invalid level %s%s: expected None, Metadata, Request or RequestResponse", quoteForMsg(v0.Text), didYouMean(v0.Text, levelOrder[:]))
			}
			return levelM{op: op, rank: levelRank(v0.Text)}, nil
		}
	}
	if op == OpEq || op == OpIn {
		if err := b.checkEnum(spec, c.Values); err != nil {
			return nil, err
		}
	}
	var t strTest
	var err error
	switch {
	case op == OpMatch:
		re, err := regexp.Compile(v0.Text)
		if err != nil {
			return nil, b.errAt(v0.Pos, "invalid regular expression %s: %v", quoteForMsg(v0.Text), unwrapRegexpError(err))
		}
		t = compileRegexp(re)
	case spec.kind == kIP || spec.kind == kPeer:
		t, err = b.ip(c.Values)
	case op == OpEq:
		t = literalOrGlob(v0)
	default:
		t = set(c.Values)
	}
	if err != nil {
		return nil, err
	}
	switch {
	case spec.str != nil:
		return &strM{get: spec.str, t: t}, nil
	case spec.strs != nil:
		return &strsM{get: spec.strs, t: t}, nil
	case spec.keyedStr != nil:
		get := spec.keyedStr
		return &strM{get: func(ev *audit.Event, _ string) string { return get(ev, key) }, t: t}, nil
	case spec.keyedStrs != nil:
		get := spec.keyedStrs
		return &strsM{get: func(ev *audit.Event) []string { return get(ev, key) }, t: t}, nil
	}
	panic("BUG: field " + spec.name + " has no accessor")
}

// checkEnum rejects exact values that a closed-set field can never hold,
// such as level=metadata, which would silently match nothing.
func (b *builder) checkEnum(spec *fieldSpec, vals []Value) error {
	var names []string
	switch spec.name {
	case "level":
		names = levelOrder[:]
	case "stage":
		names = stageNames[:]
	default:
		return nil
	}
	for _, v := range vals {
		if !v.Glob && !slices.Contains(names, v.Text) {
			return b.errAt(v.Pos, "invalid %s %s%s: expected one of %s", spec.name, quoteForMsg(v.Text), didYouMean(v.Text, names), strings.Join(names, ", "))
		}
	}
	return nil
}

func didYouMean(s string, names []string) string {
	if m := suggest(s, names); m != "" {
		return " (did you mean " + quoteForMsg(m) + "?)"
	}
	return ""
}

// unwrapRegexpError drops the regexp package's "error parsing regexp: "
// prefix, which repeats what the message says already.
func unwrapRegexpError(err error) string {
	return strings.TrimPrefix(err.Error(), "error parsing regexp: ")
}

func literalOrGlob(v Value) strTest {
	if v.Glob {
		return compileGlob(v.Text)
	}
	return exactT{v.Text}
}

func set(vals []Value) strTest {
	if len(vals) == 1 {
		return literalOrGlob(vals[0])
	}
	t := &setT{}
	for _, v := range vals {
		if v.Glob {
			t.globs = append(t.globs, compileGlob(v.Text))
		} else if !slices.Contains(t.small, v.Text) {
			t.small = append(t.small, v.Text)
		}
	}
	if len(t.small) > smallSet {
		t.big = make(map[string]struct{}, len(t.small))
		for _, s := range t.small {
			t.big[s] = struct{}{}
		}
		t.small = nil
	}
	return t
}

func (b *builder) ip(vals []Value) (strTest, error) {
	t := &ipT{}
	for _, v := range vals {
		if v.Glob {
			t.globs = append(t.globs, compileGlob(v.Text))
			continue
		}
		if v.Text == "" {
			// peer="" finds events without source IPs.
			t.globs = append(t.globs, exactT{""})
			continue
		}
		a, p, isPrefix, err := parseIPValue(v.Text)
		if err != nil {
			return nil, b.errAt(v.Pos, "invalid IP %s: %v", quoteForMsg(v.Text), err)
		}
		if isPrefix {
			t.prefixes = append(t.prefixes, p)
		} else {
			t.addrs = append(t.addrs, a)
		}
	}
	return t, nil
}

func (b *builder) code(op Op, c *Cmp) (matcher, error) {
	if op == OpMatch {
		return nil, b.errAt(c.Pos, "operator %s does not apply to code: compare it with =, !=, <, <=, >, >= or in (e.g. code>=400)", c.Op)
	}
	ns := make([]int, 0, len(c.Values))
	for _, v := range c.Values {
		n, err := parseCode(v.Text)
		if err != nil || v.Glob {
			return nil, b.errAt(v.Pos, "invalid code %s: expected an HTTP status code such as 403 (for ranges: code>=400 code<500)", quoteForMsg(v.Text))
		}
		ns = append(ns, n)
	}
	if op == OpIn {
		return codeSetM{set: ns}, nil
	}
	return codeM{op: op, n: ns[0]}, nil
}
