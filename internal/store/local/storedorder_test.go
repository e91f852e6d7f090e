package local

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
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

func (h *holdSeal) Rename(oldname, newname string) error {
	if seq := h.hold.Load(); seq != 0 && filepath.Base(newname) == segmentName(seq, seq) {
		close(h.held)
		<-h.release
	}
	return h.FS.Rename(oldname, newname)
}

// TestReadersKeepStoredOrderWhileAnOlderSegmentSeals holds the sealing of
// WAL segment 1 while the second sealer seals segment 2: the folder then
// holds segment 2 sealed and segment 1 still in the WAL. Every reader must
// still give the events in the order they were stored (Scan's, the
// positions' order), as `query --jq`, sort=stored, `detect`'s sequence
// rules and investigations print or count them; and Scan, which the
// detector, forwarding and migrate read from a position, must give each
// event once, positions increasing, from any position. (Mutation tried:
// Select and SelectFilters giving every segment before the WAL's events,
// as they did, fail here: segment 2's events came before segment 1's.)
func TestReadersKeepStoredOrderWhileAnOlderSegmentSeals(t *testing.T) {
	dir := t.TempDir()
	fs := &holdSeal{FS: vfs.OS, held: make(chan struct{}), release: make(chan struct{})}
	db, err := Open(dir, Options{WALSegmentBytes: 8 << 10, NoSync: true, SealAfter: time.Hour, sealers: 2, FS: fs,
		layout: segLayout{groupBytes: 64 << 10, blockBytes: 8 << 10}})
	if err != nil {
		t.Fatal(err)
	}
	released := false
	release := func() {
		if !released {
			released = true
			close(fs.release)
		}
	}
	defer func() { release(); db.Close() }()
	walSegs, err := wal.ListSegmentsFS(vfs.OS, filepath.Join(dir, walDir))
	if err != nil || len(walSegs) != 1 {
		t.Fatalf("a new store's WAL: %v, %v", walSegs, err)
	}
	first := walSegs[0]
	fs.hold.Store(first)
	// Each batch fills a WAL segment: the first is held at its rename,
	// the second sealed beside it, the third stays in the open segment.
	for b := 0; b < 3; b++ {
		if _, err := db.Append(context.Background(), batch(b*40, b*40+40)); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-fs.held:
	case <-time.After(10 * time.Second):
		t.Fatal("WAL segment 1 did not reach its rename in 10 s")
	}
	for start := time.Now(); db.Stats().Sealed.Load() < 1; time.Sleep(time.Millisecond) {
		if time.Since(start) > 10*time.Second {
			t.Fatal("the second WAL segment was not sealed in 10 s")
		}
	}

	// Scan: every event once, in position order, from any position.
	var want []string
	var pos []Pos
	if err := Scan(dir, ScanOptions{}, func(s Stored) error {
		want, pos = append(want, string(s.Raw)), append(pos, s.Pos)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(want) != 120 {
		t.Fatalf("Scan gives %d events, want 120", len(want))
	}
	if !slices.IsSortedFunc(pos, func(a, b Pos) int { return map[bool]int{true: -1, false: 1}[a.Less(b)] }) || pos[0].WAL != first {
		t.Fatalf("Scan's positions are not in order from WAL segment %d: %v", first, pos)
	}
	for _, i := range []int{1, 39, 40, 41, 80} {
		var got []string
		if err := Scan(dir, ScanOptions{From: pos[i]}, func(s Stored) error { got = append(got, string(s.Raw)); return nil }); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want[i:]) {
			t.Fatalf("Scan from %v gives %d events, want the %d after it in order", pos[i], len(got), len(want)-i)
		}
	}

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
	for name, r := range map[string]*Reader{"DB.OpenReader": mem, "OpenReader": other} {
		if len(r.segs) == 0 || r.segs[0].r.meta.WALFirst <= first || len(r.head) == 0 {
			t.Fatalf("%s: the test wants a segment after WAL segment %d sealed, and it in the WAL: %d segments, %d WAL runs", name, first, len(r.segs), len(r.head))
		}
		for _, src := range []string{"", "user=u verb=get", "uri=/api"} {
			var f *query.Filter
			if src != "" {
				f, _ = query.Compile(src)
			}
			var got, lazy []string
			if err := r.Select(Selection{Filter: f, NeedRaw: true}, func(h *Hit) error {
				got = append(got, string(h.Raw))
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			all, _ := query.Compile("verb=get")
			if f == nil {
				f = all
			}
			if err := r.SelectFilters(Selection{}, LazyOptions{Filters: []*query.Filter{f}}, func(h *Hit) error {
				if err := h.Load(); err != nil {
					return err
				}
				lazy = append(lazy, string(h.Raw))
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			matching := want // every event matches
			if !slices.Equal(got, matching) {
				t.Errorf("%s %q: Select gives %d events not in stored order (first %s, want %s)", name, src, len(got), first1(got), first1(matching))
			}
			if !slices.Equal(lazy, matching) {
				t.Errorf("%s %q: SelectFilters gives %d events not in stored order (first %s, want %s)", name, src, len(lazy), first1(lazy), first1(matching))
			}
		}
	}

	// Once the held segment is in place, the same.
	release()
	for start := time.Now(); slices.Contains(walSeqs(t, dir), first); time.Sleep(time.Millisecond) {
		if time.Since(start) > 10*time.Second {
			t.Fatal("the held WAL segment was not sealed in 10 s")
		}
	}
	after, err := db.OpenReader()
	if err != nil {
		t.Fatal(err)
	}
	defer after.Close()
	var got []string
	if err := after.Select(Selection{NeedRaw: true}, func(h *Hit) error { got = append(got, string(h.Raw)); return nil }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("after the seal: Select gives %d events not in stored order", len(got))
	}
}

// first1 names the first event of s by its audit ID.
func first1(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	_, id, _ := strings.Cut(s[0], `"auditID":"`)
	id, _, _ = strings.Cut(id, `"`)
	return id
}

func walSeqs(t *testing.T, dir string) []uint64 {
	t.Helper()
	segs, err := wal.ListSegmentsFS(vfs.OS, filepath.Join(dir, walDir))
	if err != nil {
		t.Fatal(err)
	}
	return segs
}
