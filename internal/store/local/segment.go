package local

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/klauspost/compress/zstd"

	"github.com/kubetrail/kubetrail/internal/audit"
	"github.com/kubetrail/kubetrail/internal/store/textcodec"
	"github.com/kubetrail/kubetrail/internal/vfs"
)

// A segment is an immutable file holding the events of a contiguous range of
// WAL segments, in arrival order (docs/adr/0001-storage.md). Format v5
// (docs/adr/0006-segment-v3.md, docs/adr/0014-segment-v4-stored-order.md,
// docs/adr/0025-segment-v5.md):
//
//	magic   "KTSEG05\n"
//	text    the events' stored bytes (stored forms are one line). The
//	        events are cut, in arrival order, into groups of up to
//	        groupBytes; within a group they are stored sorted by the
//	        columns in sortBy (stably: ties keep arrival order), as one
//	        textcodec group (internal/store/textcodec: templates, typed
//	        values in rows, bodies in frames of their own): its head (the
//	        templates), then its blocks of blockEvents events each, every
//	        part with its CRC-32C. Similar events side by side compress a
//	        quarter better than in arrival order. After a group's blocks,
//	        its keys: a zstd frame giving
//	        each event, in arrival order, the rank of its sort key among
//	        the group's (see appendGroupKeys), from which a reader finds
//	        where any event is stored in one pass, without sorting.
//	columns per column (see Column), one of two kinds:
//	        ids:      a zstd frame of its sorted dictionary with each value's
//	                  event count, and a zstd frame of one id per event
//	        postings: (large dictionaries) an index of chunks, then the
//	                  chunks: zstd frames of a run of the sorted dictionary,
//	                  each value with its count and its events' ordinals, so
//	                  that one value is found and its events listed by
//	                  reading a few KiB
//	        then the event time and receive time columns (zigzag deltas)
//	        and each event's stored length, each a zstd frame of byte
//	        planes (see appendPlanes)
//	prints  (docs/adr/0018) the events' leaf prints, a zstd frame
//	auditid (docs/adr/0022) the audit ID table, a zstd frame (auditids.go):
//	        each event's 24-bit print by ordinal (v4, and v5 before
//	        2026-12-05: 32-bit prints sorted, with their ordinals)
//	meta    binary segmentMeta (footer.go)
//	trailer meta length uint32 little endian, magic "KTSEGEND"
//
// Format v4 ("KTSEG04\n") is v5 with each group's text as the lines
// themselves, each followed by '\n', in zstd frames ("blocks") of up to
// blockBytes, and no head. Format v3 ("KTSEG03\n") is v4 without the
// groups' keys: readers sort
// the group's ids of the sortBy columns again, and check the result
// against the group's order hash. It is still read, and so is format v2
// ("KTSEG02\n", docs/adr/0003-segment-columns.md):
// 4 MiB blocks in arrival order, every column of the ids kind without
// counts (large dictionaries with a Bloom filter after the ids), no length
// column, and a JSON meta.
//
// Segments are written to a temporary name, synced and renamed, so a reader
// never sees a half-written one. The folder's MANIFEST (manifest.go,
// docs/adr/0007-segment-damage-and-manifest.md) lists the segments that
// must exist, so that a deleted one is reported. Every read checks what it
// reads (the frames' checksums, the meta's CRC-32C, the magic, the chunk
// indexes against their chunks, the order hashes) and fails with a
// SegmentError naming the file and the part.
const (
	segMagic   = "KTSEG05\n"
	segTrailer = "KTSEGEND"
	segSuffix  = ".kts"
	segVersion = 5
	// groupBytes bounds a group's stored bytes: a reader holds the
	// decompressed blocks of one group at most while it puts their events
	// back in arrival order. Sorting whole 64 MiB segments compressed 6%
	// better than 16 MiB groups, but would hold four times the memory.
	groupBytes = 16 << 20
	// blockBytes bounds the bytes of a block: what reading one event costs.
	// Sorted, 1 MiB blocks compress as well as 4 MiB ones; 384 KiB blocks
	// take 2.2% more room than 1 MiB ones, 256 KiB blocks 4.6% (and 8%
	// less CPU for an investigation than 384 KiB), 128 KiB 11.5%
	// (docs/adr/0014-segment-v4-stored-order.md).
	blockBytes = 384 << 10
	// blockEvents is the number of events in a v5 block: what reading
	// one event decompresses. 256 rather than 1024: reading one event of
	// an open group costs 32 µs rather than 118, 1000 scattered events
	// 9 ms rather than 30 at 2M, for 6% more room (docs/adr/0023, 0025).
	blockEvents = 256
)

