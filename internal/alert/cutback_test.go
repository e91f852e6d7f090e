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

// fillingFS fills up in the middle of a write to a segment once armed: the
// failing write lands its first room bytes, calls during (a reader beside
// the store, as `alerts --follow` on the folder, looking then) and fails
// with ENOSPC.
type fillingFS struct {
	vfs.FS
	mu     sync.Mutex
	armed  bool
	room   int
	during func()
}

func (d *fillingFS) OpenFile(name string, flag int, perm os.FileMode) (vfs.File, error) {
	f, err := d.FS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &fillingFile{File: f, d: d}, nil
}

type fillingFile struct {
	vfs.File
	d *fillingFS
}

func (f *fillingFile) Write(p []byte) (int, error) {
	d := f.d
	d.mu.Lock()
	armed := d.armed && filepath.Ext(f.Name()) == ".wal"
	d.armed = false
	d.mu.Unlock()
	if !armed {
		return f.File.Write(p)
	}
	n, err := f.File.Write(p[:min(len(p), d.room)])
	d.during()
	if err == nil {
		err = &os.PathError{Op: "write", Path: f.Name(), Err: syscall.ENOSPC}
	}
	return n, err
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
	fs.mu.Lock()
	fs.armed = true
	fs.mu.Unlock()
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
