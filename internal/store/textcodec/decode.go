package textcodec

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"strconv"

	"github.com/klauspost/compress/zstd"
)

// Reader gives back the lines of a group. It keeps its buffers from call
// to call and is not safe for concurrent use.
type Reader struct {
	// NoBodies, with a group written with BodiesApart, writes every
	// request and response body as null and never decompresses a body
	// frame: for readers that need an event's metadata only. The line is
	// then not the stored one.
	NoBodies bool

	dict     bool
	oneFrame bool
	rows     bool
	apart    bool
	n, per   int
	paths    []string
	tmpls    []template // parsed when first used (template)
	tmplMeta []byte     // the templates in the meta
	tmplAt   []int      // where each template found so far starts in tmplMeta
	tmplEnd  int        // where the last template found ends
	blocks   [][]byte
	ra       io.ReaderAt // with OpenAt: where the blocks are read from
	blockAt  []int64     // with OpenAt: where each block starts, and the end
	comp     []byte      // with OpenAt: the block read
	cur      int         // the block whose frames are decompressed, or -1
	bodyCol  []bool      // per column: it holds request or response bodies
	ref      [nRef]int
	uriCol   int
	dec      *zstd.Decoder

	plain   [][]byte // the block's frames, decompressed
	tids    reader
	curs    []cursor
	evTime  int64 // the event's previous time, when evTimed
	evTimed bool
	// With rows: the block's rows, where each starts, its first time,
	// and the cursor of the row being read.
	rowData []byte
	rowAt   []int
	base    int64
	row     cursor
	// With bodies apart: the block's body frame, decompressed the first
	// time an event of the block has a body.
	bodyZ    []byte
	bodies   []byte
	bodiesOK bool
	vals     []byte   // the formatted values of the event being written
	parts    [][]byte // each of its values, in vals or in the block
	line     []byte
	kinds    []byte
	secs     secCache
}

// cursor walks one column's streams in a block.
type cursor struct {
	kinds, str, dict, fix, num reader
	words                      [][]byte // the dictionary so far
	ids                        [][]byte // the UUIDs so far
	last                       int64    // the column's previous time
}

var errChecksum = errors.New("checksum mismatch: the bytes are damaged")

// checked returns b without its trailing CRC-32C, or an error when the
// CRC does not match.
func checked(b []byte) ([]byte, error) {
	if len(b) < 4 {
		return nil, errors.New("cut short")
	}
	n := len(b) - 4
	if crc32.Checksum(b[:n], castagnoli) != binary.LittleEndian.Uint32(b[n:]) {
		return nil, errChecksum
	}
	return b[:n:n], nil
}

// Open reads a group written as one byte string (Encode, Group.Bytes).
// b must not change while the Reader is used; dec is used for every
// frame.
func Open(b []byte, dec *zstd.Decoder) (*Reader, error) {
	if len(b) < len(magic)+1 || string(b[:len(magic)]) != magic {
		return nil, errors.New("text group: no " + magic + " header")
	}
	rd := reader{b: b[len(magic):]}
	head := rd.chunk()
	if rd.bad {
		return nil, errors.New("text group: head is cut short")
	}
	r, err := OpenHead(head, dec)
	if err != nil {
		return nil, err
	}
	nb := rd.uvarint()
	if rd.bad || nb != uint64(r.numBlocks()) || nb > uint64(len(rd.b)) {
		return nil, errors.New("text group: block table is damaged")
	}
	lens := make([]uint64, nb)
	for i := range lens {
		lens[i] = rd.uvarint()
	}
	for _, l := range lens {
		r.blocks = append(r.blocks, rd.bytes(l))
	}
	if rd.bad || len(rd.b) != 0 {
		return nil, errors.New("text group: block table does not match the blocks")
	}
	return r, nil
}