// textLayout is the textcodec layout of a v5 group's text
// (docs/adr/0025-segment-v5.md).
func textLayout(perBlock int) textcodec.Options {
	return textcodec.Options{BlockEvents: perBlock, Types: true, URI: true, Opaque: true, Rows: true, BodiesApart: true}
}

// sortBy are the columns a v3 or v4 segment's groups are sorted by.
var sortBy = []Column{ColUser, ColVerb, ColResource}

type segmentMeta struct {
	Version  int         `json:"version"`
	WALFirst uint64      `json:"walFirst"`
	WALLast  uint64      `json:"walLast"`
	Count    int         `json:"count"`
	RawBytes int64       `json:"rawBytes"`
	MinTime  int64       `json:"minTime"`
	MaxTime  int64       `json:"maxTime"`
	Clusters []string    `json:"clusters"`
	Blocks   []blockMeta `json:"blocks"`
	// Columns are in Column order; Time and Received are the event time
	// and receive time columns.
	Columns  []columnMeta `json:"columns"`
	Time     columnMeta   `json:"time"`
	Received columnMeta   `json:"received"`
	// Parts, in a compacted segment, say where the events of each WAL
	// segment it holds are, so that a reader that listed a WAL segment
	// before it was sealed and compacted reads just its events. A segment
	// sealed from one WAL segment has none: it is one part.
	Parts []walPart `json:"parts,omitempty"`
	// Groups (v3) cut the events into runs stored sorted by SortBy; each
	// group's blocks follow the previous group's. A v2 segment has none:
	// its blocks hold events in arrival order.
	Groups []groupMeta `json:"-"`
	SortBy []Column    `json:"-"`
	// Lengths (v3) is the column of the events' stored lengths.
	Lengths columnMeta `json:"-"`
	// Trust (v4, docs/adr/0016) holds each part's Merkle root and the
	// chain head before the first; nil in segments written before.
	Trust *segTrust `json:"-"`
	// AuditOff and AuditLen locate the audit ID table (auditids.go,
	// docs/adr/0022); zero in segments written before.
	AuditOff, AuditLen int64 `json:"-"`
}

// groupMeta is one group of a v3 segment: the events of ordinals [First,
// First+Count), stored sorted in blocks [Block0, Block0+Blocks).
type groupMeta struct {
	First, Count     int
	RawBytes         int64
	MinTime, MaxTime int64
	Block0, Blocks   int
	// Order is orderHash of the group's storage order, to check the order
	// a reader computes from the columns (v3) or from the keys (v4).
	Order uint64
	// KeysOff and KeysLen locate the group's keys frame (v4).
	KeysOff, KeysLen int64
	// HeadOff and HeadLen locate the group's text head (v5): the
	// textcodec head with the group's templates, before its blocks.
	HeadOff, HeadLen int64
}

// walPart is where one WAL segment's events are in a compacted segment.
type walPart struct {
	WAL   uint64 `json:"wal"`
	First int    `json:"first"` // segment ordinal of its first event
	Count int    `json:"count"`
}

// parts returns where each WAL segment's events are, in order: the
// segment's Parts, or, for a segment sealed from one WAL segment, all of
// it.
func (m *segmentMeta) parts() []walPart {
	if len(m.Parts) == 0 {
		return []walPart{{WAL: m.WALFirst, First: 0, Count: m.Count}}
	}
	return m.Parts
}

// part returns the ordinals [lo, hi) of WAL segment seq's events.
func (m *segmentMeta) part(seq uint64) (lo, hi int, ok bool) {
	if len(m.Parts) == 0 {
		if m.WALFirst == seq && m.WALLast == seq {
			return 0, m.Count, true
		}
		return 0, 0, false
	}
	for _, p := range m.Parts {
		if p.WAL == seq {
			return p.First, p.First + p.Count, true
		}
	}
	return 0, 0, false
}

// blockMeta is one zstd frame of events' text (v2-v4), or one textcodec
// block (v5) whose RawBytes are its events' stored bytes without
// newlines. In a v3 (v4, v5) segment First
// counts in storage order (the blocks of a group hold the positions [First,
// First+Count) of its sorted events), and MinTime and MaxTime are not kept.
type blockMeta struct {
	Off      int64 `json:"off"`
	Len      int64 `json:"len"`
	First    int   `json:"first"` // segment ordinal of the block's first event
	Count    int   `json:"count"`
	RawBytes int64 `json:"rawBytes"`
	MinTime  int64 `json:"minTime"`
	MaxTime  int64 `json:"maxTime"`
}

