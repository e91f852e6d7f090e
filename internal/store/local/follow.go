package local

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/kubetrail/kubetrail/internal/vfs"
)

// End returns the position right after the newest event the reader holds
// (the zero Pos when it holds none). A Reader sees the events stored
// before it was opened and none after, and positions increase in the order
// events were stored, so every event stored after the reader's are at End
// or later: Scan with From: End reads exactly them. query --follow prints
// a reader's answer, then follows from its End.
func (r *Reader) End() Pos {
	var end Pos
	after := func(p Pos) {
		if end.Less(p) {
			end = p
		}
	}
	for _, s := range r.segs {
		for _, part := range s.r.meta.parts() {
			after(Pos{WAL: part.WAL, Ord: part.Count})
		}
	}
	for _, c := range r.head {
		if n := len(c.events); n > 0 {
			after(Pos{WAL: c.wal, Ord: c.events[n-1].ord + 1})
		}
	}
	return end
}

// Stamp returns a summary of the data folder's files (the names, sizes and
// modification times of the WAL segments and the names of the segments)
// that changes whenever an event is stored: every event is appended to a
// WAL segment or, bulk loaded, written as a new segment. A follower takes
// a stamp before it reads with Scan and reads again only once the stamp
// differs, so a look at an idle store reads no file's contents. A stamp
// may change with nothing new (a sealing, a compaction); it never stays
// the same when something is new.
func Stamp(fs vfs.FS, dir string) (string, error) {
	if fs == nil {
		fs = vfs.OS
	}
	var b strings.Builder
	for _, sub := range []string{walDir, segmentDir} {
		path := filepath.Join(dir, sub)
		ents, err := fs.ReadDir(path)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return "", fmt.Errorf("stamp %s: %w", path, err)
		}
		b.WriteString(sub)
		for _, e := range ents {
			fmt.Fprintf(&b, "\x00%s", e.Name())
			if sub != walDir {
				continue
			}
			st, err := fs.Stat(filepath.Join(path, e.Name()))
			if err != nil {
				// Sealed and removed since the listing: the
				// listing changes next time.
				continue
			}
			fmt.Fprintf(&b, " %d %d", st.Size(), st.ModTime().UnixNano())
		}
		b.WriteByte('\n')
	}
	return b.String(), nil
}