// OpenAt reads the head and block table of a group written as one byte
// string (Group.Bytes) of size bytes at off in ra; each read then reads
// only the blocks it needs, so the group is never in memory whole.
func OpenAt(ra io.ReaderAt, off, size int64, dec *zstd.Decoder) (*Reader, error) {
	at := off
	end := off + size
	// read returns up to n bytes at at, fewer at the group's end.
	read := func(n int64) ([]byte, error) {
		n = min(n, end-at)
		if n < 0 {
			return nil, errors.New("text group: cut short")
		}
		b := make([]byte, n)
		if _, err := ra.ReadAt(b, at); err != nil && !(errors.Is(err, io.EOF) && at+n == end) {
			return nil, fmt.Errorf("text group: %w", err)
		}
		return b, nil
	}
	pre, err := read(int64(len(magic)) + binary.MaxVarintLen64)
	if err != nil {
		return nil, err
	}
	if len(pre) < len(magic)+1 || string(pre[:len(magic)]) != magic {
		return nil, errors.New("text group: no " + magic + " header")
	}
	hl, k := binary.Uvarint(pre[len(magic):])
	if k <= 0 || hl > uint64(size) {
		return nil, errors.New("text group: head is damaged")
	}
	at += int64(len(magic) + k)
	head, err := read(int64(hl))
	if err != nil {
		return nil, err
	}
	r, err := OpenHead(head, dec)
	if err != nil {
		return nil, err
	}
	at += int64(hl)
	nb := r.numBlocks()
	if int64(nb) > size {
		return nil, errors.New("text group: head is damaged")
	}
	table, err := read(int64(nb+1) * binary.MaxVarintLen64)
	if err != nil {
		return nil, err
	}
	rd := reader{b: table}
	if rd.uvarint() != uint64(nb) || rd.bad {
		return nil, errors.New("text group: block table is damaged")
	}
	lens := make([]uint64, nb)
	for i := range lens {
		lens[i] = rd.uvarint()
	}
	if rd.bad {
		return nil, errors.New("text group: block table is damaged")
	}
	at += int64(len(table) - len(rd.b))
	r.ra, r.blockAt = ra, append(r.blockAt, at)
	for _, l := range lens {
		at += int64(l)
		if at > end || l > uint64(size) {
			return nil, errors.New("text group: block table does not match the blocks")
		}
		r.blockAt = append(r.blockAt, at)
	}
	if at != end {
		return nil, errors.New("text group: block table does not match the blocks")
	}
	return r, nil
}

// OpenHead reads a group's head (Group.Head): a Reader of it reads
// blocks handed to ReadBlock. dec is used for every frame.
func OpenHead(head []byte, dec *zstd.Decoder) (*Reader, error) {
	h, err := checked(head)
	if err != nil {
		return nil, fmt.Errorf("text group head: %w", err)
	}
	if len(h) < 1 {
		return nil, errors.New("text group head: cut short")
	}
	r := &Reader{vals: make([]byte, 0, 4096), dec: dec, dict: h[0]&flagDict != 0, oneFrame: h[0]&flagOneFrame != 0, rows: h[0]&flagRows != 0, apart: h[0]&flagBodiesApart != 0, uriCol: -1, cur: -1}
	rd := reader{b: h[1:]}
	r.n, r.per = int(rd.uvarint()), int(rd.uvarint())
	metaZ := rd.chunk()
	if rd.bad || len(rd.b) != 0 || r.per <= 0 || r.n < 0 || uint64(r.n) > 1<<40 {
		return nil, errors.New("text group head: damaged")
	}
	meta, err := dec.DecodeAll(metaZ, nil)
	if err != nil {
		return nil, fmt.Errorf("text group meta: %w", err)
	}
	if err := r.readMeta(meta); err != nil {
		return nil, fmt.Errorf("text group meta: %w", err)
	}
	return r, nil
}

// Adopt takes from's buffers for reading blocks (the decompressed rows and
// bodies, the line being written), so that a store keeping many groups'
// heads open keeps one set of them rather than one per head: neither
// keeps a block decompressed after the call, and from reads its next
// block into new buffers.
func (r *Reader) Adopt(from *Reader) {
	if from == r {
		return
	}
	r.plain, r.bodies, r.bodyZ, r.comp = from.plain, from.bodies, from.bodyZ, from.comp
	r.vals, r.parts, r.line, r.kinds = from.vals, from.parts, from.line, from.kinds
	r.cur, r.bodiesOK, r.rowData = -1, false, nil
	from.plain, from.bodies, from.bodyZ, from.comp = nil, nil, nil, nil
	from.vals, from.parts, from.line, from.kinds = nil, nil, nil, nil
	from.cur, from.bodiesOK, from.rowData = -1, false, nil
}

// numBlocks returns how many blocks the group has.
func (r *Reader) numBlocks() int { return (r.n + r.per - 1) / r.per }

// PerBlock returns the number of events in each block but the last.
func (r *Reader) PerBlock() int { return r.per }

