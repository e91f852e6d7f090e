package audit

import (
	"bytes"
	"strings"
	"testing"
)

// TestDecodeMalformedItemCostsOnlyItself: one malformed item in a list
// (a raw NUL, a syntax error, a stray bracket, an empty element) is reported
// by its index and every other item is kept. Only a list whose boundaries
// cannot be found is refused whole. Planted bug: give up on the tolerant
// split (return false from eventListItems and arrayItems) and "NUL in one
// item" and the others decode nothing.
func TestDecodeMalformedItemCostsOnlyItself(t *testing.T) {
	good := itemOf(lineV1)
	other := strings.Replace(good, "9b1a2c3d", "77777777", 1)
	list := func(items ...string) string {
		return `{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{"resourceVersion":"1","x":[1,2]},"items":[` + strings.Join(items, ",") + `]}`
	}
	f := func(name, body string, wantRecs int, wantItems []int, wantReason string) {
		t.Helper()
		recs, probs := decodeAll(t, body)
		if len(recs) != wantRecs {
			t.Errorf("%s: %d records, want %d (problems %v)", name, len(recs), wantRecs, probs)
		}
		var items []int
		for _, p := range probs {
			items = append(items, p.Item)
			if !strings.Contains(p.Reason, wantReason) {
				t.Errorf("%s: reason %q does not say %q", name, p.Reason, wantReason)
			}
		}
		if !equalInts(items, wantItems) {
			t.Errorf("%s: problems at items %v, want %v (%v)", name, items, wantItems, probs)
		}
		for _, r := range recs {
			if !bytes.HasPrefix(r.Raw, []byte(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level"`)) {
				t.Errorf("%s: stored form %.80s", name, r.Raw)
			}
		}
	}
	nul := strings.Replace(good, "alice", "al\x00ice", 1)
	f("NUL in one item", list(good, nul, other), 2, []int{1}, "invalid character")
	f("syntax error in one item", list(good, strings.Replace(good, `"verb":"delete",`, `"verb" "delete",,`, 1), other), 2, []int{1}, "invalid")
	f("bad literal in one item", list(good, strings.Replace(good, `"code":200`, `"code":tru`, 1), other), 2, []int{1}, "invalid")
	f("stray closing brace", list(good, good+"}", other), 2, []int{1}, "invalid")
	f("empty element", list(good, "", other), 2, []int{1}, "expected a JSON object")
	f("NUL in the first and the last", list(nul, good, nul), 1, []int{0, 2}, "invalid character")
	f("array with a bad item", "["+good+",\n"+nul+",\n"+other+"]", 2, []int{1}, "invalid character")
	f("pretty-printed list with a bad item", strings.ReplaceAll(list(good, nul, other), "},{", "},\n  {"), 2, []int{1}, "invalid character")
	// Boundaries lost: a string that never closes, a bracket that never
	// closes, a list cut short. Refused whole, nothing emitted.
	f("unterminated string", list(good, `{"level":"Metadata","auditID":"x}`, other), 0, []int{-1}, "JSON")
	f("unclosed bracket", list(good, `{"level":"Metadata","a":[1}`, other), 0, []int{-1}, "JSON")
	f("cut short", list(good, other)[:len(list(good, other))-5], 0, []int{-1}, "truncated JSON")
}

// TestDecodeDeepNestingDoesNotCrash: the fast decoder recursed once per
// level, so 20 MiB of '[' (under the 32 MiB body limit) overflowed the
// goroutine stack, a fatal error no recover can catch. Planted bug: remove
// the fastMaxDepth check in fast.go and this test kills the test binary.
func TestDecodeDeepNestingDoesNotCrash(t *testing.T) {
	const n = 20 << 20
	open := strings.Repeat("[", n)
	for name, body := range map[string]string{
		"list item": `{"kind":"EventList","items":[` + open,
		"array":     "[" + open,
		// Under the 16 MiB event limit, so the fast decoder sees it.
		"request body":     `{"level":"Request","auditID":"a","stage":"ResponseComplete","stageTimestamp":"2026-11-23T10:00:00Z","requestObject":` + open[:7<<20] + strings.Repeat("]", 7<<20) + `}`,
		"nested lists":     strings.Repeat(`{"items":[`, 200_000) + strings.Repeat("]}", 200_000),
		"closed deep item": `{"kind":"EventList","items":[{"requestObject":` + open[:7<<20] + strings.Repeat("]", 7<<20) + `}]}`,
	} {
		recs, probs := decodeAll(t, body)
		if len(recs) != 0 || len(probs) != 1 || !strings.Contains(probs[0].Reason, "nested deeper than 100 levels") {
			t.Errorf("%s: %d records, problems %v", name, len(recs), probs)
		}
	}
	var ev Event
	if err := DecodeStored([]byte(`{"requestObject":`+open+strings.Repeat("]", n)+`}`), &ev); err == nil {
		t.Error("DecodeStored took 20 million levels of nesting")
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestScanStringEveryOffset holds scanString, which jumps from quote to
// quote and counts the backslashes before each, to the byte-at-a-time scan
// it replaced: a quote, an escaped quote, escaped backslashes before a
// quote, a lone backslash or other bytes, at many offsets and with or
// without a closing quote, must end the string where the plain scan ends
// it. Planted bug: take any quote after a backslash as escaped (n == 0 for
// n%2 == 0): a string ending in an escaped backslash no longer ends.
func TestScanStringEveryOffset(t *testing.T) {
	naive := func(b []byte, i int) (int, bool) {
		for j := i + 1; j < len(b); j++ {
			switch b[j] {
			case '\\':
				j++
			case '"':
				return j + 1, true
			}
		}
		return 0, false
	}
	// '"'^1 == '#', '\\'^0x80 == 0xdc, '\\'-1 == '['.
	for _, ins := range []string{`"`, `\"`, `\\`, `\\"`, `\\\"`, `\\\\"`, `#`, "\xdc", `[`, `]`, "\x00", `\`} {
		for pos := 0; pos < 20; pos++ {
			for tail := 0; tail < 12; tail++ {
				b := []byte(`"` + strings.Repeat("a", pos) + ins + strings.Repeat("b", tail))
				if tail%3 == 0 {
					b = append(b, '"')
				}
				gotEnd, gotOK := scanString(b, 0)
				wantEnd, wantOK := naive(b, 0)
				if gotEnd != wantEnd || gotOK != wantOK {
					t.Errorf("scanString(%q) = %d, %v; want %d, %v", b, gotEnd, gotOK, wantEnd, wantOK)
				}
			}
		}
	}
}
