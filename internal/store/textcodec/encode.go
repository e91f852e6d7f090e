// Package textcodec stores a group of audit events' JSON lines as
// columns and gives back any event's exact bytes. It is the research
// prototype of ADR 0023 and no store uses it yet.
//
// Each line is split (split.go) into a template, the bytes that are not
// values (keys, separators, quotes), and leaves, the values; a template
// is stored once per group and each event keeps its template's number.
// A leaf goes to the column of its key path ("$.user.groups[]"), written
// as the kind that says it in the fewest bytes (values.go): a UUID as 16
// bytes, a time as microseconds since the previous one, an integer as a
// varint, the requestURI as what objectRef does not already say. Events
// are cut into blocks; each column of a block is compressed with zstd,
// and reading an event decompresses its block's columns only.
//
// Group layout (varints are unsigned LEB128; crc is the CRC-32C of the
// bytes before it in its part, 4 bytes little endian):
//
//	"KTC2" head:chunk blocks:varint, each block's length:varint, the blocks
//	head: flags:byte events:varint perBlock:varint meta:chunk crc
//	      (meta is zstd: column paths, then templates)
//
// A store keeps a group's head and blocks where it likes (Group), and
// reads one block at a time (OpenHead, ReadBlock). Every part carries a
// CRC-32C, checked before it is decompressed: a flipped byte anywhere is
// an error, never another line (TestEveryFlippedByte).
//
// A block of columns is varint k then k frame lengths and the frames
// (zstd each), then crc: frame 0 the events' template numbers, frame 1+c
// column c's streams (kinds, strings, dictionary, fixed, numbers), empty
// when the block has no value of column c. With OneFrame the block is one
// zstd frame of the same table with raw lengths, then the raw contents,
// then crc. With Rows it is a zstd frame of the rows, then crc; with
// BodiesApart that is a chunk, followed by the bodies' zstd frame and its
// crc when the block has bodies.
package textcodec

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"slices"

	"github.com/klauspost/compress/zstd"
)

const magic = "KTC2"

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// appendCRC appends the CRC-32C of b[from:].
func appendCRC(b []byte, from int) []byte {
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b[from:], castagnoli))
}

const (
	flagDict byte = 1 << iota
	flagOneFrame
	flagRows
	flagBodiesApart
)

// Options chooses a layout; ADR 0023 measures them against each other.
type Options struct {
	// BlockEvents is the number of events a block holds: the unit a
	// read decompresses. Zero puts every event in one block.
	BlockEvents int
	// Level is the zstd level of every frame; zero means
	// zstd.SpeedDefault (zstd's level 3).
	Level zstd.EncoderLevel
	// Types writes UUIDs, times and integers in binary.
	Types bool
	// URI writes requestURI as what objectRef does not already say.
	URI bool
	// Dict writes a column's strings as numbers into the block's list
	// of that column's distinct strings.
	Dict bool
	// OneFrame compresses a block as one frame rather than a frame per
	// column: fewer frames, but a read of one field decompresses all.
	OneFrame bool
	// Opaque keeps request and response bodies as one value each.
	Opaque bool
	// Rows writes a block as rows rather than columns: each event's
	// template number and values one after the other, and the rows'
	// lengths first, so that reading an event jumps to its row where
	// columns must be walked from the block's start. Dict is ignored
	// (zstd finds the repeats), and an event's first time is written as
	// a difference from the block's first time.
	Rows bool
	// BodiesApart, with Rows and Opaque, keeps request and response
	// bodies in a frame of their own per block, so that reading an event
	// without a body never decompresses its neighbours' bodies.
	BodiesApart bool
}

// template is the part of a line that is not its values: lits[k] comes
// before the value of column cols[k], lits[len(cols)] ends the line.
type template struct {
	lits [][]byte
	cols []int
	// The decoder's: which of the values are objectRef fields, in
	// setRef's order, worked out the first time the template is used
	// rather than for every event.
	refs    []refAt
	refsSet bool
	// The encoder's: the kind of each leaf (leafKinds), for match, and
	// the template of the line that followed a line of this one last
	// time, or 0 (matchTemplate).
	kinds []byte
	after int
}

