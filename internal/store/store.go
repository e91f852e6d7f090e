// Package store is the interface the commands, the HTTP API, the
// investigations and the rules need of a store, with its two
// implementations: the embedded store (internal/store/local) in a data
// folder, and ClickHouse (internal/store/clickhouse) for many collectors
// and clusters. docs/adr/0013-clickhouse-store-phase-1.md records the
// choice; one conformance suite (store_test.go) runs unchanged against
// both.
//
// The selection, hit, statistics and export types are still the embedded
// store's (local.Selection, local.Hit, local.StatsOptions, local.Stored):
// every caller uses them already, and a ClickHouse hit fills only their
// exported fields.
package store

import (
	"context"
	"fmt"
	"strings"

	"github.com/kubetrail/kubetrail/internal/pipeline"
	"github.com/kubetrail/kubetrail/internal/store/clickhouse"
	"github.com/kubetrail/kubetrail/internal/store/local"
)

// Reader answers questions over the stored events. Implementations are
// safe for concurrent use; each call sees the events stored when it began
// (or later ones). Hit and Stored slices are valid only during a
// callback; a callback's error stops the call and is returned.
type Reader interface {
	// Select calls fn for every event the selection selects, in arrival
	// order. A hit carries the event and its stored bytes when
	// sel.NeedEvent asked for them (ClickHouse always sets both).
	Select(ctx context.Context, sel local.Selection, fn func(*local.Hit) error) error
	// Count returns how many events Select would call fn for.
	Count(ctx context.Context, sel local.Selection) (int64, error)
	// Stats groups the selected events as local.Reader.StatsOf does, in
	// the same order (local.SortGroups).
	Stats(ctx context.Context, sel local.Selection, o local.StatsOptions) ([]local.Group, local.Totals, error)
	// Export calls fn for every stored event in arrival order with its
	// stored bytes exactly, bounded by event time and cluster (o.From and
	// o.FS apply to the embedded store only).
	Export(ctx context.Context, o local.ScanOptions, fn func(local.Stored) error) error
	// Span returns how many events the store holds and their time range
	// (unix µs), for telling a person what an empty answer missed.
	Span(ctx context.Context) (n int, minT, maxT int64, err error)
	// Close releases what the reader holds.
	Close() error
}

// Store is a Reader that also takes events. Append returns only when the
// batch is stored (pipeline.Sink), and a batch appended again, whole or in
// part, is counted once in every later answer.
type Store interface {
	Reader
	pipeline.Sink
}

var (
	_ Store = (*Local)(nil)
	_ Store = (*clickhouse.Store)(nil)
)

// URLForms is what --store accepts, for help texts and errors.
const URLForms = clickhouse.URLForms

// IsRemote reports whether a --store value names a store other than the
// embedded one in --data.
func IsRemote(url string) bool { return url != "" }

// OpenReader opens the store a --store URL names for reading; an empty URL
// is the embedded store in dir, read without taking its write lock.
func OpenReader(ctx context.Context, url, dir string) (Reader, error) {
	if url == "" {
		return &Local{dir: dir}, nil
	}
	return openClickHouse(ctx, url)
}

func openClickHouse(ctx context.Context, url string) (*clickhouse.Store, error) {
	if !IsClickHouse(url) {
		return nil, fmt.Errorf("%q: want %s (or no --store for the embedded store in --data)", clickhouse.Redact(url), URLForms)
	}
	cfg, err := clickhouse.ParseURL(url)
	if err != nil {
		return nil, err
	}
	return clickhouse.Open(ctx, cfg)
}

// IsClickHouse reports whether a --store value names a ClickHouse store
// (clickhouse:// or, over TLS, clickhouses://).
func IsClickHouse(url string) bool {
	return strings.HasPrefix(url, "clickhouse://") || strings.HasPrefix(url, "clickhouses://")
}
