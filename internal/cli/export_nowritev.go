//go:build !(darwin || linux || openbsd)

package cli

import (
	"bufio"
	"os"
)

// writeLines writes each of raws and a newline after it to f; stop is
// asked before each event.
func writeLines(f *os.File, raws [][]byte, stop func() error) error {
	w := bufio.NewWriterSize(f, 1<<20)
	for _, raw := range raws {
		if err := stop(); err != nil {
			return err
		}
		w.Write(raw)
		w.WriteByte('\n')
	}
	return w.Flush()
}
