package local

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"sort"

	"github.com/klauspost/compress/zstd"

	"github.com/kubetrail/kubetrail/internal/store/textcodec"
)

// sortedOrder returns 0..n-1 sorted by keys[0], then keys[1], ..., then by
// itself: a stable sort by the keys. keys[k][i] is event i's key k, below
// sizes[k]. It is a least-significant-key-first counting sort: O(n) per key.
func sortedOrder(n int, keys [][]uint32, sizes []int) []int32 {
	order := make([]int32, n)
	for i := range order {
		order[i] = int32(i)
	}
	tmp := make([]int32, n)
	for k := len(keys) - 1; k >= 0; k-- {
		key := keys[k]
		at := make([]int, sizes[k]+1)
		for _, o := range order {
			at[key[o]+1]++
		}
		for v := 1; v < len(at); v++ {
			at[v] += at[v-1]
		}
		for _, o := range order {
			tmp[at[key[o]]] = o
			at[key[o]]++
		}
		order, tmp = tmp, order
	}
	return order
}

// orderHash is FNV-1a over a group's storage order.
func orderHash(order []int32) uint64 {
	h := uint64(14695981039346656037)
	for _, o := range order {
		for s := 0; s < 32; s += 8 {
			h ^= uint64(byte(o >> s))
			h *= 1099511628211
		}
	}
	return h
}

// appendGroupKeys appends a v4 group's keys frame content: each event's
// key, in arrival order, is the rank of its sort key among the distinct
// sort keys of the group. A byte says how many bytes a key takes (1, 2 or
// 4, as the largest needs), then the keys follow as byte planes (the
// first byte of every key, then the second, ...), which zstd compresses
// better than whole keys side by side.
func appendGroupKeys(dst []byte, keys []uint32) []byte {
	top := uint32(0)
	for _, k := range keys {
		top = max(top, k)
	}
	width := 1
	switch {
	case top >= 1<<16:
		width = 4
	case top >= 1<<8:
		width = 2
	}
	dst = append(dst, byte(width))
	for s := 0; s < 8*width; s += 8 {
		for _, k := range keys {
			dst = append(dst, byte(k>>s))
		}
	}
	return dst
}

// groupPositions turns a v4 group's keys frame content into each event's
// position among the group's stored events: the events of a smaller key
// first, those of one key in arrival order, as the writer stored them. A
// counting sort's first half: count each key, add the counts up, then give
// each event the next position of its key. pos is reused when large enough,
// and so are s's buffers when s is not nil.
func groupPositions(b []byte, n int, pos []int32, s *posScratch) ([]int32, error) {
	if len(b) == 0 {
		return nil, errors.New("keys frame is empty")
	}
	width := int(b[0])
	b = b[1:]
	if (width != 1 && width != 2 && width != 4) || len(b) != width*n {
		return nil, fmt.Errorf("keys frame holds %d bytes of %d-byte keys for %d events", len(b), width, n)
	}
	if cap(pos) < n {
		pos = make([]int32, n)
	}
	pos = pos[:n]
	if width == 1 {
		// The common case (at most 256 keys in a group), without
		// allocating or assembling keys.
		var at [257]int32
		for _, k := range b {
			at[int(k)+1]++
		}
		for k := 1; k < len(at); k++ {
			at[k] += at[k-1]
		}
		for i, k := range b {
			pos[i] = at[k]
			at[k]++
		}
		return pos, nil
	}
	if s == nil {
		s = &posScratch{}
	}
	// Both are zeroed here: the keys are assembled with |=, the counts
	// with ++.
	keys := s.keys(n)
	for j := 0; j < width; j++ {
		for i, c := range b[j*n : (j+1)*n] {
			keys[i] |= uint32(c) << (8 * j)
		}
	}
	// A key is a rank among at most n keys.
	at := s.counts(n + 1)
	for _, k := range keys {
		if int(k) >= n {
			return nil, fmt.Errorf("key %d of %d events", k, n)
		}
		at[k+1]++
	}
	for k := 1; k <= n; k++ {
		at[k] += at[k-1]
	}
	for i, k := range keys {
		pos[i] = at[k]
		at[k]++
	}
	return pos, nil
}

// posScratch keeps groupPositions' buffers for keys wider than a byte
// from one group to the next: two group-sized allocations a group, freshly
// faulted in, were a third of its cost in a short process.
type posScratch struct {
	k []uint32
	c []int32
}

// keys returns n zeroed keys.
func (s *posScratch) keys(n int) []uint32 {
	if cap(s.k) < n {
		s.k = make([]uint32, n)
	}
	s.k = s.k[:n]
	clear(s.k)
	return s.k
}

