package jq

import (
	"bytes"
	"errors"
	"math"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"
)

// decoder turns one stored event into the values gojq works on (nil, bool,
// int, float64, string, []any, map[string]any) and remembers, for every
// object it made, the order its keys had in the text. gojq never modifies a
// map it did not allocate itself, so an output map found in that table is
// an object of the event, unchanged, and is printed in the event's order,
// as jq prints it.
type decoder struct {
	data  []byte
	pos   int
	order map[unsafe.Pointer][]string
	// objects lists the key orders of every object, in text order, for the
	// outputs gojq built by copying one (.a = 1 copies the event).
	objects [][]string
	frames  []frame  // scratch for scan
	keys    [][]byte // scratch for scan
}

var errSyntax = errors.New("invalid JSON")

func mapKey(m map[string]any) unsafe.Pointer { return *(*unsafe.Pointer)(unsafe.Pointer(&m)) }

func (d *decoder) reset(data []byte) {
	d.data, d.pos = data, 0
	clear(d.order)
	if d.order == nil {
		d.order = make(map[unsafe.Pointer][]string)
	}
	d.objects = d.objects[:0]
}

// decode parses data, which must hold exactly one JSON value. The strings
// of the result share one copy of data (no allocation per string).
func (d *decoder) decode(data []byte) (any, error) {
	d.reset(bytes.Clone(data))
	v, err := d.value()
	if err != nil {
		return nil, err
	}
	d.space()
	if d.pos != len(d.data) {
		return nil, d.errorf()
	}
	return v, nil
}

func (d *decoder) errorf() error {
	return errors.New("invalid JSON at byte " + strconv.Itoa(d.pos))
}

func (d *decoder) space() {
	for d.pos < len(d.data) {
		switch d.data[d.pos] {
		case ' ', '\t', '\n', '\r':
			d.pos++
		default:
			return
		}
	}
}

func (d *decoder) value() (any, error) {
	d.space()
	if d.pos >= len(d.data) {
		return nil, d.errorf()
	}
	switch c := d.data[d.pos]; c {
	case '{':
		return d.object()
	case '[':
		return d.array()
	case '"':
		return d.str()
	case 't':
		return true, d.literal("true")
	case 'f':
		return false, d.literal("false")
	case 'n':
		return nil, d.literal("null")
	default:
		if c == '-' || (c >= '0' && c <= '9') {
			return d.number()
		}
		return nil, d.errorf()
	}
}

func (d *decoder) literal(word string) error {
	if len(d.data)-d.pos < len(word) || string(d.data[d.pos:d.pos+len(word)]) != word {
		return d.errorf()
	}
	d.pos += len(word)
	return nil
}

func (d *decoder) object() (any, error) {
	d.pos++ // {
	m := make(map[string]any)
	var keys []string
	d.space()
	if d.pos < len(d.data) && d.data[d.pos] == '}' {
		d.pos++
		d.order[mapKey(m)] = keys
		return m, nil
	}
	for {
		d.space()
		if d.pos >= len(d.data) || d.data[d.pos] != '"' {
			return nil, d.errorf()
		}
		k, err := d.str()
		if err != nil {
			return nil, err
		}
		d.space()
		if d.pos >= len(d.data) || d.data[d.pos] != ':' {
			return nil, d.errorf()
		}
		d.pos++
		v, err := d.value()
		if err != nil {
			return nil, err
		}
		// A repeated key keeps its first place and takes the last value,
		// as in jq.
		if _, dup := m[k]; !dup {
			keys = append(keys, k)
		}
		m[k] = v
		d.space()
		if d.pos >= len(d.data) {
			return nil, d.errorf()
		}
		switch d.data[d.pos] {
		case ',':
			d.pos++
		case '}':
			d.pos++
			d.order[mapKey(m)] = keys
			d.objects = append(d.objects, keys)
			return m, nil
		default:
			return nil, d.errorf()
		}
	}
}

func (d *decoder) array() (any, error) {
	d.pos++ // [
	a := []any{}
	d.space()
	if d.pos < len(d.data) && d.data[d.pos] == ']' {
		d.pos++
		return a, nil
	}
	for {
		v, err := d.value()
		if err != nil {
			return nil, err
		}
		a = append(a, v)
		d.space()
		if d.pos >= len(d.data) {
			return nil, d.errorf()
		}
		switch d.data[d.pos] {
		case ',':
			d.pos++
		case ']':
			d.pos++
			return a, nil
		default:
			return nil, d.errorf()
		}
	}
}

