package query

import (
	"strings"
	"testing"
)

func TestWarnings(t *testing.T) {
	f := func(src string, want ...string) {
		t.Helper()
		flt, err := Compile(src)
		if err != nil {
			t.Fatal(err)
		}
		got := strings.Join(flt.Warnings(), "\n")
		for _, w := range want {
			if !strings.Contains(got, w) {
				t.Errorf("%s: warnings %q lack %q", src, got, w)
			}
		}
		if len(want) == 0 && got != "" {
			t.Errorf("%s: unexpected warnings %q", src, got)
		}
	}
	f("verb=lst", `verb=lst: "lst" is not a verb the API server writes, so it matches nothing (did you mean list?)`)
	f("verb in (get, delet, wtch)", "(did you mean delete?)", "(did you mean watch?)")
	f("stage=ResponseComplete verb=get level=RequestResponse")
	f("verb=GET", "(did you mean get?)")
	f("verb=dele*")
	f("not verb=lst") // a negation is not an empty answer
	// Field names are case-insensitive: the warning must not depend on
	// how the field was written.
	f("Verb=lst", `"lst" is not a verb the API server writes`)
	f("VERB in (get, lst)", `"lst" is not a verb`)
	// The authorizer's decision is allow or forbid, lower-case.
	f("decision=Forbid", `decision=Forbid: "Forbid" is not a decision the API server writes, so it matches nothing (did you mean forbid?)`)
	f("annotation[authorization.k8s.io/decision]=deny", `"deny" is not a decision`)
	f(`decision in (allow, forbid) decision=""`)
	// Audit timestamps hold microseconds: an instant finer than that is
	// no event's (mutation caught: no warning, an empty answer unsaid).
	f("time=2026-01-02T15:04:05.123456789Z", `time=2026-01-02T15:04:05.123456789Z: audit timestamps hold microseconds, so a time with more than 6 fraction digits matches nothing (write 2026-01-02T15:04:05.123456Z, or a range)`)
	f("received=2026-01-02T15:04:05.1234567+02:00", "received=2026-01-02T15:04:05.1234567+02:00: audit timestamps hold microseconds", "write 2026-01-02T15:04:05.123456+02:00")
	f("time=2026-01-02T15:04:05.123456Z time>=2026-01-02T15:04:05.123456789Z")
}
