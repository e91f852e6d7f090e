package local

import (
	"encoding/binary"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/klauspost/compress/zstd"

	"github.com/kubetrail/kubetrail/internal/audit"
)

// Column names one dictionary-encoded column of a segment: for each event,
// the id of its value in the segment's dictionary for that column. Queries
// test a predicate once per dictionary value and then only compare ids, and
// statistics count ids; neither touches the events' text.
type Column uint8

// The columns, in the order they are stored. A multi-valued field (groups,
// source IPs) stores its values joined by ListSep as one dictionary value.
const (
	ColCluster Column = iota
	ColUser
	ColGroups
	ColAs
	ColVerb
	ColResource
	ColSubresource
	ColNamespace
	ColName
	ColAPIGroup
	ColAPIVersion
	ColCode
	ColLevel
	ColStage
	ColSourceIPs
	ColUserAgent
	ColDecision
	ColReason
	ColStatus
	NumColumns
)

// colRow is one event's column values.
type colRow = [NumColumns]string

// ListSep joins the values of a multi-valued column.
const ListSep = "\x1f"

var columnNames = [NumColumns]string{
	"cluster", "user", "groups", "as", "verb", "resource", "subresource", "ns", "name",
	"apigroup", "apiversion", "code", "level", "stage", "ips", "ua", "decision", "reason", "status",
}

func (c Column) String() string {
	if c < NumColumns {
		return columnNames[c]
	}
	return "column" + strconv.Itoa(int(c))
}

// ColumnByName returns the column with this name.
func ColumnByName(name string) (Column, bool) {
	for i, n := range columnNames {
		if n == name {
			return Column(i), true
		}
	}
	return 0, false
}

// columnValues extracts an event's column values.
func columnValues(cluster string, ev *audit.Event, out *[NumColumns]string) {
	out[ColCluster] = cluster
	out[ColUser] = ev.User.Username
	out[ColGroups] = strings.Join(ev.User.Groups, ListSep)
	out[ColAs] = ""
	if ev.ImpersonatedUser != nil {
		out[ColAs] = ev.ImpersonatedUser.Username
	}
	out[ColVerb] = ev.Verb
	var ref audit.ObjectReference
	if ev.ObjectRef != nil {
		ref = *ev.ObjectRef
	}
	out[ColResource], out[ColSubresource], out[ColNamespace], out[ColName] = ref.Resource, ref.Subresource, ref.Namespace, ref.Name
	out[ColAPIGroup], out[ColAPIVersion] = ref.APIGroup, ref.APIVersion
	out[ColCode], out[ColReason], out[ColStatus] = "", "", ""
	if st := ev.ResponseStatus; st != nil {
		if st.Code != 0 {
			out[ColCode] = strconv.Itoa(int(st.Code))
		}
		out[ColReason], out[ColStatus] = st.Reason, st.Status
	}
	out[ColLevel], out[ColStage] = string(ev.Level), string(ev.Stage)
	out[ColSourceIPs] = strings.Join(ev.SourceIPs, ListSep)
	out[ColUserAgent] = ev.UserAgent
	out[ColDecision] = ev.Annotations["authorization.k8s.io/decision"]
}

// columnBuilder collects a segment's columns while it is written.
type columnBuilder struct {
	dicts [NumColumns]map[string]uint32
	vals  [NumColumns][]string // id -> value, in first-seen order
	ids   [NumColumns][]uint32
	times []int64
	recvs []int64
	n     int
	// durable is the columns of the events made durable so far, for
	// readers (DB.OpenReader); set by the committer after each sync.
	durable atomic.Pointer[memCols]
}

// memCols are the column values of the first n events of a WAL segment,
// as the committer built them at ingest. They are immutable: the builder
// only appends past them (a failed commit cuts back only what was not
// durable), so readers use them without a lock.
type memCols struct {
	vals         [NumColumns][]string // id -> value
	ids          [NumColumns][]uint32
	times, recvs []int64
	n            int
}

// publish makes the events added so far visible to readers. Only the
// goroutine that adds may call it, and only once they are durable.
func (b *columnBuilder) publish() {
	m := &memCols{n: b.n, times: b.times[:b.n:b.n], recvs: b.recvs[:b.n:b.n]}
	for c := range m.vals {
		m.vals[c] = b.vals[c][:len(b.vals[c]):len(b.vals[c])]
		m.ids[c] = b.ids[c][:b.n:b.n]
	}
	b.durable.Store(m)
}

func (m *memCols) value(c Column, ord int) string { return m.vals[c][m.ids[c][ord]] }

func newColumnBuilder() *columnBuilder {
	b := &columnBuilder{}
	for c := range b.dicts {
		b.dicts[c] = map[string]uint32{}
	}
	return b
}

