package query

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzParse checks that no input panics the parser or the compiler, that
// every error is a located *Error, and that the canonical text of a filter
// that parses parses again to the same canonical text.
func FuzzParse(f *testing.F) {
	for _, bf := range benchFilters {
		f.Add(bf.src)
	}
	for _, s := range []string{
		``, `""`, `"kube-system"`, `name="my pod"`, `name='it\'s'`, `user~"\d+"`, `a\"b`,
		`annotation[authorization.k8s.io/decision]=forbid`, `annotations.example.com/x!=""`,
		`user.extra["a b"]=c`, `time>-1d12h`, `time>=2026-01-02T15:04:05.123456+02:00`,
		`ip in (10.0.0.0/8, ::ffff:10.0.0.0/104, 2001:db8::/32, 10.*)`, `peer=""`,
		`not not (a=b or c=d) and !(e=f) || g=h && i=j`, `level>=Request stage in (ResponseComplete, Panic)`,
		`user=a,b`, `(`, `)`, `((((`, `a=`, `a[`, `user[`, `=~`, `!`, `&`, "\x00", "user=\xff", "user=\xe2\x82",
		"name=h\u00e9llo", "verb=get\n\tusr=x", `code in (401, 403`, `code=999999999999999999999`,
	} {
		f.Add(s)
	}
	events := namedEvents()
	f.Fuzz(func(t *testing.T, src string) {
		e, err := Parse(src)
		if err != nil {
			var pe *Error
			if !errors.As(err, &pe) {
				t.Fatalf("Parse(%q): error %T %v, want *Error", src, err, err)
			}
			if pe.Pos < 0 || pe.Pos > len(src) || pe.Line < 1 || pe.Col < 1 || pe.Msg == "" {
				t.Fatalf("Parse(%q): bad location %+v", src, pe)
			}
			if !utf8.ValidString(src) {
				return
			}
			if out := pe.Format(src); !strings.Contains(out, "^") {
				t.Fatalf("Format(%q) has no caret:\n%s", src, out)
			}
			return
		}
		c1 := Canonical(e)
		e2, err := Parse(c1)
		if err != nil {
			t.Fatalf("Parse(%q) gave %q, which does not parse: %v", src, c1, err)
		}
		if c2 := Canonical(e2); c2 != c1 {
			t.Fatalf("Parse(%q): canonical text not stable:\n%q\n%q", src, c1, c2)
		}
		flt, err := CompileAt(src, testNow)
		if err != nil {
			t.Fatalf("Parse accepted %q but Compile did not: %v", src, err)
		}
		for _, ev := range events {
			flt.Match(ev, "c")
		}
		flt.RequiredValues(Field{Name: "ns"})
		flt.TimeRange()
	})
}
