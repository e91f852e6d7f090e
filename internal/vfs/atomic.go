package vfs

import (
	"fmt"
	"os"
	"path/filepath"
)

// WriteFileAtomic replaces path with data durably: it writes a temporary
// file beside it, syncs it, renames it over path and syncs the folder. A
// crash at any point leaves the old contents or the new ones, never a mix;
// once it returns, the new contents survive a power loss.
func WriteFileAtomic(fs FS, path string, data []byte, perm os.FileMode) error {
	tmp := path + ".tmp"
	f, err := fs.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, perm)
	if err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", tmp, err)
	}
	if err := fs.Rename(tmp, path); err != nil {
		return fmt.Errorf("rename %s: %w", tmp, err)
	}
	if err := fs.SyncDir(filepath.Dir(path)); err != nil {
		return fmt.Errorf("sync folder %s: %w", filepath.Dir(path), err)
	}
	return nil
}
