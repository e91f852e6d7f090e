package clickhouse

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/kubetrail/kubetrail/internal/store/local"
)

// TestFollow: each Poll gives the events inserted since the last one,
// once: not a copy of an event given before (a retried batch, a second
// collector), and an insert stamped a little before the last event given
// (another collector's clock behind) still shows up.
func TestFollow(t *testing.T) {
	_, s := newDB(t, "kt_follow")
	ctx := context.Background()
	f := s.Follow(local.Selection{})
	poll := func() []string {
		t.Helper()
		var ids []string
		if err := f.Poll(ctx, func(h *local.Hit) error { ids = append(ids, h.Event.AuditID); return nil }); err != nil {
			t.Fatal(err)
		}
		return ids
	}
	if got := poll(); len(got) != 0 {
		t.Fatalf("an empty store gave %v", got)
	}
	a := newCollector(t, s, CollectorOptions{})
	b := newCollector(t, s, CollectorOptions{})
	appendDrain := func(c *Collector, batch int) {
		t.Helper()
		if _, err := c.Append(ctx, testBatch(t, batch, 20)); err != nil {
			t.Fatal(err)
		}
		if err := c.Drain(ctx); err != nil {
			t.Fatal(err)
		}
	}
	appendDrain(a, 0)
	if got, want := poll(), wantIDs(0, 1, 20); !slices.Equal(got, want) {
		t.Fatalf("first poll: %v, want %v", got, want)
	}
	appendDrain(b, 0) // the same events from another collector
	appendDrain(a, 1)
	appendDrain(a, 0) // and again from the first
	if got, want := poll(), wantIDs(1, 2, 20); !slices.Equal(got, want) {
		t.Fatalf("after new events and copies: %v, want only %v", got, want)
	}
	if got := poll(); len(got) != 0 {
		t.Fatalf("nothing new, yet %v", got)
	}
	// An insert stamped 5 s before the last event given.
	rows, _ := appendRows(nil, testBatch(t, 2, 20))
	st := stamper{seq: f.last - uint64(5*time.Second)}
	body, err := st.add(nil, rows)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.insertRows(ctx, body); err != nil {
		t.Fatal(err)
	}
	if got, want := poll(), wantIDs(2, 3, 20); !slices.Equal(got, want) {
		t.Fatalf("a late insert: %v, want %v", got, want)
	}
}