// blockBytes returns block b's stored bytes.
func (r *Reader) blockBytes(b int) ([]byte, error) {
	if r.ra == nil {
		return r.blocks[b], nil
	}
	n := r.blockAt[b+1] - r.blockAt[b]
	if int64(cap(r.comp)) < n {
		r.comp = make([]byte, n)
	}
	r.comp = r.comp[:n]
	if _, err := r.ra.ReadAt(r.comp, r.blockAt[b]); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("text block %d: %w", b, err)
	}
	return r.comp, nil
}

func (r *Reader) readMeta(meta []byte) error {
	rd := reader{b: meta}
	np := rd.uvarint()
	if np == 0 || np > uint64(len(meta)) {
		return errors.New("no columns")
	}
	for k := range r.ref {
		r.ref[k] = -1
	}
	for i := range np {
		p := string(rd.chunk())
		r.paths = append(r.paths, p)
		r.bodyCol = append(r.bodyCol, p == "$.requestObject" || p == "$.responseObject")
		if p == uriPath {
			r.uriCol = int(i)
		}
		for k, rp := range refPaths {
			if p == rp {
				r.ref[k] = int(i)
			}
		}
	}
	nt := rd.uvarint()
	if nt > uint64(len(meta)) {
		return errors.New("template count exceeds the meta")
	}
	// The templates are found, checked and parsed only as far as the
	// events read need them (template): opening a group's head is paid
	// by every read that touches the group, which mostly uses few of its
	// templates, and walking them all was a third of the open (62 KB of
	// meta a group at 2M events).
	if rd.bad || nt > uint64(len(rd.b)) {
		return errors.New("meta is damaged")
	}
	r.tmplMeta, r.tmplAt, r.tmplEnd = rd.b, make([]int, 0, nt), 0
	if nt == 0 && len(rd.b) != 0 {
		return errors.New("meta is damaged")
	}
	r.tmpls = make([]template, nt)
	return nil
}

// findTemplates finds where the templates up to tid start in the meta,
// checking each as it goes: its literals within the meta, its columns
// among the group's, and no bytes after the last. The walk indexes a
// local slice rather than moving a reader: each move of a reader is a
// pointer write, with a write barrier while the GC runs.
func (r *Reader) findTemplates(tid int) error {
	tm, i, np := r.tmplMeta, r.tmplEnd, uint64(len(r.paths))
	for len(r.tmplAt) <= tid {
		at := i
		nc, k := binary.Uvarint(tm[i:])
		if k <= 0 || nc > uint64(len(tm)-i-k) {
			return errors.New("template is damaged")
		}
		i += k
		for range nc + 1 {
			l, k := binary.Uvarint(tm[i:])
			if k <= 0 || l > uint64(len(tm)-i-k) {
				return errors.New("template is damaged")
			}
			i += k + int(l)
		}
		for range nc {
			c, k := binary.Uvarint(tm[i:])
			if k <= 0 {
				return errors.New("template is damaged")
			}
			if c >= np {
				return fmt.Errorf("template names column %d of %d", c, np)
			}
			i += k
		}
		r.tmplAt, r.tmplEnd = append(r.tmplAt, at), i
	}
	if len(r.tmplAt) == len(r.tmpls) && r.tmplEnd != len(tm) {
		return errors.New("meta is damaged: bytes after the last template")
	}
	return nil
}

// template returns template tid (below len(r.tmpls)), found, checked
// and parsed from the meta the first time it is asked for.
func (r *Reader) template(tid int) (*template, error) {
	t := &r.tmpls[tid]
	if t.lits != nil {
		return t, nil
	}
	if err := r.findTemplates(tid); err != nil {
		return nil, fmt.Errorf("text group meta: %w", err)
	}
	rd := reader{b: r.tmplMeta[r.tmplAt[tid]:]}
	nc := rd.uvarint()
	t.lits, t.cols = make([][]byte, nc+1), make([]int, nc)
	for i := range t.lits {
		t.lits[i] = rd.chunk()
	}
	for i := range t.cols {
		t.cols[i] = int(rd.uvarint())
	}
	return t, nil
}

// Len returns the number of events in the group.
func (r *Reader) Len() int { return r.n }