// counts returns n zeroed counts.
func (s *posScratch) counts(n int) []int32 {
	if cap(s.c) < n {
		s.c = make([]int32, n)
	}
	s.c = s.c[:n]
	clear(s.c)
	return s.c
}

// idsFunc returns a column's ids for every event of a segment; the slice
// must stay valid while the segment is being read.
type idsFunc func(Column) ([]uint32, error)

// textReader reads events' text from segments, keeping its buffers from
// call to call. It is not safe for concurrent use.
type textReader struct {
	dec *zstd.Decoder
	// noBodies writes v5 events' request and response bodies as null
	// and never decompresses them: for readers of metadata only.
	noBodies bool
	comp     []byte
	keys     []byte   // a v4 group's keys frame, decompressed
	plain    [][]byte // a group's blocks, decompressed (v3); one block (v2)
	lines    [][]byte // a group's events' lines, by storage position
	pos      []int32  // a group's storage position of each event
	posBufs  posScratch
	need     []bool
	// A v5 group's text: the head read last, the heads opened so far
	// (heads), its lines read, where each storage position's line is in
	// text, and the positions wanted.
	head    *textcodec.Reader
	headOff int64
	headSeg *segmentReader
	heads   map[headKey]*textcodec.Reader
	// headBytes is the heads' meta bytes together (MetaBytes).
	headBytes int
	text      []byte
	span      [][2]int32
	ps        []int
	// whole, when set, is the whole group's read that the read of a part
	// of it stands for in its checks (textJob.whole); others holds the
	// blocks that only the other parts read, each with one of its events.
	whole  *wholeGroup
	others [][2]int
	// part says t reads a part of a group read in parts (textJob.inParts).
	part bool
}

// wholeGroup is what a group's read wants, when it is read in parts: its
// events of want, or when want is nil of [lo, hi). A part reads a block
// whole only by chance, so the blocks' byte counts are seldom checked
// then; their checksums always are.
type wholeGroup struct {
	lo, hi int
	want   []int32
}

func newTextReader(dec *zstd.Decoder) *textReader { return &textReader{dec: dec} }

// readBlock decompresses block b into t.plain[k].
func (t *textReader) readBlock(r *segmentReader, b blockMeta, k int) ([]byte, error) {
	for len(t.plain) <= k {
		t.plain = append(t.plain, nil)
	}
	p, err := r.readBlockText(t.dec, b, &t.comp, t.plain[k][:0])
	if err != nil {
		return nil, err
	}
	t.plain[k] = p
	return p, nil
}

func blockPart(b blockMeta) string { return fmt.Sprintf("text block at %d", b.Off) }

// readBlockText reads and decompresses text block b, appending to dst and
// reading through *comp, and checks that it holds as many bytes as the
// meta says its lines do.
func (r *segmentReader) readBlockText(dec *zstd.Decoder, b blockMeta, comp *[]byte, dst []byte) ([]byte, error) {
	if int64(cap(*comp)) < b.Len {
		*comp = make([]byte, b.Len)
	}
	*comp = (*comp)[:b.Len]
	if err := r.readAt(*comp, b.Off); err != nil {
		return nil, r.fail(blockPart(b), err)
	}
	p, err := decodeFrame(dec, *comp, dst)
	if err != nil {
		return nil, r.fail(blockPart(b), err)
	}
	if want := b.RawBytes + int64(b.Count); int64(len(p)-len(dst)) != want {
		return nil, r.fail(blockPart(b), fmt.Errorf("%d bytes, the meta says %d", len(p)-len(dst), want))
	}
	return p, nil
}

// wanted walks a sorted list of ordinals alongside ascending ordinals.
type wanted struct {
	list []int32
	at   int
}

// has reports whether ord is in the list; ords must be asked in order.
func (w *wanted) has(ord int) bool {
	for w.at < len(w.list) && int(w.list[w.at]) < ord {
		w.at++
	}
	return w.at < len(w.list) && int(w.list[w.at]) == ord
}

// in returns the part of the list in [lo, hi).
func (w *wanted) in(lo, hi int) []int32 {
	i := sort.Search(len(w.list), func(i int) bool { return int(w.list[i]) >= lo })
	j := sort.Search(len(w.list), func(i int) bool { return int(w.list[i]) >= hi })
	return w.list[i:j]
}

