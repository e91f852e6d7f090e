package pipeline

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// This file edits an event's JSON in place: it finds the values to redact
// by scanning the bytes, and copies everything else unchanged, so that key
// order, spacing and escaping stay as the API server wrote them.

// maxRedactDepth bounds the nesting the walker follows. The decoder already
// refuses events nested deeper than audit.DefaultMaxDepth; this is the
// walker's own guard for bytes that did not come through it.
const maxRedactDepth = 512

var errRedactSyntax = errors.New("malformed JSON")

// editor builds the output of a walk: it copies the input up to each
// replacement. Replacements must come in increasing order of position and
// must not overlap; out stays nil while nothing is replaced.
type editor struct {
	in   []byte
	out  []byte
	last int
}

func (e *editor) replace(start, end int, with []byte) {
	if e.out == nil {
		e.out = make([]byte, 0, len(e.in)+64)
	}
	e.out = append(e.out, e.in[e.last:start]...)
	e.out = append(e.out, with...)
	e.last = end
}

// result returns the edited bytes and whether anything changed.
func (e *editor) result() ([]byte, bool) {
	if e.out == nil {
		return e.in, false
	}
	return append(e.out, e.in[e.last:]...), true
}

// hint says what the event's objectRef tells about a body that does not
// name its own kind (a patch, a kindless list item).
type hint struct {
	// secret: the body is a Secret (or a JSON patch of one).
	secret bool
	// tokenRequest: the body is a TokenRequest (serviceaccounts/token).
	tokenRequest bool
	// tokenReview: the body is a TokenReview.
	tokenReview bool
}

// walker redacts the values it finds in one JSON text.
type walker struct {
	r  *Redactor
	ed editor
}

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// scanString returns the index just past the string that starts at b[i].
func scanString(b []byte, i int) (int, error) {
	if i >= len(b) || b[i] != '"' {
		return 0, errRedactSyntax
	}
	i++
	for {
		j := bytes.IndexAny(b[i:], "\"\\")
		if j < 0 {
			return 0, errRedactSyntax
		}
		i += j
		if b[i] == '"' {
			return i + 1, nil
		}
		i += 2 // a backslash and the byte it escapes
		if i > len(b) {
			return 0, errRedactSyntax
		}
	}
}

// skipValue returns the index just past the value that starts at b[i].
func skipValue(b []byte, i, depth int) (int, error) {
	if depth > maxRedactDepth {
		return 0, fmt.Errorf("JSON nested deeper than %d levels", maxRedactDepth)
	}
	if i >= len(b) {
		return 0, errRedactSyntax
	}
	switch b[i] {
	case '"':
		return scanString(b, i)
	case '{', '[':
		closing := byte('}')
		if b[i] == '[' {
			closing = ']'
		}
		i = skipWS(b, i+1)
		if i < len(b) && b[i] == closing {
			return i + 1, nil
		}
		for {
			var err error
			if closing == '}' {
				if i, err = scanString(b, i); err != nil {
					return 0, err
				}
				if i = skipWS(b, i); i >= len(b) || b[i] != ':' {
					return 0, errRedactSyntax
				}
				i = skipWS(b, i+1)
			}
			if i, err = skipValue(b, i, depth+1); err != nil {
				return 0, err
			}
			i = skipWS(b, i)
			if i >= len(b) {
				return 0, errRedactSyntax
			}
			if b[i] == closing {
				return i + 1, nil
			}
			if b[i] != ',' {
				return 0, errRedactSyntax
			}
			i = skipWS(b, i+1)
		}
	default:
		start := i
		for i < len(b) && !bytes.ContainsRune([]byte(",}] \t\r\n"), rune(b[i])) {
			i++
		}
		if i == start {
			return 0, errRedactSyntax
		}
		return i, nil
	}
}

// member is one member of an object: the key (quotes included) and the
// value, as byte ranges of the walked text.
type member struct {
	k0, k1, v0, v1 int
}

// members lists the members of the object that starts at b[i].
func members(b []byte, i, depth int) ([]member, int, error) {
	if i >= len(b) || b[i] != '{' {
		return nil, 0, errRedactSyntax
	}
	var ms []member
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		return nil, i + 1, nil
	}
	for {
		var m member
		var err error
		m.k0 = i
		if m.k1, err = scanString(b, i); err != nil {
			return nil, 0, err
		}
		if i = skipWS(b, m.k1); i >= len(b) || b[i] != ':' {
			return nil, 0, errRedactSyntax
		}
		m.v0 = skipWS(b, i+1)
		if m.v1, err = skipValue(b, m.v0, depth+1); err != nil {
			return nil, 0, err
		}
		ms = append(ms, m)
		if i = skipWS(b, m.v1); i >= len(b) {
			return nil, 0, errRedactSyntax
		}
		if b[i] == '}' {
			return ms, i + 1, nil
		}
		if b[i] != ',' {
			return nil, 0, errRedactSyntax
		}
		i = skipWS(b, i+1)
	}
}

