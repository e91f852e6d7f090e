package local

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"github.com/klauspost/compress/zstd"

	"github.com/kubetrail/kubetrail/internal/vfs"
	"github.com/kubetrail/kubetrail/internal/wal"
)

// VerifyReport is what Verify found.
type VerifyReport struct {
	// Damage lists every damaged, missing or quarantined file, with the
	// reason; the folder is whole when it is empty.
	Damage []Damage
	// Tamper lists what the Merkle roots and the hash chain find altered
	// (docs/adr/0016): modified, inserted, deleted or reordered events or
	// segments whose checksums may all hold.
	Tamper []Damage
	// Notes are findings that lose nothing: a torn tail of the newest WAL
	// segment (a crash's, cut on the next start), events not covered by
	// tamper evidence.
	Notes []Damage
	// Chain is the hash chain's head after each sealed WAL segment, in WAL
	// order, to check signed checkpoints against.
	Chain []ChainPoint
	// Retired lists the records of segments/RETIRED, whose signatures
	// only the checkpoint key's owner can check.
	Retired []RetiredRecord
	// RetiredPath is the RETIRED file's path.
	RetiredPath string
	// Unsealed counts the events still in the WAL: they are covered once
	// sealed.
	Unsealed int
	// Files, Bytes and Events count what was checked.
	Files  int
	Bytes  int64
	Events int
}

// Verify checks every checksum of every file in a data folder: each WAL
// segment's records, each segment's structures, the list of segments that
// should exist, and the quarantine folder. It reads beside a running
// writer, as readers do, and reports each file that cannot be trusted with
// the reason; progress, when not nil, is told each file as it starts it.
func Verify(dir string, progress func(path string)) (*VerifyReport, error) {
	return VerifyFS(vfs.OS, dir, progress)
}

// VerifyFS is Verify on a folder in fs.
func VerifyFS(fs vfs.FS, dir string, progress func(path string)) (*VerifyReport, error) {
	if _, err := fs.Stat(dir); err != nil {
		return nil, fmt.Errorf("data folder: %w", err)
	}
	rep := &VerifyReport{}
	var notes []Damage
	var dl damageList
	if err := dl.addQuarantined(fs, dir); err != nil {
		return nil, err
	}
	walPath := filepath.Join(dir, walDir)
	ledger, _, ldamage, err := readLedger(fs, walPath)
	if err != nil {
		return nil, err
	}
	for _, d := range ldamage {
		dl.add(d.Path, d.Reason)
	}
	walSegs, err := wal.ListSegmentsFS(fs, walPath)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	for i, seq := range walSegs {
		path := wal.SegmentPath(walPath, seq)
		if progress != nil {
			progress(path)
		}
		res, err := wal.ScanFS(fs, path, func(off int64, p []byte) error {
			n := 0
			if err := decodeBatch(p, func(entry) error { n++; return nil }); err != nil {
				dl.add(path, fmt.Sprintf("record at byte %d: %v", off, err))
				return nil
			}
			rep.Events += n
			rep.Unsealed += n
			return nil
		})
		if errors.Is(err, os.ErrNotExist) {
			continue // sealed meanwhile: its segment is checked below
		}
		if err != nil {
			dl.add(path, err.Error())
			continue
		}
		rep.Files++
		rep.Bytes += res.Size
		for _, d := range res.Damage {
			if d.Torn && i == len(walSegs)-1 {
				rep.Notes = append(rep.Notes, Damage{Path: path, Reason: describeWALDamage(d) + " (a crash's torn tail: it held no acknowledged event, and the next start cuts it)"})
				continue
			}
			dl.add(path, describeWALDamage(d))
		}
	}
	segPath := filepath.Join(dir, segmentDir)
	unlock := lockSegments(fs, segPath, vfs.LockShared)
	segs, err := listSegmentFiles(fs, segPath)
	if err == nil {
		for _, d := range checkManifest(fs, dir) {
			dl.add(d.Path, d.Reason)
		}
		lost, lerr := missingWAL(fs, walPath, ledger, walSegs, segs)
		if lerr != nil {
			dl.add(filepath.Join(walPath, ledgerName), lerr.Error())
		}
		for _, d := range lost {
			dl.add(d.Path, d.Reason)
		}
	}
	// Opened under the lock, read after it: compaction may delete a file
	// that is open, never one that is listed and not yet open.
	var open []*segmentReader
	for _, s := range segs {
		r, err := openSegment(fs, s.path)
		if err != nil {
			d := damageOf(s.path, err)
			dl.add(d.Path, d.Reason)
			continue
		}
		open = append(open, r)
	}
	unlock()
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	retired, rdamage, rerr := readRetired(fs, segPath)
	if rerr != nil {
		return nil, rerr
	}
	for _, d := range rdamage {
		dl.add(d.Path, d.Reason)
	}
	var items []chainItem
	superseded := map[string]bool{}
	_, sup := splitSuperseded(segs)
	for _, s := range sup {
		superseded[s.path] = true
	}
	present := map[string]bool{}
	for _, r := range open {
		present[filepath.Base(r.f.Name())] = true
	}
	rep.RetiredPath = filepath.Join(segPath, retiredName)
	for _, r := range retired {
		rep.Retired = append(rep.Retired, RetiredRecord{Name: r.name, Record: r.record(), Sig: r.sig})
	}
	for i := range retired {
		// Recorded, then a crash before its deletion: still a segment.
		if !present[retired[i].name] {
			items = append(items, chainItem{first: retired[i].first, retired: &retired[i]})
		}
	}
	checks, err := checkSegments(open, superseded, progress)
	if err != nil {
		return nil, err
	}
	for _, c := range checks {
		for _, d := range c.damaged {
			dl.add(d.Path, d.Reason)
		}
		rep.Files++
		rep.Bytes += c.size
		rep.Events += c.meta.Count
		if superseded[c.path] {
			// Inputs of a compaction a crash stopped are read by nobody:
			// the output holds their events and their chain.
			continue
		}
		it := chainItem{first: c.meta.WALFirst, path: c.path, meta: c.meta}
		if c.roots != nil && len(c.damaged) == 0 {
			c.roots.fill(&it)
		}
		items = append(items, it)
	}
	rep.Tamper, notes, rep.Chain = checkChain(items, filepath.Join(segPath, retiredName))
	rep.Notes = append(rep.Notes, notes...)
	if rep.Unsealed > 0 {
		rep.Notes = append(rep.Notes, Damage{Path: walPath, Reason: fmt.Sprintf("%d events not yet sealed: covered by tamper evidence once sealed", rep.Unsealed)})
	}
	rep.Damage = dl.all()
	return rep, nil
}

