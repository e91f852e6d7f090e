package local

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/kubetrail/kubetrail/internal/vfs"
	"github.com/kubetrail/kubetrail/internal/wal"
)

// The bulk crash test imports a fixed file (bulkBatches batches, one
// repeating events of the one before, as an import of overlapping logs
// does) with Options.Bulk, crashing after each change it makes to the
// file system; then it imports the same file again, crashed too (after a
// change chosen from the first), and a third time without a crash, as a
// person would after each crash. Whatever the crashes left must hold each
// event at most once and no damage; a first import whose Close returned
// nil must have left every event; and after the last import every event
// is there exactly once, and verify finds every checksum, root and chain
// link whole.

const (
	bulkBatches = 6
	bulkPer     = 5
)

// bulkFile returns the batches of the imported file: batch b holds events
// b*bulkPer.., but batch 3 holds those of batch 2 again, and the batches
// after it are one place later.
func bulkFile(b int) (from, to int) {
	if b >= 3 {
		b--
	}
	return b * bulkPer, (b + 1) * bulkPer
}

func bulkOptions(fs vfs.FS) Options {
	return Options{
		FS:              fs,
		Bulk:            true,
		WALSegmentBytes: 1, // every group of batches a segment of its own
		SealAfter:       time.Hour,
		sealers:         1,
		layout:          segLayout{groupBytes: 2 << 10, blockBytes: 512},
	}
}

// bulkImport imports the file into the folder and returns Close's answer.
// One sealer and a barrier after each batch make the order of the changes
// the same on every run.
func bulkImport(fs vfs.FS, crashed func() bool) error {
	db, err := Open(crashDir, bulkOptions(fs))
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	for b := range bulkBatches {
		if _, err := db.Append(context.Background(), batch(bulkFile(b))); err != nil {
			db.Close()
			return fmt.Errorf("append batch %d: %w", b, err)
		}
		if err := crashBarrier(db, crashed); err != nil {
			db.Close()
			return err
		}
	}
	return db.Close()
}

// bulkCheck opens the folder, as the next start would, and reads what is
// in it: each event at most once (exactly once when all is true), no
// damage, no tamper finding.
func bulkCheck(fs vfs.FS, all bool) string {
	if _, err := fs.Stat(filepath.Join(crashDir, segmentDir)); errors.Is(err, os.ErrNotExist) && !all {
		return "" // a crash in the first Open: nothing stored yet
	}
	db, err := Open(crashDir, bulkOptions(fs))
	if err != nil {
		return fmt.Sprintf("open: %v", err)
	}
	if err := db.Close(); err != nil {
		return fmt.Sprintf("close: %v", err)
	}
	seen := map[int]int{}
	err = Scan(crashDir, ScanOptions{FS: fs}, func(s Stored) error {
		m := auditIDRe.FindSubmatch(s.Raw)
		if m == nil {
			return fmt.Errorf("an event that is not the file's: %s", s.Raw)
		}
		var i int
		fmt.Sscan(string(m[1]), &i)
		seen[i]++
		return nil
	})
	if err != nil {
		return fmt.Sprintf("scan: %v", err)
	}
	n := (bulkBatches - 1) * bulkPer
	for i := range n {
		if seen[i] > 1 {
			return fmt.Sprintf("event id-%d stored %d times", i, seen[i])
		}
		if all && seen[i] == 0 {
			return fmt.Sprintf("event id-%d lost", i)
		}
	}
	rep, err := VerifyFS(fs, crashDir, nil)
	if err != nil {
		return fmt.Sprintf("verify: %v", err)
	}
	if len(rep.Damage) > 0 || len(rep.Tamper) > 0 {
		return fmt.Sprintf("verify: damage %v, tamper %v", rep.Damage, rep.Tamper)
	}
	return ""
}

