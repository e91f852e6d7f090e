package clickhouse

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/kubetrail/kubetrail/internal/store/local"
)

// RowBinary is ClickHouse's binary row format: little-endian fixed-width
// numbers, strings and arrays as a uvarint length then their bytes or
// elements, FixedString(N) as N bytes, Date as a UInt16 of days since
// 1970-01-01.

func putString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func putBytes(b []byte, s []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func putStrings(b []byte, ss []string) []byte {
	b = binary.AppendUvarint(b, uint64(len(ss)))
	for _, s := range ss {
		b = putString(b, s)
	}
	return b
}

func putU8(b []byte, v uint8) []byte   { return append(b, v) }
func putU16(b []byte, v uint16) []byte { return binary.LittleEndian.AppendUint16(b, v) }
func putU32(b []byte, v uint32) []byte { return binary.LittleEndian.AppendUint32(b, v) }
func putU64(b []byte, v uint64) []byte { return binary.LittleEndian.AppendUint64(b, v) }
func putI32(b []byte, v int32) []byte  { return putU32(b, uint32(v)) }
func putI64(b []byte, v int64) []byte  { return putU64(b, uint64(v)) }

// rowReader reads RowBinary values from an answer. The first error sticks
// and every later read returns zero values; err reports it.
type rowReader struct {
	r   *bufio.Reader
	err error
	buf []byte
}

func newRowReader(r io.Reader) *rowReader { return &rowReader{r: bufio.NewReaderSize(r, 1<<16)} }

// more reports whether another row follows, at a row boundary.
func (r *rowReader) more() bool {
	if r.err != nil {
		return false
	}
	_, err := r.r.Peek(1)
	if err == io.EOF {
		return false
	}
	if err != nil {
		r.err = err
		return false
	}
	return true
}

func (r *rowReader) fail(err error) {
	if r.err == nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		r.err = fmt.Errorf("read ClickHouse answer: %w", err)
	}
}

// bytes returns a string value; the slice is valid until the next read.
func (r *rowReader) bytes() []byte {
	if r.err != nil {
		return nil
	}
	n, err := binary.ReadUvarint(r.r)
	if err != nil {
		r.fail(err)
		return nil
	}
	if n > 1<<30 {
		r.fail(fmt.Errorf("string of %d bytes", n))
		return nil
	}
	if uint64(cap(r.buf)) < n {
		r.buf = make([]byte, n)
	}
	r.buf = r.buf[:n]
	if _, err := io.ReadFull(r.r, r.buf); err != nil {
		r.fail(err)
		return nil
	}
	return r.buf
}

func (r *rowReader) string() string { return string(r.bytes()) }

func (r *rowReader) u64() uint64 {
	if r.err != nil {
		return 0
	}
	var b [8]byte
	if _, err := io.ReadFull(r.r, b[:]); err != nil {
		r.fail(err)
		return 0
	}
	return binary.LittleEndian.Uint64(b[:])
}

func (r *rowReader) i64() int64 { return int64(r.u64()) }

// key reads a FixedString(16) event key.
func (r *rowReader) key() local.Key {
	var k local.Key
	if r.err != nil {
		return k
	}
	if _, err := io.ReadFull(r.r, k[:]); err != nil {
		r.fail(err)
	}
	return k
}

// putStringsLen writes the length of an array whose elements follow.
func putStringsLen(b []byte, n int) []byte { return binary.AppendUvarint(b, uint64(n)) }
