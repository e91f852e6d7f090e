package jq

import (
	"bytes"
	"encoding/binary"
	"strconv"
	"strings"

	"github.com/itchyny/gojq"
)

// This file is the fast path for the commonest --jq program: select(C),
// or a chain of them, printing the event itself. When every condition is
// of a form evaluated here (== with a string or number, code comparisons,
// IN, any(.list[]?; . == "x"), and, or), one pass over the event's text
// both prints it in jq's format and picks out the values the conditions
// need, with jq's semantics: exact key names, jq's ordering of null,
// numbers and strings. Anything this pass is not sure of (a repeated key,
// an escaped key, a value of an unexpected type) sends the event to gojq,
// which decides as always; so the fast path changes only the speed.

// fval is a value picked from the event for a condition.
type fval struct {
	// 0: absent or null, 's' string, 'n' number, 'a' array of strings,
	// 'o' object, 'x' anything else, 'e' jq would fail to reach it
	kind byte
	s    string
	n    float64
	arr  []string
}

// fcond is a condition evaluated on the picked values: ok false means
// "not sure", and the event goes to gojq.
type fcond func(vals []fval) (truth, ok bool)

type fastProg struct {
	paths [][]string // values to pick: paths of object keys from the event
	cond  fcond
}

// compileFast returns the fast form of q, or nil when q is not a chain of
// select(...) with conditions it understands.
func compileFast(q *gojq.Query) *fastProg {
	var selects []*gojq.Query
	var flatten func(q *gojq.Query) bool
	flatten = func(q *gojq.Query) bool {
		switch {
		case q == nil:
			return false
		case q.Op == gojq.OpPipe:
			return flatten(q.Left) && flatten(q.Right)
		case isIdentity(q):
			return true
		case isSelect(q):
			selects = append(selects, q.Term.Func.Args[0])
			return true
		}
		return false
	}
	if len(q.FuncDefs) > 0 || len(q.Imports) > 0 || !flatten(q) || len(selects) == 0 {
		return nil
	}
	fp := &fastProg{}
	var conds []fcond
	for _, c := range selects {
		fc := fp.condOf(c)
		if fc == nil {
			return nil
		}
		conds = append(conds, fc)
	}
	fp.cond = func(vals []fval) (bool, bool) {
		for _, c := range conds {
			t, ok := c(vals)
			if !ok || !t {
				return false, ok
			}
		}
		return true, true
	}
	return fp
}

// slot returns the index of path among the values to pick.
func (fp *fastProg) slot(path []string) int {
	for i, p := range fp.paths {
		if slicesEqual(p, path) {
			return i
		}
	}
	fp.paths = append(fp.paths, path)
	return len(fp.paths) - 1
}

