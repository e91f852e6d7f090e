package detector

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/kubetrail/kubetrail/internal/vfs"
)

// keysFilePrefix names the files of the keys the arrivals cursor covers
// within its margin (detect-arrivals.keys.GEN, beside the cursor).
const keysFilePrefix = "detect-arrivals.keys."

// keyRecordBytes is one key's record: the event key, then its seq
// (little-endian).
const keyRecordBytes = 16 + 8

// keyLogCompactBytes is the size below which the key log is never
// rewritten: above it, once it holds more than twice the live keys.
const keyLogCompactBytes = 4 << 20

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// keyLog is the cursor's keys as an append-only file, so that a poll
// writes the keys it evaluated (24 bytes each) instead of rewriting every
// key of the margin into the cursor (35 bytes of JSON each, 10 MB a poll
// at 10k events/s). The cursor records the file, its length and the
// CRC-32C of those bytes at each save: bytes after that length (appended
// by a poll that crashed before its save) are not the cursor's and are
// cut on open. When the file holds more than twice the live keys (and
// at least keyLogCompactBytes) the live keys are written to a new file
// (the next generation) and the cursor moves to it; the old one is
// removed after that save, and any other generation found at open.
type keyLog struct {
	dir string
	gen int // 0: no file yet
	// size and crc are the file's length and CRC-32C as last made durable.
	size int64
	crc  uint32
	// compactAt is keyLogCompactBytes; tests lower it.
	compactAt int64
	// old is the generation a compaction left, removed once the cursor
	// no longer names it.
	old int
}

func keyLogPath(dir string, gen int) string {
	return filepath.Join(dir, keysFilePrefix+strconv.Itoa(gen))
}

// openKeyLog reads the key log the cursor names (gen, n bytes, CRC sum)
// into keys; gen 0 is no log (a new cursor, or one of version 1, whose
// keys were in its JSON): the first save writes one. Other generations
// are removed.
func openKeyLog(dir string, gen int, n int64, sum uint32, keys map[string]uint64) (*keyLog, error) {
	l := &keyLog{dir: dir, gen: gen, compactAt: keyLogCompactBytes}
	if err := l.removeOthers(); err != nil {
		return nil, err
	}
	if gen == 0 {
		return l, nil
	}
	path := keyLogPath(dir, gen)
	f, err := os.OpenFile(path, os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("detection cursor's keys: %w", err)
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := io.ReadFull(f, b); err != nil {
		return nil, fmt.Errorf("detection cursor's keys %s: %d bytes expected: %w", path, n, err)
	}
	if n%keyRecordBytes != 0 || crc32.Checksum(b, castagnoli) != sum {
		return nil, fmt.Errorf("detection cursor's keys %s: checksum mismatch: the file is damaged (remove it and the cursor to evaluate the store again from its first event)", path)
	}
	for i := int64(0); i < n; i += keyRecordBytes {
		keys[hex.EncodeToString(b[i:i+16])] = binary.LittleEndian.Uint64(b[i+16:])
	}
	// A poll that crashed after appending and before its save left
	// bytes the cursor does not cover.
	if err := f.Truncate(n); err != nil {
		return nil, fmt.Errorf("detection cursor's keys %s: %w", path, err)
	}
	l.size, l.crc = n, sum
	return l, nil
}

// removeOthers removes every key log but the current generation.
func (l *keyLog) removeOthers() error {
	ents, err := os.ReadDir(l.dir)
	if err != nil {
		return fmt.Errorf("detection cursor's folder: %w", err)
	}
	for _, e := range ents {
		g, ok := strings.CutPrefix(e.Name(), keysFilePrefix)
		if !ok || g == strconv.Itoa(l.gen) {
			continue
		}
		if err := os.Remove(filepath.Join(l.dir, e.Name())); err != nil {
			return fmt.Errorf("detection cursor's old keys: %w", err)
		}
	}
	return nil
}

// add makes the keys evaluated by a poll durable, before the cursor save
// that covers them: appended, or, when the log has grown past twice the
// live keys, by writing the live keys (all of which keys holds, those
// just evaluated included) to a new generation.
func (l *keyLog) add(news []keySeq, live map[string]uint64) error {
	if l.gen == 0 || l.size+int64(len(news))*keyRecordBytes > max(l.compactAt, 2*int64(len(live))*keyRecordBytes) {
		return l.rewrite(live)
	}
	b := make([]byte, 0, len(news)*keyRecordBytes)
	for _, k := range news {
		var err error
		if b, err = appendKey(b, k.key, k.seq); err != nil {
			return err
		}
	}
	f, err := os.OpenFile(keyLogPath(l.dir, l.gen), os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("detection cursor's keys: %w", err)
	}
	_, werr := f.Write(b)
	if werr == nil {
		werr = f.Sync()
	}
	if err := errors.Join(werr, f.Close()); err != nil {
		return fmt.Errorf("detection cursor's keys: %w", err)
	}
	l.size += int64(len(b))
	l.crc = crc32.Update(l.crc, castagnoli, b)
	return nil
}

// rewrite writes live to the next generation and makes it the log.
func (l *keyLog) rewrite(live map[string]uint64) error {
	b := make([]byte, 0, len(live)*keyRecordBytes)
	for k, seq := range live {
		var err error
		if b, err = appendKey(b, k, seq); err != nil {
			return err
		}
	}
	gen := l.gen + 1
	path := keyLogPath(l.dir, gen)
	if err := vfs.WriteFileAtomic(vfs.OS, path, b, 0o600); err != nil {
		return fmt.Errorf("detection cursor's keys: %w", err)
	}
	l.old, l.gen, l.size, l.crc = l.gen, gen, int64(len(b)), crc32.Checksum(b, castagnoli)
	return nil
}

// saved is called once the cursor names the current generation: the one
// a rewrite left is removed.
func (l *keyLog) saved() error {
	if l.old == 0 {
		return nil
	}
	err := os.Remove(keyLogPath(l.dir, l.old))
	if errors.Is(err, os.ErrNotExist) {
		err = nil
	}
	l.old = 0
	return err
}

// appendKey appends a key's record; k is the key in hex, as the cursor
// keeps it.
func appendKey(b []byte, k string, seq uint64) ([]byte, error) {
	raw, err := hex.DecodeString(k)
	if err != nil || len(raw) != 16 {
		return nil, fmt.Errorf("BUG: event key %q in the detection cursor", k)
	}
	b = append(b, raw...)
	return binary.LittleEndian.AppendUint64(b, seq), nil
}

// keySeq is an evaluated event's key (hex) and seq.
type keySeq struct {
	key string
	seq uint64
}