// events calls fn(ord, raw) for the events of r whose ordinals are in want
// (ascending), or, when want is nil, for every event of [lo, hi), in
// arrival order, decompressing only the blocks that hold them. keep, when
// not nil, is asked with the time range of each group (v3) or block (v2)
// and skips it when false. ids gives the sortBy columns' ids (v3 puts each
// group's events back in arrival order with them; v4 stores where they
// are and does not call it). raw is valid only during the call.
func (t *textReader) events(r *segmentReader, lo, hi int, want []int32, keep func(minT, maxT int64) bool, ids idsFunc, fn func(ord int, raw []byte) error) error {
	if want != nil {
		if len(want) == 0 {
			return nil
		}
		lo, hi = int(want[0]), int(want[len(want)-1])+1
	}
	w := wanted{list: want}
	if r.meta.Version < 3 {
		return t.eventsV2(r, lo, hi, want, &w, keep, fn)
	}
	var key [][]uint32
	for _, g := range r.meta.Groups {
		end := g.First + g.Count
		if end <= lo || g.First >= hi || (keep != nil && !keep(g.MinTime, g.MaxTime)) {
			continue
		}
		var in []int32
		if want != nil {
			if in = w.in(g.First, end); len(in) == 0 {
				continue
			}
		}
		if key == nil && r.meta.Version < 4 {
			for _, c := range r.meta.SortBy {
				k, err := ids(c)
				if err != nil {
					return err
				}
				key = append(key, k)
			}
		}
		if err := t.group(r, g, key, max(lo, g.First), min(hi, end), in, fn); err != nil {
			return err
		}
	}
	return nil
}

// positions sets t.pos to where each event of group g is stored among
// the group's events. A v3 group sorts its sortBy columns' ids (key) again
// and checks the order against the group's hash; a v4 group reads its keys
// frame, and checks the hash too when full says the whole group is read
// (then the cost is small beside the blocks').
func (t *textReader) positions(r *segmentReader, g groupMeta, key [][]uint32, full bool) error {
	part := fmt.Sprintf("text group at block %d", g.Block0)
	var order []int32
	if r.meta.Version >= 4 {
		kpart := fmt.Sprintf("group keys at %d", g.KeysOff)
		if cap(t.comp) < int(g.KeysLen) {
			t.comp = make([]byte, g.KeysLen)
		}
		t.comp = t.comp[:g.KeysLen]
		if err := r.readAt(t.comp, g.KeysOff); err != nil {
			return r.fail(kpart, err)
		}
		var err error
		if t.keys, err = decodeFrame(t.dec, t.comp, t.keys[:0]); err != nil {
			return r.fail(kpart, err)
		}
		if t.pos, err = groupPositions(t.keys, g.Count, t.pos, &t.posBufs); err != nil {
			return r.fail(kpart, err)
		}
		if !full {
			return nil
		}
		order = make([]int32, g.Count)
		for o, p := range t.pos {
			order[p] = int32(o)
		}
	} else {
		keys := make([][]uint32, len(key))
		sizes := make([]int, len(key))
		for k, c := range r.meta.SortBy {
			keys[k] = key[k][g.First : g.First+g.Count]
			sizes[k] = r.meta.Columns[c].Values
		}
		order = sortedOrder(g.Count, keys, sizes)
	}
	if orderHash(order) != g.Order {
		from := "their columns"
		if r.meta.Version >= 4 {
			from = "the group's keys"
		}
		return r.fail(part, fmt.Errorf("the order of events %d-%d does not agree with %s: the segment is damaged", g.First, g.First+g.Count-1, from))
	}
	if r.meta.Version < 4 {
		if cap(t.pos) < g.Count {
			t.pos = make([]int32, g.Count)
		}
		t.pos = t.pos[:g.Count]
		for p, o := range order {
			t.pos[o] = int32(p)
		}
	}
	return nil
}