func slicesEqual(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// plainPath is an event path without iteration or optional marks.
func plainPath(q *gojq.Query) ([]string, bool) {
	if q == nil || q.Op != 0 || q.Term == nil {
		return nil, false
	}
	if q.Term.Type == gojq.TermTypeQuery && len(q.Term.SuffixList) == 0 {
		return plainPath(q.Term.Query)
	}
	if q.Term.Type != gojq.TermTypeIndex {
		return nil, false
	}
	for _, s := range q.Term.SuffixList {
		if s.Index == nil {
			return nil, false
		}
	}
	p, ok := eventPath(q)
	if !ok {
		return nil, false
	}
	for _, k := range p {
		if strings.ContainsAny(k, "\\\"") {
			return nil, false
		}
	}
	return p, true
}

func (fp *fastProg) condOf(c *gojq.Query) fcond {
	if c == nil {
		return nil
	}
	switch c.Op {
	case gojq.OpAnd, gojq.OpOr:
		l, r := fp.condOf(c.Left), fp.condOf(c.Right)
		if l == nil || r == nil {
			return nil
		}
		isAnd := c.Op == gojq.OpAnd
		return func(vals []fval) (bool, bool) {
			a, ok := l(vals)
			if !ok {
				return false, false
			}
			if a != isAnd { // false and _, true or _: decided
				return a, true
			}
			return r(vals)
		}
	case gojq.OpEq, gojq.OpGt, gojq.OpGe, gojq.OpLt, gojq.OpLe:
		p, lit := c.Left, c.Right
		op := c.Op
		if _, ok := plainPath(p); !ok {
			p, lit = c.Right, c.Left
			op = map[gojq.Operator]gojq.Operator{gojq.OpEq: gojq.OpEq, gojq.OpGt: gojq.OpLt, gojq.OpGe: gojq.OpLe, gojq.OpLt: gojq.OpGt, gojq.OpLe: gojq.OpGe}[op]
		}
		path, ok := plainPath(p)
		if !ok {
			return nil
		}
		s, isStr, isInt := literal(lit)
		i := fp.slot(path)
		switch {
		case isStr && op == gojq.OpEq:
			return func(vals []fval) (bool, bool) {
				v := vals[i]
				if v.kind == 'x' || v.kind == 'a' || v.kind == 'o' {
					return false, true // an array or object never equals a string
				}
				return v.kind == 's' && v.s == s, true
			}
		case isInt:
			n, _ := strconv.ParseFloat(s, 64)
			return func(vals []fval) (bool, bool) {
				v := vals[i]
				var c int // v compared with n, in jq's order null < numbers < strings
				switch v.kind {
				case 0:
					c = -1
				case 'n':
					switch {
					case v.n < n:
						c = -1
					case v.n > n:
						c = 1
					}
				case 's':
					c = 1
				default:
					return false, false
				}
				switch op {
				case gojq.OpEq:
					return c == 0 && v.kind == 'n', true
				case gojq.OpGt:
					return c > 0, true
				case gojq.OpGe:
					return c >= 0, true
				case gojq.OpLt:
					return c < 0, true
				default:
					return c <= 0, true
				}
			}
		}
		return nil
	case gojq.OpPipe: // PATH | IN("a", "b")
		path, ok := plainPath(c.Left)
		fn := c.Right
		if !ok || fn == nil || fn.Op != 0 || fn.Term == nil || fn.Term.Type != gojq.TermTypeFunc ||
			fn.Term.Func.Name != "IN" || len(fn.Term.Func.Args) != 1 || len(fn.Term.SuffixList) > 0 {
			return nil
		}
		var lits []string
		for _, alt := range commaList(fn.Term.Func.Args[0]) {
			s, isStr, _ := literal(alt)
			if !isStr {
				return nil
			}
			lits = append(lits, s)
		}
		i := fp.slot(path)
		return func(vals []fval) (bool, bool) {
			v := vals[i]
			if v.kind != 's' {
				return false, true // IN compares with ==: no other type equals a string
			}
			for _, l := range lits {
				if v.s == l {
					return true, true
				}
			}
			return false, true
		}
	case 0:
		t := c.Term
		if t == nil || len(t.SuffixList) > 0 {
			return nil
		}
		if t.Type == gojq.TermTypeQuery {
			return fp.condOf(t.Query)
		}
		// any(.list[]?; . == "x")
		gen, lit, ok := anyEquals(t)
		if !ok || gen.Op != 0 || gen.Term == nil || gen.Term.Type != gojq.TermTypeIndex {
			return nil
		}
		sl := gen.Term.SuffixList
		optional := len(sl) >= 2 && sl[len(sl)-1].Optional && sl[len(sl)-2].Iter
		if !optional && !(len(sl) >= 1 && sl[len(sl)-1].Iter) {
			return nil
		}
		base := *gen.Term
		base.SuffixList = sl[:len(sl)-1]
		if optional {
			base.SuffixList = sl[:len(sl)-2]
		}
		path, ok := plainPath(&gojq.Query{Term: &base})
		if !ok {
			return nil
		}
		s, isStr, _ := literal(lit)
		if !isStr {
			return nil
		}
		i := fp.slot(path)
		return func(vals []fval) (bool, bool) {
			v := vals[i]
			switch {
			case v.kind == 'a':
				for _, e := range v.arr {
					if e == s {
						return true, true
					}
				}
				return false, true
			case v.kind == 0 && optional:
				return false, true // null | .[]? yields nothing
			}
			return false, false // jq would iterate an object or fail
		}
	}
	return nil
}

// plainRun returns the index of the first byte at or after i that is a
// quote, a backslash, a control character or not ASCII (DEL included):
// what jq prints as it is ends there. It tests eight bytes at a time.
func plainRun(data []byte, i int) int {
	for ; i+8 <= len(data); i += 8 {
		if !plainASCII8(binary.LittleEndian.Uint64(data[i:])) {
			break
		}
	}
	for ; i < len(data); i++ {
		if b := data[i]; b == '"' || b == '\\' || b < 0x20 || b >= 0x7f {
			return i
		}
	}
	return i
}

// plainASCII8 reports whether none of the eight bytes of w is a quote, a
// backslash, below 0x20 or at or above 0x7f.
func plainASCII8(w uint64) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	// The classic tests, each exact about whether some byte qualifies:
	// a zero byte (of w XOR the byte looked for), a byte below 0x20, and,
	// with no byte at or above 0x80, a byte 0x7f (adding 1 sets its high
	// bit, and no byte carries into the next).
	hasZero := func(v uint64) uint64 { return (v - ones) & ^v & highs }
	ctl := (w - ones*0x20) & ^w & highs
	del := (w + ones) & highs
	return (hasZero(w^(ones*'"')) | hasZero(w^(ones*'\\')) | ctl | del | w&highs) == 0
}

