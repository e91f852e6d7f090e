package local

import (
	"context"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/kubetrail/kubetrail/internal/audit"
	"github.com/kubetrail/kubetrail/internal/pipeline"
	"github.com/kubetrail/kubetrail/internal/query"
)

// checkFloors fails when a hit's Floor is above the time of that hit or
// of one after it, for Select with and without the read-ahead.
func checkFloors(t *testing.T, step string, r *Reader) int {
	t.Helper()
	hits := 0
	for _, src := range []string{"", "verb=get", `uri~"x"`} {
		var f *query.Filter
		if src != "" {
			f, _ = query.Compile(src)
		}
		for _, workers := range []int{1, 2} {
			r.textWorkers = workers
			var times, floors []int64
			if err := r.Select(Selection{Filter: f, NeedRaw: true}, func(h *Hit) error {
				fl, ok := h.Floor()
				if !ok {
					t.Fatalf("%s %q: a hit without a floor", step, src)
				}
				times, floors = append(times, h.Time), append(floors, fl)
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			least := int64(1 << 62)
			for k := len(times) - 1; k >= 0; k-- {
				least = min(least, times[k])
				if floors[k] > least {
					t.Fatalf("%s %q, %d workers: hit %d of %d has floor %d above a later time %d", step, src, workers, k, len(times), floors[k], least)
				}
			}
			hits += len(times)
		}
	}
	return hits
}

// TestFloorsHoldForOddTimes: floors stay at or below every later hit's
// time with events that have no timestamp (year 1), year 9999, one time
// shared across segments, batches going back, a WAL segment left in the
// WAL between sealed ones, compacted segments, and a DB's reader.
func TestFloorsHoldForOddTimes(t *testing.T) {
	// Compaction merges no segments spanning centuries: once with the
	// years 1 and 9999, once without, to have compacted segments.
	for _, odd := range []bool{true, false} {
		floorsOdd(t, odd)
	}
}

func floorsOdd(t *testing.T, odd bool) {
	dir := t.TempDir()
	db, fs, release := openHoldingSeal(t, dir, segLayout{groupBytes: 8 << 10, blockBytes: 2 << 10, blockEvents: 8})
	defer func() { release(); db.Close() }()
	first := walSeqs(t, dir)[0]
	fs.hold.Store(first + 3)
	rng := rand.New(rand.NewPCG(5, 6))
	same := time.Date(2026, 11, 20, 5, 0, 0, 0, time.UTC)
	n := 0
	for b := range 30 {
		bt := &pipeline.Batch{Cluster: "c", Received: time.Now()}
		for range 20 {
			ev := genEvent(rng, n).Event
			set := func(tm time.Time) {
				ev.RequestReceivedTimestamp = audit.MicroTime{Time: tm}
				ev.StageTimestamp = audit.MicroTime{Time: tm}
			}
			k := n % 9
			if !odd && k < 2 {
				k = 3
			}
			switch k {
			case 0:
				set(time.Date(1, 1, 1, 0, 0, 1, 0, time.UTC))
			case 1:
				set(time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC))
			case 2:
				set(same)
			case 3:
				set(ev.StageTimestamp.Add(-time.Duration(b%5) * 24 * time.Hour))
			}
			n++
			bt.Records = append(bt.Records, recordOf(t, &ev))
		}
		if _, err := db.Append(context.Background(), bt); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-fs.held:
	case <-time.After(10 * time.Second):
		t.Fatal("the held WAL segment did not reach its rename")
	}
	time.Sleep(200 * time.Millisecond)
	r, err := OpenReader(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.head) == 0 || len(r.segs) == 0 || r.head[0].wal > r.segs[len(r.segs)-1].r.meta.WALFirst {
		t.Fatalf("held: %d segments, %d WAL chunks: the test wants a WAL segment between sealed ones", len(r.segs), len(r.head))
	}
	if checkFloors(t, "held", r) == 0 {
		t.Fatal("no hits")
	}
	r.Close()
	dr, err := db.OpenReader()
	if err != nil {
		t.Fatal(err)
	}
	checkFloors(t, "db reader", dr)
	dr.Close()
	release()
	waitSealed(t, dir)
	if _, err := db.Compact(context.Background(), Compaction{Below: 1 << 20, MaxSpan: 1 << 62}); err != nil {
		t.Fatal(err)
	}
	r, err = OpenReader(dir)
	if err != nil {
		t.Fatal(err)
	}
	parts := 0
	for _, s := range r.segs {
		parts = max(parts, len(s.r.meta.Parts))
	}
	if !odd && parts < 2 {
		t.Fatalf("compacted: %d segments, at most %d parts: no segment was compacted", len(r.segs), parts)
	}
	checkFloors(t, "compacted", r)
	r.Close()
}

// TestSelectMakesFloorsOnlyWhenAsked: a Select whose caller never calls
// Hit.Floor does no more than one with NoTimes (making the floors walks
// every WAL event: 16% of a Select over a WAL of 50,000 events, on
// serve's API and detect, which never ask), and a Select run from
// another's callback leaves the outer one its floors.
// Mutations: the floors made at the start of every Select fails the
// first; the inner Select clearing them fails the second.
func TestSelectMakesFloorsOnlyWhenAsked(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(dir, Options{NoSync: true, WALSegmentBytes: 64 << 20, SealAfter: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Append(context.Background(), batch(0, 200)); err != nil {
		t.Fatal(err)
	}
	r, err := db.OpenReader()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.headLen() != 200 || len(r.segs) != 0 {
		t.Fatalf("%d WAL events, %d segments: the test wants a WAL alone", r.headLen(), len(r.segs))
	}
	f, err := query.Compile("user=nobody-at-all")
	if err != nil {
		t.Fatal(err)
	}
	allocs := func(noTimes bool) float64 {
		return testing.AllocsPerRun(20, func() {
			if err := r.Select(Selection{Filter: f, NoTimes: noTimes}, func(*Hit) error { return nil }); err != nil {
				t.Fatal(err)
			}
		})
	}
	if with, without := allocs(false), allocs(true); with != without {
		t.Fatalf("a Select no caller asks floors of makes %v allocations, with NoTimes %v", with, without)
	}
	hits := 0
	if err := r.Select(Selection{}, func(h *Hit) error {
		if err := r.Select(Selection{Filter: f}, func(*Hit) error { return nil }); err != nil {
			return err
		}
		if _, ok := h.Floor(); !ok {
			t.Fatalf("hit %d: no floor after a Select in the callback", hits)
		}
		hits++
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if hits != 200 {
		t.Fatalf("%d hits", hits)
	}
}

// TestFloorsLeaveOutWhatTheBoundsDo: with --since, a segment of old
// events stored last (an import of last year's log) and old events in
// the WAL hold no floor down: every hit's floor is at or above Since and
// at or below every later hit's time, so printing settles as it reads
// and --limit stops early. Mutation: floors made of every segment and
// WAL event whatever the bounds fails it (the floors stay a year back).
func TestFloorsLeaveOutWhatTheBoundsDo(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(dir, Options{NoSync: true, WALSegmentBytes: 16 << 10, SealAfter: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rng := rand.New(rand.NewPCG(1, 7))
	n := 0
	add := func(back time.Duration) {
		bt := &pipeline.Batch{Cluster: "c", Received: time.Now()}
		for range 30 {
			ev := genEvent(rng, n).Event
			ev.RequestReceivedTimestamp.Time = ev.RequestReceivedTimestamp.Add(-back)
			ev.StageTimestamp.Time = ev.StageTimestamp.Add(-back)
			bt.Records = append(bt.Records, recordOf(t, &ev))
			n++
		}
		if _, err := db.Append(context.Background(), bt); err != nil {
			t.Fatal(err)
		}
	}
	for range 20 {
		add(0)
	}
	year := 365 * 24 * time.Hour
	for range 3 {
		add(year) // sealed, stored last
	}
	for start := time.Now(); len(walSeqs(t, dir)) > 1 && time.Since(start) < 20*time.Second; time.Sleep(time.Millisecond) {
	}
	add(year) // in the WAL
	r, err := OpenReader(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if len(r.segs) < 5 || len(r.head) == 0 {
		t.Fatalf("%d segments, %d WAL chunks: the test wants both", len(r.segs), len(r.head))
	}
	since := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC).Add(100 * 37 * time.Second).UnixMicro()
	for _, workers := range []int{1, 2} {
		r.textWorkers = workers
		var times, floors []int64
		if err := r.Select(Selection{Since: since, NeedRaw: true}, func(h *Hit) error {
			fl, _ := h.Floor()
			times, floors = append(times, h.Time), append(floors, fl)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		least := int64(math.MaxInt64)
		for k := len(times) - 1; k >= 0; k-- {
			least = min(least, times[k])
			if floors[k] > least || floors[k] < since {
				t.Fatalf("%d workers: hit %d of %d has floor %d, since %d, a later hit's time %d", workers, k, len(times), floors[k], since, least)
			}
		}
		if len(times) < 100 {
			t.Fatalf("%d hits", len(times))
		}
	}
}
