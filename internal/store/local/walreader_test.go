package local

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kubetrail/kubetrail/internal/pipeline"
	"github.com/kubetrail/kubetrail/internal/query"
)

// TestDBReaderUsesIngestColumns compares, on events still in the WAL, the
// reader that takes their columns from ingest (DB.OpenReader) with the one
// that decodes them (OpenReader) and with a full scan, and checks that a
// question the columns decide decodes no event.
func TestDBReaderUsesIngestColumns(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(dir, Options{WALSegmentBytes: 512 << 10, SealAfter: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rng := rand.New(rand.NewPCG(21, 22))
	for b := 0; b < 40; b++ {
		batch := &pipeline.Batch{Cluster: []string{"default", "prod"}[b%2], Received: time.Now()}
		for i := 0; i < 50; i++ {
			batch.Records = append(batch.Records, genEvent(rng, b*50+i))
		}
		if _, err := db.Append(context.Background(), batch); err != nil {
			t.Fatal(err)
		}
	}
	// Every full WAL segment sealed, the open one left: the test wants
	// both kinds of events, and a reader opened before the first seal
	// has no segment (it failed about one run in 80 so).
	waitSealed(t, dir)
	mem, err := db.OpenReader()
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	withCols := 0
	if len(mem.decoded) != 0 {
		t.Fatal("DB.OpenReader decoded a WAL event while opening")
	}
	for _, c := range mem.head {
		for i := range c.events {
			if c.cols(&c.events[i]) != nil {
				withCols++
			}
		}
	}
	if withCols == 0 || mem.headLen() == 0 || len(mem.segs) == 0 {
		t.Fatalf("%d segments, %d WAL events, %d with columns: the test wants all", len(mem.segs), mem.headLen(), withCols)
	}
	checkSelect(t, dir, mem, rng, 50, "received>=2026-11-20T06:00:00Z", "time<2026-11-20T06:00:00Z cluster=prod")
	// CountMatching decides the WAL's events apart from Select
	// (countHead): in a time window too, it counts what Select selects.
	// (Mutation tried: countHead ignoring the window fails here.)
	var times []int64
	for _, c := range mem.head {
		for _, h := range c.events {
			times = append(times, h.time)
		}
	}
	slices.Sort(times)
	for _, src := range []string{"", "verb in (get,list)", "user=system:* code>=400 cluster=prod"} {
		var f *query.Filter
		if src != "" {
			f, _ = query.Compile(src)
		}
		sel := Selection{Filter: f, Since: times[len(times)/4], Until: times[3*len(times)/4]}
		var want int64
		if err := mem.Select(sel, func(*Hit) error { want++; return nil }); err != nil {
			t.Fatal(err)
		}
		got, err := mem.CountMatching(sel)
		if err != nil || got != want || want == 0 {
			t.Fatalf("%q in a window: CountMatching %d (%v), Select %d", src, got, err, want)
		}
	}
	dec, err := OpenReader(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	checkSelect(t, dir, dec, rng, 25)

	// Column values of hits without the event agree between both readers.
	cols := func(r *Reader, f *query.Filter) []string {
		var out []string
		r.Select(Selection{Filter: f}, func(h *Hit) error {
			s := fmt.Sprint(h.Time)
			for c := Column(0); c < NumColumns; c++ {
				s += "|" + h.Column(c)
			}
			out = append(out, s)
			return nil
		})
		return out
	}
	for _, src := range []string{"", "verb in (get,list)", "user=system:* code>=400"} {
		f, _ := query.Compile(src)
		if src == "" {
			f = nil
		}
		if a, b := cols(mem, f), cols(dec, f); !slices.Equal(a, b) {
			t.Fatalf("%q: the readers' column values differ (%d and %d hits)", src, len(a), len(b))
		}
	}

	// Questions the columns decide decode none of the WAL's events.
	fresh, err := db.OpenReader()
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	for _, src := range []string{"user=admin", "verb=delete resource=secrets", "time>=2026-11-20T06:00:00Z ip in 10.0.0.0/8"} {
		f, _ := query.Compile(src)
		if _, err := fresh.CountMatching(Selection{Filter: f}); err != nil {
			t.Fatal(err)
		}
		if _, _, err := fresh.Stats(Selection{Filter: f}, []Column{ColUser}, 0); err != nil {
			t.Fatal(err)
		}
	}
	decoded := 0
	for _, c := range fresh.head {
		for i := range c.events {
			if fresh.decoded[&c.events[i]] != nil && c.cols(&c.events[i]) != nil {
				decoded++
			}
		}
	}
	if decoded > 0 {
		t.Errorf("%d WAL events with columns were decoded for questions the columns decide", decoded)
	}
}

// TestDBReaderDuringIngest opens readers on the ingest columns while the
// committer adds to them (run with -race).
func TestDBReaderDuringIngest(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(dir, Options{WALSegmentBytes: 64 << 10, SealAfter: time.Hour, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var acked atomic.Int64
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go ingest(ctx, t, db, &acked, &wg)
	f, _ := query.Compile("user=u verb=get")
	for k := 0; k < 100 && !t.Failed(); k++ {
		before := int(acked.Load())
		r, err := db.OpenReader()
		if err != nil {
			t.Fatal(err)
		}
		s := newSeen()
		var n int
		err = r.Select(Selection{Filter: f}, func(h *Hit) error {
			if h.Column(ColUser) != "u" || h.Column(ColVerb) != "get" {
				return fmt.Errorf("hit with user %q verb %q", h.Column(ColUser), h.Column(ColVerb))
			}
			n++
			return nil
		})
		if err == nil {
			err = r.Select(Selection{NeedEvent: true}, func(h *Hit) error { s.add(idOf(t, h.Event)); return nil })
		}
		count := r.Count()
		r.Close()
		if err != nil {
			t.Fatal(err)
		}
		if missing, first := s.missing(0, before); missing > 0 || s.dups > 0 || n != count {
			t.Fatalf("read %d of %d (%d missing, the first id-%d; %d twice)", n, count, missing, first, s.dups)
		}
	}
	stop()
	wg.Wait()
}
