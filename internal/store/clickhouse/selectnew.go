package clickhouse

import (
	"context"
	"fmt"
	"io"
	"strconv"

	"github.com/kubetrail/kubetrail/internal/audit"
	"github.com/kubetrail/kubetrail/internal/store/local"
)

// stamp is a row's place in arrival order.
type stamp struct {
	seq uint64
	ord uint32
}

// selectNew is selectAfter for a reader that has had some of the events
// after the cursor already: a follow or a detector, which read again a
// margin below the newest event they had, for inserts that became
// visible late, and skip the keys they hold (known). It reads the rows
// after the cursor in two steps: their keys and arrival stamps first
// (28 bytes a row), then the stored bytes only from the first new event
// on, giving only the first arrivals of keys known does not hold. A poll
// that finds nothing new thus reads no raw line, and one that finds new
// events reads the margin's keys, not its lines (ADR 0021). known must
// not be nil.
func (s *Store) selectNew(ctx context.Context, sel local.Selection, after uint64, known func(local.Key) bool, fn func(*local.Hit, uint64) error) error {
	w, exact, err := selectionWhere(sel)
	if err != nil {
		return err
	}
	w += " AND seq > " + strconv.FormatUint(after, 10)
	want, check, err := s.newStamps(ctx, w, known)
	if err != nil || len(want) == 0 {
		return err
	}
	// The first arrival of a key in the answer may be a copy of an event
	// stored at or before the cursor (dedupe.go).
	earlier, err := s.laterCopies(ctx, after, check)
	if err != nil {
		return err
	}
	from := uint64(0)
	for _, r := range check {
		if earlier[r.k] {
			delete(want, r.k)
		} else if from == 0 || r.seq < from {
			from = r.seq
		}
	}
	if len(want) == 0 {
		return nil
	}
	sql := "SELECT cluster, time_us, received_us, key, raw, seq, toUInt64(ord) FROM " + s.db + ".events PREWHERE " + w +
		" AND seq >= " + strconv.FormatUint(from, 10) + " ORDER BY seq, ord FORMAT RowBinary"
	return s.c.query(ctx, sql, func(body io.Reader) error {
		r := newRowReader(body)
		var ev audit.Event
		for r.more() {
			h := local.Hit{Cluster: r.string(), Time: r.i64(), Received: r.i64()}
			k := r.key()
			h.Raw = r.bytes()
			st := stamp{seq: r.u64(), ord: uint32(r.u64())}
			if r.err != nil {
				break
			}
			// Only the row the first step found first for its key: not
			// a copy, not a row inserted between the two steps (the next
			// poll has it), and once: an insert sent again whole (a
			// Bulk's Flush retried) repeats the stamps with the rows.
			if w, ok := want[k]; !ok || w != st {
				continue
			}
			delete(want, k)
			if err := audit.DecodeStored(h.Raw, &ev); err != nil {
				return fmt.Errorf("event stored in %s.events: %w", s.db, err)
			}
			if !exact && !sel.Filter.Match(&ev, h.Cluster) {
				continue
			}
			h.Event = &ev
			if err := fn(&h, st.seq); err != nil {
				return err
			}
		}
		return r.err
	})
}

// newStamps reads the keys and arrival stamps of the rows w selects, in
// arrival order, and returns the first arrival of each key known does not
// hold, also as rows (key, time and seq only) for laterCopies.
func (s *Store) newStamps(ctx context.Context, w string, known func(local.Key) bool) (map[local.Key]stamp, []cursorRow, error) {
	sql := "SELECT key, seq, toUInt64(ord), time_us FROM " + s.db + ".events PREWHERE " + w + " ORDER BY seq, ord FORMAT RowBinary"
	seen := map[local.Key]struct{}{}
	want := map[local.Key]stamp{}
	var check []cursorRow
	err := s.c.query(ctx, sql, func(body io.Reader) error {
		r := newRowReader(body)
		for r.more() {
			k := r.key()
			st := stamp{seq: r.u64(), ord: uint32(r.u64())}
			t := r.i64()
			if r.err != nil {
				break
			}
			if _, dup := seen[k]; dup {
				continue
			}
			seen[k] = struct{}{}
			if known(k) {
				continue
			}
			want[k] = st
			check = append(check, cursorRow{h: local.Hit{Time: t}, k: k, seq: st.seq})
		}
		return r.err
	})
	return want, check, err
}
