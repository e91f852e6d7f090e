package wal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/kubetrail/kubetrail/internal/vfs"
)

// Damage is a stretch of a segment file that holds no valid record.
type Damage struct {
	// Offset and Length locate the bytes in the file.
	Offset, Length int64
	// Reason says what is wrong with them.
	Reason string
	// Torn marks what a crash leaves at the end of the segment being
	// written (a record or header cut short by the end of the file, or
	// zeros): no acknowledged record was in it, and Open cuts it from the
	// newest segment. It is only ever the last Damage of a scan. In a
	// segment that was complete (closed before the crash) a torn tail is
	// a file cut short: damage like any other.
	Torn bool
}

// ScanResult is what Scan found in a segment file.
type ScanResult struct {
	// Version is the segment format (1 or 2), guessed from its records
	// when the file header is damaged.
	Version int
	// Records is the number of valid records.
	Records int
	// End is the offset just past the last valid record.
	End int64
	// Size is the file's size when it was read.
	Size int64
	// Damage lists, in file order, every stretch that is no record.
	Damage []Damage
}

// Torn returns the torn tail, or nil when the file has none.
func (r *ScanResult) Torn() *Damage {
	if n := len(r.Damage); n > 0 && r.Damage[n-1].Torn {
		return &r.Damage[n-1]
	}
	return nil
}

// Damaged returns the damage that is not a torn tail.
func (r *ScanResult) Damaged() []Damage {
	if r.Torn() != nil {
		return r.Damage[:len(r.Damage)-1]
	}
	return r.Damage
}

// v1SearchBudget bounds the bytes a format-1 scan checksums while it looks
// for the next record after damage (format 1 has no header checksum, so
// each candidate offset costs a payload checksum). Past it the rest of the
// file is reported as damage: kept, never cut.
const v1SearchBudget = 1 << 30

// Scan reads every valid record of a segment file in order, calling fn
// (when not nil) with each record's offset and payload; the payload is
// only valid during the call, and an error from fn ends the scan. Bad
// bytes are not an error: they are reported in the result, and the scan
// goes on from the next valid record, so one damaged record costs only
// itself. Errors are I/O errors and fn's. A file that is being appended
// to can be scanned; the scan sees some prefix of it, perhaps ending in a
// torn tail.
func Scan(path string, fn func(off int64, payload []byte) error) (ScanResult, error) {
	return ScanFS(vfs.OS, path, fn)
}

// ScanFS is Scan in fs.
func ScanFS(fs vfs.FS, path string, fn func(off int64, payload []byte) error) (ScanResult, error) {
	var res ScanResult
	f, err := fs.Open(path)
	if err != nil {
		return res, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return res, err
	}
	s := &scanner{r: f, size: st.Size(), fn: fn, res: &res}
	res.Size = s.size
	return res, s.run()
}

// ScanFromFS is ScanFS from offset start of a segment of format version,
// where an earlier scan of the same file ended (its End): the bytes
// before start are not read again. A reader that keeps what it decoded of
// a segment being appended to reads only what was appended since.
func ScanFromFS(fs vfs.FS, path string, start int64, version int, fn func(off int64, payload []byte) error) (ScanResult, error) {
	var res ScanResult
	f, err := fs.Open(path)
	if err != nil {
		return res, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return res, err
	}
	if st.Size() < start {
		return res, fmt.Errorf("scan %s from byte %d: %w", path, start, io.ErrUnexpectedEOF)
	}
	s := &scanner{r: f, size: st.Size(), fn: fn, res: &res}
	res.Size, res.Version, res.End = s.size, version, start
	s.budget = v1SearchBudget
	return res, s.records(start)
}

// scanner reads a segment through a window of the file, so that records are
// read in order with few system calls and the search after damage can look
// at any offset.
type scanner struct {
	r    io.ReaderAt
	size int64
	fn   func(int64, []byte) error
	res  *ScanResult

	win    []byte // file bytes [winOff, winOff+len(win))
	winOff int64
	// searching is set while resync looks for the next record; budget is
	// the payload bytes a format-1 search may still checksum.
	searching bool
	budget    int64
}

