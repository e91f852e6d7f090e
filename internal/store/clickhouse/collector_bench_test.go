package clickhouse

import (
	"bufio"
	"context"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/kubetrail/kubetrail/internal/audit"
	"github.com/kubetrail/kubetrail/internal/pipeline"
	"github.com/kubetrail/kubetrail/internal/store/local"
)

// benchBatches reads KUBETRAIL_BENCH_CORPUS (a bench/gen corpus) into
// batches of per events; the benchmarks skip without it.
func benchBatches(b *testing.B, n, per int) []*pipeline.Batch {
	b.Helper()
	path := os.Getenv("KUBETRAIL_BENCH_CORPUS")
	if path == "" {
		b.Skip("KUBETRAIL_BENCH_CORPUS names no bench/gen corpus")
	}
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 16<<20)
	var lines []byte
	for i := 0; i < n && sc.Scan(); i++ {
		lines = append(append(lines, sc.Bytes()...), '\n')
	}
	var recs []audit.Record
	audit.NewDecoder(audit.Limits{}).DecodeLines("corpus", lines, func(r audit.Record) { recs = append(recs, r) }, func(audit.Problem) {})
	var out []*pipeline.Batch
	for i := 0; i < len(recs); i += per {
		out = append(out, &pipeline.Batch{Cluster: "bench", Received: time.Now(), Records: recs[i:min(i+per, len(recs))]})
	}
	return out
}

// BenchmarkSpool compares what a sender waits for: the collector's WAL
// (rows encoded, fsync'd) and the embedded store (ADR 0019's choice),
// four senders of 400-event batches.
func BenchmarkSpool(b *testing.B) {
	batches := benchBatches(b, 40000, 400)
	send := func(b *testing.B, open func() (pipeline.Sink, func() error)) {
		b.ResetTimer()
		for range b.N {
			b.StopTimer()
			sink, closeSink := open()
			b.StartTimer()
			var wg sync.WaitGroup
			next := make(chan *pipeline.Batch)
			for range 4 {
				wg.Go(func() {
					for bt := range next {
						if _, err := sink.Append(context.Background(), bt); err != nil {
							b.Error(err)
						}
					}
				})
			}
			for _, bt := range batches {
				next <- bt
			}
			close(next)
			wg.Wait()
			b.StopTimer()
			closeSink()
			b.StartTimer()
		}
		b.ReportMetric(float64(b.N*len(batches)*400)/b.Elapsed().Seconds(), "events/s")
	}
	b.Run("collector-wal", func(b *testing.B) {
		send(b, func() (pipeline.Sink, func() error) {
			c, err := NewCollector(&Store{}, CollectorOptions{Dir: b.TempDir(), MaxSpoolBytes: 1 << 40})
			if err != nil {
				b.Fatal(err)
			}
			return c, c.Close
		})
	})
	b.Run("embedded-store", func(b *testing.B) {
		send(b, func() (pipeline.Sink, func() error) {
			db, err := local.Open(b.TempDir(), local.Options{})
			if err != nil {
				b.Fatal(err)
			}
			return db, db.Close
		})
	})
}

// BenchmarkEncodeRows is the collector's CPU per batch before the WAL.
func BenchmarkEncodeRows(b *testing.B) {
	batches := benchBatches(b, 20000, 400)
	buf := make([]byte, 0, 4<<20)
	b.ResetTimer()
	for range b.N {
		for _, bt := range batches {
			buf, _ = appendRows(buf[:0], bt)
		}
	}
	b.ReportMetric(float64(b.N*len(batches)*400)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkShip is one collector's backlog of 20,000 events shipped to
// the package's ClickHouse server, in inserts of up to 32 MiB.
func BenchmarkShip(b *testing.B) {
	batches := benchBatches(b, 20000, 400)
	_, s := newDB(b, "kt_bench_ship")
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		c, err := NewCollector(s, CollectorOptions{Dir: b.TempDir(), MaxSpoolBytes: 1 << 40, NoSync: true})
		if err != nil {
			b.Fatal(err)
		}
		for _, bt := range batches {
			if _, err := c.Append(context.Background(), bt); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
		if err := c.Drain(context.Background()); err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
	b.ReportMetric(float64(b.N*20000)/b.Elapsed().Seconds(), "events/s")
}
