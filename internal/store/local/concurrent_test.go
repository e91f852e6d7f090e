package local

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kubetrail/kubetrail/internal/audit"
)

// The tests here run readers (Select, CountMatching, Stats, Scan) while
// ingest, compaction and retention change the folder under them: the
// issue's "ingest keeps running during queries; a query during compaction
// or retention returns each event once". Run them with -race.

// idOf returns N of an event(N)'s auditID "id-N".
func idOf(t testing.TB, ev *audit.Event) int {
	n, err := strconv.Atoi(strings.TrimPrefix(ev.AuditID, "id-"))
	if err != nil {
		t.Errorf("auditID %q", ev.AuditID)
	}
	return n
}

// seen counts how often each event id was read, and reports the first id
// read twice.
type seen struct {
	n    map[int]int
	dup  int
	dups int
}

func newSeen() *seen { return &seen{n: map[int]int{}, dup: -1} }

func (s *seen) add(id int) {
	s.n[id]++
	if s.n[id] == 2 {
		s.dups++
		if s.dup < 0 {
			s.dup = id
		}
	}
}

// missing returns how many ids in [from, to) were not read, and the first.
func (s *seen) missing(from, to int) (int, int) {
	n, first := 0, -1
	for i := from; i < to; i++ {
		if s.n[i] == 0 {
			if first < 0 {
				first = i
			}
			n++
		}
	}
	return n, first
}

// ingest appends up to 250 batches of 10 new events, one every
// millisecond or so, until ctx ends, each batch its own segment, and
// publishes how many events are acknowledged.
func ingest(ctx context.Context, t *testing.T, db *DB, acked *atomic.Int64, wg *sync.WaitGroup) {
	defer wg.Done()
	for b := 0; b < 250 && ctx.Err() == nil; b++ {
		time.Sleep(time.Millisecond)
		res, err := db.Append(context.Background(), batch(b*10, b*10+10))
		if err != nil || res.Stored != 10 {
			t.Errorf("append %d: %+v %v", b, res, err)
			return
		}
		acked.Store(int64(b*10 + 10))
	}
}

// readers runs every kind of reader in turn until ctx ends. Each is handed
// the number of events acknowledged before it opened and checks its own
// answer with check, which also gets the count of events read and the
// number of times each id was read.
func readers(ctx context.Context, t *testing.T, db *DB, dir string, acked *atomic.Int64, check func(kind string, before int, s *seen), rounds *atomic.Int64, wg *sync.WaitGroup) {
	defer wg.Done()
	for k := 0; ctx.Err() == nil; k++ {
		before := int(acked.Load())
		s := newSeen()
		kind := []string{"Select", "Scan", "count", "DB"}[k%4]
		switch kind {
		case "Select", "DB":
			// "DB" is a reader of the serving DB, sharing its folder view.
			open := func() (*Reader, error) { return OpenReader(dir) }
			if kind == "DB" {
				open = db.OpenReader
			}
			r, err := open()
			if err != nil {
				t.Errorf("OpenReader: %v", err)
				return
			}
			err = r.Select(Selection{NeedEvent: true}, func(h *Hit) error {
				s.add(idOf(t, h.Event))
				return nil
			})
			if err == nil && r.Count() != len(s.n)+s.dups {
				err = fmt.Errorf("Count says %d events, Select read %d", r.Count(), len(s.n)+s.dups)
			}
			r.Close()
			if err != nil {
				t.Errorf("Select: %v", err)
				return
			}
		case "Scan":
			var ev audit.Event
			err := Scan(dir, ScanOptions{}, func(st Stored) error {
				if err := audit.DecodeStored(st.Raw, &ev); err != nil {
					return err
				}
				s.add(idOf(t, &ev))
				return nil
			})
			if err != nil {
				t.Errorf("Scan: %v", err)
				return
			}
		case "count":
			// Columns only: the counts must agree with the reader's view.
			r, err := OpenReader(dir)
			if err != nil {
				t.Errorf("OpenReader: %v", err)
				return
			}
			var hits int
			err = r.Select(Selection{}, func(h *Hit) error { hits++; return nil })
			n, err2 := r.CountMatching(Selection{})
			_, total, err3 := r.Stats(Selection{}, []Column{ColUser}, 0)
			count := r.Count()
			r.Close()
			if err != nil || err2 != nil || err3 != nil {
				t.Errorf("count: %v %v %v", err, err2, err3)
				return
			}
			if hits != count || n != int64(count) || total != int64(count) {
				t.Errorf("one view, three counts: Select %d, CountMatching %d, Stats %d; Count %d", hits, n, total, count)
			}
			continue
		}
		check(kind, before, s)
		rounds.Add(1)
	}
}

