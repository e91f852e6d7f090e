package local

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/kubetrail/kubetrail/internal/pipeline"
	"github.com/kubetrail/kubetrail/internal/vfs"
	"github.com/kubetrail/kubetrail/internal/wal"
)

// Compaction says which segments to merge (docs/adr/0005-compaction.md).
// A slow cluster, or a server that restarts often, seals many small
// segments: every query opens each one and tests its dictionaries, and
// small dictionaries and blocks compress worse. Compaction merges runs of
// adjacent small segments into one.
type Compaction struct {
	// Below is the size on disk under which a segment is small. Adjacent
	// small segments are merged into one of at most Below bytes; 0 turns
	// compaction off.
	Below int64
	// MaxSpan bounds the event-time range of a merged segment. Retention
	// by age deletes whole segments once their newest event is too old, so
	// a segment spanning weeks would keep its oldest events weeks past
	// their age. 0 means DefaultCompactSpan.
	MaxSpan time.Duration
}

// DefaultCompactBelow is the default of Compaction.Below: a WAL segment
// filled to its default 64 MiB seals into a segment of about 5 MiB, which
// is left alone; the segments sealed by time (SealAfter) or by a restart
// are merged.
const DefaultCompactBelow = 4 << 20

// DefaultCompactSpan is the default of Compaction.MaxSpan.
const DefaultCompactSpan = 24 * time.Hour

// CompactResult says what one compaction pass did.
type CompactResult struct {
	// Inputs segments were merged into Outputs segments.
	Inputs, Outputs int
	// BytesIn and BytesOut are their sizes on disk.
	BytesIn, BytesOut int64
}

// segInfo is what planning needs of a segment.
type segInfo struct {
	segmentFile
	size       int64
	minT, maxT int64
}

// planCompaction picks the runs of segments to merge. segs are adjacent
// segments in WAL order. A run is merged when it has at least two
// segments, fits in c.Below and c.MaxSpan, and its largest segment is at
// most half of it: a segment is rewritten only into one at least twice its
// size, so each event is rewritten at most log2(Below / smallest) times, and
// a large segment is not rewritten to add a few small ones to it. From each
// start the longest such run is taken.
func planCompaction(segs []segInfo, c Compaction) [][]segInfo {
	span := c.MaxSpan
	if span <= 0 {
		span = DefaultCompactSpan
	}
	var groups [][]segInfo
	for i := 0; i < len(segs); {
		best := 0
		var total, largest int64
		var minT, maxT int64
		for j := i; j < len(segs); j++ {
			s := segs[j]
			if s.size >= c.Below {
				break
			}
			if j == i {
				minT, maxT = s.minT, s.maxT
			} else {
				minT, maxT = min(minT, s.minT), max(maxT, s.maxT)
			}
			total += s.size
			largest = max(largest, s.size)
			if total > c.Below || maxT-minT > span.Microseconds() {
				break
			}
			if j > i && 2*largest <= total {
				best = j - i + 1
			}
		}
		if best >= 2 {
			groups = append(groups, segs[i:i+best])
			i += best
			continue
		}
		i++
	}
	return groups
}

// Compact merges runs of small segments (see Compaction) and returns what
// it did. Only segments below the oldest WAL segment still on disk are
// merged: the WAL segments between them are sealed or were empty, so the
// merged segment's WAL range holds exactly their events. Each merge writes
// the new segment under a temporary name, syncs it, renames it into place,
// syncs the folder, and only then deletes its inputs; a crash at any point
// leaves either the inputs or the output (plus inputs that readers and the
// next Open ignore), never both counted and never neither. Readers that
// opened the inputs keep reading them. Compact runs one at a time with
// Enforce.
func (db *DB) Compact(ctx context.Context, c Compaction) (CompactResult, error) {
	var res CompactResult
	if c.Below <= 0 {
		return res, nil
	}
	db.maintMu.Lock()
	defer db.maintMu.Unlock()
	if db.closed.Load() {
		return res, pipeline.ErrClosed
	}
	if err := db.removeSuperseded(); err != nil {
		return res, err
	}
	// The WAL first: a WAL segment missing from this listing was sealed
	// before it went, so its segment is in the listing that follows.
	walSegs, err := wal.ListSegmentsFS(db.fs, filepath.Join(db.dir, walDir))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return res, err
	}
	segs, err := listSegments(db.fs, filepath.Join(db.dir, segmentDir))
	if err != nil {
		return res, err
	}
	oldest := uint64(math.MaxUint64)
	if len(walSegs) > 0 {
		oldest = walSegs[0]
	}
	var settled []segmentFile
	for _, s := range segs {
		if s.last < oldest {
			settled = append(settled, s)
		}
	}
	infos, err := db.segInfos(settled)
	if err != nil {
		return res, err
	}
	groups := planCompaction(infos, c)
	if len(groups) == 0 {
		return res, nil
	}
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1))
	if err != nil {
		return res, err
	}
	defer enc.Close()
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
	if err != nil {
		return res, err
	}
	defer dec.Close()
	bufs := &writerBufs{}
	t0 := time.Now()
	for _, g := range groups {
		if ctx.Err() != nil || db.closed.Load() {
			break
		}
		out, err := db.merge(g, enc, dec, bufs)
		if err != nil {
			return res, err
		}
		res.Inputs += len(g)
		res.Outputs++
		for _, s := range g {
			res.BytesIn += s.size
		}
		res.BytesOut += out
		db.stats.Compacted.Add(int64(len(g)))
	}
	if res.Outputs > 0 {
		db.log.Info("compacted small segments", "segments", res.Inputs, "into", res.Outputs,
			"bytes_before", res.BytesIn, "bytes_after", res.BytesOut, "took", time.Since(t0).Round(time.Millisecond))
	}
	return res, nil
}

