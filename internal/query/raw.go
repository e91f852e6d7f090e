package query

import (
	"bytes"
	"regexp/syntax"
	"slices"
	"strings"
)

// RawRejecter returns a test of an event's stored bytes (its JSON line)
// that reports true only when f cannot match the event, or nil when f
// gives it no way to tell. It looks for conjuncts of f that are regular
// expressions on a body (requestObject~, responseObject~): a body's text
// is a part of the stored bytes as they are, so a literal that every
// match of the expression holds, missing from the stored bytes, is
// missing from the body too. A store uses it to pass over events without
// decoding them.
func RawRejecter(f *Filter) func(raw []byte) bool {
	var need [][]needle // per conjunct, literals one of which must occur
	for _, c := range f.Conjuncts() {
		cmp, ok := c.(*Cmp)
		if !ok || cmp.Op != OpMatch || len(cmp.Values) != 1 {
			continue
		}
		if s := fields().byName[strings.ToLower(cmp.Field.Name)]; s == nil || s.kind != kBody {
			continue
		}
		re, err := syntax.Parse(cmp.Values[0].Text, syntax.Perl)
		if err != nil {
			continue
		}
		if lits := requiredLiterals(re.Simplify()); lits != nil {
			var ns []needle
			for _, l := range lits {
				ns = append(ns, newNeedle(l))
			}
			need = append(need, ns)
		}
	}
	if need == nil {
		return nil
	}
	return func(raw []byte) bool {
		for _, lits := range need {
			found := false
			for _, n := range lits {
				if n.in(raw) {
					found = true
					break
				}
			}
			if !found {
				return true
			}
		}
		return false
	}
}

// needle is a literal to look for in stored events, found by its rarest
// byte: bytes.Index finds a literal by its first byte, and most literals
// of body expressions start with a quote, a tenth of an event's bytes
// (looking for the pack's five privileged/host* literals in pod bodies
// took 18 times as long as this).
type needle struct {
	lit    []byte
	anchor int // the index in lit of its rarest byte
}

// byteOrder lists the bytes most common in audit events' JSON, the most
// common first (measured on the bench corpus: each is more than 0.1% of
// its bytes); any other byte is rarer than all of them.
const byteOrder = `"eatso:nircud,10-ml2.pb864/3k95f7v{}ygh RT\[]IxCwqSVAzZP=jMUD`

func newNeedle(lit string) needle {
	rank := func(c byte) int {
		if i := strings.IndexByte(byteOrder, c); i >= 0 {
			return i
		}
		return len(byteOrder)
	}
	n := needle{lit: []byte(lit)}
	for i := range len(lit) {
		if rank(lit[i]) >= rank(lit[n.anchor]) {
			n.anchor = i
		}
	}
	return n
}

// in reports whether raw holds n's literal.
func (n needle) in(raw []byte) bool {
	c, end := n.lit[n.anchor], len(raw)-(len(n.lit)-n.anchor)
	for i := n.anchor; i <= end; i++ {
		j := bytes.IndexByte(raw[i:end+1], c)
		if j < 0 {
			return false
		}
		i += j
		if bytes.Equal(raw[i-n.anchor:i-n.anchor+len(n.lit)], n.lit) {
			return true
		}
	}
	return false
}

// requiredLiterals returns strings one of which every match of re holds,
// or nil when it cannot tell (a part that may match the empty string, a
// case-insensitive literal, a character class).
func requiredLiterals(re *syntax.Regexp) []string {

	switch re.Op {
	case syntax.OpCapture, syntax.OpPlus:
		return requiredLiterals(re.Sub[0])
	case syntax.OpRepeat:
		if re.Min >= 1 {
			return requiredLiterals(re.Sub[0])
		}
	case syntax.OpConcat:
		// Any match holds a match of every part, and of every run of
		// consecutive parts that each match only a few strings (exactSet)
		// one of their concatenations: Simplify factors "hostPath":\{ out
		// of an alternation as "host" and Path":\{, which alone is in
		// every managedFields' "f:terminationMessagePath":{}. The part or
		// run with the longest shortest literal is the most telling.
		var best []string
		consider := func(r []string) {
			if r != nil && !slices.Contains(r, "") && (best == nil || shortest(r) > shortest(best)) {
				best = r
			}
		}
		run := []string{""}
		for _, s := range re.Sub {
			set, ok := exactSet(s)
			if ok {
				if p := product(run, set); p != nil {
					run = p
					continue
				}
			}
			consider(run)
			run = []string{""}
			if ok {
				run = set // the product grew too large: start again here
			} else {
				consider(requiredLiterals(s))
			}
		}
		consider(run)
		return best
	case syntax.OpAlternate:
		var out []string
		for _, s := range re.Sub {
			r := requiredLiterals(s)
			if r == nil {
				return nil
			}
			out = append(out, r...)
		}
		return out
	}
	return nil
}

// maxExact bounds the strings exactSet lists, so that an expression such
// as (a|b)(c|d)(e|f)... cannot make a rejecter look for thousands.
const maxExact = 64

// exactSet returns every string that re matches (empty-width assertions
// match ""), when they are few: literals that are not case-insensitive,
// and alternations, concatenations and optional parts of them.
func exactSet(re *syntax.Regexp) ([]string, bool) {
	switch re.Op {
	case syntax.OpLiteral:
		if re.Flags&syntax.FoldCase != 0 {
			return nil, false
		}
		return []string{string(re.Rune)}, true
	case syntax.OpEmptyMatch, syntax.OpBeginLine, syntax.OpEndLine, syntax.OpBeginText, syntax.OpEndText,
		syntax.OpWordBoundary, syntax.OpNoWordBoundary:
		return []string{""}, true
	case syntax.OpCapture:
		return exactSet(re.Sub[0])
	case syntax.OpQuest:
		set, ok := exactSet(re.Sub[0])
		if !ok || len(set) >= maxExact {
			return nil, false
		}
		return append([]string{""}, set...), true
	case syntax.OpConcat:
		run := []string{""}
		for _, s := range re.Sub {
			set, ok := exactSet(s)
			if !ok {
				return nil, false
			}
			if run = product(run, set); run == nil {
				return nil, false
			}
		}
		return run, true
	case syntax.OpAlternate:
		var out []string
		for _, s := range re.Sub {
			set, ok := exactSet(s)
			if !ok || len(out)+len(set) > maxExact {
				return nil, false
			}
			out = append(out, set...)
		}
		return out, true
	}
	return nil, false
}

// product returns every a+b of a and b, or nil when they are more than
// maxExact.
func product(as, bs []string) []string {
	if len(as)*len(bs) > maxExact {
		return nil
	}
	out := make([]string, 0, len(as)*len(bs))
	for _, a := range as {
		for _, b := range bs {
			out = append(out, a+b)
		}
	}
	return out
}

func shortest(ss []string) int {
	n := len(ss[0])
	for _, s := range ss[1:] {
		n = min(n, len(s))
	}
	return n
}
