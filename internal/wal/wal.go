// Package wal is kubetrail's write-ahead log: numbered segment files of
// length-prefixed, CRC-checked records. It owns only the file mechanics
// (append, sync, rotate, recover, read); group commit and what a record means
// belong to the store that uses it.
//
// A segment file is an 8-byte magic followed by records. Format 2
// ("KTWAL02\n", written since the reliability work, docs/ingest.md):
//
//	length  uint32 little endian, bytes of payload (never 0)
//	crc     uint32 little endian, CRC-32C of payload
//	hcrc    uint32 little endian, CRC-32C of length and crc, masked
//	payload length bytes
//
// The header's own checksum lets a reader tell a damaged length from a
// damaged payload, and find the next record after damage by testing each
// offset cheaply: a flipped byte costs the one record it is in, never the
// records after it. Format 1 ("KTWAL01\n": length and crc only) is still
// read, with a slower search for the next record.
//
// Two kinds of bad bytes are told apart (see Scan). A torn tail is what a
// crash leaves at the end of the segment being written: a record cut short
// by the end of the file, a header cut short, or zeros. It held no
// acknowledged record and Open cuts it. Anything else (a record whose
// checksum fails with whole records after it, a damaged file header, a
// whole record at the end whose checksum fails) is damage: Open leaves it
// in place, Scan reports it with its offset, and the store quarantines
// those bytes and keeps every valid record around them.
package wal

import (
	"bufio"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/kubetrail/kubetrail/internal/vfs"
)

// Magic starts every segment file written; MagicV1 starts those written
// before format 2, which are still read.
const (
	Magic   = "KTWAL02\n"
	MagicV1 = "KTWAL01\n"
)

