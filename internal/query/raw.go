package query

import (
	"bytes"
	"regexp/syntax"
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
	var need [][][]byte // per conjunct, literals one of which must occur
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
			var bs [][]byte
			for _, l := range lits {
				bs = append(bs, []byte(l))
			}
			need = append(need, bs)
		}
	}
	if need == nil {
		return nil
	}
	return func(raw []byte) bool {
		for _, lits := range need {
			found := false
			for _, l := range lits {
				if bytes.Contains(raw, l) {
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

// requiredLiterals returns strings one of which every match of re holds,
// or nil when it cannot tell (a part that may match the empty string, a
// case-insensitive literal, a character class).
func requiredLiterals(re *syntax.Regexp) []string {
	switch re.Op {
	case syntax.OpLiteral:
		if re.Flags&syntax.FoldCase != 0 || len(re.Rune) == 0 {
			return nil
		}
		return []string{string(re.Rune)}
	case syntax.OpCapture, syntax.OpPlus:
		return requiredLiterals(re.Sub[0])
	case syntax.OpRepeat:
		if re.Min >= 1 {
			return requiredLiterals(re.Sub[0])
		}
	case syntax.OpConcat:
		// Any match holds a match of every part: the part with the
		// longest shortest literal is the most telling.
		var best []string
		for _, s := range re.Sub {
			if r := requiredLiterals(s); r != nil && (best == nil || shortest(r) > shortest(best)) {
				best = r
			}
		}
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

func shortest(ss []string) int {
	n := len(ss[0])
	for _, s := range ss[1:] {
		n = min(n, len(s))
	}
	return n
}
