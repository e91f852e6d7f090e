package local

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"github.com/klauspost/compress/zstd"

	"github.com/kubetrail/kubetrail/internal/audit"
)

// A segment is an immutable file holding the events of a contiguous range of
// WAL segments, in arrival order (docs/adr/0001-storage.md):
//
//	magic   "KTSEG02\n"
//	blocks  zstd frames of up to blockBytes of events' stored bytes, each
//	        followed by '\n' (stored forms are one line), so the text
//	        compresses as the log itself does
//	columns per column (see Column): a zstd frame of its sorted dictionary
//	        and a zstd frame of one id per event; then the event time and
//	        receive time columns as zigzag varint deltas
//	meta    JSON segmentMeta
//	trailer meta length uint32 little endian, magic "KTSEGEND"
//
// Segments are written to a temporary name, synced and renamed, so a reader
// never sees a half-written one.
const (
	segMagic   = "KTSEG02\n"
	segTrailer = "KTSEGEND"
	segSuffix  = ".kts"
	segVersion = 2
	blockBytes = 4 << 20
)

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
}

// walPart is where one WAL segment's events are in a compacted segment.
type walPart struct {
	WAL   uint64 `json:"wal"`
	First int    `json:"first"` // segment ordinal of its first event
	Count int    `json:"count"`
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
func listSegments(dir string) ([]segmentFile, error) {
	all, err := listSegmentFiles(dir)
	live, _ := splitSuperseded(all)
	return live, err
}

// listSegmentFiles returns every segment file, superseded ones included.
func listSegmentFiles(dir string) ([]segmentFile, error) {
	ents, err := os.ReadDir(dir)
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

// lockSegments takes a flock on the segments folder: shared (LOCK_SH) for a
// reader while it lists and opens segments, exclusive (LOCK_EX) for the
// writer while it deletes segments (compaction, retention). A directory
// listing that runs while files are renamed in and deleted may miss both
// the new and the old file; under the lock a reader sees, and opens, either
// the inputs of a compaction or its output. Once open, a segment stays
// readable after it is deleted. When the folder cannot be locked (it does
// not exist, or the file system has no flock) the caller goes on unlocked.
func lockSegments(dir string, how int) (unlock func()) {
	d, err := os.Open(dir)
	if err != nil {
		return func() {}
	}
	for {
		err = syscall.Flock(int(d.Fd()), how)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		d.Close()
		return func() {}
	}
	return func() {
		syscall.Flock(int(d.Fd()), syscall.LOCK_UN)
		d.Close()
	}
}

// openSnapshot lists the live segments and opens them all under a shared
// lock, so the set is consistent however compaction and retention change
// the folder meanwhile. The caller must close each segment's r.
func openSnapshot(dir string) ([]segmentFile, error) {
	unlock := lockSegments(dir, syscall.LOCK_SH)
	defer unlock()
	segs, err := listSegments(dir)
	if err != nil {
		return nil, err
	}
	for i := range segs {
		r, err := openSegment(segs[i].path)
		if err != nil {
			closeSnapshot(segs[:i])
			return nil, err
		}
		segs[i].r = r
	}
	return segs, nil
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
	f        *os.File
	tmp      string
	final    string
	enc      *zstd.Encoder
	meta     segmentMeta
	clusters map[string]int
	block    []byte
	cols2    *columnBuilder
	colVals  colRow
	ev       audit.Event
	bm       blockMeta
	off      int64
	comp     []byte
	// crashAt, set by tests, is asked at each step of finish; true stops
	// there as a crash would, leaving the files as they are.
	crashAt func(step string) bool
}

// errCrash is what a simulated crash returns.
var errCrash = errors.New("simulated crash")

func (w *segmentWriter) crashed(step string) bool { return w.crashAt != nil && w.crashAt(step) }

func newSegmentWriter(dir string, first, last uint64, enc *zstd.Encoder) (*segmentWriter, error) {
	final := filepath.Join(dir, segmentName(first, last))
	f, err := os.CreateTemp(dir, ".tmp-seg-*")
	if err != nil {
		return nil, fmt.Errorf("create segment: %w", err)
	}
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, err
	}
	w := &segmentWriter{
		f: f, tmp: f.Name(), final: final, enc: enc,
		meta:     segmentMeta{Version: segVersion, WALFirst: first, WALLast: last},
		clusters: map[string]int{},
		cols2:    newColumnBuilder(),
	}
	if _, err := f.Write([]byte(segMagic)); err != nil {
		w.abort()
		return nil, err
	}
	w.off = int64(len(segMagic))
	return w, nil
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
	if w.bm.Count == 0 || e.time < w.bm.MinTime {
		w.bm.MinTime = e.time
	}
	if w.bm.Count == 0 || e.time > w.bm.MaxTime {
		w.bm.MaxTime = e.time
	}
	if bytes.IndexByte(e.raw, '\n') >= 0 {
		return fmt.Errorf("BUG: stored form of an event spans lines")
	}
	if !haveCols {
		if err := audit.DecodeStored(e.raw, &w.ev); err != nil {
			return fmt.Errorf("BUG: %w", err)
		}
		columnValues(e.cluster, &w.ev, &w.colVals)
		w.cols2.add(e.time, e.received, &w.colVals)
	}
	w.block = append(w.block, e.raw...)
	w.block = append(w.block, '\n')
	w.bm.Count++
	w.bm.RawBytes += int64(len(e.raw))
	if len(w.block) >= blockBytes {
		return w.flushBlock()
	}
	return nil
}

func (w *segmentWriter) flushBlock() error {
	if w.bm.Count == 0 {
		return nil
	}
	w.comp = w.enc.EncodeAll(w.block, w.comp[:0])
	if _, err := w.f.Write(w.comp); err != nil {
		return fmt.Errorf("write segment block: %w", err)
	}
	w.bm.Off, w.bm.Len, w.bm.First = w.off, int64(len(w.comp)), w.meta.Count
	w.off += int64(len(w.comp))
	m := &w.meta
	if m.Count == 0 || w.bm.MinTime < m.MinTime {
		m.MinTime = w.bm.MinTime
	}
	if m.Count == 0 || w.bm.MaxTime > m.MaxTime {
		m.MaxTime = w.bm.MaxTime
	}
	m.Count += w.bm.Count
	m.RawBytes += w.bm.RawBytes
	m.Blocks = append(m.Blocks, w.bm)
	w.bm = blockMeta{}
	w.block = w.block[:0]
	return nil
}

// finish writes the meta, syncs, and renames the file into place.
func (w *segmentWriter) finish(noSync bool) (string, error) {
	if err := w.flushBlock(); err != nil {
		w.abort()
		return "", err
	}
	cols, metas, tm, rm := w.cols2.encode(w.enc, w.off, nil)
	if _, err := w.f.Write(cols); err != nil {
		w.abort()
		return "", fmt.Errorf("write segment columns: %w", err)
	}
	w.off += int64(len(cols))
	w.meta.Columns, w.meta.Time, w.meta.Received = metas, tm, rm
	meta, err := json.Marshal(&w.meta)
	if err != nil {
		w.abort()
		return "", err
	}
	tail := make([]byte, 0, len(meta)+12)
	tail = append(tail, meta...)
	tail = binary.LittleEndian.AppendUint32(tail, uint32(len(meta)))
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
		os.Remove(w.tmp)
		return "", err
	}
	if err := os.Rename(w.tmp, w.final); err != nil {
		os.Remove(w.tmp)
		return "", fmt.Errorf("rename segment: %w", err)
	}
	if w.crashed("renamed") {
		return "", errCrash
	}
	if !noSync {
		if err := syncDir(filepath.Dir(w.final)); err != nil {
			return "", err
		}
	}
	return w.final, nil
}

