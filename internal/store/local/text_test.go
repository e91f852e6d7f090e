package local

import (
	"math/rand/v2"
	"slices"
	"sort"
	"testing"
)

// TestGroupPositions stores keys of each width and checks the positions
// read back against a stable sort of the events by key.
func TestGroupPositions(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	f := func(n, distinct, wantWidth int) {
		t.Helper()
		keys := make([]uint32, n)
		for i := range keys {
			keys[i] = uint32(rng.IntN(distinct))
		}
		keys[0] = uint32(distinct - 1) // the width is the largest key's
		b := appendGroupKeys(nil, keys)
		if int(b[0]) != wantWidth {
			t.Fatalf("%d keys below %d stored %d bytes wide, want %d", n, distinct, b[0], wantWidth)
		}
		order := make([]int32, n)
		for i := range order {
			order[i] = int32(i)
		}
		sort.SliceStable(order, func(a, b int) bool { return keys[order[a]] < keys[order[b]] })
		want := make([]int32, n)
		for p, o := range order {
			want[o] = int32(p)
		}
		got, err := groupPositions(b, n, nil)
		if err != nil || !slices.Equal(got, want) {
			t.Fatalf("%d keys below %d: positions differ from a stable sort (%v)", n, distinct, err)
		}
		if _, err := groupPositions(b[:len(b)-1], n, nil); err == nil {
			t.Fatalf("%d keys below %d: a frame one byte short was read", n, distinct)
		}
	}
	f(1, 1, 1)
	f(5000, 40, 1)
	f(5000, 256, 1)
	f(5000, 257, 2)
	f(70000, 1<<16+1, 4)
	// A key no event can have (as many keys as events at most).
	if _, err := groupPositions(appendGroupKeys(nil, []uint32{0, 300}), 2, nil); err == nil {
		t.Fatal("key 300 of 2 events was read")
	}
}
