package jq

import (
	"math"
	"math/big"
	"slices"
	"strconv"
	"unicode/utf8"
)

// encoder prints gojq values the way jq 1.6 prints them with -c: no
// spaces, jq's string escapes and number format, and object keys in jq's
// order (see keyOrder).
type encoder struct {
	dec          *decoder
	constructors [][]string // the literal keys of each {...} in the program
	keys         []string   // scratch
}

func (e *encoder) encode(buf []byte, v any) []byte {
	switch v := v.(type) {
	case nil:
		return append(buf, "null"...)
	case bool:
		if v {
			return append(buf, "true"...)
		}
		return append(buf, "false"...)
	case int:
		if v >= -maxExactInt && v <= maxExactInt {
			return strconv.AppendInt(buf, int64(v), 10)
		}
		return appendNumber(buf, float64(v))
	case float64:
		return appendNumber(buf, v)
	case *big.Int:
		f, _ := new(big.Float).SetInt(v).Float64()
		return appendNumber(buf, f)
	case string:
		return appendString(buf, v)
	case []any:
		buf = append(buf, '[')
		for i, x := range v {
			if i > 0 {
				buf = append(buf, ',')
			}
			buf = e.encode(buf, x)
		}
		return append(buf, ']')
	case map[string]any:
		buf = append(buf, '{')
		for i, k := range e.keyOrder(v) {
			if i > 0 {
				buf = append(buf, ',')
			}
			buf = appendString(buf, k)
			buf = append(buf, ':')
			buf = e.encode(buf, v[k])
		}
		return append(buf, '}')
	default:
		// gojq produces no other types; print what its own encoder would
		// rather than nothing.
		return appendString(buf, "<unknown value>")
	}
}

// keyOrder returns the keys of m in the order jq would print them. jq keeps
// keys in insertion order: an object of the event in the event's order, an
// object built with {...} in the order written, a key added to a copy at
// the end. gojq keeps no order, so it is recovered:
//
//  1. an object of the event, unchanged (the same map): the event's order;
//  2. a {...} whose literal keys are exactly m's: the order written;
//  3. otherwise the source sharing the most keys with m (an event object
//     or a {...}) orders those keys, the next source the keys left, and
//     keys no source names come last, sorted.
//
// Rule 3 is right for copies of event objects with keys set, added or
// deleted (.a = 1, . + {b: 2}, del(.c)); objects merged from several
// sources with + may differ from jq (see docs/query.md).
func (e *encoder) keyOrder(m map[string]any) []string {
	if len(m) == 0 {
		return nil
	}
	if e.dec != nil {
		if ks, ok := e.dec.order[mapKey(m)]; ok && len(ks) == len(m) {
			return ks
		}
	}
	if len(m) == 1 {
		for k := range m {
			return []string{k}
		}
	}
	for _, c := range e.constructors {
		if sameKeys(c, m) {
			return c
		}
	}
	var sources [][]string
	if e.dec != nil {
		sources = e.dec.objects
	}
	out := make([]string, 0, len(m))
	used := make(map[string]bool, len(m))
	for len(out) < len(m) {
		best, bestN := []string(nil), 0
		consider := func(ks []string) {
			n := 0
			for _, k := range ks {
				if _, ok := m[k]; ok && !used[k] {
					n++
				}
			}
			if n > bestN {
				best, bestN = ks, n
			}
		}
		for _, ks := range sources {
			consider(ks)
		}
		for _, ks := range e.constructors {
			consider(ks)
		}
		if best == nil {
			break
		}
		for _, k := range best {
			if _, ok := m[k]; ok && !used[k] {
				used[k] = true
				out = append(out, k)
			}
		}
	}
	if len(out) < len(m) {
		rest := make([]string, 0, len(m)-len(out))
		for k := range m {
			if !used[k] {
				rest = append(rest, k)
			}
		}
		slices.Sort(rest)
		out = append(out, rest...)
	}
	return out
}