func segmentName(first, last uint64) string {
	return fmt.Sprintf("%016d-%016d%s", first, last, segSuffix)
}

// segmentRange parses a segment file name.
func segmentRange(name string) (first, last uint64, ok bool) {
	if !strings.HasSuffix(name, segSuffix) {
		return 0, 0, false
	}
	a, b, found := strings.Cut(strings.TrimSuffix(name, segSuffix), "-")
	if !found {
		return 0, 0, false
	}
	f, err1 := strconv.ParseUint(a, 10, 64)
	l, err2 := strconv.ParseUint(b, 10, 64)
	return f, l, err1 == nil && err2 == nil && f <= l
}

type segmentFile struct {
	path        string
	first, last uint64
	r           *segmentReader // set once opened by openSnapshot
}

// listSegments returns the segments that hold events, by first WAL segment:
// every segment file except those a compacted segment supersedes.
func listSegments(fs vfs.FS, dir string) ([]segmentFile, error) {
	all, err := listSegmentFiles(fs, dir)
	live, _ := splitSuperseded(all)
	return live, err
}

// listSegmentFiles returns every segment file, superseded ones included.
func listSegmentFiles(fs vfs.FS, dir string) ([]segmentFile, error) {
	ents, err := fs.ReadDir(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	var out []segmentFile
	for _, e := range ents {
		if f, l, ok := segmentRange(e.Name()); ok {
			out = append(out, segmentFile{path: filepath.Join(dir, e.Name()), first: f, last: l})
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].first != out[j].first {
			return out[i].first < out[j].first
		}
		return out[i].last > out[j].last
	})
	return out, nil
}

// splitSuperseded separates the segments whose WAL range lies inside
// another segment's from the rest. Compaction renames its output into place
// before it deletes its inputs (docs/adr/0005-compaction.md), so for a
// moment, or after a crash, both are on disk: the output, which holds every
// event of its inputs, wins. A segment sealed from the WAL can never lie
// inside a compacted one, because compaction only merges segments below the
// oldest WAL segment still on disk. segs must be sorted as listSegmentFiles
// sorts them.
func splitSuperseded(segs []segmentFile) (live, superseded []segmentFile) {
	var reach uint64
	for i, s := range segs {
		if i > 0 && s.last <= reach {
			superseded = append(superseded, s)
			continue
		}
		live = append(live, s)
		reach = max(reach, s.last)
	}
	return live, superseded
}

// lockSegments takes a lock (flock on the real file system) on the segments
// folder: shared for a reader while it lists and opens segments, exclusive
// for the writer while it deletes segments (compaction, retention). A directory
// listing that runs while files are renamed in and deleted may miss both
// the new and the old file; under the lock a reader sees, and opens, either
// the inputs of a compaction or its output. Once open, a segment stays
// readable after it is deleted. When the folder cannot be locked (it does
// not exist, or the file system has no flock) the caller goes on unlocked.
func lockSegments(fs vfs.FS, dir string, mode vfs.LockMode) (unlock func()) {
	u, err := fs.Lock(dir, mode)
	if err != nil {
		return func() {}
	}
	return func() { u() }
}

// openSnapshot lists the live segments and opens them all under a shared
// lock, so the set is consistent however compaction and retention change
// the folder meanwhile, and compares the listing with the manifest: the
// segments it lists that are missing come back as Damage. Live segments
// whose WAL ranges overlap, and segments that cannot be opened, fail it.
// The caller must close each segment's r. With a cache, the segments come
// from it (see segCache).
func openSnapshot(fs vfs.FS, dir string, cache *segCache) ([]segmentFile, []Damage, error) {
	unlock := lockSegments(fs, dir, vfs.LockShared)
	defer unlock()
	all, err := listSegmentFiles(fs, dir)
	if err != nil {
		return nil, nil, err
	}
	damage, err := compareManifest(fs, dir, all)
	if err != nil {
		return nil, nil, err
	}
	segs, _ := splitSuperseded(all)
	if o := overlaps(segs); len(o) > 0 {
		return nil, nil, &SegmentError{Path: o[0].Path, Part: "name", Err: errors.New(o[0].Reason)}
	}
	for i := range segs {
		var r *segmentReader
		if cache != nil {
			r, err = cache.open(fs, segs[i].path)
		} else {
			r, err = openSegment(fs, segs[i].path)
		}
		if err != nil {
			closeSnapshot(segs[:i])
			return nil, nil, err
		}
		segs[i].r = r
	}
	if cache != nil {
		cache.keep(segs)
	}
	return segs, damage, nil
}

