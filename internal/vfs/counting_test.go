package vfs

import (
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
)

// TestCountChangesCountsEveryChangeOfAName checks what a DB's shared
// folder view relies on: every change to the names in a folder (create,
// rename, remove, mkdir) is counted once it is made, and reading or
// writing into a file is not. (Mutation tried: Remove not counted fails
// "remove".)
func TestCountChangesCountsEveryChangeOfAName(t *testing.T) {
	dir := t.TempDir()
	var n atomic.Uint64
	fs := CountChanges(OS, &n)
	step := func(what string, want uint64, do func() error) {
		t.Helper()
		before := n.Load()
		if err := do(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if got := n.Load() - before; got != want {
			t.Errorf("%s: counted %d changes, want %d", what, got, want)
		}
	}
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	step("mkdir", 1, func() error { return fs.MkdirAll(filepath.Join(dir, "sub"), 0o700) })
	step("create", 1, func() error {
		f, err := fs.OpenFile(a, os.O_CREATE|os.O_WRONLY, 0o600)
		if err == nil {
			err = f.Close()
		}
		return err
	})
	step("write into a file", 0, func() error {
		f, err := fs.OpenFile(a, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			return err
		}
		if _, err := f.Write([]byte("x")); err != nil {
			return err
		}
		return f.Close()
	})
	step("read", 0, func() error {
		f, err := fs.Open(a)
		if err == nil {
			err = f.Close()
		}
		if err == nil {
			_, err = fs.ReadDir(dir)
		}
		return err
	})
	step("rename", 1, func() error { return fs.Rename(a, b) })
	step("remove", 1, func() error { return fs.Remove(b) })
}
