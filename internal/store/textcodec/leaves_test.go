package textcodec

import (
	"bytes"
	"fmt"
	"runtime"
	"testing"
)

// zeroLines returns n lines whose field z is an array of zeros, line i
// of zeros+i of them (so each line is of its own shape), and their bytes.
func zeroLines(n, zeros int) ([][]byte, int) {
	var lines [][]byte
	size := 0
	for i := range n {
		var b bytes.Buffer
		fmt.Fprintf(&b, `{"auditID":"%d","z":[0`, i)
		for range zeros + i {
			b.WriteString(",0")
		}
		b.WriteString(`],"verb":"get"}`)
		lines = append(lines, b.Bytes())
		size += b.Len()
	}
	return lines, size
}

// TestManyLeavesCostTheirBytes: a line of a million numbers (a field the
// API server never writes, in a file being imported) is still an event
// to keep exactly, but encoding and reading a group of such lines must
// cost about their bytes, not tens of times them: a template with a
// literal per leaf took 1.26 GB of RSS to import 107 MB of them, 20 s to
// export, and a sealer per CPU multiplies it.
func TestManyLeavesCostTheirBytes(t *testing.T) {
	lines, size := zeroLines(4, 500000)
	dec := newDecoder(t)
	opt := Options{BlockEvents: 256, Types: true, URI: true, Opaque: true, Rows: true, BodiesApart: true}
	var g []byte
	encoded := allocated(func() { g = roundTrip(t, dec, lines, opt) })
	t.Logf("%d bytes of lines: %d allocated to encode and read them back", size, encoded)
	if encoded > int64(20*size) {
		t.Fatalf("encoding and reading %d bytes of lines allocated %d bytes (%.0f times them)", size, encoded, float64(encoded)/float64(size))
	}
	_ = g
}

// allocated returns the bytes f allocates.
func allocated(f func()) int64 {
	var a, b runtime.MemStats
	runtime.ReadMemStats(&a)
	f()
	runtime.ReadMemStats(&b)
	return int64(b.TotalAlloc - a.TotalAlloc)
}

// TestManyColumnsCostTheirBytes: lines of thousands of keys, none
// twice, must cost about their bytes too: a column for each key took 8
// times the memory and time of format 4 through the store (1.4 GB of RSS
// and 39 s to import 136 MB of them).
func TestManyColumnsCostTheirBytes(t *testing.T) {
	var lines [][]byte
	size := 0
	for i := range 100 {
		var b bytes.Buffer
		fmt.Fprintf(&b, `{"auditID":"%d"`, i)
		for k := range 4000 {
			fmt.Fprintf(&b, `,"k%d_%d":%d`, i, k, k)
		}
		b.WriteString(`,"verb":"get"}`)
		lines = append(lines, b.Bytes())
		size += b.Len()
	}
	dec := newDecoder(t)
	opt := Options{BlockEvents: 256, Types: true, URI: true, Opaque: true, Rows: true, BodiesApart: true}
	encoded := allocated(func() { roundTrip(t, dec, lines, opt) })
	t.Logf("%d bytes of lines: %d allocated to encode and read them back", size, encoded)
	if encoded > int64(20*size) {
		t.Fatalf("encoding and reading %d bytes of lines allocated %d bytes (%.0f times them)", size, encoded, float64(encoded)/float64(size))
	}
	// Lines made raw part way, beside lines split, in every layout.
	mixed := [][]byte{[]byte(apiLine), lines[0], []byte(apiLine), lines[1][:1000], lines[2], []byte(apiLine)}
	for _, opt := range layouts {
		roundTrip(t, dec, mixed, opt)
	}
}

// TestManyTemplatesCostTheirBytes: lines of thousands of numbers, each
// of a shape of its own, must cost about their bytes: a template for
// each, holding a literal per leaf, took 4 times the memory of format 4
// through the store (755 MB of RSS to import 107 MB of them).
func TestManyTemplatesCostTheirBytes(t *testing.T) {
	lines, size := zeroLines(2000, 2000)
	dec := newDecoder(t)
	opt := Options{BlockEvents: 256, Types: true, URI: true, Opaque: true, Rows: true, BodiesApart: true}
	encoded := allocated(func() { roundTrip(t, dec, lines, opt) })
	t.Logf("%d bytes of lines: %d allocated to encode and read them back", size, encoded)
	if encoded > int64(20*size) {
		t.Fatalf("encoding and reading %d bytes of lines allocated %d bytes (%.0f times them)", size, encoded, float64(encoded)/float64(size))
	}
}
