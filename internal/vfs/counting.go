package vfs

import (
	"os"
	"sync/atomic"
)

// CountChanges returns fs counting in n the changes made through it to
// the names in a folder: files created, renamed and removed, folders made.
// Each is counted after it is made (failed ones too), so a listing that
// began after n was read sees every change counted before: an unchanged
// n means a folder written only through the returned FS lists what it
// listed before. Writes into files are not counted.
func CountChanges(fs FS, n *atomic.Uint64) FS { return changeCounter{FS: fs, n: n} }

type changeCounter struct {
	FS
	n *atomic.Uint64
}

func (c changeCounter) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	if flag&os.O_CREATE != 0 {
		defer c.n.Add(1)
	}
	return c.FS.OpenFile(name, flag, perm)
}

func (c changeCounter) Remove(name string) error {
	defer c.n.Add(1)
	return c.FS.Remove(name)
}

func (c changeCounter) Rename(oldname, newname string) error {
	defer c.n.Add(1)
	return c.FS.Rename(oldname, newname)
}

func (c changeCounter) MkdirAll(dir string, perm os.FileMode) error {
	defer c.n.Add(1)
	return c.FS.MkdirAll(dir, perm)
}
