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
}
