package clickhouse

import (
	"context"
	"io"
	"slices"
	"testing"
	"time"

	"github.com/kubetrail/kubetrail/internal/pipeline"
	"github.com/kubetrail/kubetrail/internal/store/local"
)

// TestCopiesCountOnceBeforeAnyMerge inserts one batch three times, the
// copies two minutes after the first, with merges stopped, so that every copy is a row
// of its own when the store is read, as after a collector's crash or with
// two collectors before ClickHouse merged: Count, Stats (counts and
// bytes), Span, Select, Export, Arrivals after a cursor and Follow each
// count every event once and give its first arrival. Planted bugs this
// catches (each tried): Stats counting rows (count()) or summing every
// row's size; Span counting rows; Select or Export without LIMIT 1 BY
// key; a read after a cursor that does not ask which keys were
// stored before it (laterCopies returning nothing).
func TestCopiesCountOnceBeforeAnyMerge(t *testing.T) {
	_, s := newDB(t, "kt_copies")
	ctx := context.Background()
	if err := s.c.exec(ctx, "SYSTEM STOP MERGES kt_copies.events"); err != nil {
		t.Fatal(err)
	}
	const per = 15
	a, b := testBatch(t, 0, per), testBatch(t, 1, per)
	// a arrives first, stamped two minutes ago: far enough back that a
	// follow's margin no longer holds its keys when its copies arrive.
	first := uint64(time.Now().Add(-2 * time.Minute).UnixNano())
	rows, _ := appendRows(nil, a)
	st := stamper{seq: first}
	body, err := st.add(nil, rows)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.insertRows(ctx, body); err != nil {
		t.Fatal(err)
	}
	f := s.Follow(local.Selection{})
	poll := func() []string {
		t.Helper()
		var ids []string
		if err := f.Poll(ctx, func(h *local.Hit) error { ids = append(ids, h.Event.AuditID); return nil }); err != nil {
			t.Fatal(err)
		}
		return ids
	}
	if got, want := poll(), wantIDs(0, 1, per); !slices.Equal(got, want) {
		t.Fatalf("follow, first poll: %v, want %v", got, want)
	}
	if _, err := s.Append(ctx, b); err != nil {
		t.Fatal(err)
	}
	if got, want := poll(), wantIDs(1, 2, per); !slices.Equal(got, want) {
		t.Fatalf("follow, second poll: %v, want %v", got, want)
	}
	// a again, twice: copies two minutes after its first arrival, beyond
	// the follow's margin.
	for range 2 {
		if _, err := s.Append(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	var n int64
	err = s.c.query(ctx, "SELECT count() FROM kt_copies.events FORMAT RowBinary", func(body io.Reader) error {
		r := newRowReader(body)
		n = r.i64()
		return r.err
	})
	if err != nil || n != 4*per {
		t.Fatalf("the table holds %d rows, %v; want %d, every copy a row", n, err, 4*per)
	}

	want := wantIDs(0, 2, per)
	if got := auditIDs(t, s); !slices.Equal(got, want) {
		t.Errorf("select: %v, want %v", got, want)
	}
	if got, err := s.Count(ctx, local.Selection{}); err != nil || got != 2*per {
		t.Errorf("count: %d, %v; want %d", got, err, 2*per)
	}
	var bytes int64
	for _, batch := range []*pipeline.Batch{a, b} {
		for _, r := range batch.Records {
			bytes += int64(len(r.Raw))
		}
	}
	for _, o := range []local.StatsOptions{{}, {By: []local.Column{local.ColCode}}, {Bytes: true},
		{By: []local.Column{local.ColCode}, Bytes: true}, {Interval: time.Hour.Microseconds(), Bytes: true}} {
		want := local.Totals{Count: 2 * per}
		if o.Bytes {
			want.Bytes = bytes
		}
		_, tot, err := s.Stats(ctx, local.Selection{}, o)
		if err != nil || tot != want {
			t.Errorf("stats %+v: totals %+v, %v; want %+v", o, tot, err, want)
		}
	}
	if got, _, _, err := s.Span(ctx); err != nil || got != 2*per {
		t.Errorf("span: %d events, %v; want %d", got, err, 2*per)
	}
	var exported []string
	err = s.Export(ctx, local.ScanOptions{}, func(st local.Stored) error {
		exported = append(exported, string(st.Raw))
		return nil
	})
	var wantRaw []string
	for _, batch := range []*pipeline.Batch{a, b} {
		for _, r := range batch.Records {
			wantRaw = append(wantRaw, string(r.Raw))
		}
	}
	if err != nil || !slices.Equal(exported, wantRaw) {
		t.Errorf("export: %d events, %v; want the %d events once, in first-arrival order", len(exported), err, len(wantRaw))
	}

	// After a cursor: b is new; the copies of a are not, their first
	// arrival being at the cursor.
	var arrived []string
	err = s.Arrivals(ctx, local.Selection{}, first, nil, func(h *local.Hit, _ uint64) error {
		arrived = append(arrived, h.Event.AuditID)
		return nil
	})
	if want := wantIDs(1, 2, per); err != nil || !slices.Equal(arrived, want) {
		t.Errorf("arrivals after the first insert: %v, %v; want %v", arrived, err, want)
	}
	if got := poll(); len(got) != 0 {
		t.Errorf("follow after the copies of a: %v, want nothing new", got)
	}
}

// TestRetriedInsertCountsOnceAfterACursor: an insert sent twice with the
// same body (a Bulk whose Flush failed after ClickHouse had written the
// rows, its answer lost, then flushed again: Flush keeps the rows and
// their stamps for the retry) leaves two rows per event with one key and
// one arrival stamp. A read after a cursor by a reader that names the
// keys it holds (detect --follow, Follow) must still give each event
// once.
func TestRetriedInsertCountsOnceAfterACursor(t *testing.T) {
	_, s := newDB(t, "kt_reflush")
	ctx := context.Background()
	if err := s.c.exec(ctx, "SYSTEM STOP MERGES kt_reflush.events"); err != nil {
		t.Fatal(err)
	}
	const per = 10
	if _, err := s.Append(ctx, testBatch(t, 0, per)); err != nil {
		t.Fatal(err)
	}
	cursor, err := s.LastSeq(ctx)
	if err != nil {
		t.Fatal(err)
	}
	bulk := s.Bulk()
	if _, err := bulk.Append(ctx, testBatch(t, 1, per)); err != nil {
		t.Fatal(err)
	}
	body := slices.Clone(bulk.body)
	if err := bulk.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.insertRows(ctx, body); err != nil { // the retry
		t.Fatal(err)
	}
	var arrived []string
	none := func(local.Key) bool { return false }
	err = s.Arrivals(ctx, local.Selection{}, cursor, none, func(h *local.Hit, _ uint64) error {
		arrived = append(arrived, h.Event.AuditID)
		return nil
	})
	if want := wantIDs(1, 2, per); err != nil || !slices.Equal(arrived, want) {
		t.Errorf("arrivals after the cursor: %v, %v; want %v", arrived, err, want)
	}
	if got, want := auditIDs(t, s), wantIDs(0, 2, per); !slices.Equal(got, want) {
		t.Errorf("select: %v, want %v", got, want)
	}
}
