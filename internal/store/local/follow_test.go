package local

import (
	"context"
	"testing"
)

// TestReaderEnd: a Reader's End is the position right after the newest
// event Scan finds in the same folder, with events in the WAL, sealed,
// and after a restart; so a follower that prints a reader's answer and
// then scans from End misses nothing and prints nothing twice.
// Mutations it catches: End ignoring the WAL's events, or the segments'.
func TestReaderEnd(t *testing.T) {
	dir := t.TempDir()
	check := func(when string) {
		t.Helper()
		r, err := OpenReader(dir)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		var want Pos
		if err := Scan(dir, ScanOptions{}, func(s Stored) error {
			want = Pos{WAL: s.Pos.WAL, Ord: s.Pos.Ord + 1}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if got := r.End(); got != want {
			t.Errorf("%s: End() = %v, want %v (after the newest event Scan finds)", when, got, want)
		}
	}
	check("empty folder")
	db, err := Open(dir, Options{WALSegmentBytes: 32 << 10, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	batches := smallBatches(20, 25)
	for _, b := range batches[:10] {
		if _, err := db.Append(context.Background(), b); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	check("after a close")
	if db, err = Open(dir, Options{NoSync: true}); err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	check("after a restart")
	for _, b := range batches[10:] {
		if _, err := db.Append(context.Background(), b); err != nil {
			t.Fatal(err)
		}
	}
	check("with events in the WAL")
}
