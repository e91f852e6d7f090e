package escape

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

func TestLine(t *testing.T) {
	f := func(in, line, text string) {
		t.Helper()
		if got := Line(in); got != line {
			t.Errorf("Line(%q) = %q, want %q", in, got, line)
		}
		if got := Text(in); got != text {
			t.Errorf("Text(%q) = %q, want %q", in, got, text)
		}
	}
	f("", "", "")
	f("alice", "alice", "alice")
	f(`a\x1b`, `a\x1b`, `a\x1b`) // a backslash is left as it is
	f("日本 é 😀 \u00a0", "日本 é 😀 \u00a0", "日本 é 😀 \u00a0")
	f("\x1b]0;owned\x07x", `\x1b]0;owned\x07x`, `\x1b]0;owned\x07x`)
	f("a\nb\tc\rd", `a\nb\tc\rd`, "a\nb\tc\\rd")
	f("\x00\x7f", `\x00\x7f`, `\x00\x7f`)
	f("\u009b31m\u0085", `\u009b31m\u0085`, `\u009b31m\u0085`)
	f("evil\u202etxt.exe\u2066\u2069\u200f\u061c", `evil\u202etxt.exe\u2066\u2069\u200f\u061c`, `evil\u202etxt.exe\u2066\u2069\u200f\u061c`)
	f("bad\xff\x9bbyte", `bad\xff\x9bbyte`, `bad\xff\x9bbyte`)
	f("\u2028", "\u2028", "\u2028") // a line separator is not a control for terminals
	// Invisible format characters (Unicode category Cf): "admin\u200b" must
	// not look like "admin"; a tag character is past U+FFFF.
	f("admin\u200b", `admin\u200b`, `admin\u200b`)
	f("a\u00adb\u2060c\ufeffd\U000e0041", `a\u00adb\u2060c\ufeffd\U000e0041`, `a\u00adb\u2060c\ufeffd\U000e0041`)
}

// TestLineLeavesNoControl runs Line over every rune and every byte: what
// comes out is valid UTF-8 with no control character and no bidi control
// in it. (Mutation tried: dropping the C1 case lets U+0080..U+009F out.)
func TestLineLeavesNoControl(t *testing.T) {
	var b strings.Builder
	for r := rune(0); r < 0x3000; r++ {
		b.WriteRune(r)
	}
	for _, r := range []rune{0xfeff, 0xfff9, 0x110bd, 0x1d173, 0xe0001, 0xe007f} {
		b.WriteRune(r)
	}
	for c := 0x80; c < 0x100; c++ {
		b.WriteByte(byte(c))
	}
	out := Line(b.String())
	if !utf8.ValidString(out) {
		t.Fatal("Line left bytes that are not UTF-8")
	}
	for _, r := range out {
		if r < 0x20 || (r >= 0x7f && r <= 0x9f) || isBidi(r) || unicode.Is(unicode.Cf, r) {
			t.Fatalf("Line left %U", r)
		}
	}
}

// TestJSON: the rewrite keeps the value (a decoder reads the same string)
// and leaves no C1 or bidi control raw.
func TestJSON(t *testing.T) {
	in := []byte("{\"a\":\"\x7fx\u0085y\u009b\u202ez\ufeff日本\",\"b\":1}")
	out := JSON(in)
	if want := `{"a":"\u007fx\u0085y\u009b\u202ez\ufeff日本","b":1}`; string(out) != want {
		t.Errorf("JSON = %s, want %s", out, want)
	}
	plain := []byte(`{"a":"日本 é"}`)
	if got := JSON(plain); &got[0] != &plain[0] {
		t.Error("JSON copied text that needed no rewrite")
	}
}