// segCheck is what verify found in one segment.
type segCheck struct {
	path    string
	size    int64
	meta    *segmentMeta
	damaged []Damage
	roots   *rootsBuilder // nil when the segment has no trust section
}

// checkSegments verifies the open segments on up to GOMAXPROCS goroutines,
// each with its own decoder, and closes them. Every segment's check holds
// up to a text group (16 MiB) while it runs, so no more than that many are
// in flight; the results come back in the order of open, and progress is
// told each segment, in that order, as the caller starts waiting for it.
func checkSegments(open []*segmentReader, superseded map[string]bool, progress func(string)) ([]segCheck, error) {
	checks := make([]segCheck, len(open))
	done := make([]chan struct{}, len(open))
	for i := range done {
		done[i] = make(chan struct{})
	}
	next := make(chan int, len(open))
	for i := range open {
		next <- i
	}
	close(next)
	workers := min(len(open), max(1, runtime.GOMAXPROCS(0)))
	decs := make([]*zstd.Decoder, workers)
	for w := range decs {
		dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
		if err != nil {
			for _, d := range decs[:w] {
				d.Close()
			}
			for _, r := range open {
				r.close()
			}
			return nil, err
		}
		decs[w] = dec
	}
	for _, dec := range decs {
		go func() {
			defer dec.Close()
			for i := range next {
				checks[i] = checkSegment(open[i], dec, superseded)
				close(done[i])
			}
		}()
	}
	for i, r := range open {
		if progress != nil {
			progress(r.f.Name())
		}
		<-done[i]
	}
	return checks, nil
}

// checkSegment verifies r and, when r is covered by tamper evidence and
// not an input a compaction superseded, recomputes its Merkle roots in the
// same pass over the text; it closes r.
func checkSegment(r *segmentReader, dec *zstd.Decoder, superseded map[string]bool) segCheck {
	defer r.close()
	c := segCheck{path: r.f.Name(), size: r.size, meta: &r.meta}
	if r.meta.Trust != nil && !superseded[c.path] {
		// A failure to read the prints is damage the check reports.
		c.roots, _ = newRootsBuilder(r, dec)
	}
	c.damaged = verifyWithRoots(r, dec, c.roots)
	return c
}
