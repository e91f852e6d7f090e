package local

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kubetrail/kubetrail/internal/vfs"
	"github.com/kubetrail/kubetrail/internal/wal"
)

// walFixture writes batches of events straight into a WAL, as a crash
// leaves them before sealing, and returns the WAL segment's path and each
// batch's events' stored bytes.
func walFixture(t *testing.T, dir string, batches, per int) (string, [][]string) {
	t.Helper()
	l, _, err := wal.Open(filepath.Join(dir, walDir), 0, wal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(7, 8))
	var all [][]string
	for b := 0; b < batches; b++ {
		var keys []Key
		var times []int64
		var raws [][]byte
		var strs []string
		for i := 0; i < per; i++ {
			r := genEvent(rng, b*per+i)
			keys = append(keys, KeyOf("default", r.Raw))
			times = append(times, r.Event.Time().UnixMicro())
			raws = append(raws, r.Raw)
			strs = append(strs, string(r.Raw))
		}
		all = append(all, strs)
		if err := l.Append(appendBatch(nil, "default", 1_700_000_000_000_000+int64(b), keys, times, raws)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Sync(); err != nil {
		t.Fatal(err)
	}
	seq := l.Current()
	// Leave the segment as a crash would: written and synced, not sealed.
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return wal.SegmentPath(filepath.Join(dir, walDir), seq), all
}

// exported returns every event Scan gives, sorted, and its error.
func exported(t *testing.T, dir string) ([]string, error) {
	t.Helper()
	var out []string
	err := Scan(dir, ScanOptions{}, func(s Stored) error {
		out = append(out, string(s.Raw))
		return nil
	})
	slices.Sort(out)
	return out, err
}

func selected(t *testing.T, dir string) ([]string, []Damage) {
	t.Helper()
	r, err := OpenReader(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var out []string
	if err := r.Select(Selection{NeedEvent: true}, func(h *Hit) error {
		out = append(out, string(h.Raw))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out, r.Damaged()
}

// TestWALDamageKeepsEveryIntactEvent damages a WAL segment left by a crash
// at many offsets (every header byte, and payload bytes at a stride). For
// each: export and the Reader give every event of every intact batch and
// report the damage naming the file (a partial answer never passes for a
// whole one); DB recovery keeps every intact event, seals them, keeps the
// damaged bytes in the quarantine folder (counted), and readers report the
// quarantined file from then on.
// Mutations it catches: recovery cutting the segment at the damage (the
// old behaviour: every later batch lost), readers stopping silently at
// the damage, sealing dropping the damaged bytes instead of keeping them.
func TestWALDamageKeepsEveryIntactEvent(t *testing.T) {
	base := t.TempDir()
	path, batches := walFixture(t, base, 6, 4)
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// Where each batch's record starts.
	var starts []int
	res, err := wal.Scan(path, func(off int64, _ []byte) error { starts = append(starts, int(off)); return nil })
	if err != nil || res.Records != len(batches) {
		t.Fatalf("fixture: %v %+v", err, res)
	}
	holder := func(pos int) int {
		for i := len(starts) - 1; i >= 0; i-- {
			if pos >= starts[i] {
				return i
			}
		}
		return -1
	}
	var offsets []int
	for pos := 0; pos < len(orig); pos++ {
		h := holder(pos)
		if h < 0 || pos < starts[h]+wal.HeaderLen(2)+2 || pos%211 == 0 || pos == len(orig)-1 {
			offsets = append(offsets, pos)
		}
	}
	for _, pos := range offsets {
		dir := t.TempDir()
		os.MkdirAll(filepath.Join(dir, walDir), 0o700)
		damaged := bytes.Clone(orig)
		damaged[pos] ^= 0x5a
		p := filepath.Join(dir, walDir, filepath.Base(path))
		if err := os.WriteFile(p, damaged, 0o600); err != nil {
			t.Fatal(err)
		}
		h := holder(pos)
		var want []string
		for i, b := range batches {
			if i != h {
				want = append(want, b...)
			}
		}
		slices.Sort(want)

		got, err := exported(t, dir)
		var de *DamageError
		if !slices.Equal(got, want) || !errors.As(err, &de) || !strings.Contains(de.List[0].Path, filepath.Base(path)) {
			t.Fatalf("byte %d (batch %d): export gave %d of %d intact events, err %v", pos, h, len(got), len(want), err)
		}
		got, dmg := selected(t, dir)
		if !slices.Equal(got, want) || len(dmg) == 0 || !strings.Contains(dmg[0].Path, filepath.Base(path)) {
			t.Fatalf("byte %d (batch %d): select gave %d of %d intact events, damage %v", pos, h, len(got), len(want), dmg)
		}

		db, err := Open(dir, Options{})
		if err != nil {
			t.Fatalf("byte %d: open: %v", pos, err)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		if n := db.Stats().Quarantined.Load(); n != 1 {
			t.Fatalf("byte %d: %d stretches quarantined, want 1", pos, n)
		}
		if segs, _ := wal.ListSegments(filepath.Join(dir, walDir)); slices.Contains(segs, wal.SegmentNumber(p)) {
			t.Fatalf("byte %d: the damaged WAL segment was not sealed", pos)
		}
		got, err = exported(t, dir)
		if !slices.Equal(got, want) || !errors.As(err, &de) || !strings.Contains(de.List[0].Path, quarantineDir) {
			t.Fatalf("byte %d: after recovery export gave %d of %d intact events, err %v", pos, len(got), len(want), err)
		}
		q, _ := quarantined(vfs.OS, dir)
		kept, _ := os.ReadFile(q[0].Path)
		if len(q) != 1 || !bytes.Contains(kept, damaged[pos:pos+1]) || len(kept) == 0 {
			t.Fatalf("byte %d: quarantine holds %v", pos, q)
		}
		if h >= 0 && !bytes.Equal(kept, damaged[starts[h]:starts[h]+len(kept)]) {
			t.Fatalf("byte %d: the quarantined bytes are not the damaged record's", pos)
		}
	}
	t.Logf("%d damaged copies, each: every intact event kept, damage reported and quarantined", len(offsets))
}

// TestDeletedWALSegmentIsReported deletes, after a crash, the WAL segment
// that holds the last acknowledged batches (not sealed yet): every reader
// and verify name it as missing, before and after serve restarts (which
// keeps it in the ledger rather than forgetting it).
// Mutations it catches: no ledger entry for a new segment (rotate or
// Open), readers not checking the ledger, reconcile dropping the entry.
func TestDeletedWALSegmentIsReported(t *testing.T) {
	mem := vfs.NewStrictMem()
	db, err := Open("/d", Options{FS: mem, SealAfter: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	for b := 0; b < 3; b++ {
		if _, err := db.Append(context.Background(), batch(b*10, b*10+10)); err != nil {
			t.Fatal(err)
		}
	}
	after := mem.Crash() // the batches are in the WAL, not sealed
	walPath := filepath.Join("/d", walDir)
	segs, err := wal.ListSegmentsFS(after, walPath)
	if err != nil || len(segs) == 0 {
		t.Fatalf("WAL segments %v %v", segs, err)
	}
	victim := wal.SegmentPath(walPath, segs[len(segs)-1])
	if err := after.Remove(victim); err != nil {
		t.Fatal(err)
	}
	check := func(when string) {
		t.Helper()
		err := Scan("/d", ScanOptions{FS: after}, func(Stored) error { return nil })
		var de *DamageError
		if !errors.As(err, &de) || !strings.Contains(fmt.Sprint(de.List), victim+": missing: listed in wal/LEDGER") {
			t.Errorf("%s: export gave %v; want %s named missing", when, err, victim)
		}
		r, err := OpenReaderFS(after, "/d")
		if err != nil {
			t.Fatal(err)
		}
		if d := fmt.Sprint(r.Damaged()); !strings.Contains(d, victim) {
			t.Errorf("%s: the reader's damage %s does not name %s", when, d, victim)
		}
		r.Close()
		rep, err := VerifyFS(after, "/d", nil)
		if err != nil || !strings.Contains(fmt.Sprint(rep.Damage), victim) {
			t.Errorf("%s: verify %v %v does not name %s", when, rep, err, victim)
		}
	}
	check("after the crash")
	db2, err := Open("/d", Options{FS: after, SealAfter: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if err := db2.Close(); err != nil {
		t.Fatal(err)
	}
	check("after serve restarted")
}

// TestDamageBeforeSealingInTheSameRun damages a record of the WAL segment
// a running DB is writing (the columns it built at ingest then no longer
// line up with the records): sealing must keep every intact event,
// quarantine the damaged record and remove the WAL segment, reading the
// file again without those columns.
// Mutation it catches: sealing with the ingest columns anyway (the BUG
// count check fails, and the segment stays in the WAL for ever).
func TestDamageBeforeSealingInTheSameRun(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(dir, Options{SealAfter: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	for b := 0; b < 4; b++ {
		if _, err := db.Append(context.Background(), batch(b*10, b*10+10)); err != nil {
			t.Fatal(err)
		}
	}
	path := wal.SegmentPath(filepath.Join(dir, walDir), db.wal.Current())
	var starts []int64
	if _, err := wal.Scan(path, func(off int64, _ []byte) error { starts = append(starts, off); return nil }); err != nil || len(starts) != 4 {
		t.Fatalf("records at %v: %v", starts, err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Flip a byte inside batch 1's payload (writing a fixed value would
	// sometimes write the byte that was there: the batch's receive time).
	at := starts[1] + int64(wal.HeaderLen(2)) + 5
	b := make([]byte, 1)
	f.ReadAt(b, at)
	f.WriteAt([]byte{b[0] ^ 0xff}, at)
	f.Close()
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if n := db.Stats().Quarantined.Load(); n != 1 {
		t.Fatalf("%d stretches quarantined, want 1", n)
	}
	if segs, _ := wal.ListSegments(filepath.Join(dir, walDir)); slices.Contains(segs, wal.SegmentNumber(path)) {
		t.Fatal("the damaged WAL segment was not sealed")
	}
	got, err := exported(t, dir)
	var de *DamageError
	if len(got) != 30 || !errors.As(err, &de) {
		t.Fatalf("after sealing: %d events (want the 30 of the intact batches), err %v", len(got), err)
	}
}
