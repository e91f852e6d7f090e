package clickhouse

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"math"
	"strings"

	"github.com/kubetrail/kubetrail/internal/pipeline"
	"github.com/kubetrail/kubetrail/internal/store/local"
)

// Rows are encoded in two steps, so that a collector can encode a batch
// when it receives it, keep the rows in its WAL and insert them later: the
// event's columns first (appendRows), each row preceded by its length; the
// arrival stamp (seq, ord, ver) when the rows go into an insert's body
// (stamper). The INSERT names its columns, stamp first (insertColumns), so
// the table's own column order does not matter.

// stampColumns are the arrival stamp, written first in every row sent.
var stampColumns = []string{"seq", "ord", "ver"}

// insertColumns is an INSERT's column list: the stamp, then every other
// column in the table's order, as encodeRow writes them.
func insertColumns() string {
	names := append([]string(nil), stampColumns...)
	for _, c := range columns {
		if !isStamp(c.name) {
			names = append(names, c.name)
		}
	}
	return strings.Join(names, ", ")
}

func isStamp(name string) bool {
	for _, s := range stampColumns {
		if s == name {
			return true
		}
	}
	return false
}

// rowLenBytes is the size of the length before each unstamped row.
const rowLenBytes = 4

// appendRows appends each event of b as an unstamped row preceded by its
// length (4 bytes, little-endian). Copies of an event within b are
// dropped and counted as duplicates.
func appendRows(dst []byte, b *pipeline.Batch) ([]byte, pipeline.Result) {
	return appendNewRows(dst, b, make(map[local.Key]struct{}, len(b.Records)))
}

// appendNewRows is appendRows for rows joining others in one insert: an
// event whose key seen holds is dropped and counted as a duplicate, and
// the keys of b's rows are added to seen.
func appendNewRows(dst []byte, b *pipeline.Batch, seen map[local.Key]struct{}) ([]byte, pipeline.Result) {
	var res pipeline.Result
	for i := range b.Records {
		r := &b.Records[i]
		k := local.KeyOf(b.Cluster, r.Raw)
		if _, dup := seen[k]; dup {
			res.Duplicates++
			continue
		}
		seen[k] = struct{}{}
		at := len(dst)
		dst = append(dst, 0, 0, 0, 0)
		dst = encodeRow(dst, b, r, k)
		binary.LittleEndian.PutUint32(dst[at:], uint32(len(dst)-at-rowLenBytes))
		res.Stored++
	}
	return dst, res
}

// rowsSize guesses the bytes appendRows writes for b, so that its buffer
// is allocated once: a row holds the raw line and most of its fields
// again (bench/gen rows are 1.6x their line).
func rowsSize(b *pipeline.Batch) int {
	n := 64
	for i := range b.Records {
		n += 2*len(b.Records[i].Raw) + 256
	}
	return n
}

// stamper writes rows into an insert's body with their arrival stamp: one
// seq for the insert, ord counting its rows, ver = 2^64-1-seq so that
// ReplacingMergeTree keeps the first arrival of an event.
type stamper struct {
	seq uint64
	ord uint32
}

// write writes every row of rows (as appendRows wrote them) to w,
// stamped.
func (st *stamper) write(w *bufio.Writer, rows []byte) error {
	var stamp [20]byte
	for off := 0; off < len(rows); {
		if len(rows)-off < rowLenBytes {
			return fmt.Errorf("rows: %d stray bytes at %d", len(rows)-off, off)
		}
		n := int(binary.LittleEndian.Uint32(rows[off:]))
		off += rowLenBytes
		if n > len(rows)-off {
			return fmt.Errorf("rows: a row of %d bytes at %d runs past the end (%d)", n, off, len(rows))
		}
		binary.LittleEndian.PutUint64(stamp[0:], st.seq)
		binary.LittleEndian.PutUint32(stamp[8:], st.ord)
		binary.LittleEndian.PutUint64(stamp[12:], math.MaxUint64-st.seq)
		w.Write(stamp[:])
		if _, err := w.Write(rows[off : off+n]); err != nil {
			return err
		}
		st.ord++
		off += n
	}
	return nil
}

// add appends every row of rows (as appendRows wrote them) to body,
// stamped. rows that do not parse are an error naming where.
func (st *stamper) add(body, rows []byte) ([]byte, error) {
	for off := 0; off < len(rows); {
		if len(rows)-off < rowLenBytes {
			return body, fmt.Errorf("rows: %d stray bytes at %d", len(rows)-off, off)
		}
		n := int(binary.LittleEndian.Uint32(rows[off:]))
		off += rowLenBytes
		if n > len(rows)-off {
			return body, fmt.Errorf("rows: a row of %d bytes at %d runs past the end (%d)", n, off, len(rows))
		}
		body = putU64(body, st.seq)
		body = putU32(body, st.ord)
		body = putU64(body, math.MaxUint64-st.seq)
		body = append(body, rows[off:off+n]...)
		st.ord++
		off += n
	}
	return body, nil
}
