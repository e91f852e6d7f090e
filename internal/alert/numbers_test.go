package alert

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/kubetrail/kubetrail/internal/rules"
	"github.com/kubetrail/kubetrail/internal/vfs"
	"github.com/kubetrail/kubetrail/internal/wal"
)

// TestNumbersFileSlots: the slot written last (the higher generation)
// holds the limit, even when it is lower (Close lowers it); a slot cut
// short or damaged leaves the other one's; a file with no valid slot is
// reported and numbering goes on after the newest alert.
// Mutations it catches: choosing the slot with the higher limit instead
// of the higher generation; writing the slot that holds the current limit
// (a torn write would then leave no valid slot).
func TestNumbersFileSlots(t *testing.T) {
	dir := t.TempDir()
	n, bad, err := readNumbers(vfs.OS, dir)
	if err != nil || bad != nil || n.found {
		t.Fatalf("no file: %+v %v %v, want nothing found and no damage", n, bad, err)
	}
	for _, limit := range []uint64{2000, 3000, 40} {
		if err := n.set(limit); err != nil {
			t.Fatal(err)
		}
	}
	n.close()
	check := func(what string, want uint64) {
		t.Helper()
		got, bad, err := readNumbers(vfs.OS, dir)
		if err != nil || bad != nil || got.limit != want {
			t.Fatalf("%s: limit %d (damage %v, %v), want %d", what, got.limit, bad, err, want)
		}
	}
	check("after 2000, 3000 and 40", 40)
	// The newest slot torn (what a crash during its write leaves): the
	// other one holds the limit before it.
	path := filepath.Join(dir, NumbersFile)
	newest := int64(0) // 40 went to slot 0: 2000 in 0, 3000 in 1, 40 in 0
	flip(t, path, newest*numbersSlot+20)
	check("the newest slot damaged", 3000)
	flip(t, path, numbersSlot+3)
	_, bad, err = readNumbers(vfs.OS, dir)
	if err != nil || bad == nil {
		t.Fatalf("both slots damaged: damage %v, %v; want it reported", bad, err)
	}
	// A store whose numbers file is damaged reports it and numbers after
	// its newest alert; its next Append writes a whole file again.
	s, rec, err := OpenStore(dir, StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.Damage) != 1 || rec.Damage[0].Path != path || rec.Next != 1 {
		t.Fatalf("recovery %+v, want the numbers file reported and numbering from 1", rec)
	}
	appendN(t, s, 0, 1)
	s.Close()
	check("after an Append and a Close", 2)
}