// group reads the events of v3 or v4 group g that are in want, or when
// want is nil, in [lo, hi).
func (t *textReader) group(r *segmentReader, g groupMeta, key [][]uint32, lo, hi int, want []int32, fn func(int, []byte) error) error {
	if err := t.positions(r, g, key, want == nil); err != nil {
		return err
	}
	if r.meta.Version >= 5 {
		return t.groupV5(r, g, lo, hi, want, fn)
	}
	if cap(t.lines) < g.Count {
		t.lines = make([][]byte, g.Count)
	}
	t.lines = t.lines[:g.Count]
	// each calls f with every wanted ordinal, ascending.
	each := func(f func(ord int) error) error {
		if want != nil {
			for _, o := range want {
				if err := f(int(o)); err != nil {
					return err
				}
			}
			return nil
		}
		for o := lo; o < hi; o++ {
			if err := f(o); err != nil {
				return err
			}
		}
		return nil
	}
	blocks := r.meta.Blocks[g.Block0 : g.Block0+g.Blocks]
	if cap(t.need) < len(blocks) {
		t.need = make([]bool, len(blocks))
	}
	need := t.need[:len(blocks)]
	clear(need)
	each(func(o int) error {
		p := g.First + int(t.pos[o-g.First])
		need[sort.Search(len(blocks), func(i int) bool { return blocks[i].First+blocks[i].Count > p })] = true
		return nil
	})
	for bi, b := range blocks {
		if !need[bi] {
			continue
		}
		p, err := t.readBlock(r, b, bi)
		if err != nil {
			return err
		}
		for i := b.First - g.First; i < b.First-g.First+b.Count; i++ {
			nl := bytes.IndexByte(p, '\n')
			if nl < 0 {
				return r.fail(blockPart(b), errors.New("it is cut short"))
			}
			t.lines[i] = p[:nl]
			p = p[nl+1:]
		}
		if len(p) != 0 {
			return r.fail(blockPart(b), fmt.Errorf("%d trailing bytes", len(p)))
		}
	}
	return each(func(o int) error { return fn(o, t.lines[t.pos[o-g.First]]) })
}

// headPart and textBlockPart name a v5 group's head and a block in errors.
func headPart(g groupMeta) string { return fmt.Sprintf("text group head at %d", g.HeadOff) }

// headKey names a v5 group's head among the segments a textReader read.
type headKey struct {
	seg *segmentReader
	off int64
}

// maxHeads and maxHeadBytes bound the heads a textReader keeps open: a
// head holds its group's column paths and templates, 62 KB decompressed
// on average in the 2M-event corpus, so 256 of them about 16 MiB; but
// events of many shapes with long keys make heads of MiBs (as large as
// their group's text), and 256 of those held GiBs, so the bytes are
// bounded too (TestKeptHeadsBoundedByBytes).
const (
	maxHeads     = 256
	maxHeadBytes = 16 << 20
)

// openHead makes t.head the reader of v5 group g's head. A head opened
// before is taken from t.heads: an investigation asks several questions
// of one Reader, each touching many of the same groups (activity opened
// 198 heads of 159 groups, timeline 237), and opening one decompresses
// and walks tens of KB of templates.
func (t *textReader) openHead(r *segmentReader, g groupMeta) (*textcodec.Reader, error) {
	if t.head != nil && t.headSeg == r && t.headOff == g.HeadOff {
		return t.head, nil
	}
	prev := t.head
	t.head = nil
	key := headKey{r, g.HeadOff}
	if h := t.heads[key]; h != nil {
		if prev != nil {
			h.Adopt(prev)
		}
		t.head, t.headSeg, t.headOff = h, r, g.HeadOff
		return h, nil
	}
	head := make([]byte, g.HeadLen)
	if err := r.readAt(head, g.HeadOff); err != nil {
		return nil, r.fail(headPart(g), err)
	}
	h, err := textcodec.OpenHead(head, t.dec)
	if err != nil {
		return nil, r.fail(headPart(g), err)
	}
	if h.Len() != g.Count {
		return nil, r.fail(headPart(g), fmt.Errorf("it holds %d events, the meta says %d", h.Len(), g.Count))
	}
	per := h.PerBlock()
	for bi, b := range r.meta.Blocks[g.Block0 : g.Block0+g.Blocks] {
		if b.First != g.First+bi*per || b.Count != min(per, g.Count-bi*per) {
			return nil, r.fail(blockPart(b), fmt.Errorf("it holds events %d-%d, the group's head says blocks of %d", b.First, b.First+b.Count-1, per))
		}
	}
	if prev != nil {
		h.Adopt(prev)
	}
	t.head, t.headSeg, t.headOff = h, r, g.HeadOff
	if t.part {
		// A part of a group read in parts: the other parts are read by
		// other slots, and each slot keeping every group's head (and the
		// templates its events built, which MetaBytes does not count)
		// held 55 MiB for detect with Sigma's rules.
		return h, nil
	}
	n := h.MetaBytes()
	if t.heads == nil || len(t.heads) >= maxHeads || t.headBytes+n > maxHeadBytes {
		t.heads, t.headBytes = make(map[headKey]*textcodec.Reader), 0
	}
	t.heads[key] = h
	t.headBytes += n
	return h, nil
}

