package local

import (
	"errors"
	"fmt"
	"sort"

	"github.com/klauspost/compress/zstd"

	"github.com/kubetrail/kubetrail/internal/audit"
	"github.com/kubetrail/kubetrail/internal/vfs"
)

// verifySegment checks every checksum of the segment file at path, and
// that its parts agree with each other, without building what queries use:
// the magic, the trailer and the meta; that the parts tile the file; every
// zstd frame (each column's dictionary, ids, rare postings and postings
// chunks, the chunk indexes against their chunks, the time, receive time
// and length columns, every text block, every group's keys and, in v5,
// every group's text head); each group's order hash against its columns
// (v3) or its keys (v4, v5); and the stored lengths against the text (a
// v5 group's text is decoded whole: every CRC-32C, and each block's
// events and bytes against the meta's). It returns one
// Damage per damaged part (none when the file is whole). A v2 segment's
// meta and Bloom filters carry no checksum: their agreement with the rest
// is checked instead.
func verifySegment(fs vfs.FS, path string) []Damage {
	r, err := openSegment(fs, path)
	if err != nil {
		return []Damage{damageOf(path, err)}
	}
	defer r.close()
	return verifySegmentReader(r)
}

// verifySegmentReader is verifySegment on a segment the caller opened.
func verifySegmentReader(r *segmentReader) []Damage {
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
	if err != nil {
		return []Damage{{Path: r.f.Name(), Reason: err.Error()}}
	}
	defer dec.Close()
	return verifyWithRoots(r, dec, nil)
}

// verifyWithRoots is verifySegmentReader decoding with dec; when roots is
// not nil, the pass over the text also gives it each event, in the order
// segmentRoots' own pass would: Verify reads each segment's text once.
func verifyWithRoots(r *segmentReader, dec *zstd.Decoder, roots *rootsBuilder) []Damage {
	path := r.f.Name()
	var out []Damage
	bad := func(err error) {
		if err != nil {
			out = append(out, damageOf(path, err))
		}
	}
	bad(r.checkTiling())
	allIDs := map[Column][]uint32{}
	for c := Column(0); c < NumColumns; c++ {
		d, err := r.readDict(dec, c, nil)
		if err != nil {
			bad(err)
			continue
		}
		ids, err := r.readIDs(dec, c, d, nil, nil)
		if err != nil {
			bad(err)
			continue
		}
		allIDs[c] = ids
		bad(r.checkCounts(c, d, ids))
		bad(r.checkRare(dec, c, d, ids))
		bad(r.checkBloom(c, d))
	}
	times, err := r.readTimes(dec, r.meta.Time, nil, nil)
	bad(err)
	_, err = r.readTimes(dec, r.meta.Received, nil, nil)
	bad(err)
	if err == nil && times != nil {
		bad(r.checkTimes(times))
	}
	_, err = r.readPrints(dec)
	bad(err)
	// The audit ID table must give each event its own audit ID's print:
	// a wrong one hides the event from lookups.
	at, err := r.readAuditTable(dec)
	bad(err)
	byOrd, err := at.byOrdinal()
	if err != nil {
		bad(r.fail("audit id table", err))
	}
	var aev audit.Event
	var lengths []uint32
	if r.meta.Version >= 3 {
		lengths, err = r.readLengths(dec, nil, nil)
		bad(err)
	}
	// The text: every block, in groups whose order hash is checked against
	// the sort columns' ids.
	for _, c := range r.meta.SortBy {
		if allIDs[c] == nil {
			return out // already reported; the groups cannot be put in order
		}
	}
	t := newTextReader(dec)
	ids := func(c Column) ([]uint32, error) {
		if allIDs[c] == nil {
			return nil, r.fail("column "+c.String(), errors.New("unreadable"))
		}
		return allIDs[c], nil
	}
	err = t.events(r, 0, r.meta.Count, nil, nil, ids, func(i int, raw []byte) error {
		if roots != nil {
			roots.add(i, raw)
		}
		if lengths != nil && int(lengths[i]) != len(raw) {
			return r.fail("lengths column", fmt.Errorf("event %d is %d bytes long, the column says %d", i, len(raw), lengths[i]))
		}
		if byOrd != nil {
			id, err := storedAuditID(raw, &aev)
			if err != nil {
				return r.fail("text", err)
			}
			if at.print(id) != byOrd[i] {
				return r.fail("audit id table", fmt.Errorf("event %d has audit ID %q, the table another", i, id))
			}
		}
		return nil
	})
	bad(err)
	return out
}

// damageOf turns an error met verifying the segment at path into Damage.
func damageOf(path string, err error) Damage {
	var se *SegmentError
	if errors.As(err, &se) {
		return se.Damage()
	}
	return Damage{Path: path, Reason: err.Error()}
}

