package vfs

import (
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
)

// Faults wraps an FS and records each place in the code (a call site) that
// syncs a file, syncs a folder or renames, so that a crash test can plant
// one bug at a time: Drop turns every call from one site into a no-op that
// reports success, as if that line had been deleted. A crash test that
// still passes with a site dropped does not test that site.
type Faults struct {
	FS FS

	mu    sync.Mutex
	sites map[string]int
	drop  string
}

// Site kinds, the prefix of every site's name.
const (
	SiteSync    = "sync"
	SiteSyncDir = "syncdir"
	SiteRename  = "rename"
)

// NewFaults wraps fs.
func NewFaults(fs FS) *Faults { return &Faults{FS: fs, sites: map[string]int{}} }

// Sites returns the call sites seen so far, sorted: "KIND FUNCTION".
func (f *Faults) Sites() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]string, 0, len(f.sites))
	for s := range f.sites {
		out = append(out, s)
	}
	slices.Sort(out)
	return out
}

// Drop makes every call from site a no-op; "" drops nothing.
func (f *Faults) Drop(site string) {
	f.mu.Lock()
	f.drop = site
	f.mu.Unlock()
}

// SetFS points the wrapper at another file system (the one a crash left),
// keeping the sites seen and the site dropped.
func (f *Faults) SetFS(fs FS) {
	f.mu.Lock()
	f.FS = fs
	f.mu.Unlock()
}

func (f *Faults) inner() FS {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.FS
}

// hit records a call of kind and reports whether it must be dropped.
func (f *Faults) hit(kind string) bool {
	site := kind + " " + callSite()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sites[site]++
	return site == f.drop
}

// callSite names the function that made the call being handled: the first
// caller outside this package's wrappers (CountChanges' too), so that a site stays the same
// when lines move; calls made inside this package's helpers
// (MkdirAllSynced, WriteFileAtomic) and in package cursorfile count for
// their caller.
func callSite() string {
	pcs := make([]uintptr, 12)
	n := runtime.Callers(3, pcs)
	frames := runtime.CallersFrames(pcs[:n])
	for {
		fr, more := frames.Next()
		if !strings.Contains(fr.Function, "/internal/vfs.(*Faults)") &&
			!strings.Contains(fr.Function, "/internal/vfs.(*faultFile)") &&
			!strings.Contains(fr.Function, "/internal/vfs.(*Crasher)") &&
			!strings.Contains(fr.Function, "/internal/vfs.(*crashFile)") &&
			!strings.Contains(fr.Function, "/internal/vfs.changeCounter.") &&
			!strings.Contains(fr.Function, "/internal/vfs.MkdirAllSynced") &&
			!strings.Contains(fr.Function, "/internal/vfs.WriteFileAtomic") &&
			!strings.Contains(fr.Function, "/internal/cursorfile.") {
			fn := fr.Function
			if i := strings.LastIndex(fn, "/"); i >= 0 {
				fn = fn[i+1:]
			}
			return fn
		}
		if !more {
			return "?"
		}
	}
}

// OpenFile implements FS.
func (f *Faults) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	file, err := f.inner().OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &faultFile{File: file, f: f}, nil
}

// Open implements FS.
func (f *Faults) Open(name string) (File, error) { return f.OpenFile(name, os.O_RDONLY, 0) }

// Remove implements FS.
func (f *Faults) Remove(name string) error { return f.inner().Remove(name) }

// Rename implements FS.
func (f *Faults) Rename(oldname, newname string) error {
	if f.hit(SiteRename) {
		return nil
	}
	return f.inner().Rename(oldname, newname)
}

// MkdirAll implements FS.
func (f *Faults) MkdirAll(dir string, perm os.FileMode) error { return f.inner().MkdirAll(dir, perm) }

// ReadDir implements FS.
func (f *Faults) ReadDir(dir string) ([]os.DirEntry, error) { return f.inner().ReadDir(dir) }

// Stat implements FS.
func (f *Faults) Stat(name string) (os.FileInfo, error) { return f.inner().Stat(name) }

// SyncDir implements FS.
func (f *Faults) SyncDir(dir string) error {
	if f.hit(SiteSyncDir) {
		return nil
	}
	return f.inner().SyncDir(filepath.Clean(dir))
}

// Chmod implements FS.
func (f *Faults) Chmod(name string, mode os.FileMode) error { return f.inner().Chmod(name, mode) }

// Lock implements FS.
func (f *Faults) Lock(name string, mode LockMode) (func() error, error) {
	return f.inner().Lock(name, mode)
}

type faultFile struct {
	File
	f *Faults
}

func (ff *faultFile) Sync() error {
	if ff.f.hit(SiteSync) {
		return nil
	}
	return ff.File.Sync()
}

var _ FS = (*Faults)(nil)
