package native

import (
	"fmt"
	"testing"

	"github.com/kubetrail/kubetrail/internal/rules"
)

// TestEvictsOldestEmptyKey: past maxKeys the group seen longest ago is
// forgotten, also when its key is empty (the 401s of clients without a
// user, grouped by user). The eviction took the empty key for "none
// found yet" and forgot, nearly always, a group seen later, keeping the
// stale empty one: the next 401 then completed a burst with one that
// should have been forgotten.
func TestEvictsOldestEmptyKey(t *testing.T) {
	e := load(t, `
- name: Burst
  condition: code=401
  threshold: {count: 2, window: 48h, by: [user]}
`)
	evs := []*rules.Event{ev(t, "anon-1", "", "get", "pods", "prod/x", 401, 0, "")}
	for i := 1; i < maxKeys; i++ {
		evs = append(evs, ev(t, fmt.Sprint("u", i), fmt.Sprint("user-", i), "get", "pods", "prod/x", 401, float64(i), ""))
	}
	// A new key: the empty one, seen longest ago, is forgotten.
	evs = append(evs, ev(t, "new", "newcomer", "get", "pods", "prod/x", 401, float64(maxKeys), ""),
		ev(t, "anon-2", "", "get", "pods", "prod/x", 401, float64(maxKeys+1), ""),
		// user-2 was not forgotten: its second 401 is a burst.
		ev(t, "u2-again", "user-2", "get", "pods", "prod/x", 401, float64(maxKeys+2), ""))
	got := fired(e, evs...)
	if len(got) != 1 || got[0] != "Burst:u2,u2-again" {
		t.Fatalf("fired %q, want only user-2's burst", got)
	}
}