// bulkRun imports crashing after change k (0: never), then again crashing
// after change j, then once more, with site (none when "") dropped by
// every run, and returns the first broken promise.
func bulkRun(k, j int, site string) string {
	keep := vfs.CrashOptions{Appended: func(_, unsynced int) int { return unsynced * (k % 3) / 2 }}
	mem := vfs.NewStrictMem()
	c1 := vfs.NewCrasher(mem, k, keep)
	ff := vfs.NewFaults(c1)
	ff.Drop(site)
	err := bulkImport(ff, func() bool { a, _ := c1.Crashed(); return a != nil })
	after, what := c1.Crashed()
	if after == nil {
		if err != nil {
			return fmt.Sprintf("without a crash: %v", err)
		}
		after, what = mem.Crash(), "the end"
	}
	where := fmt.Sprintf("crash after change %d (%s)", k, what)
	// Close returned nil: the import is complete, and must stay so.
	if p := bulkCheck(after, err == nil); p != "" {
		return where + ": " + p
	}
	c2 := vfs.NewCrasher(after, j, keep)
	ff.SetFS(c2)
	bulkImport(ff, func() bool { a, _ := c2.Crashed(); return a != nil })
	after2, what2 := c2.Crashed()
	if after2 == nil {
		after2, what2 = after.Crash(), "the end"
	}
	where += fmt.Sprintf(", import again crashed after change %d (%s)", j, what2)
	if p := bulkCheck(after2, false); p != "" {
		return where + ": " + p
	}
	ff.SetFS(after2)
	if err := bulkImport(ff, func() bool { return false }); err != nil {
		return where + fmt.Sprintf(": last import: %v", err)
	}
	if p := bulkCheck(after2.Crash(), true); p != "" {
		return where + ", last import: " + p
	}
	return ""
}

// TestBulkLoadSurvivesEveryCrash crashes a bulk import after each of its
// changes (see the top of this file). Then it plants one bug at a time:
// the sync of the segment file and its rename into place are each made a
// no-op, and some crash must then lose an event of a complete import or
// leave damage. (The sync of the segments folder after the rename is
// proven by TestCrashKeepsEveryAcknowledgedEvent, whose full disk fails a
// MANIFEST write: here the MANIFEST's own folder sync covers it.)
func TestBulkLoadSurvivesEveryCrash(t *testing.T) {
	mem := vfs.NewStrictMem()
	c := vfs.NewCrasher(mem, 0, vfs.CrashOptions{})
	c.Record()
	if err := bulkImport(c, func() bool { return false }); err != nil {
		t.Fatal(err)
	}
	if p := bulkCheck(mem.Crash(), true); p != "" {
		t.Fatal(p)
	}
	trace := c.Trace()
	ks := crashPoints(len(trace))
	for _, k := range ks {
		if p := bulkRun(k, 1+(k*13)%len(trace), ""); p != "" {
			t.Fatal(p)
		}
	}
	t.Logf("%d changes, %d crash points checked", len(trace), len(ks))
	for _, site := range []string{
		"sync local.(*segmentWriter).finish",
		"rename local.(*segmentWriter).finish",
	} {
		var problem string
		for _, k := range plantedOrder(trace, site, ks) {
			if problem = bulkRun(k, 1+(k*13)%len(trace), site); problem != "" {
				break
			}
		}
		if problem == "" {
			t.Errorf("with %q removed, no crash lost or damaged anything: the test does not check it", site)
			continue
		}
		t.Logf("with %q removed: %s", site, problem)
	}
}

// TestBulkLoadWritesNoWAL shows that a bulk load writes each event once,
// into its segment: the WAL files it leaves (none but the open one) hold
// no event, and every event is in a segment as soon as Close returns.
func TestBulkLoadWritesNoWAL(t *testing.T) {
	mem := vfs.NewStrictMem()
	var walBytes int64
	fs := &countWrites{FS: mem, n: &walBytes, dir: filepath.Join(crashDir, walDir)}
	if err := bulkImport(fs, func() bool { return false }); err != nil {
		t.Fatal(err)
	}
	if walBytes > 0 {
		t.Fatalf("a bulk load wrote %d bytes to the WAL", walBytes)
	}
	if p := bulkCheck(mem.Crash(), true); p != "" {
		t.Fatal(p)
	}
}