// merge writes one segment holding the events of g, in order, swaps it in
// and deletes g's files. It returns the new segment's size.
func (db *DB) merge(g []segInfo, enc *zstd.Encoder, dec *zstd.Decoder, bufs *writerBufs) (int64, error) {
	segDir := filepath.Join(db.dir, segmentDir)
	w, err := newSegmentWriter(db.fs, segDir, g[0].first, g[len(g)-1].last, enc, db.opts.layout, bufs)
	if err != nil {
		return 0, err
	}
	w.crashAt = db.crashAt
	for _, in := range g {
		if err := w.addSegment(in.path, dec); err != nil {
			w.abort()
			return 0, fmt.Errorf("compact %s: %w", in.path, err)
		}
	}
	olds := make([]string, len(g))
	for i, s := range g {
		olds[i] = s.path
	}
	trust, err := mergedTrust(db.fs, g, w.roots)
	if err != nil {
		w.abort()
		return 0, fmt.Errorf("compact: %w", err)
	}
	w.meta.Trust = trust
	final, err := w.finish(db.opts.NoSync)
	if err != nil {
		if _, serr := db.fs.Stat(w.final); serr == nil && !errors.Is(err, errCrash) {
			// In place but not known durable: readers already prefer it,
			// so de-duplication must look in it; the next pass deletes the
			// inputs.
			db.dd.replaceSegments(olds, w.final, w.meta.MinTime, w.meta.MaxTime)
		}
		return 0, fmt.Errorf("compact: %w", err)
	}
	if w.crashed("published") {
		return 0, errCrash
	}
	db.dd.replaceSegments(olds, final, w.meta.MinTime, w.meta.MaxTime)
	unlock := lockSegments(db.fs, segDir, vfs.LockExclusive)
	// The manifest first: inputs deleted but still listed would be
	// reported missing after a crash.
	if err := updateManifest(db.fs, segDir, []string{final}, olds, db.opts.NoSync); err != nil {
		unlock()
		return 0, fmt.Errorf("compact: %w", err)
	}
	if w.crashed("listed") {
		unlock()
		return 0, errCrash
	}
	for i, p := range olds {
		delete(db.infos, p)
		if err := db.fs.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			unlock()
			return 0, fmt.Errorf("remove compacted segment: %w", err)
		}
		if w.crashed("removed " + strconv.Itoa(i+1)) {
			unlock()
			return 0, errCrash
		}
	}
	unlock()
	// The removals need no folder sync: an input a crash brings back is
	// superseded by the output, which is durable, so readers skip it and
	// the next Open deletes it again; and whatever deletes the output
	// later (retention, another compaction, quarantine) syncs the folder
	// first, which makes these removals durable too. The crash test
	// (crash_test.go) found this sync to be one nothing depends on.
	st, err := db.fs.Stat(final)
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}

// addSegment appends every event of the segment at path: its columns by
// remapping ids (nothing is decoded from JSON), its text block by block.
func (w *segmentWriter) addSegment(path string, dec *zstd.Decoder) error {
	r, err := openSegment(w.fs, path)
	if err != nil {
		return err
	}
	defer r.close()
	var cols [NumColumns]*ColumnData
	for c := Column(0); c < NumColumns; c++ {
		if cols[c], err = r.readColumn(dec, c); err != nil {
			return err
		}
	}
	times, err := r.readTimes(dec, r.meta.Time, nil, nil)
	if err != nil {
		return err
	}
	recvs, err := r.readTimes(dec, r.meta.Received, nil, nil)
	if err != nil {
		return err
	}
	base := w.cols2.n
	switch {
	case len(r.meta.Parts) > 0:
		for _, p := range r.meta.Parts {
			p.First += base
			w.meta.Parts = append(w.meta.Parts, p)
		}
	case r.meta.WALFirst == r.meta.WALLast:
		w.meta.Parts = append(w.meta.Parts, walPart{WAL: r.meta.WALFirst, First: base, Count: r.meta.Count})
	default:
		return fmt.Errorf("BUG: segment holds WAL segments %d-%d but does not say where each is", r.meta.WALFirst, r.meta.WALLast)
	}
	w.cols2.appendColumns(&cols, times, recvs)
	n := 0
	parts := r.meta.parts()
	pi := 0
	err = r.scan(dec, nil, func(e entry) error {
		n++
		if err := w.add(e, true); err != nil {
			return err
		}
		for pi < len(parts) && int(w.tree.n) == parts[pi].Count {
			w.cutPart()
			pi++
		}
		return nil
	})
	if err != nil {
		return err
	}
	if t := r.meta.Trust; t != nil {
		// A segment whose events no longer give the roots sealed with them
		// was altered: compaction must not launder it into a new segment.
		got := w.roots[len(w.roots)-len(parts):]
		for i := range parts {
			if got[i] != t.Roots[i] {
				return fmt.Errorf("the events of WAL segment %d do not give the Merkle root sealed with them: altered since sealed (run kubetrail verify)", parts[i].WAL)
			}
		}
	}
	if n != r.meta.Count || w.cols2.n != base+n {
		return fmt.Errorf("BUG: segment says %d events, its blocks hold %d", r.meta.Count, n)
	}
	return nil
}

