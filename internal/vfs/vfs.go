// Package vfs is the file-system seam that the WAL and the store write
// through, so that tests can crash them the way a power loss would: a
// strict in-memory file system (NewStrictMem) keeps only what was synced
// when it is told to crash, and a fault injector (Faults) turns chosen
// syncs and renames into no-ops to prove that a test notices each one
// missing. The design follows Pebble's vfs package; the code is our own.
package vfs

import (
	"io"
	"os"
	"path/filepath"
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
}

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

func (osFS) SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
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
