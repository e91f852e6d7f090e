//go:build linux

package vfs

import (
	"os"

	"golang.org/x/sys/unix"
)

// fdatasync makes written data durable without forcing a metadata update
// that only the file's times need.
func fdatasync(f *os.File) error { return unix.Fdatasync(int(f.Fd())) }