func (w *segmentWriter) abort() {
	w.f.Close()
	os.Remove(w.tmp)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// segmentReader reads a sealed segment.
type segmentReader struct {
	f    *os.File
	meta segmentMeta
	size int64
}

func openSegment(path string) (*segmentReader, error) {
	f, err := os.Open(path)
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
		return nil, fmt.Errorf("segment %s: %w", path, err)
	}
	return r, nil
}

func (r *segmentReader) readMeta() error {
	if r.size < int64(len(segMagic)+12) {
		return errors.New("file too short to be a segment")
	}
	var tr [12]byte
	if _, err := r.f.ReadAt(tr[:], r.size-12); err != nil {
		return err
	}
	if string(tr[4:]) != segTrailer {
		return errors.New("no segment trailer: not a kubetrail segment, or cut short")
	}
	n := int64(binary.LittleEndian.Uint32(tr[:4]))
	if n > r.size-12 {
		return errors.New("meta length is impossible")
	}
	buf := make([]byte, n)
	if _, err := r.f.ReadAt(buf, r.size-12-n); err != nil {
		return err
	}
	if err := json.Unmarshal(buf, &r.meta); err != nil {
		return fmt.Errorf("meta: %w", err)
	}
	if r.meta.Version != segVersion || len(r.meta.Columns) != int(NumColumns) {
		return fmt.Errorf("segment version %d is not supported by this kubetrail", r.meta.Version)
	}
	return nil
}

