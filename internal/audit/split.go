package audit

import (
	"bytes"
	"encoding/json"
)

// A list's items are found by tracking only strings and brackets, without
// checking anything else, so that a malformed item (a raw control byte, a
// missing comma or colon, a bad literal inside it) costs only itself: the
// decoder reports that item and keeps the others. The API server drops a
// batch answered 400, so refusing the whole body for one item would lose
// every good event in it. Only when the boundaries cannot be found (a
// string or a bracket never closed) is the whole body refused, by the
// strict decoder's error.
//
// The scanners do not recurse and do not allocate: a body of 20 MiB of '['
// costs one pass, not a stack of 20 million frames.

// scanString returns the index just past the string whose opening quote is
// at b[i], or ok false when it never closes.
func scanString(b []byte, i int) (end int, ok bool) {
	for j := i + 1; ; {
		k := bytes.IndexByte(b[j:], '"')
		if k < 0 {
			return 0, false
		}
		q := j + k
		// The quote is escaped when an odd number of backslashes is
		// before it; the run stops at the opening quote at the latest.
		n := 0
		for q-1-n > i && b[q-1-n] == '\\' {
			n++
		}
		if n%2 == 0 {
			return q + 1, true
		}
		j = q + 1
	}
}

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// scanElem returns the end of the element of an array or object that starts
// at b[i]: the index of the first ',' or of the closing '}' or ']' at the
// element's own level, outside strings. A closing bracket that closes
// nothing inside the element ends it, so a stray one costs only its
// element. ok is false when the input ends first.
func scanElem(b []byte, i int) (end int, ok bool) {
	depth := 0
	for j := i; j < len(b); j++ {
		switch b[j] {
		case '"':
			e, ok := scanString(b, j)
			if !ok {
				return 0, false
			}
			j = e - 1
		case '{', '[':
			depth++
		case '}', ']':
			if depth == 0 {
				return j, true
			}
			depth--
		case ',':
			if depth == 0 {
				return j, true
			}
		}
	}
	return 0, false
}

// scanClose returns the index just past the bracket that closes the one at
// b[i], or ok false when none does.
func scanClose(b []byte, i int) (end int, ok bool) {
	depth := 0
	for j := i; j < len(b); j++ {
		switch b[j] {
		case '"':
			e, ok := scanString(b, j)
			if !ok {
				return 0, false
			}
			j = e - 1
		case '{', '[':
			depth++
		case '}', ']':
			depth--
			if depth == 0 {
				return j + 1, true
			}
		}
	}
	return 0, false
}

// scanArray walks the array whose '[' is at b[i], calling each (when not
// nil) with every element's bytes, whitespace trimmed. It returns the index
// just past the closing ']'; ok is false when the array's boundaries cannot
// be found. An empty element (as in "[a,,b]") is passed as an empty slice.
func scanArray(b []byte, i int, each func(elem []byte)) (end int, ok bool) {
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == ']' {
		return i + 1, true
	}
	for {
		e, ok := scanElem(b, i)
		if !ok {
			return 0, false
		}
		if b[e] == '}' {
			// Inside an array, '}' at the element's level closes nothing:
			// the element is malformed. Scan on to its real end.
			e2, ok := scanElem(b, e+1)
			for ok && b[e2] == '}' {
				e2, ok = scanElem(b, e2+1)
			}
			if !ok {
				return 0, false
			}
			e = e2
		}
		if each != nil {
			each(trimWS(b[i:e]))
		}
		if b[e] == ']' {
			return e + 1, true
		}
		i = skipWS(b, e+1)
	}
}

func trimWS(b []byte) []byte {
	b = b[skipWS(b, 0):]
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t' || b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

// unquote returns the value of the JSON string q, quotes included, as
// json.Unmarshal gives it. A string of printable ASCII without escapes,
// as every plain event's kind is, is its bytes: Unmarshal's reflection
// for the kind of every line was a twelfth of decoding at import.
func unquote(q []byte) (string, bool) {
	if len(q) >= 2 && q[0] == '"' && q[len(q)-1] == '"' && plainASCII(q[1:len(q)-1]) {
		return string(q[1 : len(q)-1]), true
	}
	var s string
	if json.Unmarshal(q, &s) != nil {
		return "", false
	}
	return s, true
}

// plainASCII says whether b is printable ASCII without a quote or a
// backslash: inside quotes, a JSON string that means its bytes.
func plainASCII(b []byte) bool {
	for _, c := range b {
		if c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// eventListItems reports whether raw is one EventList, holding only the
// members kind, apiVersion, metadata and items, whose boundaries are all
// found; each, when not nil, is called with every item. It gives up (ok
// false) on any other shape, leaving that to the general decoder: a plain
// event is given up on at its first member.
func eventListItems(raw []byte, each func(item []byte)) (apiVersion string, ok bool) {
	i := skipWS(raw, 0)
	if i >= len(raw) || raw[i] != '{' {
		return "", false
	}
	sawItems := false
	i = skipWS(raw, i+1)
	if i < len(raw) && raw[i] == '}' {
		return "", false
	}
	for {
		if i >= len(raw) || raw[i] != '"' {
			return "", false
		}
		ke, ok := scanString(raw, i)
		if !ok {
			return "", false
		}
		key := string(raw[i+1 : ke-1])
		i = skipWS(raw, ke)
		if i >= len(raw) || raw[i] != ':' {
			return "", false
		}
		i = skipWS(raw, i+1)
		switch key {
		case "kind", "apiVersion":
			if i >= len(raw) || raw[i] != '"' {
				return "", false
			}
			e, ok := scanString(raw, i)
			if !ok {
				return "", false
			}
			s, ok := unquote(raw[i:e])
			if !ok {
				return "", false
			}
			if key == "kind" && s != "EventList" {
				return "", false
			}
			if key == "apiVersion" {
				apiVersion = s
			}
			i = e
		case "metadata":
			if i >= len(raw) || raw[i] != '{' {
				return "", false
			}
			e, ok := scanClose(raw, i)
			if !ok {
				return "", false
			}
			i = e
		case "items":
			if i >= len(raw) || raw[i] != '[' || sawItems {
				return "", false
			}
			sawItems = true
			e, ok := scanArray(raw, i, each)
			if !ok {
				return "", false
			}
			i = e
		default:
			return "", false
		}
		i = skipWS(raw, i)
		if i >= len(raw) {
			return "", false
		}
		switch raw[i] {
		case ',':
			i = skipWS(raw, i+1)
			continue
		case '}':
			if !sawItems || skipWS(raw, i+1) != len(raw) {
				return "", false
			}
			return apiVersion, true
		}
		return "", false
	}
}

// arrayItems reports whether raw is one JSON array whose elements'
// boundaries are all found, calling each (when not nil) with every element.
func arrayItems(raw []byte, each func(item []byte)) bool {
	i := skipWS(raw, 0)
	if i >= len(raw) || raw[i] != '[' {
		return false
	}
	e, ok := scanArray(raw, i, each)
	return ok && skipWS(raw, e) == len(raw)
}
