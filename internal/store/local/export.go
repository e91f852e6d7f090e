package local

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"

	"github.com/klauspost/compress/zstd"

	"github.com/kubetrail/kubetrail/internal/vfs"
	"github.com/kubetrail/kubetrail/internal/wal"
)

// Stored is one stored event as a reader sees it.
type Stored struct {
	// Cluster is the cluster the event came from.
	Cluster string
	// Received is when kubetrail received it, unix microseconds.
	Received int64
	// Time is the event's own time (its stage timestamp), unix microseconds.
	Time int64
	// Raw is the event as stored: one line of JSON, a complete Event. It is
	// valid only during the callback.
	Raw []byte
	// Pos is the event's place in the store.
	Pos Pos
}

// Pos is an event's place in the store: the WAL segment it was appended to
// and its ordinal among the events stored in that segment. It never
// changes: sealing keeps the ordinals and compaction records where each
// WAL segment's events went (segment meta Parts), so a position taken from
// a live commit (Committed.Pos) names the same event in every later Scan.
// Positions increase in the order events were stored.
type Pos struct {
	WAL uint64
	Ord int
}

// Less reports whether p comes before q.
func (p Pos) Less(q Pos) bool { return p.WAL < q.WAL || (p.WAL == q.WAL && p.Ord < q.Ord) }

func (p Pos) String() string { return fmt.Sprintf("%d:%d", p.WAL, p.Ord) }

// Follows reports whether p can be the event stored right after the one
// before next (next is the position after it): the same WAL segment's
// next ordinal, or the first event of a later segment. A reader of live
// commits that sees a position that does not follow has missed events,
// and reads them from the store.
func Follows(next, p Pos) bool {
	return p == next || (p.WAL > next.WAL && p.Ord == 0)
}

// IsDamage reports whether err is a *DamageError: a read that left
// damaged data out, and gave everything else.
func IsDamage(err error) bool {
	var de *DamageError
	return errors.As(err, &de)
}

// ScanOptions select what Scan reads.
type ScanOptions struct {
	// Since and Until bound the event time, unix microseconds; 0 means open.
	// Since is inclusive, Until exclusive.
	Since, Until int64
	// Cluster, when set, keeps only that cluster's events.
	Cluster string
	// From, when set, skips the events stored before it: Scan starts at
	// the event at From. Whole segments before it are not read.
	From Pos
	// FS is the file system the folder is read through; nil means the
	// real one.
	FS vfs.FS
	// AuditIDs, when set, let Scan leave out the events of a segment
	// whose audit ID its audit ID table (docs/adr/0022) says is none of
	// these: what is left may still hold others, which the caller must
	// check (`kubetrail prove AUDITID` does).
	AuditIDs []string
	// workers is how many goroutines read the segments' text ahead: 0 for
	// GOMAXPROCS, 1 for none (tests compare the two).
	workers int
}

func (o ScanOptions) keepTime(minT, maxT int64) bool {
	return (o.Since == 0 || maxT >= o.Since) && (o.Until == 0 || minT < o.Until)
}

func (o ScanOptions) keep(e *entry) bool {
	return (o.Since == 0 || e.time >= o.Since) && (o.Until == 0 || e.time < o.Until) &&
		(o.Cluster == "" || e.cluster == o.Cluster)
}

// Scan calls fn for every stored event in arrival order. It reads the folder
// without locking it for writing, so it works while a writer (kubetrail
// serve, tail) has it open: it sees every event that was durable when it
// reached that part of the log, and each event exactly once even when a WAL
// segment is sealed, or segments are compacted or deleted, while it reads.
// It opens every segment first, so a segment compacted away meanwhile is
// still read from the file it opened. A damaged segment fails it with a
// *SegmentError naming the file and part. Damage it can read past (a
// damaged WAL record, segments listed in the manifest but missing, files
// in quarantine) does not stop it: it calls fn for every other event and
// then returns a *DamageError listing what it left out.
func Scan(dir string, opts ScanOptions, fn func(Stored) error) error {
	return scan(dir, opts, fn, func() error { return nil })
}