// Events calls fn with the line of each event of ords, which must be
// ascending, in that order. line is valid only during the call.
func (r *Reader) Events(ords []int, fn func(ord int, line []byte) error) error {
	if r.blocks == nil && r.ra == nil {
		return errors.New("text group: opened by its head: read it with ReadBlock")
	}
	for i := 0; i < len(ords); {
		if ords[i] < 0 || ords[i] >= r.n || i > 0 && ords[i] <= ords[i-1] {
			return fmt.Errorf("event %d of %d, after %d: ordinals must ascend within the group", ords[i], r.n, ords[max(i-1, 0)])
		}
		b := ords[i] / r.per
		j := i + 1
		for j < len(ords) && ords[j]/r.per == b && ords[j] > ords[j-1] {
			j++
		}
		if err := r.block(b, func() ([]byte, error) { return r.blockBytes(b) }, ords[i:j], &sink{fn: fn}); err != nil {
			return err
		}
		i = j
	}
	return nil
}

// All calls fn with every line, in order.
func (r *Reader) All(fn func(ord int, line []byte) error) error {
	if r.blocks == nil && r.ra == nil {
		return errors.New("text group: opened by its head: read it with ReadBlock")
	}
	var ords []int
	for b := range r.numBlocks() {
		lo := b * r.per
		hi := min(lo+r.per, r.n)
		ords = ords[:0]
		for o := lo; o < hi; o++ {
			ords = append(ords, o)
		}
		if err := r.block(b, func() ([]byte, error) { return r.blockBytes(b) }, ords, &sink{fn: fn}); err != nil {
			return err
		}
	}
	return nil
}

// ReadBlock calls fn with the line of each event of ords, which must be
// ascending and all in block b (the group's ordinals [b*PerBlock,
// (b+1)*PerBlock)). load gives the block's stored bytes; with rows it is
// called only when b is not the block the Reader read last, whose
// decompressed rows it keeps. line is valid only during the call.
func (r *Reader) ReadBlock(b int, load func() ([]byte, error), ords []int, fn func(ord int, line []byte) error) error {
	if err := r.checkOrds(b, ords); err != nil {
		return err
	}
	return r.block(b, load, ords, &sink{fn: fn})
}

// AppendBlock is ReadBlock writing the lines one after the other at the
// end of dst, with no copy on the way, and giving at where each lies in
// the returned buffer (dst[start:end]): for a reader that keeps a group's
// lines.
func (r *Reader) AppendBlock(dst []byte, b int, load func() ([]byte, error), ords []int, at func(ord, start, end int) error) ([]byte, error) {
	if err := r.checkOrds(b, ords); err != nil {
		return dst, err
	}
	s := sink{dst: dst, at: at}
	err := r.block(b, load, ords, &s)
	return s.dst, err
}

// checkOrds says whether ords ascend and are all in block b.
func (r *Reader) checkOrds(b int, ords []int) error {
	lo, hi := b*r.per, min((b+1)*r.per, r.n)
	for i, o := range ords {
		if o < lo || o >= hi || i > 0 && o <= ords[i-1] {
			return fmt.Errorf("text block %d: event %d: ordinals must ascend within the block", b, o)
		}
	}
	return nil
}

// openRows decompresses block b of a group written as rows, given its
// stored bytes, and finds where each row starts. It checks every frame's
// CRC, the bodies' too, and keeps a copy of the bodies' frame.
func (r *Reader) openRows(b int, blk []byte) error {
	r.cur = -1
	if len(r.plain) == 0 {
		r.plain = append(r.plain, nil)
	}
	r.bodyZ, r.bodiesOK = r.bodyZ[:0], false
	if r.apart {
		rd := reader{b: blk}
		blk = rd.chunk()
		if rd.bad {
			return errors.New("rows frame is cut short")
		}
		if len(rd.b) > 0 {
			bz, err := checked(rd.b)
			if err != nil {
				return fmt.Errorf("body frame: %w", err)
			}
			r.bodyZ = append(r.bodyZ, bz...)
		}
	}
	frame, err := checked(blk)
	if err != nil {
		return fmt.Errorf("rows frame: %w", err)
	}
	p, err := r.dec.DecodeAll(frame, r.plain[0][:0])
	if err != nil {
		return err
	}
	r.plain[0] = p
	rd := reader{b: p}
	r.base = unzigzag(rd.uvarint())
	n := rd.uvarint()
	if rd.bad || n != uint64(min(r.per, r.n-b*r.per)) {
		return errors.New("row table is damaged")
	}
	r.rowAt = append(r.rowAt[:0], 0)
	total := 0
	for range n {
		total += int(rd.uvarint())
		r.rowAt = append(r.rowAt, total)
	}
	if rd.bad || total != len(rd.b) {
		return errors.New("row lengths do not match the rows")
	}
	r.rowData = rd.b
	r.cur = b
	return nil
}

