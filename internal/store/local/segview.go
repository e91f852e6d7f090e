package local

import (
	"fmt"
	"slices"
	"sort"
)

// segView is a Reader's view of one segment: what it has read of it. The
// small dictionaries and chunk indexes stay for the reader's life; decoded
// ids, time and length columns, large dictionaries and chunks are dropped
// (their buffers kept for the next segment) once the reader moves on to
// another segment (Reader.use).
type segView struct {
	r     *segmentReader
	dicts [NumColumns]*dictData
	index [NumColumns][]chunkRef
	// chunks holds the postings chunks looked up, by column and chunk;
	// rare the rare values' postings of ids columns.
	chunks map[[2]int]*chunkData
	rare   [NumColumns]*rareData
	ids    [NumColumns][]uint32
	// sharedIDs marks the ids the segment's decodedChunks holds: every
	// reader's, never recycled into freeIDs.
	sharedIDs [NumColumns]bool
	times     []int64
	recvs     []int64
	lengths   []uint32
}

// use makes s the segment whose decoded columns the reader holds,
// releasing those of the previous one (with r.lag, those of the one
// before it). A Hit's columns must therefore be read during the callback
// that got it.
func (r *Reader) use(s *segView) {
	if r.cur == s {
		return
	}
	old := r.cur
	if r.lag {
		old, r.prev = r.prev, old
	}
	r.release(old)
	r.cur = s
}

// unuse undoes use(s) for a segment none of whose events are given
// (SelectFilters passes over it): its columns are released and the
// segment current before it is current again, so that using the next one
// keeps that one's columns (with r.lag), whose events may still be being
// given. Without it, the segment after s released them, and its columns
// were read into their buffers under the caller.
func (r *Reader) unuse(s *segView) {
	if r.cur != s {
		return
	}
	r.release(s)
	r.cur = nil
	if r.lag {
		r.cur, r.prev = r.prev, nil
	}
}

// release drops the decoded columns of c (when not nil), keeping their
// buffers for the next segment.
func (r *Reader) release(c *segView) {
	if c == nil {
		return
	}
	for i, ids := range c.ids {
		if ids != nil && !c.sharedIDs[i] {
			r.freeIDs = append(r.freeIDs, ids[:0])
		}
		c.ids[i], c.sharedIDs[i] = nil, false
		if d := c.dicts[i]; d != nil && d.chunks != nil {
			c.dicts[i] = nil // a large dictionary
		}
	}
	for _, t := range [][]int64{c.times, c.recvs} {
		if t != nil {
			r.freeTimes = append(r.freeTimes, t[:0])
		}
	}
	if c.lengths != nil {
		r.freeLens = c.lengths[:0]
	}
	c.times, c.recvs, c.lengths, c.chunks = nil, nil, nil, nil
	c.rare = [NumColumns]*rareData{}
}

// dict returns column c's whole dictionary.
func (r *Reader) dict(s *segView, c Column) (*dictData, error) {
	if s.dicts[c] == nil {
		d, err := s.r.readDict(r.dec, c, &r.sc)
		if err != nil {
			return nil, err
		}
		s.dicts[c] = d
	}
	return s.dicts[c], nil
}

// colIDs returns column c's ids.
func (r *Reader) colIDs(s *segView, c Column) ([]uint32, error) {
	if s.ids[c] == nil {
		if ids := s.r.decoded.ids(c); ids != nil {
			s.ids[c], s.sharedIDs[c] = ids, true
			return ids, nil
		}
		var d *dictData
		if s.r.meta.Columns[c].Kind == kindPostings {
			var err error
			if d, err = r.dict(s, c); err != nil {
				return nil, err
			}
		}
		var buf []uint32
		if n := len(r.freeIDs); n > 0 && s.r.decoded == nil {
			buf, r.freeIDs = r.freeIDs[n-1], r.freeIDs[:n-1]
		}
		ids, err := s.r.readIDs(r.dec, c, d, buf, &r.sc)
		if err != nil {
			return nil, err
		}
		s.ids[c] = ids
		// In new memory (buf is nil for a shared segment), kept for the
		// other readers if the budget allows.
		s.sharedIDs[c] = s.r.decoded.keepIDs(c, ids)
	}
	return s.ids[c], nil
}

// value returns event ord's value of column c.
func (r *Reader) value(s *segView, c Column, ord int) (string, error) {
	ids, err := r.colIDs(s, c)
	if err != nil {
		return "", err
	}
	d, err := r.dict(s, c)
	if err != nil {
		return "", err
	}
	return d.values[ids[ord]], nil
}

// timeCol reads the event time column.
func (r *Reader) timeCol(s *segView) error {
	if s.times != nil {
		return nil
	}
	var err error
	if s.times, err = s.r.readTimes(r.dec, s.r.meta.Time, r.freeTime(), &r.sc); err != nil {
		return err
	}
	return nil
}

// timeCols reads the event time and receive time columns.
func (r *Reader) timeCols(s *segView) error {
	if err := r.timeCol(s); err != nil || s.recvs != nil {
		return err
	}
	var err error
	if s.recvs, err = s.r.readTimes(r.dec, s.r.meta.Received, r.freeTime(), &r.sc); err != nil {
		return err
	}
	return nil
}

func (r *Reader) freeTime() []int64 {
	n := len(r.freeTimes)
	if n == 0 {
		return nil
	}
	t := r.freeTimes[n-1]
	r.freeTimes = r.freeTimes[:n-1]
	return t
}

func (r *Reader) lengthCol(s *segView) ([]uint32, error) {
	if s.lengths == nil {
		l, err := s.r.readLengths(r.dec, r.freeLens, &r.sc)
		if err != nil {
			return nil, err
		}
		r.freeLens, s.lengths = nil, l
	}
	return s.lengths, nil
}