// unquote returns the text of the JSON string b (quotes included).
func unquote(b []byte) (string, bool) {
	if len(b) < 2 || b[0] != '"' {
		return "", false
	}
	if bytes.IndexByte(b, '\\') < 0 {
		return string(b[1 : len(b)-1]), true
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return "", false
	}
	return s, true
}

// keyIs reports whether the JSON string key names name. It matches as
// encoding/json matches a key to a field, ignoring case, so that a key the
// decoder reads as the field is also the key redacted.
func keyIs(key []byte, name string) bool {
	if bytes.IndexByte(key, '\\') < 0 && len(key) >= 2 {
		return bytes.EqualFold(key[1:len(key)-1], []byte(name))
	}
	s, ok := unquote(key)
	return ok && strings.EqualFold(s, name)
}

// stringAt returns the text of the member's value when it is a string.
func (w *walker) stringAt(m member) (string, bool) {
	if w.ed.in[m.v0] != '"' {
		return "", false
	}
	return unquote(w.ed.in[m.v0:m.v1])
}

// kindOf returns the value of the object's "kind" member ("" when none).
// Kinds are compared exactly, as Kubernetes does.
func (w *walker) kindOf(ms []member) string {
	kind := ""
	for _, m := range ms {
		if keyIs(w.ed.in[m.k0:m.k1], "kind") {
			kind, _ = w.stringAt(m)
		}
	}
	return kind
}

// value walks the value that starts at in[i], looking for secrets.
func (w *walker) value(i int, h hint, depth int) error {
	switch w.ed.in[i] {
	case '{':
		return w.object(i, h, depth)
	case '[':
		return w.array(i, h, depth)
	}
	return nil
}

func (w *walker) array(i int, h hint, depth int) error {
	b := w.ed.in
	if depth > maxRedactDepth {
		return fmt.Errorf("JSON nested deeper than %d levels", maxRedactDepth)
	}
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == ']' {
		return nil
	}
	// A JSON patch of a Secret is an array of operations; its elements
	// carry the secret hint, other arrays' elements do not.
	elem := hint{secret: h.secret}
	for {
		end, err := skipValue(b, i, depth+1)
		if err != nil {
			return err
		}
		if err := w.value(i, elem, depth+1); err != nil {
			return err
		}
		if i = skipWS(b, end); i >= len(b) {
			return errRedactSyntax
		}
		if b[i] == ']' {
			return nil
		}
		i = skipWS(b, i+1)
	}
}

// lastApplied is the annotation in which kubectl keeps the whole applied
// object as a JSON string.
const lastApplied = "kubectl.kubernetes.io/last-applied-configuration"