// segInfos returns the size and time range of segs, reading each
// segment's meta once per process. The caller holds db.maintMu.
func (db *DB) segInfos(segs []segmentFile) ([]segInfo, error) {
	if db.infos == nil {
		db.infos = map[string]segInfo{}
	}
	out := make([]segInfo, 0, len(segs))
	for _, s := range segs {
		if in, ok := db.infos[s.path]; ok {
			out = append(out, in)
			continue
		}
		r, err := openSegment(db.fs, s.path)
		if err != nil {
			return nil, err
		}
		in := segInfo{segmentFile: s, size: r.size, minT: r.meta.MinTime, maxT: r.meta.MaxTime}
		r.close()
		db.infos[s.path] = in
		out = append(out, in)
	}
	return out, nil
}

// removeSuperseded deletes the inputs of a compaction that stopped (a
// crash, a failed delete) after its output was in place, and lists the
// output in the manifest. A file that is not what its name says (renamed
// into another segment's range) is not deleted but quarantined.
func (db *DB) removeSuperseded() error {
	dir := filepath.Join(db.dir, segmentDir)
	all, err := listSegmentFiles(db.fs, dir)
	if err != nil {
		return err
	}
	live, stale := splitSuperseded(all)
	if len(stale) == 0 {
		return nil
	}
	var keep []segmentFile
	for _, s := range stale {
		r, err := openSegment(db.fs, s.path)
		if err != nil {
			if err := db.quarantineSegment(s.path, err); err != nil {
				return err
			}
			continue
		}
		r.close()
		keep = append(keep, s)
	}
	stale = keep
	unlock := lockSegments(db.fs, dir, vfs.LockExclusive)
	defer unlock()
	var add, remove []string
	for _, s := range live {
		add = append(add, s.path)
	}
	for _, s := range stale {
		remove = append(remove, s.path)
	}
	if err := updateManifest(db.fs, dir, add, remove, db.opts.NoSync); err != nil {
		return err
	}
	for _, s := range stale {
		db.dd.removeSegment(s.path)
		delete(db.infos, s.path)
		if err := db.fs.Remove(s.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove superseded segment: %w", err)
		}
	}
	db.log.Info("removed segments left by an interrupted compaction; a compacted segment holds their events", "segments", len(stale))
	// No folder sync, as in merge: a segment a crash brings back is
	// superseded again, and deleted again.
	return nil
}

// removeTemporary deletes segment files that were being written when the
// last run stopped. Only the process holding LOCK writes them.
func removeTemporary(fs vfs.FS, dir string) error {
	ents, err := fs.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), tempSegPrefix) {
			if err := fs.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
	}
	return nil
}

// RunCompaction runs Compact now and then every interval until ctx ends.
func (db *DB) RunCompaction(ctx context.Context, c Compaction, interval time.Duration) {
	if c.Below <= 0 {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if _, err := db.Compact(ctx, c); err != nil && !errors.Is(err, pipeline.ErrClosed) {
			db.log.Error("compaction", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// cutPart ends the open part's Merkle tree (a compacted segment has one
// per WAL segment it holds).
func (w *segmentWriter) cutPart() {
	w.roots = append(w.roots, w.tree.root())
	w.tree.reset()
}

// mergedTrust is the trust section of the concatenation of g, whose parts'
// roots are roots: the chain goes through a compacted segment exactly as
// through its inputs, so it is linked, with the first input's link, when
// every input was linked and each followed the one before it. Events of
// inputs written before segments had roots get roots now: they are
// covered from their compaction on.
func mergedTrust(fs vfs.FS, g []segInfo, roots []hash) (*segTrust, error) {
	t := &segTrust{Roots: roots, Linked: true}
	var head hash
	for i, in := range g {
		r, err := openSegment(fs, in.path)
		if err != nil {
			return nil, err
		}
		it := r.meta.Trust
		parts := r.meta.parts()
		r.close()
		if it == nil || !it.Linked || (i > 0 && it.Prev != head) {
			t.Linked = false
			continue
		}
		if i == 0 {
			t.Prev = it.Prev
		}
		head = it.head(parts)
	}
	if !t.Linked {
		t.Prev = hash{}
	}
	return t, nil
}
