package wal

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func scanAll(t *testing.T, path string) ([]string, ScanResult) {
	t.Helper()
	var out []string
	res, err := Scan(path, func(_ int64, p []byte) error { out = append(out, string(p)); return nil })
	if err != nil {
		t.Fatalf("scan: %v", err)
	}
	return out, res
}

// writeLog writes n records to a new log in dir and returns the segment's
// path and the records; the log is closed.
func writeLog(t *testing.T, dir string, n int) (string, []string) {
	t.Helper()
	l, _, err := Open(dir, 0, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var recs []string
	for i := 0; i < n; i++ {
		r := fmt.Sprintf("record-%d-%s", i, strings.Repeat("x", 16+i%5))
		recs = append(recs, r)
		if err := l.Append([]byte(r)); err != nil {
			t.Fatal(err)
		}
		if err := l.Sync(); err != nil {
			t.Fatal(err)
		}
	}
	seq := l.Current()
	l.f.Close()
	return SegmentPath(dir, seq), recs
}

func TestTornTails(t *testing.T) {
	f := func(name string, damage func(path string, size int64), wantKept int, wantReason string) {
		t.Helper()
		dir := t.TempDir()
		path, _ := writeLog(t, dir, 5)
		st, _ := os.Stat(path)
		damage(path, st.Size())
		l2, rec, err := Open(dir, 0, Options{})
		if err != nil {
			t.Fatalf("%s: open: %v", name, err)
		}
		defer l2.Close()
		got, res := scanAll(t, path)
		if len(got) != wantKept {
			t.Errorf("%s: kept %d records, want %d", name, len(got), wantKept)
		}
		if len(res.Damage) != 0 {
			t.Errorf("%s: after recovery the segment still has damage %+v", name, res.Damage)
		}
		if wantReason == "" && rec.TornBytes != 0 || wantReason != "" && (rec.TornBytes == 0 || rec.Reason != wantReason) {
			t.Errorf("%s: recovery %+v, want reason %q", name, rec, wantReason)
		}
		if l2.Current() == SegmentNumber(path) {
			t.Errorf("%s: appends must go to a new segment", name)
		}
	}
	last := int64(recHdrV2 + len("record-4-") + 16 + 4)
	f("clean", func(string, int64) {}, 5, "")
	f("half a payload", func(p string, n int64) { os.Truncate(p, n-10) }, 4, "record of 29 bytes cut after 19 bytes")
	f("half a header", func(p string, n int64) { os.Truncate(p, n-last+3) }, 4, "record header cut after 3 of 12 bytes")
	f("zero-filled tail", func(p string, n int64) { os.Truncate(p, n+4096) }, 5, "zero-filled tail")
	f("payload never written", func(p string, n int64) {
		// The file was extended for the last record, but only its header
		// reached the disk.
		fh, _ := os.OpenFile(p, os.O_RDWR, 0)
		fh.WriteAt(make([]byte, 20), n-20)
		fh.Close()
	}, 4, "record of 29 bytes ends in zeros: written only in part")
	f("header only", func(p string, n int64) { os.Truncate(p, 3) }, 0, "segment header is short")
}

// TestDamageCostsOnlyItsRecord flips every byte of a segment in turn: every
// record that does not hold the byte is still read, the damage is reported
// where it is, and Open cuts nothing (a flipped byte is never a torn tail).
// Mutations it catches: trusting a damaged length (every later record
// lost), stopping at the first bad record (the old behaviour), treating
// damage at the end as torn (Open cuts an acknowledged record).
func TestDamageCostsOnlyItsRecord(t *testing.T) {
	dir := t.TempDir()
	path, recs := writeLog(t, dir, 6)
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// offsets[i] is where record i starts.
	var offsets []int64
	off := int64(headerLen)
	for _, r := range recs {
		offsets = append(offsets, off)
		off += recHdrV2 + int64(len(r))
	}
	holder := func(pos int64) int {
		for i := len(offsets) - 1; i >= 0; i-- {
			if pos >= offsets[i] {
				return i
			}
		}
		return -1 // the file header
	}
	for _, xor := range []byte{0x01, 0x80, 0xff} {
		for pos := int64(0); pos < int64(len(orig)); pos++ {
			b := bytes.Clone(orig)
			b[pos] ^= xor
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
			got, res := scanAll(t, path)
			h := holder(pos)
			var want []string
			for i, r := range recs {
				if i != h {
					want = append(want, r)
				}
			}
			if strings.Join(got, ",") != strings.Join(want, ",") {
				t.Fatalf("byte %d ^ %#x (record %d): read %d records %v, want %v", pos, xor, h, len(got), got, want)
			}
			if len(res.Damage) != 1 || res.Damage[0].Torn {
				t.Fatalf("byte %d ^ %#x: damage %+v, want one damaged stretch, not torn", pos, xor, res.Damage)
			}
			d := res.Damage[0]
			if pos < d.Offset || pos >= d.Offset+d.Length {
				t.Fatalf("byte %d ^ %#x: damage %+v does not hold the byte", pos, xor, d)
			}
			l, rec, err := Open(dir, 0, Options{NoSync: true})
			if err != nil {
				t.Fatal(err)
			}
			l.f.Close()
			os.Remove(SegmentPath(dir, l.Current()))
			if rec.TornBytes != 0 {
				t.Fatalf("byte %d ^ %#x: Open cut %d bytes (%s) of a damaged, not torn, segment", pos, xor, rec.TornBytes, rec.Reason)
			}
			if now, _ := os.ReadFile(path); !bytes.Equal(now, b) {
				t.Fatalf("byte %d ^ %#x: Open changed a damaged segment", pos, xor)
			}
		}
	}
}

// TestFormat1StillRead reads a segment written in format 1 (8-byte record
// headers), whole and after damage to a length, which format 1 cannot
// tell from damage to a payload: the search finds the next record.
func TestFormat1StillRead(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "0000000000000001.wal")
	b := []byte(MagicV1)
	var recs []string
	for i := 0; i < 5; i++ {
		r := fmt.Sprintf("old-record-%d", i)
		recs = append(recs, r)
		b = binary.LittleEndian.AppendUint32(b, uint32(len(r)))
		b = binary.LittleEndian.AppendUint32(b, crc32.Checksum([]byte(r), castagnoli))
		b = append(b, r...)
	}
	os.WriteFile(path, b, 0o600)
	got, res := scanAll(t, path)
	if res.Version != 1 || len(got) != 5 || len(res.Damage) != 0 {
		t.Fatalf("format 1: version %d, %d records, damage %+v", res.Version, len(got), res.Damage)
	}
	// Record 1's length becomes huge: records 2, 3 and 4 must survive.
	at := len(MagicV1) + 8 + len(recs[0])
	b[at+2] = 0x7f
	os.WriteFile(path, b, 0o600)
	got, res = scanAll(t, path)
	if want := []string{recs[0], recs[2], recs[3], recs[4]}; strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("format 1 with a damaged length: %v, want %v", got, want)
	}
	if len(res.Damage) != 1 || res.Damage[0].Torn || res.Damage[0].Offset != int64(at) {
		t.Fatalf("format 1 damage %+v", res.Damage)
	}
	// A damaged file header: the records after it are still format 1.
	b[at+2] = 0
	b[3] ^= 0xff
	os.WriteFile(path, b, 0o600)
	if got, res = scanAll(t, path); len(got) != 5 || res.Version != 1 || len(res.Damage) != 1 {
		t.Fatalf("format 1 with a damaged header: %d records, version %d, damage %+v", len(got), res.Version, res.Damage)
	}
}

