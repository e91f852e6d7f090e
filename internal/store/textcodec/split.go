package textcodec

import "bytes"

// A line is split into a template and leaves. The template is every byte
// of the line that is not a leaf value: braces, brackets, separators,
// whitespace, keys, the quotes around strings, and the literals true,
// false and null. A leaf is a string's content (between its quotes, as
// written, escapes and all) or a number's text. Splitting only finds
// where values start and end, it never unescapes or reformats, so a line
// is always its template's literals and its leaves put back in turn: the
// exactness of the codec does not depend on the JSON being valid. A line
// the splitter cannot follow (unbalanced, truncated, nested too deep) is
// stored whole as the one leaf of the raw template.

// maxDepth bounds the nesting the splitter follows; deeper lines are raw.
const maxDepth = 64

// maxLeaves bounds the leaves the splitter follows in one line; a line
// with more is raw. An event's own fields make a few dozen (a body is one
// leaf with Opaque), but a line of a million numbers made a template of a
// literal per leaf: a group of such lines took 150 times its bytes to
// encode and read back, once per sealer.
const maxLeaves = 1 << 12

// span is a leaf: its column and where its value is in the line.
type span struct {
	col        int
	start, end int
}

// splitter finds a line's leaves and their columns. Columns are named by
// the path of keys that leads to the value, arrays as "[]", so every
// "user.groups[]" of a group shares one column whatever the array's
// length. It is not safe for concurrent use.
type splitter struct {
	b      []byte
	i      int
	path   []byte
	leaves []span
	// opaque, when set, keeps the value of a top-level requestObject or
	// responseObject as one leaf: request bodies have shapes of their
	// own that would each make a template and a dozen columns.
	opaque bool
	column func(path []byte) int
	// next[c] is the column of the leaf that followed a leaf of column
	// c (c = 0: the first leaf) the last time, and paths[c] the path of
	// column c: the lines of a group mostly have the same shape, so
	// comparing the path with the expected column's finds the column
	// without hashing it into column's map (a tenth of encoding's profile;
	// 5 leaves in 6 of the corpus's need no lookup). Column 0 is the raw
	// lines', never a split line's leaf.
	next  []int
	paths [][]byte
}

// split fills s.leaves with line's leaves; false means the line is raw.
func (s *splitter) split(line []byte) bool {
	s.b, s.i, s.path, s.leaves = line, 0, append(s.path[:0], '$'), s.leaves[:0]
	s.ws()
	if !s.value(0) {
		return false
	}
	s.ws()
	return s.i == len(s.b)
}

func (s *splitter) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// str returns the end of the string whose content starts at i: the index
// of its closing quote, the first quote after an even run of backslashes
// (each pair one escaped backslash). It jumps from quote to quote
// (bytes.IndexByte) rather than looking at every byte: splitting was a
// sixth of encoding.
func str(b []byte, i int) (int, bool) {
	from := i
	for {
		j := bytes.IndexByte(b[i:], '"')
		if j < 0 {
			return 0, false
		}
		q := i + j
		n := 0
		for k := q - 1; k >= from && b[k] == '\\'; k-- {
			n++
		}
		if n%2 == 0 {
			return q, true
		}
		i = q + 1
	}
}

// scalar returns the end of the number or literal that starts at i.
func scalar(b []byte, i int) int {
	for i < len(b) {
		c := b[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-' || c == '+' || c == '.') {
			break
		}
		i++
	}
	return i
}

// leaf adds a leaf; false means the line has too many to follow.
func (s *splitter) leaf(start, end int) bool {
	if len(s.leaves) >= maxLeaves {
		return false
	}
	c := s.col(len(s.leaves))
	if c < 0 {
		return false // the group has all the columns it may
	}
	s.leaves = append(s.leaves, span{col: c, start: start, end: end})
	return true
}

// col returns the column of s.path, the path of the n-th leaf: the one
// that followed the previous leaf's column last time if its path is the
// same, else column's (-1 when column makes no more).
func (s *splitter) col(n int) int {
	prev := 0
	if n > 0 {
		prev = s.leaves[n-1].col
	}
	if prev < len(s.next) {
		if c := s.next[prev]; c > 0 && bytes.Equal(s.paths[c], s.path) {
			return c
		}
	}
	c := s.column(s.path)
	if c < 0 {
		return c
	}
	s.next = grow(s.next, prev+1)
	s.next[prev] = c
	s.paths = grow(s.paths, c+1)
	if s.paths[c] == nil {
		s.paths[c] = bytes.Clone(s.path)
	}
	return c
}

// grow returns a, with zero values added if need be to have n at least.
func grow[T any](a []T, n int) []T {
	if n > len(a) {
		a = append(a, make([]T, n-len(a))...)
	}
	return a
}

func (s *splitter) value(depth int) bool {
	if s.i >= len(s.b) || depth > maxDepth {
		return false
	}
	switch s.b[s.i] {
	case '{':
		return s.object(depth)
	case '[':
		return s.array(depth)
	case '"':
		end, ok := str(s.b, s.i+1)
		if !ok {
			return false
		}
		if !s.leaf(s.i+1, end) {
			return false
		}
		s.i = end + 1
		return true
	}
	start := s.i
	s.i = scalar(s.b, s.i)
	switch string(s.b[start:s.i]) {
	case "":
		return false
	case "true", "false", "null":
		// Part of the template: no column needs to say it.
		return true
	}
	return s.leaf(start, s.i)
}