// ScanBatches is Scan giving the events in batches, in the same order and
// with the same error after them: a batch's Raws stay valid until fn
// returns, so that a caller can write them without copying them. A batch
// holds at most one text group's events (16 MiB of text).
func ScanBatches(dir string, opts ScanOptions, fn func([]Stored) error) error {
	var batch []Stored
	add := func(s Stored) error {
		batch = append(batch, s)
		return nil
	}
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := fn(batch)
		clear(batch) // no Raw kept past its buffer's reuse
		batch = batch[:0]
		return err
	}
	if err := scan(dir, opts, add, flush); err != nil {
		return err
	}
	return flush()
}

// scan is Scan giving each event to give and calling flush once the Raws
// given since the last flush are about to be reused: after each event
// read serially, after each text group read ahead.
func scan(dir string, opts ScanOptions, give func(Stored) error, flush func() error) error {
	fs := opts.FS
	if fs == nil {
		fs = vfs.OS
	}
	if _, err := fs.Stat(dir); err != nil {
		return fmt.Errorf("data folder: %w", err)
	}
	walPath := filepath.Join(dir, walDir)
	segPath := filepath.Join(dir, segmentDir)
	// The WAL first: a WAL segment sealed after this listing is either
	// read from the WAL or, once gone, from the segment that holds it.
	ledger, _, ldamage, err := readLedger(fs, walPath)
	if err != nil {
		return err
	}
	walSegs, err := wal.ListSegmentsFS(fs, walPath)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	segs, missing, err := openSnapshot(fs, segPath, nil)
	if err != nil {
		return err
	}
	defer closeSnapshot(segs)
	lost, err := missingWAL(fs, walPath, ledger, walSegs, segs)
	if err != nil {
		return err
	}
	missing = append(append(missing, ldamage...), lost...)
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
	if err != nil {
		return err
	}
	defer dec.Close()

	// pos is the position of the next event emitted from the WAL; events
	// read from a segment take theirs from its parts.
	var pos Pos
	emit := func(e entry) error {
		p := pos
		pos.Ord++
		if p.Less(opts.From) || !opts.keep(&e) {
			return nil
		}
		return give(Stored{Cluster: e.cluster, Received: e.received, Time: e.time, Raw: e.raw, Pos: p})
	}
	// emitNow is emit for a serial read, whose Raw is valid only now.
	emitNow := func(e entry) error {
		if err := emit(e); err != nil {
			return err
		}
		return flush()
	}
	text := newTextReader(dec)
	var ahead *textAhead
	if opts.workers != 1 && (opts.workers > 1 || runtime.GOMAXPROCS(0) > 1) {
		ahead = newTextAhead(nil, opts.workers)
		defer ahead.stop()
	}
	// readAhead reads runs with ahead, across their segments' ends.
	readAhead := func(runs []scanRun) error {
		return scanAhead(ahead, dec, runs, opts.From.WAL, opts.keepTime, func(part walPart, e entry) error {
			pos = Pos{WAL: part.WAL, Ord: e.ord - part.First}
			return emit(e)
		}, flush)
	}
	readRange := func(r *segmentReader, lo, hi int) error {
		if !opts.keepTime(r.meta.MinTime, r.meta.MaxTime) {
			return nil
		}
		var cands []int32
		if opts.AuditIDs != nil {
			t, err := r.readAuditTable(dec)
			if err != nil {
				return err
			}
			if t != nil {
				cands = t.lookup(opts.AuditIDs, []int32{})
			}
		}
		if cands == nil && ahead != nil {
			return readAhead([]scanRun{{r, lo, hi}})
		}
		for _, part := range r.meta.parts() {
			first, end := max(lo, part.First), min(hi, part.First+part.Count)
			if first >= end || part.WAL < opts.From.WAL {
				continue
			}
			at := func(e entry) error {
				pos = Pos{WAL: part.WAL, Ord: e.ord - part.First}
				return emitNow(e)
			}
			if cands == nil {
				if err := r.scanText(text, dec, first, end, opts.keepTime, at); err != nil {
					return err
				}
				continue
			}
			for _, o := range cands {
				if int(o) < first || int(o) >= end {
					continue
				}
				if err := r.scanRange(dec, int(o), int(o)+1, opts.keepTime, at); err != nil {
					return err
				}
			}
		}
		return nil
	}
	var damage damageList
	for _, d := range missing {
		damage.add(d.Path, d.Reason)
	}
	if err := damage.addQuarantined(fs, dir); err != nil {
		return err
	}
	newest := uint64(0)
	if len(walSegs) > 0 {
		newest = walSegs[len(walSegs)-1]
	}
	srcs := sources(segs, walSegs)
	for i := 0; i < len(srcs); i++ {
		src := srcs[i]
		if src.seg != nil && ahead != nil && opts.AuditIDs == nil {
			// The segments up to the next WAL segment, as one run.
			var runs []scanRun
			for ; i < len(srcs) && srcs[i].seg != nil; i++ {
				r := srcs[i].seg.r
				runs = append(runs, scanRun{r, 0, r.meta.Count})
			}
			i--
			if err := readAhead(runs); err != nil {
				return err
			}
			continue
		}
		if src.seg != nil {
			if err := readRange(src.seg.r, 0, src.seg.r.meta.Count); err != nil {
				return err
			}
			continue
		}
		seq := src.wal
		if seq < opts.From.WAL {
			continue
		}
		path := wal.SegmentPath(walPath, seq)
		pos = Pos{WAL: seq}
		_, err := scanWAL(fs, path, seq == newest, &damage, emitNow)
		if errors.Is(err, os.ErrNotExist) {
			// Sealed since we listed: read its events from the segment
			// that now holds them, which compaction may have merged.
			err = readSealed(fs, segPath, seq, readRange)
		}
		if err != nil {
			return err
		}
	}
	return damage.err()
}