func closeSnapshot(segs []segmentFile) {
	for _, s := range segs {
		if s.r != nil {
			s.r.close()
		}
	}
}

// segmentWriter builds one segment file.
type segmentWriter struct {
	fs       vfs.FS
	f        vfs.File
	tmp      string
	final    string
	enc      *zstd.Encoder
	meta     segmentMeta
	clusters map[string]int
	cols2    *columnBuilder
	colVals  colRow
	ev       audit.Event
	off      int64
	comp     []byte
	// The open group: its events' lines, where each starts, and its meta.
	group  []byte
	starts []int
	gm     groupMeta
	block  []byte
	layout segLayout
	// lengths holds every event's stored length, in arrival order.
	lengths []uint32
	// tree is the Merkle tree of the open part's events (merkle.go);
	// roots are those of the parts before it.
	tree  merkle
	roots []hash
	// prints holds every event's leaf print, in arrival order.
	prints []byte
	// auditPrints holds every event's audit ID print, in arrival order.
	auditPrints []uint32
	aev         audit.Event
	// text encodes v5 groups' text; lines holds a group's lines in
	// storage order.
	text  *textcodec.Encoder
	lines [][]byte
	// bufs, when not nil, lent the buffers above and gets them back.
	bufs *writerBufs
	// crashAt, set by tests, is asked at each step of finish; true stops
	// there as a crash would, leaving the files as they are.
	crashAt func(step string) bool
}

// errCrash is what a simulated crash returns.
var errCrash = errors.New("simulated crash")

func (w *segmentWriter) crashed(step string) bool { return w.crashAt != nil && w.crashAt(step) }

// segLayout sizes a segment's groups and blocks; zero fields take the
// defaults (groupBytes, blockBytes, blockEvents, segVersion). Tests make
// them small to have many, and write v4 to test what older stores hold.
type segLayout struct {
	groupBytes, blockBytes, blockEvents int
	version                             int
	// sortedAuditTable writes a v5 segment's audit ID table sorted, as
	// v5 segments written before 2026-12-05 hold it (auditids.go).
	sortedAuditTable bool
}

// writerBufs are a segment writer's large buffers, which a sealer or a
// compaction keeps from one segment to the next: allocating a group's 16
// MiB afresh for each segment made imports fault in twice the pages.
type writerBufs struct {
	group, block, comp []byte
	starts             []int
	lengths            []uint32
	lines              [][]byte
	// text encodes v5 groups; made by the first v5 writer. It encodes
	// with EncodeAll only, so it holds no goroutine and needs no Close.
	text    *textcodec.Encoder
	textPer int
}

// newSegmentWriter starts a segment; bufs, when not nil, lends it buffers
// until finish or abort, and must not be used by another writer meanwhile.
func newSegmentWriter(fs vfs.FS, dir string, first, last uint64, enc *zstd.Encoder, layout segLayout, bufs *writerBufs) (*segmentWriter, error) {
	if layout.groupBytes <= 0 {
		layout.groupBytes = groupBytes
	}
	if layout.blockBytes <= 0 {
		layout.blockBytes = blockBytes
	}
	if layout.blockEvents <= 0 {
		layout.blockEvents = blockEvents
	}
	if layout.version == 0 {
		layout.version = segVersion
	}
	if layout.version != 4 && layout.version != segVersion {
		return nil, fmt.Errorf("BUG: segment version %d cannot be written", layout.version)
	}
	final := filepath.Join(dir, segmentName(first, last))
	f, err := createTemp(fs, dir, tempSegPrefix)
	if err != nil {
		return nil, fmt.Errorf("create segment: %w", err)
	}
	w := &segmentWriter{
		fs: fs, f: f, tmp: f.Name(), final: final, enc: enc, layout: layout,
		meta:     segmentMeta{Version: layout.version, WALFirst: first, WALLast: last, SortBy: sortBy},
		clusters: map[string]int{},
		cols2:    newColumnBuilder(),
	}
	if bufs == nil {
		bufs = &writerBufs{}
	}
	if cap(bufs.group) < layout.groupBytes {
		// Room for the event that crosses the bound, as a rule.
		bufs.group = make([]byte, 0, layout.groupBytes+layout.groupBytes/8)
	}
	if layout.version >= 5 && (bufs.text == nil || bufs.textPer != layout.blockEvents) {
		if bufs.text, err = textcodec.NewEncoder(textLayout(layout.blockEvents)); err != nil {
			w.f.Close()
			fs.Remove(w.tmp)
			return nil, err
		}
		bufs.textPer = layout.blockEvents
	}
	w.bufs = bufs
	w.text = bufs.text
	w.group, w.block, w.comp = bufs.group[:0], bufs.block[:0], bufs.comp[:0]
	w.starts, w.lengths, w.lines = bufs.starts[:0], bufs.lengths[:0], bufs.lines[:0]
	magic := segMagic
	if layout.version == 4 {
		magic = segMagicV4
	}
	if _, err := f.Write([]byte(magic)); err != nil {
		w.abort()
		return nil, err
	}
	w.off = int64(len(segMagic))
	return w, nil
}

