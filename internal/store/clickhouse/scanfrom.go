package clickhouse

import (
	"context"
	"encoding/hex"
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

// scanPage is how many events ScanFrom asks for per statement: the HTTP
// interface buffers each answer whole (wait_end_of_query), so a store is
// read in pages, never in one answer.
const scanPage = 5000

// ScanFrom calls fn for every stored event after from, in arrival order,
// with its stored bytes exactly and its position (to resume after it). An
// event stored twice is read once, at its first arrival, as Export reads
// it. Events stored during the scan are read if they arrive after the
// page being read.
func (s *Store) ScanFrom(ctx context.Context, from Position, fn func(local.Stored, Position) error) error {
	return s.scanFrom(ctx, from, scanPage, fn)
}

func (s *Store) scanFrom(ctx context.Context, from Position, page int, fn func(local.Stored, Position) error) error {
	for {
		n := 0
		sql := "SELECT seq, toUInt64(ord), hex(key), cluster, received_us, time_us, raw FROM " + s.db + ".events FINAL WHERE " + after(from) +
			" ORDER BY seq, ord, key LIMIT " + strconv.Itoa(page) + " FORMAT RowBinary"
		err := s.c.query(ctx, sql, func(body io.Reader) error {
			r := newRowReader(body)
			for r.more() {
				p := Position{Seq: r.u64(), Ord: uint32(r.u64()), Key: r.string()}
				st := local.Stored{Cluster: r.string(), Received: r.i64(), Time: r.i64()}
				st.Raw = r.bytes() // last: the next string read reuses its buffer
				if r.err != nil {
					break
				}
				n++
				from = p
				if err := fn(st, p); err != nil {
					return err
				}
			}
			return r.err
		})
		if err != nil {
			return err
		}
		if n < page {
			return nil
		}
	}
}

// after is the WHERE of the events after p in (seq, ord, key) order.
func after(p Position) string {
	if p == (Position{}) {
		return "1"
	}
	seq, ord := strconv.FormatUint(p.Seq, 10), strconv.FormatUint(uint64(p.Ord), 10)
	key := "unhex(" + quote(p.Key) + ")"
	if _, err := hex.DecodeString(p.Key); err != nil || len(p.Key) != 32 {
		// Not a key this package wrote: resume after the whole position.
		key = "unhex('ffffffffffffffffffffffffffffffff')"
	}
	return "(seq > " + seq + " OR seq = " + seq + " AND (ord > " + ord + " OR ord = " + ord + " AND key > " + key + "))"
}