func (b *columnBuilder) add(t, received int64, v *[NumColumns]string) {
	for c := range v {
		id, ok := b.dicts[c][v[c]]
		if !ok {
			// A copy: the value may point into an event's buffer, which
			// the dictionary must not keep alive.
			val := strings.Clone(v[c])
			id = uint32(len(b.vals[c]))
			b.dicts[c][val] = id
			b.vals[c] = append(b.vals[c], val)
		}
		b.ids[c] = append(b.ids[c], id)
	}
	b.times = append(b.times, t)
	b.recvs = append(b.recvs, received)
	b.n++
}

// appendColumns adds a segment's events from its decoded columns, as
// compaction merges segments: each dictionary value is looked up once, then
// only ids are remapped. cols must hold every column with its ids.
func (b *columnBuilder) appendColumns(cols *[NumColumns]*ColumnData, times, recvs []int64) {
	for c, cd := range cols {
		remap := make([]uint32, len(cd.Values))
		for old, v := range cd.Values {
			id, ok := b.dicts[c][v]
			if !ok {
				val := strings.Clone(v)
				id = uint32(len(b.vals[c]))
				b.dicts[c][val] = id
				b.vals[c] = append(b.vals[c], val)
			}
			remap[old] = id
		}
		for _, id := range cd.IDs {
			b.ids[c] = append(b.ids[c], remap[id])
		}
	}
	b.times = append(b.times, times...)
	b.recvs = append(b.recvs, recvs...)
	b.n += len(times)
}

// truncate drops the events after the first n (a failed commit). Their
// dictionary values stay; unused values are harmless.
func (b *columnBuilder) truncate(n int) {
	for c := range b.ids {
		b.ids[c] = b.ids[c][:n]
	}
	b.times, b.recvs, b.n = b.times[:n], b.recvs[:n], n
}

// columnMeta locates one column's frames in the segment file.
type columnMeta struct {
	Name    string `json:"name"`
	Values  int    `json:"values"`
	DictOff int64  `json:"dictOff"`
	DictLen int64  `json:"dictLen"`
	IDsLen  int64  `json:"idsLen"` // right after the dictionary
	// BloomLen > 0: a Bloom filter of the values, uncompressed, right
	// after the ids (large dictionaries of single-valued columns only).
	BloomLen int64 `json:"bloomLen,omitempty"`
}

// encode writes the columns: per column a zstd frame of the dictionary
// (values sorted, each uvarint length + bytes) and a zstd frame of the ids
// (fixed width: 1, 2 or 4 bytes little endian, as the dictionary needs),
// then the time column (zigzag varint deltas). Sorting the dictionary lets
// readers binary-search a value and range-scan a prefix.
func (b *columnBuilder) encode(enc *zstd.Encoder, off int64, dst []byte) ([]byte, []columnMeta, columnMeta, columnMeta) {
	var metas []columnMeta
	var plain []byte
	for c := Column(0); c < NumColumns; c++ {
		vals := b.vals[c]
		order := make([]uint32, len(vals))
		for i := range order {
			order[i] = uint32(i)
		}
		sort.Slice(order, func(i, j int) bool { return vals[order[i]] < vals[order[j]] })
		remap := make([]uint32, len(vals))
		plain = plain[:0]
		for newID, oldID := range order {
			remap[oldID] = uint32(newID)
			plain = binary.AppendUvarint(plain, uint64(len(vals[oldID])))
			plain = append(plain, vals[oldID]...)
		}
		m := columnMeta{Name: c.String(), Values: len(vals), DictOff: off + int64(len(dst))}
		before := len(dst)
		dst = enc.EncodeAll(plain, dst)
		m.DictLen = int64(len(dst) - before)
		w := idWidth(len(vals))
		plain = plain[:0]
		for _, id := range b.ids[c] {
			plain = appendID(plain, remap[id], w)
		}
		before = len(dst)
		dst = enc.EncodeAll(plain, dst)
		m.IDsLen = int64(len(dst) - before)
		if len(vals) >= bloomMinValues && c != ColGroups && c != ColSourceIPs {
			bf := newBloom(len(vals))
			for _, v := range vals {
				bf.add(v)
			}
			dst = append(dst, bf.bits...)
			m.BloomLen = int64(len(bf.bits))
		}
		metas = append(metas, m)
	}
	tm, rm := columnMeta{}, columnMeta{}
	for _, tc := range []struct {
		m    *columnMeta
		name string
		vals []int64
	}{{&tm, "time", b.times}, {&rm, "received", b.recvs}} {
		plain = plain[:0]
		var prev int64
		for _, t := range tc.vals {
			plain = binary.AppendVarint(plain, t-prev)
			prev = t
		}
		*tc.m = columnMeta{Name: tc.name, Values: len(tc.vals), DictOff: off + int64(len(dst))}
		before := len(dst)
		dst = enc.EncodeAll(plain, dst)
		tc.m.IDsLen = int64(len(dst) - before)
	}
	return dst, metas, tm, rm
}

func idWidth(values int) int {
	switch {
	case values <= 1<<8:
		return 1
	case values <= 1<<16:
		return 2
	default:
		return 4
	}
}