// tempSegPrefix starts the name of a segment being written; the next Open
// deletes such files (removeTemporary).
const tempSegPrefix = ".tmp-seg-"

// createTemp creates a new file of mode 0600 in dir named prefix and a
// random number, as os.CreateTemp does.
func createTemp(fs vfs.FS, dir, prefix string) (vfs.File, error) {
	for range 10000 {
		name := filepath.Join(dir, prefix+strconv.FormatUint(uint64(rand.Uint32()), 10))
		f, err := fs.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, os.ErrExist) {
			continue
		}
		return f, err
	}
	return nil, &os.PathError{Op: "createtemp", Path: filepath.Join(dir, prefix+"*"), Err: os.ErrExist}
}

// giveBack returns the writer's buffers to its lender.
func (w *segmentWriter) giveBack() {
	if b := w.bufs; b != nil {
		b.group, b.block, b.comp = w.group[:0], w.block[:0], w.comp[:0]
		b.starts, b.lengths = w.starts[:0], w.lengths[:0]
		clear(w.lines)
		b.lines = w.lines[:0]
		w.bufs = nil
		w.group, w.block, w.comp, w.starts, w.lengths, w.lines = nil, nil, nil, nil, nil, nil
	}
}

// add appends an event. With haveCols the writer's columns were built at
// ingest and only the text is added; otherwise the columns are decoded
// from the event's bytes.
func (w *segmentWriter) add(e entry, haveCols bool) error {
	id, ok := w.clusters[e.cluster]
	if !ok {
		id = len(w.meta.Clusters)
		w.clusters[e.cluster] = id
		w.meta.Clusters = append(w.meta.Clusters, e.cluster)
	}
	if bytes.IndexByte(e.raw, '\n') >= 0 {
		return fmt.Errorf("BUG: stored form of an event spans lines")
	}
	if !haveCols {
		if err := audit.DecodeStored(e.raw, &w.ev); err != nil {
			return fmt.Errorf("BUG: %w", err)
		}
		columnValues(e.cluster, &w.ev, &w.colVals)
		w.cols2.add(e.time, e.received, &w.colVals, auditPrint(w.ev.AuditID))
	}
	g := &w.gm
	if g.Count == 0 || e.time < g.MinTime {
		g.MinTime = e.time
	}
	if g.Count == 0 || e.time > g.MaxTime {
		g.MaxTime = e.time
	}
	w.prints = appendLeafPrint(w.prints, w.tree.add(e.raw))
	// The print the columns hold, taken at ingest from the decoded
	// event (or just above); compacted events' from their text.
	p, ok := w.cols2.print(len(w.auditPrints))
	if !ok {
		aid, err := storedAuditID(e.raw, &w.aev)
		if err != nil {
			return fmt.Errorf("BUG: %w", err)
		}
		p = auditPrint(aid)
	}
	w.auditPrints = append(w.auditPrints, p)
	w.starts = append(w.starts, len(w.group))
	w.group = append(w.group, e.raw...)
	w.group = append(w.group, '\n')
	g.Count++
	g.RawBytes += int64(len(e.raw))
	w.lengths = append(w.lengths, uint32(len(e.raw)))
	if len(w.group) >= w.layout.groupBytes {
		return w.flushGroup()
	}
	return nil
}