const (
	headerLen = 8 // the file header: a magic
	recHdrV1  = 8
	recHdrV2  = 12
	// hcrcMask is xored into a header's checksum so that a run of zeros
	// never passes for a header.
	hcrcMask = 0xa282ead8
	// MaxRecord bounds one record; a length above it is corruption.
	MaxRecord = 1 << 30
	segSuffix = ".wal"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrBroken is returned by every append after a sync failed: the kernel may
// have dropped the written pages, so nothing written since the last good
// sync can be trusted and the process must restart to recover.
var ErrBroken = errors.New("wal: a sync failed earlier; restart to recover")

// Options configure a Log.
type Options struct {
	// SegmentBytes is the size past which Append starts a new segment.
	SegmentBytes int64
	// NoSync skips fsync, for tests and benchmarks that measure everything
	// else. A log opened with NoSync is not durable.
	NoSync bool
	// FS is the file system the log lives in; nil means the real one.
	// Crash tests give a strict in-memory one (vfs.NewStrictMem).
	FS vfs.FS
}

// DefaultSegmentBytes is the default segment size.
const DefaultSegmentBytes = 64 << 20

// Recovery describes what Open found.
type Recovery struct {
	// Segments is the number of segment files found.
	Segments int
	// TornSegment and TornOffset say where a torn tail was cut; TornBytes
	// is how many bytes were cut. TornBytes is 0 when the log was clean.
	TornSegment uint64
	TornOffset  int64
	TornBytes   int64
	// Reason says what was wrong with the torn tail.
	Reason string
}

// Log is an append-only log in a folder. Append and Sync must be called from
// one goroutine at a time; Segments and Remove may be called concurrently.
type Log struct {
	dir  string
	opts Options
	fs   vfs.FS

	mu   sync.Mutex // guards segs and seq
	segs []uint64   // sorted segment numbers, last one open for append

	f      vfs.File
	w      *bufio.Writer
	seq    uint64 // current segment number; written under mu
	size   int64  // bytes written to current segment, buffered included
	synced int64  // bytes of current segment known durable
	broken bool
	// cutBack is set when bytes past synced may have reached the current
	// segment's file before undo cut them: a reader may have seen records
	// there, so their offsets must not be given to other records.
	cutBack bool
	scratch [recHdrV2]byte
}

// SegmentPath returns the path of segment seq in dir.
func SegmentPath(dir string, seq uint64) string {
	return filepath.Join(dir, fmt.Sprintf("%016d%s", seq, segSuffix))
}

// ListSegments returns the segment numbers in dir, sorted.
func ListSegments(dir string) ([]uint64, error) { return ListSegmentsFS(vfs.OS, dir) }

// ListSegmentsFS is ListSegments in fs.
func ListSegmentsFS(fs vfs.FS, dir string) ([]uint64, error) {
	ents, err := fs.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var segs []uint64
	for _, e := range ents {
		name := e.Name()
		if !strings.HasSuffix(name, segSuffix) {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSuffix(name, segSuffix), 10, 64)
		if err != nil {
			continue
		}
		segs = append(segs, n)
	}
	sort.Slice(segs, func(i, j int) bool { return segs[i] < segs[j] })
	return segs, nil
}

// Open opens or creates the log in dir, cutting a torn tail of its newest
// segment (damage elsewhere is left for the store to quarantine, see Scan),
// and positions it for appends. Appends go to a new segment whose
// number is above every segment found and above minSeq, so the caller can
// keep numbers increasing after it removed every segment.
func Open(dir string, minSeq uint64, opts Options) (*Log, Recovery, error) {
	if opts.SegmentBytes <= 0 {
		opts.SegmentBytes = DefaultSegmentBytes
	}
	if opts.FS == nil {
		opts.FS = vfs.OS
	}
	fs := opts.FS
	var rec Recovery
	if err := vfs.MkdirAllSynced(fs, dir, 0o700); err != nil {
		return nil, rec, fmt.Errorf("create wal folder: %w", err)
	}
	segs, err := ListSegmentsFS(fs, dir)
	if err != nil {
		return nil, rec, fmt.Errorf("list wal folder: %w", err)
	}
	rec.Segments = len(segs)
	if len(segs) > 0 {
		last := segs[len(segs)-1]
		path := SegmentPath(dir, last)
		res, err := ScanFS(fs, path, nil)
		if err != nil {
			return nil, rec, err
		}
		if t := res.Torn(); t != nil {
			rec.TornSegment, rec.TornOffset, rec.TornBytes, rec.Reason = last, t.Offset, t.Length, t.Reason
			if err := cut(fs, path, t.Offset); err != nil {
				return nil, rec, fmt.Errorf("cut torn tail of %s: %w", path, err)
			}
		}
	}
	l := &Log{dir: dir, opts: opts, fs: fs, segs: segs}
	next := minSeq + 1
	if len(segs) > 0 && segs[len(segs)-1]+1 > next {
		next = segs[len(segs)-1] + 1
	}
	// Appends always start a fresh segment: recovered segments stay as they
	// were, ready to be sealed.
	if err := l.startSegment(next); err != nil {
		return nil, rec, err
	}
	return l, rec, nil
}

func cut(fs vfs.FS, path string, size int64) error {
	f, err := fs.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if size < headerLen {
		// A file cut inside its header holds no record: give it a whole
		// header of the current format.
		if _, err := f.WriteAt([]byte(Magic), 0); err != nil {
			return err
		}
		size = headerLen
	}
	if err := f.Truncate(size); err != nil {
		return err
	}
	return f.Sync()
}

// startSegment starts segment seq and makes it the one appended to.
func (l *Log) startSegment(seq uint64) error {
	f, err := l.openSegment(seq)
	if err != nil {
		return err
	}
	l.install(f, seq)
	return nil
}

// openSegment creates segment seq with its header, its name durable. On
// failure (a full disk) it removes what it made, so that the same number
// can be tried again.
func (l *Log) openSegment(seq uint64) (vfs.File, error) {
	path := SegmentPath(l.dir, seq)
	f, err := l.fs.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create wal segment: %w", err)
	}
	if _, err := f.Write([]byte(Magic)); err != nil {
		return nil, l.unmake(f, fmt.Errorf("write wal segment header %s: %w", path, err))
	}
	// The header needs no sync of its own: the first Sync makes it durable
	// with the first records, and a crash before that leaves an empty or
	// short file, which holds no record and which Open handles. The name
	// must be durable before anything in the file is acknowledged.
	if !l.opts.NoSync {
		if err := l.fs.SyncDir(l.dir); err != nil {
			return nil, l.unmake(f, fmt.Errorf("sync folder %s: %w", l.dir, err))
		}
	}
	return f, nil
}

// unmake closes and removes a segment openSegment could not finish.
func (l *Log) unmake(f vfs.File, cause error) error {
	f.Close()
	if err := l.fs.Remove(f.Name()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%w; removing the half-made segment failed too: %v", cause, err)
	}
	return cause
}

// install makes f, segment seq, the one appended to.
func (l *Log) install(f vfs.File, seq uint64) {
	l.f, l.size, l.synced, l.cutBack = f, headerLen, headerLen, false
	if l.w == nil {
		l.w = bufio.NewWriterSize(f, 1<<20)
	} else {
		l.w.Reset(f)
	}
	l.mu.Lock()
	l.seq = seq
	if n := len(l.segs); n == 0 || l.segs[n-1] != seq {
		l.segs = append(l.segs, seq)
	}
	l.mu.Unlock()
}

// Current returns the number of the segment being appended to.
func (l *Log) Current() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.seq
}

// Size returns the bytes in the current segment, buffered bytes included.
func (l *Log) Size() int64 { return l.size }

