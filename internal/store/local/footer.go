package local

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// A v3 or v4 segment's meta is binary (v2's was JSON): every query opens every
// segment it may need and reads its meta, and decoding ~4 KiB of JSON took
// about 50 µs a segment, decoding these varints a few µs. All integers are
// uvarints but times (zigzag varints) and the groups' order hashes (8 bytes
// little endian); the meta ends with the CRC-32C of what precedes it.
//
//	version walFirst walLast count rawBytes minTime maxTime
//	clusters: n, then n times length + bytes
//	sortBy:   n, then n column numbers
//	groups:   n, then n times first count rawBytes minTime maxTime block0 blocks order
//	          (v4: then keysOff keysLen; v5: then headOff headLen)
//	blocks:   n, then n times off len first count rawBytes
//	columns:  n, then n times kind values off dictLen idsLen rareLen
//	time, received, lengths: off len each
//	parts:    n, then n times wal first count
//	trust:    (optional, docs/adr/0016) byte 'T', flags (1: linked,
//	          2: prints), prev chain head (32 bytes, when linked), n, n
//	          roots (32 bytes), then (when prints, docs/adr/0018) the leaf
//	          prints frame's off and len
//	audit:    (optional, docs/adr/0022) byte 'A', then the audit ID
//	          table's off and len
//	crc32c    4 bytes little endian

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func (m *segmentMeta) appendBinary(b []byte) []byte {
	u := func(v uint64) { b = binary.AppendUvarint(b, v) }
	i := func(v int64) { b = binary.AppendVarint(b, v) }
	u(uint64(m.Version))
	u(m.WALFirst)
	u(m.WALLast)
	u(uint64(m.Count))
	u(uint64(m.RawBytes))
	i(m.MinTime)
	i(m.MaxTime)
	u(uint64(len(m.Clusters)))
	for _, c := range m.Clusters {
		u(uint64(len(c)))
		b = append(b, c...)
	}
	u(uint64(len(m.SortBy)))
	for _, c := range m.SortBy {
		u(uint64(c))
	}
	u(uint64(len(m.Groups)))
	for _, g := range m.Groups {
		u(uint64(g.First))
		u(uint64(g.Count))
		u(uint64(g.RawBytes))
		i(g.MinTime)
		i(g.MaxTime)
		u(uint64(g.Block0))
		u(uint64(g.Blocks))
		b = binary.LittleEndian.AppendUint64(b, g.Order)
		if m.Version >= 4 {
			u(uint64(g.KeysOff))
			u(uint64(g.KeysLen))
		}
		if m.Version >= 5 {
			u(uint64(g.HeadOff))
			u(uint64(g.HeadLen))
		}
	}
	u(uint64(len(m.Blocks)))
	for _, bl := range m.Blocks {
		u(uint64(bl.Off))
		u(uint64(bl.Len))
		u(uint64(bl.First))
		u(uint64(bl.Count))
		u(uint64(bl.RawBytes))
	}
	u(uint64(len(m.Columns)))
	for _, c := range m.Columns {
		u(uint64(c.Kind))
		u(uint64(c.Values))
		u(uint64(c.DictOff))
		u(uint64(c.DictLen))
		u(uint64(c.IDsLen))
		u(uint64(c.RareLen))
	}
	for _, c := range []columnMeta{m.Time, m.Received, m.Lengths} {
		u(uint64(c.DictOff))
		u(uint64(c.IDsLen))
	}
	u(uint64(len(m.Parts)))
	for _, p := range m.Parts {
		u(p.WAL)
		u(uint64(p.First))
		u(uint64(p.Count))
	}
	if t := m.Trust; t != nil {
		b = append(b, trustTag)
		flags := byte(0)
		if t.Linked {
			flags |= trustLinked
		}
		if t.PrintsLen > 0 {
			flags |= trustPrints
		}
		b = append(b, flags)
		if t.Linked {
			b = append(b, t.Prev[:]...)
		}
		u(uint64(len(t.Roots)))
		for _, r := range t.Roots {
			b = append(b, r[:]...)
		}
		if t.PrintsLen > 0 {
			u(uint64(t.PrintsOff))
			u(uint64(t.PrintsLen))
		}
	}
	if m.AuditLen > 0 {
		b = append(b, auditTag)
		u(uint64(m.AuditOff))
		u(uint64(m.AuditLen))
	}
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

// metaDecoder reads the fields of a binary meta; the first error sticks.
type metaDecoder struct {
	b   []byte
	err error
}

func (d *metaDecoder) u() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errors.New("meta is cut short")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *metaDecoder) i() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = errors.New("meta is cut short")
		return 0
	}
	d.b = d.b[n:]
	return v
}