// flushGroup writes the open group's events, sorted by sortBy, in blocks.
func (w *segmentWriter) flushGroup() error {
	g := &w.gm
	if g.Count == 0 {
		return nil
	}
	m := &w.meta
	g.First = m.Count
	if w.cols2.n < g.First+g.Count {
		return fmt.Errorf("BUG: %d events in the segment, %d in its columns", g.First+g.Count, w.cols2.n)
	}
	order := w.cols2.storageOrder(g.First, g.Count)
	g.Order = orderHash(order)
	g.Block0 = len(m.Blocks)
	if m.Version >= 5 {
		if err := w.writeText(order); err != nil {
			return err
		}
	} else if err := w.writeBlocks(order); err != nil {
		return err
	}
	g.Blocks = len(m.Blocks) - g.Block0
	if err := w.writeKeys(order); err != nil {
		return err
	}
	if m.Count == 0 || g.MinTime < m.MinTime {
		m.MinTime = g.MinTime
	}
	if m.Count == 0 || g.MaxTime > m.MaxTime {
		m.MaxTime = g.MaxTime
	}
	m.Count += g.Count
	m.RawBytes += g.RawBytes
	m.Groups = append(m.Groups, *g)
	*g = groupMeta{}
	w.group, w.starts = w.group[:0], w.starts[:0]
	return nil
}

// line returns the stored bytes of the open group's event o, with its
// newline.
func (w *segmentWriter) line(o int32) []byte {
	end := len(w.group)
	if int(o)+1 < len(w.starts) {
		end = w.starts[o+1]
	}
	return w.group[w.starts[o]:end]
}

// writeText writes the open group's text as a v5 group: one textcodec
// group of its lines in storage order, its head first, then its blocks.
func (w *segmentWriter) writeText(order []int32) error {
	g := &w.gm
	lines := w.lines[:0]
	for _, o := range order {
		l := w.line(o)
		lines = append(lines, l[:len(l)-1])
	}
	w.lines = lines
	tg := w.text.Encode(lines)
	if _, err := w.f.Write(tg.Head); err != nil {
		return fmt.Errorf("write segment text head: %w", err)
	}
	g.HeadOff, g.HeadLen = w.off, int64(len(tg.Head))
	w.off += g.HeadLen
	per := w.layout.blockEvents
	for bi, blk := range tg.Blocks {
		bm := blockMeta{Off: w.off, Len: int64(len(blk)), First: g.First + bi*per, Count: min(per, len(lines)-bi*per)}
		for _, l := range lines[bi*per : bi*per+bm.Count] {
			bm.RawBytes += int64(len(l))
		}
		if _, err := w.f.Write(blk); err != nil {
			return fmt.Errorf("write segment text block: %w", err)
		}
		w.off += bm.Len
		w.meta.Blocks = append(w.meta.Blocks, bm)
	}
	return nil
}

// writeBlocks writes the open group's text as v4 blocks: its lines in
// storage order, with their newlines, in zstd frames of blockBytes.
func (w *segmentWriter) writeBlocks(order []int32) error {
	g := &w.gm
	bm := blockMeta{First: g.First}
	w.block = w.block[:0]
	for _, o := range order {
		line := w.line(o)
		w.block = append(w.block, line...)
		bm.Count++
		bm.RawBytes += int64(len(line) - 1)
		if len(w.block) >= w.layout.blockBytes {
			if err := w.writeBlock(&bm); err != nil {
				return err
			}
		}
	}
	return w.writeBlock(&bm)
}

// writeKeys writes the open group's keys frame, given its storage order.
func (w *segmentWriter) writeKeys(order []int32) error {
	g := &w.gm
	keys := make([]uint32, len(order))
	rank := uint32(0)
	for p, o := range order {
		if p > 0 && !w.cols2.sameKey(g.First+int(order[p-1]), g.First+int(o)) {
			rank++
		}
		keys[o] = rank
	}
	w.block = appendGroupKeys(w.block[:0], keys)
	w.comp = w.enc.EncodeAll(w.block, w.comp[:0])
	w.block = w.block[:0]
	if _, err := w.f.Write(w.comp); err != nil {
		return fmt.Errorf("write segment group keys: %w", err)
	}
	g.KeysOff, g.KeysLen = w.off, int64(len(w.comp))
	w.off += g.KeysLen
	return nil
}

// writeBlock compresses and writes the block being filled, if it holds
// events, and starts the next one.
func (w *segmentWriter) writeBlock(bm *blockMeta) error {
	if bm.Count == 0 {
		return nil
	}
	w.comp = w.enc.EncodeAll(w.block, w.comp[:0])
	if _, err := w.f.Write(w.comp); err != nil {
		return fmt.Errorf("write segment block: %w", err)
	}
	bm.Off, bm.Len = w.off, int64(len(w.comp))
	w.off += bm.Len
	w.meta.Blocks = append(w.meta.Blocks, *bm)
	*bm = blockMeta{First: bm.First + bm.Count}
	w.block = w.block[:0]
	return nil
}

