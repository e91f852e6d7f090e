package clickhouse

import (
	"context"
	"time"

	"github.com/kubetrail/kubetrail/internal/store/local"
)

// FollowMargin is how far back in insert time each poll of a follow looks
// again: an insert stamped before the last row printed can become
// visible after it (another collector's insert still in flight, or its
// clock behind), and is printed if it shows up within this margin.
const FollowMargin = 30 * time.Second

// Follow is a live tail of the events table: each Poll gives the selected
// events inserted since the previous one, each event once. It is not safe
// for concurrent use.
type Follow struct {
	s   *Store
	sel local.Selection
	// last is the highest seq seen; seen holds the keys printed with a
	// seq within FollowMargin of it.
	last uint64
	seen map[local.Key]uint64
}

// Follow starts a live tail; the first Poll gives every selected event.
func (s *Store) Follow(sel local.Selection) *Follow {
	return &Follow{s: s, sel: sel, seen: map[local.Key]uint64{}}
}

// Poll calls fn for every selected event inserted since the last Poll,
// in arrival order. A copy of an event already given (a retried batch,
// another collector) is not given again.
func (f *Follow) Poll(ctx context.Context, fn func(*local.Hit) error) error {
	margin := uint64(FollowMargin.Nanoseconds())
	from := uint64(0)
	if f.last > margin {
		from = f.last - margin
	}
	known := func(k local.Key) bool { _, ok := f.seen[k]; return ok }
	err := f.s.Arrivals(ctx, f.sel, from, known, func(h *local.Hit, seq uint64) error {
		k := local.KeyOf(h.Cluster, h.Raw)
		if _, dup := f.seen[k]; dup {
			return nil
		}
		f.seen[k] = seq
		f.last = max(f.last, seq)
		return fn(h)
	})
	if f.last > margin {
		for k, seq := range f.seen {
			if seq < f.last-margin {
				delete(f.seen, k)
			}
		}
	}
	return err
}