// bytes returns the file's bytes [off, off+n); n must fit in the file.
func (s *scanner) bytes(off int64, n int) ([]byte, error) {
	if off >= s.winOff && off+int64(n) <= s.winOff+int64(len(s.win)) {
		return s.win[off-s.winOff : off-s.winOff+int64(n)], nil
	}
	want := int(min(int64(max(n, 1<<20)), s.size-off))
	if cap(s.win) < want {
		s.win = make([]byte, want)
	}
	s.win = s.win[:want]
	m, err := s.r.ReadAt(s.win, off)
	s.win, s.winOff = s.win[:m], off
	if m < n {
		if err == nil || errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF // the file shrank while it was read
		}
		return nil, fmt.Errorf("read at %d: %w", off, err)
	}
	return s.win[:n], nil
}

func (s *scanner) damage(off, end int64, reason string, torn bool) {
	s.res.Damage = append(s.res.Damage, Damage{Offset: off, Length: end - off, Reason: reason, Torn: torn})
}

func (s *scanner) run() error {
	res := s.res
	if s.size == 0 {
		// Created, then a crash before its header was written.
		res.Version = 2
		return nil
	}
	if s.size < headerLen {
		res.Version = 2
		s.damage(0, s.size, "segment header is short", true)
		return nil
	}
	hdr, err := s.bytes(0, headerLen)
	if err != nil {
		return err
	}
	res.End = headerLen
	switch string(hdr) {
	case Magic:
		res.Version = 2
	case MagicV1:
		res.Version = 1
	default:
		// Damage to the header alone must not cost the records after it:
		// the format is the one whose record checksums hold.
		s.damage(0, headerLen, fmt.Sprintf("segment header is %q, not %q", hdr, Magic), false)
		res.Version = 2
		if _, ok, err := s.validAt(headerLen, 1); err != nil {
			return err
		} else if ok {
			res.Version = 1
		}
	}
	s.budget = v1SearchBudget
	return s.records(headerLen)
}

// records reads the records from off, where one starts, to the end.
func (s *scanner) records(off int64) error {
	res := s.res
	hl := int64(recHdrV2)
	if res.Version == 1 {
		hl = recHdrV1
	}
	for off < s.size {
		n, ok, err := s.validAt(off, res.Version)
		if err != nil {
			return err
		}
		if ok {
			if err := s.emit(off, hl, n); err != nil {
				return err
			}
			off += hl + n
			res.End = off
			continue
		}
		next, err := s.resync(off)
		if err != nil {
			return err
		}
		if next < 0 {
			reason, torn, err := s.tail(off)
			if err != nil {
				return err
			}
			s.damage(off, s.size, reason, torn)
			return nil
		}
		reason, err := s.why(off)
		if err != nil {
			return err
		}
		s.damage(off, next, reason, false)
		off = next
	}
	return nil
}

func (s *scanner) emit(off, hl, n int64) error {
	s.res.Records++
	if s.fn == nil {
		return nil
	}
	p, err := s.bytes(off+hl, int(n))
	if err != nil {
		return err
	}
	return s.fn(off, p)
}

// validAt reports whether a whole, valid record of format v starts at off,
// and its payload length.
func (s *scanner) validAt(off int64, v int) (int64, bool, error) {
	hl := int64(recHdrV2)
	if v == 1 {
		hl = recHdrV1
	}
	if off+hl > s.size {
		return 0, false, nil
	}
	h, err := s.bytes(off, int(hl))
	if err != nil {
		return 0, false, err
	}
	n := int64(binary.LittleEndian.Uint32(h[0:4]))
	sum := binary.LittleEndian.Uint32(h[4:8])
	if v == 2 && !headerOK(h) {
		return 0, false, nil
	}
	if n == 0 || n > MaxRecord || off+hl+n > s.size {
		return 0, false, nil
	}
	if v == 1 && s.searching {
		if s.budget < n {
			return 0, false, nil
		}
		s.budget -= n
	}
	p, err := s.bytes(off+hl, int(n))
	if err != nil {
		return 0, false, err
	}
	return n, crc32.Checksum(p, castagnoli) == sum, nil
}

// resync returns the offset of the first valid record after off, or -1
// when there is none.
func (s *scanner) resync(off int64) (int64, error) {
	s.searching = true
	defer func() { s.searching = false }()
	v := s.res.Version
	if v == 2 {
		// A header whose own checksum holds has a length to trust: the
		// damage is in its payload, and the next record follows it.
		if off+recHdrV2 <= s.size {
			h, err := s.bytes(off, recHdrV2)
			if err != nil {
				return 0, err
			}
			if headerOK(h) {
				next := off + recHdrV2 + int64(binary.LittleEndian.Uint32(h[0:4]))
				if next == s.size {
					return -1, nil
				}
				if next < s.size {
					if _, ok, err := s.validAt(next, 2); err != nil || ok {
						return next, err
					}
				}
			}
		}
	}
	for c := off + 1; c < s.size; c++ {
		if v == 1 && s.budget <= 0 {
			return -1, nil
		}
		_, ok, err := s.validAt(c, v)
		if err != nil {
			return 0, err
		}
		if ok {
			return c, nil
		}
	}
	return -1, nil
}

