package local

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/kubetrail/kubetrail/internal/pipeline"
	"github.com/kubetrail/kubetrail/internal/query"
	"github.com/kubetrail/kubetrail/internal/vfs"
	"github.com/kubetrail/kubetrail/internal/wal"
)

// readerView is everything a reader answers, sorted (an event sealed
// between two opens moves from the WAL to a segment): each event with its
// column values, the count of a few questions, and the damage.
func readerView(t *testing.T, r *Reader) (events []string, counts []int64, damage []string) {
	t.Helper()
	err := r.Select(Selection{NeedRaw: true}, func(h *Hit) error {
		s := fmt.Sprintf("%s|%d|%d|%s", h.Cluster, h.Time, h.Received, h.Raw)
		for c := Column(0); c < NumColumns; c++ {
			s += "|" + h.Column(c)
		}
		events = append(events, s)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(events)
	for _, src := range []string{"user=admin", "verb=delete resource=secrets", "cluster=prod", "time>=2026-11-20T06:00:00Z"} {
		f, err := query.Compile(src)
		if err != nil {
			t.Fatal(err)
		}
		n, err := r.CountMatching(Selection{Filter: f})
		if err != nil {
			t.Fatal(err)
		}
		counts = append(counts, n)
	}
	for _, d := range r.Damaged() {
		damage = append(damage, d.Path+": "+d.Reason)
	}
	slices.Sort(damage)
	return events, counts, damage
}

// TestWALHeadCacheAnswersAsAFreshScan compares, after every acknowledged
// batch, the DB's readers (that decode only what was appended to the WAL
// since the last reader) with a reader scanning the whole WAL, across
// rotations and seals, damage in the WAL, compaction, and a crash and
// reopen; and checks that every acknowledged event is read.
//
// Mutations it catches: walHeads.read dropping the tail it read (a stale
// snapshot missing the last batch); read serving the cached prefix of a
// WAL file that was sealed and removed (its events counted twice, in the
// head and in the segment); the cached damage not reported again.
func TestWALHeadCacheAnswersAsAFreshScan(t *testing.T) {
	dir := t.TempDir()
	opts := Options{WALSegmentBytes: 48 << 10, SealAfter: time.Hour}
	db, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { db.Close() }()
	rng := rand.New(rand.NewPCG(41, 42))
	acked, checked := 0, 0
	check := func(step int) {
		t.Helper()
		// A seal or a quarantine between the two opens changes what the
		// second sees: open both again.
		for try := 0; ; try++ {
			sealed, quar := db.Stats().Sealed.Load(), db.Stats().Quarantined.Load()
			cached, err := db.OpenReader()
			if err != nil {
				t.Fatal(err)
			}
			again, err := db.OpenReader() // served from what the first kept
			if err != nil {
				t.Fatal(err)
			}
			fresh, err := OpenReader(db.Dir())
			if err != nil {
				t.Fatal(err)
			}
			stable := sealed == db.Stats().Sealed.Load() && quar == db.Stats().Quarantined.Load()
			ce, cc, cd := readerView(t, cached)
			ae, ac, ad := readerView(t, again)
			fe, fc, fd := readerView(t, fresh)
			cached.Close()
			again.Close()
			fresh.Close()
			if len(ce) != acked || len(ae) != acked {
				t.Fatalf("step %d: DB readers read %d and %d events, %d were acknowledged", step, len(ce), len(ae), acked)
			}
			if !stable && try < 20 {
				continue
			}
			for _, got := range []struct {
				e    []string
				c    []int64
				d    []string
				name string
			}{{ce, cc, cd, "first"}, {ae, ac, ad, "second"}} {
				if !slices.Equal(got.e, fe) {
					t.Fatalf("step %d: the %s DB reader's events differ from a fresh scan's (%d, %d)", step, got.name, len(got.e), len(fe))
				}
				if !slices.Equal(got.c, fc) {
					t.Fatalf("step %d: the %s DB reader counts %v, a fresh scan %v", step, got.name, got.c, fc)
				}
				if !slices.Equal(got.d, fd) {
					t.Fatalf("step %d: the %s DB reader reports damage %q, a fresh scan %q", step, got.name, got.d, fd)
				}
			}
			checked++
			return
		}
	}
	damaged := false
	for step := 0; step < 70; step++ {
		b := &pipeline.Batch{Cluster: []string{"default", "prod"}[step%2], Received: time.Now()}
		for i := 0; i < 30; i++ {
			b.Records = append(b.Records, genEvent(rng, step*30+i))
		}
		res, err := db.Append(context.Background(), b)
		if err != nil {
			t.Fatal(err)
		}
		acked += res.Stored
		switch step {
		case 25:
			// Damage in the WAL segment being written, before a reader
			// reads it: reported by every reader, the first and those
			// that read what the first kept.
			flipRecord(t, db, 1)
			damaged = true
			acked = -1 // recomputed from the fresh scan below
		case 45:
			if _, err := db.Compact(context.Background(), Compaction{Below: 1 << 20}); err != nil {
				t.Fatal(err)
			}
		case 55:
			db = crashCopy(t, db, opts)
		}
		if acked < 0 {
			fresh, err := OpenReader(db.Dir())
			if err != nil {
				t.Fatal(err)
			}
			acked = fresh.Count()
			if len(fresh.Damaged()) == 0 {
				t.Fatal("the flipped byte was not reported")
			}
			fresh.Close()
		}
		check(step)
	}
	if !damaged || checked != 70 || db.Stats().Sealed.Load() == 0 {
		t.Fatalf("%d steps checked, %d sealed: the test wants every step and seals", checked, db.Stats().Sealed.Load())
	}
}

// flipRecord flips a byte in record k of the WAL segment being written.
func flipRecord(t *testing.T, db *DB, k int) {
	t.Helper()
	path := wal.SegmentPath(filepath.Join(db.Dir(), walDir), db.wal.Current())
	var starts []int64
	if _, err := wal.Scan(path, func(off int64, _ []byte) error { starts = append(starts, off); return nil }); err != nil || len(starts) <= k {
		t.Fatalf("records at %v: %v", starts, err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	at := starts[k] + int64(wal.HeaderLen(2)) + 5
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, at); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{b[0] ^ 0xff}, at); err != nil {
		t.Fatal(err)
	}
}

// crashCopy copies db's folder as a crash would leave it (every
// acknowledged batch was synced), opens the copy, and closes db.
func crashCopy(t *testing.T, db *DB, opts Options) *DB {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "crashed")
	if err := os.CopyFS(dst, os.DirFS(db.Dir())); err != nil {
		t.Fatal(err)
	}
	db.Close()
	n, err := Open(dst, opts)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestDBReaderLeavesOutTheBatchBeingSynced: a batch whose sync is running
// is in the WAL file but not acknowledged: a DB reader leaves it out (it
// has no columns yet, and a failed sync would cut it back), and reads it
// once answered. Mutation it catches: read returning the events past the
// durable end (the reader counts 20 while the sync is held).
func TestDBReaderLeavesOutTheBatchBeingSynced(t *testing.T) {
	g := &gatedFS{FS: vfs.OS, entered: make(chan struct{}, 16), release: make(chan struct{})}
	db, err := Open(t.TempDir(), Options{FS: g, SealAfter: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		// Close syncs too, and a failed check may leave a sync held:
		// let every sync go.
		done := make(chan struct{})
		defer close(done)
		go func() {
			for {
				select {
				case <-g.entered:
				case g.release <- struct{}{}:
				case <-done:
					return
				}
			}
		}()
		db.Close()
	}()
	answers := make(chan error, 2)
	send := func(i int) {
		_, err := db.Append(context.Background(), batch(i*10, i*10+10))
		answers <- err
	}
	count := func() int {
		t.Helper()
		r, err := db.OpenReader()
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		return r.Count()
	}
	go send(0)
	<-g.entered
	g.release <- struct{}{}
	if err := <-answers; err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 10 {
		t.Fatalf("%d events read after the first answer, want 10", n)
	}
	go send(1)
	<-g.entered // its bytes are written, its sync held
	if n := count(); n != 10 {
		t.Fatalf("%d events read while the second batch's sync is held, want the 10 acknowledged", n)
	}
	g.release <- struct{}{}
	if err := <-answers; err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 20 {
		t.Fatalf("%d events read after the second answer, want 20", n)
	}
}
