// Package vfs is the file-system seam that the WAL and the store write
// through, so that tests can crash them the way a power loss would: a
// strict in-memory file system (NewStrictMem) keeps only what was synced
// when it is told to crash, and a fault injector (Faults) turns chosen
// syncs and renames into no-ops to prove that a test notices each one
// missing. The design follows Pebble's vfs package; the code is our own.
package vfs

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"syscall"
)

// File is an open file. Sync makes the file's data durable (its size
// included), not its name: a new or renamed file's name is durable only
// once its folder is synced (FS.SyncDir).
type File interface {
	io.Reader
	io.ReaderAt
	io.Writer
	io.WriterAt
	io.Seeker
	io.Closer
	Name() string
	Stat() (os.FileInfo, error)
	Sync() error
	Truncate(size int64) error
}

// FS is the part of a file system kubetrail's storage uses. Every method
// must be safe for concurrent use.
type FS interface {
	// OpenFile opens a file as os.OpenFile does (O_RDONLY, O_WRONLY,
	// O_RDWR, O_CREATE, O_EXCL, O_TRUNC, O_APPEND).
	OpenFile(name string, flag int, perm os.FileMode) (File, error)
	// Open opens a file for reading.
	Open(name string) (File, error)
	// Remove deletes a file or an empty folder.
	Remove(name string) error
	// Rename renames a file, replacing newname if it exists.
	Rename(oldname, newname string) error
	// MkdirAll creates a folder and its parents.
	MkdirAll(dir string, perm os.FileMode) error
	// ReadDir lists a folder, sorted by name.
	ReadDir(dir string) ([]os.DirEntry, error)
	// Stat describes a file or folder.
	Stat(name string) (os.FileInfo, error)
	// SyncDir makes the names in a folder durable: files created,
	// renamed into or removed from it.
	SyncDir(dir string) error
	// Chmod changes a file's or folder's permission bits.
	Chmod(name string, mode os.FileMode) error
	// Lock locks the file or folder name, which must exist, until unlock
	// is called, as flock(2) does: each call is a holder of its own, even
	// within one process, and a lock is gone when its process dies. A
	// LockExclusiveNow that finds the lock held fails at once with an
	// error that is not an *os.PathError (EWOULDBLOCK); an error opening
	// name is one.
	Lock(name string, mode LockMode) (unlock func() error, err error)
}

// LockMode says which lock FS.Lock takes, and whether it waits.
type LockMode int

// Lock modes.
const (
	// LockShared waits for a lock that other shared holders may hold too,
	// but no exclusive one.
	LockShared LockMode = iota
	// LockExclusive waits for a lock no one else holds.
	LockExclusive
	// LockExclusiveNow takes a lock no one else holds, or fails at once.
	LockExclusiveNow
)

// OS is the real file system.
var OS FS = osFS{}

type osFS struct{}

type osFile struct{ *os.File }

func (f osFile) Sync() error { return fdatasync(f.File) }

func (osFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	f, err := os.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return osFile{f}, nil
}

func (osFS) Open(name string) (File, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	return osFile{f}, nil
}

func (osFS) Remove(name string) error                    { return os.Remove(name) }
func (osFS) Rename(oldname, newname string) error        { return os.Rename(oldname, newname) }
func (osFS) MkdirAll(dir string, perm os.FileMode) error { return os.MkdirAll(dir, perm) }
func (osFS) ReadDir(dir string) ([]os.DirEntry, error)   { return os.ReadDir(dir) }
func (osFS) Stat(name string) (os.FileInfo, error)       { return os.Stat(name) }
func (osFS) Chmod(name string, mode os.FileMode) error   { return os.Chmod(name, mode) }

func (osFS) SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func (osFS) Lock(name string, mode LockMode) (func() error, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	how := syscall.LOCK_SH
	switch mode {
	case LockExclusive:
		how = syscall.LOCK_EX
	case LockExclusiveNow:
		how = syscall.LOCK_EX | syscall.LOCK_NB
	}
	for {
		err = syscall.Flock(int(f.Fd()), how)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	// Closing the file releases the lock: the kernel ties it to the open
	// file, which is also why a dead process holds none.
	return f.Close, nil
}

// ReadFile reads a whole file from fs.
func ReadFile(fs FS, name string) ([]byte, error) {
	f, err := fs.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

// MkdirAllSynced creates dir and the parents it lacks, and syncs each new
// folder's parent, so that the new folders survive a power loss.
func MkdirAllSynced(fs FS, dir string, perm os.FileMode) error {
	var missing []string
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		if _, err := fs.Stat(d); err == nil {
			break
		}
		missing = append(missing, d)
		if filepath.Dir(d) == d {
			break
		}
	}
	if len(missing) == 0 {
		return nil
	}
	if err := fs.MkdirAll(dir, perm); err != nil {
		return err
	}
	for i := len(missing) - 1; i >= 0; i-- {
		if err := fs.SyncDir(filepath.Dir(missing[i])); err != nil {
			return err
		}
	}
	return nil
}
