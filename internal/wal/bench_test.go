package wal

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkScan reads a 64 MiB segment of 400 KiB records: the cost of
// replay and sealing per byte.
func BenchmarkScan(b *testing.B) {
	dir := b.TempDir()
	l, _, err := Open(dir, 0, Options{NoSync: true, SegmentBytes: 1 << 40})
	if err != nil {
		b.Fatal(err)
	}
	rec := make([]byte, 400<<10)
	for i := range rec {
		rec[i] = byte('a' + i%26)
	}
	for l.Size() < 64<<20 {
		l.Append(rec)
	}
	seq := l.Current()
	l.Close()
	path := SegmentPath(dir, seq)
	b.SetBytes(l.Size())
	b.ResetTimer()
	for range b.N {
		if _, err := Scan(path, func(int64, []byte) error { return nil }); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkScanGarbage reads a 64 MiB segment that holds no record after
// its header: the worst case of the search for the next record after
// damage (every offset is tried).
func BenchmarkScanGarbage(b *testing.B) {
	path := filepath.Join(b.TempDir(), "0000000000000001.wal")
	data := make([]byte, 64<<20)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range data {
		data[i] = byte(rng.UintN(256))
	}
	copy(data, Magic)
	os.WriteFile(path, data, 0o600)
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for range b.N {
		res, err := Scan(path, nil)
		if err != nil || res.Records != 0 || len(res.Damage) != 1 {
			b.Fatalf("%v %+v", err, res)
		}
	}
}