// checkTiling checks that the text blocks and the columns fill the file
// between the magic and the meta, each byte in one part.
func (r *segmentReader) checkTiling() error {
	type span struct {
		off, n int64
		part   string
	}
	var spans []span
	for _, b := range r.meta.Blocks {
		spans = append(spans, span{b.Off, b.Len, blockPart(b)})
	}
	for _, g := range r.meta.Groups {
		if g.KeysLen > 0 {
			spans = append(spans, span{g.KeysOff, g.KeysLen, fmt.Sprintf("group keys at %d", g.KeysOff)})
		}
		if g.HeadLen > 0 {
			spans = append(spans, span{g.HeadOff, g.HeadLen, headPart(g)})
		}
	}
	for c, m := range r.meta.Columns {
		spans = append(spans, span{m.DictOff, m.DictLen + m.IDsLen + m.RareLen + m.BloomLen, "column " + Column(c).String()})
	}
	for _, m := range []columnMeta{r.meta.Time, r.meta.Received, r.meta.Lengths} {
		if m.IDsLen > 0 {
			spans = append(spans, span{m.DictOff, m.IDsLen, m.Name + " column"})
		}
	}
	if t := r.meta.Trust; t != nil && t.PrintsLen > 0 {
		spans = append(spans, span{t.PrintsOff, t.PrintsLen, "leaf prints"})
	}
	if r.meta.AuditLen > 0 {
		spans = append(spans, span{r.meta.AuditOff, r.meta.AuditLen, "audit id table"})
	}
	sort.Slice(spans, func(i, j int) bool { return spans[i].off < spans[j].off })
	at := int64(len(segMagic))
	for _, s := range spans {
		if s.off != at {
			return r.fail("meta", fmt.Errorf("%s starts at %d, the part before it ends at %d", s.part, s.off, at))
		}
		at += s.n
	}
	if at != r.metaOff {
		return r.fail("meta", fmt.Errorf("its parts end at %d, the meta starts at %d", at, r.metaOff))
	}
	return nil
}

// checkCounts checks a v3 dictionary's counts against the column's ids.
func (r *segmentReader) checkCounts(c Column, d *dictData, ids []uint32) error {
	if d.counts == nil {
		return nil
	}
	n := make([]uint32, len(d.values))
	for _, id := range ids {
		n[id]++
	}
	for id := range n {
		if n[id] != d.counts[id] {
			return r.fail("column "+c.String()+" dictionary", fmt.Errorf("value %d is held by %d events, its count says %d", id, n[id], d.counts[id]))
		}
	}
	return nil
}

// checkRare checks an ids column's rare postings against its ids.
func (r *segmentReader) checkRare(dec *zstd.Decoder, c Column, d *dictData, ids []uint32) error {
	if r.meta.Columns[c].Kind != kindIDs || r.meta.Columns[c].RareLen == 0 {
		return nil
	}
	rd, err := r.readRare(dec, c, d)
	if err != nil {
		return err
	}
	var got []int32
	for id := range d.values {
		if rd.at[id] < 0 {
			continue
		}
		if got, err = rd.postings(id, got[:0]); err != nil {
			return r.fail("column "+c.String()+" rare postings", err)
		}
		for _, o := range got {
			if int(o) >= len(ids) || ids[o] != uint32(id) {
				return r.fail("column "+c.String()+" rare postings", fmt.Errorf("value %d lists event %d, which does not hold it", id, o))
			}
		}
	}
	return nil
}

// checkBloom checks that a v2 column's Bloom filter, which no checksum
// covers, holds every value of the dictionary: one that does not would
// make queries skip the segment.
func (r *segmentReader) checkBloom(c Column, d *dictData) error {
	bf, err := r.readBloom(c)
	if err != nil || bf == nil {
		return err
	}
	for _, v := range d.values {
		if !bf.mayContain(v) {
			return r.fail("column "+c.String()+" bloom filter", fmt.Errorf("it does not hold the value %q", v))
		}
	}
	return nil
}

// checkTimes checks the meta's time ranges against the time column: they
// decide which segments, groups and blocks a query reads.
func (r *segmentReader) checkTimes(times []int64) error {
	if len(times) == 0 {
		return nil
	}
	lo, hi := times[0], times[0]
	for _, t := range times {
		lo, hi = min(lo, t), max(hi, t)
	}
	if lo != r.meta.MinTime || hi != r.meta.MaxTime {
		return r.fail("meta", fmt.Errorf("it says events from %d to %d, the time column %d to %d", r.meta.MinTime, r.meta.MaxTime, lo, hi))
	}
	for gi, g := range r.meta.Groups {
		glo, ghi := times[g.First], times[g.First]
		for _, t := range times[g.First : g.First+g.Count] {
			glo, ghi = min(glo, t), max(ghi, t)
		}
		if glo != g.MinTime || ghi != g.MaxTime {
			return r.fail("meta", fmt.Errorf("group %d: its time range does not agree with the time column", gi))
		}
	}
	if r.meta.Version < 3 {
		for _, b := range r.meta.Blocks {
			if b.First+b.Count > len(times) {
				return r.fail("meta", fmt.Errorf("block at %d lies past the events", b.Off))
			}
			for _, t := range times[b.First : b.First+b.Count] {
				if t < b.MinTime || t > b.MaxTime {
					return r.fail("meta", fmt.Errorf("block at %d: its time range does not hold its events", b.Off))
				}
			}
		}
	}
	return nil
}