func sameKeys(ks []string, m map[string]any) bool {
	if len(ks) != len(m) {
		return false
	}
	for _, k := range ks {
		if _, ok := m[k]; !ok {
			return false
		}
	}
	return true
}

// appendNumber prints a double as jq 1.6 does: the shortest digits that
// read back to the same double, in plain notation unless the decimal
// exponent is below -4 or more than 15 places past the digits (1e-05,
// 1e+17, 2.5e+17, but 15000000000000000), with at least two exponent
// digits. Infinities print as the largest double, NaN as null.
func appendNumber(buf []byte, f float64) []byte {
	switch {
	case math.IsNaN(f):
		return append(buf, "null"...)
	case math.IsInf(f, 1):
		f = math.MaxFloat64
	case math.IsInf(f, -1):
		f = -math.MaxFloat64
	}
	var tmp [32]byte
	s := strconv.AppendFloat(tmp[:0], f, 'e', -1, 64) // -d.ddde±XX
	neg := false
	if s[0] == '-' {
		neg = true
		s = s[1:]
	}
	epos := 0
	for epos < len(s) && s[epos] != 'e' {
		epos++
	}
	var digits [24]byte
	nd := 0
	for _, c := range s[:epos] {
		if c != '.' {
			digits[nd] = c
			nd++
		}
	}
	exp, _ := strconv.Atoi(string(s[epos+1:]))
	// Trailing zeros are not part of the shortest digits (0 keeps one).
	for nd > 1 && digits[nd-1] == '0' {
		nd--
	}
	decpt := exp + 1
	if neg {
		buf = append(buf, '-')
	}
	d := digits[:nd]
	if decpt <= -4 || decpt > nd+15 {
		buf = append(buf, d[0])
		if nd > 1 {
			buf = append(buf, '.')
			buf = append(buf, d[1:]...)
		}
		buf = append(buf, 'e')
		e := decpt - 1
		if e < 0 {
			buf = append(buf, '-')
			e = -e
		} else {
			buf = append(buf, '+')
		}
		if e < 10 {
			buf = append(buf, '0')
		}
		return strconv.AppendInt(buf, int64(e), 10)
	}
	switch {
	case decpt <= 0:
		buf = append(buf, '0', '.')
		for range -decpt {
			buf = append(buf, '0')
		}
		buf = append(buf, d...)
	case decpt >= nd:
		buf = append(buf, d...)
		for range decpt - nd {
			buf = append(buf, '0')
		}
	default:
		buf = append(buf, d[:decpt]...)
		buf = append(buf, '.')
		buf = append(buf, d[decpt:]...)
	}
	return buf
}

const hexDigits = "0123456789abcdef"

// appendString quotes s as jq 1.6 does: \" \\ \b \f \n \r \t, other control
// characters and DEL as \u00XX, everything else (U+2028 included) as UTF-8.
// Strings reaching here are valid UTF-8 except those gojq built from bytes;
// invalid bytes print as U+FFFD.
func appendString(buf []byte, s string) []byte {
	buf = append(buf, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c != 0x7f {
			if c < utf8.RuneSelf {
				i++
				continue
			}
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && size == 1 {
				buf = append(buf, s[start:i]...)
				buf = append(buf, "\uFFFD"...)
				i++
				start = i
				continue
			}
			i += size
			continue
		}
		buf = append(buf, s[start:i]...)
		switch c {
		case '"':
			buf = append(buf, '\\', '"')
		case '\\':
			buf = append(buf, '\\', '\\')
		case '\b':
			buf = append(buf, '\\', 'b')
		case '\f':
			buf = append(buf, '\\', 'f')
		case '\n':
			buf = append(buf, '\\', 'n')
		case '\r':
			buf = append(buf, '\\', 'r')
		case '\t':
			buf = append(buf, '\\', 't')
		default:
			buf = append(buf, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		i++
		start = i
	}
	buf = append(buf, s[start:]...)
	return append(buf, '"')
}
