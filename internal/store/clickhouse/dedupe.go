package clickhouse

import (
	"context"
	"encoding/hex"
	"io"
	"strconv"
	"strings"

	"github.com/kubetrail/kubetrail/internal/store/local"
)

// No answer reads the events table FINAL. An event stored twice (a batch
// retried, a segment sent again after a crash, two collectors) is two rows
// with one key until ClickHouse merges them, and every column a filter or
// a statistic names is a function of the cluster and the stored bytes, so
// copies agree on all of them. Each answer therefore counts keys instead
// of rows: counts and statistics count distinct keys in SQL; reads in
// arrival order keep the first row of each key (the row FINAL keeps: the
// largest ver, the first arrival), ClickHouse dropping the rest (ORDER
// BY seq, ord LIMIT 1 BY key), so kubetrail holds nothing per event; a read
// after a cursor also drops the rows whose key was stored at or before
// the cursor (laterCopies). FINAL on 18.16 merges the sorting key's
// columns of every part and reads every selected column of every row the
// key does not exclude: 5-60x slower for a count, 2-5x for statistics
// (docs/clickhouse.md, "Speed").

// cursorRow is one row of a read after a cursor, kept until the keys of
// its chunk have been asked about.
type cursorRow struct {
	h   local.Hit
	k   local.Key
	seq uint64
}

// laterCopies returns which of rows' keys the store holds a row of stamped
// at or before after: events whose first arrival is at or before the
// cursor, of which rows are later copies. Copies share the event time, so
// only the days between the rows' earliest and latest time are read.
func (s *Store) laterCopies(ctx context.Context, after uint64, rows []cursorRow) (map[local.Key]bool, error) {
	found := map[local.Key]bool{}
	for len(rows) > 0 {
		n := min(len(rows), keysPerStatement)
		chunk := rows[:n]
		rows = rows[n:]
		lo, hi := chunk[0].h.Time, chunk[0].h.Time
		keys := make([]string, len(chunk))
		for i, r := range chunk {
			lo, hi = min(lo, r.h.Time), max(hi, r.h.Time)
			keys[i] = quote(strings.ToUpper(hex.EncodeToString(r.k[:])))
		}
		sql := "SELECT DISTINCT key FROM " + s.db + ".events PREWHERE " + timeWhere(lo, hi+1) +
			" AND seq <= " + strconv.FormatUint(after, 10) + " AND hex(key) IN (" + strings.Join(keys, ",") + ") FORMAT RowBinary"
		err := s.c.query(ctx, sql, func(body io.Reader) error {
			r := newRowReader(body)
			for r.more() {
				k := r.key()
				if r.err != nil {
					break
				}
				found[k] = true
			}
			return r.err
		})
		if err != nil {
			return nil, err
		}
	}
	return found, nil
}
