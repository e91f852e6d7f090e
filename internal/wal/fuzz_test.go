package wal

import (
	"os"
	"testing"
)

// FuzzScan feeds arbitrary bytes after a valid segment prefix: Scan must
// never fail or panic, must keep every whole record before the damage, and
// Open must leave a state whose only possible damage is not a torn tail.
func FuzzScan(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{1, 0, 0, 0})
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{5, 0, 0, 0, 1, 2, 3, 4, 'a', 'b'})
	f.Fuzz(func(t *testing.T, tail []byte) {
		dir := t.TempDir()
		l, _, err := Open(dir, 0, Options{NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range []string{"one", "two", "three"} {
			l.Append([]byte(r))
		}
		l.Sync()
		seq := l.Current()
		l.f.Close()
		path := SegmentPath(dir, seq)
		fh, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
		fh.Write(tail)
		fh.Close()
		n := 0
		if _, err := Scan(path, func(int64, []byte) error { n++; return nil }); err != nil {
			t.Fatal(err)
		}
		if n < 3 {
			t.Fatalf("lost whole records: %d", n)
		}
		l2, _, err := Open(dir, 0, Options{NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		l2.Close()
		res, err := Scan(path, nil)
		if err != nil || res.Torn() != nil || res.Records < 3 {
			t.Fatalf("after recovery: %v %+v", err, res)
		}
	})
}