func (r *segmentReader) close() error { return r.f.Close() }

// scan calls fn for each event of the blocks that keep reports true for, in
// order. The entry's raw bytes are valid only during the call.
func (r *segmentReader) scan(dec *zstd.Decoder, keep func(blockMeta) bool, fn func(entry) error) error {
	return r.scanRange(dec, 0, r.meta.Count, keep, fn)
}

// scanRange is scan limited to the events of ordinals [lo, hi).
func (r *segmentReader) scanRange(dec *zstd.Decoder, lo, hi int, keep func(blockMeta) bool, fn func(entry) error) error {
	want := func(b blockMeta) bool {
		return b.First < hi && b.First+b.Count > lo && (keep == nil || keep(b))
	}
	need := false
	for _, b := range r.meta.Blocks {
		if want(b) {
			need = true
		}
	}
	if !need {
		return nil
	}
	cl, err := r.readColumn(dec, ColCluster)
	if err != nil {
		return err
	}
	times, err := r.readTimes(dec, r.meta.Time)
	if err != nil {
		return err
	}
	recvs, err := r.readTimes(dec, r.meta.Received)
	if err != nil {
		return err
	}
	var comp, plain []byte
	for _, b := range r.meta.Blocks {
		if !want(b) {
			continue
		}
		if int64(cap(comp)) < b.Len {
			comp = make([]byte, b.Len)
		}
		comp = comp[:b.Len]
		if _, err := r.f.ReadAt(comp, b.Off); err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("read block at %d: %w", b.Off, err)
		}
		if plain, err = dec.DecodeAll(comp, plain[:0]); err != nil {
			return fmt.Errorf("decompress block at %d: %w", b.Off, err)
		}
		p := plain
		for i := b.First; i < b.First+b.Count; i++ {
			nl := bytes.IndexByte(p, '\n')
			if nl < 0 || i >= len(times) {
				return fmt.Errorf("block at %d: event %d is cut short", b.Off, i)
			}
			if i >= lo && i < hi {
				if err := fn(entry{cluster: cl.Values[cl.IDs[i]], received: recvs[i], time: times[i], raw: p[:nl]}); err != nil {
					return err
				}
			}
			p = p[nl+1:]
		}
		if len(p) != 0 {
			return fmt.Errorf("block at %d: %d trailing bytes", b.Off, len(p))
		}
	}
	return nil
}