func appendID(dst []byte, id uint32, w int) []byte {
	switch w {
	case 1:
		return append(dst, byte(id))
	case 2:
		return binary.LittleEndian.AppendUint16(dst, uint16(id))
	default:
		return binary.LittleEndian.AppendUint32(dst, id)
	}
}

// ColumnData is one decoded column of a segment.
type ColumnData struct {
	// Values is the sorted dictionary.
	Values []string
	// IDs holds, per event in segment order, the index of its value.
	IDs []uint32
}

// readColumn decodes one column.
func (r *segmentReader) readColumn(dec *zstd.Decoder, c Column) (*ColumnData, error) {
	cd, err := r.readDict(dec, c)
	if err != nil {
		return nil, err
	}
	return cd, r.readIDs(dec, c, cd)
}

// readDict decodes a column's dictionary only: enough to tell whether any
// event of the segment can match a condition on it.
func (r *segmentReader) readDict(dec *zstd.Decoder, c Column) (*ColumnData, error) {
	if int(c) >= len(r.meta.Columns) {
		return nil, fmt.Errorf("segment has no column %s (written by an older kubetrail)", c)
	}
	m := r.meta.Columns[c]
	buf := make([]byte, m.DictLen)
	if _, err := r.f.ReadAt(buf, m.DictOff); err != nil {
		return nil, fmt.Errorf("read column %s: %w", c, err)
	}
	dict, err := dec.DecodeAll(buf, nil)
	if err != nil {
		return nil, fmt.Errorf("column %s dictionary: %w", c, err)
	}
	// One string for the whole dictionary; values are substrings of it.
	all := string(dict)
	cd := &ColumnData{Values: make([]string, 0, m.Values)}
	for off := 0; off < len(all); {
		n, k := binary.Uvarint(dict[off:])
		if k <= 0 || uint64(len(all)-off-k) < n {
			return nil, fmt.Errorf("column %s: corrupt dictionary", c)
		}
		cd.Values = append(cd.Values, all[off+k:off+k+int(n)])
		off += k + int(n)
	}
	return cd, nil
}

// readIDs decodes a column's ids into cd.
func (r *segmentReader) readIDs(dec *zstd.Decoder, c Column, cd *ColumnData) error {
	m := r.meta.Columns[c]
	buf := make([]byte, m.IDsLen)
	if _, err := r.f.ReadAt(buf, m.DictOff+m.DictLen); err != nil {
		return fmt.Errorf("read column %s: %w", c, err)
	}
	ids, err := dec.DecodeAll(buf, nil)
	if err != nil {
		return fmt.Errorf("column %s ids: %w", c, err)
	}
	w := idWidth(m.Values)
	if len(ids) != w*r.meta.Count {
		return fmt.Errorf("column %s: %d bytes of ids for %d events", c, len(ids), r.meta.Count)
	}
	cd.IDs = make([]uint32, r.meta.Count)
	for i := range cd.IDs {
		switch w {
		case 1:
			cd.IDs[i] = uint32(ids[i])
		case 2:
			cd.IDs[i] = uint32(binary.LittleEndian.Uint16(ids[2*i:]))
		default:
			cd.IDs[i] = binary.LittleEndian.Uint32(ids[4*i:])
		}
		if cd.IDs[i] >= uint32(len(cd.Values)) {
			return fmt.Errorf("column %s: id out of range at event %d", c, i)
		}
	}
	return nil
}

// readTimes decodes a time column (unix microseconds per event).
func (r *segmentReader) readTimes(dec *zstd.Decoder, m columnMeta) ([]int64, error) {
	buf := make([]byte, m.IDsLen)
	if _, err := r.f.ReadAt(buf, m.DictOff); err != nil {
		return nil, err
	}
	plain, err := dec.DecodeAll(buf, nil)
	if err != nil {
		return nil, err
	}
	out := make([]int64, 0, r.meta.Count)
	var t int64
	for p := plain; len(p) > 0; {
		d, k := binary.Varint(p)
		if k <= 0 {
			return nil, fmt.Errorf("corrupt %s column", m.Name)
		}
		t += d
		out = append(out, t)
		p = p[k:]
	}
	if len(out) != r.meta.Count {
		return nil, fmt.Errorf("%s column has %d values for %d events", m.Name, len(out), r.meta.Count)
	}
	return out, nil
}

// readBloom returns a column's Bloom filter, or nil when it has none.
func (r *segmentReader) readBloom(c Column) (*bloom, error) {
	m := r.meta.Columns[c]
	if m.BloomLen == 0 {
		return nil, nil
	}
	b := &bloom{bits: make([]byte, m.BloomLen), k: 7}
	if _, err := r.f.ReadAt(b.bits, m.DictOff+m.DictLen+m.IDsLen); err != nil {
		return nil, fmt.Errorf("read column %s bloom filter: %w", c, err)
	}
	return b, nil
}
