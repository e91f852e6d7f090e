//go:build !race

package ingest

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/kubetrail/kubetrail/internal/audit"
)

// TestImportBadLinesMemory: a file of millions of bad lines costs a count,
// not a Problem per line. Before, each 1 MiB chunk held every problem of
// its lines, and EachRecord kept them all: 20 million bad lines (40 MB)
// took import to 342 MB and policy simulate to 5.5 GB; now 49 and 40 MB.
// Here about 18 MiB. Planted bugs: drop the per-chunk cap in decode (231
// MiB) or keep every problem in EachRecord (777 MiB).
func TestImportBadLinesMemory(t *testing.T) {
	const lines = 4_000_000
	path := filepath.Join(t.TempDir(), "garbage.log")
	if err := os.WriteFile(path, bytes.Repeat([]byte("x\n"), lines), 0o600); err != nil {
		t.Fatal(err)
	}
	var told int
	var skipped int64
	var err error
	heap := peakHeap(func() {
		skipped, err = EachRecord(context.Background(), []string{path}, nil, audit.Limits{}, func(*audit.Record) {
			t.Error("a record from garbage")
		}, func(audit.Problem) { told++ })
	})
	if err != nil {
		t.Fatal(err)
	}
	if skipped != lines || told != 100 {
		t.Errorf("skipped %d, told of %d; want %d and the first 100", skipped, told, lines)
	}
	t.Logf("peak heap +%.1f MiB for %d bad lines", float64(heap)/(1<<20), lines)
	if heap > 64<<20 {
		t.Errorf("peak heap grew by %.1f MiB for %d bad lines, over the 64 MiB bound", float64(heap)/(1<<20), lines)
	}
}
