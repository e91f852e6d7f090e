package clickhouse

import (
	"bytes"
	"context"
	"io"
	"strconv"

	"github.com/kubetrail/kubetrail/internal/store/local"
)

// Position is an event's place in the store's arrival order: its batch's
// arrival stamp, its index in the batch, and its key, which breaks the
// tie should two collectors' clocks give two batches one stamp. The zero
// Position comes before every event.
type Position struct {
	Seq uint64 `json:"seq"`
	Ord uint32 `json:"ord"`
	// Key is the event's key in hex; empty in the zero Position.
	Key string `json:"key,omitempty"`
}

// scanPage is how many events ScanFrom reads per statement, at least: the
// HTTP interface buffers each answer whole (wait_end_of_query), so a store
// is read in pages, never in one answer.
const scanPage = 5000

// keysPerStatement bounds the keys one statement names, to stay well
// under ClickHouse's max_query_size (256 KiB).
const keysPerStatement = 2000

// ScanFrom calls fn for every stored event after from, in arrival order,
// with its stored bytes exactly and its position (to resume after it). An
// event stored twice is read once, at its first arrival, as Export reads
// it. Events stored during the scan are read if they arrive after the
// page being read; an event stored later with an arrival stamp before the
// page (a collector whose clock is behind) is not.
//
// It reads no table FINAL: FINAL merges the whole table for every page,
// which made reading a store quadratic in its size (100,000 events: 0.45 s
// a page of 5,000, and growing with the table). A page is instead the
// events of a range of arrival stamps, read as stored, with the copies
// dropped here: a copy of an event met earlier in the page, or one whose
// key was stored before the page (asked of the store by key).
func (s *Store) ScanFrom(ctx context.Context, from Position, fn func(local.Stored, Position) error) error {
	return s.scanFrom(ctx, from, scanPage, fn)
}

// scanRow is one stored row of a page.
type scanRow struct {
	pos Position
	st  local.Stored
}

func (s *Store) scanFrom(ctx context.Context, from Position, page int, fn func(local.Stored, Position) error) error {
	lo := from.Seq // the page's first arrival stamp
	for {
		hi, more, err := s.pageEnd(ctx, lo, page)
		if err != nil {
			return err
		}
		rows, err := s.readPage(ctx, lo, hi, more)
		if err != nil {
			return err
		}
		earlier, err := s.storedBefore(ctx, lo, rows)
		if err != nil {
			return err
		}
		seen := make(map[string]bool, len(rows))
		for _, r := range rows {
			if earlier[r.pos.Key] || seen[r.pos.Key] {
				continue
			}
			seen[r.pos.Key] = true
			if from != (Position{}) && !r.pos.after(from) {
				continue
			}
			if err := fn(r.st, r.pos); err != nil {
				return err
			}
		}
		if !more {
			return nil
		}
		lo = hi + 1
	}
}

// after reports whether p comes after q in (seq, ord, key) order.
func (p Position) after(q Position) bool {
	if p.Seq != q.Seq {
		return p.Seq > q.Seq
	}
	if p.Ord != q.Ord {
		return p.Ord > q.Ord
	}
	return p.Key > q.Key
}

// pageEnd returns the arrival stamp that ends a page beginning at lo: the
// stamp of the row page places on, so that a page holds whole batches.
// more is false when fewer rows are left: the page is the rest.
func (s *Store) pageEnd(ctx context.Context, lo uint64, page int) (hi uint64, more bool, err error) {
	sql := "SELECT seq FROM " + s.db + ".events WHERE seq >= " + strconv.FormatUint(lo, 10) +
		" ORDER BY seq LIMIT 1 OFFSET " + strconv.Itoa(page) + " FORMAT RowBinary"
	err = s.c.query(ctx, sql, func(body io.Reader) error {
		r := newRowReader(body)
		if r.more() {
			hi, more = r.u64(), true
		}
		return r.err
	})
	return hi, more, err
}

// readPage reads the rows stamped lo to hi (to the end without more), in
// (seq, ord, key) order, copies of events included.
func (s *Store) readPage(ctx context.Context, lo, hi uint64, more bool) ([]scanRow, error) {
	w := "seq >= " + strconv.FormatUint(lo, 10)
	if more {
		w += " AND seq <= " + strconv.FormatUint(hi, 10)
	}
	sql := "SELECT seq, toUInt64(ord), hex(key), cluster, received_us, time_us, raw FROM " + s.db + ".events WHERE " + w +
		" ORDER BY seq, ord, key FORMAT RowBinary"
	var rows []scanRow
	err := s.c.query(ctx, sql, func(body io.Reader) error {
		r := newRowReader(body)
		for r.more() {
			p := Position{Seq: r.u64(), Ord: uint32(r.u64()), Key: r.string()}
			st := local.Stored{Cluster: r.string(), Received: r.i64(), Time: r.i64()}
			st.Raw = bytes.Clone(r.bytes())
			if r.err != nil {
				break
			}
			rows = append(rows, scanRow{p, st})
		}
		return r.err
	})
	return rows, err
}

// storedBefore returns which keys of rows the store holds a row of
// stamped before lo: events whose first arrival is before the page.
func (s *Store) storedBefore(ctx context.Context, lo uint64, rows []scanRow) (map[string]bool, error) {
	if lo == 0 || len(rows) == 0 {
		return map[string]bool{}, nil
	}
	keys := make([]string, len(rows))
	for i, r := range rows {
		keys[i] = r.pos.Key
	}
	return s.keysStoredBy(ctx, lo-1, keys, "")
}
