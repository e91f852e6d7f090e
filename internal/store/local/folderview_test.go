package local

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/kubetrail/kubetrail/internal/wal"
)

// TestDBReadersSeeEachFolderChange checks the folder view a DB's readers
// share (folderview.go): after each change the DB makes to its folder, a
// segment sealed, compacted, retired, a WAL record quarantined, the next
// reader reads exactly the segments the folder holds (none whose file was
// removed, every new one) and reports the damage a reader of the folder
// reports, while a reader opened before the change still reads everything
// it had. (Mutation tried: takeView keeping its first view whatever the
// change count says fails at "sealed". That every change is counted is
// vfs's TestCountChangesCountsEveryChangeOfAName; the readers racing the
// changes are the concurrent tests' "DB" readers.)
func TestDBReadersSeeEachFolderChange(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(dir, Options{WALSegmentBytes: 8 << 10, NoSync: true, SealAfter: time.Hour, sealers: 1,
		layout: segLayout{groupBytes: 64 << 10, blockBytes: 8 << 10}})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// id is the next event's id, stored the number of events the store
	// holds.
	id, stored := 0, 0
	// sealMore appends until n more WAL segments are sealed.
	sealMore := func(n int64) {
		t.Helper()
		want := db.Stats().Sealed.Load() + n
		for db.Stats().Sealed.Load() < want {
			had := db.Stats().Sealed.Load()
			if _, err := db.Append(context.Background(), batch(id, id+40)); err != nil {
				t.Fatal(err)
			}
			id, stored = id+40, stored+40
			for start := time.Now(); db.Stats().Sealed.Load() == had; time.Sleep(time.Millisecond) {
				if time.Since(start) > 10*time.Second {
					t.Fatalf("no WAL segment sealed in 10 s after %d events", id)
				}
			}
		}
	}
	// check opens the next reader, as the next API request does.
	check := func(step string, held *Reader) *Reader {
		t.Helper()
		if held != nil {
			n, err := held.CountMatching(Selection{})
			if err != nil || n != int64(held.Count()) {
				t.Fatalf("%s: a reader opened before it counts %d of its %d events: %v", step, n, held.Count(), err)
			}
			held.Close()
		}
		r, err := db.OpenReader()
		if err != nil {
			t.Fatal(err)
		}
		var got, want []string
		for _, s := range r.segs {
			got = append(got, s.r.f.Name())
		}
		for _, s := range mustList(t, dir) {
			want = append(want, s.path)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("%s: the next reader reads the segments\n%q\nthe folder holds\n%q", step, got, want)
		}
		cold, err := OpenReader(dir)
		if err != nil {
			t.Fatal(err)
		}
		defer cold.Close()
		if r.Count() != cold.Count() || r.Count() != stored {
			t.Fatalf("%s: the next reader holds %d events, a reader of the folder %d, %d are stored", step, r.Count(), cold.Count(), stored)
		}
		if !slices.Equal(r.Damaged(), cold.Damaged()) {
			t.Fatalf("%s: the next reader reports the damage %v, a reader of the folder %v", step, r.Damaged(), cold.Damaged())
		}
		return r
	}
	sealMore(3)
	r := check("first", nil)
	sealMore(3)
	r = check("sealed", r)
	res, err := db.Compact(context.Background(), Compaction{Below: 1 << 20})
	if err != nil || res.Inputs == 0 {
		t.Fatalf("compaction merged %d segments: %v", res.Inputs, err)
	}
	r = check("compacted", r)
	sealMore(2)
	r = check("sealed after compaction", r)
	n, _, err := db.Enforce(Retention{MaxBytes: 1}, time.Now())
	if err != nil || n == 0 {
		t.Fatalf("retention deleted %d segments: %v", n, err)
	}
	stored = 0 // every event stored so far was retired
	for _, s := range mustList(t, dir) {
		t.Fatalf("retention left %s", s.path)
	}
	r = check("retired", r)

	// A damaged record in the WAL segment being written is quarantined
	// when it is sealed.
	before := db.Stats().Sealed.Load()
	seq := db.wal.Current()
	if _, err := db.Append(context.Background(), batch(id, id+1)); err != nil || db.wal.Current() != seq {
		t.Fatalf("one event filled a WAL segment (%v)", err)
	}
	path := wal.SegmentPath(filepath.Join(dir, walDir), seq)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	at := int64(len(wal.Magic) + wal.HeaderLen(2) + 5)
	b := make([]byte, 1)
	f.ReadAt(b, at)
	f.WriteAt([]byte{b[0] ^ 0xff}, at)
	f.Close()
	id++ // its one event is lost with the record
	sealMore(1)
	if db.Stats().Sealed.Load() == before {
		t.Fatal("the damaged WAL segment was not sealed")
	}
	if db.Stats().Quarantined.Load() != 1 {
		t.Fatalf("%d stretches quarantined, want 1", db.Stats().Quarantined.Load())
	}
	r = check("quarantined", r)
	if len(r.Damaged()) != 1 {
		t.Fatalf("after the quarantine the next reader reports %v", r.Damaged())
	}
	r.Close()
}
