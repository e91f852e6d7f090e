package local

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"slices"
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
	// prints holds the audit ID print (auditPrint) of each event added
	// with add, so that sealing need not find the audit ID in the text
	// again (a twentieth of serve's CPU under webhook load). Events
	// added with appendColumns have none: once there are such events,
	// len(prints) < n for good, and the writer reads audit IDs from the
	// text.
	prints []uint32
	n      int
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

// add appends an event's column values and the print of its audit ID.
func (b *columnBuilder) add(t, received int64, v *[NumColumns]string, print uint32) {
	for c := range v {
		// The previous event's value first: consecutive events mostly
		// share a column's value (always the cluster, mostly the level,
		// the stage, the decision), and comparing two strings costs
		// less than hashing one; the maps were a twentieth of import.
		if n := len(b.ids[c]); n > 0 {
			if id := b.ids[c][n-1]; b.vals[c][id] == v[c] {
				b.ids[c] = append(b.ids[c], id)
				continue
			}
		}
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
	b.prints = append(b.prints, print)
	b.n++
}

// print returns the audit ID print of the event at ord, or ok false when
// the builder does not hold every event's (appendColumns).
func (b *columnBuilder) print(ord int) (p uint32, ok bool) {
	if len(b.prints) != b.n || ord >= b.n {
		return 0, false
	}
	return b.prints[ord], true
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
	b.prints = b.prints[:min(n, len(b.prints))]
}

// storageOrder returns the order in which the group of events [first,
// first+n) is stored: sorted by the sortBy columns' values (ranks in the
// dictionary so far, which sort as the final dictionary's ids do), ties in
// arrival order. Entries are offsets in the group.
func (b *columnBuilder) storageOrder(first, n int) []int32 {
	keys := make([][]uint32, len(sortBy))
	sizes := make([]int, len(sortBy))
	for k, c := range sortBy {
		vals := b.vals[c]
		byValue := make([]uint32, len(vals))
		for i := range byValue {
			byValue[i] = uint32(i)
		}
		sort.Slice(byValue, func(i, j int) bool { return vals[byValue[i]] < vals[byValue[j]] })
		rank := make([]uint32, len(vals))
		for r, id := range byValue {
			rank[id] = uint32(r)
		}
		key := make([]uint32, n)
		for i := range key {
			key[i] = rank[b.ids[c][first+i]]
		}
		keys[k], sizes[k] = key, len(vals)
	}
	return sortedOrder(n, keys, sizes)
}

// sameKey reports whether events i and j have the same value in every
// sortBy column: the same sort key.
func (b *columnBuilder) sameKey(i, j int) bool {
	for _, c := range sortBy {
		if b.ids[c][i] != b.ids[c][j] {
			return false
		}
	}
	return true
}

// columnKind says how a v3 column is stored.
type columnKind uint8

const (
	// kindIDs: a zstd frame of the dictionary with counts, then a zstd
	// frame of one id per event.
	kindIDs columnKind = iota
	// kindPostings: a chunk index (DictOff, DictLen bytes, not compressed),
	// then the chunks (IDsLen bytes), each a zstd frame of a run of the
	// dictionary with counts and postings.
	kindPostings
)

// postingsMinValues is the dictionary size from which a column is stored
// as postings: a question for one value then reads one chunk of a few KiB
// instead of the whole dictionary and ids. With this many values the
// average one holds under 1% of the events, and ids take a byte each.
const postingsMinValues = 128

// chunkBytes is the size a postings chunk is cut at, before compression.
const chunkBytes = 8 << 10

// columnMeta locates one column's frames in the segment file.
type columnMeta struct {
	Name    string `json:"name"`
	Values  int    `json:"values"`
	DictOff int64  `json:"dictOff"`
	DictLen int64  `json:"dictLen"`
	IDsLen  int64  `json:"idsLen"` // right after the dictionary
	// BloomLen > 0 (v2): a Bloom filter of the values, uncompressed, right
	// after the ids (large dictionaries of single-valued columns only).
	BloomLen int64 `json:"bloomLen,omitempty"`
	// Kind (v3) says how the column is stored; v2 columns are all kindIDs.
	Kind columnKind `json:"-"`
	// RareLen (v3, kindIDs) is the length of the rare values' postings
	// frame, right after the ids; 0 when no value is rare.
	RareLen int64 `json:"-"`
}

// rareShare: a value of an ids column held by at most 1/rareShare of the
// segment's events is rare, and its postings are kept beside the ids. A
// condition on it (verb=delete, subresource=exec) then lists its events
// without decompressing the column's ids, about 60 µs a segment, for 1%
// more room.
const rareShare = 64

// isRare says whether a value held by count of n events is rare.
func isRare(count, n int) bool { return count*rareShare <= n }

// encode writes the columns (see the segment layout in segment.go): per
// column its dictionary, values sorted (each uvarint length + bytes +
// uvarint count), and either the ids (fixed width: 1, 2 or 4 bytes little
// endian, as the dictionary needs) or, for a large dictionary, postings;
// and the rare values' postings (encodeRare); then the time columns (the
// first value as a varint, then zigzag deltas) and the lengths, as byte
// planes. Sorting the dictionary lets readers binary-search a value and
// range-scan a prefix. Values no event holds (left by a failed commit) are
// dropped.
func (b *columnBuilder) encode(enc *zstd.Encoder, off int64, lengths []uint32) ([]byte, []columnMeta, [3]columnMeta, error) {
	var metas []columnMeta
	var dst, plain []byte
	n := b.n
	if len(lengths) != n {
		return nil, nil, [3]columnMeta{}, fmt.Errorf("BUG: %d lengths for %d events", len(lengths), n)
	}
	for c := Column(0); c < NumColumns; c++ {
		vals, ids := b.vals[c], b.ids[c][:n]
		counts := make([]int, len(vals))
		for _, id := range ids {
			counts[id]++
		}
		order := make([]uint32, 0, len(vals))
		for id, k := range counts {
			if k > 0 {
				order = append(order, uint32(id))
			}
		}
		sort.Slice(order, func(i, j int) bool { return vals[order[i]] < vals[order[j]] })
		remap := make([]uint32, len(vals))
		for newID, oldID := range order {
			remap[oldID] = uint32(newID)
		}
		m := columnMeta{Name: c.String(), Values: len(order), DictOff: off + int64(len(dst))}
		if len(order) >= postingsMinValues {
			m.Kind = kindPostings
			index, chunks := encodePostings(enc, vals, counts, order, remap, ids)
			dst = append(dst, index...)
			dst = append(dst, chunks...)
			m.DictLen, m.IDsLen = int64(len(index)), int64(len(chunks))
			metas = append(metas, m)
			continue
		}
		plain = plain[:0]
		for _, oldID := range order {
			plain = binary.AppendUvarint(plain, uint64(len(vals[oldID])))
			plain = append(plain, vals[oldID]...)
			plain = binary.AppendUvarint(plain, uint64(counts[oldID]))
		}
		before := len(dst)
		dst = enc.EncodeAll(plain, dst)
		m.DictLen = int64(len(dst) - before)
		w := idWidth(len(order))
		plain = plain[:0]
		for _, id := range ids {
			plain = appendID(plain, remap[id], w)
		}
		before = len(dst)
		dst = enc.EncodeAll(plain, dst)
		m.IDsLen = int64(len(dst) - before)
		if rare := encodeRare(plain[:0], counts, order, remap, ids, n); rare != nil {
			before = len(dst)
			dst = enc.EncodeAll(rare, dst)
			m.RareLen = int64(len(dst) - before)
		}
		metas = append(metas, m)
	}
	var times [3]columnMeta
	vals := make([]uint64, n)
	for k, tc := range []struct {
		name string
		vals []int64
	}{{"time", b.times[:n]}, {"received", b.recvs[:n]}, {"lengths", nil}} {
		plain = plain[:0]
		if tc.vals != nil {
			// The first value in full, then the deltas from it: the
			// planes are as wide as the largest delta.
			var prev int64
			if len(tc.vals) > 0 {
				prev = tc.vals[0]
			}
			plain = binary.AppendVarint(plain, prev)
			for i, t := range tc.vals {
				d := t - prev
				vals[i] = uint64(d<<1) ^ uint64(d>>63) // zigzag
				prev = t
			}
		} else {
			for i, l := range lengths {
				vals[i] = uint64(l)
			}
		}
		times[k] = columnMeta{Name: tc.name, Values: n, DictOff: off + int64(len(dst))}
		plain = appendPlanes(plain, vals)
		before := len(dst)
		dst = enc.EncodeAll(plain, dst)
		times[k].IDsLen = int64(len(dst) - before)
	}
	return dst, metas, times, nil
}

// encodePostings returns a postings column's chunk index and chunks. A
// chunk is a zstd frame of a run of the sorted dictionary: each value
// (uvarint length + bytes) with its count (uvarint), then each
// value's events' ordinals, ascending (uvarint: the first, then each gap
// less one). The index lists per chunk its frame length, number of values,
// number of events and first value (uvarint length + bytes), after the
// number of chunks. order lists the used old ids in value order; remap maps
// old ids to new.
func encodePostings(enc *zstd.Encoder, vals []string, counts []int, order, remap []uint32, ids []uint32) (index, dst []byte) {
	// The events' ordinals, grouped by value, ascending within each.
	start := make([]int, len(order)+1)
	for k, oldID := range order {
		start[k+1] = start[k] + counts[oldID]
	}
	fill := append([]int(nil), start[:len(order)]...)
	post := make([]int32, len(ids))
	for i, id := range ids {
		k := remap[id]
		post[fill[k]] = int32(i)
		fill[k]++
	}
	var entries []byte
	nchunks := 0
	var head, body []byte
	nvals, total, firstK := 0, 0, 0
	for k, oldID := range order {
		if nvals == 0 {
			firstK = k
		}
		v := vals[oldID]
		head = binary.AppendUvarint(head, uint64(len(v)))
		head = append(head, v...)
		head = binary.AppendUvarint(head, uint64(counts[oldID]))
		prev := int32(-1)
		for _, o := range post[start[k]:start[k+1]] {
			body = binary.AppendUvarint(body, uint64(o-prev-1))
			prev = o
		}
		nvals++
		total += counts[oldID]
		if len(head)+len(body) >= chunkBytes || k == len(order)-1 {
			before := len(dst)
			dst = enc.EncodeAll(append(head, body...), dst)
			first := vals[order[firstK]]
			entries = binary.AppendUvarint(entries, uint64(len(dst)-before))
			entries = binary.AppendUvarint(entries, uint64(nvals))
			entries = binary.AppendUvarint(entries, uint64(total))
			entries = binary.AppendUvarint(entries, uint64(len(first)))
			entries = append(entries, first...)
			nchunks++
			head, body = head[:0], body[:0]
			nvals, total = 0, 0
		}
	}
	index = binary.AppendUvarint(nil, uint64(nchunks))
	return append(index, entries...), dst
}

// encodeRare appends to dst the rare values' postings of an ids column,
// or returns nil when no value is rare: for each rare value, in dictionary
// order, the byte length of its list (uvarint); then the lists (uvarint
// ordinals: the first, then each gap less one).
func encodeRare(dst []byte, counts []int, order, remap []uint32, ids []uint32, n int) []byte {
	var rare []int // new ids of the rare values
	slot := make([]int, len(order))
	for k, oldID := range order {
		slot[k] = -1
		if isRare(counts[oldID], n) {
			slot[k] = len(rare)
			rare = append(rare, k)
		}
	}
	if len(rare) == 0 {
		return nil
	}
	lists := make([][]byte, len(rare))
	prev := make([]int, len(rare))
	for i := range prev {
		prev[i] = -1
	}
	for i, id := range ids {
		if j := slot[remap[id]]; j >= 0 {
			lists[j] = binary.AppendUvarint(lists[j], uint64(i-prev[j]-1))
			prev[j] = i
		}
	}
	for _, l := range lists {
		dst = binary.AppendUvarint(dst, uint64(len(l)))
	}
	for _, l := range lists {
		dst = append(dst, l...)
	}
	return dst
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

// dictData is a column's whole dictionary.
type dictData struct {
	// values are sorted; counts (nil in v2 segments) hold how many events
	// have each.
	values []string
	counts []uint32
	// chunks, for a postings column, are every chunk, read whole.
	chunks []*chunkData
}

// readColumn decodes one column, its values and ids, in new memory.
func (r *segmentReader) readColumn(dec *zstd.Decoder, c Column) (*ColumnData, error) {
	d, err := r.readDict(dec, c, nil)
	if err != nil {
		return nil, err
	}
	ids, err := r.readIDs(dec, c, d, nil, nil)
	if err != nil {
		return nil, err
	}
	// A shared segment's dictionary is every reader's: the copy is the
	// caller's.
	return &ColumnData{Values: slices.Clone(d.values), IDs: ids}, nil
}

// readDict decodes a column's whole dictionary.
func (r *segmentReader) readDict(dec *zstd.Decoder, c Column, sc *scratch) (*dictData, error) {
	if int(c) >= len(r.meta.Columns) {
		return nil, r.fail("meta", fmt.Errorf("no column %s (written by an older kubetrail)", c))
	}
	m := r.meta.Columns[c]
	if m.Kind == kindPostings {
		return r.readAllChunks(dec, c)
	}
	if d := r.decoded.dict(c); d != nil {
		return d, nil
	}
	part := "column " + c.String() + " dictionary"
	dict, err := sc.frame(r, dec, m.DictOff, m.DictLen)
	if err != nil {
		return nil, r.fail(part, err)
	}
	d := &dictData{}
	withCounts := r.meta.Version >= 3
	if d.values, d.counts, err = parseDict(dict, m.Values, withCounts); err != nil {
		return nil, r.fail(part, err)
	}
	if len(d.values) != m.Values {
		return nil, r.fail(part, fmt.Errorf("%d values, the meta says %d", len(d.values), m.Values))
	}
	if err := checkCounts(d.counts, r.meta.Count); err != nil {
		return nil, r.fail(part, err)
	}
	r.decoded.keepDict(c, d)
	return d, nil
}

// checkCounts checks that a dictionary's counts (nil in v2) add up to the
// segment's events: statistics answer from them alone.
func checkCounts(counts []uint32, n int) error {
	if counts == nil {
		return nil
	}
	var sum int64
	for _, k := range counts {
		sum += int64(k)
	}
	if sum != int64(n) {
		return fmt.Errorf("its counts add up to %d events, the segment has %d", sum, n)
	}
	return nil
}

// parseDict parses a dictionary of want values (each uvarint length +
// bytes, and withCounts a uvarint count) that fills b. The values are
// substrings of one string.
func parseDict(b []byte, want int, withCounts bool) (values []string, counts []uint32, err error) {
	values, counts, _, err = parseDictPrefix(b, want, withCounts, false)
	return values, counts, err
}

// parseDictPrefix is parseDict; with prefix, the dictionary is only the
// front of b, and what follows it is returned.
func parseDictPrefix(b []byte, want int, withCounts, prefix bool) (values []string, counts []uint32, rest []byte, err error) {
	all := string(b)
	values = make([]string, 0, want)
	if withCounts {
		counts = make([]uint32, 0, want)
	}
	off := 0
	for off < len(all) && (!prefix || len(values) < want) {
		n, k := binary.Uvarint(b[off:])
		if k <= 0 || uint64(len(all)-off-k) < n {
			return nil, nil, nil, errors.New("corrupt dictionary")
		}
		values = append(values, all[off+k:off+k+int(n)])
		off += k + int(n)
		if withCounts {
			cnt, k := binary.Uvarint(b[off:])
			if k <= 0 {
				return nil, nil, nil, errors.New("corrupt dictionary")
			}
			counts = append(counts, uint32(cnt))
			off += k
		}
	}
	if len(values) != want {
		return nil, nil, nil, fmt.Errorf("dictionary holds %d values, %d expected", len(values), want)
	}
	return values, counts, b[off:], nil
}

// readIDs decodes a column's ids into dst (reused when large enough). d is
// the column's dictionary when at hand (a postings column's ids are put
// together from its chunks); sc, when not nil, lends its buffers.
func (r *segmentReader) readIDs(dec *zstd.Decoder, c Column, d *dictData, dst []uint32, sc *scratch) ([]uint32, error) {
	m := r.meta.Columns[c]
	n := r.meta.Count
	if cap(dst) < n {
		dst = make([]uint32, n)
	}
	dst = dst[:n]
	if m.Kind == kindPostings {
		if d == nil || d.chunks == nil {
			var err error
			if d, err = r.readAllChunks(dec, c); err != nil {
				return nil, err
			}
		}
		seen := 0
		id := 0
		for _, ch := range d.chunks {
			if err := ch.each(func(k int, ords []int32) error {
				for _, o := range ords {
					if int(o) >= n {
						return r.fail("column "+c.String()+" postings", fmt.Errorf("ordinal %d out of range", o))
					}
					dst[o] = uint32(id + k)
				}
				seen += len(ords)
				return nil
			}); err != nil {
				return nil, err
			}
			id += len(ch.values)
		}
		if seen != n {
			return nil, r.fail("column "+c.String()+" postings", fmt.Errorf("they hold %d events, the segment %d", seen, n))
		}
		return dst, nil
	}
	ids, err := sc.frame(r, dec, m.DictOff+m.DictLen, m.IDsLen)
	if err != nil {
		return nil, r.fail("column "+c.String()+" ids", err)
	}
	out, err := decodeIDs(ids, m.Values, dst)
	if err != nil {
		return nil, r.fail("column "+c.String()+" ids", err)
	}
	return out, nil
}

// decodeIDs turns fixed-width ids into dst, checking each is a value.
func decodeIDs(ids []byte, values int, dst []uint32) ([]uint32, error) {
	w := idWidth(values)
	if len(ids) != w*len(dst) {
		return nil, fmt.Errorf("%d bytes of ids for %d events", len(ids), len(dst))
	}
	var top uint32
	switch w {
	case 1:
		dst = dst[:len(ids)]
		for i, b := range ids {
			dst[i] = uint32(b)
			top = max(top, uint32(b))
		}
	case 2:
		for i := range dst {
			id := uint32(binary.LittleEndian.Uint16(ids[2*i:]))
			dst[i] = id
			top = max(top, id)
		}
	default:
		for i := range dst {
			id := binary.LittleEndian.Uint32(ids[4*i:])
			dst[i] = id
			top = max(top, id)
		}
	}
	if len(dst) > 0 && top >= uint32(values) {
		return nil, errors.New("id out of range")
	}
	return dst, nil
}

// scratch lends a reader's buffers to read and decompress frames. A nil
// scratch allocates.
type scratch struct{ comp, plain []byte }

// frame reads and decompresses the zstd frame of n bytes at off. The
// result is valid until the next call.
func (sc *scratch) frame(r *segmentReader, dec *zstd.Decoder, off, n int64) ([]byte, error) {
	var comp, plain []byte
	if sc != nil {
		comp, plain = sc.comp, sc.plain
	}
	if int64(cap(comp)) < n {
		comp = make([]byte, n)
	}
	comp = comp[:n]
	if err := r.readAt(comp, off); err != nil {
		return nil, err
	}
	out, err := decodeFrame(dec, comp, plain[:0])
	if sc != nil {
		sc.comp = comp
		if err == nil {
			sc.plain = out
		}
	}
	return out, err
}

// appendPlanes appends vals as byte planes: a byte w, the number of bytes
// the largest value needs, then for each of those bytes, lowest first, that
// byte of every value. zstd compresses the planes of time deltas and
// lengths (mostly equal high bytes) better than varints, and they decode
// four times faster: the time column is what hourly counts read.
func appendPlanes(dst []byte, vals []uint64) []byte {
	var top uint64
	for _, v := range vals {
		top |= v
	}
	w := (bits.Len64(top) + 7) / 8
	dst = append(dst, byte(w))
	for k := 0; k < w; k++ {
		shift := 8 * k
		for _, v := range vals {
			dst = append(dst, byte(v>>shift))
		}
	}
	return dst
}

// unplane decodes n values that appendPlanes wrote into dst; a value must
// fit in size bytes (the size of T).
func unplane[T uint32 | uint64 | int64](p []byte, n, size int, dst []T) ([]T, error) {
	if len(p) == 0 || int(p[0]) > size || len(p) != 1+int(p[0])*n {
		return nil, errors.New("corrupt column")
	}
	w := int(p[0])
	if cap(dst) < n {
		dst = make([]T, n)
	}
	dst = dst[:n]
	// One pass over dst for the widths of times and ids (a pass per
	// plane read and wrote each value w times: a segment's two time
	// columns were a sixth of an investigation's CPU at 2M events).
	plane := func(k int) []byte { return p[1+k*n : 1+(k+1)*n : 1+(k+1)*n] }
	switch w {
	case 0:
		clear(dst)
	case 1:
		for i, b := range plane(0) {
			dst[i] = T(b)
		}
	case 2:
		b0, b1 := plane(0), plane(1)
		for i := range dst {
			dst[i] = T(b0[i]) | T(b1[i])<<8
		}
	case 3:
		b0, b1, b2 := plane(0), plane(1), plane(2)
		for i := range dst {
			dst[i] = T(b0[i]) | T(b1[i])<<8 | T(b2[i])<<16
		}
	case 4:
		b0, b1, b2, b3 := plane(0), plane(1), plane(2), plane(3)
		for i := range dst {
			dst[i] = T(b0[i]) | T(b1[i])<<8 | T(b2[i])<<16 | T(b3[i])<<24
		}
	default:
		b0, b1, b2, b3 := plane(0), plane(1), plane(2), plane(3)
		for i := range dst {
			dst[i] = T(b0[i]) | T(b1[i])<<8 | T(b2[i])<<16 | T(b3[i])<<24
		}
		for k := 4; k < w; k++ {
			shift := 8 * k
			for i, b := range plane(k) {
				dst[i] |= T(b) << shift
			}
		}
	}
	return dst, nil
}

// readTimes decodes a time column (unix microseconds per event) into dst.
func (r *segmentReader) readTimes(dec *zstd.Decoder, m columnMeta, dst []int64, sc *scratch) ([]int64, error) {
	part := m.Name + " column"
	plain, err := sc.frame(r, dec, m.DictOff, m.IDsLen)
	if err != nil {
		return nil, r.fail(part, err)
	}
	n := r.meta.Count
	if r.meta.Version < 3 {
		if cap(dst) < n {
			dst = make([]int64, 0, n)
		}
		out := dst[:0]
		var t int64
		for p := plain; len(p) > 0; {
			d, k := binary.Varint(p)
			if k <= 0 {
				return nil, r.fail(part, errors.New("corrupt varint"))
			}
			t += d
			out = append(out, t)
			p = p[k:]
		}
		if len(out) != n {
			return nil, r.fail(part, fmt.Errorf("%d values for %d events", len(out), n))
		}
		return out, nil
	}
	t, k := binary.Varint(plain)
	if k <= 0 {
		return nil, r.fail(part, errors.New("corrupt first value"))
	}
	out, err := unplane(plain[k:], n, 8, dst)
	if err != nil {
		return nil, r.fail(part, err)
	}
	for i, z := range out {
		t += int64(uint64(z)>>1) ^ -(z & 1)
		out[i] = t
	}
	return out, nil
}

// readLengths decodes the lengths column (v3) into dst.
func (r *segmentReader) readLengths(dec *zstd.Decoder, dst []uint32, sc *scratch) ([]uint32, error) {
	plain, err := sc.frame(r, dec, r.meta.Lengths.DictOff, r.meta.Lengths.IDsLen)
	if err != nil {
		return nil, r.fail("lengths column", err)
	}
	out, err := unplane(plain, r.meta.Count, 4, dst)
	if err != nil {
		return nil, r.fail("lengths column", err)
	}
	return out, nil
}

// readPrints returns the events' leaf prints (docs/adr/0018), or nil for
// a segment written before they were kept.
func (r *segmentReader) readPrints(dec *zstd.Decoder) ([]byte, error) {
	t := r.meta.Trust
	if t == nil || t.PrintsLen == 0 {
		return nil, nil
	}
	var sc *scratch
	plain, err := sc.frame(r, dec, t.PrintsOff, t.PrintsLen)
	if err != nil {
		return nil, r.fail("leaf prints", err)
	}
	if len(plain) != r.meta.Count*leafPrintBytes {
		return nil, r.fail("leaf prints", fmt.Errorf("%d bytes for %d events", len(plain), r.meta.Count))
	}
	return plain, nil
}

// readBloom returns a column's Bloom filter, or nil when it has none.
func (r *segmentReader) readBloom(c Column) (*bloom, error) {
	m := r.meta.Columns[c]
	if m.BloomLen == 0 {
		return nil, nil
	}
	b := &bloom{bits: make([]byte, m.BloomLen), k: 7}
	if err := r.readAt(b.bits, m.DictOff+m.DictLen+m.IDsLen); err != nil {
		return nil, r.fail("column "+c.String()+" bloom filter", err)
	}
	return b, nil
}

// rareData is an ids column's rare values' postings.
type rareData struct {
	// at maps a value id to the index of its list, -1 when not rare.
	at    []int
	lists [][]byte
	count []uint32
}

// readRare reads the rare values' postings of ids column c, whose
// dictionary counts are d's; nil when the column has none.
func (r *segmentReader) readRare(dec *zstd.Decoder, c Column, d *dictData) (*rareData, error) {
	m := r.meta.Columns[c]
	if m.RareLen == 0 {
		return nil, nil
	}
	part := "column " + c.String() + " rare postings"
	buf := make([]byte, m.RareLen)
	if err := r.readAt(buf, m.DictOff+m.DictLen+m.IDsLen); err != nil {
		return nil, r.fail(part, err)
	}
	plain, err := decodeFrame(dec, buf, nil)
	if err != nil {
		return nil, r.fail(part, err)
	}
	rd := &rareData{at: make([]int, len(d.values))}
	for id, n := range d.counts {
		rd.at[id] = -1
		if isRare(int(n), r.meta.Count) {
			rd.at[id] = len(rd.count)
			rd.count = append(rd.count, n)
		}
	}
	lens := make([]int, len(rd.count))
	p := plain
	for i := range lens {
		l, k := binary.Uvarint(p)
		if k <= 0 {
			return nil, r.fail(part, errors.New("corrupt lengths"))
		}
		lens[i], p = int(l), p[k:]
	}
	for _, l := range lens {
		if l > len(p) {
			return nil, r.fail(part, errors.New("corrupt lengths"))
		}
		rd.lists = append(rd.lists, p[:l:l])
		p = p[l:]
	}
	if len(p) != 0 {
		return nil, r.fail(part, errors.New("trailing bytes"))
	}
	return rd, nil
}

// postings appends the ordinals of value id, which must be rare, to dst.
func (rd *rareData) postings(id int, dst []int32) ([]int32, error) {
	j := rd.at[id]
	if j < 0 {
		return nil, errors.New("BUG: postings of a value that is not rare")
	}
	p := rd.lists[j]
	prev := int64(-1)
	for range rd.count[j] {
		g, w := binary.Uvarint(p)
		if w <= 0 {
			return nil, errors.New("corrupt rare postings")
		}
		prev += int64(g) + 1
		dst = append(dst, int32(prev))
		p = p[w:]
	}
	if len(p) != 0 {
		return nil, errors.New("corrupt rare postings")
	}
	return dst, nil
}

// chunkRef is one entry of a postings column's chunk index.
type chunkRef struct {
	off, len int64
	firstID  int    // id of its first value
	values   int    // how many values it holds
	events   int64  // how many events have one of them
	first    string // its first value
}

// readChunkIndex reads a postings column's chunk index. The slice it
// returns must not be modified: a shared segment gives it to every reader.
func (r *segmentReader) readChunkIndex(c Column) ([]chunkRef, error) {
	if refs := r.decoded.index(c); refs != nil {
		return refs, nil
	}
	refs, err := r.readChunkIndexFile(c)
	if err == nil {
		r.decoded.keepIndex(c, refs)
	}
	return refs, err
}

func (r *segmentReader) readChunkIndexFile(c Column) ([]chunkRef, error) {
	m := r.meta.Columns[c]
	part := "column " + c.String() + " chunk index"
	buf := make([]byte, m.DictLen)
	if err := r.readAt(buf, m.DictOff); err != nil {
		return nil, r.fail(part, err)
	}
	d := &metaDecoder{b: buf}
	refs := make([]chunkRef, d.n(4))
	off := m.DictOff + m.DictLen
	id := 0
	for k := range refs {
		ref := &refs[k]
		ref.off, ref.len, ref.firstID = off, d.int64(), id
		ref.values, ref.events = d.int(), d.int64()
		l := d.n(1)
		if d.err != nil || l > len(d.b) || ref.values <= 0 {
			return nil, r.fail(part, errors.New("corrupt entry"))
		}
		ref.first = string(d.b[:l])
		d.b = d.b[l:]
		off += ref.len
		id += ref.values
	}
	if d.err != nil || len(d.b) != 0 || id != m.Values || off != m.DictOff+m.DictLen+m.IDsLen {
		return nil, r.fail(part, errors.New("its entries do not add up to the column"))
	}
	return refs, nil
}

// chunkData is one decoded chunk of a postings column.
type chunkData struct {
	values []string
	counts []uint32
	// post holds the values' postings one after the other; starts[k] is
	// where value k's begin (computed on first use).
	post   []byte
	starts []int
}

// readChunk reads and decodes one chunk; *buf is reused to read it. The
// chunk must not be modified: a shared segment gives it to every reader.
func (r *segmentReader) readChunk(dec *zstd.Decoder, c Column, ref chunkRef, buf *[]byte) (*chunkData, error) {
	if ch := r.decoded.chunk(c, ref.off); ch != nil {
		return ch, nil
	}
	ch, err := r.readChunkFile(dec, c, ref, buf)
	if err == nil && r.decoded != nil && ch.computeStarts() == nil {
		r.decoded.keepChunk(c, ref.off, ch)
	}
	return ch, err
}

func (r *segmentReader) readChunkFile(dec *zstd.Decoder, c Column, ref chunkRef, buf *[]byte) (*chunkData, error) {
	if int64(cap(*buf)) < ref.len {
		*buf = make([]byte, ref.len)
	}
	comp := (*buf)[:ref.len]
	if err := r.readAt(comp, ref.off); err != nil {
		return nil, r.fail(chunkPart(c, ref), err)
	}
	ch, err := decodeChunk(dec, ref, comp)
	if err != nil {
		return nil, r.fail(chunkPart(c, ref), err)
	}
	return ch, nil
}

func chunkPart(c Column, ref chunkRef) string {
	return fmt.Sprintf("column %s postings chunk at %d", c, ref.off)
}

// decodeChunk decodes a chunk and checks it against its index entry,
// which no checksum covers: its first value, its number of values and of
// events must be the chunk's own.
func decodeChunk(dec *zstd.Decoder, ref chunkRef, comp []byte) (*chunkData, error) {
	plain, err := decodeFrame(dec, comp, nil)
	if err != nil {
		return nil, err
	}
	ch := &chunkData{}
	if ch.values, ch.counts, ch.post, err = parseDictPrefix(plain, ref.values, true, true); err != nil {
		return nil, err
	}
	var events int64
	for _, n := range ch.counts {
		events += int64(n)
	}
	if len(ch.values) == 0 || ch.values[0] != ref.first || events != ref.events {
		return nil, errors.New("the chunk index does not agree with the chunk")
	}
	return ch, nil
}

// computeStarts finds where each value's postings begin (ch.starts).
func (ch *chunkData) computeStarts() error {
	starts := make([]int, len(ch.values)+1)
	p := 0
	for v, n := range ch.counts {
		starts[v] = p
		for range n {
			_, w := binary.Uvarint(ch.post[p:])
			if w <= 0 {
				return errors.New("corrupt postings")
			}
			p += w
		}
	}
	starts[len(ch.values)] = p
	ch.starts = starts
	return nil
}

// readAllChunks reads a postings column whole.
func (r *segmentReader) readAllChunks(dec *zstd.Decoder, c Column) (*dictData, error) {
	refs, err := r.readChunkIndex(c)
	if err != nil {
		return nil, err
	}
	m := r.meta.Columns[c]
	all := make([]byte, m.IDsLen)
	if err := r.readAt(all, m.DictOff+m.DictLen); err != nil {
		return nil, r.fail("column "+c.String()+" postings", err)
	}
	d := &dictData{values: make([]string, 0, m.Values), counts: make([]uint32, 0, m.Values)}
	base := m.DictOff + m.DictLen
	for _, ref := range refs {
		ch, err := decodeChunk(dec, ref, all[ref.off-base:ref.off-base+ref.len])
		if err != nil {
			return nil, r.fail(chunkPart(c, ref), err)
		}
		if k := len(d.values); k > 0 && d.values[k-1] >= ch.values[0] {
			return nil, r.fail(chunkPart(c, ref), errors.New("values out of order"))
		}
		d.values = append(d.values, ch.values...)
		d.counts = append(d.counts, ch.counts...)
		d.chunks = append(d.chunks, ch)
	}
	return d, nil
}

// postings returns the ordinals of value k of the chunk, ascending.
func (ch *chunkData) postings(k int, dst []int32) ([]int32, error) {
	if ch.starts == nil {
		if err := ch.computeStarts(); err != nil {
			return nil, err
		}
	}
	p := ch.post[ch.starts[k]:ch.starts[k+1]]
	prev := int64(-1)
	for range ch.counts[k] {
		g, w := binary.Uvarint(p)
		if w <= 0 {
			return nil, errors.New("corrupt postings")
		}
		prev += int64(g) + 1
		dst = append(dst, int32(prev))
		p = p[w:]
	}
	return dst, nil
}

// each calls fn with each value's postings, in order.
func (ch *chunkData) each(fn func(k int, ords []int32) error) error {
	var buf []int32
	for k := range ch.values {
		var err error
		if buf, err = ch.postings(k, buf[:0]); err != nil {
			return err
		}
		if err := fn(k, buf); err != nil {
			return err
		}
	}
	return nil
}