// TestTruncatedAnywhere cuts a segment at every length: the records before
// the cut are read, and what follows is reported as a torn tail (which
// the store treats as damage in a segment that was complete).
func TestTruncatedAnywhere(t *testing.T) {
	dir := t.TempDir()
	path, recs := writeLog(t, dir, 4)
	orig, _ := os.ReadFile(path)
	for n := 0; n < len(orig); n++ {
		os.WriteFile(path, orig[:n], 0o600)
		got, res := scanAll(t, path)
		for i, g := range got {
			if g != recs[i] {
				t.Fatalf("cut at %d: record %d is %q", n, i, g)
			}
		}
		whole := int64(n) == res.End
		if !whole && (res.Torn() == nil || len(res.Damaged()) != 0) {
			t.Fatalf("cut at %d: damage %+v, want one torn tail", n, res.Damage)
		}
	}
}

func TestRotateAndRemove(t *testing.T) {
	dir := t.TempDir()
	l, _, err := Open(dir, 41, Options{SegmentBytes: 100})
	if err != nil {
		t.Fatal(err)
	}
	if l.Current() != 42 {
		t.Fatalf("first segment %d, want 42 (above minSeq)", l.Current())
	}
	l.Append(make([]byte, 200))
	if !l.NeedsRotate() {
		t.Fatal("segment past its size must need rotation")
	}
	closed, err := l.Rotate()
	if err != nil || closed != 42 || l.Current() != 43 {
		t.Fatalf("rotate: %d %v, current %d", closed, err, l.Current())
	}
	if err := l.Remove(43); err == nil {
		t.Fatal("removing the open segment must fail")
	}
	if err := l.Remove(42); err != nil {
		t.Fatal(err)
	}
	if segs := l.Segments(); len(segs) != 1 || segs[0] != 43 {
		t.Fatalf("segments %v", segs)
	}
	l.Close()
}
