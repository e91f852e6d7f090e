package clickhouse

import (
	"encoding/binary"
	"fmt"
)

// A window picks which rows of a collector's insert go out: after the
// first skip rows (sent by earlier inserts of a split batch), rows up to
// limit bytes, at least one. An insert that timed out is sent again in
// halves this way (Collector.shipOnce): smaller inserts end sooner, so
// each stays within InsertTimeout and so within the followers' margin.
type window struct {
	skip  int64 // rows to leave out first
	limit int64 // bytes of rows to send; 0: all
	seen  int64 // rows met so far
	rows  int64 // rows sent
	bytes int64 // bytes of rows sent
	full  bool  // rows were left out after those sent
}

// cut returns the rows of rows (as appendRows wrote them) that the
// window sends.
func (w *window) cut(rows []byte) ([]byte, error) {
	start, end := -1, -1
	for off := 0; off < len(rows); {
		if len(rows)-off < rowLenBytes {
			return nil, fmt.Errorf("rows: %d stray bytes at %d", len(rows)-off, off)
		}
		n := int64(binary.LittleEndian.Uint32(rows[off:]))
		next := off + rowLenBytes + int(n)
		if next > len(rows) || next < off {
			return nil, fmt.Errorf("rows: a row of %d bytes at %d runs past the end (%d)", n, off, len(rows))
		}
		switch {
		case w.seen < w.skip:
		case w.full || (w.limit > 0 && w.rows > 0 && w.bytes+n > w.limit):
			w.full = true
		default:
			if start < 0 {
				start = off
			}
			end = next
			w.rows++
			w.bytes += n
		}
		w.seen++
		off = next
	}
	if start < 0 {
		return nil, nil
	}
	return rows[start:end], nil
}
