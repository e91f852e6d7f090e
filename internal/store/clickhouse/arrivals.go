package clickhouse

import (
	"context"

	"github.com/kubetrail/kubetrail/internal/store/local"
)

// Arrivals calls fn for every event sel selects whose first arrival stamp
// (seq, the inserting collector's clock in ns) is above after, in arrival
// order (seq, then ord), with its seq, except those whose key known holds
// (nil: none). Copies of an event count once: a copy stamped above after
// of an event first stored at or below it is not given (dedupe.go). An
// insert stamped at or below after but made visible later is not given:
// a reader that keeps a durable cursor (kubetrail detect --follow) asks
// again from a margin below the highest seq it evaluated, with the keys
// it evaluated since as known, as Follow does; the stored bytes of those
// are then not read again (selectNew).
func (s *Store) Arrivals(ctx context.Context, sel local.Selection, after uint64, known func(local.Key) bool, fn func(h *local.Hit, seq uint64) error) error {
	if known == nil || after == 0 {
		return s.selectAfter(ctx, sel, after, func(h *local.Hit, seq uint64) error {
			if known != nil && known(local.KeyOf(h.Cluster, h.Raw)) {
				return nil
			}
			return fn(h, seq)
		})
	}
	return s.selectNew(ctx, sel, after, known, fn)
}
