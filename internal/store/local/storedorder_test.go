package local

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kubetrail/kubetrail/internal/query"
	"github.com/kubetrail/kubetrail/internal/vfs"
	"github.com/kubetrail/kubetrail/internal/wal"
)

// holdSeal is a file system that holds the renaming into place of the
// segment of one WAL segment (hold) until release is closed: the sealing
// of that WAL segment is then done but for its last step, as a slow disk
// or a busy sealer leaves it, while the other sealer goes on.
type holdSeal struct {
	vfs.FS
	hold    atomic.Uint64
	held    chan struct{} // closed once the rename is waiting
	release chan struct{}
}

// openHoldingSeal opens a store in dir whose WAL segments are sealed by
// two sealers, through a holdSeal, and returns release, which lets a held
// rename go on (once; calling it again does nothing).
func openHoldingSeal(t *testing.T, dir string, layout segLayout) (*DB, *holdSeal, func()) {
	t.Helper()
	fs := &holdSeal{FS: vfs.OS, held: make(chan struct{}), release: make(chan struct{})}
	db, err := Open(dir, Options{WALSegmentBytes: 8 << 10, NoSync: true, SealAfter: time.Hour, sealers: 2, FS: fs, layout: layout})
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	return db, fs, func() { once.Do(func() { close(fs.release) }) }
}

func (h *holdSeal) Rename(oldname, newname string) error {
	if seq := h.hold.Load(); seq != 0 && filepath.Base(newname) == segmentName(seq, seq) {
		close(h.held)
		<-h.release
	}
	return h.FS.Rename(oldname, newname)
}