// compactLoop compacts until ctx ends.
func compactLoop(ctx context.Context, t *testing.T, db *DB, c Compaction, wg *sync.WaitGroup) {
	defer wg.Done()
	for ctx.Err() == nil {
		if _, err := db.Compact(ctx, c); err != nil {
			t.Errorf("compact: %v", err)
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func TestQueryDuringCompactionReturnsEachEventOnce(t *testing.T) {
	dir := t.TempDir()
	db := openSmall(t, dir)
	defer db.Close()
	var acked, rounds atomic.Int64
	check := func(kind string, before int, s *seen) {
		if s.dups > 0 {
			t.Errorf("%s read %d events twice, the first id-%d", kind, s.dups, s.dup)
		}
		if n, first := s.missing(0, before); n > 0 {
			t.Errorf("%s missed %d of the %d events acknowledged before it began, the first id-%d", kind, n, before, first)
		}
	}
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(4)
	go ingest(ctx, t, db, &acked, &wg)
	go compactLoop(ctx, t, db, Compaction{Below: 32 << 10}, &wg)
	for range 2 {
		go readers(ctx, t, db, dir, &acked, check, &rounds, &wg)
	}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) && (rounds.Load() < 30 || acked.Load() < 2500) && !t.Failed() {
		time.Sleep(50 * time.Millisecond)
	}
	stop()
	wg.Wait()
	t.Logf("%d events stored, %d segments merged away, %d reads checked; %d segments left",
		acked.Load(), db.Stats().Compacted.Load(), rounds.Load(), segmentCount(t, dir))
	if db.Stats().Compacted.Load() == 0 || rounds.Load() < 10 {
		t.Fatal("the readers did not run during compaction")
	}
}

func TestQueryDuringRetentionMissesNothingNewer(t *testing.T) {
	dir := t.TempDir()
	db := openSmall(t, dir)
	defer db.Close()
	var acked, rounds, floor, deleted atomic.Int64
	check := func(kind string, before int, s *seen) {
		if s.dups > 0 {
			t.Errorf("%s read %d events twice, the first id-%d", kind, s.dups, s.dup)
		}
		// Retention may have deleted anything older than the cutoff it
		// had reached by the time the read ended; nothing newer.
		from := int(floor.Load())
		if n, first := s.missing(from, before); n > 0 {
			t.Errorf("%s missed %d events newer than the retention cutoff (id-%d), the first id-%d", kind, n, from, first)
		}
	}
	base := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	retain := func(ctx context.Context, wg *sync.WaitGroup) {
		defer wg.Done()
		for ctx.Err() == nil {
			// Keep the newest 300 events: event i is at base + i ms.
			cut := max(0, acked.Load()-300)
			floor.Store(cut)
			now := base.Add(time.Duration(cut)*time.Millisecond + time.Hour)
			n, _, err := db.Enforce(Retention{MaxAge: time.Hour}, now)
			if err != nil {
				t.Errorf("retention: %v", err)
				return
			}
			deleted.Add(int64(n))
			time.Sleep(10 * time.Millisecond)
		}
	}
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(5)
	go ingest(ctx, t, db, &acked, &wg)
	// Merged segments of at most 50 events (ms), so that retention has
	// many to delete.
	go compactLoop(ctx, t, db, Compaction{Below: 1 << 20, MaxSpan: 50 * time.Millisecond}, &wg)
	go retain(ctx, &wg)
	for range 2 {
		go readers(ctx, t, db, dir, &acked, check, &rounds, &wg)
	}
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) && (rounds.Load() < 30 || acked.Load() < 2500) && !t.Failed() {
		time.Sleep(50 * time.Millisecond)
	}
	stop()
	wg.Wait()
	t.Logf("%d events stored, %d segments merged away, %d deleted by retention, %d reads checked",
		acked.Load(), db.Stats().Compacted.Load(), deleted.Load(), rounds.Load())
	if deleted.Load() < 10 || db.Stats().Compacted.Load() < 10 || rounds.Load() < 10 {
		t.Fatal("the readers did not run during retention and compaction")
	}
}

// TestIngestKeepsRunningDuringQueries stops a query in the middle, holding
// its segments open, and meanwhile ingests, compacts the segments it holds,
// and deletes some by retention. Then the query goes on: it must return
// exactly the events that were stored when it opened.
func TestIngestKeepsRunningDuringQueries(t *testing.T) {
	dir := t.TempDir()
	db := openSmall(t, dir)
	defer db.Close()
	for b := 0; b < 40; b++ {
		if _, err := db.Append(context.Background(), batch(b*10, b*10+10)); err != nil {
			t.Fatal(err)
		}
	}
	waitSettled(t, dir)
	r, err := OpenReader(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if len(r.segs) < 35 {
		t.Fatalf("%d segments: the test wants many", len(r.segs))
	}
	paused, resume := make(chan struct{}), make(chan struct{})
	done := make(chan *seen)
	go func() {
		s := newSeen()
		first := true
		err := r.Select(Selection{NeedEvent: true}, func(h *Hit) error {
			if first {
				first = false
				close(paused)
				<-resume
			}
			s.add(idOf(t, h.Event))
			return nil
		})
		if err != nil {
			t.Error(err)
		}
		done <- s
	}()
	<-paused

	// The query is stopped with every segment open. Ingest goes on...
	t0 := time.Now()
	var slowest time.Duration
	for b := 40; b < 140; b++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		t1 := time.Now()
		res, err := db.Append(ctx, batch(b*10, b*10+10))
		cancel()
		if err != nil || res.Stored != 10 {
			t.Fatalf("append during a query: %+v %v", res, err)
		}
		slowest = max(slowest, time.Since(t1))
	}
	t.Logf("100 batches stored during the query in %v, the slowest in %v", time.Since(t0).Round(time.Millisecond), slowest.Round(time.Microsecond))
	waitSettled(t, dir)
	// ...the segments it holds are merged away...
	res, err := db.Compact(context.Background(), Compaction{Below: 16 << 10})
	t.Logf("compacted %d segments into %d", res.Inputs, res.Outputs)
	if err != nil || res.Inputs < 100 || res.Outputs < 3 {
		t.Fatalf("compaction during a query: %+v %v", res, err)
	}
	// ...and retention deletes the oldest of the merged ones.
	if n, _, err := db.Enforce(Retention{MaxAge: time.Hour}, time.Date(2026, 11, 23, 11, 0, 0, 700e6, time.UTC)); err != nil || n == 0 {
		t.Fatalf("retention during a query: %d deleted, %v", n, err)
	}
	// Another query sees the new state, each event once.
	now := newSeen()
	Scan(dir, ScanOptions{}, func(st Stored) error {
		var ev audit.Event
		audit.DecodeStored(st.Raw, &ev)
		now.add(idOf(t, &ev))
		return nil
	})
	if now.dups > 0 || len(now.n) == 0 || now.n[1399] != 1 || now.n[0] != 0 {
		t.Fatalf("a new query after compaction and retention: %d events, %d twice", len(now.n), now.dups)
	}

	close(resume)
	s := <-done
	if s.dups > 0 {
		t.Fatalf("the stopped query read %d events twice", s.dups)
	}
	if n, first := s.missing(0, 400); n > 0 || len(s.n) != 400 {
		t.Fatalf("the stopped query read %d events, missing %d (the first id-%d), want the 400 stored when it opened", len(s.n), n, first)
	}
}
