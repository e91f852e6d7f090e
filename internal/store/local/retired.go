package local

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/kubetrail/kubetrail/internal/vfs"
)

// The segments folder's RETIRED file records every segment that retention
// deleted, so that verify tells a segment deleted by policy from one
// deleted by an attacker, and follows the hash chain across the gap
// (docs/adr/0016-merkle-roots-and-hash-chain.md). Text, a header line,
// then one line per segment:
//
//	kubetrail retired segments 1
//	NAME EVENTS PREV HEAD [SIG]
//
// PREV and HEAD are the chain heads before and after the segment, in hex,
// or "-" for a segment that was not linked. SIG is the checkpoint key's
// Ed25519 signature of the rest of the line (trust.SignRetired), which
// verify --pubkey checks: without it, whoever deletes a segment could
// write its record (docs/adr/0018). Lines are only added, before the
// segment leaves the manifest; the file is replaced atomically.
const (
	retiredName   = "RETIRED"
	retiredHeader = "kubetrail retired segments 1"
	retiredTemp   = ".tmp-retired"
)

// retiredSeg is one line of RETIRED.
type retiredSeg struct {
	name        string
	first, last uint64
	count       int
	linked      bool
	prev, head  hash
	sig         string // hex; "" when retention had no key
}

// record is what the signature covers: the line without it.
func (r retiredSeg) record() string {
	p, h := "-", "-"
	if r.linked {
		p, h = hex.EncodeToString(r.prev[:]), hex.EncodeToString(r.head[:])
	}
	return fmt.Sprintf("%s %d %s %s", r.name, r.count, p, h)
}

func (r retiredSeg) line() string {
	if r.sig == "" {
		return r.record()
	}
	return r.record() + " " + r.sig
}

func parseRetired(line string) (retiredSeg, bool) {
	f := strings.Fields(line)
	if len(f) != 4 && len(f) != 5 {
		return retiredSeg{}, false
	}
	r := retiredSeg{name: f[0]}
	if len(f) == 5 {
		r.sig = f[4]
	}
	var ok bool
	if r.first, r.last, ok = segmentRange(f[0]); !ok {
		return r, false
	}
	n, err := strconv.Atoi(f[1])
	if err != nil || n < 0 {
		return r, false
	}
	r.count = n
	if f[2] == "-" && f[3] == "-" {
		return r, true
	}
	p, err1 := hex.DecodeString(f[2])
	h, err2 := hex.DecodeString(f[3])
	if err1 != nil || err2 != nil || len(p) != len(hash{}) || len(h) != len(hash{}) {
		return r, false
	}
	r.linked = true
	copy(r.prev[:], p)
	copy(r.head[:], h)
	return r, true
}

// readRetired returns the segments dir's RETIRED lists, in file order;
// lines that are not such records are Damage.
func readRetired(fs vfs.FS, dir string) ([]retiredSeg, []Damage, error) {
	path := filepath.Join(dir, retiredName)
	b, ok, err := readListFile(fs, path)
	if !ok || err != nil {
		return nil, nil, err
	}
	var out []retiredSeg
	damage := parseListFile(path, b, retiredHeader, "a retired segment record", func(line string) bool {
		r, ok := parseRetired(line)
		if ok {
			out = append(out, r)
		}
		return ok
	})
	return out, damage, nil
}

// retire appends the records of segments about to be deleted by
// retention, each signed by sign when not nil. The caller must hold the
// exclusive segments lock.
func retire(fs vfs.FS, dir string, segs []retiredSeg, sign func(record string) string, noSync bool) error {
	path := filepath.Join(dir, retiredName)
	b, ok, err := readListFile(fs, path)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	if !ok {
		buf.WriteString(retiredHeader + "\n")
	}
	buf.Write(b)
	for _, s := range segs {
		// Recorded already when a crash stopped the deletion that
		// followed: one record a segment.
		if !bytes.Contains(b, []byte("\n"+s.name+" ")) {
			if sign != nil {
				s.sig = sign(s.record())
			}
			buf.WriteString(s.line() + "\n")
		}
	}
	tmp := filepath.Join(dir, retiredTemp)
	f, err := fs.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.Write(buf.Bytes()); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if !noSync {
		if err := f.Sync(); err != nil {
			f.Close()
			return fmt.Errorf("sync %s: %w", path, err)
		}
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	// No folder sync: the caller's manifest update, which must follow,
	// syncs the same folder before any segment is deleted.
	if err := fs.Rename(tmp, path); err != nil {
		return fmt.Errorf("rename %s: %w", path, err)
	}
	return nil
}

// retiredOf reads what RETIRED must say of the segment at path.
func retiredOf(fs vfs.FS, path string) (retiredSeg, error) {
	first, last, _ := segmentRange(filepath.Base(path))
	r, err := openSegment(fs, path)
	if err != nil {
		// A damaged segment may still be retired: recorded unlinked.
		return retiredSeg{name: filepath.Base(path), first: first, last: last}, nil
	}
	defer r.close()
	s := retiredSeg{name: filepath.Base(path), first: r.meta.WALFirst, last: r.meta.WALLast, count: r.meta.Count}
	if t := r.meta.Trust; t != nil && t.Linked {
		s.linked, s.prev, s.head = true, t.Prev, t.head(r.meta.parts())
	}
	return s, nil
}

// RetiredRecord is one line of segments/RETIRED, for verify to check its
// signature (trust.RetiredValid) against the checkpoint key.
type RetiredRecord struct {
	// Name is the segment retired; Record the signed text; Sig the
	// signature in hex, "" when the line has none.
	Name, Record, Sig string
}