// readSealed calls read with the segment holding WAL segment seq's events
// and their ordinals. A WAL segment is removed only once a segment holds
// its events, or when it had none; the segment may since have been deleted
// by retention. In both of those cases there is nothing to read.
func readSealed(fs vfs.FS, segPath string, seq uint64, read func(r *segmentReader, lo, hi int) error) error {
	unlock := lockSegments(fs, segPath, vfs.LockShared)
	segs, err := listSegments(fs, segPath)
	var r *segmentReader
	for _, s := range segs {
		if err == nil && s.first <= seq && seq <= s.last {
			r, err = openSegment(fs, s.path)
			break
		}
	}
	unlock()
	if err != nil || r == nil {
		return err
	}
	defer r.close()
	lo, hi, ok := r.meta.part(seq)
	if !ok {
		return nil
	}
	return read(r, lo, hi)
}

// source is one place events are read from, in arrival order: a sealed
// segment, or a WAL segment that no segment holds yet.
type source struct {
	seg *segmentFile
	wal uint64
}

// sources orders segments and unsealed WAL segments by the WAL sequence
// they start at. Segments are sealed concurrently, so a later WAL segment
// can be sealed before an earlier one.
func sources(segs []segmentFile, walSegs []uint64) []source {
	var out []source
	covered := func(seq uint64) bool {
		for _, s := range segs {
			if s.first <= seq && seq <= s.last {
				return true
			}
		}
		return false
	}
	for i := range segs {
		out = append(out, source{seg: &segs[i]})
	}
	for _, w := range walSegs {
		if !covered(w) {
			out = append(out, source{wal: w})
		}
	}
	first := func(s source) uint64 {
		if s.seg != nil {
			return s.seg.first
		}
		return s.wal
	}
	sort.SliceStable(out, func(i, j int) bool { return first(out[i]) < first(out[j]) })
	return out
}
