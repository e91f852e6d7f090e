package clickhouse

import (
	"context"
	"fmt"
	"io"
	"slices"
	"testing"
	"time"

	"github.com/kubetrail/kubetrail/internal/audit"
	"github.com/kubetrail/kubetrail/internal/pipeline"
	"github.com/kubetrail/kubetrail/internal/store/local"
)

// scanned is one event ScanFrom gave.
type scanned struct {
	raw string
	pos Position
}

func scanAll(t *testing.T, s *Store, from Position, page int) []scanned {
	t.Helper()
	var out []scanned
	err := s.scanFrom(context.Background(), from, page, func(st local.Stored, p Position) error {
		out = append(out, scanned{string(st.Raw), p})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func scanBatch(cluster string, from, n int) *pipeline.Batch {
	b := &pipeline.Batch{Cluster: cluster, Received: time.Date(2026, 11, 1, 0, 0, from, 0, time.UTC)}
	for i := from; i < from+n; i++ {
		raw := fmt.Sprintf(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"a%d","stage":"ResponseComplete","requestURI":"/api","verb":"get","user":{"username":"u"},"stageTimestamp":"2026-11-01T00:00:%02d.000000Z"}`, i, i%60)
		var ev audit.Event
		if err := audit.DecodeStored([]byte(raw), &ev); err != nil {
			panic(err)
		}
		b.Records = append(b.Records, audit.Record{Raw: []byte(raw), Event: ev})
	}
	return b
}

// TestScanFrom: read in pages of 7 or in one page, ScanFrom gives every
// event once in Export's order, copies of earlier events left out (met in
// an earlier page or in the same one); resumed after any
// event's position it gives exactly the events after it, also where two
// batches share an arrival stamp (two collectors' clocks).
func TestScanFrom(t *testing.T) {
	_, s := newDB(t, "kt_scanfrom")
	ctx := context.Background()
	// Copies stay rows of their own until the test reads them: a merge
	// would remove them, and with them what the test is about.
	if err := s.c.exec(ctx, "SYSTEM STOP MERGES kt_scanfrom.events"); err != nil {
		t.Fatal(err)
	}
	for _, b := range []*pipeline.Batch{scanBatch("a", 0, 10), scanBatch("b", 10, 12), scanBatch("a", 0, 5), scanBatch("a", 22, 9)} {
		if _, err := s.Append(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	// Two stores with one clock: two batches with one arrival stamp.
	tie := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	s.now = func() time.Time { return tie }
	s2 := &Store{c: s.c, db: s.db, now: s.now}
	if _, err := s.Append(ctx, scanBatch("a", 31, 6)); err != nil {
		t.Fatal(err)
	}
	if _, err := s2.Append(ctx, scanBatch("c", 37, 6)); err != nil {
		t.Fatal(err)
	}
	var rows int64
	err := s.c.query(ctx, "SELECT count() FROM kt_scanfrom.events FORMAT RowBinary", func(body io.Reader) error {
		r := newRowReader(body)
		rows = r.i64()
		return r.err
	})
	if err != nil || rows != 48 {
		t.Fatalf("the table holds %d rows, %v; want 48, copies included", rows, err)
	}
	var export []string
	if err := s.Export(ctx, local.ScanOptions{}, func(st local.Stored) error { export = append(export, string(st.Raw)); return nil }); err != nil {
		t.Fatal(err)
	}
	all := scanAll(t, s, Position{}, 7)
	if len(all) != 43 || len(export) != 43 {
		t.Fatalf("scanned %d events, exported %d; want 43", len(all), len(export))
	}
	var raws []string
	for _, e := range all {
		raws = append(raws, e.raw)
	}
	if !slices.Equal(raws[:31], export[:31]) {
		t.Errorf("ScanFrom's order is not Export's")
	}
	slices.Sort(raws)
	slices.Sort(export)
	if !slices.Equal(raws, export) || len(slices.Compact(raws)) != 43 {
		t.Errorf("ScanFrom does not give each stored event once")
	}
	// In one page, copies meet their first arrival there.
	if one := scanAll(t, s, Position{}, 1000); !slices.Equal(one, all) {
		t.Errorf("read in one page: %d events, want the %d read in pages of 7", len(one), len(all))
	}
	for i, e := range all {
		rest := scanAll(t, s, e.pos, 7)
		if !slices.Equal(rest, all[i+1:]) {
			t.Fatalf("resumed after event %d (%+v): %d events, want the %d after it", i, e.pos, len(rest), len(all)-i-1)
		}
	}
}