// found is a value looked up in a dictionary.
type found struct {
	id    int
	count int64 // -1 when the segment keeps no counts (v2)
}

// find looks value v up in column c: a postings column reads the one chunk
// that can hold it, others their whole (small) dictionary.
func (r *Reader) find(s *segView, c Column, v string) (found, bool, error) {
	if s.r.meta.Columns[c].Kind != kindPostings || s.dicts[c] != nil {
		d, err := r.dict(s, c)
		if err != nil {
			return found{}, false, err
		}
		id := sort.SearchStrings(d.values, v)
		if id == len(d.values) || d.values[id] != v {
			return found{}, false, nil
		}
		f := found{id: id, count: -1}
		if d.counts != nil {
			f.count = int64(d.counts[id])
		}
		return f, true, nil
	}
	if s.index[c] == nil {
		idx, err := s.r.readChunkIndex(c)
		if err != nil {
			return found{}, false, err
		}
		s.index[c] = idx
	}
	idx := s.index[c]
	// The chunk that would hold v. The index is not covered by a checksum:
	// reading a chunk checks its own entry (its first value), so an
	// absence is trusted only once the chunks on both sides of v are read.
	k := sort.Search(len(idx), func(i int) bool { return idx[i].first > v }) - 1
	if k < 0 {
		_, err := r.chunk(s, c, 0)
		return found{}, false, err
	}
	ch, err := r.chunk(s, c, k)
	if err != nil {
		return found{}, false, err
	}
	j := sort.SearchStrings(ch.values, v)
	if j < len(ch.values) && ch.values[j] == v {
		return found{id: idx[k].firstID + j, count: int64(ch.counts[j])}, true, nil
	}
	if j == len(ch.values) && k+1 < len(idx) {
		// v is past this chunk's last value: the next chunk must start
		// past v as its entry says.
		if _, err := r.chunk(s, c, k+1); err != nil {
			return found{}, false, err
		}
	}
	return found{}, false, nil
}

func (r *Reader) chunk(s *segView, c Column, k int) (*chunkData, error) {
	key := [2]int{int(c), k}
	if ch := s.chunks[key]; ch != nil {
		return ch, nil
	}
	ch, err := s.r.readChunk(r.dec, c, s.index[c][k], &r.chunkBuf)
	if err != nil {
		return nil, err
	}
	if s.chunks == nil {
		s.chunks = map[[2]int]*chunkData{}
	}
	s.chunks[key] = ch
	return ch, nil
}

// hasPostings says whether column c keeps the postings of value id (held
// by count events): every value of a postings column, the rare values of
// an ids column.
func hasPostings(m *segmentMeta, c Column, count int64) bool {
	cm := m.Columns[c]
	return cm.Kind == kindPostings || (cm.RareLen > 0 && count >= 0 && isRare(int(count), m.Count))
}

// postings appends the ordinals of the events holding value id of column
// c to dst; the column must keep them (hasPostings).
func (r *Reader) postings(s *segView, c Column, id int, dst []int32) ([]int32, error) {
	if s.r.meta.Columns[c].Kind != kindPostings {
		if s.rare[c] == nil {
			s.rare[c] = s.r.decoded.rare(c)
		}
		if s.rare[c] == nil {
			d, err := r.dict(s, c)
			if err != nil {
				return nil, err
			}
			rd, err := s.r.readRare(r.dec, c, d)
			if err != nil {
				return nil, err
			}
			if rd == nil {
				return nil, fmt.Errorf("BUG: %s: column %s keeps no postings", s.r.f.Name(), c)
			}
			s.rare[c] = rd
			s.r.decoded.keepRare(c, rd)
		}
		out, err := s.rare[c].postings(id, dst)
		if err != nil {
			return nil, s.r.fail("column "+c.String()+" rare postings", err)
		}
		return out, nil
	}
	var ch *chunkData
	var first int
	if d := s.dicts[c]; d != nil && d.chunks != nil {
		for _, x := range d.chunks {
			if id < first+len(x.values) {
				ch = x
				break
			}
			first += len(x.values)
		}
	} else {
		if s.index[c] == nil {
			idx, err := s.r.readChunkIndex(c)
			if err != nil {
				return nil, err
			}
			s.index[c] = idx
		}
		idx := s.index[c]
		k := sort.Search(len(idx), func(i int) bool { return idx[i].firstID > id }) - 1
		var err error
		if ch, err = r.chunk(s, c, k); err != nil {
			return nil, err
		}
		first = idx[k].firstID
	}
	if ch == nil || id-first >= len(ch.values) {
		return nil, fmt.Errorf("BUG: %s has no value %d", c, id)
	}
	out, err := ch.postings(id-first, dst)
	if err != nil {
		return nil, s.r.fail("column "+c.String()+" postings", err)
	}
	return out, nil
}

// ids returns an idsFunc over s for the text reader.
func (r *Reader) idsOf(s *segView) idsFunc {
	return func(c Column) ([]uint32, error) { return r.colIDs(s, c) }
}

// intersect keeps the ordinals of a that are also in b; both ascending.
func intersect(a, b []int32) []int32 {
	out := a[:0]
	j := 0
	for _, x := range a {
		for j < len(b) && b[j] < x {
			j++
		}
		if j == len(b) {
			break
		}
		if b[j] == x {
			out = append(out, x)
		}
	}
	return out
}

// union returns the ascending union of ascending lists with no common
// element (postings of different values).
func union(lists [][]int32, dst []int32) []int32 {
	for _, l := range lists {
		dst = append(dst, l...)
	}
	if len(lists) > 1 {
		slices.Sort(dst)
	}
	return dst
}