// blockRows writes the events of want, all in block b of a group written
// as rows.
func (r *Reader) blockRows(b int, load func() ([]byte, error), want []int, s *sink) error {
	if r.cur != b {
		blk, err := load()
		if err != nil {
			return err
		}
		if err := r.openRows(b, blk); err != nil {
			return fmt.Errorf("text block %d: %w", b, err)
		}
	}
	for _, ord := range want {
		i := ord - b*r.per
		rd := reader{b: r.rowData[r.rowAt[i]:r.rowAt[i+1]]}
		tid := rd.uvarint()
		r.row = cursor{}
		r.row.kinds.b, r.row.str.b, r.row.fix.b = rd.chunk(), rd.chunk(), rd.chunk()
		r.row.num.b = rd.b
		if rd.bad || tid >= uint64(len(r.tmpls)) {
			return fmt.Errorf("text block %d: event %d: row is damaged", b, ord)
		}
		t, err := r.template(int(tid))
		if err != nil {
			return fmt.Errorf("text block %d: event %d: %w", b, ord, err)
		}
		if err := r.put(s, b, ord, t); err != nil {
			return err
		}
	}
	return nil
}

// sink is where a block's lines go: each to fn, written in the Reader's
// buffer, or, with at set, appended to dst and where each lies given to at.
type sink struct {
	fn  func(ord int, line []byte) error
	dst []byte
	at  func(ord, start, end int) error
}

// put writes event ord of block b, of template t, to s.
func (r *Reader) put(s *sink, b, ord int, t *template) error {
	if s.at == nil {
		line, err := r.event(t, r.line[:0])
		r.line = line
		if err != nil {
			return fmt.Errorf("text block %d: event %d: %w", b, ord, err)
		}
		return s.fn(ord, line)
	}
	start := len(s.dst)
	dst, err := r.event(t, s.dst)
	s.dst = dst
	if err != nil {
		return fmt.Errorf("text block %d: event %d: %w", b, ord, err)
	}
	return s.at(ord, start, len(dst))
}

// open decompresses block b and sets the cursors at its start.
func (r *Reader) open(b int, blk []byte) error {
	blk, err := checked(blk)
	if err != nil {
		return err
	}
	var contents [][]byte
	if r.oneFrame {
		if len(r.plain) == 0 {
			r.plain = append(r.plain, nil)
		}
		p, err := r.dec.DecodeAll(blk, r.plain[0][:0])
		if err != nil {
			return err
		}
		r.plain[0] = p
		rd := reader{b: p}
		k := rd.uvarint()
		if k > uint64(len(p)) {
			return errors.New("frame table is damaged")
		}
		lens := make([]uint64, k)
		for i := range lens {
			lens[i] = rd.uvarint()
		}
		for _, l := range lens {
			contents = append(contents, rd.bytes(l))
		}
		if rd.bad {
			return errors.New("frame table does not match the frames")
		}
	} else {
		rd := reader{b: blk}
		k := rd.uvarint()
		if k > uint64(len(blk)) {
			return errors.New("frame table is damaged")
		}
		lens := make([]uint64, k)
		for i := range lens {
			lens[i] = rd.uvarint()
		}
		for len(r.plain) < int(k) {
			r.plain = append(r.plain, nil)
		}
		for i, l := range lens {
			f := rd.bytes(l)
			if rd.bad {
				return errors.New("frame table does not match the frames")
			}
			if l == 0 {
				contents = append(contents, nil)
				continue
			}
			p, err := r.dec.DecodeAll(f, r.plain[i][:0])
			if err != nil {
				return fmt.Errorf("frame %d: %w", i, err)
			}
			r.plain[i] = p
			contents = append(contents, p)
		}
	}
	if len(contents) == 0 || len(contents) > len(r.paths)+1 {
		return fmt.Errorf("%d frames for %d columns", len(contents), len(r.paths))
	}
	r.tids = reader{b: contents[0]}
	for len(r.curs) < len(r.paths) {
		r.curs = append(r.curs, cursor{})
	}
	for c := range r.curs {
		cu := &r.curs[c]
		*cu = cursor{words: cu.words[:0], ids: cu.ids[:0]}
		if c+1 >= len(contents) || len(contents[c+1]) == 0 {
			continue
		}
		rd := reader{b: contents[c+1]}
		cu.kinds.b, cu.str.b, cu.dict.b, cu.fix.b = rd.chunk(), rd.chunk(), rd.chunk(), rd.chunk()
		cu.num.b = rd.b
		if rd.bad {
			return fmt.Errorf("column %q: streams are damaged", r.paths[c])
		}
	}
	return nil
}