// frame is one open object or array while scanning.
type frame struct {
	array bool
	key   string // the key this container sits under ("[]" in an array, "" at the top)
	keys  int    // where this object's keys start in the decoder's key list
}

// scan prints the event in jq's format into buf and picks the values of
// fp.paths into vals. ok is false when the text holds something the fast
// path leaves to gojq: a repeated or escaped key.
func (d *decoder) scan(fp *fastProg, buf, data []byte, vals []fval) (_ []byte, ok bool) {
	for i := range vals {
		vals[i] = fval{arr: vals[i].arr[:0]}
	}
	frames := d.frames[:0]
	keys := d.keys[:0] // the keys of the open objects, to find repeats
	defer func() { d.frames, d.keys = frames[:0], keys[:0] }()
	var key []byte // the key of the value about to be read, in an object
	pick := -1     // the slot an array of strings is being picked into
	// slot returns the slot the value about to be read goes to, or -1.
	slot := func() int {
		if key == nil || len(frames) == 0 || frames[len(frames)-1].array {
			return -1
		}
	next:
		for i, p := range fp.paths {
			if len(p) != len(frames) || p[len(p)-1] != string(key) {
				continue
			}
			for j := 1; j < len(frames); j++ {
				if frames[j].key != p[j-1] {
					continue next
				}
			}
			return i
		}
		return -1
	}
	// below marks the slots under the value about to be read when that
	// value is not an object: jq fails to index a string, number, boolean
	// or array by name ('e': the fast path is not sure, gojq decides).
	below := func() {
		if key == nil || len(frames) == 0 || frames[len(frames)-1].array {
			return
		}
	next:
		for i, p := range fp.paths {
			if len(p) <= len(frames) || p[len(frames)-1] != string(key) {
				continue
			}
			for j := 1; j < len(frames); j++ {
				if frames[j].key != p[j-1] {
					continue next
				}
			}
			vals[i] = fval{kind: 'e'}
		}
	}
	set := func(v fval) {
		if i := slot(); i >= 0 {
			vals[i] = v
		}
		if v.kind != 0 && v.kind != 'o' {
			below()
		}
	}
	inArray := func() bool { return len(frames) > 0 && frames[len(frames)-1].array }
	open := func(array bool) {
		k := ""
		switch {
		case key != nil:
			k = string(key)
		case inArray():
			k = "[]"
		}
		frames = append(frames, frame{array: array, key: k, keys: len(keys)})
		key = nil
	}
	expectKey := false
	for i := 0; i < len(data); {
		c := data[i]
		switch c {
		case ' ', '\t', '\n', '\r':
			i++
			continue
		case '{':
			if pick >= 0 && inArray() {
				vals[pick], pick = fval{kind: 'x'}, -1
			}
			set(fval{kind: 'o'})
			open(false)
			expectKey = true
		case '[':
			if pick >= 0 && inArray() {
				vals[pick], pick = fval{kind: 'x'}, -1
			}
			if s := slot(); s >= 0 {
				vals[s] = fval{kind: 'a', arr: vals[s].arr[:0]}
				pick = s
			}
			below()
			open(true)
		case '}', ']':
			keys = keys[:frames[len(frames)-1].keys]
			frames = frames[:len(frames)-1]
			if c == ']' {
				pick = -1
			}
			expectKey = false
		case ',':
			expectKey = len(frames) > 0 && !frames[len(frames)-1].array
		case ':':
			expectKey = false
		case '"':
			j := plainRun(data, i+1)
			plain := j < len(data) && data[j] == '"'
			if expectKey {
				var k []byte
				if plain {
					k = data[i+1 : j]
					buf = append(buf, data[i:j+1]...)
					i = j + 1
				} else {
					// An escaped key (managedFields' k:{\"name\":...}):
					// compared and picked by what it spells, printed
					// as jq prints it.
					d.data, d.pos = data, i
					ks, err := d.str()
					if err != nil {
						return buf, false
					}
					k = []byte(ks)
					buf = appendString(buf, ks)
					i = d.pos
				}
				for _, seen := range keys[frames[len(frames)-1].keys:] {
					if bytes.Equal(seen, k) {
						return buf, false // a repeated key: gojq keeps the last
					}
				}
				keys = append(keys, k)
				key = k
				continue
			}
			var s string
			want := pick >= 0 && inArray() || slot() >= 0 // a value a condition reads
			if plain && j < len(data) {
				buf = append(buf, data[i:j+1]...)
				if want {
					s = string(data[i+1 : j])
				}
				i = j + 1
			} else {
				d.data, d.pos = data, i
				var err error
				if s, err = d.str(); err != nil {
					return buf, false
				}
				buf = appendString(buf, s)
				i = d.pos
			}
			if pick >= 0 && inArray() {
				vals[pick].arr = append(vals[pick].arr, s)
			} else {
				set(fval{kind: 's', s: s})
			}
			key = nil
			continue
		default:
			if c == '-' || (c >= '0' && c <= '9') {
				d.data, d.pos = data, i
				v, err := d.number()
				if err != nil {
					return buf, false
				}
				var n float64
				switch v := v.(type) {
				case int:
					n = float64(v)
					buf = strconv.AppendInt(buf, int64(v), 10)
				case float64:
					n = v
					buf = appendNumber(buf, v)
				}
				if pick >= 0 && inArray() {
					vals[pick], pick = fval{kind: 'x'}, -1
				} else {
					set(fval{kind: 'n', n: n})
				}
				key = nil
				i = d.pos
				continue
			}
			// true, false or null
			j := i
			for j < len(data) && data[j] >= 'a' && data[j] <= 'z' {
				j++
			}
			kind := byte('x')
			if string(data[i:j]) == "null" {
				kind = 0
			}
			if pick >= 0 && inArray() {
				vals[pick], pick = fval{kind: 'x'}, -1
			} else {
				set(fval{kind: kind})
			}
			key = nil
			buf = append(buf, data[i:j]...)
			i = j
			continue
		}
		buf = append(buf, c)
		i++
	}
	return buf, true
}
