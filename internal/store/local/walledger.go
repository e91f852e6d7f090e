package local

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/kubetrail/kubetrail/internal/vfs"
	"github.com/kubetrail/kubetrail/internal/wal"
)

// The WAL folder's LEDGER lists the WAL segments that may hold events no
// segment holds yet, so that a WAL segment deleted behind kubetrail's back
// (while serve was stopped after a crash, say) is reported instead of
// silently answering without its events; the segments MANIFEST does the
// same for sealed segments. It is text, a header line then one segment
// number a line:
//
//	kubetrail wal ledger 1
//	7
//	8
//
// A number is added when its WAL segment is created, before anything in
// it is acknowledged, and removed before the file is removed (after
// sealing, or when it held nothing). So a listed number whose file is
// missing and whose events no segment holds was lost. Readers read the
// ledger before and after they list the folders and report only numbers
// listed both times: a segment sealed and removed meanwhile is unlisted
// first. The file is replaced atomically (temporary name, sync, rename,
// folder sync).
const (
	ledgerName   = "LEDGER"
	ledgerHeader = "kubetrail wal ledger 1"
	ledgerTemp   = ".tmp-ledger"
)

// readLedger returns the numbers dir's ledger lists; ok is false when
// there is none (a folder written before it existed). Lines that are not
// numbers are Damage.
func readLedger(fs vfs.FS, dir string) (seqs map[uint64]bool, ok bool, damage []Damage, err error) {
	path := filepath.Join(dir, ledgerName)
	b, ok, err := readListFile(fs, path)
	if !ok || err != nil {
		return nil, false, nil, err
	}
	seqs = map[uint64]bool{}
	if len(b) == 0 {
		return seqs, true, []Damage{{Path: path, Reason: "empty: no header (written but never synced before a crash?)"}}, nil
	}
	damage = parseListFile(path, b, ledgerHeader, "a WAL segment number", func(line string) bool {
		seq, err := strconv.ParseUint(line, 10, 64)
		if err != nil || seq == 0 {
			return false
		}
		seqs[seq] = true
		return true
	})
	return seqs, true, damage, nil
}

// writeLedger replaces dir's ledger with seqs, atomically.
func writeLedger(fs vfs.FS, dir string, seqs map[uint64]bool, noSync bool) error {
	list := make([]uint64, 0, len(seqs))
	for s := range seqs {
		list = append(list, s)
	}
	slices.Sort(list)
	var b bytes.Buffer
	b.WriteString(ledgerHeader + "\n")
	for _, s := range list {
		b.WriteString(strconv.FormatUint(s, 10) + "\n")
	}
	tmp := filepath.Join(dir, ledgerTemp)
	f, err := fs.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("write WAL ledger: %w", err)
	}
	if _, err := f.Write(b.Bytes()); err != nil {
		f.Close()
		return fmt.Errorf("write WAL ledger: %w", err)
	}
	if !noSync {
		if err := f.Sync(); err != nil {
			f.Close()
			return fmt.Errorf("sync WAL ledger: %w", err)
		}
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write WAL ledger: %w", err)
	}
	if err := fs.Rename(tmp, filepath.Join(dir, ledgerName)); err != nil {
		return fmt.Errorf("rename WAL ledger: %w", err)
	}
	if noSync {
		return nil
	}
	if err := fs.SyncDir(dir); err != nil {
		return fmt.Errorf("sync WAL folder: %w", err)
	}
	return nil
}

// ledgerChange adds and removes numbers in the ledger. The committer (new
// segments) and the sealers (finished ones) call it; ledgerMu orders them.
func (db *DB) ledgerChange(add, remove uint64) error {
	db.ledgerMu.Lock()
	defer db.ledgerMu.Unlock()
	dir := filepath.Join(db.dir, walDir)
	seqs, _, _, err := readLedger(db.fs, dir)
	if err != nil {
		return err
	}
	if seqs == nil {
		seqs = map[uint64]bool{}
	}
	if add != 0 {
		seqs[add] = true
	}
	if remove != 0 {
		delete(seqs, remove)
	}
	return writeLedger(db.fs, dir, seqs, db.opts.NoSync)
}

// reconcileLedger, on Open, lists every WAL segment there is and drops the
// numbers a segment now holds; a listed number whose file is missing and
// that no segment holds stays listed, so that every reader keeps
// reporting it, and is logged.
func (db *DB) reconcileLedger(covered map[uint64]bool) error {
	db.ledgerMu.Lock()
	defer db.ledgerMu.Unlock()
	dir := filepath.Join(db.dir, walDir)
	seqs, _, _, err := readLedger(db.fs, dir)
	if err != nil {
		return err
	}
	present, err := wal.ListSegmentsFS(db.fs, dir)
	if err != nil {
		return err
	}
	next := map[uint64]bool{}
	for _, s := range present {
		if !covered[s] {
			next[s] = true
		}
	}
	for s := range seqs {
		if !covered[s] && !slices.Contains(present, s) {
			next[s] = true
			db.log.Error("a WAL segment listed in the ledger is missing; the events it held are left out of every answer",
				"path", wal.SegmentPath(dir, s), "ledger", filepath.Join(dir, ledgerName))
		}
	}
	return writeLedger(db.fs, dir, next, db.opts.NoSync)
}

// missingWAL returns the WAL segments listed in both ledger readings
// (before: read before the folders were listed) that are neither among
// walSegs nor held by a segment of segs, as Damage.
func missingWAL(fs vfs.FS, walPath string, before map[uint64]bool, walSegs []uint64, segs []segmentFile) ([]Damage, error) {
	if before == nil {
		return nil, nil
	}
	after, _, _, err := readLedger(fs, walPath)
	if err != nil {
		return nil, err
	}
	var out []Damage
	for s := range before {
		if !after[s] || slices.Contains(walSegs, s) {
			continue
		}
		held := false
		for _, sf := range segs {
			if sf.first <= s && s <= sf.last {
				held = true
				break
			}
		}
		if !held {
			out = append(out, Damage{Path: wal.SegmentPath(walPath, s), Reason: "missing: listed in " + filepath.Join(walDir, ledgerName) + " and held by no segment; its events are left out (restore the file, or delete its line from the ledger to accept the loss)"})
		}
	}
	slices.SortFunc(out, func(a, b Damage) int { return strings.Compare(a.Path, b.Path) })
	return out, nil
}
