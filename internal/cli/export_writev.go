//go:build darwin || linux || openbsd

package cli

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// iovMax is how many buffers one writev is given: POSIX's IOV_MAX is at
// least 16, Linux's and the BSDs' 1024.
const iovMax = 1024

// writeLines writes each of raws and a newline after it to f with writev,
// from the raws' own memory: export's events are not copied into a
// buffer first. stop is asked before each writev (up to iovMax/2
// events): a signal stops an export held by a slow reader at the next
// one, as it stopped the buffered writer at the next event.
func writeLines(f *os.File, raws [][]byte, stop func() error) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	nl := []byte{'\n'}
	iovs := make([][]byte, 0, iovMax)
	for len(raws) > 0 {
		iovs = iovs[:0]
		for len(raws) > 0 && len(iovs)+2 <= iovMax {
			iovs = append(iovs, raws[0], nl)
			raws = raws[1:]
		}
		if err := stop(); err != nil {
			return err
		}
		if err := writevAll(rc, iovs); err != nil {
			return &os.PathError{Op: "write", Path: f.Name(), Err: err}
		}
	}
	return nil
}

// writevAll writes all of iovs, however many calls it takes.
func writevAll(rc interface {
	Write(func(fd uintptr) bool) error
}, iovs [][]byte) error {
	for len(iovs) > 0 {
		var n int
		var err error
		if werr := rc.Write(func(fd uintptr) bool {
			for {
				n, err = unix.Writev(int(fd), iovs)
				if !errors.Is(err, unix.EINTR) {
					// EAGAIN (a non-blocking stdout): wait until it
					// can be written, then call again.
					return !errors.Is(err, unix.EAGAIN)
				}
			}
		}); werr != nil {
			return werr
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return errors.New("writev wrote nothing")
		}
		// Drop what was written: whole buffers, then part of one.
		for len(iovs) > 0 && n >= len(iovs[0]) {
			n -= len(iovs[0])
			iovs = iovs[1:]
		}
		if n > 0 {
			iovs[0] = iovs[0][n:]
		}
	}
	return nil
}
