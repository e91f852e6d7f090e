package alert

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/kubetrail/kubetrail/internal/rules"
	"github.com/kubetrail/kubetrail/internal/vfs"
)

// fillingFS fails chosen calls on segment files once armed, calling
// during (a reader beside the store, as `alerts --follow` on the folder,
// looking then) when the failure comes: armed makes the next write land
// its first room bytes and fail with ENOSPC (the disk filled up),
// syncArmed the next sync fail with EIO and sync nothing (with poison,
// nor will any later sync of that file). numbersFull
// makes every write to the numbers file fail with ENOSPC (a file system
// that allocates anew even to overwrite, as a copy-on-write one does,
// or a full disk before the file was made).
type fillingFS struct {
	vfs.FS
	mu          sync.Mutex
	armed       bool
	syncArmed   bool
	numbersFull bool
	room        int
	during      func()
	// poison makes the later syncs of a file whose sync failed (poisoned
	// names them) succeed and make nothing durable, as on Linux, where a
	// failed fsync marks the pages it could not write clean.
	poison   bool
	poisoned map[string]bool
}

func (d *fillingFS) OpenFile(name string, flag int, perm os.FileMode) (vfs.File, error) {
	f, err := d.FS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &fillingFile{File: f, d: d}, nil
}

func (d *fillingFS) Rename(oldname, newname string) error {
	if d.numbersFullNow(newname) {
		return &os.LinkError{Op: "rename", Old: oldname, New: newname, Err: syscall.ENOSPC}
	}
	return d.FS.Rename(oldname, newname)
}

func (d *fillingFS) numbersFullNow(name string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.numbersFull && strings.HasPrefix(filepath.Base(name), NumbersFile)
}

type fillingFile struct {
	vfs.File
	d *fillingFS
}

// take disarms what is armed for a segment file and reports it.
func (f *fillingFile) take(what *bool) bool {
	d := f.d
	d.mu.Lock()
	defer d.mu.Unlock()
	armed := *what && filepath.Ext(f.Name()) == ".wal"
	if armed {
		*what = false
	}
	return armed
}

func (f *fillingFile) Write(p []byte) (int, error) {
	if f.d.numbersFullNow(f.Name()) {
		return 0, &os.PathError{Op: "write", Path: f.Name(), Err: syscall.ENOSPC}
	}
	if !f.take(&f.d.armed) {
		return f.File.Write(p)
	}
	n, err := f.File.Write(p[:min(len(p), f.d.room)])
	f.d.during()
	if err == nil {
		err = &os.PathError{Op: "write", Path: f.Name(), Err: syscall.ENOSPC}
	}
	return n, err
}

func (f *fillingFile) WriteAt(p []byte, off int64) (int, error) {
	if f.d.numbersFullNow(f.Name()) {
		return 0, &os.PathError{Op: "write", Path: f.Name(), Err: syscall.ENOSPC}
	}
	return f.File.WriteAt(p, off)
}

func (f *fillingFile) Sync() error {
	d := f.d
	d.mu.Lock()
	poisoned := d.poisoned[f.Name()]
	d.mu.Unlock()
	if poisoned && d.poison {
		return nil
	}
	if !f.take(&d.syncArmed) {
		return f.File.Sync()
	}
	d.during()
	d.mu.Lock()
	if d.poisoned == nil {
		d.poisoned = map[string]bool{}
	}
	d.poisoned[f.Name()] = true
	d.mu.Unlock()
	return &os.PathError{Op: "sync", Path: f.Name(), Err: syscall.EIO}
}

