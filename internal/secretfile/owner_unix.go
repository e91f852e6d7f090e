//go:build unix

package secretfile

import (
	"io/fs"
	"syscall"
)

// fileOwner returns the uid owning the file fi describes, or -1 when the
// system does not say.
func fileOwner(fi fs.FileInfo) int {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int(st.Uid)
	}
	return -1
}
