package alert

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"

	"github.com/kubetrail/kubetrail/internal/vfs"
)

// NumbersFile is the file, in the store's folder, that bounds the numbers
// given to alerts (docs/adr/0029): every number ever written to a segment
// is below the limit it holds, because the store writes a higher limit,
// and syncs it, before it writes an alert numbered past the old one. A
// store opened after a crash, a kill or a failed sync starts numbering at
// that limit, above every number a reader in another process can have
// seen, including numbers of alerts that never became durable. A clean
// Close lowers the limit to the next number, so that numbers go on
// without a gap.
//
// The file is 8 KiB: two slots, at 0 and at 4096, each in its own block,
// written in place in turn (a full disk does not stop a write into
// blocks the file already has), each holding
//
//	magic  "KTNUM01\n"
//	gen    uint64 little endian, higher in each slot written
//	limit  uint64 little endian, every number given is below it
//	crc    uint32 little endian, CRC-32C of the 24 bytes before it
//
// The valid slot with the higher gen holds the limit; a write cut short by
// a crash spoils only the slot it was writing, whose limit was not relied
// on yet.
const NumbersFile = "numbers"

const (
	numbersMagic    = "KTNUM01\n"
	numbersSlot     = 4096
	numbersSlotUsed = 28
	// numbersStep is how far past what an Append needs a new limit goes:
	// one sync of the numbers file per numbersStep alerts, and at most
	// about that many numbers skipped after a crash.
	numbersStep = 1024
	// maxNumber bounds the limits and generations a slot may hold: both
	// grow by about one per alert or per write, so a store never comes
	// near it, and a slot past it was made by hand or damaged (its CRC
	// missed it). Taken as it is, it would wrap the numbers past 2^64
	// (an alert numbered 0, or below numbers readers saw) or a generation
	// to 0 (the next slot written would lose to it). Numbers up to 2^53
	// are also exact in a JSON reader that holds them as doubles.
	maxNumber = 1 << 53
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// numbers is the store's numbers file. Its methods are called with the
// store's lock held.
type numbers struct {
	fs    vfs.FS
	path  string
	f     vfs.File // nil until the file is opened for writing
	found bool     // the file holds a valid slot
	gen   uint64   // the valid slot's generation
	slot  int      // the valid slot: 0 or 1
	limit uint64   // every number given is below it
}

// readNumbers reads the numbers file in dir. A missing file (a store
// written before it existed, or one that never stored an alert) gives
// found false and no error; a file with no valid slot gives a Damage.
func readNumbers(fs vfs.FS, dir string) (*numbers, *Damage, error) {
	n := &numbers{fs: fs, path: filepath.Join(dir, NumbersFile)}
	f, err := fs.Open(n.path)
	if errors.Is(err, os.ErrNotExist) {
		return n, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("open %s: %w", n.path, err)
	}
	defer f.Close()
	buf := make([]byte, 2*numbersSlot)
	got, err := f.ReadAt(buf, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, nil, fmt.Errorf("read %s: %w", n.path, err)
	}
	for i := range 2 {
		off := i * numbersSlot
		if off+numbersSlotUsed > got {
			continue
		}
		gen, limit, ok := decodeSlot(buf[off : off+numbersSlotUsed])
		if ok && (!n.found || gen > n.gen) {
			n.found, n.gen, n.slot, n.limit = true, gen, i, limit
		}
	}
	if !n.found {
		return n, &Damage{Path: n.path, Length: int64(got), Reason: "no valid slot: the limit of the numbers given is lost; numbering goes on after the newest alert"}, nil
	}
	return n, nil, nil
}

func encodeSlot(gen, limit uint64) []byte {
	b := make([]byte, numbersSlotUsed)
	copy(b, numbersMagic)
	binary.LittleEndian.PutUint64(b[8:], gen)
	binary.LittleEndian.PutUint64(b[16:], limit)
	binary.LittleEndian.PutUint32(b[24:], crc32.Checksum(b[:24], castagnoli))
	return b
}

func decodeSlot(b []byte) (gen, limit uint64, ok bool) {
	if string(b[:8]) != numbersMagic || binary.LittleEndian.Uint32(b[24:]) != crc32.Checksum(b[:24], castagnoli) {
		return 0, 0, false
	}
	gen, limit = binary.LittleEndian.Uint64(b[8:]), binary.LittleEndian.Uint64(b[16:])
	if gen > maxNumber || limit > maxNumber {
		return 0, 0, false
	}
	return gen, limit, true
}

// set makes limit the durable limit. It writes the slot that does not
// hold the current limit and trusts the new one only once it is synced:
// on any error the old limit stands (the file may hold the new one too,
// which is only higher or, from Close, a limit that is right as well), and
// a later set rewrites the whole slot, so a failed sync is not trusted
// after the fact.
func (n *numbers) set(limit uint64) error {
	if n.f == nil {
		made, err := n.open(limit)
		if err != nil || made {
			return err
		}
	}
	slot, gen := 1-n.slot, n.gen+1
	if _, err := n.f.WriteAt(encodeSlot(gen, limit), int64(slot*numbersSlot)); err != nil {
		return fmt.Errorf("write %s: %w", n.path, err)
	}
	if err := n.f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", n.path, err)
	}
	n.found, n.gen, n.slot, n.limit = true, gen, slot, limit
	return nil
}

// open opens the file for writing in place, first making it, whole and
// durable with limit in slot 0, when it is missing or holds no valid slot
// (made true).
func (n *numbers) open(limit uint64) (made bool, err error) {
	if !n.found {
		b := make([]byte, 2*numbersSlot)
		copy(b, encodeSlot(1, limit))
		if err := vfs.WriteFileAtomic(n.fs, n.path, b, 0o600); err != nil {
			return false, err
		}
	}
	f, err := n.fs.OpenFile(n.path, os.O_RDWR, 0)
	if err != nil {
		return false, fmt.Errorf("open %s: %w", n.path, err)
	}
	n.f = f
	if !n.found {
		n.found, n.gen, n.slot, n.limit = true, 1, 0, limit
		return true, nil
	}
	return false, nil
}

// missing reports whether the file was deleted since it was opened (by
// hand, or a cleanup that took it for a stray file): the limits written
// to it would reach no name, and a restart would number from the newest
// durable alert. It forgets the file, so that the next set makes it
// again. The cost is a stat per Append, beside the Append's fsync.
func (n *numbers) missing() bool {
	if n.f == nil {
		return false
	}
	if _, err := n.fs.Stat(n.path); !errors.Is(err, os.ErrNotExist) {
		return false
	}
	n.close()
	n.found = false
	return true
}

// close closes the file if it is open.
func (n *numbers) close() error {
	if n.f == nil {
		return nil
	}
	err := n.f.Close()
	n.f = nil
	return err
}