// writePrints writes the events' leaf prints, when the segment has a
// trust section, as one zstd frame after the columns.
func (w *segmentWriter) writePrints() error {
	if w.meta.Trust == nil || w.meta.Count == 0 {
		return nil
	}
	if len(w.prints) != w.meta.Count*leafPrintBytes {
		return fmt.Errorf("BUG: %d events in the segment, %d leaf prints", w.meta.Count, len(w.prints)/leafPrintBytes)
	}
	w.comp = w.enc.EncodeAll(w.prints, w.comp[:0])
	if _, err := w.f.Write(w.comp); err != nil {
		return fmt.Errorf("write segment leaf prints: %w", err)
	}
	t := *w.meta.Trust
	t.PrintsOff, t.PrintsLen = w.off, int64(len(w.comp))
	w.meta.Trust = &t
	w.off += t.PrintsLen
	return nil
}

// writeAuditTable writes the audit ID table (auditids.go) as one zstd
// frame after the leaf prints: by ordinal in a v5 segment, sorted in v4.
func (w *segmentWriter) writeAuditTable() error {
	if w.meta.Count == 0 {
		return nil
	}
	if len(w.auditPrints) != w.meta.Count {
		return fmt.Errorf("BUG: %d events in the segment, %d audit id prints", w.meta.Count, len(w.auditPrints))
	}
	table := appendAuditTable
	if w.meta.Version >= 5 && !w.layout.sortedAuditTable {
		table = appendAuditTableByOrdinal
	}
	w.comp = w.enc.EncodeAll(table(nil, w.auditPrints), w.comp[:0])
	if _, err := w.f.Write(w.comp); err != nil {
		return fmt.Errorf("write segment audit id table: %w", err)
	}
	w.meta.AuditOff, w.meta.AuditLen = w.off, int64(len(w.comp))
	w.off += w.meta.AuditLen
	return nil
}

// finish writes the meta, syncs, and renames the file into place.
func (w *segmentWriter) finish(noSync bool) (string, error) {
	if err := w.flushGroup(); err != nil {
		w.abort()
		return "", err
	}
	if w.cols2.n != w.meta.Count {
		w.abort()
		return "", fmt.Errorf("BUG: %d events in the segment, %d in its columns", w.meta.Count, w.cols2.n)
	}
	cols, metas, times, err := w.cols2.encode(w.enc, w.off, w.lengths)
	w.giveBack()
	if err != nil {
		w.abort()
		return "", err
	}
	if _, err := w.f.Write(cols); err != nil {
		w.abort()
		return "", fmt.Errorf("write segment columns: %w", err)
	}
	w.off += int64(len(cols))
	if err := w.writePrints(); err != nil {
		w.abort()
		return "", err
	}
	if err := w.writeAuditTable(); err != nil {
		w.abort()
		return "", err
	}
	w.meta.Columns = metas
	w.meta.Time, w.meta.Received, w.meta.Lengths = times[0], times[1], times[2]
	tail := w.meta.appendBinary(nil)
	n := len(tail)
	tail = binary.LittleEndian.AppendUint32(tail, uint32(n))
	tail = append(tail, segTrailer...)
	if _, err := w.f.Write(tail); err != nil {
		w.abort()
		return "", fmt.Errorf("write segment: %w", err)
	}
	if w.crashed("written") {
		return "", errCrash
	}
	if !noSync {
		if err := w.f.Sync(); err != nil {
			w.abort()
			return "", fmt.Errorf("sync segment: %w", err)
		}
	}
	if w.crashed("synced") {
		return "", errCrash
	}
	if err := w.f.Close(); err != nil {
		w.fs.Remove(w.tmp)
		return "", err
	}
	if err := w.fs.Rename(w.tmp, w.final); err != nil {
		w.fs.Remove(w.tmp)
		return "", fmt.Errorf("rename segment: %w", err)
	}
	if w.crashed("renamed") {
		return "", errCrash
	}
	if !noSync {
		if err := w.fs.SyncDir(filepath.Dir(w.final)); err != nil {
			return "", fmt.Errorf("sync segments folder: %w", err)
		}
	}
	return w.final, nil
}