// refAt says that value i of a template is objectRef field k.
type refAt struct{ i, k int }

// setRefs fills t.refs from the columns of the objectRef fields (setRef's
// cols): setting ref[k] from value i, in this order, where ref[k] is still
// nil, is what setRef over the values does.
func (t *template) setRefs(cols *[nRef]int) {
	for i, col := range t.cols {
		for k, c := range cols {
			if col == c {
				t.refs = append(t.refs, refAt{i, k})
			}
		}
	}
	t.refsSet = true
}

// column is one column's streams in the block being built.
type column struct {
	kinds, str, dict, fix, num []byte
	seen                       map[string]uint64
	seenIDs                    map[[16]byte]uint64
	last                       int64 // the column's previous time
}

// encoder builds a group. It is not safe for concurrent use.
type encoder struct {
	opt    Options
	zenc   *zstd.Encoder
	sp     splitter
	colIDs map[string]int
	paths  []string
	// body[c] says that column c is a top-level request or response
	// body: comparing every leaf's path with theirs was a twentieth of
	// put.
	body    []bool
	tmplIDs map[string]int
	tmpls   []template
	// tmplLeaves counts the leaves of tmpls (maxTemplateLeaves).
	tmplLeaves int
	// lastTmpl is the previous line's template, or 0: events stored
	// together mostly have one shape, and matching a line with it costs
	// less than splitting it and hashing its template's key
	// (matchTemplate).
	lastTmpl int
	ref      [nRef]int // the column of each objectRef field, or -1
	uriCol   int
	key      []byte // a template's key, reused
	guess    []byte // a guessed URI or a written time, reused

	// The block being built.
	tids    []byte
	cols    []column
	evTime  int64 // the event's previous time, when evTimed
	evTimed bool
	// With Rows: the event's streams, the block's rows and their
	// lengths, and the block's first time.
	row     column
	rows    []byte
	rowLens []byte
	nRows   int
	base    int64
	based   bool
	bodies  []byte // with BodiesApart, the block's bodies
	raw     []byte // with Rows, the block before zstd, reused

	blocks [][]byte
}

// rawTemplate is template 0: a line the splitter cannot follow, whole,
// as the one value of column 0.
var rawTemplate = template{lits: [][]byte{nil, nil}, cols: []int{0}}

// normalize fills in defaults and drops options the others rule out.
func (opt Options) normalize() Options {
	if opt.Level == 0 {
		opt.Level = zstd.SpeedDefault
	}
	if opt.Rows {
		opt.Dict, opt.OneFrame = false, false
	}
	if !opt.Rows || !opt.Opaque {
		opt.BodiesApart = false
	}
	return opt
}

// Encoder encodes groups with one set of options, keeping its zstd
// encoder from group to group. It is not safe for concurrent use.
type Encoder struct {
	opt  Options
	zenc *zstd.Encoder
	// e is the previous group's encoder, reset for the next: its
	// buffers have grown to a block's size already, and growing them
	// again for every group of a segment was a twentieth of encoding.
	e *encoder
}

// NewEncoder returns an Encoder; Close releases it.
func NewEncoder(opt Options) (*Encoder, error) {
	opt = opt.normalize()
	// No zstd checksum: every part carries a CRC-32C, checked before it
	// is decompressed.
	zenc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(opt.Level), zstd.WithEncoderConcurrency(1), zstd.WithLowerEncoderMem(true), zstd.WithEncoderCRC(false))
	if err != nil {
		return nil, fmt.Errorf("zstd writer: %w", err)
	}
	return &Encoder{opt: opt, zenc: zenc}, nil
}

// Close releases the Encoder's zstd encoder.
func (x *Encoder) Close() { x.zenc.Close() }

// Group is an encoded group: its head (the layout, the event count and
// the templates) and its blocks, each BlockEvents events. A store may
// keep them apart; ReadBlock reads one block given the head.
type Group struct {
	Head   []byte
	Blocks [][]byte
}

