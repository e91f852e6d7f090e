package wal

import (
	"fmt"
	"os"
	"testing"
)

func scanAll(t *testing.T, path string) []string {
	t.Helper()
	var out []string
	if _, reason, err := Scan(path, func(p []byte) error { out = append(out, string(p)); return nil }); err != nil || reason != "" {
		t.Fatalf("scan: %v %q", err, reason)
	}
	return out
}

func TestTornTails(t *testing.T) {
	f := func(name string, damage func(path string, size int64), wantKept int, wantReason string) {
		t.Helper()
		dir := t.TempDir()
		l, _, err := Open(dir, 0, Options{})
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 5; i++ {
			if err := l.Append([]byte(fmt.Sprintf("record-%d-%s", i, "xxxxxxxxxxxxxxxx"))); err != nil {
				t.Fatal(err)
			}
			if err := l.Sync(); err != nil {
				t.Fatal(err)
			}
		}
		seq := l.Current()
		l.f.Close()
		path := SegmentPath(dir, seq)
		st, _ := os.Stat(path)
		damage(path, st.Size())
		l2, rec, err := Open(dir, 0, Options{})
		if err != nil {
			t.Fatalf("%s: open: %v", name, err)
		}
		defer l2.Close()
		if got := scanAll(t, path); len(got) != wantKept {
			t.Errorf("%s: kept %d records, want %d", name, len(got), wantKept)
		}
		if wantReason == "" && rec.TornBytes != 0 || wantReason != "" && (rec.TornBytes == 0 || rec.Reason != wantReason) {
			t.Errorf("%s: recovery %+v, want reason %q", name, rec, wantReason)
		}
		if l2.Current() == seq {
			t.Errorf("%s: appends must go to a new segment", name)
		}
	}
	f("clean", func(string, int64) {}, 5, "")
	f("half a payload", func(p string, n int64) { os.Truncate(p, n-10) }, 4, "record of 25 bytes cut after 15 bytes")
	f("half a header", func(p string, n int64) { os.Truncate(p, n-33+3) }, 4, "record header cut after 3 of 8 bytes")
	f("flipped byte", func(p string, n int64) {
		fh, _ := os.OpenFile(p, os.O_RDWR, 0)
		fh.WriteAt([]byte{'X'}, n-1)
		fh.Close()
	}, 4, "record checksum does not match")
	f("garbage appended", func(p string, n int64) {
		fh, _ := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
		fh.Write([]byte{0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4})
		fh.Close()
	}, 5, "record length 4294967295 is impossible")
	f("zero-filled tail", func(p string, n int64) { os.Truncate(p, n+4096) }, 5, "zero-filled tail")
	f("header only", func(p string, n int64) { os.Truncate(p, 3) }, 0, "segment header is short")
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
