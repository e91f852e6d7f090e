package sigma

import (
	"strings"
	"testing"
)

func TestParseCondition(t *testing.T) {
	f := func(src, want string) {
		t.Helper()
		n, err := parseCondition(src)
		if err != nil {
			t.Fatalf("%q: %v", src, err)
		}
		if got := n.String(); got != want {
			t.Errorf("%q parsed as %s, want %s", src, got, want)
		}
	}
	f("a", "a")
	f("a and b or c", "((a and b) or c)")
	f("a or b and c", "(a or (b and c))")
	f("not a and b", "(not a and b)")
	f("not (a and b)", "not (a and b)")
	f("a and not b and not c", "(a and not b and not c)")
	f("not not a", "not not a")
	f("1 of sel* and not 1 of filter*", "(1 of sel* and not 1 of filter*)")
	f("all of them or x", "(all of them or x)")
	f("1 of THEM", "1 of them")
	f("(((a)))", "a")
	f("a AND (b Or c)", "(a and (b or c))")
	f("all", "all")
	f("all and b", "(all and b)")
	f("sel_1\tand\nsel_2", "(sel_1 and sel_2)")
}

// FuzzCondition: the parser never panics, reports errors inside the
// condition, and what it accepts prints back to a condition that parses
// to the same tree. Linking and evaluating an accepted condition over a
// fixed set of searches never panics either. The seed corpus is in
// testdata/fuzz/FuzzCondition.
func FuzzCondition(f *testing.F) {
	for _, s := range []string{"a", "a and not (b or c)", "1 of sel_* and not 1 of filter*", "all of them", "((a)", "not", "| count() > 5", "1 of", "a b"} {
		f.Add(s)
	}
	searches := []*search{{name: "a"}, {name: "b"}, {name: "sel_x", alts: [][]*item{{}}}, {name: "_c"}}
	f.Fuzz(func(t *testing.T, src string) {
		n, err := parseCondition(src)
		if err != nil {
			ce, ok := err.(*condError)
			if !ok || ce.pos < 0 || ce.pos > len(src) {
				t.Fatalf("%q: error %v at a position outside the condition", src, err)
			}
			return
		}
		printed := n.String()
		again, err := parseCondition(printed)
		if err != nil {
			t.Fatalf("%q printed as %q, which does not parse: %v", src, printed, err)
		}
		if again.String() != printed {
			t.Fatalf("%q printed as %q, reparsed as %q", src, printed, again.String())
		}
		if e, err := link(n, searches); err == nil {
			e.eval(&state{})
			e.konst()
		} else if !strings.Contains(err.Error(), "search identifier") {
			t.Fatalf("%q: link error %v", src, err)
		}
	})
}