// Bytes returns the group as one byte string, which Open reads.
func (g Group) Bytes() []byte {
	out := appendChunk([]byte(magic), g.Head)
	out = binary.AppendUvarint(out, uint64(len(g.Blocks)))
	for _, b := range g.Blocks {
		out = binary.AppendUvarint(out, uint64(len(b)))
	}
	for _, b := range g.Blocks {
		out = append(out, b...)
	}
	return slices.Clip(out)
}

// Encode returns lines as a group. Any bytes are a line: a Reader gives
// each back exactly. The group's parts do not share memory with lines.
func (x *Encoder) Encode(lines [][]byte) Group {
	if x.e == nil {
		x.e = newEncoder(x.opt, x.zenc)
	} else {
		x.e.reset()
	}
	e := x.e
	per := x.opt.BlockEvents
	if per <= 0 {
		per = max(len(lines), 1)
	}
	for i, l := range lines {
		e.add(l)
		if (i+1)%per == 0 || i == len(lines)-1 {
			e.flush()
		}
	}
	g := Group{Head: e.head(len(lines), per), Blocks: e.blocks}
	e.blocks = nil // the caller's now
	return g
}

// reset makes e as newEncoder made it, keeping its buffers' memory but
// none of the previous group's columns, templates or values.
func (e *encoder) reset() {
	clear(e.colIDs)
	clear(e.tmplIDs)
	e.paths, e.body, e.cols = e.paths[:0], e.body[:0], e.cols[:0]
	clear(e.tmpls) // let the previous group's literals go
	e.tmpls = append(e.tmpls[:0], rawTemplate)
	e.tmplLeaves, e.lastTmpl = 0, 0
	for k := range e.ref {
		e.ref[k] = -1
	}
	e.uriCol = -1
	e.tids = e.tids[:0]
	e.evTime, e.evTimed = 0, false
	e.sp.next, e.sp.paths = e.sp.next[:0], e.sp.paths[:0]
	e.column(nil) // column 0: raw lines
}

func newEncoder(opt Options, zenc *zstd.Encoder) *encoder {
	e := &encoder{
		opt: opt, zenc: zenc, colIDs: map[string]int{}, tmplIDs: map[string]int{},
		uriCol: -1, tmpls: []template{rawTemplate},
	}
	for k := range e.ref {
		e.ref[k] = -1
	}
	e.sp.opaque = opt.Opaque
	e.sp.column = e.column
	e.column(nil) // column 0: raw lines
	return e
}

// maxColumns bounds the columns of a group: a line whose leaves would
// make more is raw. The API server's events make a few dozen (44 in a
// group of the bench corpus); lines of thousands of keys each, none
// twice, made a column of each, and a group of them took 8 times the
// memory and time of format 4 to encode.
const maxColumns = 1 << 12

// column returns the column of a key path, making it if new, or -1 when
// the group has maxColumns already.
func (e *encoder) column(path []byte) int {
	if id, ok := e.colIDs[string(path)]; ok {
		return id
	}
	if len(e.paths) >= maxColumns {
		return -1
	}
	id := len(e.paths)
	p := string(path)
	e.colIDs[p] = id
	e.paths = append(e.paths, p)
	e.cols = append(e.cols, column{})
	e.body = append(e.body, p == "$.requestObject" || p == "$.responseObject")
	if p == uriPath {
		e.uriCol = id
	}
	for k, rp := range refPaths {
		if p == rp {
			e.ref[k] = id
		}
	}
	return id
}

// Encode returns lines as a group in one byte string (Group.Bytes).
// Any bytes are a line: Open gives each back exactly.
func Encode(lines [][]byte, opt Options) ([]byte, error) {
	x, err := NewEncoder(opt)
	if err != nil {
		return nil, err
	}
	defer x.Close()
	return x.Encode(lines).Bytes(), nil
}