// n reads a count of items of at least min bytes each, refusing counts
// that the rest of the meta cannot hold.
func (d *metaDecoder) n(min int) int {
	v := d.u()
	if d.err == nil && v > uint64(len(d.b)/min) {
		d.err = errors.New("meta holds an impossible count")
		return 0
	}
	return int(v)
}

// trustTag starts the optional trust section of a meta; its flags say
// what follows.
const (
	trustTag    = 'T'
	trustLinked = 1
	trustPrints = 2
)

// auditTag starts the optional audit ID table section of a meta.
const auditTag = 'A'

// trust reads the trust section, tag included.
func (d *metaDecoder) trust() (*segTrust, error) {
	if len(d.b) < 2 || d.b[1]&^(trustLinked|trustPrints) != 0 {
		return nil, errors.New("meta trust section is damaged")
	}
	flags := d.b[1]
	t := &segTrust{Linked: flags&trustLinked != 0}
	d.b = d.b[2:]
	if t.Linked {
		if len(d.b) < len(t.Prev) {
			return nil, errors.New("meta is cut short")
		}
		copy(t.Prev[:], d.b)
		d.b = d.b[len(t.Prev):]
	}
	t.Roots = make([]hash, d.n(len(hash{})))
	for k := range t.Roots {
		copy(t.Roots[k][:], d.b)
		d.b = d.b[len(hash{}):]
	}
	if flags&trustPrints != 0 {
		t.PrintsOff, t.PrintsLen = d.int64(), d.int64()
		if d.err == nil && t.PrintsLen == 0 {
			return nil, errors.New("meta trust section is damaged")
		}
	}
	return t, d.err
}

func (d *metaDecoder) int() int     { return int(d.u()) }
func (d *metaDecoder) int64() int64 { return int64(d.u()) }

