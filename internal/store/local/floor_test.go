package local

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/kubetrail/kubetrail/internal/audit"
	"github.com/kubetrail/kubetrail/internal/pipeline"
	"github.com/kubetrail/kubetrail/internal/query"
)

// TestSelectFloorsBoundLaterHits: during Select, each hit's Floor is at
// or below the time of that hit and of every hit after it, over sealed
// segments whose times overlap and go back (a later segment holds older
// events than an earlier one) and events still in the WAL, with and
// without the read-ahead; the floors rise as hits go on (so a printer
// settles rows before the end), and there are none with NoTimes.
// Mutations it catches: a segment's floor its own MinTime (not the least
// of it and what follows); the WAL chunks given no floor below segments'.
func TestSelectFloorsBoundLaterHits(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(dir, Options{WALSegmentBytes: 32 << 10, layout: segLayout{groupBytes: 16 << 10, blockBytes: 4 << 10, blockEvents: 8}})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	// Batches in order of time, but every fourth goes back an hour, and
	// events within a batch are shuffled.
	n := 0
	for b := range 40 {
		batch := &pipeline.Batch{Cluster: "c", Received: time.Now()}
		for range 30 {
			r := genEvent(rng, n)
			n++
			if b%4 == 3 {
				shift := func(m *audit.MicroTime) { m.Time = m.Time.Add(-time.Hour) }
				ev := r.Event
				shift(&ev.RequestReceivedTimestamp)
				shift(&ev.StageTimestamp)
				r = recordOf(t, &ev)
			}
			batch.Records = append(batch.Records, r)
		}
		rng.Shuffle(len(batch.Records), func(i, j int) { batch.Records[i], batch.Records[j] = batch.Records[j], batch.Records[i] })
		if _, err := db.Append(context.Background(), batch); err != nil {
			t.Fatal(err)
		}
	}
	defer db.Close()
	// Wait for sealing, leaving the open WAL segment unsealed.
	for k := 0; k < 2000; k++ {
		if r, err := OpenReader(dir); err == nil {
			segs := len(r.segs)
			r.Close()
			if segs >= 5 {
				break
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Two events of their own: the last batch may have filled its WAL
	// segment, which is then sealed (a sixth of the runs had no WAL
	// chunk); one event cannot fill the fresh segment after it.
	for range 2 {
		if _, err := db.Append(context.Background(), &pipeline.Batch{Cluster: "c", Received: time.Now(), Records: []audit.Record{genEvent(rng, n)}}); err != nil {
			t.Fatal(err)
		}
		n++
	}
	r, err := OpenReader(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if len(r.segs) < 5 || len(r.head) == 0 {
		t.Fatalf("%d segments, %d WAL chunks: the test wants both", len(r.segs), len(r.head))
	}
	for _, filter := range []string{"", "verb=get", `uri~"x"`} {
		var f *query.Filter
		if filter != "" {
			if f, err = query.Compile(filter); err != nil {
				t.Fatal(err)
			}
		}
		for _, workers := range []int{1, 2} {
			r.textWorkers = workers
			var times, floors []int64
			if err := r.Select(Selection{Filter: f, NeedRaw: true}, func(h *Hit) error {
				fl, ok := h.Floor()
				if !ok {
					t.Fatalf("%q: a hit without a floor", filter)
				}
				times, floors = append(times, h.Time), append(floors, fl)
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			rises, least := 0, int64(1<<62)
			for k := len(times) - 1; k >= 0; k-- {
				least = min(least, times[k])
				if floors[k] > least {
					t.Fatalf("%q, %d workers: hit %d of %d has floor %d, above a later hit's time %d", filter, workers, k, len(times), floors[k], least)
				}
				if k > 0 && floors[k] > floors[k-1] {
					rises++
				}
			}
			if len(times) < 100 || rises < 3 {
				t.Fatalf("%q, %d workers: %d hits, the floor rose %d times: the test proves little", filter, workers, len(times), rises)
			}
		}
	}
	if err := r.Select(Selection{NoTimes: true}, func(h *Hit) error {
		if _, ok := h.Floor(); ok {
			t.Fatal("a floor with NoTimes")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}