// TestBulkLoadFailureFailsClose: a segment a bulk load cannot write holds
// events that are nowhere else, so Close must say so (a full disk here),
// and the batches after it are refused.
func TestBulkLoadFailureFailsClose(t *testing.T) {
	fs := &noSegments{FS: vfs.NewStrictMem()}
	db, err := Open(crashDir, bulkOptions(fs))
	if err != nil {
		t.Fatal(err)
	}
	fs.full.Store(true)
	if _, err := db.Append(context.Background(), batch(0, 5)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for db.Ready() == nil && time.Now().Before(deadline) {
		db.Append(context.Background(), batch(0, 0))
		time.Sleep(time.Millisecond)
	}
	if _, err := db.Append(context.Background(), batch(5, 10)); err == nil {
		t.Error("a batch was taken after a bulk segment was lost")
	}
	err = db.Close()
	if err == nil || !errors.Is(err, syscall.ENOSPC) || !strings.Contains(err.Error(), "5 events lost") {
		t.Fatalf("Close after a lost bulk segment: %v", err)
	}
	if n := db.BulkLost(); n != 5 {
		t.Errorf("BulkLost says %d events lost, want 5", n)
	}
}

// countWrites counts the bytes written to files under dir.
type countWrites struct {
	vfs.FS
	dir string
	n   *int64
}

func (c *countWrites) OpenFile(name string, flag int, perm os.FileMode) (vfs.File, error) {
	f, err := c.FS.OpenFile(name, flag, perm)
	if err != nil || filepath.Dir(name) != c.dir || filepath.Base(name) == ledgerName || strings.HasPrefix(filepath.Base(name), ".") {
		return f, err
	}
	return &countFile{File: f, n: c.n}, nil
}

type countFile struct {
	vfs.File
	n *int64
}

func (f *countFile) Write(p []byte) (int, error) {
	if string(p) != wal.Magic {
		*f.n += int64(len(p))
	}
	return f.File.Write(p)
}

// noSegments fails the creation of segment files, once full, as a full
// disk would.
type noSegments struct {
	vfs.FS
	full atomic.Bool
}

func (d *noSegments) OpenFile(name string, flag int, perm os.FileMode) (vfs.File, error) {
	if d.full.Load() && strings.HasPrefix(filepath.Base(name), tempSegPrefix) {
		return nil, &os.PathError{Op: "open", Path: name, Err: syscall.ENOSPC}
	}
	return d.FS.OpenFile(name, flag, perm)
}

// holdFirstSegment holds the rename that puts the segment named first in
// place until another segment is renamed into place (or a while has
// passed), and calls seen right after that other rename.
type holdFirstSegment struct {
	vfs.FS
	first string
	other chan struct{}
	once  sync.Once
	seen  func()
}

func (h *holdFirstSegment) Rename(oldname, newname string) error {
	if filepath.Base(newname) == h.first {
		select {
		case <-h.other:
		case <-time.After(time.Second): // none comes first: in order
		}
		return h.FS.Rename(oldname, newname)
	}
	err := h.FS.Rename(oldname, newname)
	if strings.HasSuffix(newname, segSuffix) {
		h.once.Do(func() { h.seen(); close(h.other) })
	}
	return err
}

// TestBulkSegmentsAppearInWALOrder: a bulk load's events are in no file
// until their segment is in place, so a reader that finds a segment must
// find every event stored before it too: query --follow takes a reader's
// End, and a scan's last position, as the place to go on from, and would
// skip for good the events of an earlier job whose segment came later.
// Sealers working in parallel put job 2's segment in place while job 1's
// was still being written.
func TestBulkSegmentsAppearInWALOrder(t *testing.T) {
	dir := t.TempDir()
	fs := &holdFirstSegment{FS: vfs.OS, other: make(chan struct{})}
	opts := Options{FS: fs, Bulk: true, WALSegmentBytes: 1, SealAfter: time.Hour, NoSync: true, sealers: 2}
	// The first job is handed off as the WAL segment Open starts.
	probe, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	first := probe.Start().WAL + 1
	if err := probe.Close(); err != nil {
		t.Fatal(err)
	}
	fs.first = segmentName(first, first)
	var end Pos
	held := map[Pos]bool{}
	fs.seen = func() {
		r, err := OpenReader(dir)
		if err != nil {
			t.Error(err)
			return
		}
		end = r.End()
		r.Close()
		if err := Scan(dir, ScanOptions{}, func(s Stored) error { held[s.Pos] = true; return nil }); err != nil {
			t.Error(err)
		}
	}
	db, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	if db.Start().WAL != first {
		t.Fatalf("Open started WAL segment %d, want %d", db.Start().WAL, first)
	}
	for b := range 4 {
		if _, err := db.Append(context.Background(), batch(b*5, (b+1)*5)); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	var missed []string
	n := 0
	if err := Scan(dir, ScanOptions{}, func(s Stored) error {
		n++
		if s.Pos.Less(end) && !held[s.Pos] {
			missed = append(missed, s.Pos.String())
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if n != 20 {
		t.Fatalf("the store holds %d events, want 20", n)
	}
	if len(missed) > 0 {
		t.Fatalf("a reader opened while the load ran ends at %s but lacks the events at %v: a follow from its end skips them", end, missed)
	}
}

// TestBulkLoadAfterCrashedWAL: events a crashed serve left in its WAL
// (acknowledged, never sealed) are found by a bulk load of the same
// events, which stores only the others: de-duplication holds across the
// WAL and the bulk loaded segments, and so does the next serve's.
// Mutation it catches: Open not replaying the WAL's keys into the head.
func TestBulkLoadAfterCrashedWAL(t *testing.T) {
	mem := vfs.NewStrictMem()
	db, err := Open(crashDir, Options{FS: mem, SealAfter: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Append(context.Background(), batch(0, 10)); err != nil {
		t.Fatal(err)
	}
	after := mem.Crash() // kill -9 of serve: the WAL segment is left
	// The WAL segment is not sealed before the load's batch is stored: its
	// keys must come from the replay, not from its segment.
	held := &holdSegments{FS: after, release: make(chan struct{})}
	bulk, err := Open(crashDir, Options{FS: held, Bulk: true, sealers: 2})
	if err != nil {
		t.Fatal(err)
	}
	res, err := bulk.Append(context.Background(), batch(0, 20))
	close(held.release)
	if err != nil || res.Stored != 10 || res.Duplicates != 10 {
		t.Fatalf("bulk load after a crash: %+v, %v; want 10 stored, 10 duplicates", res, err)
	}
	if err := bulk.Close(); err != nil {
		t.Fatal(err)
	}
	serve, err := Open(crashDir, Options{FS: after})
	if err != nil {
		t.Fatal(err)
	}
	res, err = serve.Append(context.Background(), batch(0, 25))
	if err != nil || res.Stored != 5 || res.Duplicates != 20 {
		t.Fatalf("serve after the bulk load: %+v, %v; want 5 stored, 20 duplicates", res, err)
	}
	if err := serve.Close(); err != nil {
		t.Fatal(err)
	}
	n := 0
	if err := Scan(crashDir, ScanOptions{FS: after}, func(Stored) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	if n != 25 {
		t.Fatalf("the folder holds %d events, want 25", n)
	}
}

// holdSegments holds the creation of segment files until release is
// closed.
type holdSegments struct {
	vfs.FS
	release chan struct{}
}

func (h *holdSegments) OpenFile(name string, flag int, perm os.FileMode) (vfs.File, error) {
	if strings.HasPrefix(filepath.Base(name), tempSegPrefix) {
		<-h.release
	}
	return h.FS.OpenFile(name, flag, perm)
}
