package query

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Error is a syntax or meaning error in a filter, located in its source.
type Error struct {
	// Pos is the byte offset of the offending token in the source.
	Pos int
	// Line and Col locate Pos for people: both start at 1, Col counts
	// characters (runes), not bytes.
	Line, Col int
	// Msg says what is wrong and, where it can, what was expected.
	Msg string
}

// Error returns "column N: msg", or "line L, column N: msg" for a filter of
// several lines.
func (e *Error) Error() string {
	if e.Line > 1 {
		return fmt.Sprintf("line %d, column %d: %s", e.Line, e.Col, e.Msg)
	}
	return fmt.Sprintf("column %d: %s", e.Col, e.Msg)
}

// Format returns the error for a terminal: the message, then the source
// line the error is on and a caret under the offending column. src must be
// the filter the error came from.
//
//	column 6: unknown field "usr" (did you mean "user"?); ...
//	  verb=get usr=alice
//	           ^
func (e *Error) Format(src string) string {
	lineStart := strings.LastIndexByte(src[:min(e.Pos, len(src))], '\n') + 1
	lineEnd := strings.IndexByte(src[lineStart:], '\n')
	if lineEnd < 0 {
		lineEnd = len(src)
	} else {
		lineEnd += lineStart
	}
	line := src[lineStart:lineEnd]
	var b strings.Builder
	b.WriteString(e.Error())
	b.WriteString("\n  ")
	b.WriteString(line)
	b.WriteString("\n  ")
	// Keep tabs as tabs so the caret lines up under them.
	for _, r := range src[lineStart:min(max(e.Pos, lineStart), len(src))] {
		if r == '\t' {
			b.WriteByte('\t')
		} else {
			b.WriteByte(' ')
		}
	}
	b.WriteString("^")
	return b.String()
}

// errorAt builds an *Error at byte offset pos of src.
func errorAt(src string, pos int, format string, args ...any) *Error {
	pos = max(0, min(pos, len(src)))
	before := src[:pos]
	line := strings.Count(before, "\n") + 1
	col := utf8.RuneCountInString(before[strings.LastIndexByte(before, '\n')+1:]) + 1
	return &Error{Pos: pos, Line: line, Col: col, Msg: fmt.Sprintf(format, args...)}
}

// quoteForMsg quotes s for an error message, shortening very long input.
func quoteForMsg(s string) string {
	const maxLen = 40
	if len(s) > maxLen {
		cut := maxLen
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		return strconv.Quote(s[:cut]) + "..."
	}
	return strconv.Quote(s)
}

// suggest returns the candidate closest to s by edit distance, or "" when
// none is close enough to be a likely typo.
func suggest(s string, candidates []string) string {
	s = strings.ToLower(s)
	best, bestD := "", -1
	for _, c := range candidates {
		d := editDistance(s, strings.ToLower(c))
		if bestD < 0 || d < bestD {
			best, bestD = c, d
		}
	}
	limit := 2
	if utf8.RuneCountInString(s) <= 3 {
		limit = 1
	}
	if bestD < 0 || bestD > limit {
		return ""
	}
	return best
}

// editDistance is the Levenshtein distance between a and b, in runes.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	if len(ra) > 64 || len(rb) > 64 {
		return 1 << 30 // not a typo of any field name
	}
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}