// str parses a string at d.pos. Invalid UTF-8 becomes U+FFFD byte by byte,
// as jq reads it.
func (d *decoder) str() (string, error) {
	d.pos++ // "
	start := d.pos
	// The common case: no escapes, plain ASCII or valid UTF-8.
	for d.pos < len(d.data) {
		c := d.data[d.pos]
		if c == '"' {
			s := d.data[start:d.pos]
			d.pos++
			if len(s) == 0 {
				return "", nil
			}
			return unsafe.String(&s[0], len(s)), nil // d.data is ours, never written
		}
		if c == '\\' || c < 0x20 || c >= utf8.RuneSelf {
			break
		}
		d.pos++
	}
	buf := make([]byte, 0, d.pos-start+16)
	buf = append(buf, d.data[start:d.pos]...)
	for d.pos < len(d.data) {
		c := d.data[d.pos]
		switch {
		case c == '"':
			d.pos++
			return string(buf), nil
		case c == '\\':
			if d.pos+1 >= len(d.data) {
				return "", d.errorf()
			}
			e := d.data[d.pos+1]
			d.pos += 2
			switch e {
			case '"', '\\', '/':
				buf = append(buf, e)
			case 'b':
				buf = append(buf, '\b')
			case 'f':
				buf = append(buf, '\f')
			case 'n':
				buf = append(buf, '\n')
			case 'r':
				buf = append(buf, '\r')
			case 't':
				buf = append(buf, '\t')
			case 'u':
				r, ok := d.hex4()
				if !ok {
					return "", d.errorf()
				}
				if utf16.IsSurrogate(r) {
					r2 := utf8.RuneError
					if d.pos+1 < len(d.data) && d.data[d.pos] == '\\' && d.data[d.pos+1] == 'u' {
						save := d.pos
						d.pos += 2
						if lo, ok := d.hex4(); ok {
							if dec := utf16.DecodeRune(r, lo); dec != utf8.RuneError {
								r2 = dec
							} else {
								d.pos = save
							}
						} else {
							d.pos = save
						}
					}
					r = r2
				}
				buf = utf8.AppendRune(buf, r)
			default:
				return "", d.errorf()
			}
		case c < 0x20:
			return "", d.errorf()
		case c < utf8.RuneSelf:
			buf = append(buf, c)
			d.pos++
		default:
			r, size := utf8.DecodeRune(d.data[d.pos:])
			if r == utf8.RuneError && size <= 1 {
				buf = append(buf, "\uFFFD"...)
				d.pos++
				continue
			}
			buf = append(buf, d.data[d.pos:d.pos+size]...)
			d.pos += size
		}
	}
	return "", d.errorf()
}

func (d *decoder) hex4() (rune, bool) {
	if len(d.data)-d.pos < 4 {
		return 0, false
	}
	var r rune
	for _, c := range d.data[d.pos : d.pos+4] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	d.pos += 4
	return r, true
}

// maxExactInt is the largest integer a float64 holds exactly. jq 1.6 keeps
// every number as a double; integers up to this size stay ints for gojq
// (exact either way), larger ones become the double jq would hold.
const maxExactInt = 1 << 53

func (d *decoder) number() (any, error) {
	start := d.pos
	integer := true
	if d.data[d.pos] == '-' {
		d.pos++
	}
	for d.pos < len(d.data) {
		c := d.data[d.pos]
		if c >= '0' && c <= '9' {
			d.pos++
			continue
		}
		if c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-' {
			integer = false
			d.pos++
			continue
		}
		break
	}
	text := unsafe.String(&d.data[start], d.pos-start)
	if integer && d.pos-start <= 16 {
		if n, err := strconv.ParseInt(text, 10, 64); err == nil && n >= -maxExactInt && n <= maxExactInt {
			if n == 0 && text[0] == '-' {
				return math.Copysign(0, -1), nil // jq prints -0
			}
			return int(n), nil
		}
	}
	f, err := strconv.ParseFloat(text, 64)
	if err != nil {
		var ne *strconv.NumError
		if errors.As(err, &ne) && ne.Err == strconv.ErrRange {
			// jq reads a number too large for a double as the largest
			// double (and a too small one as 0).
			if math.IsInf(f, 0) {
				return math.Copysign(math.MaxFloat64, f), nil
			}
			return f, nil
		}
		return nil, errSyntax
	}
	return f, nil
}
