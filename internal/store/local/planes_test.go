package local

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// TestUnplaneRoundTrip: unplane gives back what appendPlanes wrote, at
// every width and for counts that are and are not a multiple of the
// unrolled loops' step, into a fresh slice and into a used one.
// Mutation it catches: a plane's bytes shifted by the wrong amount in one
// width's loop (each width has its own).
func TestUnplaneRoundTrip(t *testing.T) {
	rnd := rand.New(rand.NewPCG(1, 2))
	for w := 0; w <= 8; w++ {
		for _, n := range []int{0, 1, 7, 8, 9, 1000, 1003} {
			vals := make([]uint64, n)
			for i := range vals {
				if w > 0 {
					vals[i] = rnd.Uint64() >> (64 - 8*w)
				}
			}
			if n > 0 && w > 0 {
				vals[n/2] = ^uint64(0) >> (64 - 8*w) // the width is reached
			}
			p := appendPlanes(nil, vals)
			if n > 0 && int(p[0]) != w {
				t.Fatalf("w %d n %d: appendPlanes wrote width %d", w, n, p[0])
			}
			used := make([]uint64, n+5)
			for i := range used {
				used[i] = rnd.Uint64()
			}
			for _, dst := range [][]uint64{nil, used} {
				got, err := unplane(p, n, 8, dst)
				if err != nil {
					t.Fatalf("w %d n %d: %v", w, n, err)
				}
				if !slices.Equal(got, vals) {
					t.Fatalf("w %d n %d: unplane gave back other values", w, n)
				}
			}
			if w > 4 || n == 0 {
				continue
			}
			got32, err := unplane(p, n, 4, []uint32(nil))
			if err != nil {
				t.Fatalf("w %d n %d as uint32: %v", w, n, err)
			}
			for i, v := range vals {
				if uint64(got32[i]) != v {
					t.Fatalf("w %d n %d: uint32 %d is %d, want %d", w, n, i, got32[i], v)
				}
			}
		}
	}
	if _, err := unplane(appendPlanes(nil, []uint64{1 << 40}), 1, 4, []uint32(nil)); err == nil {
		t.Error("a 6-byte value unplaned into 4 bytes")
	}
}

// BenchmarkUnplane decodes a time column of a 2M-event store's segment:
// 52,000 values of 3 bytes (every segment of the bench's corpus).
func BenchmarkUnplane(b *testing.B) {
	rnd := rand.New(rand.NewPCG(1, 2))
	vals := make([]uint64, 52000)
	for i := range vals {
		vals[i] = rnd.Uint64N(1 << 24)
	}
	p := appendPlanes(nil, vals)
	dst := make([]int64, len(vals))
	b.SetBytes(int64(len(p)))
	for b.Loop() {
		var err error
		if dst, err = unplane(p, len(vals), 8, dst); err != nil {
			b.Fatal(err)
		}
	}
}