// loadBlock returns a function that reads block b's stored bytes into
// t.comp, for textcodec.Reader.ReadBlock.
func (t *textReader) loadBlock(r *segmentReader, b blockMeta) func() ([]byte, error) {
	return func() ([]byte, error) {
		if int64(cap(t.comp)) < b.Len {
			t.comp = make([]byte, b.Len)
		}
		t.comp = t.comp[:b.Len]
		if err := r.readAt(t.comp, b.Off); err != nil {
			return nil, r.fail(blockPart(b), err)
		}
		return t.comp, nil
	}
}

// groupV5 is group for a v5 group: it reads the wanted events' lines
// block by block in storage order, keeps them, then calls fn in arrival
// order. A block read whole is checked against its meta's byte count.
func (t *textReader) groupV5(r *segmentReader, g groupMeta, lo, hi int, want []int32, fn func(int, []byte) error) error {
	h, err := t.openHead(r, g)
	if err != nil {
		return err
	}
	h.NoBodies = t.noBodies
	ps := t.ps[:0]
	if want != nil {
		for _, o := range want {
			ps = append(ps, int(t.pos[int(o)-g.First]))
		}
	} else {
		for o := lo; o < hi; o++ {
			ps = append(ps, int(t.pos[o-g.First]))
		}
	}
	if len(ps) == g.Count {
		// The whole group: its positions are 0 to Count-1.
		for i := range ps {
			ps[i] = i
		}
	} else {
		sort.Ints(ps)
	}
	t.ps = ps
	others := t.otherBlocks(g, ps, h.PerBlock())
	if cap(t.span) < g.Count {
		t.span = make([][2]int32, g.Count)
	}
	t.span = t.span[:g.Count]
	per := h.PerBlock()
	// Room for the touched blocks' lines up front: growing a group's 16
	// MiB by doubling copied more than the codec wrote.
	// A block's share of its lines: a part of a group read in parts
	// (textJob.whole) wants some events of every block.
	var room int64
	for i := 0; i < len(ps); {
		j := i + 1
		for j < len(ps) && ps[j]/per == ps[i]/per {
			j++
		}
		b := r.meta.Blocks[g.Block0+ps[i]/per]
		room += b.RawBytes * int64(j-i) / int64(max(b.Count, 1))
		i = j
	}
	text := t.text[:0]
	if int64(cap(text)) < room {
		// make, not slices.Grow: memory fresh from the system is not
		// cleared again. An eighth more: groups differ by a few events,
		// and each new largest allocated (and cleared) 16 MiB again.
		text = make([]byte, 0, room+room/8)
	}
	for i := 0; i < len(ps); {
		bi := ps[i] / per
		j := i + 1
		for j < len(ps) && ps[j]/per == bi {
			j++
		}
		for len(others) > 0 && others[0][0] < bi {
			if err := t.checkBlock(r, g, h, others[0]); err != nil {
				return err
			}
			others = others[1:]
		}
		b := r.meta.Blocks[g.Block0+bi]
		var raw int64
		text, err = h.AppendBlock(text, bi, t.loadBlock(r, b), ps[i:j], func(p, start, end int) error {
			t.span[p] = [2]int32{int32(start), int32(end)}
			raw += int64(end - start)
			return nil
		})
		if err != nil {
			var se *SegmentError
			if errors.As(err, &se) {
				return err
			}
			return r.fail(blockPart(b), err)
		}
		if j-i == b.Count && raw != b.RawBytes && !t.noBodies {
			return r.fail(blockPart(b), fmt.Errorf("%d bytes, the meta says %d", raw, b.RawBytes))
		}
		i = j
	}
	for _, o := range others {
		if err := t.checkBlock(r, g, h, o); err != nil {
			return err
		}
	}
	t.text = text
	call := func(o int) error {
		sp := t.span[t.pos[o-g.First]]
		return fn(o, text[sp[0]:sp[1]:sp[1]])
	}
	if want != nil {
		for _, o := range want {
			if err := call(int(o)); err != nil {
				return err
			}
		}
		return nil
	}
	for o := lo; o < hi; o++ {
		if err := call(o); err != nil {
			return err
		}
	}
	return nil
}

