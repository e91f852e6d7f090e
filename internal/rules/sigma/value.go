package sigma

import (
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// leafKind is the JSON type of one value a field path reached.
type leafKind uint8

const (
	// kMissing: the path reached nothing on this branch (an absent key, an
	// empty array, a scalar where an object was expected).
	kMissing leafKind = iota
	kNull
	kString
	kNumber
	kBool
	// kObject is a JSON object; arrays are never leaves (their elements are).
	kObject
)

// leaf is one value of a field. For numbers s is the number's text as the
// event wrote it (empty for the model's integers, whose text is made only
// when a string matcher asks) and n its value; for booleans s is "true" or
// "false".
type leaf struct {
	k leafKind
	s string
	n float64
	b bool
}

var missing = leaf{k: kMissing}

func stringLeaf(s string) leaf { return leaf{k: kString, s: s} }

func intLeaf(i int64) leaf { return leaf{k: kNumber, n: float64(i)} }

// present reports whether the leaf is a value other than null.
func (l leaf) present() bool { return l.k != kMissing && l.k != kNull }

// text is the leaf as a string matcher sees it: strings themselves,
// numbers and booleans as written; objects, null and missing values have
// none.
func (l leaf) text() (string, bool) {
	switch l.k {
	case kNumber:
		if l.s == "" {
			return strconv.FormatInt(int64(l.n), 10), true
		}
		return l.s, true
	case kString, kBool:
		return l.s, true
	}
	return "", false
}

// number is the leaf as a number: numbers, and strings that hold one
// ("401" in a field of strings compares equal to the rule's 401).
func (l leaf) number() (float64, bool) {
	switch l.k {
	case kNumber:
		return l.n, true
	case kString:
		f, err := strconv.ParseFloat(strings.TrimSpace(l.s), 64)
		return f, err == nil
	}
	return 0, false
}

// matcher tests one value of a field against one value of a rule.
// Implementations must be safe for concurrent use.
type matcher interface {
	match(l leaf) bool
}

// nullMatcher is the rule value null: the field is missing or null.
type nullMatcher struct{}

func (nullMatcher) match(l leaf) bool { return !l.present() }

// existsMatcher is what |exists asks of each value.
type existsMatcher struct{}

func (existsMatcher) match(l leaf) bool { return l.present() }

// numberMatcher is a number in the rule: equal as numbers.
type numberMatcher struct{ n float64 }

func (m numberMatcher) match(l leaf) bool {
	f, ok := l.number()
	return ok && f == m.n
}

// boolMatcher is true or false in the rule: a JSON boolean, or a string
// spelling it in any case.
type boolMatcher struct{ b bool }

func (m boolMatcher) match(l leaf) bool {
	switch l.k {
	case kBool:
		return l.b == m.b
	case kString:
		return strings.EqualFold(l.s, strconv.FormatBool(m.b))
	}
	return false
}

// compareMatcher is |lt, |lte, |gt, |gte: the field as a number against
// the rule's.
type compareMatcher struct {
	op string
	n  float64
}

func (m compareMatcher) match(l leaf) bool {
	f, ok := l.number()
	if !ok {
		return false
	}
	switch m.op {
	case "lt":
		return f < m.n
	case "lte":
		return f <= m.n
	case "gt":
		return f > m.n
	}
	return f >= m.n
}

// regexMatcher is |re: an RE2 expression, unanchored, case-sensitive
// unless the rule says |i or (?i).
type regexMatcher struct{ re *regexp.Regexp }

func (m regexMatcher) match(l leaf) bool {
	s, ok := l.text()
	return ok && m.re.MatchString(s)
}

// cidrMatcher is |cidr: the field is an IP address inside the prefix
// (IPv4-mapped IPv6 addresses count as IPv4).
type cidrMatcher struct{ p netip.Prefix }

func (m cidrMatcher) match(l leaf) bool {
	if l.k != kString {
		return false
	}
	a, err := netip.ParseAddr(strings.TrimSpace(l.s))
	return err == nil && m.p.Contains(a.Unmap())
}

// patElem is one element of a string pattern: a literal rune, ? (one
// rune) or * (any run of runes).
type patElem struct {
	r    rune
	kind byte // 0 literal, '?' or '*'
}

// parsePattern reads a Sigma string with its wildcards and escapes: * and
// ? are wildcards; a backslash before *, ? or a backslash makes that
// character plain; any other backslash is itself.
func parsePattern(s string) []patElem {
	var p []patElem
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == '\\' && i+1 < len(s) && (s[i+1] == '*' || s[i+1] == '?' || s[i+1] == '\\'):
			p = append(p, patElem{r: rune(s[i+1])})
			i += 2
			continue
		case r == '*' || r == '?':
			p = append(p, patElem{kind: byte(r)})
		default:
			p = append(p, patElem{r: r})
		}
		i += size
	}
	return p
}

