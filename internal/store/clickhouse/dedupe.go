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
// only the days between each chunk's earliest and latest time are read.
func (s *Store) laterCopies(ctx context.Context, after uint64, rows []cursorRow) (map[local.Key]bool, error) {
	found := map[local.Key]bool{}
	for len(rows) > 0 {
		chunk := rows[:min(len(rows), keysPerStatement)]
		rows = rows[len(chunk):]
		lo, hi := chunk[0].h.Time, chunk[0].h.Time
		keys := make([]string, len(chunk))
		for i, r := range chunk {
			lo, hi = min(lo, r.h.Time), max(hi, r.h.Time)
			keys[i] = strings.ToUpper(hex.EncodeToString(r.k[:]))
		}
		held, err := s.keysStoredBy(ctx, after, keys, timeWhere(lo, hi+1))
		if err != nil {
			return nil, err
		}
		for i, k := range keys {
			if held[k] {
				found[chunk[i].k] = true
			}
		}
	}
	return found, nil
}

// keysStoredBy returns which of keys (as ClickHouse's hex(key) spells
// them) the store holds a row of stamped at or before maxSeq, asking
// keysPerStatement keys a statement; narrow, when not empty, is one more
// condition on the rows read (a time range).
func (s *Store) keysStoredBy(ctx context.Context, maxSeq uint64, keys []string, narrow string) (map[string]bool, error) {
	found := map[string]bool{}
	cond := "seq <= " + strconv.FormatUint(maxSeq, 10)
	if narrow != "" {
		cond = narrow + " AND " + cond
	}
	for len(keys) > 0 {
		n := min(len(keys), keysPerStatement)
		quoted := make([]string, n)
		for i, k := range keys[:n] {
			quoted[i] = quote(k)
		}
		keys = keys[n:]
		sql := "SELECT DISTINCT hex(key) FROM " + s.db + ".events PREWHERE " + cond +
			" AND hex(key) IN (" + strings.Join(quoted, ",") + ") FORMAT RowBinary"
		err := s.c.query(ctx, sql, func(body io.Reader) error {
			r := newRowReader(body)
			for r.more() {
				k := r.string()
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
