package cli

import (
	"io"
	"os"
	"strings"
	"testing"

	"github.com/kubetrail/kubetrail/internal/testenv"
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
			cpu := testenv.CPUTime()
			for b.Loop() {
				var errb strings.Builder
				if code := Main([]string{"query", "--data", dir, "-o", "jsonl", q.filter}, strings.NewReader(""), io.Discard, &errb); code != 0 {
					b.Fatalf("exit %d: %s", code, errb.String())
				}
			}
			b.ReportMetric(float64(testenv.CPUTime()-cpu)/float64(b.N), "cpu-ns/op")
		})
	}
}