// TestStoreRefusesToNumberPastADurableLimit: when the limit cannot be
// raised (a full disk before the numbers file was made, or a file system
// that needs room even to overwrite), Append fails and writes no alert;
// the detector retries it, and once there is room it succeeds.
// Mutation it catches: an Append that goes on when raising the limit
// failed.
func TestStoreRefusesToNumberPastADurableLimit(t *testing.T) {
	const dir = "/data/alerts"
	fs := &fillingFS{FS: vfs.NewStrictMem()}
	f := func(s *Store, what string) {
		t.Helper()
		before, _, _ := ListDir(fs, dir, Query{})
		fs.arm(&fs.numbersFull)
		if out, err := s.Append([]rules.Alert{mkAlert("r", "u", rules.High, 1)}); err == nil {
			t.Fatalf("%s: Append numbered %v past a limit it could not make durable", what, seqs(out))
		}
		if list, _, _ := ListDir(fs, dir, Query{}); len(list) != len(before) {
			t.Fatalf("%s: a failed Append left alerts %v", what, seqs(list))
		}
		fs.mu.Lock()
		fs.numbersFull = false
		fs.mu.Unlock()
		out, err := s.Append([]rules.Alert{mkAlert("r", "u", rules.High, 2)})
		if err != nil {
			t.Fatalf("%s: once there is room: %v", what, err)
		}
		if list, _, _ := ListDir(fs, dir, Query{}); len(list) != len(before)+1 || list[len(list)-1].Seq != out[0].Seq {
			t.Fatalf("%s: the folder holds %v, want %v after %v", what, seqs(list), seqs(out), seqs(before))
		}
	}
	s, _, err := OpenStore(dir, StoreOptions{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	f(s, "no numbers file yet")
	// Killed and restarted: the first Append must raise the limit.
	if s, _, err = OpenStore(dir, StoreOptions{FS: fs}); err != nil {
		t.Fatal(err)
	}
	f(s, "after a kill")
}

// TestStoreOpensAStoreWithoutANumbersFile: a store written before the
// numbers file existed (segments only) opens and lists the same alerts,
// numbers on from its newest alert, and gets the file at its first
// Append.
func TestStoreOpensAStoreWithoutANumbersFile(t *testing.T) {
	dir := t.TempDir()
	// What kubetrail wrote before ADR 0029: segments of format 2, one
	// alert per record, numbered from 1.
	log, _, err := wal.Open(dir, 0, wal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		a := Alert{Alert: mkAlert("old", "u", rules.Low, i), Seq: uint64(i + 1), Stored: t0}
		b, err := encodeRecord(&a)
		if err != nil {
			t.Fatal(err)
		}
		if err := log.Append(b); err != nil {
			t.Fatal(err)
		}
	}
	if err := log.Close(); err != nil {
		t.Fatal(err)
	}
	before, _, err := ListDir(nil, dir, Query{Oldest: true})
	if err != nil || fmt.Sprint(seqs(before)) != "[1 2 3 4 5]" {
		t.Fatalf("the old store lists %v (%v)", seqs(before), err)
	}
	s, rec, err := OpenStore(dir, StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rec.Alerts != 5 || len(rec.Damage) != 0 || rec.Next != 6 {
		t.Fatalf("recovery %+v, want 5 alerts, no damage, next 6", rec)
	}
	after, _, err := ListDir(nil, dir, Query{Oldest: true})
	if err != nil || fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("after Open the store lists %v, want %v", seqs(after), seqs(before))
	}
	if _, err := os.Stat(filepath.Join(dir, NumbersFile)); err == nil {
		t.Fatal("Open wrote a numbers file: a store opened and never appended to is left as it was")
	}
	if out := appendN(t, s, 5, 1); out[0].Seq != 6 {
		t.Fatalf("the first new alert is %d, want 6", out[0].Seq)
	}
	s.Close()
	if n, bad, err := readNumbers(vfs.OS, dir); err != nil || bad != nil || n.limit != 7 {
		t.Fatalf("numbers file after the first Append and a Close: %+v %v %v, want limit 7", n, bad, err)
	}
}

// TestStoreSurvivesACraftedNumbersFile: a numbers file whose slot holds a
// limit or a generation near the top of uint64 (written by hand, or
// damage the CRC missed) must neither wrap the numbers (an alert numbered
// 0, or below one a reader saw) nor stop the store: such a slot is not
// one kubetrail writes (numbers and generations grow by one per alert
// and per write), so it is reported as damage and numbering goes on after
// the newest alert. Each case appends, is killed, reopens and appends
// again: every number must be above the ones before it.
// Mutations it catches: decodeSlot taking any limit (end wraps past
// 2^64: numbers 0, 1, ... given, or a lower limit written); and taking
// any generation (gen+1 wraps to 0: the raised limit's slot loses to the
// crafted one, whose lower limit a restart then numbers from).
func TestStoreSurvivesACraftedNumbersFile(t *testing.T) {
	const top = ^uint64(0)
	f := func(what string, gen, limit uint64) {
		t.Helper()
		dir := t.TempDir()
		s, _, err := OpenStore(dir, StoreOptions{})
		if err != nil {
			t.Fatal(err)
		}
		got := seqs(appendN(t, s, 0, 3))
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		b := make([]byte, 2*numbersSlot)
		copy(b, encodeSlot(gen, limit))
		if err := os.WriteFile(filepath.Join(dir, NumbersFile), b, 0o600); err != nil {
			t.Fatal(err)
		}
		var relied uint64 // the limit the last Append relied on
		for range 3 {
			// Killed after each round: never closed. Numbers below the
			// limit relied on may have been seen (a power loss could
			// lose their alerts): the store numbers on from it.
			s, rec, err := OpenStore(dir, StoreOptions{})
			if err != nil {
				t.Fatalf("%s: the store does not open: %v", what, err)
			}
			if rec.Next > maxNumber || rec.Next < relied {
				t.Fatalf("%s: after a kill the store numbers from %d, the limit relied on was %d", what, rec.Next, relied)
			}
			out, err := s.Append([]rules.Alert{mkAlert("r", "u", rules.High, 1), mkAlert("r", "u", rules.High, 2)})
			if err != nil {
				t.Fatalf("%s: Append: %v", what, err)
			}
			got = append(got, seqs(out)...)
			relied = s.nums.limit
		}
		for i := 1; i < len(got); i++ {
			if got[i] <= got[i-1] || got[i] > maxNumber {
				t.Fatalf("%s: numbers given %v", what, got)
			}
		}
	}
	f("a limit of 2^64-1", 1, top)
	f("a limit 100 below 2^64", 1, top-100)
	f("a limit 1500 below 2^64", 1, top-1500)
	f("a generation of 2^64-1", top, 10)
}

// TestStoreMakesADeletedNumbersFileAgain: a numbers file deleted while
// the store runs (by hand, or a cleanup that took it for a stray file)
// leaves the store writing its limits into a file no name reaches, and a
// restart after a kill and a power loss would number from the newest
// durable alert, below numbers readers saw. The next Append makes the
// file again, as does Close.
// Mutation it catches: Append and Close not looking for the file (the
// limit written to the deleted file only).
func TestStoreMakesADeletedNumbersFileAgain(t *testing.T) {
	for _, stop := range []string{"killed", "closed"} {
		dir := t.TempDir()
		s, _, err := OpenStore(dir, StoreOptions{})
		if err != nil {
			t.Fatal(err)
		}
		appendN(t, s, 0, 3)
		if err := os.Remove(filepath.Join(dir, NumbersFile)); err != nil {
			t.Fatal(err)
		}
		if stop == "killed" {
			appendN(t, s, 3, 2) // below the limit: no raise needed
		} else if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		want := s.nums.limit // relied on (killed), or lowered to the next number (closed)
		n, bad, err := readNumbers(vfs.OS, dir)
		if err != nil || bad != nil || !n.found || n.limit != want {
			t.Fatalf("numbers file deleted, then the store %s: %+v (damage %v, %v), want limit %d", stop, n, bad, err, want)
		}
		if stop == "killed" {
			s2, rec, err := OpenStore(dir, StoreOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if rec.Next < want {
				t.Fatalf("numbers file deleted, then the store killed: a restart numbers from %d, the limit relied on was %d", rec.Next, want)
			}
			s2.Close()
		}
	}
}

// TestStoreDoesNotNumberWithoutANumbersFile: a numbers file deleted while
// the store runs, on a disk with no room to make it again: every Append
// fails until the file is made again, rather than write numbers that no
// durable limit is above.
// Mutation it catches: Append looking for the file only while it holds
// it open (the second Append, after a failed making, then numbers below
// a limit that is nowhere on disk).
func TestStoreDoesNotNumberWithoutANumbersFile(t *testing.T) {
	const dir = "/data/alerts"
	fs := &fillingFS{FS: vfs.NewStrictMem()}
	s, _, err := OpenStore(dir, StoreOptions{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	appendN(t, s, 0, 3)
	if err := fs.Remove(filepath.Join(dir, NumbersFile)); err != nil {
		t.Fatal(err)
	}
	fs.arm(&fs.numbersFull)
	for i := range 2 {
		out, err := s.Append([]rules.Alert{mkAlert("r", "u", rules.High, 10+i)})
		if err != nil {
			continue
		}
		n, _, rerr := readNumbers(fs, dir)
		if rerr != nil || !n.found || n.limit <= out[0].Seq {
			t.Fatalf("Append %d numbered %v with the numbers file %+v (%v)", i, seqs(out), n, rerr)
		}
	}
	fs.mu.Lock()
	fs.numbersFull = false
	fs.mu.Unlock()
	out := appendN(t, s, 20, 1)
	if n, _, err := readNumbers(fs, dir); err != nil || !n.found || n.limit <= out[0].Seq {
		t.Fatalf("once there is room: numbered %v with the numbers file %+v (%v)", seqs(out), n, err)
	}
}
