package suggest

import "testing"

func TestClosest(t *testing.T) {
	f := func(v string, cands []string, want string) {
		t.Helper()
		if got := Closest(v, cands); got != want {
			t.Errorf("Closest(%q) = %q, want %q", v, got, want)
		}
	}
	fields := []string{"readOnly", "mountPath", "name", "omitStages", "level"}
	f("readonly", fields, "readOnly")
	f("omitStage", fields, "omitStages")
	f("lvel", fields, "level")
	f("lveel", fields, "level")
	f("nmae", fields, "name") // a transposition is one edit
	f("xyz", fields, "")
	f("completely-different", fields, "")
	if d := Distance("ab", "ba"); d != 1 {
		t.Errorf("Distance(ab, ba) = %d", d)
	}
}