// TestReadersKeepStoredOrderWhileAnOlderSegmentSeals holds the sealing of
// WAL segment 2 while the second sealer seals segments 3 and 4: the folder
// then holds segments 1, 3 and 4 sealed and WAL segment 2 still in the WAL.
// Every reader must still give the events in the order they were stored
// (the positions' order), as `query --jq`, sort=stored, `detect`'s
// sequence rules and investigations print or count them; Scan, which the
// detector, forwarding and migrate read from a position, must give each
// event once, positions increasing, from any position; and compaction
// must not merge segments 1 and 3 across the WAL segment between them.
// (Mutations tried: Select and SelectFilters giving every segment before
// the WAL's events, as they did, fail at "held" with id-80 before id-40;
// compaction merging segments past the oldest WAL segment fails at
// "compacted": segment 1-4 hides WAL segment 2, whose 40 events Scan no
// longer gives, and its segment, once in place, is superseded.)
func TestReadersKeepStoredOrderWhileAnOlderSegmentSeals(t *testing.T) {
	dir := t.TempDir()
	db, fs, release := openHoldingSeal(t, dir, segLayout{groupBytes: 64 << 10, blockBytes: 8 << 10})
	defer func() { release(); db.Close() }()
	seqs := walSeqs(t, dir)
	if len(seqs) != 1 {
		t.Fatalf("a new store's WAL segments: %v", seqs)
	}
	first := seqs[0]
	fs.hold.Store(first + 1)
	// Each batch fills a WAL segment: the second is held at its rename,
	// the others are sealed beside it.
	const batches, per = 4, 40
	for b := 0; b < batches; b++ {
		if _, err := db.Append(context.Background(), batch(b*per, b*per+per)); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-fs.held:
	case <-time.After(10 * time.Second):
		t.Fatal("WAL segment 2 did not reach its rename in 10 s")
	}
	for start := time.Now(); db.Stats().Sealed.Load() < batches-1; time.Sleep(time.Millisecond) {
		if time.Since(start) > 10*time.Second {
			t.Fatalf("%d WAL segments sealed in 10 s, want %d", db.Stats().Sealed.Load(), batches-1)
		}
	}
	var want []string
	for i := 0; i < batches*per; i++ {
		want = append(want, fmt.Sprintf("id-%d", i))
	}

	check := func(step string, r *Reader) {
		t.Helper()
		// Scan: every event once, in position order, from any position.
		var got []string
		var pos []Pos
		if err := Scan(dir, ScanOptions{}, func(s Stored) error {
			got, pos = append(got, auditIDOf(s.Raw)), append(pos, s.Pos)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("%s: Scan does not give the events stored, in order: %s", step, firstDiff(got, want))
		}
		for i := 1; i < len(pos); i++ {
			if !pos[i-1].Less(pos[i]) {
				t.Fatalf("%s: Scan gives %v after %v", step, pos[i], pos[i-1])
			}
		}
		for _, i := range []int{1, per - 1, per, per + 1, 2 * per, 3*per + 5} {
			got = got[:0]
			if err := Scan(dir, ScanOptions{From: pos[i]}, func(s Stored) error { got = append(got, auditIDOf(s.Raw)); return nil }); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, want[i:]) {
				t.Fatalf("%s: Scan from %v does not give the events stored from %s: %s", step, pos[i], want[i], firstDiff(got, want[i:]))
			}
		}
		// The readers: Select and SelectFilters, on columns alone, on
		// the text, and on the WAL's columns built at ingest.
		all, _ := query.Compile("verb=get")
		for _, src := range []string{"", "user=u verb=get", "uri=/api"} {
			var f *query.Filter
			if src != "" {
				f, _ = query.Compile(src)
			}
			var sel, lazy []string
			if err := r.Select(Selection{Filter: f, NeedRaw: true}, func(h *Hit) error {
				sel = append(sel, auditIDOf(h.Raw))
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if f == nil {
				f = all
			}
			if err := r.SelectFilters(Selection{}, LazyOptions{Filters: []*query.Filter{f}}, func(h *Hit) error {
				if err := h.Load(); err != nil {
					return err
				}
				lazy = append(lazy, auditIDOf(h.Raw))
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(sel, want) {
				t.Errorf("%s %q: Select does not give the stored order: %s", step, src, firstDiff(sel, want))
			}
			if !slices.Equal(lazy, want) {
				t.Errorf("%s %q: SelectFilters does not give the stored order: %s", step, src, firstDiff(lazy, want))
			}
		}
	}
	readers := func(step string) {
		t.Helper()
		mem, err := db.OpenReader()
		if err != nil {
			t.Fatal(err)
		}
		defer mem.Close()
		other, err := OpenReader(dir)
		if err != nil {
			t.Fatal(err)
		}
		defer other.Close()
		check(step+" DB.OpenReader", mem)
		check(step+" OpenReader", other)
	}

	mem, err := db.OpenReader()
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	if len(mem.segs) != batches-1 || len(mem.head) == 0 || mem.head[0].wal != first+1 {
		t.Fatalf("the test wants WAL segment %d in the WAL and the others sealed: %d segments, %d WAL runs", first+1, len(mem.segs), len(mem.head))
	}
	readers("held")
	if _, err := db.Compact(context.Background(), Compaction{Below: 1 << 30}); err != nil {
		t.Fatal(err)
	}
	readers("compacted")
	release()
	for start := time.Now(); slices.Contains(walSeqs(t, dir), first+1); time.Sleep(time.Millisecond) {
		if time.Since(start) > 10*time.Second {
			t.Fatal("the held WAL segment was not sealed in 10 s")
		}
	}
	readers("sealed")
	if _, err := db.Compact(context.Background(), Compaction{Below: 1 << 30}); err != nil {
		t.Fatal(err)
	}
	readers("sealed and compacted")
}

// firstDiff says where got first differs from want.
func firstDiff(got, want []string) string {
	for i := range min(len(got), len(want)) {
		if got[i] != want[i] {
			return fmt.Sprintf("%s at place %d, where %s was stored", got[i], i, want[i])
		}
	}
	return fmt.Sprintf("%d events for %d", len(got), len(want))
}

// walSeqs lists the WAL segments of the store in dir.
func walSeqs(t *testing.T, dir string) []uint64 {
	t.Helper()
	segs, err := wal.ListSegmentsFS(vfs.OS, filepath.Join(dir, walDir))
	if err != nil {
		t.Fatal(err)
	}
	return segs
}
