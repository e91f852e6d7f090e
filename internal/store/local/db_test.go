package local

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/kubetrail/kubetrail/internal/audit"
	"github.com/kubetrail/kubetrail/internal/pipeline"
	"github.com/kubetrail/kubetrail/internal/vfs"
	"github.com/kubetrail/kubetrail/internal/wal"
)

func event(i int) audit.Record {
	ts := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Millisecond)
	raw := fmt.Sprintf(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"id-%d","stage":"ResponseComplete","requestURI":"/api","verb":"get","user":{"username":"u"},"requestReceivedTimestamp":"%s","stageTimestamp":"%s"}`,
		i, ts.Format(audit.MicroTimeLayout), ts.Format(audit.MicroTimeLayout))
	var rec audit.Record
	audit.NewDecoder(audit.Limits{}).DecodeBody("t", []byte(raw), func(r audit.Record) { rec = r }, func(p audit.Problem) { panic(p.String()) })
	return rec
}

func batch(from, to int) *pipeline.Batch {
	b := &pipeline.Batch{Cluster: "default", Received: time.Now()}
	for i := from; i < to; i++ {
		b.Records = append(b.Records, event(i))
	}
	return b
}

func exportAll(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	if err := Scan(dir, ScanOptions{}, func(s Stored) error { out = append(out, string(s.Raw)); return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestAppendDedupReopen(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(dir, Options{WALSegmentBytes: 4096})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	res, err := db.Append(ctx, batch(0, 50))
	if err != nil || res.Stored != 50 || res.Duplicates != 0 {
		t.Fatalf("first append: %+v %v", res, err)
	}
	res, err = db.Append(ctx, batch(0, 50))
	if err != nil || res.Stored != 0 || res.Duplicates != 50 {
		t.Fatalf("retried append: %+v %v", res, err)
	}
	res, err = db.Append(ctx, batch(40, 60))
	if err != nil || res.Stored != 10 || res.Duplicates != 10 {
		t.Fatalf("overlapping append: %+v %v", res, err)
	}
	// Another cluster's identical event is a different event.
	b := batch(0, 1)
	b.Cluster = "other"
	if res, err := db.Append(ctx, b); err != nil || res.Stored != 1 {
		t.Fatalf("other cluster: %+v %v", res, err)
	}
	got := exportAll(t, dir) // while open
	if len(got) != 61 {
		t.Fatalf("export while open: %d events, want 61", len(got))
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	got = exportAll(t, dir)
	if len(got) != 61 {
		t.Fatalf("export after close: %d events, want 61", len(got))
	}
	for i := 0; i < 60; i++ {
		if want := string(event(i).Raw); got[i] != want {
			t.Fatalf("event %d out of order or changed:\n got %s\nwant %s", i, got[i], want)
		}
	}
	if ws, _ := wal.ListSegments(filepath.Join(dir, walDir)); len(ws) > 1 {
		t.Errorf("after close %d WAL segments remain unsealed", len(ws))
	}
	db, err = Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	res, err = db.Append(ctx, batch(0, 60))
	if err != nil || res.Stored != 0 || res.Duplicates != 60 {
		t.Fatalf("append after reopen: %+v %v", res, err)
	}
	db.Close()
}

func TestTornTail(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		if _, err := db.Append(context.Background(), batch(i*10, i*10+10)); err != nil {
			t.Fatal(err)
		}
	}
	// Simulate a crash: the process dies without Close, and the last record
	// is half written.
	cur := wal.SegmentPath(filepath.Join(dir, walDir), db.wal.Current())
	db.lock.Close()
	st, _ := os.Stat(cur)
	if err := os.Truncate(cur, st.Size()-30); err != nil {
		t.Fatal(err)
	}
	db2, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	got := exportAll(t, dir)
	if len(got) != 90 {
		t.Fatalf("after torn tail: %d events, want the 90 of the 9 whole batches", len(got))
	}
	// The torn batch was never acknowledged; its sender retries it.
	res, err := db2.Append(context.Background(), batch(90, 100))
	if err != nil || res.Stored != 10 {
		t.Fatalf("retry of torn batch: %+v %v", res, err)
	}
	db2.Close()
	if got := exportAll(t, dir); len(got) != 100 {
		t.Fatalf("final: %d events", len(got))
	}
}

func TestConcurrentAppendsGroupCommit(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(dir, Options{WALSegmentBytes: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for c := 0; c < 8; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				// Every client sends every batch twice, as a retrying sender would.
				base := (c*20 + i) * 10
				for k := 0; k < 2; k++ {
					if _, err := db.Append(context.Background(), batch(base, base+10)); err != nil {
						t.Error(err)
					}
				}
			}
		}(c)
	}
	wg.Wait()
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	got := exportAll(t, dir)
	seen := map[string]bool{}
	for _, g := range got {
		if seen[g] {
			t.Fatalf("duplicate stored: %s", g)
		}
		seen[g] = true
	}
	if len(got) != 1600 {
		t.Fatalf("%d events, want 1600", len(got))
	}
	if s := db.Stats(); s.Stored.Load() != 1600 || s.Duplicates.Load() != 1600 {
		t.Fatalf("stored=%d dups=%d, want 1600 and 1600", s.Stored.Load(), s.Duplicates.Load())
	}
}

// gatedFS holds every WAL sync until the test lets it go; the store's
// other files (segments, the manifest) go through.
type gatedFS struct {
	vfs.FS
	entered chan struct{}
	release chan struct{}
}

func (g *gatedFS) OpenFile(name string, flag int, perm os.FileMode) (vfs.File, error) {
	f, err := g.FS.OpenFile(name, flag, perm)
	if err != nil || filepath.Base(filepath.Dir(name)) != walDir || filepath.Ext(name) != ".wal" {
		return f, err
	}
	return &gatedFile{File: f, g: g}, nil
}

type gatedFile struct {
	vfs.File
	g *gatedFS
}

func (f *gatedFile) Sync() error {
	f.g.entered <- struct{}{}
	<-f.g.release
	return f.File.Sync()
}

// TestGroupCommitOneSyncForTheWaiting holds the WAL's first sync while
// seven more batches arrive: when it is let go, the seven must become
// durable with one more sync (group commit), each answered only after it.
// Mutations it catches: a sync per batch (8 syncs), answering a batch
// before its sync (an answer arrives while the sync is held).
func TestGroupCommitOneSyncForTheWaiting(t *testing.T) {
	g := &gatedFS{FS: vfs.OS, entered: make(chan struct{}, 16), release: make(chan struct{})}
	db, err := Open(t.TempDir(), Options{FS: g, SealAfter: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	answers := make(chan error, 8)
	send := func(i int) {
		_, err := db.Append(context.Background(), batch(i*10, i*10+10))
		answers <- err
	}
	wait := func(what string, ch <-chan struct{}) {
		t.Helper()
		select {
		case <-ch:
		case <-time.After(10 * time.Second):
			t.Fatalf("timed out waiting for %s", what)
		}
	}
	answer := func() {
		t.Helper()
		select {
		case err := <-answers:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("timed out waiting for an answer")
		}
	}
	go send(0)
	wait("the first sync", g.entered)
	for i := 1; i < 8; i++ {
		go send(i)
	}
	// Wait until all seven are queued behind the running sync.
	for deadline := time.Now().Add(10 * time.Second); len(db.reqs) < 7; {
		if time.Now().After(deadline) {
			t.Fatalf("only %d batches queued", len(db.reqs))
		}
		time.Sleep(time.Millisecond)
	}
	select {
	case err := <-answers:
		t.Fatalf("a batch was answered (%v) while the sync was held", err)
	case <-time.After(50 * time.Millisecond):
	}
	g.release <- struct{}{}
	answer()
	wait("the group's sync", g.entered)
	select {
	case err := <-answers:
		t.Fatalf("a batch of the group was answered (%v) before its sync", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(g.release) // every later sync (Close's too) goes through
	for i := 1; i < 8; i++ {
		answer()
	}
	if s := db.Stats(); s.Syncs.Load() != 2 || s.Batches.Load() != 8 {
		t.Fatalf("%d syncs for %d batches, want 2 for 8", s.Syncs.Load(), s.Batches.Load())
	}
}

func TestScanTimeAndCluster(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(dir, Options{WALSegmentBytes: 2048})
	if err != nil {
		t.Fatal(err)
	}
	db.Append(context.Background(), batch(0, 100))
	b := batch(100, 110)
	b.Cluster = "prod"
	db.Append(context.Background(), b)
	db.Close()
	base := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	n := 0
	Scan(dir, ScanOptions{Since: base.Add(10 * time.Millisecond).UnixMicro(), Until: base.Add(20 * time.Millisecond).UnixMicro()}, func(Stored) error { n++; return nil })
	if n != 10 {
		t.Errorf("time window: %d events, want 10", n)
	}
	n = 0
	Scan(dir, ScanOptions{Cluster: "prod"}, func(Stored) error { n++; return nil })
	if n != 10 {
		t.Errorf("cluster: %d events, want 10", n)
	}
}

// TestDedupAcrossSealedSegments re-sends events that were sealed into many
// segments, with a key cache far too small to hold them, before and after a
// restart: every one must be found, none stored twice.
func TestDedupAcrossSealedSegments(t *testing.T) {
	dir := t.TempDir()
	opts := Options{WALSegmentBytes: 8 << 10, DedupCacheKeys: 25}
	db, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := 0; i < 20; i++ {
		if _, err := db.Append(ctx, batch(i*20, i*20+20)); err != nil {
			t.Fatal(err)
		}
	}
	check := func(db *DB, when string) {
		t.Helper()
		for i := 19; i >= 0; i-- { // newest first, to defeat the cache
			res, err := db.Append(ctx, batch(i*20, i*20+25))
			if err != nil {
				t.Fatal(err)
			}
			want := 20
			if i == 19 {
				want = 20 // 400..404 are new the first time only
			}
			if res.Duplicates < want {
				t.Fatalf("%s: batch %d: %d duplicates found, want at least %d", when, i, res.Duplicates, want)
			}
		}
	}
	check(db, "before restart")
	db.Close()
	segs, _ := listSegments(vfs.OS, filepath.Join(dir, segmentDir))
	if len(segs) < 5 {
		t.Fatalf("only %d segments: the test wants many", len(segs))
	}
	db, err = Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	check(db, "after restart")
	db.Close()
	got := exportAll(t, dir)
	seen := map[string]bool{}
	for _, g := range got {
		if seen[g] {
			t.Fatalf("stored twice: %s", g)
		}
		seen[g] = true
	}
	if len(got) != 405 {
		t.Fatalf("%d events stored, want 405", len(got))
	}
}

func TestRetention(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(dir, Options{WALSegmentBytes: 2048})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for i := 0; i < 10; i++ {
		if _, err := db.Append(context.Background(), batch(i*20, i*20+20)); err != nil {
			t.Fatal(err)
		}
	}
	waitSealed := func() []segmentFile {
		for k := 0; k < 200; k++ {
			segs, _ := listSegments(vfs.OS, filepath.Join(dir, segmentDir))
			if len(segs) >= 8 {
				time.Sleep(50 * time.Millisecond)
				segs, _ = listSegments(vfs.OS, filepath.Join(dir, segmentDir))
				return segs
			}
			time.Sleep(10 * time.Millisecond)
		}
		t.Fatal("segments were not sealed")
		return nil
	}
	waitSealed()
	before := len(exportAll(t, dir))
	// Events are 1 ms apart from 10:00:00; keep the last 100 ms.
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC).Add(200 * time.Millisecond)
	n, freed, err := db.Enforce(Retention{MaxAge: 100 * time.Millisecond}, now)
	if err != nil || n == 0 || freed == 0 {
		t.Fatalf("age: deleted %d segments (%d bytes), %v", n, freed, err)
	}
	after := exportAll(t, dir)
	if len(after) >= before || len(after) < 100 {
		t.Fatalf("age: %d events before, %d after; want the last 100 or more kept", before, len(after))
	}
	// Every event kept is within the window or in the WAL.
	var sizes int64
	rest, _ := listSegments(vfs.OS, filepath.Join(dir, segmentDir))
	for _, s := range rest {
		st, _ := os.Stat(s.path)
		sizes += st.Size()
	}
	n, _, err = db.Enforce(Retention{MaxBytes: sizes / 2}, now)
	if err != nil || n == 0 {
		t.Fatalf("size: deleted %d, %v", n, err)
	}
	var left int64
	rest, _ = listSegments(vfs.OS, filepath.Join(dir, segmentDir))
	for _, s := range rest {
		st, _ := os.Stat(s.path)
		left += st.Size()
	}
	if left > sizes/2 {
		t.Fatalf("size: %d bytes left, limit %d", left, sizes/2)
	}
	// Re-sending deleted events stores them again: they are gone.
	res, err := db.Append(context.Background(), batch(0, 5))
	if err != nil || res.Stored != 5 {
		t.Fatalf("re-send after retention: %+v %v", res, err)
	}
}
