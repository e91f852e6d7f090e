package wal

import (
	"errors"
	"os"
	"slices"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/kubetrail/kubetrail/internal/vfs"
)

// fullDisk fails every write, once full, with ENOSPC after writing the
// first room bytes it is given, as a disk that fills in the middle of a
// write does. Files can still be created (a full disk usually has inodes
// left), so a new segment is made but its header cannot be written.
type fullDisk struct {
	vfs.FS
	full atomic.Bool
	room int // bytes of the failing write that still land
}

func (d *fullDisk) OpenFile(name string, flag int, perm os.FileMode) (vfs.File, error) {
	f, err := d.FS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &fullFile{File: f, d: d}, nil
}

type fullFile struct {
	vfs.File
	d *fullDisk
}

func (f *fullFile) Write(p []byte) (int, error) {
	if !f.d.full.Load() {
		return f.File.Write(p)
	}
	n, err := f.File.Write(p[:min(len(p), f.d.room)])
	if err == nil {
		err = &os.PathError{Op: "write", Path: f.Name(), Err: syscall.ENOSPC}
	}
	return n, err
}

// openFullDisk opens a log in a new folder on a fullDisk with room, and
// appends and syncs first in it.
func openFullDisk(t *testing.T, first string) (string, *Log, *fullDisk) {
	t.Helper()
	dir := t.TempDir()
	fs := &fullDisk{FS: vfs.OS}
	l, _, err := Open(dir, 0, Options{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	if err := l.Append([]byte(first)); err != nil {
		t.Fatal(err)
	}
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	return dir, l, fs
}

// TestCutBackThenRotate: a write that fails part way leaves whole records
// in the file before the segment is cut back, which a reader may have
// read, so the log says so (CutBack) until Rotate gives it a new segment.
// Mutations it catches: undo not marking the segment (CutBack false after
// the failed flush), Rotate not clearing the mark.
func TestCutBackThenRotate(t *testing.T) {
	dir, l, fs := openFullDisk(t, "acked")
	// A discarded batch that never left the buffer reached no reader.
	if err := l.Append([]byte("buffered")); err != nil {
		t.Fatal(err)
	}
	l.Discard() // its error only says what was dropped
	if l.CutBack() {
		t.Fatal("CutBack after discarding records that never reached the file")
	}
	a, b := []byte("phantom-a"), []byte("phantom-b")
	for _, p := range [][]byte{a, b} {
		if err := l.Append(p); err != nil {
			t.Fatal(err)
		}
	}
	fs.room = recHdrV2 + len(a) + 3 // all of a, part of b
	fs.full.Store(true)
	if err := l.Sync(); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Sync on a full disk: %v, want ENOSPC", err)
	}
	if !l.CutBack() {
		t.Fatal("a flush that wrote a whole record and failed did not mark the segment cut back")
	}
	fs.full.Store(false)
	first := l.Current()
	if closed, err := l.Rotate(); err != nil || closed != first {
		t.Fatalf("Rotate = %d, %v; want %d, nil", closed, err, first)
	}
	if l.CutBack() {
		t.Fatal("CutBack still set on the new segment")
	}
	got, _ := scanAll(t, SegmentPath(dir, first))
	if !slices.Equal(got, []string{"acked"}) {
		t.Fatalf("cut-back segment holds %q, want only the acknowledged record", got)
	}
}

// TestRotateOnFullDisk: a Rotate that cannot make the next segment (its
// header does not fit) removes what it made and leaves the current
// segment open and usable: once there is room, Append and Sync succeed in
// it and a later Rotate succeeds, with the same number.
// Mutations it catches: closing the current segment before the next is
// made (Append fails afterwards), leaving the half-made segment in place
// (it is listed, and the next Rotate fails on its name).
func TestRotateOnFullDisk(t *testing.T) {
	dir, l, fs := openFullDisk(t, "one")
	first := l.Current()
	fs.full.Store(true)
	if closed, err := l.Rotate(); err == nil || closed != 0 || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Rotate on a full disk = %d, %v; want 0 and ENOSPC", closed, err)
	}
	if _, err := os.Stat(SegmentPath(dir, first+1)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the half-made segment %d is still there (stat: %v)", first+1, err)
	}
	if segs, _ := ListSegments(dir); !slices.Equal(segs, []uint64{first}) || l.Current() != first {
		t.Fatalf("after a failed Rotate: segments %v, current %d; want [%d], %d", segs, l.Current(), first, first)
	}
	fs.full.Store(false)
	if err := l.Append([]byte("two")); err != nil {
		t.Fatalf("Append after the disk has room again: %v", err)
	}
	if err := l.Sync(); err != nil {
		t.Fatalf("Sync after the disk has room again: %v", err)
	}
	if closed, err := l.Rotate(); err != nil || closed != first || l.Current() != first+1 {
		t.Fatalf("Rotate with room = %d, %v (current %d); want %d, nil (current %d)", closed, err, l.Current(), first, first+1)
	}
	if err := l.Append([]byte("three")); err != nil {
		t.Fatal(err)
	}
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	got, _ := scanAll(t, SegmentPath(dir, first))
	if !slices.Equal(got, []string{"one", "two"}) {
		t.Fatalf("segment %d holds %q, want [one two]", first, got)
	}
	got, _ = scanAll(t, SegmentPath(dir, first+1))
	if !slices.Equal(got, []string{"three"}) {
		t.Fatalf("segment %d holds %q, want [three]", first+1, got)
	}
}

// TestDiscardAfterAFlushMarksCutBack: records of a batch an Append already
// flushed to the file (the buffer filled) are there for a reader before
// the batch fails for another reason and is discarded, so Discard marks
// the segment cut back too, not only a failed write.
// Mutation it catches: undo marking the segment only when a write failed
// (the earlier flush not counted).
func TestDiscardAfterAFlushMarksCutBack(t *testing.T) {
	dir := t.TempDir()
	l, _, err := Open(dir, 0, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	big := make([]byte, 2<<20) // past the 1 MiB buffer: written to the file
	big[0] = 'x'
	if err := l.Append(big); err != nil {
		t.Fatal(err)
	}
	got, _ := scanAll(t, SegmentPath(dir, l.Current()))
	if len(got) != 1 {
		t.Fatalf("a reader finds %d records before the batch is discarded, want the 1 flushed: the test sets up nothing", len(got))
	}
	l.Discard()
	if !l.CutBack() {
		t.Fatal("Discard after an Append flushed a record to the file did not mark the segment cut back")
	}
}
