package clickhouse

import (
	"context"
	"testing"

	"github.com/kubetrail/kubetrail/internal/pipeline"
)

// TestBulkCountsCopiesAcrossItsBatches: a copy of an event that an
// earlier batch of the same Bulk insert holds counts as a duplicate, as
// a copy within one batch does, so that migrate's counts of events moved
// and already there add up; the store holds each event once.
//
// Planted: Bulk.Append with a map of keys per batch only (as before):
// the second batch counted 10 stored, 0 duplicates.
func TestBulkCountsCopiesAcrossItsBatches(t *testing.T) {
	_, s := newDB(t, "kt_bulk_copies")
	ctx := context.Background()
	b := s.Bulk()
	add := func(batch *pipeline.Batch, stored, dups int) {
		t.Helper()
		res, err := b.Append(ctx, batch)
		if err != nil {
			t.Fatal(err)
		}
		if res.Stored != stored || res.Duplicates != dups {
			t.Errorf("Append: %d stored, %d duplicates; want %d, %d", res.Stored, res.Duplicates, stored, dups)
		}
	}
	add(testBatch(t, 0, 10), 10, 0)
	add(testBatch(t, 0, 10), 0, 10)
	add(testBatch(t, 1, 10), 10, 0)
	if err := b.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	// After a Flush the next insert starts afresh: a copy of a stored
	// event is inserted and counted as Store.Append counts it.
	add(testBatch(t, 1, 10), 10, 0)
	if err := b.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	n, _, _, err := s.Span(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n != 20 {
		t.Errorf("the store holds %d events, want 20", n)
	}
}