// otherBlocks returns, when t reads a part of group g standing for the
// whole group's read (t.whole), the blocks (ascending, with the storage
// position of one of their events) that the whole read touches and the
// part, at sorted storage positions ps, does not.
func (t *textReader) otherBlocks(g groupMeta, ps []int, per int) [][2]int {
	w := t.whole
	if w == nil {
		return nil
	}
	mine := make([]bool, g.Blocks)
	for _, p := range ps {
		mine[p/per] = true
	}
	one := make([]int, g.Blocks)
	for i := range one {
		one[i] = -1
	}
	mark := func(o int) {
		p := int(t.pos[o-g.First])
		if bi := p / per; !mine[bi] && (one[bi] < 0 || p < one[bi]) {
			one[bi] = p
		}
	}
	if w.want != nil {
		for _, o := range w.want {
			mark(int(o))
		}
	} else {
		for o := w.lo; o < w.hi; o++ {
			mark(o)
		}
	}
	others := t.others[:0]
	for bi, p := range one {
		if p >= 0 {
			others = append(others, [2]int{bi, p})
		}
	}
	t.others = others
	return others
}

// checkBlock opens block o[0] of group g, and reads its event at storage
// position o[1], as groupV5 reads the blocks it renders: a part of a
// group read in parts fails where the whole group's read fails.
func (t *textReader) checkBlock(r *segmentReader, g groupMeta, h *textcodec.Reader, o [2]int) error {
	b := r.meta.Blocks[g.Block0+o[0]]
	err := h.ReadBlock(o[0], t.loadBlock(r, b), []int{o[1]}, func(int, []byte) error { return nil })
	if err == nil {
		return nil
	}
	var se *SegmentError
	if errors.As(err, &se) {
		return err
	}
	return r.fail(blockPart(b), err)
}

// eventsV2 is events for a v2 segment: its blocks hold events in arrival
// order.
func (t *textReader) eventsV2(r *segmentReader, lo, hi int, want []int32, w *wanted, keep func(minT, maxT int64) bool, fn func(int, []byte) error) error {
	for _, b := range r.meta.Blocks {
		end := b.First + b.Count
		if end <= lo || b.First >= hi || (keep != nil && !keep(b.MinTime, b.MaxTime)) {
			continue
		}
		if want != nil && len(w.in(b.First, end)) == 0 {
			continue
		}
		p, err := t.readBlock(r, b, 0)
		if err != nil {
			return err
		}
		for i := b.First; i < end; i++ {
			nl := bytes.IndexByte(p, '\n')
			if nl < 0 || i >= r.meta.Count {
				return r.fail(blockPart(b), fmt.Errorf("event %d is cut short", i))
			}
			if i >= lo && i < hi && (want == nil || w.has(i)) {
				if err := fn(i, p[:nl]); err != nil {
					return err
				}
			}
			p = p[nl+1:]
		}
		if len(p) != 0 {
			return r.fail(blockPart(b), fmt.Errorf("%d trailing bytes", len(p)))
		}
	}
	return nil
}

// scan calls fn for each event of the segment, in arrival order, skipping
// the groups or blocks keep reports false for. The entry's raw bytes are
// valid only during the call.
func (r *segmentReader) scan(dec *zstd.Decoder, keep func(minT, maxT int64) bool, fn func(entry) error) error {
	return r.scanRange(dec, 0, r.meta.Count, keep, fn)
}

// scanRange is scan limited to the events of ordinals [lo, hi).
func (r *segmentReader) scanRange(dec *zstd.Decoder, lo, hi int, keep func(minT, maxT int64) bool, fn func(entry) error) error {
	return r.scanText(newTextReader(dec), dec, lo, hi, keep, fn)
}

// entryColumns reads what an entry holds beside its text: the cluster
// column and the event and receive times.
func (r *segmentReader) entryColumns(dec *zstd.Decoder) (cl *ColumnData, times, recvs []int64, err error) {
	if cl, err = r.readColumn(dec, ColCluster); err != nil {
		return nil, nil, nil, err
	}
	if times, err = r.readTimes(dec, r.meta.Time, nil, nil); err != nil {
		return nil, nil, nil, err
	}
	if recvs, err = r.readTimes(dec, r.meta.Received, nil, nil); err != nil {
		return nil, nil, nil, err
	}
	return cl, times, recvs, nil
}

// scanText is scanRange reading the text with t, whose buffers a caller
// that scans many segments keeps from one to the next (a v5 group's lines
// are rendered into a buffer of the group's size).
func (r *segmentReader) scanText(t *textReader, dec *zstd.Decoder, lo, hi int, keep func(minT, maxT int64) bool, fn func(entry) error) error {
	if lo >= hi {
		return nil
	}
	cl, times, recvs, err := r.entryColumns(dec)
	if err != nil {
		return err
	}
	cache := map[Column][]uint32{}
	ids := func(c Column) ([]uint32, error) {
		if cache[c] == nil {
			v, err := r.readIDs(dec, c, nil, nil, nil)
			if err != nil {
				return nil, err
			}
			cache[c] = v
		}
		return cache[c], nil
	}
	return t.events(r, lo, hi, nil, keep, ids, func(i int, raw []byte) error {
		return fn(entry{cluster: cl.Values[cl.IDs[i]], received: recvs[i], time: times[i], raw: raw, ord: i})
	})
}

