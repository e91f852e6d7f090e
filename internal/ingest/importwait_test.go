package ingest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kubetrail/kubetrail/internal/pipeline"
)

// fullSpool refuses its first n batches as unavailable (a collector whose
// spool is full), then stores every event.
type fullSpool struct {
	n, refused int
	stored     int
}

func (f *fullSpool) Append(_ context.Context, b *pipeline.Batch) (pipeline.Result, error) {
	if f.refused < f.n {
		f.refused++
		return pipeline.Result{}, fmt.Errorf("%w: the collector holds 1024 bytes ClickHouse has not taken", pipeline.ErrUnavailable)
	}
	f.stored += len(b.Records)
	return pipeline.Result{Stored: len(b.Records)}, nil
}

// TestImportWaitsForAFullSpool: with Waiting set (import --store), a
// batch refused as unavailable waits, with Waiting told each time, and
// is stored once the sink takes it: every event, none twice; without
// it, the refusal ends the import; a cancelled wait ends it too.
func TestImportWaitsForAFullSpool(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	if err := os.WriteFile(path, benchLog(500), 0o600); err != nil {
		t.Fatal(err)
	}
	sink := &fullSpool{n: 3}
	var told []time.Duration
	cfg := ImportConfig{Waiting: func(err error, retryIn time.Duration) {
		if !errors.Is(err, pipeline.ErrUnavailable) {
			t.Errorf("Waiting told %v, want the refusal", err)
		}
		told = append(told, retryIn)
	}}
	sum, err := Import(context.Background(), sink, []string{path}, nil, cfg)
	if err != nil || sum.Stored != 500 || sink.stored != 500 {
		t.Fatalf("import: %v, stored %d (sink %d); want all 500 after the waits", err, sum.Stored, sink.stored)
	}
	if len(told) != 3 || told[1] <= told[0] {
		t.Errorf("Waiting told %v; want 3 waits, growing", told)
	}

	if _, err := Import(context.Background(), &fullSpool{n: 1}, []string{path}, nil, ImportConfig{}); !errors.Is(err, pipeline.ErrUnavailable) {
		t.Errorf("without Waiting: %v; want the refusal to end the import", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cfg.Waiting = func(error, time.Duration) { cancel() }
	_, err = Import(ctx, &fullSpool{n: 1 << 30}, []string{path}, nil, cfg)
	if err == nil || !strings.Contains(err.Error(), "store batch") {
		t.Errorf("cancelled while waiting: %v; want it to end with the refusal", err)
	}
}
