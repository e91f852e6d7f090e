package local

import (
	"fmt"
	"testing"
	"time"

	"github.com/kubetrail/kubetrail/internal/audit"
	"github.com/kubetrail/kubetrail/internal/pipeline"
	"github.com/kubetrail/kubetrail/internal/query"
)

// TestTimeConjunctsMatchSubMicrosecondEvents: an event whose timestamps
// have nanoseconds (a hand-written log; the API server writes
// microseconds) is selected and counted by a time condition over the
// store, whose time column holds microseconds, exactly as the filter
// matches the event decoded, in segments and in the WAL, for every
// operator and a value at, between and around the events' microseconds.
// Mutation it catches: time compared with the event's nanoseconds (an
// event at 10:00:00.000000500Z was time>10:00:00Z to Match and not to
// the column, and time=10:00:00Z to the column and not to Match).
func TestTimeConjunctsMatchSubMicrosecondEvents(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(dir, Options{WALSegmentBytes: 8 << 10, SegmentFormat: 5, layout: segLayout{groupBytes: 4 << 10, blockBytes: 1 << 10, blockEvents: 4}})
	if err != nil {
		t.Fatal(err)
	}
	base := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	dec := audit.NewDecoder(audit.Limits{})
	for b := range 5 {
		batch := &pipeline.Batch{Cluster: "c", Received: base}
		for k := range 12 {
			ts := base.Add(time.Duration(b*12+k) * 333 * time.Nanosecond).Format(time.RFC3339Nano)
			line := fmt.Sprintf(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"a%d-%d","stage":"ResponseComplete","requestURI":"/x","verb":"get","user":{"username":"u"},"requestReceivedTimestamp":%q,"stageTimestamp":%q}`, b, k, ts, ts)
			dec.DecodeLine("t", 1, []byte(line), func(r audit.Record) { batch.Records = append(batch.Records, r) },
				func(p audit.Problem) { t.Fatal(p) })
		}
		if _, err := db.Append(t.Context(), batch); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { db.Close() })
	waitSealed(t, dir)
	r, err := OpenReader(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if len(r.segs) == 0 || len(r.head) == 0 {
		t.Fatalf("%d segments, %d WAL chunks: the test wants both", len(r.segs), len(r.head))
	}
	all := scanAll(t, dir)
	for _, op := range []string{"<", "<=", ">", ">=", "=", "!="} {
		for _, d := range []time.Duration{0, 500, 999, 1000, 1500, 2000, 2001, 5000, 20000} {
			src := "time" + op + base.Add(d).Format(time.RFC3339Nano)
			f, err := query.Compile(src)
			if err != nil {
				t.Fatal(err)
			}
			want := 0
			for i := range all {
				if f.Match(&all[i].ev, all[i].cluster) {
					want++
				}
			}
			n, err := r.CountMatching(Selection{Filter: f})
			if err != nil {
				t.Fatal(err)
			}
			selected := 0
			if err := r.Select(Selection{Filter: f}, func(*Hit) error { selected++; return nil }); err != nil {
				t.Fatal(err)
			}
			if int(n) != want || selected != want {
				t.Errorf("%s: %d counted, %d selected over the store, %d events match", src, n, selected, want)
			}
		}
	}
}