func (e *encoder) add(line []byte) {
	tid := -1
	var leaves []span
	if id := e.matchTemplate(line); id > 0 {
		tid, leaves = id, e.sp.leaves
	} else if e.sp.split(line) {
		leaves = e.sp.leaves
		tid = e.template(line, leaves)
	}
	if tid < 0 {
		tid = 0
		leaves = append(e.sp.leaves[:0], span{col: 0, start: 0, end: len(line)})
		e.sp.leaves = leaves
	}
	e.tids = binary.AppendUvarint(e.tids, uint64(tid))
	e.evTimed = false
	var ref [nRef][]byte
	for _, l := range leaves {
		setRef(&ref, &e.ref, l.col, line[l.start:l.end:l.end]) // not nil: the line was split, so not empty

	}
	for _, l := range leaves {
		e.put(l.col, line[l.start:l.end], &ref)
	}
	if e.opt.Rows {
		// The row goes straight to the block's rows: building it apart
		// and copying it was a copy of every event.
		r := &e.row
		at := len(e.rows)
		rows := binary.AppendUvarint(e.rows, uint64(tid))
		rows = appendChunk(rows, r.kinds)
		rows = appendChunk(rows, r.str)
		rows = appendChunk(rows, r.fix)
		e.rows = append(rows, r.num...)
		e.rowLens = binary.AppendUvarint(e.rowLens, uint64(len(e.rows)-at))
		e.nRows++
		r.kinds, r.str, r.fix, r.num = r.kinds[:0], r.str[:0], r.fix[:0], r.num[:0]
	}
}

// maxTemplateLeaves bounds the leaves of a group's templates together: a
// line whose new template would pass it is raw. A template holds a
// literal for each leaf, tens of bytes for a leaf of two ("0,"), so lines
// of thousands of numbers, each of its own shape, took 4 times the
// memory of format 4 to import. The bench corpus's groups need 3,879 at
// most.
const maxTemplateLeaves = 1 << 16

// matchTemplate returns the template of line, with its leaves in
// e.sp.leaves, when it is the previous line's template or the one that
// followed that template last time (match), else 0: sorted by user, verb
// and resource, 19 lines in 20 of the bench corpus have one of the two.
func (e *encoder) matchTemplate(line []byte) int {
	if e.lastTmpl == 0 {
		return 0
	}
	if e.sp.match(line, &e.tmpls[e.lastTmpl]) {
		return e.lastTmpl
	}
	if a := e.tmpls[e.lastTmpl].after; a > 0 && e.sp.match(line, &e.tmpls[a]) {
		e.lastTmpl = a
		return a
	}
	return 0
}

// template returns the number of a split line's template, making it if
// new, or -1 when the group's templates hold maxTemplateLeaves already,
// and notes it as the one that followed the previous line's template
// (matchTemplate).
func (e *encoder) template(line []byte, leaves []span) int {
	id := e.lookTemplate(line, leaves)
	if id > 0 {
		if e.lastTmpl > 0 {
			e.tmpls[e.lastTmpl].after = id
		}
		e.lastTmpl = id
	}
	return id
}

// lookTemplate is template without its notes for matchTemplate: it finds
// the line's template by its key, or makes it.
func (e *encoder) lookTemplate(line []byte, leaves []span) int {
	k := e.key[:0]
	at := 0
	for _, l := range leaves {
		k = appendChunk(k, line[at:l.start])
		k = binary.AppendUvarint(k, uint64(l.col))
		at = l.end
	}
	k = appendChunk(k, line[at:])
	e.key = k
	if id, ok := e.tmplIDs[string(k)]; ok {
		return id
	}
	if e.tmplLeaves+len(leaves) > maxTemplateLeaves {
		return -1
	}
	e.tmplLeaves += len(leaves)
	t := template{cols: make([]int, len(leaves)), kinds: leafKinds(line, leaves, e.opt.Opaque, e.body)}
	at = 0
	for i, l := range leaves {
		t.lits = append(t.lits, bytes.Clone(line[at:l.start]))
		t.cols[i] = l.col
		at = l.end
	}
	t.lits = append(t.lits, bytes.Clone(line[at:]))
	id := len(e.tmpls)
	e.tmplIDs[string(k)] = id
	e.tmpls = append(e.tmpls, t)
	return id
}

