package local

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/kubetrail/kubetrail/internal/store/textcodec"
	"github.com/kubetrail/kubetrail/internal/vfs"
)

// TestGroupPositions stores keys of each width and checks the positions
// read back against a stable sort of the events by key.
func TestGroupPositions(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	var scratch posScratch
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
		got, err := groupPositions(b, n, nil, nil)
		if err != nil || !slices.Equal(got, want) {
			t.Fatalf("%d keys below %d: positions differ from a stable sort (%v)", n, distinct, err)
		}
		// Again with the buffers of the group before, as a textReader
		// reads one group after another.
		got, err = groupPositions(b, n, got, &scratch)
		if err != nil || !slices.Equal(got, want) {
			t.Fatalf("%d keys below %d, buffers of the group before: positions differ from a stable sort (%v)", n, distinct, err)
		}
		if _, err := groupPositions(b[:len(b)-1], n, nil, nil); err == nil {
			t.Fatalf("%d keys below %d: a frame one byte short was read", n, distinct)
		}
	}
	f(1, 1, 1)
	f(5000, 40, 1)
	f(5000, 256, 1)
	f(5000, 257, 2)
	f(4000, 300, 2)
	f(70000, 1<<16+1, 4)
	f(66000, 1<<16+1, 4)
	// A key no event can have (as many keys as events at most).
	if _, err := groupPositions(appendGroupKeys(nil, []uint32{0, 300}), 2, nil, nil); err == nil {
		t.Fatal("key 300 of 2 events was read")
	}
}

// TestHeadsKeptAcrossGroups: a textReader reading a v5 group again after
// others takes the group's head it opened before rather than opening it
// anew, and every read gives the stored lines, whichever head last held
// the buffers.
func TestHeadsKeptAcrossGroups(t *testing.T) {
	data := t.TempDir()
	path, in := writeTestSegment(t, data, 3000)
	r, err := openSegment(vfs.OS, path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.close()
	if r.meta.Version < 5 || len(r.meta.Groups) < 3 {
		t.Fatalf("version %d with %d groups: the test wants v5 and several groups", r.meta.Version, len(r.meta.Groups))
	}
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	tr := newTextReader(dec)
	read := func(g groupMeta) *textcodec.Reader {
		t.Helper()
		want := []int32{int32(g.First), int32(g.First + g.Count/2), int32(g.First + g.Count - 1)}
		err := tr.events(r, 0, 0, want, nil, nil, func(ord int, raw []byte) error {
			if !bytes.Equal(raw, in[ord].raw) {
				return fmt.Errorf("event %d: got %.80s, want %.80s", ord, raw, in[ord].raw)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return tr.head
	}
	g := r.meta.Groups
	h0 := read(g[0])
	h1 := read(g[1])
	if h0 == h1 {
		t.Fatal("two groups read through one head")
	}
	read(g[2])
	if h := read(g[0]); h != h0 {
		t.Error("group 0's head was opened again")
	}
	if h := read(g[1]); h != h1 {
		t.Error("group 1's head was opened again")
	}
}

// TestOneTextRendersThePlan: with a plan (expect), a v5 block renders only
// the planned events' lines, each the event's exact bytes, and an event
// outside the plan asked for still comes back exact.
// Mutations it catches: rendering every line of a block despite the plan;
// an unplanned event given as the empty span it has.
func TestOneTextRendersThePlan(t *testing.T) {
	data := t.TempDir()
	path, in := writeTestSegment(t, data, 3000)
	r, err := openSegment(vfs.OS, path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.close()
	g := r.meta.Groups[0]
	if r.meta.Version < 5 || g.Blocks < 3 {
		t.Fatalf("version %d with %d blocks in group 0: the test wants v5 and several blocks", r.meta.Version, g.Blocks)
	}
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	o := newOneText(dec)
	var plan []int32
	for ord := g.First; ord < g.First+g.Count; ord += 7 {
		plan = append(plan, int32(ord))
	}
	o.expect(r, plan)
	check := func(ord int) {
		t.Helper()
		raw, err := o.text(r, ord, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(raw, in[ord].raw) {
			t.Fatalf("event %d: got %.80s, want %.80s", ord, raw, in[ord].raw)
		}
	}
	// The plan's events and a few others (the first of a block among
	// them), ascending.
	asked := 0
	for ord := g.First; ord < g.First+g.Count; ord++ {
		if (ord-g.First)%7 == 0 || ord == g.First+1 || ord == g.First+g.Count-2 {
			check(ord)
			asked++
		}
	}
	rendered := 0
	for _, sp := range o.span {
		if sp[1] > 0 {
			rendered++
		}
	}
	if rendered != asked {
		t.Errorf("%d lines rendered for %d events asked for", rendered, asked)
	}
	// An event not asked for yet, of a block already rendered.
	per := o.t.head.PerBlock()
	for ord := g.First; ord < g.First+g.Count; ord++ {
		if p := int(o.t.pos[ord-g.First]); o.have[p/per] && o.span[p][1] == 0 {
			check(ord)
			return
		}
	}
	t.Fatal("no event left unrendered in a rendered block")
}
