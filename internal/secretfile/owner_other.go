//go:build !unix

package secretfile

import "io/fs"

// fileOwner returns -1: this system has no uid owning a file.
func fileOwner(fs.FileInfo) int { return -1 }