func (m *segmentMeta) decodeBinary(b []byte) error {
	if len(b) < 4 {
		return errors.New("meta is cut short")
	}
	body := b[:len(b)-4]
	if crc32.Checksum(body, castagnoli) != binary.LittleEndian.Uint32(b[len(body):]) {
		return errChecksum
	}
	d := &metaDecoder{b: body}
	*m = segmentMeta{}
	m.Version = d.int()
	m.WALFirst = d.u()
	m.WALLast = d.u()
	m.Count = d.int()
	m.RawBytes = d.int64()
	m.MinTime = d.i()
	m.MaxTime = d.i()
	m.Clusters = make([]string, d.n(1))
	for k := range m.Clusters {
		l := d.n(1)
		if d.err != nil || l > len(d.b) {
			return errors.New("meta is cut short")
		}
		m.Clusters[k] = string(d.b[:l])
		d.b = d.b[l:]
	}
	m.SortBy = make([]Column, d.n(1))
	for k := range m.SortBy {
		m.SortBy[k] = Column(d.u())
	}
	m.Groups = make([]groupMeta, d.n(15))
	for k := range m.Groups {
		g := &m.Groups[k]
		g.First, g.Count, g.RawBytes = d.int(), d.int(), d.int64()
		g.MinTime, g.MaxTime = d.i(), d.i()
		g.Block0, g.Blocks = d.int(), d.int()
		if d.err == nil && len(d.b) < 8 {
			d.err = errors.New("meta is cut short")
		}
		if d.err != nil {
			return d.err
		}
		g.Order = binary.LittleEndian.Uint64(d.b)
		d.b = d.b[8:]
		if m.Version >= 4 {
			g.KeysOff, g.KeysLen = d.int64(), d.int64()
		}
		if m.Version >= 5 {
			g.HeadOff, g.HeadLen = d.int64(), d.int64()
		}
	}
	m.Blocks = make([]blockMeta, d.n(5))
	for k := range m.Blocks {
		bl := &m.Blocks[k]
		bl.Off, bl.Len, bl.First, bl.Count, bl.RawBytes = d.int64(), d.int64(), d.int(), d.int(), d.int64()
	}
	m.Columns = make([]columnMeta, d.n(6))
	for k := range m.Columns {
		c := &m.Columns[k]
		c.Name = Column(k).String()
		c.Kind = columnKind(d.u())
		c.Values, c.DictOff, c.DictLen, c.IDsLen, c.RareLen = d.int(), d.int64(), d.int64(), d.int64(), d.int64()
	}
	for _, c := range []struct {
		m    *columnMeta
		name string
	}{{&m.Time, "time"}, {&m.Received, "received"}, {&m.Lengths, "lengths"}} {
		*c.m = columnMeta{Name: c.name, Values: m.Count, DictOff: d.int64(), IDsLen: d.int64()}
	}
	m.Parts = make([]walPart, d.n(3))
	for k := range m.Parts {
		p := &m.Parts[k]
		p.WAL, p.First, p.Count = d.u(), d.int(), d.int()
	}
	if d.err != nil {
		return d.err
	}
	if len(d.b) > 0 && d.b[0] == trustTag {
		t, err := d.trust()
		if err != nil {
			return err
		}
		m.Trust = t
	}
	if len(d.b) > 0 && d.b[0] == auditTag {
		d.b = d.b[1:]
		m.AuditOff, m.AuditLen = d.int64(), d.int64()
		if d.err != nil {
			return d.err
		}
		if m.AuditLen == 0 {
			return errors.New("meta audit section is damaged")
		}
	}
	if len(d.b) != 0 {
		return fmt.Errorf("meta has %d bytes too many", len(d.b))
	}
	if len(m.Parts) == 0 {
		m.Parts = nil
	}
	return m.check()
}

// check refuses a v3 or v4 meta whose groups and blocks do not tile the
// events, or a v4 group without keys: readers index arrays with these
// numbers.
func (m *segmentMeta) check() error {
	next, nextBlock := 0, 0
	for gi, g := range m.Groups {
		if g.First != next || g.Count <= 0 || g.Block0 != nextBlock || g.Blocks <= 0 || g.Block0+g.Blocks > len(m.Blocks) {
			return fmt.Errorf("group %d does not follow the one before it", gi)
		}
		if m.Version >= 4 && (g.KeysLen <= 0 || g.KeysOff < 0) {
			return fmt.Errorf("group %d has no keys", gi)
		}
		if m.Version >= 5 && (g.HeadLen <= 0 || g.HeadOff < 0) {
			return fmt.Errorf("group %d has no text head", gi)
		}
		pos := g.First
		for _, b := range m.Blocks[g.Block0 : g.Block0+g.Blocks] {
			if b.First != pos || b.Count <= 0 || b.Off < 0 || b.Len < 0 {
				return fmt.Errorf("group %d: its blocks do not hold its events", gi)
			}
			pos += b.Count
		}
		if pos != g.First+g.Count {
			return fmt.Errorf("group %d: its blocks hold %d events, it has %d", gi, pos-g.First, g.Count)
		}
		next, nextBlock = pos, g.Block0+g.Blocks
	}
	if next != m.Count || nextBlock != len(m.Blocks) {
		return fmt.Errorf("groups hold %d events in %d blocks, the segment %d in %d", next, nextBlock, m.Count, len(m.Blocks))
	}
	for _, c := range m.SortBy {
		if c >= NumColumns {
			return fmt.Errorf("sorted by unknown column %d", c)
		}
	}
	if m.Trust != nil && len(m.Trust.Roots) != len(m.parts()) {
		return fmt.Errorf("trust section has %d roots for %d WAL segments", len(m.Trust.Roots), len(m.parts()))
	}
	for _, p := range m.Parts {
		if p.First < 0 || p.Count < 0 || p.First+p.Count > m.Count {
			return fmt.Errorf("part of WAL segment %d lies outside the segment", p.WAL)
		}
	}
	return nil
}