func (w *walker) object(i int, h hint, depth int) error {
	if depth > maxRedactDepth {
		return fmt.Errorf("JSON nested deeper than %d levels", maxRedactDepth)
	}
	ms, _, err := members(w.ed.in, i, depth)
	if err != nil {
		return err
	}
	b := w.ed.in
	kind := w.kindOf(ms)
	secret := kind == "Secret" || kind == "" && h.secret
	tokenRequest := kind == "TokenRequest" || kind == "" && h.tokenRequest
	tokenReview := kind == "TokenReview" || kind == "" && h.tokenReview
	valueDone := w.patchOp(ms, h)
	for _, m := range ms {
		key := b[m.k0:m.k1]
		switch {
		case valueDone && keyIs(key, "value"):
			// patchOp took care of it.
		case secret && (keyIs(key, "data") || keyIs(key, "stringData")):
			w.redactValues(m, keyIs(key, "data"))
		case tokenRequest && keyIs(key, "status") || tokenReview && keyIs(key, "spec"):
			if err := w.redactMember(m, "token", depth); err != nil {
				return err
			}
		case keyIs(key, "items") && b[m.v0] == '[':
			// A SecretList's items carry no kind of their own.
			if err := w.array(m.v0, hint{secret: kind == "SecretList"}, depth+1); err != nil {
				return err
			}
		case keyIs(key, lastApplied) && b[m.v0] == '"':
			w.inner(m, h)
		default:
			if err := w.value(m.v0, hint{}, depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}

// patchOp handles the value of a JSON patch operation (RFC 6902): it
// redacts one that writes a Secret's data, and the applied object inside
// one that writes the last-applied annotation. It reports whether it took
// care of the object's value member.
func (w *walker) patchOp(ms []member, h hint) bool {
	var path string
	var value *member
	isOp := false
	for k := range ms {
		key := w.ed.in[ms[k].k0:ms[k].k1]
		switch {
		case keyIs(key, "op"):
			isOp = true
		case keyIs(key, "path"):
			path, _ = w.stringAt(ms[k])
		case keyIs(key, "value"):
			value = &ms[k]
		}
	}
	if !isOp || value == nil {
		return false
	}
	switch {
	case h.secret && (strings.HasPrefix(path, "/data/") || strings.HasPrefix(path, "/stringData/")):
		w.redactOne(*value, strings.HasPrefix(path, "/data/"))
	case h.secret && (path == "/data" || path == "/stringData"):
		w.redactValues(*value, path == "/data")
	case strings.HasSuffix(path, "~1last-applied-configuration") && w.ed.in[value.v0] == '"':
		w.inner(*value, h)
	default:
		return false
	}
	return true
}

// redactValues replaces every value of the object held by m (a Secret's
// data or stringData), keeping the keys.
func (w *walker) redactValues(m member, base64Data bool) {
	if w.ed.in[m.v0] != '{' {
		w.redactOne(m, base64Data)
		return
	}
	ms, _, err := members(w.ed.in, m.v0, 0)
	if err != nil {
		return // cannot happen: skipValue accepted it
	}
	for _, v := range ms {
		w.redactOne(v, base64Data)
	}
}

// redactMember replaces the value of member name inside the object held
// by m (TokenRequest status.token, TokenReview spec.token) and walks the
// rest.
func (w *walker) redactMember(m member, name string, depth int) error {
	if w.ed.in[m.v0] != '{' {
		return w.value(m.v0, hint{}, depth+1)
	}
	ms, _, err := members(w.ed.in, m.v0, depth+1)
	if err != nil {
		return err
	}
	for _, v := range ms {
		if keyIs(w.ed.in[v.k0:v.k1], name) {
			w.redactOne(v, false)
		} else if err := w.value(v.v0, hint{}, depth+2); err != nil {
			return err
		}
	}
	return nil
}

// redactOne replaces one value with its marker. null stays null (it holds
// nothing) and a marker stays as it is (redaction is idempotent).
func (w *walker) redactOne(m member, base64Data bool) {
	raw := w.ed.in[m.v0:m.v1]
	if bytes.Equal(raw, []byte("null")) {
		return
	}
	var v []byte
	if s, ok := unquote(raw); ok {
		if isMarker(s) {
			return
		}
		v = secretBytes(s, base64Data)
	} else {
		v = raw // a number, object or array where a string belongs
	}
	w.ed.replace(m.v0, m.v1, appendQuotedMarker(nil, w.r.marker(v)))
}

// inner redacts inside a string that holds a JSON document (kubectl's
// last-applied-configuration), and writes the string back, escaped as the
// API server escapes, when something in it changed. A string that is not
// JSON but holds what looks like a secret's kind is replaced whole.
func (w *walker) inner(m member, h hint) {
	s, ok := w.stringAt(m)
	if !ok || isMarker(s) {
		return
	}
	iw := &walker{r: w.r, ed: editor{in: []byte(s)}}
	i := skipWS(iw.ed.in, 0)
	err := errRedactSyntax
	if i < len(iw.ed.in) && (iw.ed.in[i] == '{' || iw.ed.in[i] == '[') {
		if _, err = skipValue(iw.ed.in, i, 0); err == nil {
			err = iw.value(i, h, 0)
		}
	}
	if err != nil {
		if suspicious([]byte(s)) {
			w.ed.replace(m.v0, m.v1, appendQuotedMarker(nil, w.r.marker([]byte(s))))
		}
		return
	}
	out, changed := iw.ed.result()
	if !changed {
		return
	}
	q, _ := json.Marshal(string(out)) // a string always marshals
	w.ed.replace(m.v0, m.v1, q)
}

func appendQuotedMarker(dst []byte, marker string) []byte {
	dst = append(dst, '"')
	dst = append(dst, marker...)
	return append(dst, '"')
}