// block writes the events of want, all in block b, whose stored bytes
// load gives.
func (r *Reader) block(b int, load func() ([]byte, error), want []int, s *sink) error {
	if r.rows {
		return r.blockRows(b, load, want, s)
	}
	blk, err := load()
	if err != nil {
		return err
	}
	if err := r.open(b, blk); err != nil {
		return fmt.Errorf("text block %d: %w", b, err)
	}
	w := 0
	for ord := b * r.per; w < len(want); ord++ {
		tid := r.tids.uvarint()
		if r.tids.bad || tid >= uint64(len(r.tmpls)) {
			return fmt.Errorf("text block %d: event %d: no such template", b, ord)
		}
		t, err := r.template(int(tid))
		if err != nil {
			return fmt.Errorf("text block %d: event %d: %w", b, ord, err)
		}
		if ord != want[w] {
			if err := r.skip(t); err != nil {
				return fmt.Errorf("text block %d: event %d: %w", b, ord, err)
			}
			continue
		}
		w++
		if err := r.put(s, b, ord, t); err != nil {
			return err
		}
	}
	return nil
}

var errDamaged = errors.New("column streams are damaged")

// word reads a string value.
func (r *Reader) word(c *cursor) []byte {
	if !r.dict {
		return c.str.chunk()
	}
	switch id := c.str.uvarint(); {
	case id == 0:
		w := c.dict.chunk()
		c.words = append(c.words, w)
		return w
	case id <= uint64(len(c.words)):
		return c.words[id-1]
	}
	c.str.bad = true
	return nil
}

// uuid reads a UUID's 16 bytes.
func (r *Reader) uuid(c *cursor) []byte {
	if !r.dict {
		return c.fix.bytes(16)
	}
	switch id := c.str.uvarint(); {
	case id == 0:
		u := c.fix.bytes(16)
		c.ids = append(c.ids, u)
		return u
	case id <= uint64(len(c.ids)):
		return c.ids[id-1]
	}
	c.str.bad = true
	return nil
}

// next reads column col's next value. When write is set it returns the
// value's bytes: a string or a body as a slice of the block's bytes
// (copied nowhere), a formatted value (UUID, time, integer) appended to
// dst and sliced from it; skipping an event only moves the cursors on.
// A guessed URI's value is what follows the guess.
func (r *Reader) next(col int, dst []byte, write bool) ([]byte, []byte, byte, error) {
	c := &r.row
	if !r.rows {
		c = &r.curs[col]
	}
	kind := c.kinds.bytes(1)
	if c.kinds.bad {
		return dst, nil, 0, errDamaged
	}
	start := len(dst)
	var v []byte
	switch k := kind[0]; {
	case k == kindString || k >= kindURI && k <= kindLast:
		v = r.word(c)
	case k == kindUUID:
		u := r.uuid(c)
		if write && u != nil {
			dst = appendUUID(dst, u)
			v = dst[start:]
		}
	case k == kindTime:
		t := unzigzag(c.num.uvarint())
		switch {
		case r.evTimed:
			t += r.evTime
		case r.rows:
			t += r.base
		default:
			t += c.last
		}
		c.last, r.evTime, r.evTimed = t, t, true
		if write {
			dst = r.secs.appendMicro(dst, t)
			v = dst[start:]
		}
	case k == kindInt:
		n := unzigzag(c.num.uvarint())
		if write {
			dst = strconv.AppendInt(dst, n, 10)
			v = dst[start:]
		}
	case k == kindTailID:
		w := r.word(c)
		u := r.uuid(c)
		if write && u != nil {
			dst = appendUUID(append(dst, w...), u)
			v = dst[start:]
		}
	case k == kindBody && r.apart:
		off, n := c.num.uvarint(), c.num.uvarint()
		if !r.bodiesOK && write {
			b, err := r.dec.DecodeAll(r.bodyZ, r.bodies[:0])
			if err != nil {
				return dst, nil, 0, fmt.Errorf("body frame: %w", err)
			}
			r.bodies, r.bodiesOK = b, true
		}
		if write {
			if off > uint64(len(r.bodies)) || n > uint64(len(r.bodies))-off {
				return dst, nil, 0, errDamaged
			}
			v = r.bodies[off : off+n]
		}
	default:
		return dst, nil, 0, fmt.Errorf("column %q: value kind %d", r.paths[col], k)
	}
	if c.str.bad || c.fix.bad || c.num.bad || c.dict.bad {
		return dst, nil, 0, errDamaged
	}
	if v == nil {
		// An empty value is not a missing one (setRef).
		v = dst[len(dst):]
	}
	return dst, v[:len(v):len(v)], kind[0], nil
}