// stringMatcher is a string value of the rule, after |contains,
// |startswith and |endswith put their wildcards around it. It matches
// strings, and numbers and booleans by their text; a pattern of stars
// only matches any value that is present, objects included (the SigmaHQ
// rules write `field: '*'` for "the field exists").
type stringMatcher struct {
	cased bool
	// anyValue: the pattern is only stars.
	anyValue bool
	// The fast forms: exactly lit, or a prefix, suffix or substring lit.
	form byte // '=', '^', '$', '~' or 'g' (general glob in pat)
	lit  string
	pat  []patElem
}

func newStringMatcher(p []patElem, cased bool) *stringMatcher {
	m := &stringMatcher{cased: cased}
	// A plain value is compared with strings.EqualFold, which folds both
	// sides itself: its lit is the value as written. Folded first, U+0130
	// (İ) became an ASCII i, outside İ's folding, and the value never
	// matched itself.
	written := p
	if !cased {
		written = slices.Clone(p)
		for i := range p {
			if p[i].kind == 0 {
				p[i].r = foldRune(p[i].r)
			}
		}
	}
	stars := 0
	for _, e := range p {
		if e.kind == '*' {
			stars++
		}
	}
	if len(p) > 0 && stars == len(p) {
		m.anyValue = true
		return m
	}
	lead := len(p) > 0 && p[0].kind == '*'
	trail := len(p) > 1 && p[len(p)-1].kind == '*'
	inner := p
	if lead {
		inner = inner[1:]
	}
	if trail {
		inner = inner[:len(inner)-1]
	}
	for _, e := range inner {
		if e.kind != 0 {
			m.form, m.pat = 'g', p
			return m
		}
	}
	switch {
	case lead && trail:
		m.form = '~'
	case lead:
		m.form = '$'
	case trail:
		m.form = '^'
	default:
		m.form = '='
		inner = written
	}
	var b strings.Builder
	for _, e := range inner {
		b.WriteRune(e.r)
	}
	m.lit = b.String()
	return m
}

// foldRune is the case-insensitive form of a rune, the one strings.ToLower
// gives.
func foldRune(r rune) rune {
	return []rune(strings.ToLower(string(r)))[0]
}

func (m *stringMatcher) match(l leaf) bool {
	if m.anyValue {
		return l.present()
	}
	s, ok := l.text()
	if !ok {
		return false
	}
	if m.form == '=' {
		if m.cased {
			return s == m.lit
		}
		return strings.EqualFold(s, m.lit)
	}
	if !m.cased {
		s = strings.ToLower(s)
	}
	switch m.form {
	case '^':
		return strings.HasPrefix(s, m.lit)
	case '$':
		return strings.HasSuffix(s, m.lit)
	case '~':
		return strings.Contains(s, m.lit)
	}
	return glob(m.pat, s)
}

// glob matches s against p, with the usual backtracking to the last star.
func glob(p []patElem, s string) bool {
	pi, si := 0, 0
	starP, starS := -1, 0
	for si < len(s) {
		r, size := utf8.DecodeRuneInString(s[si:])
		switch {
		case pi < len(p) && p[pi].kind == '*':
			starP, starS = pi, si
			pi++
			continue
		case pi < len(p) && (p[pi].kind == '?' || (p[pi].kind == 0 && p[pi].r == r)):
			pi++
			si += size
			continue
		case starP >= 0:
			_, skip := utf8.DecodeRuneInString(s[starS:])
			starS += skip
			pi, si = starP+1, starS
			continue
		}
		return false
	}
	for pi < len(p) && p[pi].kind == '*' {
		pi++
	}
	return pi == len(p)
}
