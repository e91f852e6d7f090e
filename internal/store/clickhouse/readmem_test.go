package clickhouse

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/kubetrail/kubetrail/internal/audit"
	"github.com/kubetrail/kubetrail/internal/pipeline"
	"github.com/kubetrail/kubetrail/internal/store/local"
)

// TestReadsHoldNoKeyPerEvent: Select and Export of a store of 150,000
// events (each stored twice) hold no memory per event in kubetrail: the
// heap grows by less than 1 MiB while they run, where a map of the keys
// seen (16 bytes a key and the map's own) holds several. ClickHouse keeps
// one row per key (LIMIT 1 BY key after ORDER BY seq, ord).
//
// Planted: Export and Select dropping copies with a map of every key
// seen, as they did (heap grew 5-9 MiB).
func TestReadsHoldNoKeyPerEvent(t *testing.T) {
	_, s := newDB(t, "kt_readmem")
	ctx := context.Background()
	const batches, per = 30, 5000
	b := s.Bulk()
	for copy := range 2 {
		for i := range batches {
			if _, err := b.Append(ctx, smallBatch(t, i, per)); err != nil {
				t.Fatal(err)
			}
		}
		if err := b.Flush(ctx); err != nil {
			t.Fatalf("copy %d: %v", copy, err)
		}
	}
	var ms runtime.MemStats
	heap := func() int64 {
		runtime.GC()
		runtime.ReadMemStats(&ms)
		return int64(ms.HeapAlloc)
	}
	check := func(name string, read func(each func()) error) {
		t.Helper()
		base := heap()
		var n, grew int64
		err := read(func() {
			n++
			if n%10000 == 0 {
				grew = max(grew, heap()-base)
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		if n != batches*per {
			t.Errorf("%s gave %d events, want each of %d once", name, n, batches*per)
		}
		if grew > 1<<20 {
			t.Errorf("%s: the heap grew %d KiB over %d events; it must not grow with the store", name, grew>>10, n)
		}
	}
	check("Select", func(each func()) error {
		return s.Select(ctx, local.Selection{}, func(*local.Hit) error { each(); return nil })
	})
	check("Export", func(each func()) error {
		return s.Export(ctx, local.ScanOptions{}, func(local.Stored) error { each(); return nil })
	})
}

// smallBatch is a batch of per small events, auditIDs b-0 to b-(per-1).
func smallBatch(t testing.TB, b, per int) *pipeline.Batch {
	t.Helper()
	var lines []byte
	at := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	for i := range per {
		ts := at.Add(time.Duration(b*per+i) * time.Millisecond).Format(time.RFC3339Nano)
		lines = fmt.Appendf(lines, `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"%d-%d","stage":"ResponseComplete","verb":"get","requestURI":"/","requestReceivedTimestamp":%q,"stageTimestamp":%q}`+"\n", b, i, ts, ts)
	}
	var recs []audit.Record
	audit.NewDecoder(audit.Limits{}).DecodeLines("gen", lines, func(r audit.Record) { recs = append(recs, r) },
		func(p audit.Problem) { t.Fatalf("%v", p) })
	return &pipeline.Batch{Cluster: "c1", Received: time.Now(), Records: recs}
}