// skip passes over an event's values.
func (r *Reader) skip(t *template) error {
	r.evTimed = false
	for _, col := range t.cols {
		if _, _, _, err := r.next(col, nil, false); err != nil {
			return err
		}
	}
	return nil
}

// event appends an event's line to dst: its values first (formatted ones
// into r.vals, the others sliced from the block), then the line, with the
// guessed URIs, which need the objectRef values that may come after them.
func (r *Reader) event(t *template, dst []byte) ([]byte, error) {
	r.evTimed = false
	vals, parts, kinds := r.vals[:0], r.parts[:0], r.kinds[:0]
	if vals == nil {
		vals = make([]byte, 0, 1024)
	}
	fast := r.rows && !r.dict
	for _, col := range t.cols {
		if c := &r.row; fast && len(c.kinds.b) > 0 && c.kinds.b[0] == kindString {
			// next's commonest case, inline: a string sliced from the row.
			n, w := binary.Uvarint(c.str.b)
			if w <= 0 || n > uint64(len(c.str.b)-w) {
				return dst, errDamaged
			}
			c.kinds.b = c.kinds.b[1:]
			kinds = append(kinds, kindString)
			parts = append(parts, c.str.b[w:w+int(n):w+int(n)])
			c.str.b = c.str.b[w+int(n):]
			continue
		}
		var v []byte
		var k byte
		var err error
		if r.NoBodies && r.bodyCol[col] {
			// Past the value without writing it (a body frame is never
			// decompressed), and null in its place.
			_, _, _, err = r.next(col, nil, false)
			vals = append(vals, "null"...)
			k, v = kindString, vals[len(vals)-4:]
		} else {
			vals, v, k, err = r.next(col, vals, true)
		}
		if err != nil {
			return dst, err
		}
		kinds = append(kinds, k)
		parts = append(parts, v)
	}
	r.vals, r.parts, r.kinds = vals, parts, kinds
	if !t.refsSet {
		t.setRefs(&r.ref)
	}
	var ref [nRef][]byte
	for _, a := range t.refs {
		if ref[a.k] == nil {
			ref[a.k] = parts[a.i]
		}
	}
	for i, col := range t.cols {
		dst = append(dst, t.lits[i]...)
		if k := kinds[i]; k >= kindURI && k <= kindLast {
			var ok bool
			dst, ok = guessURI(dst, &ref, int(k-kindURI))
			if !ok || col != r.uriCol {
				return dst, fmt.Errorf("column %q: guessed URI without objectRef", r.paths[col])
			}
		}
		dst = append(dst, parts[i]...)
	}
	return append(dst, t.lits[len(t.cols)]...), nil
}

// ColumnBytes returns the stored bytes of each column over the group's
// blocks, by key path ("templates" for the events' template numbers),
// for a group written with a frame per column; ADR 0023 reads it to see
// where the bytes go.
func (r *Reader) ColumnBytes() (map[string]int, error) {
	if r.oneFrame || r.rows {
		return nil, errors.New("one frame per block: no column sizes")
	}
	sizes := map[string]int{}
	for b, blk := range r.blocks {
		rd := reader{b: blk[:max(len(blk)-4, 0)]}
		k := rd.uvarint()
		for i := range k {
			l := int(rd.uvarint())
			name := "templates"
			if i > 0 && int(i) <= len(r.paths) {
				name = r.paths[i-1]
			}
			sizes[name] += l
		}
		if rd.bad {
			return nil, fmt.Errorf("text block %d: frame table is damaged", b)
		}
	}
	return sizes, nil
}

// MetaBytes is about how many bytes the head holds decompressed: its
// column paths and templates, for a store that keeps heads open.
func (r *Reader) MetaBytes() int {
	n := len(r.tmplMeta)
	for _, p := range r.paths {
		n += len(p)
	}
	return n
}