// put writes value v of column col as the kind that says it shortest.
func (e *encoder) put(col int, v []byte, ref *[nRef][]byte) {
	c := &e.cols[col]
	if e.opt.Rows {
		c = &e.row
	}
	if e.opt.BodiesApart && e.body[col] {
		c.kinds = append(c.kinds, kindBody)
		c.num = binary.AppendUvarint(c.num, uint64(len(e.bodies)))
		c.num = binary.AppendUvarint(c.num, uint64(len(v)))
		e.bodies = append(e.bodies, v...)
		return
	}
	if e.opt.URI && col == e.uriCol {
		for g := range 3 {
			p, ok := guessURI(e.guess[:0], ref, g)
			e.guess = p
			if ok && bytes.HasPrefix(v, p) && (len(v) == len(p) || v[len(p)] == '?') {
				c.kinds = append(c.kinds, kindURI+byte(g))
				e.putString(c, v[len(p):])
				return
			}
		}
	}
	if e.opt.Types && e.putTyped(c, v) {
		return
	}
	c.kinds = append(c.kinds, kindString)
	e.putString(c, v)
}

// putTyped writes v as a UUID, a time, an integer or a string ending in a
// UUID, the first it can be read as, and says whether it could. Each kind
// has lengths of its own (36, 27, at most 19, more than 36), so v's
// length picks the one kind to try: trying them all in turn, for every
// leaf, was a tenth of encoding.
func (e *encoder) putTyped(c *column, v []byte) bool {
	switch n := len(v); {
	case n == 36:
		if u, ok := parseUUID(v); ok {
			c.kinds = append(c.kinds, kindUUID)
			e.putUUID(c, u)
			return true
		}
	case n == len(microLayout):
		if t, ok := parseMicro(v); ok {
			c.kinds = append(c.kinds, kindTime)
			c.num = binary.AppendUvarint(c.num, zigzag(t-e.timeBase(c, t)))
			c.last, e.evTime, e.evTimed = t, t, true
			return true
		}
	case n <= maxIntLen:
		if i, ok := parseInt(v); ok {
			c.kinds = append(c.kinds, kindInt)
			c.num = binary.AppendUvarint(c.num, zigzag(i))
			return true
		}
	case n > 36:
		if u, ok := parseUUID(v[n-36:]); ok {
			c.kinds = append(c.kinds, kindTailID)
			e.putString(c, v[:n-36])
			e.putUUID(c, u)
			return true
		}
	}
	return false
}

// timeBase is what a time is written as a difference from: the event's
// previous time (a stageTimestamp follows its requestReceivedTimestamp by
// the request's latency), else the column's previous time (events of one
// user, verb and resource are stored in arrival order).
//
// With Rows an event's first time is a difference from the block's first
// time, so that no row depends on the one before.
func (e *encoder) timeBase(c *column, t int64) int64 {
	switch {
	case e.evTimed:
		return e.evTime
	case !e.opt.Rows:
		return c.last
	case !e.based:
		e.base, e.based = t, true
	}
	return e.base
}

// putString writes a string, with Dict as a reference into the column's
// strings in the block: 0 for a new one, which follows in the dictionary
// stream, else 1 + the number of an earlier one. A column of values that
// never repeat (audit IDs) costs a zero per value, which zstd all but
// removes.
func (e *encoder) putString(c *column, v []byte) {
	if !e.opt.Dict {
		c.str = appendChunk(c.str, v)
		return
	}
	if c.seen == nil {
		c.seen = map[string]uint64{}
	}
	if id, ok := c.seen[string(v)]; ok {
		c.str = binary.AppendUvarint(c.str, id+1)
		return
	}
	c.seen[string(v)] = uint64(len(c.seen))
	c.dict = appendChunk(c.dict, v)
	c.str = append(c.str, 0)
}

// putUUID writes a UUID's 16 bytes, with Dict as a reference into the
// column's UUIDs in the block, like putString: an object's or a user's
// UID repeats.
func (e *encoder) putUUID(c *column, u [16]byte) {
	if !e.opt.Dict {
		c.fix = append(c.fix, u[:]...)
		return
	}
	if c.seenIDs == nil {
		c.seenIDs = map[[16]byte]uint64{}
	}
	if id, ok := c.seenIDs[u]; ok {
		c.str = binary.AppendUvarint(c.str, id+1)
		return
	}
	c.seenIDs[u] = uint64(len(c.seenIDs))
	c.fix = append(c.fix, u[:]...)
	c.str = append(c.str, 0)
}