func (w *segmentWriter) abort() {
	w.giveBack()
	w.f.Close()
	w.fs.Remove(w.tmp)
}

// segmentReader reads a sealed segment.
type segmentReader struct {
	f    vfs.File
	meta segmentMeta
	size int64
	// metaOff is where the meta starts: the parts before it tile the
	// file from the magic on.
	metaOff int64
	// release, for a segment shared through a segCache, replaces closing
	// the file; decoded keeps what its readers decoded (nil otherwise).
	release func() error
	decoded *decodedChunks
}

func openSegment(fs vfs.FS, path string) (*segmentReader, error) {
	f, err := fs.Open(path)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	r := &segmentReader{f: f, size: st.Size()}
	if err := r.readMeta(); err != nil {
		f.Close()
		return nil, err
	}
	return r, nil
}

// segMagicV2, segMagicV3 and segMagicV4 start the older segments, still
// read.
const (
	segMagicV2 = "KTSEG02\n"
	segMagicV3 = "KTSEG03\n"
	segMagicV4 = "KTSEG04\n"
)

// readMeta reads and checks the magic, the trailer and the meta, and that
// the file's name agrees with the WAL range the meta says it holds (a
// renamed file would be read in the wrong place, or hidden behind another).
func (r *segmentReader) readMeta() error {
	if r.size < int64(len(segMagic)+12) {
		return r.fail("", errors.New("file too short to be a segment: it is cut short"))
	}
	var magic [len(segMagic)]byte
	if err := r.readAt(magic[:], 0); err != nil {
		return r.fail("magic", err)
	}
	if m := string(magic[:]); m != segMagic && m != segMagicV4 && m != segMagicV3 && m != segMagicV2 {
		return r.fail("magic", fmt.Errorf("%q is not a kubetrail segment's", magic[:]))
	}
	var tr [12]byte
	if err := r.readAt(tr[:], r.size-12); err != nil {
		return r.fail("trailer", err)
	}
	if string(tr[4:]) != segTrailer {
		return r.fail("trailer", errors.New("missing: not a kubetrail segment, or cut short"))
	}
	n := int64(binary.LittleEndian.Uint32(tr[:4]))
	if n > r.size-12-int64(len(segMagic)) || n == 0 {
		return r.fail("trailer", errors.New("meta length is impossible"))
	}
	buf := make([]byte, n)
	r.metaOff = r.size - 12 - n
	if err := r.readAt(buf, r.metaOff); err != nil {
		return r.fail("meta", err)
	}
	if err := r.decodeMeta(buf, string(magic[:])); err != nil {
		return r.fail("meta", err)
	}
	if f, l, ok := segmentRange(filepath.Base(r.f.Name())); ok && (f != r.meta.WALFirst || l != r.meta.WALLast) {
		return r.fail("name", fmt.Errorf("it says WAL segments %d-%d, the meta %d-%d: the file was renamed", f, l, r.meta.WALFirst, r.meta.WALLast))
	}
	return nil
}

// decodeMeta decodes the meta of a segment that starts with magic.
func (r *segmentReader) decodeMeta(buf []byte, magic string) error {
	if buf[0] == '{' {
		// v2: JSON, with no checksum.
		if magic != segMagicV2 {
			return errors.New("a v2 meta in a segment whose magic is not v2")
		}
		if err := json.Unmarshal(buf, &r.meta); err != nil {
			return err
		}
		if r.meta.Version != 2 || len(r.meta.Columns) != int(NumColumns) {
			return fmt.Errorf("segment version %d is not supported by this kubetrail", r.meta.Version)
		}
		return nil
	}
	var want uint64
	switch magic {
	case segMagic:
		want = segVersion
	case segMagicV4:
		want = 4
	case segMagicV3:
		want = 3
	default:
		return errors.New("a binary meta in a segment whose magic is v2")
	}
	if v, _ := binary.Uvarint(buf); v != want {
		// The checksum first: a damaged version byte is damage.
		if err := r.meta.decodeBinary(buf); err != nil {
			return err
		}
		return fmt.Errorf("segment version %d is not supported by this kubetrail", v)
	}
	if err := r.meta.decodeBinary(buf); err != nil {
		return err
	}
	if len(r.meta.Columns) != int(NumColumns) {
		return fmt.Errorf("segment has %d columns, this kubetrail knows %d", len(r.meta.Columns), NumColumns)
	}
	return nil
}

func (r *segmentReader) close() error {
	if r.release != nil {
		return r.release()
	}
	return r.f.Close()
}