func (s *splitter) object(depth int) bool {
	s.i++
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == '}' {
		s.i++
		return true
	}
	for {
		if s.i >= len(s.b) || s.b[s.i] != '"' {
			return false
		}
		end, ok := str(s.b, s.i+1)
		if !ok {
			return false
		}
		key := s.b[s.i+1 : end]
		s.i = end + 1
		s.ws()
		if s.i >= len(s.b) || s.b[s.i] != ':' {
			return false
		}
		s.i++
		s.ws()
		n := len(s.path)
		s.path = append(append(s.path, '.'), key...)
		if depth == 0 && s.opaque && (string(key) == "requestObject" || string(key) == "responseObject") {
			start := s.i
			if !s.skip() {
				return false
			}
			if !s.leaf(start, s.i) {
				return false
			}
		} else if !s.value(depth + 1) {
			return false
		}
		s.path = s.path[:n]
		s.ws()
		if s.i >= len(s.b) {
			return false
		}
		switch s.b[s.i] {
		case ',':
			s.i++
			s.ws()
		case '}':
			s.i++
			return true
		default:
			return false
		}
	}
}

func (s *splitter) array(depth int) bool {
	s.i++
	s.ws()
	if s.i < len(s.b) && s.b[s.i] == ']' {
		s.i++
		return true
	}
	n := len(s.path)
	s.path = append(s.path, "[]"...)
	defer func() { s.path = s.path[:n] }()
	for {
		if !s.value(depth + 1) {
			return false
		}
		s.ws()
		if s.i >= len(s.b) {
			return false
		}
		switch s.b[s.i] {
		case ',':
			s.i++
			s.ws()
		case ']':
			s.i++
			return true
		default:
			return false
		}
	}
}

// The kinds of a template's leaves, as match reads them: a string's
// content, a number's text (scalar), or a body kept whole (skip).
const (
	leafString byte = iota
	leafScalar
	leafBody
)

// leafKinds returns the kinds of the leaves of a template made from a
// split line: a string's content follows its opening quote, which never
// ends the literal before a number or a body (those follow a ':', a ',',
// a '[' or whitespace); a body is a leaf of a body column (body[c]) when
// bodies are opaque.
func leafKinds(line []byte, leaves []span, opaque bool, body []bool) []byte {
	kinds := make([]byte, len(leaves))
	for i, l := range leaves {
		switch {
		case l.start > 0 && line[l.start-1] == '"':
			kinds[i] = leafString
		case opaque && body[l.col]:
			kinds[i] = leafBody
		default:
			kinds[i] = leafScalar
		}
	}
	return kinds
}

// match fills s.leaves with line's leaves if t is its template, the
// leaves found as split finds them, and says whether it is. The lines of
// a group mostly have the previous line's shape: comparing the line with
// that template's literals (keys, punctuation) and finding only where
// each value ends costs less than following every key and byte of the
// line (split was half of encoding). A line that has t's literals where
// t has them, and values split would end where match ends them, is
// split by split into those very leaves: split reads a value only to
// find its end (str, scalar, skip), and what it does next depends on the
// bytes after it, t's literals. A scalar that is true, false or null
// belongs to the template (value), so it is no match.
func (s *splitter) match(line []byte, t *template) bool {
	s.leaves = s.leaves[:0]
	at := 0
	for i, c := range t.cols {
		lit := t.lits[i]
		if len(line)-at < len(lit) || string(line[at:at+len(lit)]) != string(lit) {
			return false
		}
		start := at + len(lit)
		var end int
		switch t.kinds[i] {
		case leafString:
			e, ok := str(line, start)
			if !ok {
				return false
			}
			end = e
		case leafScalar:
			end = scalar(line, start)
			switch string(line[start:end]) {
			case "", "true", "false", "null":
				return false
			}
		default:
			s.b, s.i = line, start
			if !s.skip() {
				return false
			}
			end = s.i
		}
		s.leaves = append(s.leaves, span{col: c, start: start, end: end})
		at = end
	}
	return string(line[at:]) == string(t.lits[len(t.cols)])
}

// skip passes over one value without looking inside: brackets are
// counted, strings jumped over.
func (s *splitter) skip() bool {
	depth := 0
	for s.i < len(s.b) {
		switch c := s.b[s.i]; {
		case c == '"':
			end, ok := str(s.b, s.i+1)
			if !ok {
				return false
			}
			s.i = end + 1
		case c == '{' || c == '[':
			depth++
			s.i++
		case c == '}' || c == ']':
			if depth == 0 {
				return false
			}
			depth--
			s.i++
		case depth == 0:
			start := s.i
			s.i = scalar(s.b, s.i)
			return s.i > start
		default:
			s.i++
		}
		if depth == 0 {
			return true
		}
	}
	return false
}
