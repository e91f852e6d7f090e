package local

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"
)

// TestPositionsAreStable checks the promise of Pos: the position a live
// commit reports names the same event in every later Scan, whether the
// event is still in the WAL, sealed, sealed after a restart, or compacted
// with others; and Scan's From starts exactly at it.
func TestPositionsAreStable(t *testing.T) {
	dir := t.TempDir()
	open := func() *DB {
		db, err := Open(dir, Options{WALSegmentBytes: 32 << 10, NoSync: true, layout: segLayout{groupBytes: 64 << 10, blockBytes: 8 << 10, blockEvents: 8}})
		if err != nil {
			t.Fatal(err)
		}
		return db
	}
	db := open()
	sub := db.Subscribe(1 << 12)
	live := map[string]Pos{}
	var order []Pos
	batches := smallBatches(40, 25)
	// Every third batch repeats two events of the batch two before it (of
	// the same cluster): duplicates are not stored, and must not take a
	// position.
	for i := 3; i < len(batches); i += 3 {
		batches[i].Records = append(batches[i].Records, batches[i-2].Records[:2]...)
	}
	collect := func() {
		for {
			select {
			case evs := <-sub.C:
				for _, c := range evs {
					live[c.Cluster+" "+string(c.Record.Raw)] = c.Pos
					order = append(order, c.Pos)
				}
			default:
				return
			}
		}
	}
	for _, b := range batches[:20] {
		if _, err := db.Append(context.Background(), b); err != nil {
			t.Fatal(err)
		}
		collect()
	}
	if !slices.IsSortedFunc(order, func(a, b Pos) int { return cmpPos(a, b) }) {
		t.Fatalf("live positions are not increasing: %v", order)
	}
	if db.Start() != order[0] {
		t.Errorf("Start() = %v, the first event stored is at %v", db.Start(), order[0])
	}
	check := func(when string, from Pos) {
		t.Helper()
		var got []Pos
		err := Scan(dir, ScanOptions{From: from}, func(s Stored) error {
			want, ok := live[s.Cluster+" "+string(s.Raw)]
			if !ok {
				return fmt.Errorf("scan returned an event never committed live")
			}
			if s.Pos != want {
				return fmt.Errorf("event committed at %v is at %v in the scan", want, s.Pos)
			}
			got = append(got, s.Pos)
			return nil
		})
		if err != nil {
			t.Fatalf("%s: %v", when, err)
		}
		var want []Pos
		for _, p := range order {
			if !p.Less(from) {
				want = append(want, p)
			}
		}
		if !slices.Equal(got, want) {
			t.Fatalf("%s, from %v: scan gave %d positions, want %d", when, from, len(got), len(want))
		}
	}
	check("in the WAL and sealed", Pos{})
	check("in the WAL and sealed", order[len(order)/2])
	for _, b := range batches[20:] {
		if _, err := db.Append(context.Background(), b); err != nil {
			t.Fatal(err)
		}
		collect()
	}
	sub.Close()
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db = open()
	defer func() { db.Close() }()
	waitSettled(t, dir)
	check("after a restart", Pos{})
	if len(order) != 40*25 {
		t.Fatalf("%d events committed, want %d", len(order), 40*25)
	}
	if res, err := db.Compact(context.Background(), Compaction{Below: 1 << 30, MaxSpan: 48 * time.Hour}); err != nil || res.Inputs < 2 {
		t.Fatalf("compaction: %+v %v", res, err)
	}
	for _, i := range []int{0, 1, 333, len(order) - 1} {
		check("after compaction", order[i])
	}
	check("past the end", Pos{WAL: order[len(order)-1].WAL + 1})
	if db.Start().Less(order[len(order)-1]) || db.Start() == order[len(order)-1] {
		t.Errorf("after a restart, Start() = %v is not past every stored event (last %v)", db.Start(), order[len(order)-1])
	}
}

func cmpPos(a, b Pos) int {
	switch {
	case a.Less(b):
		return -1
	case b.Less(a):
		return 1
	}
	return 0
}

// TestFollows: the next ordinal of the same WAL segment, or the first
// event of a later one, follows; a skipped ordinal, an event of an earlier
// segment or a later segment's second event do not (events were missed).
func TestFollows(t *testing.T) {
	next := Pos{WAL: 3, Ord: 7}
	for _, c := range []struct {
		p    Pos
		want bool
	}{
		{Pos{3, 7}, true}, {Pos{4, 0}, true}, {Pos{9, 0}, true},
		{Pos{3, 8}, false}, {Pos{3, 6}, false}, {Pos{2, 0}, false}, {Pos{4, 1}, false},
	} {
		if got := Follows(next, c.p); got != c.want {
			t.Errorf("Follows(%v, %v) = %t, want %t", next, c.p, got, c.want)
		}
	}
}
