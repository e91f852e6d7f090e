package local

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/klauspost/compress/zstd"
)

// SegmentError is a segment that cannot be read as written: a part of it
// fails its checksum, disagrees with the rest of the file, or cannot be
// read from the disk. Every read of a segment checks what it reads and
// fails with one, so a damaged segment never gives a wrong answer. Its
// message names the file and the part, e.g.
// "segments/…kts: column name dictionary: checksum does not match".
type SegmentError struct {
	// Path is the segment file.
	Path string
	// Part says which structure of the file is damaged.
	Part string
	Err  error
}

func (e *SegmentError) Error() string {
	if e.Part == "" {
		return e.Path + ": " + e.Err.Error()
	}
	return e.Path + ": " + e.Part + ": " + e.Err.Error()
}

func (e *SegmentError) Unwrap() error { return e.Err }

// Damage returns the error as a Damage.
func (e *SegmentError) Damage() Damage {
	if e.Part == "" {
		return Damage{Path: e.Path, Reason: e.Err.Error()}
	}
	return Damage{Path: e.Path, Reason: e.Part + ": " + e.Err.Error()}
}

// errChecksum is what a frame or meta whose checksum fails reports.
var errChecksum = errors.New("checksum does not match")

// fail wraps err, met reading part of the segment, as a SegmentError
// naming the file and the part; an error that already names them is
// returned as it is.
func (r *segmentReader) fail(part string, err error) error {
	var se *SegmentError
	if errors.As(err, &se) {
		return err
	}
	return &SegmentError{Path: r.f.Name(), Part: part, Err: err}
}

// readAt reads len(b) bytes at off, refusing a range that lies outside the
// file (a meta pointing past the end, a file cut short) with a clear error.
func (r *segmentReader) readAt(b []byte, off int64) error {
	if off < 0 || off > r.size || int64(len(b)) > r.size-off {
		return fmt.Errorf("%d bytes at offset %d lie past the end of the file (%d bytes): it is cut short", len(b), off, r.size)
	}
	// ReadAt fails whenever it reads fewer bytes than asked.
	_, err := r.f.ReadAt(b, off)
	return err
}

// zstdMagic starts every zstd frame (little endian).
const zstdMagic = 0xFD2FB528

// decodeFrame decompresses one zstd frame of a segment, appending to dst,
// and checks its content checksum. kubetrail's encoder always writes the
// checksum (the zstd package's default); the flag that announces it is in
// the frame header, which no checksum covers, so a frame without it is
// refused: a flipped bit there would otherwise turn the check off.
func decodeFrame(dec *zstd.Decoder, comp, dst []byte) ([]byte, error) {
	if len(comp) < 5 || binary.LittleEndian.Uint32(comp) != zstdMagic {
		return nil, errors.New("not a zstd frame")
	}
	if comp[4]&(1<<2) == 0 {
		return nil, errors.New("zstd frame has no checksum")
	}
	out, err := dec.DecodeAll(comp, dst)
	if errors.Is(err, zstd.ErrCRCMismatch) {
		return nil, errChecksum
	}
	if err != nil {
		return nil, fmt.Errorf("cannot be decompressed: %w", err)
	}
	return out, nil
}
