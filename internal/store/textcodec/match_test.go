package textcodec

import (
	"bytes"
	"slices"
	"testing"
)

// matchLines are lines whose templates differ from apiLine's by a little
// only: a value of another kind in the same place (a number for a
// string, true or null for a number), a quote or a bracket inside a
// string, a body of other brackets, whitespace, a missing or extra key.
var matchLines = []string{
	apiLine,
	`{"a":1,"b":"x","c":[1,2],"requestObject":{"k":"v"},"d":true}`,
	`{"a":12,"b":"x\"y","c":[1,2],"requestObject":{"k":"}"},"d":true}`,
	`{"a":true,"b":"x","c":[1,2],"requestObject":{"k":"v"},"d":true}`,
	`{"a":null,"b":"x","c":[1,2],"requestObject":{"k":"v"},"d":true}`,
	`{"a":"1","b":"x","c":[1,2],"requestObject":{"k":"v"},"d":true}`,
	`{"a":1,"b":"x\\","c":[1,2],"requestObject":[1,{"x":"]"}],"d":true}`,
	`{"a":1,"b":"x","c":[1,2,3],"requestObject":"body","d":true}`,
	`{"a":1,"b":"x","c":[1,"2"],"requestObject":12,"d":true}`,
	`{"a":1,"b":"x","c":[1,2],"requestObject":{"k":"v"},"d":false}`,
	`{"a":1,"b":"x","c":[1,2],"requestObject":{"k":"v"},"d":true} `,
	`{"a":1 ,"b":"x","c":[1,2],"requestObject":{"k":"v"},"d":true}`,
	`{"a":-1e5,"b":"","c":[1,2],"requestObject":{},"d":true}`,
	`{"a":1,"b":"x","c":[1,2],"requestObject":{"k":"v"},"d":true,"e":1}`,
	`{"a":1,"b":"x","c":[1,2],"requestObject":{"k":"v"}`,
	`{"a":1,"b":"x","c":[1,2],"requestObject":{"k":"v"},"d":true}}`,
	`{"a":1,"b":"x","c":[1,2],"requestObject":{"k":"v"}},"d":true}`,
	`{"a":1,"b":"x","c":[1,2],"requestObject":{"k":"v,"d":true}`,
	`{"a":1,"b":"x","c":[1,2],"requestObject":{"k":"v"},"d":true`,
	`{"a":1x,"b":"x","c":[1,2],"requestObject":{"k":"v"},"d":true}`,
	`{"a":1,"b":"x","c":[[1],2],"requestObject":{"k":"v"},"d":true}`,
	`"x"`, `"y\"z"`, `12`, `12 `, `true`, `[1,"a",null]`, `[2,"b",null]`, `[2,"b",3]`,
}

// TestMatchAsSplit: match finds a line's leaves, with a template, when
// and only when split finds that very template and those leaves, for
// every line and template of matchLines and the incident, with bodies
// opaque or not. Mutations caught: match taking true or null for a
// number (the template holds them); leafKinds taking a body for a
// scalar; match not checking the bytes after the last leaf.
func TestMatchAsSplit(t *testing.T) {
	lines := readLines(t, "../../investigate/testdata/incident/incident.log.gz", 400)
	for _, l := range matchLines {
		lines = append(lines, []byte(l))
	}
	for _, opaque := range []bool{true, false} {
		e := newEncoder(Options{Opaque: opaque, Types: true}, nil)
		for _, l := range lines {
			if e.sp.split(l) {
				e.lookTemplate(l, e.sp.leaves)
			}
		}
		if len(e.tmpls) < 20 {
			t.Fatalf("opaque=%v: %d templates, want many to match against", opaque, len(e.tmpls))
		}
		matched := 0
		for _, l := range lines {
			for id := 1; id < len(e.tmpls); id++ {
				if checkMatch(t, e, l, id) {
					matched++
				}
			}
		}
		// Each line matches its own template only: two templates never
		// split a line alike.
		if matched != len(lines)-rawLines(e, lines) {
			t.Errorf("opaque=%v: %d matches of %d lines", opaque, matched, len(lines))
		}
	}
}

// FuzzMatch: a line matches the templates of apiLine, of another line
// and of its own (when split), exactly when split says it has them.
func FuzzMatch(f *testing.F) {
	for i, l := range matchLines {
		f.Add([]byte(l), []byte(matchLines[(i+1)%len(matchLines)]), i%2 == 0)
	}
	f.Fuzz(func(t *testing.T, a, b []byte, opaque bool) {
		e := newEncoder(Options{Opaque: opaque}, nil)
		for _, l := range [][]byte{[]byte(apiLine), a, b} {
			if e.sp.split(l) {
				e.lookTemplate(l, e.sp.leaves)
			}
		}
		for _, l := range [][]byte{a, b, []byte(apiLine)} {
			for id := 1; id < len(e.tmpls); id++ {
				checkMatch(t, e, l, id)
			}
		}
	})
}

// checkMatch fails t unless match of line with template id agrees with
// split, and says whether it matched.
func checkMatch(t testing.TB, e *encoder, line []byte, id int) bool {
	t.Helper()
	tm := &e.tmpls[id]
	got := e.sp.match(line, tm)
	gotLeaves := slices.Clone(e.sp.leaves)
	want := e.sp.split(line) && hasTemplate(tm, line, e.sp.leaves)
	if got != want {
		t.Fatalf("match(%q, template %d %q) = %v, split says %v", line, id, tm.lits, got, want)
	}
	if got && !slices.Equal(gotLeaves, e.sp.leaves) {
		t.Fatalf("match(%q) leaves %v, split's %v", line, gotLeaves, e.sp.leaves)
	}
	return got
}

// hasTemplate says whether t is the template of a split line: its
// literals are the line's bytes between the leaves, its columns the
// leaves'.
func hasTemplate(t *template, line []byte, leaves []span) bool {
	if len(t.cols) != len(leaves) {
		return false
	}
	at := 0
	for i, l := range leaves {
		if t.cols[i] != l.col || !bytes.Equal(t.lits[i], line[at:l.start]) {
			return false
		}
		at = l.end
	}
	return bytes.Equal(t.lits[len(leaves)], line[at:])
}

// rawLines counts the lines split does not follow.
func rawLines(e *encoder, lines [][]byte) int {
	n := 0
	for _, l := range lines {
		if !e.sp.split(l) {
			n++
		}
	}
	return n
}
