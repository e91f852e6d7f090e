//go:build !(darwin || linux || openbsd)

package cli

import (
	"bufio"
	"os"
)

// writeLines writes each of raws and a newline after it to f.
func writeLines(f *os.File, raws [][]byte) error {
	w := bufio.NewWriterSize(f, 1<<20)
	for _, raw := range raws {
		w.Write(raw)
		w.WriteByte('\n')
	}
	return w.Flush()
}