// oneText reads single events' text from one segment at a time, for
// lazy hits (Reader.SelectFilters): events are asked for in ascending
// ordinals, and it keeps the decompressed blocks of the group (v3, v4) or
// the block (v2) at hand, so that each block is decompressed at most once
// and only when one of its events is asked for.
type oneText struct {
	t     *textReader
	seg   *segmentReader
	group int    // index of the group (v3, v4) or block (v2) at hand; -1 none
	have  []bool // per block of the group: its lines are in t.lines (v5: in lines)
	// A v5 group's rendered blocks: lines holds their lines, span where
	// each storage position's line lies; ords is scratch.
	lines []byte
	span  [][2]int
	ords  []int
	// plan, when set, lists the events of segment planSeg that will be
	// asked for (ascending): of a v5 block, only those are rendered
	// (want marks their storage positions in the group at hand).
	plan    []int32
	planSeg *segmentReader
	want    []bool
}

// expect tells o that of segment r, only the events of ords (ascending)
// will be asked for, so that a v5 block renders only those of its lines:
// the read-ahead of detect reads about one event in five, in nearly every
// block. Another event asked for costs its block again.
func (o *oneText) expect(r *segmentReader, ords []int32) {
	o.plan, o.planSeg = ords, r
	o.group = -1
}

func newOneText(dec *zstd.Decoder) *oneText { return &oneText{t: newTextReader(dec), group: -1} }

// text returns event ord's text, valid until the next call. ids gives
// the sortBy columns' ids of a v3 segment.
func (o *oneText) text(r *segmentReader, ord int, ids idsFunc) ([]byte, error) {
	if o.seg != r {
		o.seg, o.group = r, -1
	}
	if r.meta.Version < 3 {
		return o.textV2(r, ord)
	}
	groups := r.meta.Groups
	gi := sort.Search(len(groups), func(i int) bool { return groups[i].First+groups[i].Count > ord })
	if gi == len(groups) || groups[gi].First > ord {
		return nil, r.fail("text groups", fmt.Errorf("no group holds event %d", ord))
	}
	g := groups[gi]
	t := o.t
	if gi != o.group {
		var key [][]uint32
		if r.meta.Version < 4 {
			for _, c := range r.meta.SortBy {
				k, err := ids(c)
				if err != nil {
					return nil, err
				}
				key = append(key, k)
			}
		}
		o.group = -1
		if err := t.positions(r, g, key, false); err != nil {
			return nil, err
		}
		if r.meta.Version >= 5 {
			if _, err := t.openHead(r, g); err != nil {
				return nil, err
			}
		}
		if cap(t.lines) < g.Count {
			t.lines = make([][]byte, g.Count)
		}
		t.lines = t.lines[:g.Count]
		if cap(o.have) < g.Blocks {
			o.have = make([]bool, g.Blocks)
		}
		o.have = o.have[:g.Blocks]
		clear(o.have)
		if r.meta.Version >= 5 {
			o.lines = o.lines[:0]
			if cap(o.span) < g.Count {
				o.span = make([][2]int, g.Count)
			}
			o.span = o.span[:g.Count]
			clear(o.span)
			o.wanted(r, g)
		}
		o.group = gi
	}
	p := int(t.pos[ord-g.First])
	if r.meta.Version >= 5 {
		return o.textV5(r, g, p)
	}
	blocks := r.meta.Blocks[g.Block0 : g.Block0+g.Blocks]
	bi := sort.Search(len(blocks), func(i int) bool { return blocks[i].First+blocks[i].Count > g.First+p })
	if bi == len(blocks) {
		return nil, r.fail(fmt.Sprintf("text group at block %d", g.Block0), fmt.Errorf("no block holds event %d", ord))
	}
	if !o.have[bi] {
		b := blocks[bi]
		text, err := t.readBlock(r, b, bi)
		if err != nil {
			return nil, err
		}
		if err := splitLines(r, b, text, t.lines[b.First-g.First:b.First-g.First+b.Count]); err != nil {
			return nil, err
		}
		o.have[bi] = true
	}
	return t.lines[p], nil
}

