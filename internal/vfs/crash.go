package vfs

import (
	"fmt"
	"os"
	"sync"
)

// Crasher wraps a MemFS and crashes it right after the at-th change made
// through it: a file created, truncated, written or synced, a folder made
// or synced, a rename, a removal. A test that first counts a workload's
// changes (at 0 never crashes) and then runs it again crashing after each
// one stops the program at every step of its work, wherever the step is
// in the code, as a power loss can.
type Crasher struct {
	mu   sync.Mutex
	mem  *MemFS
	at   int
	keep CrashOptions
	n    int
	// after is what the crash left, and what the change it came after.
	after *MemFS
	what  string
	// trace, when not nil, gets each change's site (see Trace).
	trace *[]string
	// watch, when not nil, is called after each change (see Watch).
	watch func()
}

// NewCrasher wraps mem so that it crashes after the at-th change, keeping
// what keep says beyond what was synced (see MemFS.CrashWith).
func NewCrasher(mem *MemFS, at int, keep CrashOptions) *Crasher {
	return &Crasher{mem: mem, at: at, keep: keep}
}

// Changes returns how many changes were made through c.
func (c *Crasher) Changes() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// Record makes c keep the site of each change from now on (see Trace).
func (c *Crasher) Record() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.trace = new([]string)
}

// Watch makes c call fn after each change, before the crash that may
// come right after it: fn is a reader in another process, looking at
// the file system at that moment (what it sees includes unsynced data,
// as the page cache serves it). fn must only read, and must not call c's
// other methods (c is locked while it runs).
func (c *Crasher) Watch(fn func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.watch = fn
}

// Trace returns the site of each change made since Record, in order,
// named as Faults names sites ("sync FUNCTION"), so that a test can find
// the changes around the calls of one site.
func (c *Crasher) Trace() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.trace == nil {
		return nil
	}
	return append([]string(nil), (*c.trace)...)
}

// Crashed returns the file system the crash left and the change it came
// right after ("rename A B in FUNCTION"), or nil when it has not crashed.
func (c *Crasher) Crashed() (*MemFS, string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.after, c.what
}

// change makes one change, and crashes the file system right after it
// when it is the at-th. Changes are made one at a time, so that the crash
// comes after exactly at of them.
func (c *Crasher) change(kind, what string, do func() error) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	err := do()
	c.n++
	if c.trace != nil {
		*c.trace = append(*c.trace, kind+" "+callSite())
	}
	if c.watch != nil {
		c.watch()
	}
	if c.n == c.at {
		c.after = c.mem.CrashWith(c.keep)
		c.what = fmt.Sprintf("%s %s in %s", kind, what, callSite())
	}
	return err
}

// OpenFile implements FS.
func (c *Crasher) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	var f File
	open := func() (err error) {
		f, err = c.mem.OpenFile(name, flag, perm)
		return err
	}
	var err error
	if flag&(os.O_CREATE|os.O_TRUNC) != 0 {
		err = c.change("create", name, open)
	} else {
		err = open()
	}
	if err != nil {
		return nil, err
	}
	return &crashFile{File: f, c: c}, nil
}

// Open implements FS.
func (c *Crasher) Open(name string) (File, error) { return c.OpenFile(name, os.O_RDONLY, 0) }

// Remove implements FS.
func (c *Crasher) Remove(name string) error {
	return c.change("remove", name, func() error { return c.mem.Remove(name) })
}

// Rename implements FS.
func (c *Crasher) Rename(oldname, newname string) error {
	return c.change(SiteRename, oldname+" "+newname, func() error { return c.mem.Rename(oldname, newname) })
}

// MkdirAll implements FS.
func (c *Crasher) MkdirAll(dir string, perm os.FileMode) error {
	return c.change("mkdir", dir, func() error { return c.mem.MkdirAll(dir, perm) })
}

// ReadDir implements FS.
func (c *Crasher) ReadDir(dir string) ([]os.DirEntry, error) { return c.mem.ReadDir(dir) }

// Stat implements FS.
func (c *Crasher) Stat(name string) (os.FileInfo, error) { return c.mem.Stat(name) }

// SyncDir implements FS.
func (c *Crasher) SyncDir(dir string) error {
	return c.change(SiteSyncDir, dir, func() error { return c.mem.SyncDir(dir) })
}

// Chmod implements FS. A mode is not data: it is not counted as a change.
func (c *Crasher) Chmod(name string, mode os.FileMode) error { return c.mem.Chmod(name, mode) }

// Lock implements FS.
func (c *Crasher) Lock(name string, mode LockMode) (func() error, error) {
	return c.mem.Lock(name, mode)
}

type crashFile struct {
	File
	c *Crasher
}

func (f *crashFile) Write(p []byte) (n int, err error) {
	err = f.c.change("write", fmt.Sprintf("%s (%d bytes)", f.Name(), len(p)), func() (err error) {
		n, err = f.File.Write(p)
		return err
	})
	return n, err
}

func (f *crashFile) WriteAt(p []byte, off int64) (n int, err error) {
	err = f.c.change("write", fmt.Sprintf("%s (%d bytes at %d)", f.Name(), len(p), off), func() (err error) {
		n, err = f.File.WriteAt(p, off)
		return err
	})
	return n, err
}

func (f *crashFile) Truncate(size int64) error {
	return f.c.change("truncate", fmt.Sprintf("%s to %d", f.Name(), size), func() error { return f.File.Truncate(size) })
}

func (f *crashFile) Sync() error {
	return f.c.change(SiteSync, f.Name(), f.File.Sync)
}

var _ FS = (*Crasher)(nil)
