package vfs

import (
	"errors"
	"io"
	"os"
	"testing"
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