// textV5 is text for the event at storage position p of v5 group g,
// whose head is open. Events asked for in ascending ordinals jump between
// the group's blocks (storage is in key order), so the first event asked
// for of a block renders the block's lines into o.lines (o.span says
// where each lies): all of them, or those the plan wants (expect), so
// that each block is decompressed once per group. Rendering only the
// event asked for decompressed a block again at nearly every event:
// detect with the built-in pack over a 2M-event store took 46 s of CPU in
// place of 8.
func (o *oneText) textV5(r *segmentReader, g groupMeta, p int) ([]byte, error) {
	per := o.t.head.PerBlock()
	switch bi := p / per; {
	case !o.have[bi]:
		o.ords = o.ords[:0]
		for q := bi * per; q < min((bi+1)*per, g.Count); q++ {
			if o.want == nil || o.want[q] || q == p {
				o.ords = append(o.ords, q)
			}
		}
		if err := o.render(r, g, bi, o.want == nil); err != nil {
			return nil, err
		}
		o.have[bi] = true
	case o.span[p][1] == 0:
		// Not among the lines the plan wanted (a line is never empty):
		// render it alone.
		o.ords = append(o.ords[:0], p)
		if err := o.render(r, g, bi, false); err != nil {
			return nil, err
		}
	}
	sp := o.span[p]
	return o.lines[sp[0]:sp[1]:sp[1]], nil
}

// render renders the lines of o.ords, all in block bi of v5 group g, at
// the end of o.lines; whole says they are all of the block's, whose
// length the meta gives.
func (o *oneText) render(r *segmentReader, g groupMeta, bi int, whole bool) error {
	t := o.t
	h := t.head
	h.NoBodies = t.noBodies
	b := r.meta.Blocks[g.Block0+bi]
	var raw int64
	text, err := h.AppendBlock(o.lines, bi, t.loadBlock(r, b), o.ords, func(q, start, end int) error {
		o.span[q] = [2]int{start, end}
		raw += int64(end - start)
		return nil
	})
	o.lines = text
	if err != nil {
		var se *SegmentError
		if errors.As(err, &se) {
			return err
		}
		return r.fail(blockPart(b), err)
	}
	if whole && raw != b.RawBytes && !t.noBodies {
		return r.fail(blockPart(b), fmt.Errorf("%d bytes, the meta says %d", raw, b.RawBytes))
	}
	return nil
}

// wanted marks in o.want the storage positions in group g of the planned
// events, or sets it nil when r has no plan.
func (o *oneText) wanted(r *segmentReader, g groupMeta) {
	if o.planSeg != r || o.plan == nil {
		o.want = nil
		return
	}
	if cap(o.want) < g.Count {
		o.want = make([]bool, g.Count)
	}
	o.want = o.want[:g.Count]
	clear(o.want)
	i, _ := slices.BinarySearch(o.plan, int32(g.First))
	for ; i < len(o.plan) && int(o.plan[i]) < g.First+g.Count; i++ {
		o.want[o.t.pos[int(o.plan[i])-g.First]] = true
	}
}

// textV2 is text for a v2 segment, whose blocks hold events in arrival
// order.
func (o *oneText) textV2(r *segmentReader, ord int) ([]byte, error) {
	blocks := r.meta.Blocks
	bi := sort.Search(len(blocks), func(i int) bool { return blocks[i].First+blocks[i].Count > ord })
	if bi == len(blocks) || blocks[bi].First > ord || ord >= r.meta.Count {
		return nil, r.fail("text blocks", fmt.Errorf("no block holds event %d", ord))
	}
	b := blocks[bi]
	t := o.t
	if bi != o.group {
		o.group = -1
		text, err := t.readBlock(r, b, 0)
		if err != nil {
			return nil, err
		}
		if cap(t.lines) < b.Count {
			t.lines = make([][]byte, b.Count)
		}
		t.lines = t.lines[:b.Count]
		if err := splitLines(r, b, text, t.lines); err != nil {
			return nil, err
		}
		o.group = bi
	}
	return t.lines[ord-b.First], nil
}

// splitLines cuts block b's decompressed text into its events' lines.
func splitLines(r *segmentReader, b blockMeta, p []byte, lines [][]byte) error {
	for i := range lines {
		nl := bytes.IndexByte(p, '\n')
		if nl < 0 {
			return r.fail(blockPart(b), errors.New("it is cut short"))
		}
		lines[i] = p[:nl]
		p = p[nl+1:]
	}
	if len(p) != 0 {
		return r.fail(blockPart(b), fmt.Errorf("%d trailing bytes", len(p)))
	}
	return nil
}