// Append buffers one record. It is durable only after Sync returns nil.
// A payload must not end in eight zero bytes: at the end of a file, Scan
// takes such a record for one that a crash left written only in part. On a
// write error the segment is cut back to its last synced size, so a later
// Append can succeed once the cause (a full disk) is gone; see CutBack.
func (l *Log) Append(payload []byte) error {
	if l.broken {
		return ErrBroken
	}
	if len(payload) == 0 {
		return errors.New("BUG: wal: empty record")
	}
	if len(payload) > MaxRecord {
		return fmt.Errorf("wal: record of %d bytes is over the %d-byte limit", len(payload), MaxRecord)
	}
	putHeader(l.scratch[:], payload)
	if _, err := l.w.Write(l.scratch[:]); err != nil {
		return l.undo(err, true)
	}
	if _, err := l.w.Write(payload); err != nil {
		return l.undo(err, true)
	}
	l.size += int64(len(payload)) + recHdrV2
	return nil
}

// undo drops everything written since the last sync after a write error
// (failed true) or a failed batch. When any of it may have reached the
// file (a write that failed part way, or a full buffer flushed by an
// earlier Append), the segment is marked cut back.
func (l *Log) undo(cause error, failed bool) error {
	if failed || l.size-l.synced > int64(l.w.Buffered()) {
		l.cutBack = true
	}
	l.w.Reset(l.f)
	if err := l.f.Truncate(l.synced); err != nil {
		l.broken = true
		return fmt.Errorf("wal: write failed (%v) and the segment could not be cut back: %w", cause, err)
	}
	if _, err := l.f.Seek(l.synced, io.SeekStart); err != nil {
		l.broken = true
		return fmt.Errorf("wal: write failed (%v) and seek failed: %w", cause, err)
	}
	l.size = l.synced
	return fmt.Errorf("wal append: %w", cause)
}

// Sync writes buffered records and makes them durable.
func (l *Log) Sync() error {
	if l.broken {
		return ErrBroken
	}
	if err := l.w.Flush(); err != nil {
		return l.undo(err, true)
	}
	if !l.opts.NoSync {
		if err := l.f.Sync(); err != nil {
			l.broken = true
			return fmt.Errorf("wal sync %s: %w", l.f.Name(), err)
		}
	}
	l.synced = l.size
	return nil
}

// Discard drops buffered, unsynced records, as after a failed batch.
func (l *Log) Discard() error { return l.undo(errors.New("discarded"), false) }

// CutBack reports whether the current segment was cut back after records
// past its last sync may have reached the file: a reader in another
// process may have read them (they were never acknowledged), and records
// appended now would take their offsets, so a reader whose position is
// past them would skip acknowledged records. A caller whose readers
// remember positions must Rotate before it appends again.
func (l *Log) CutBack() bool { return l.cutBack }

// NeedsRotate reports whether the current segment is past its size.
func (l *Log) NeedsRotate() bool { return l.size >= l.opts.SegmentBytes }

// Rotate syncs and closes the current segment and starts the next one. It
// returns the number of the closed segment. A segment with no records is
// rotated too: its number is still used once. The next segment is made
// before the current one is closed: when it cannot be (a full disk),
// Rotate removes what it made and returns 0 and the error, and the current
// segment stays open and usable, so a later Rotate can succeed once there
// is room.
func (l *Log) Rotate() (uint64, error) {
	if err := l.Sync(); err != nil {
		return 0, err
	}
	closed := l.seq
	f, err := l.openSegment(closed + 1)
	if err != nil {
		return 0, err
	}
	old := l.f
	l.install(f, closed+1)
	if err := old.Close(); err != nil {
		// Its records were synced; the new segment is in use.
		return closed, fmt.Errorf("close wal segment %d: %w", closed, err)
	}
	return closed, nil
}

// Segments returns the segment numbers, the open one last.
func (l *Log) Segments() []uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]uint64(nil), l.segs...)
}

// Remove deletes a closed segment once its records are safe elsewhere.
func (l *Log) Remove(seq uint64) error {
	if seq == l.Current() {
		return fmt.Errorf("BUG: wal: remove of the open segment %d", seq)
	}
	if err := l.fs.Remove(SegmentPath(l.dir, seq)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	l.mu.Lock()
	for i, s := range l.segs {
		if s == seq {
			l.segs = append(l.segs[:i], l.segs[i+1:]...)
			break
		}
	}
	l.mu.Unlock()
	return nil
}

// Close syncs and closes the log.
func (l *Log) Close() error {
	err := l.Sync()
	if cerr := l.f.Close(); err == nil {
		err = cerr
	}
	return err
}

// SegmentNumber returns the number of the segment at path, or 0 when the
// name is not a segment's.
func SegmentNumber(path string) uint64 {
	n, err := strconv.ParseUint(strings.TrimSuffix(filepath.Base(path), segSuffix), 10, 64)
	if err != nil {
		return 0
	}
	return n
}
