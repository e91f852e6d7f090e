package cli

import (
	"io"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// BenchmarkQueryPrintCommand runs `kubetrail query -o jsonl FILTER` as
// the command does, output discarded, over the data folder named by
// KUBETRAIL_BENCH_DATA (a store of bench/gen's corpus, as
// internal/investigate's benchmarks use):
//
//	KUBETRAIL_BENCH_DATA=/tmp/data go test ./internal/cli -run '^$' -bench QueryPrintCommand
func BenchmarkQueryPrintCommand(b *testing.B) {
	dir := os.Getenv("KUBETRAIL_BENCH_DATA")
	if dir == "" {
		b.Skip("KUBETRAIL_BENCH_DATA names no data folder")
	}
	for _, q := range []struct{ name, filter string }{
		{"one-user", "user=admin"},
		{"secrets", "resource=secrets"},
		{"exec", "subresource=exec"},
	} {
		b.Run(q.name, func(b *testing.B) {
			cpu := benchCPU()
			for b.Loop() {
				var errb strings.Builder
				if code := Main([]string{"query", "--data", dir, "-o", "jsonl", q.filter}, strings.NewReader(""), io.Discard, &errb); code != 0 {
					b.Fatalf("exit %d: %s", code, errb.String())
				}
			}
			b.ReportMetric(float64(benchCPU()-cpu)/float64(b.N), "cpu-ns/op")
		})
	}
}

// benchCPU is the CPU time the process has used: on a shared machine it
// varies much less than wall time.
func benchCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