// TestStoreNeverReusesANumberAReaderSaw: an Append big enough that the
// log flushes part of it to the file before the disk fills leaves whole
// alerts there, never acknowledged, which a reader beside the store
// (ListDir, as `alerts --follow` on the folder and serve's alerts stream
// poll) may read before the segment is cut back; the reader then asks
// only for alerts after the highest number it saw. Alerts stored later
// must not take those numbers, or the reader skips them.
// Mutation it catches: a failed Append whose alerts reached the file
// leaving s.next where it was (their numbers given again).
func TestStoreNeverReusesANumberAReaderSaw(t *testing.T) {
	dir := t.TempDir()
	fs := &fillingFS{FS: vfs.OS, room: 256 << 10}
	s := openT(t, dir, StoreOptions{FS: fs})
	appendN(t, s, 0, 1)
	var seen uint64
	fs.during = func() {
		list, _, err := ListDir(fs, dir, Query{After: 1, Oldest: true, Limit: 100000})
		if err != nil {
			t.Errorf("reader: %v", err)
		}
		for _, a := range list {
			seen = max(seen, a.Seq)
		}
	}
	var big []rules.Alert
	for i := 1; i <= 300; i++ { // 300 alerts of 10 KiB: past the log's 1 MiB buffer
		a := mkAlert("rule", "user", rules.Severity(1), i)
		a.Message = fmt.Sprintf("%d %s", i, strings.Repeat("x", 10<<10))
		big = append(big, a)
	}
	fs.arm(&fs.armed)
	if _, err := s.Append(big); err == nil {
		t.Fatal("Append whose write filled the disk succeeded")
	}
	if seen < 2 {
		t.Fatalf("the reader saw alerts up to %d during the failed write: the test sets up nothing", seen)
	}
	out := appendN(t, s, 1000, 3)
	if out[0].Seq <= seen {
		t.Fatalf("alerts stored after the failed Append are numbered %v, but a reader already saw never-acknowledged alerts up to %d and asks only for later ones", seqs(out), seen)
	}
	list, _, err := ListDir(fs, dir, Query{After: seen, Oldest: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 3 {
		t.Fatalf("a reader past %d finds %v, want the 3 acknowledged %v", seen, seqs(list), seqs(out))
	}
}

// arm sets one of d's switches.
func (d *fillingFS) arm(what *bool) {
	d.mu.Lock()
	*what = true
	d.mu.Unlock()
}

// reader is a reader beside the store (ListDir, as `alerts --follow` on
// the folder and serve's alerts stream poll): it remembers which alert it
// found under each number, unsynced ones included, and says when a
// number comes to stand for another alert, which it would skip.
type reader struct {
	fs   vfs.FS
	dir  string
	seen map[uint64]string
	bad  string
}

func newReader(fs vfs.FS, dir string) *reader {
	return &reader{fs: fs, dir: dir, seen: map[uint64]string{}}
}

// look reads the folder; a file system that crashed (the machine is
// gone) shows nothing.
func (r *reader) look() {
	list, _, err := ListDir(r.fs, r.dir, Query{Oldest: true, Limit: 1 << 20})
	if err != nil {
		return
	}
	for i := range list {
		r.saw(&list[i], "now reads as")
	}
}

func (r *reader) saw(a *Alert, how string) {
	id := a.Rule + " " + a.AuditIDs[0]
	if was, ok := r.seen[a.Seq]; ok && was != id && r.bad == "" {
		r.bad = fmt.Sprintf("number %d, which a reader saw as alert %q, %s alert %q", a.Seq, was, how, id)
	}
	r.seen[a.Seq] = id
}

func (r *reader) max() uint64 {
	var m uint64
	for seq := range r.seen {
		m = max(m, seq)
	}
	return m
}

func bigBatch(from int) []rules.Alert {
	var big []rules.Alert
	for i := from; i < from+300; i++ { // 300 alerts of 10 KiB: past the log's 1 MiB buffer
		a := mkAlert("rule", "user", rules.Severity(1), i)
		a.Message = fmt.Sprintf("%d %s", i, strings.Repeat("x", 10<<10))
		big = append(big, a)
	}
	return big
}

// TestStoreNeverReusesANumberAReaderSawAfterARestart: alerts that reached
// a segment but were never acknowledged (the disk filled in the middle of
// a large Append and the segment was cut back; the disk filled at the
// final flush; the fsync failed) may have been read by a reader in
// another process, which then asks only for later numbers. The process
// then dies before it writes again: killed (what it wrote stays in the
// page cache), or by a power loss (what was not synced is gone). After
// the restart, new alerts must not take those numbers, or the reader
// skips them: lost alerts for it. The process may also be stopped
// cleanly: Close then succeeds when the disk filled at the flush (the
// segment was cut back to its synced size and nothing is left to sync),
// and must not lower the limit below the numbers the reader saw.
// Mutations it catches: OpenStore ignoring the numbers file's limit
// (numbering from the newest alert found, as before ADR 0029); Close
// lowering the limit after a failed Append's final flush (s.broken not
// looked at).
func TestStoreNeverReusesANumberAReaderSawAfterARestart(t *testing.T) {
	const dir = "/data/alerts"
	f := func(failure string, powerLoss, closed bool) {
		t.Helper()
		mem := vfs.NewStrictMem()
		fs := &fillingFS{FS: mem}
		s, _, err := OpenStore(dir, StoreOptions{FS: fs})
		if err != nil {
			t.Fatal(err)
		}
		appendN(t, s, 0, 2)
		r := newReader(fs, dir)
		fs.during = r.look
		in := []rules.Alert{mkAlert("lost", "u", rules.High, 100), mkAlert("lost", "u", rules.High, 101)}
		switch failure {
		case "the disk fills in the middle of a large Append":
			fs.room, in = 256<<10, bigBatch(100)
			fs.arm(&fs.armed)
		case "the disk fills at the flush":
			fs.room = 300 // the first alert whole, the second cut
			fs.arm(&fs.armed)
		case "the fsync fails":
			fs.arm(&fs.syncArmed)
		}
		if _, err := s.Append(in); err == nil {
			t.Fatalf("%s: the Append succeeded", failure)
		}
		seen := r.max()
		if seen <= 2 {
			t.Fatalf("%s: the reader saw alerts up to %d during the failure: the test sets up nothing", failure, seen)
		}
		// The process dies here, before it writes again: s is never used
		// nor closed; or it is closed, as at a shutdown.
		if closed {
			s.Close() // fails or not, as the failure left the log
		}
		if powerLoss {
			mem = mem.Crash()
			fs.FS = mem
		}
		s2, _, err := OpenStore(dir, StoreOptions{FS: fs})
		if err != nil {
			t.Fatalf("%s: reopen: %v", failure, err)
		}
		defer s2.Close()
		out := appendN(t, s2, 1000, 3)
		for i := range out {
			r.saw(&out[i], "is given to")
		}
		r.look()
		if r.bad != "" {
			t.Fatalf("%s, then a restart (power loss %v, closed %v): %s", failure, powerLoss, closed, r.bad)
		}
		list, _, err := ListDir(fs, dir, Query{After: seen, Oldest: true})
		if err != nil {
			t.Fatal(err)
		}
		if len(list) != 3 {
			t.Errorf("%s, then a restart (power loss %v): a reader past %d finds %v, want the 3 acknowledged %v", failure, powerLoss, seen, seqs(list), seqs(out))
		}
	}
	for _, failure := range []string{"the disk fills in the middle of a large Append", "the disk fills at the flush", "the fsync fails"} {
		f(failure, false, false)
		f(failure, true, false)
		f(failure, false, true)
		f(failure, true, true)
	}
}

// TestStoreNeverReusesANumberAfterAFailedSyncKillAndPowerLoss: after a
// failed fsync and a kill, the reopened store finds the unsynced alerts
// still in the page cache and reads them as stored: a reader, or a
// dispatcher of the new process, may take them and move its cursor past
// them. But the kernel may have dropped them after the failed fsync, and
// a power loss then loses them. Their numbers must stay taken.
// Mutation it catches: OpenStore ignoring the numbers file's limit (the
// reopened store's sync of the tail does not make them durable: after a
// failed fsync, Linux's later fsyncs do not write the pages it dropped).
func TestStoreNeverReusesANumberAfterAFailedSyncKillAndPowerLoss(t *testing.T) {
	const dir = "/data/alerts"
	mem := vfs.NewStrictMem()
	fs := &fillingFS{FS: mem, poison: true}
	s, _, err := OpenStore(dir, StoreOptions{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	appendN(t, s, 0, 2)
	r := newReader(fs, dir)
	fs.during = r.look
	fs.arm(&fs.syncArmed)
	if _, err := s.Append([]rules.Alert{mkAlert("lost", "u", rules.High, 100), mkAlert("lost", "u", rules.High, 101)}); err == nil {
		t.Fatal("the Append whose fsync failed succeeded")
	}
	// Killed; the new process reads the unsynced alerts as stored.
	s2, rec, err := OpenStore(dir, StoreOptions{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := s2.Read(0, 100)
	for i := range got {
		r.saw(&got[i], "reads as")
	}
	if r.max() != 4 || rec.Next <= 4 {
		t.Fatalf("after the kill the store holds %v and numbers from %d, want 1..4 and above", seqs(got), rec.Next)
	}
	// The power loss, before the new process stored anything: only what
	// was synced is left.
	mem = mem.Crash()
	fs.FS = mem
	s3 := openT(t, dir, StoreOptions{FS: fs})
	out := appendN(t, s3, 20, 3)
	for i := range out {
		r.saw(&out[i], "is given to")
	}
	r.look()
	if r.bad != "" {
		t.Fatal(r.bad)
	}
}

// TestStoreNumbersSurviveAKillAtEveryStep runs a workload (appends, a
// clean Close, a reopen, appends again) and stops it after each change it
// makes to the file system in turn, as a power loss (only what was
// synced is left) and as a kill (what was written stays), with a reader
// looking after every change (vfs.Crasher.Watch). After each stop the store
// reopens, every acknowledged alert is there, and new alerts take no
// number the reader saw for another alert.
// Mutations it catches: raising the limit after the segment's sync
// instead of before the write; OpenStore ignoring the limit.
func TestStoreNumbersSurviveAKillAtEveryStep(t *testing.T) {
	const dir = "/data/alerts"
	workload := func(fs vfs.FS, r *reader, acked map[uint64]string) error {
		i := 0
		appendSome := func(s *Store, n int) error {
			var in []rules.Alert
			for range n {
				in = append(in, mkAlert(fmt.Sprintf("r%d", i%3), "u", rules.High, i))
				i++
			}
			out, err := s.Append(in)
			for k := range out {
				r.saw(&out[k], "is given to")
				acked[out[k].Seq] = out[k].Rule + " " + out[k].AuditIDs[0]
			}
			return err
		}
		s, _, err := OpenStore(dir, StoreOptions{FS: fs, SegmentBytes: 600})
		if err != nil {
			return err
		}
		for _, n := range []int{2, 1, 3} {
			if err := appendSome(s, n); err != nil {
				return err
			}
		}
		if err := s.Close(); err != nil {
			return err
		}
		if s, _, err = OpenStore(dir, StoreOptions{FS: fs, SegmentBytes: 600}); err != nil {
			return err
		}
		for _, n := range []int{1, 2} {
			if err := appendSome(s, n); err != nil {
				return err
			}
		}
		return nil
	}
	count := vfs.NewCrasher(vfs.NewStrictMem(), 0, vfs.CrashOptions{})
	if err := workload(count, newReader(count, dir), map[uint64]string{}); err != nil {
		t.Fatal(err)
	}
	steps := count.Changes()
	kill := vfs.CrashOptions{Appended: func(_, unsynced int) int { return unsynced }, Names: func(string, string) bool { return true }}
	for _, how := range []struct {
		name string
		keep vfs.CrashOptions
	}{{"power loss", vfs.CrashOptions{}}, {"kill", kill}} {
		for k := 1; k <= steps; k++ {
			c := vfs.NewCrasher(vfs.NewStrictMem(), k, how.keep)
			r := newReader(c, dir)
			c.Watch(r.look)
			acked := map[uint64]string{}
			workload(c, r, acked)
			after, what := c.Crashed()
			if after == nil {
				t.Fatalf("%s after change %d of %d: no crash", how.name, k, steps)
			}
			r.fs = after
			s, _, err := OpenStore(dir, StoreOptions{FS: after, SegmentBytes: 600})
			if err != nil {
				t.Fatalf("%s after %s: reopen: %v", how.name, what, err)
			}
			got, err := s.Read(0, 100)
			if err != nil {
				t.Fatal(err)
			}
			have := map[uint64]string{}
			for i := range got {
				have[got[i].Seq] = got[i].Rule + " " + got[i].AuditIDs[0]
			}
			for seq, id := range acked {
				if have[seq] != id {
					t.Fatalf("%s after %s: acknowledged alert %d (%s) lost", how.name, what, seq, id)
				}
			}
			out, err := s.Append([]rules.Alert{mkAlert("new", "u", rules.High, 500), mkAlert("new", "u", rules.High, 501)})
			if err != nil {
				t.Fatal(err)
			}
			for i := range out {
				r.saw(&out[i], "is given to")
			}
			r.look()
			s.Close()
			if r.bad != "" {
				t.Fatalf("%s after %s: %s", how.name, what, r.bad)
			}
		}
	}
}

// noNewFilesFS fails the creation of files while full is set: a disk
// with no room for a new segment (its header and name need blocks).
type noNewFilesFS struct {
	vfs.FS
	mu   sync.Mutex
	full bool
}

func (d *noNewFilesFS) OpenFile(name string, flag int, perm os.FileMode) (vfs.File, error) {
	d.mu.Lock()
	full := d.full
	d.mu.Unlock()
	if full && flag&os.O_CREATE != 0 {
		return nil, &os.PathError{Op: "open", Path: name, Err: syscall.ENOSPC}
	}
	return d.FS.OpenFile(name, flag, perm)
}

func (d *noNewFilesFS) setFull(full bool) {
	d.mu.Lock()
	d.full = full
	d.mu.Unlock()
}

// TestStoreTakesAlertsAgainAfterARotationFoundTheDiskFull: an Append that
// must start a new segment when the disk has no room for one fails with
// nothing written (the log keeps its current segment, synced); once there
// is room, Appends succeed again without a restart, and every alert
// acknowledged is listed, in order, under its number.
// Mutation it catches: a failed rotation marking the store broken (every
// later Append refused until a restart, while the detector retries).
func TestStoreTakesAlertsAgainAfterARotationFoundTheDiskFull(t *testing.T) {
	const dir = "/data/alerts"
	fs := &noNewFilesFS{FS: vfs.NewStrictMem()}
	s, _, err := OpenStore(dir, StoreOptions{FS: fs, SegmentBytes: 1000})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var acked []Alert
	for i := 0; !s.log.NeedsRotate(); i++ {
		acked = append(acked, appendN(t, s, i, 1)...)
	}
	fs.setFull(true)
	if out, err := s.Append([]rules.Alert{mkAlert("r", "u", rules.High, 100)}); err == nil {
		t.Fatalf("Append stored %v with no room for a new segment", seqs(out))
	}
	fs.setFull(false)
	out, err := s.Append([]rules.Alert{mkAlert("r", "u", rules.High, 101)})
	if err != nil {
		t.Fatalf("once there is room: %v", err)
	}
	acked = append(acked, out...)
	list, _, err := ListDir(fs, dir, Query{Oldest: true})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(seqs(list)) != fmt.Sprint(seqs(acked)) {
		t.Fatalf("the folder lists %v, want the acknowledged %v", seqs(list), seqs(acked))
	}
	if got, err := s.Read(0, 0); err != nil || fmt.Sprint(seqs(got)) != fmt.Sprint(seqs(acked)) {
		t.Fatalf("Read gives %v (%v), want %v", seqs(got), err, seqs(acked))
	}
}
