package local

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kubetrail/kubetrail/internal/audit"
	"github.com/kubetrail/kubetrail/internal/pipeline"
	"github.com/kubetrail/kubetrail/internal/testenv"
)

// BenchmarkSealWAL seals one WAL segment of 20,000 events of make bench's
// 200k corpus, as serve does under webhook load: the events are appended
// in batches of 400 (not timed), then Close seals the segment with the
// columns the committer built at ingest (timed). cpu-ns/op counts the
// whole process, the sealer's goroutine included.
func BenchmarkSealWAL(b *testing.B) {
	f, err := os.Open("/tmp/kubetrail-bench/audit-200000.log")
	if err != nil {
		b.Skipf("no corpus (make bench-quick writes it): %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 64<<20)
	var recs []audit.Record
	dec := audit.NewDecoder(audit.Limits{})
	for len(recs) < 20000 && sc.Scan() {
		dec.DecodeLine("corpus", len(recs)+1, sc.Bytes(), func(r audit.Record) { recs = append(recs, r) }, func(p audit.Problem) { b.Fatal(p.String()) })
	}
	size := 0
	for _, r := range recs {
		size += len(r.Raw)
	}
	b.SetBytes(int64(size))
	var cpu time.Duration
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		db, err := Open(filepath.Join(b.TempDir(), fmt.Sprint(i)), Options{NoSync: true, WALSegmentBytes: 1 << 30})
		if err != nil {
			b.Fatal(err)
		}
		for k := 0; k < len(recs); k += 400 {
			batch := &pipeline.Batch{Cluster: "bench", Received: time.Now(), Records: recs[k:min(k+400, len(recs))]}
			if _, err := db.Append(context.Background(), batch); err != nil {
				b.Fatal(err)
			}
		}
		cpu0 := testenv.CPUTime()
		b.StartTimer()
		if err := db.Close(); err != nil {
			b.Fatal(err)
		}
		cpu += testenv.CPUTime() - cpu0
	}
	b.ReportMetric(float64(cpu)/float64(b.N), "cpu-ns/op")
}