// tail says why the bytes from off to the end of the file, which hold no
// valid record, are bad, and whether they are a torn tail.
func (s *scanner) tail(off int64) (string, bool, error) {
	rest := s.size - off
	hl := int64(recHdrV2)
	if s.res.Version == 1 {
		hl = recHdrV1
	}
	zeros := true
	for o := off; o < s.size && zeros; o += 1 << 20 {
		b, err := s.bytes(o, int(min(1<<20, s.size-o)))
		if err != nil {
			return "", false, err
		}
		zeros = allZero(b)
	}
	if zeros {
		// Records are never empty; zeros are what a file system leaves
		// when a crash extended the file without writing its data.
		return "zero-filled tail", true, nil
	}
	if rest < hl {
		return fmt.Sprintf("record header cut after %d of %d bytes", rest, hl), true, nil
	}
	h, err := s.bytes(off, int(hl))
	if err != nil {
		return "", false, err
	}
	n := int64(binary.LittleEndian.Uint32(h[0:4]))
	headerHolds := s.res.Version == 1 && n > 0 && n <= MaxRecord || s.res.Version == 2 && headerOK(h)
	if headerHolds && off+hl+n > s.size {
		return fmt.Sprintf("record of %d bytes cut after %d bytes", n, rest-hl), true, nil
	}
	if headerHolds && off+hl+n == s.size {
		// A payload never ends in zeros (it ends with an event's JSON):
		// a run of them is a crash that extended the file before the
		// data reached it. One flipped byte cannot make eight.
		end, err := s.bytes(s.size-8, 8)
		if err != nil {
			return "", false, err
		}
		if allZero(end) {
			return fmt.Sprintf("record of %d bytes ends in zeros: written only in part", n), true, nil
		}
	}
	reason, err := s.why(off)
	return reason, false, err
}

// why says what is wrong with the record at off.
func (s *scanner) why(off int64) (string, error) {
	hl := int64(recHdrV2)
	if s.res.Version == 1 {
		hl = recHdrV1
	}
	if off+hl > s.size {
		return fmt.Sprintf("record header cut after %d of %d bytes", s.size-off, hl), nil
	}
	h, err := s.bytes(off, int(hl))
	if err != nil {
		return "", err
	}
	n := int64(binary.LittleEndian.Uint32(h[0:4]))
	switch {
	case s.res.Version == 2 && !headerOK(h):
		return "record header checksum does not match", nil
	case n == 0 || n > MaxRecord:
		return fmt.Sprintf("record length %d is impossible", n), nil
	case off+hl+n > s.size:
		return fmt.Sprintf("record of %d bytes runs past the end of the file", n), nil
	default:
		return "record checksum does not match", nil
	}
}

func putHeader(h []byte, payload []byte) {
	binary.LittleEndian.PutUint32(h[0:4], uint32(len(payload)))
	binary.LittleEndian.PutUint32(h[4:8], crc32.Checksum(payload, castagnoli))
	binary.LittleEndian.PutUint32(h[8:12], crc32.Checksum(h[0:8], castagnoli)^hcrcMask)
}

func headerOK(h []byte) bool {
	return crc32.Checksum(h[0:8], castagnoli)^hcrcMask == binary.LittleEndian.Uint32(h[8:12])
}

func allZero(b []byte) bool {
	return len(bytes.TrimLeft(b, "\x00")) == 0
}

// HeaderLen returns the length of a record header in format version.
func HeaderLen(version int) int {
	if version == 1 {
		return recHdrV1
	}
	return recHdrV2
}

// AppendRecord appends payload as one record of the current format, as
// Append writes it. Tests use it to make what a crash leaves: a prefix of
// a real record.
func AppendRecord(dst, payload []byte) []byte {
	var h [recHdrV2]byte
	putHeader(h[:], payload)
	return append(append(dst, h[:]...), payload...)
}