// flush ends the block being built.
func (e *encoder) flush() {
	if e.opt.Rows {
		raw := binary.AppendUvarint(e.raw[:0], zigzag(e.base))
		raw = binary.AppendUvarint(raw, uint64(e.nRows))
		raw = append(append(raw, e.rowLens...), e.rows...)
		e.raw = raw
		block := appendCRC(e.zenc.EncodeAll(raw, nil), 0)
		if e.opt.BodiesApart {
			// The rows' frame, then the bodies' frame, if any.
			block = appendChunk(nil, block)
			if len(e.bodies) > 0 {
				at := len(block)
				block = appendCRC(e.zenc.EncodeAll(e.bodies, block), at)
			}
		}
		e.blocks = append(e.blocks, block)
		e.rows, e.rowLens, e.nRows, e.base, e.based = e.rows[:0], e.rowLens[:0], 0, 0, false
		e.bodies = e.bodies[:0]
		return
	}
	contents := [][]byte{e.tids}
	for i := range e.cols {
		c := &e.cols[i]
		var b []byte
		if len(c.kinds) > 0 {
			b = appendChunk(b, c.kinds)
			b = appendChunk(b, c.str)
			b = appendChunk(b, c.dict)
			b = appendChunk(b, c.fix)
			b = append(b, c.num...)
		}
		contents = append(contents, b)
		c.kinds, c.str, c.dict, c.fix, c.num = c.kinds[:0], c.str[:0], c.dict[:0], c.fix[:0], c.num[:0]
		clear(c.seen)
		clear(c.seenIDs)
		c.last = 0
	}
	e.tids = e.tids[:0]
	var block []byte
	if e.opt.OneFrame {
		var raw []byte
		raw = binary.AppendUvarint(raw, uint64(len(contents)))
		for _, b := range contents {
			raw = binary.AppendUvarint(raw, uint64(len(b)))
		}
		for _, b := range contents {
			raw = append(raw, b...)
		}
		block = e.zenc.EncodeAll(raw, nil)
	} else {
		frames := make([][]byte, len(contents))
		for i, b := range contents {
			if len(b) > 0 {
				frames[i] = e.zenc.EncodeAll(b, nil)
			}
		}
		block = binary.AppendUvarint(block, uint64(len(frames)))
		for _, f := range frames {
			block = binary.AppendUvarint(block, uint64(len(f)))
		}
		for _, f := range frames {
			block = append(block, f...)
		}
	}
	e.blocks = append(e.blocks, appendCRC(block, 0))
}

// head returns the group's head: flags, counts, the meta, a CRC.
func (e *encoder) head(n, per int) []byte {
	var flags byte
	if e.opt.Dict {
		flags |= flagDict
	}
	if e.opt.OneFrame {
		flags |= flagOneFrame
	}
	if e.opt.Rows {
		flags |= flagRows
	}
	if e.opt.BodiesApart {
		flags |= flagBodiesApart
	}
	var meta []byte
	meta = binary.AppendUvarint(meta, uint64(len(e.paths)))
	for _, p := range e.paths {
		meta = appendChunk(meta, []byte(p))
	}
	meta = binary.AppendUvarint(meta, uint64(len(e.tmpls)))
	for _, t := range e.tmpls {
		meta = binary.AppendUvarint(meta, uint64(len(t.cols)))
		for _, l := range t.lits {
			meta = appendChunk(meta, l)
		}
		for _, c := range t.cols {
			meta = binary.AppendUvarint(meta, uint64(c))
		}
	}
	out := []byte{flags}
	out = binary.AppendUvarint(out, uint64(n))
	out = binary.AppendUvarint(out, uint64(per))
	out = appendChunk(out, e.zenc.EncodeAll(meta, nil))
	return slices.Clip(appendCRC(out, 0))
}
