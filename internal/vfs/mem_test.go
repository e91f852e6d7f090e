package vfs

import (
	"errors"
	"io"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

func readAll(t *testing.T, fs FS, name string) (string, bool) {
	t.Helper()
	f, err := fs.Open(name)
	if errors.Is(err, os.ErrNotExist) {
		return "", false
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	return string(b), true
}

func write(t *testing.T, fs FS, name, data string, sync bool) File {
	t.Helper()
	f, err := fs.OpenFile(name, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte(data)); err != nil {
		t.Fatal(err)
	}
	if sync {
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

// TestStrictMemKeepsOnlyWhatWasSynced checks each rule of the strict file
// system against what a power loss does to a real one.
func TestStrictMemKeepsOnlyWhatWasSynced(t *testing.T) {
	f := func(name string, steps func(m *MemFS), check func(after *MemFS)) {
		t.Helper()
		m := NewStrictMem()
		if err := MkdirAllSynced(m, "/d", 0o700); err != nil {
			t.Fatal(err)
		}
		steps(m)
		after := m.Crash()
		if _, err := m.Stat("/d"); !errors.Is(err, ErrCrashed) {
			t.Errorf("%s: the crashed file system still answers: %v", name, err)
		}
		check(after)
	}
	want := func(t *testing.T, fs FS, name, data string, exists bool) {
		t.Helper()
		got, ok := readAll(t, fs, name)
		if ok != exists || got != data {
			t.Errorf("%s: exists=%v %q, want exists=%v %q", name, ok, got, exists, data)
		}
	}
	f("synced file, folder not synced", func(m *MemFS) {
		write(t, m, "/d/a", "x", true)
	}, func(a *MemFS) { want(t, a, "/d/a", "", false) })
	f("folder synced, data not", func(m *MemFS) {
		write(t, m, "/d/a", "x", false)
		m.SyncDir("/d")
	}, func(a *MemFS) { want(t, a, "/d/a", "", true) })
	f("both synced, then more data", func(m *MemFS) {
		fh := write(t, m, "/d/a", "x", true)
		m.SyncDir("/d")
		fh.Write([]byte("y"))
	}, func(a *MemFS) { want(t, a, "/d/a", "x", true) })
	f("rename not made durable", func(m *MemFS) {
		write(t, m, "/d/a", "x", true)
		m.SyncDir("/d")
		m.Rename("/d/a", "/d/b")
	}, func(a *MemFS) { want(t, a, "/d/a", "x", true); want(t, a, "/d/b", "", false) })
	f("rename made durable", func(m *MemFS) {
		write(t, m, "/d/a", "x", true)
		m.SyncDir("/d")
		m.Rename("/d/a", "/d/b")
		m.SyncDir("/d")
	}, func(a *MemFS) { want(t, a, "/d/a", "", false); want(t, a, "/d/b", "x", true) })
	f("remove not made durable", func(m *MemFS) {
		write(t, m, "/d/a", "x", true)
		m.SyncDir("/d")
		m.Remove("/d/a")
	}, func(a *MemFS) { want(t, a, "/d/a", "x", true) })
	f("truncate not synced", func(m *MemFS) {
		fh := write(t, m, "/d/a", "xyz", true)
		m.SyncDir("/d")
		fh.Truncate(1)
	}, func(a *MemFS) { want(t, a, "/d/a", "xyz", true) })
	f("new folder whose parent was not synced", func(m *MemFS) {
		m.MkdirAll("/d/e", 0o700)
		write(t, m, "/d/e/a", "x", true)
		m.SyncDir("/d/e")
	}, func(a *MemFS) { want(t, a, "/d/e/a", "", false) })
	f("MkdirAllSynced", func(m *MemFS) {
		MkdirAllSynced(m, "/d/e/f", 0o700)
		write(t, m, "/d/e/f/a", "x", true)
		m.SyncDir("/d/e/f")
	}, func(a *MemFS) { want(t, a, "/d/e/f/a", "x", true) })
}

// TestFaultsDropOneSite checks that Faults names sites by their function
// and that a dropped sync is not made: the data is lost at the crash.
func TestFaultsDropOneSite(t *testing.T) {
	m := NewStrictMem()
	ff := NewFaults(m)
	MkdirAllSynced(ff, "/d", 0o700)
	fh := write(t, ff, "/d/a", "x", true)
	fh.Close()
	ff.SyncDir("/d")
	sites := ff.Sites()
	if len(sites) != 2 || sites[0] != "sync vfs.write" || sites[1] != "syncdir vfs.TestFaultsDropOneSite" {
		t.Fatalf("sites %q", sites)
	}
	ff.Drop("sync vfs.write")
	write(t, ff, "/d/b", "y", true).Close()
	ff.SyncDir("/d")
	after := m.Crash()
	if got, ok := readAll(t, after, "/d/b"); !ok || got != "" {
		t.Fatalf("a dropped sync was made: %v %q", ok, got)
	}
	if got, _ := readAll(t, after, "/d/a"); got != "x" {
		t.Fatalf("a sync that was not dropped was lost: %q", got)
	}
}

// TestLock checks the lock modes on the real file system and the
// in-memory one alike, and that a crash drops the in-memory locks and
// wakes whoever waits for one.
// Mutations it catches: a shared lock that keeps an exclusive one out of
// nothing (or lets it in beside it), a waiting Lock that never wakes.
func TestLock(t *testing.T) {
	for _, tc := range []struct {
		name string
		fs   FS
		dir  string
	}{
		{"os", OS, t.TempDir()},
		{"mem", NewStrictMem(), "/d"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs, dir := tc.fs, tc.dir
			if err := fs.MkdirAll(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			lock := func(mode LockMode) func() error {
				t.Helper()
				unlock, err := fs.Lock(dir, mode)
				if err != nil {
					t.Fatal(err)
				}
				return unlock
			}
			u1, u2 := lock(LockShared), lock(LockShared)
			if _, err := fs.Lock(dir, LockExclusiveNow); err == nil {
				t.Fatal("an exclusive lock was taken beside shared ones")
			} else if !errors.Is(err, syscall.EWOULDBLOCK) {
				t.Fatalf("refused exclusive lock: %v", err)
			}
			got := make(chan func() error)
			go func() {
				unlock, err := fs.Lock(dir, LockExclusive)
				if err != nil {
					t.Error(err)
				}
				got <- unlock
			}()
			u1()
			select {
			case <-got:
				t.Fatal("an exclusive lock was taken while a shared one was held")
			case <-time.After(50 * time.Millisecond):
			}
			u2()
			ux := <-got
			if _, err := fs.Lock(dir, LockExclusiveNow); err == nil {
				t.Fatal("two exclusive locks at once")
			}
			ux()
			lock(LockExclusiveNow)()
			if _, err := fs.Lock(dir+"/missing", LockShared); !errors.As(err, new(*os.PathError)) {
				t.Fatalf("lock of a missing file: %v, want an *os.PathError", err)
			}
		})
	}
	m := NewStrictMem()
	m.MkdirAll("/d", 0o700)
	m.SyncDir("/")
	if _, err := m.Lock("/d", LockExclusive); err != nil {
		t.Fatal(err)
	}
	waiting := make(chan error)
	go func() {
		_, err := m.Lock("/d", LockShared)
		waiting <- err
	}()
	time.Sleep(10 * time.Millisecond)
	after := m.Crash()
	if err := <-waiting; !errors.Is(err, ErrCrashed) {
		t.Fatalf("a Lock waiting when the file system crashed: %v", err)
	}
	if _, err := after.Lock("/d", LockExclusiveNow); err != nil {
		t.Fatalf("a lock outlived the crash: %v", err)
	}
}

// TestCrasherCrashesAfterTheNthChange counts a small workload's changes,
// then crashes after each: the k-th crash must keep the first k changes
// that were made durable, and nothing after them.
func TestCrasherCrashesAfterTheNthChange(t *testing.T) {
	work := func(fs FS) {
		MkdirAllSynced(fs, "/d", 0o700) // 2 changes: mkdir, syncdir /
		f, err := fs.OpenFile("/d/a", os.O_CREATE|os.O_WRONLY, 0o600)
		if err != nil {
			return // crashed
		}
		f.Write([]byte("x"))
		f.Sync()
		fs.SyncDir("/d")
		fs.Rename("/d/a", "/d/b")
		fs.SyncDir("/d")
	}
	c := NewCrasher(NewStrictMem(), 0, CrashOptions{})
	c.Record()
	work(c)
	if c.Changes() != 8 {
		t.Fatalf("%d changes, want 8", c.Changes())
	}
	site := " vfs.TestCrasherCrashesAfterTheNthChange.func1"
	if got, want := strings.Join(c.Trace(), ","), strings.Join([]string{
		"mkdir" + site, "syncdir" + site, "create" + site, "write" + site, "sync" + site, "syncdir" + site, "rename" + site, "syncdir" + site,
	}, ","); got != want {
		t.Fatalf("trace\n%s\nwant\n%s", got, want)
	}
	if after, _ := c.Crashed(); after != nil {
		t.Fatal("crashed with at 0")
	}
	want := []string{"", "", "", "", "", "", "a=x", "a=x", "b=x"}
	for k := 1; k <= 8; k++ {
		c := NewCrasher(NewStrictMem(), k, CrashOptions{})
		var watched string // what a reader saw at the last moment
		n := 0             // Watch runs with c locked: c.Changes would wait forever
		c.Watch(func() {
			if n++; n == 4 {
				b, _ := ReadFile(c, "/d/a")
				watched = string(b)
			}
		})
		work(c)
		after, what := c.Crashed()
		if after == nil {
			t.Fatalf("no crash after change %d", k)
		}
		if !strings.HasSuffix(what, " in vfs.TestCrasherCrashesAfterTheNthChange.func1") {
			t.Errorf("change %d: %q does not name the function that made it", k, what)
		}
		var got []string
		for _, n := range []string{"a", "b"} {
			if s, ok := readAll(t, after, "/d/"+n); ok {
				got = append(got, n+"="+s)
			}
		}
		if strings.Join(got, ",") != want[k] {
			t.Errorf("crash after change %d (%s) left %q, want %q", k, what, got, want[k])
		}
		// Watch runs after the change, before the crash: right after the
		// write (change 4) a reader sees the unsynced x, which the crash
		// then drops.
		if k == 4 && (watched != "x" || want[k] != "") {
			t.Errorf("the watcher saw %q right after the write, want x (unsynced)", watched)
		}
	}
}

// TestCrashKeepsSomeNameChanges checks CrashWith's Names: each change to
// a folder's names since its last sync is asked about once, a rename as
// one change, and only those kept survive.
func TestCrashKeepsSomeNameChanges(t *testing.T) {
	f := func(keep map[string]bool, want string) {
		t.Helper()
		m := NewStrictMem()
		MkdirAllSynced(m, "/d", 0o700)
		for _, n := range []string{"a", "old", "x"} {
			write(t, m, "/d/"+n, n, true).Close()
		}
		m.SyncDir("/d")
		m.Rename("/d/a", "/d/b")               // rename
		write(t, m, "/d/c", "c", true).Close() // create
		m.Remove("/d/x")                       // remove
		write(t, m, "/d/tmp", "new", true).Close()
		m.Rename("/d/tmp", "/d/old") // replace: tmp was never durable
		var asked []string
		after := m.CrashWith(CrashOptions{Names: func(dir, change string) bool {
			asked = append(asked, dir+": "+change)
			return keep[change]
		}})
		if got := strings.Join(asked, ","); got != "/d: rename a b,/d: create c,/d: replace old,/d: remove x" {
			t.Fatalf("asked %s", got)
		}
		var got []string
		ents, _ := after.ReadDir("/d")
		for _, e := range ents {
			s, _ := readAll(t, after, "/d/"+e.Name())
			got = append(got, e.Name()+"="+s)
		}
		if strings.Join(got, ",") != want {
			t.Errorf("keeping %v: %s, want %s", keep, strings.Join(got, ","), want)
		}
	}
	f(nil, "a=a,old=old,x=x")
	f(map[string]bool{"rename a b": true}, "b=a,old=old,x=x")
	f(map[string]bool{"create c": true, "remove x": true, "replace old": true}, "a=a,c=c,old=new")
}
