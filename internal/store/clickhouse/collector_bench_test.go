package clickhouse

import (
	"bufio"
	"context"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kubetrail/kubetrail/internal/audit"
	"github.com/kubetrail/kubetrail/internal/pipeline"
	"github.com/kubetrail/kubetrail/internal/store/local"
	"github.com/kubetrail/kubetrail/internal/wal"
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

// cpuTime is the process's user + system CPU time so far: on a machine
// that others share, steadier than the wall time a benchmark reports.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU reports the CPU time since start per op, in ms.
func reportCPU(b *testing.B, start time.Duration) {
	b.ReportMetric(float64(cpuTime(b)-start)/float64(b.N)/1e6, "cpu-ms/op")
}

// BenchmarkEncodeRows is the collector's CPU per batch before the WAL.
func BenchmarkEncodeRows(b *testing.B) {
	batches := benchBatches(b, 20000, 400)
	buf := make([]byte, 0, 4<<20)
	b.ReportAllocs()
	b.ResetTimer()
	cpu := cpuTime(b)
	for range b.N {
		for _, bt := range batches {
			buf, _ = appendRows(buf[:0], bt)
		}
	}
	reportCPU(b, cpu)
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

// BenchmarkCollectorRows is the kubetrail side of a collector for 20,000
// events, without ClickHouse: Append (rows encoded, keyed, written to the
// WAL; no fsync) and the insert's body streamed from the WAL's segments,
// stamped, to io.Discard, as shipOnce streams it to ClickHouse. It is
// the collector's CPU per event beside the decoder's.
func BenchmarkCollectorRows(b *testing.B) {
	batches := benchBatches(b, 20000, 400)
	b.ReportAllocs()
	b.ResetTimer()
	cpu := cpuTime(b)
	for range b.N {
		b.StopTimer()
		dir := b.TempDir()
		c, err := NewCollector(&Store{}, CollectorOptions{Dir: dir, MaxSpoolBytes: 1 << 40, NoSync: true})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		for _, bt := range batches {
			if _, err := c.Append(context.Background(), bt); err != nil {
				b.Fatal(err)
			}
		}
		if err := c.rotate(); err != nil {
			b.Fatal(err)
		}
		var paths []string
		for _, seq := range c.closedSegments() {
			paths = append(paths, wal.SegmentPath(filepath.Join(dir, "wal"), seq))
		}
		st := stamper{seq: 1}
		if _, err := c.stream(io.Discard, paths, &window{}, &st); err != nil {
			b.Fatal(err)
		}
		if st.ord != 20000 {
			b.Fatalf("streamed %d rows, want 20000", st.ord)
		}
		b.StopTimer()
		c.Close()
		b.StartTimer()
	}
	reportCPU(b, cpu)
	b.ReportMetric(float64(b.N*20000)/b.Elapsed().Seconds(), "events/s")
}
