// Package escape makes text from audit events safe to print on a
// terminal. Every field of an event is chosen by whoever sent the request
// (a user name, a user agent, an object name, a body): an ESC sequence in
// one can move the cursor, recolour or retitle the terminal, hide what
// follows, or on some terminals answer back; a newline forges a row of a
// table; a bidirectional override (U+202E) makes "exe.txt" read as
// "txt.exe". Every human output of kubetrail (tables, reports, messages)
// passes the values it prints through Line or Text. Machine outputs (JSON,
// JSON lines, YAML) are escaped by their encoders and keep the exact text.
package escape

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Line returns s for one cell or one line of output: every C0 control
// character (newline and tab included), DEL, every C1 control character,
// the bidirectional controls (U+061C, U+200E, U+200F, U+202A..U+202E,
// U+2066..U+2069), the other invisible format characters (Unicode
// category Cf: U+200B zero width space, U+00AD soft hyphen, U+2060 word
// joiner, U+FEFF, the tag characters U+E0000..U+E007F; "admin\u200b" must
// not pass for "admin") and every byte that is not UTF-8 are written as
// visible escapes: \n, \r, \t, \x1b, \x7f, \u009b, \u202e, \U000e0041
// past U+FFFF, and \xff for a bad byte. Everything else, backslashes included, is left alone, so the
// common case costs one scan and no allocation.
func Line(s string) string { return escape(s, false) }

// Text is Line for text whose newlines and tabs are meant (a message of
// several lines): those two are kept, everything else Line escapes is
// escaped.
func Text(s string) string { return escape(s, true) }

func escape(s string, keepLines bool) string {
	i := 0
	for i < len(s) {
		r, size := utf8.DecodeRuneInString(s[i:])
		if bad(r, size, keepLines) {
			break
		}
		i += size
	}
	if i == len(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	b.WriteString(s[:i])
	for i < len(s) {
		r, size := utf8.DecodeRuneInString(s[i:])
		if !bad(r, size, keepLines) {
			b.WriteString(s[i : i+size])
			i += size
			continue
		}
		switch {
		case r == utf8.RuneError && size <= 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x80:
			fmt.Fprintf(&b, `\x%02x`, r)
		case r > 0xffff:
			fmt.Fprintf(&b, `\U%08x`, r)
		default:
			fmt.Fprintf(&b, `\u%04x`, r)
		}
		i += size
	}
	return b.String()
}

// bad says whether a rune of size bytes must be escaped.
func bad(r rune, size int, keepLines bool) bool {
	switch {
	case r == utf8.RuneError && size <= 1:
		return true // not UTF-8: an 8-bit terminal reads 0x9b as CSI
	case r == '\n' || r == '\t':
		return !keepLines
	case r < 0x20 || r == 0x7f:
		return true
	case r < 0x80:
		return false
	case r <= 0x9f:
		return true // C1
	}
	return isBidi(r) || unicode.Is(unicode.Cf, r)
}

// isBidi says whether r is a bidirectional formatting character: the
// embeddings and overrides, the isolates and the marks.
func isBidi(r rune) bool {
	return r == 0x061c || r == 0x200e || r == 0x200f || (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069)
}

// JSON rewrites the characters Line escapes that JSON lets a string hold
// as they are — DEL, C1 controls, bidi controls — and the noncharacters
// U+FFFE, U+FFFF and U+FEFF, as \uXXXX escapes, and a byte that is not
// UTF-8 as \ufffd (what any JSON decoder reads it as). The value is the
// same; the text can go to a terminal, and to a YAML parser, which
// refuses C1 controls in its input. raw must be valid JSON (C0 controls
// cannot occur in it raw); it is returned as it is when nothing needs a
// rewrite.
func JSON(raw []byte) []byte {
	i := 0
	for i < len(raw) {
		if raw[i] < utf8.RuneSelf && raw[i] != 0x7f {
			i++
			continue
		}
		r, size := utf8.DecodeRune(raw[i:])
		if jsonBad(r, size) {
			break
		}
		i += size
	}
	if i == len(raw) {
		return raw
	}
	out := make([]byte, 0, len(raw)+16)
	out = append(out, raw[:i]...)
	for i < len(raw) {
		r, size := utf8.DecodeRune(raw[i:])
		if !jsonBad(r, size) {
			out = append(out, raw[i:i+size]...)
		} else {
			out = fmt.Appendf(out, `\u%04x`, r) // RuneError is U+FFFD
		}
		i += size
	}
	return out
}

func jsonBad(r rune, size int) bool {
	return (r == utf8.RuneError && size <= 1) || (r >= 0x7f && r <= 0x9f) || isBidi(r) || r == 0xfeff || r == 0xfffe || r == 0xffff
}
