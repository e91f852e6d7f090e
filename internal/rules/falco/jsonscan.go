package falco

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"unicode/utf8"
)

// The k8saudit and json plugins read an event through a JSON parser. Most
// rules look at one or two members, so this file walks the raw bytes
// instead: no tree is built, nothing is allocated for members a rule does
// not name, and objects keep their key order (which output rendering shows).
// Every function here expects valid JSON, which the decoder guarantees for
// an event's bytes; on anything else it reports "not found".

// jsonMember returns the raw value of key in the JSON object obj.
func jsonMember(obj []byte, key string) ([]byte, bool) {
	i := skipSpace(obj, 0)
	if i >= len(obj) || obj[i] != '{' {
		return nil, false
	}
	i++
	for {
		i = skipSpace(obj, i)
		if i >= len(obj) || obj[i] == '}' {
			return nil, false
		}
		if obj[i] == ',' {
			i++
			continue
		}
		kEnd := skipString(obj, i)
		if kEnd < 0 {
			return nil, false
		}
		match := keyEquals(obj[i:kEnd], key)
		i = skipSpace(obj, kEnd)
		if i >= len(obj) || obj[i] != ':' {
			return nil, false
		}
		i = skipSpace(obj, i+1)
		vEnd := skipValue(obj, i)
		if vEnd < 0 {
			return nil, false
		}
		if match {
			return obj[i:vEnd], true
		}
		i = vEnd
	}
}

// jsonPath follows keys through nested objects.
func jsonPath(v []byte, keys ...string) ([]byte, bool) {
	for _, k := range keys {
		var ok bool
		if v, ok = jsonMember(v, k); !ok {
			return nil, false
		}
	}
	return v, true
}

// jsonEach calls f with each element of the JSON array arr, in order, and
// reports whether arr is an array.
func jsonEach(arr []byte, f func(elem []byte)) bool {
	i := skipSpace(arr, 0)
	if i >= len(arr) || arr[i] != '[' {
		return false
	}
	i++
	for {
		i = skipSpace(arr, i)
		if i >= len(arr) || arr[i] == ']' {
			return true
		}
		if arr[i] == ',' {
			i++
			continue
		}
		end := skipValue(arr, i)
		if end < 0 {
			return true
		}
		f(arr[i:end])
		i = end
	}
}

// jsonKeys calls f with each key of the JSON object obj, in order.
func jsonKeys(obj []byte, f func(key string)) bool {
	i := skipSpace(obj, 0)
	if i >= len(obj) || obj[i] != '{' {
		return false
	}
	i++
	for {
		i = skipSpace(obj, i)
		if i >= len(obj) || obj[i] == '}' {
			return true
		}
		if obj[i] == ',' {
			i++
			continue
		}
		kEnd := skipString(obj, i)
		if kEnd < 0 {
			return true
		}
		f(unquote(obj[i:kEnd]))
		i = skipSpace(obj, kEnd)
		if i >= len(obj) || obj[i] != ':' {
			return true
		}
		i = skipSpace(obj, i+1)
		if i = skipValue(obj, i); i < 0 {
			return true
		}
	}
}

// jsonIndex returns element n of the JSON array arr.
func jsonIndex(arr []byte, n int) ([]byte, bool) {
	var out []byte
	found := false
	k := 0
	jsonEach(arr, func(elem []byte) {
		if k == n {
			out, found = elem, true
		}
		k++
	})
	return out, found
}

// jsonKind says what a raw JSON value is by its first byte.
func jsonKind(v []byte) byte {
	if len(v) == 0 {
		return 0
	}
	return v[0]
}

// jsonText renders a value as the plugins do: a string as its contents,
// anything else as compact JSON.
func jsonText(v []byte) string {
	if jsonKind(v) == '"' {
		return unquote(v)
	}
	if bytes.ContainsAny(v, " \t\r\n") {
		var b bytes.Buffer
		if json.Compact(&b, v) == nil {
			return b.String()
		}
	}
	return string(v)
}

// unquote returns the contents of a JSON string literal.
func unquote(v []byte) string {
	if len(v) < 2 {
		return ""
	}
	inner := v[1 : len(v)-1]
	if bytes.IndexByte(inner, '\\') < 0 && utf8.Valid(inner) {
		return string(inner)
	}
	var s string
	if json.Unmarshal(v, &s) != nil {
		return string(inner)
	}
	return s
}

// keyEquals compares a JSON string literal with a Go string.
func keyEquals(lit []byte, key string) bool {
	inner := lit[1 : len(lit)-1]
	if bytes.IndexByte(inner, '\\') < 0 {
		return string(inner) == key
	}
	return unquote(lit) == key
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index just past the string literal at b[i].
func skipString(b []byte, i int) int {
	if i >= len(b) || b[i] != '"' {
		return -1
	}
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return -1
}

// skipValue returns the index just past the JSON value at b[i].
func skipValue(b []byte, i int) int {
	if i >= len(b) {
		return -1
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for ; i < len(b); i++ {
			switch b[i] {
			case '"':
				e := skipString(b, i)
				if e < 0 {
					return -1
				}
				i = e - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
		}
		return -1
	}
	for ; i < len(b); i++ {
		switch b[i] {
		case ',', '}', ']', ' ', '\t', '\r', '\n':
			return i
		}
	}
	return i
}

// splitPointer splits an RFC 6901 pointer ("/a/0/b") into its unescaped
// tokens, once, when a rule is compiled.
func splitPointer(ptr string) []string {
	ptr = strings.TrimPrefix(ptr, "/")
	toks := strings.Split(ptr, "/")
	for i, t := range toks {
		toks[i] = strings.ReplaceAll(strings.ReplaceAll(t, "~1", "/"), "~0", "~")
	}
	return toks
}

// jsonPointer follows pointer tokens as the json plugin does: each token
// is an object key, or an index into an array.
func jsonPointer(v []byte, toks []string) ([]byte, bool) {
	for _, tok := range toks {
		var ok bool
		switch jsonKind(v) {
		case '{':
			v, ok = jsonMember(v, tok)
		case '[':
			n, err := strconv.Atoi(tok)
			if err != nil || n < 0 {
				return nil, false
			}
			v, ok = jsonIndex(v, n)
		}
		if !ok {
			return nil, false
		}
	}
	return v, true
}
