package local

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"
)

// Group is one row of a statistics answer.
type Group struct {
	// Key holds the grouped columns' values, in the order asked for; with
	// an interval, the bucket start (unix microseconds) comes first as Bucket.
	Key    []string
	Bucket int64
	Count  int64
	// Bytes is the stored size of the group's events: the sum of their
	// stored lines' lengths (newline not counted). Set only when
	// StatsOptions.Bytes asked for it.
	Bytes int64
}

// StatsOptions says how StatsOf groups the selected events and what it
// adds up.
type StatsOptions struct {
	// By are the columns to group by, in order; none makes one group.
	By []Column
	// Interval, when positive, also groups by time buckets of this many
	// microseconds.
	Interval int64
	// Bytes also sums each group's stored event bytes (see Group.Bytes),
	// from the segments' length column. Segments written before it (v2)
	// have none: the blocks holding their selected events are
	// decompressed (0.3 s per million ~1.2 KiB events on two cores).
	Bytes bool
	// ByBytes orders the groups by bytes, largest first, instead of by
	// count; it implies Bytes.
	ByBytes bool
}

// MinInterval and MaxInterval bound StatsOptions.Interval. Buckets start
// at multiples of the interval since 1970-01-01 UTC: below a second they
// outnumber any sensible answer (a microsecond bucket per event), and above
// a year a bucket starts so long before its events that its time misleads
// (1000000h puts every event in a 1970 bucket).
const (
	MinInterval = time.Second
	MaxInterval = 366 * 24 * time.Hour
)

// CheckInterval says why an interval is outside MinInterval..MaxInterval,
// or returns nil. Callers prefix the flag or parameter it came from.
func CheckInterval(d time.Duration) error {
	if d < MinInterval || d > MaxInterval {
		return fmt.Errorf("want between %s and 366d (8784h): buckets start at multiples of the interval since 1970-01-01 UTC", MinInterval)
	}
	return nil
}

// Totals sums a statistics answer over all its groups.
type Totals struct {
	// Count is the number of selected events.
	Count int64
	// Bytes is their stored size, when StatsOptions.Bytes asked for it.
	Bytes int64
}

// Stats counts the selected events grouped by columns and, when interval
// (microseconds) is positive, by time bucket. It reads only columns.
// Groups come back by count, largest first (ties by key), or by bucket then
// count with an interval.
func (r *Reader) Stats(sel Selection, by []Column, interval int64) ([]Group, int64, error) {
	groups, tot, err := r.StatsOf(sel, StatsOptions{By: by, Interval: interval})
	return groups, tot.Count, err
}

// StatsOf is Stats with options: it can also sum the stored bytes of each
// group, and order the groups by them. Groups come back largest first (by
// count, or by bytes with ByBytes; ties by key), within each time bucket
// in bucket order when there is an interval.
func (r *Reader) StatsOf(sel Selection, o StatsOptions) ([]Group, Totals, error) {
	if o.Interval != 0 {
		if err := CheckInterval(time.Duration(o.Interval) * time.Microsecond); err != nil {
			return nil, Totals{}, fmt.Errorf("stats interval %dus: %w", o.Interval, err)
		}
	}
	o.Bytes = o.Bytes || o.ByBytes
	by, interval := o.By, o.Interval
	sel.NeedEvent = false
	groups := map[string]*statAcc{}
	var tot Totals
	var kb []byte
	key := make([]string, len(by))
	add := func(bucket, n, size int64) {
		kb = kb[:0]
		if interval > 0 {
			kb = strconv.AppendInt(kb, bucket, 10)
			kb = append(kb, 1)
		}
		for i := range by {
			kb = append(kb, key[i]...)
			kb = append(kb, 0)
		}
		a := groups[string(kb)]
		if a == nil {
			a = &statAcc{g: Group{Key: append([]string(nil), key...), Bucket: bucket}}
			groups[string(kb)] = a
		}
		a.g.Count += n
		a.g.Bytes += size
		tot.Count += n
		tot.Bytes += size
	}
	// addHit counts one event read by Select (the WAL's, or all of them
	// when the columns cannot decide the filter). Such a hit carries its
	// stored bytes.
	addHit := func(h *Hit) error {
		var bucket int64
		if interval > 0 {
			bucket = floorTo(h.Time, interval)
		}
		for i, c := range by {
			v, err := h.ColumnErr(c)
			if err != nil {
				return err
			}
			key[i] = v
		}
		var size int64
		if o.Bytes {
			if h.Raw == nil {
				return errors.New("BUG: stats hit without its stored bytes")
			}
			size = int64(len(h.Raw))
		}
		add(bucket, 1, size)
		return nil
	}
	done := func() ([]Group, Totals, error) {
		return sortGroups(groups2(groups), interval, o.ByBytes), tot, nil
	}
	p, err := makePlan(sel.Filter)
	if err != nil {
		return nil, Totals{}, err
	}
	if p.residual {
		// The filter needs the events: Select reads them, so their bytes
		// come for free.
		if err := r.Select(sel, addHit); err != nil {
			return nil, Totals{}, err
		}
		return done()
	}
	if len(by) == 0 && interval == 0 && !o.Bytes {
		// A plain count (the API's total): CountMatching answers it from
		// the dictionaries' counts and the postings, where the loop below
		// lists every candidate (2.8 ms of a warm count of 100k events out
		// of 2M, issue 12).
		n, err := r.CountMatching(sel)
		if err != nil {
			return nil, Totals{}, err
		}
		if n > 0 {
			add(0, n, 0)
		}
		return done()
	}
	lo, hi := bounds(sel)
	// v2 segments keep no event lengths: with Bytes, the blocks holding
	// selected events are decompressed first, segments in parallel.
	v2 := map[*segView]*statSeg{}
	if o.Bytes {
		if err := r.statsV2Sizes(p, lo, hi, by, interval, v2); err != nil {
			return nil, Totals{}, err
		}
	}
	for _, s := range r.segs {
		if s.outside(lo, hi) {
			continue
		}
		if w := v2[s]; w != nil {
			if err := r.statsV2Segment(w, by, interval, key, add); err != nil {
				return nil, Totals{}, err
			}
			continue
		}
		c, skip, err := r.candidates(s, p, lo, hi, false)
		if err != nil {
			return nil, Totals{}, err
		}
		if skip {
			continue
		}
		if err := r.statsSegment(s, c, by, interval, o.Bytes, key, add); err != nil {
			return nil, Totals{}, err
		}
	}
	// The WAL's events, one by one.
	head := r.headOnly()
	if err := head.Select(sel, addHit); err != nil {
		return nil, Totals{}, err
	}
	return done()
}

// denseGroups bounds the groups a segment's statistics count in an array
// (time buckets times each grouped column's values) rather than a map.
const denseGroups = 1 << 18

// statsSegment adds segment s's selected events c to the groups. Without
// an interval or bytes, and with every event selected, one grouped column's
// dictionary counts are the answer; otherwise its ids are counted.
func (r *Reader) statsSegment(s *segView, c cands, by []Column, interval int64, withBytes bool, key []string, add func(bucket, n, size int64)) error {
	meta := &s.r.meta
	if c.all && interval == 0 && !withBytes && len(by) <= 1 && meta.Version >= 3 {
		if len(by) == 0 {
			add(0, int64(meta.Count), 0)
			return nil
		}
		d, err := r.dict(s, by[0])
		if err != nil {
			return err
		}
		for id, v := range d.values {
			key[0] = v
			add(0, int64(d.counts[id]), 0)
		}
		return nil
	}
	ids := make([][]uint32, len(by))
	dicts := make([]*dictData, len(by))
	for i, col := range by {
		var err error
		if ids[i], err = r.colIDs(s, col); err != nil {
			return err
		}
		if dicts[i], err = r.dict(s, col); err != nil {
			return err
		}
	}
	var b0 int64
	dims := make([]int, 0, len(by)+1)
	if interval > 0 {
		if err := r.timeCol(s); err != nil {
			return err
		}
		b0 = floorTo(meta.MinTime, interval)
		dims = append(dims, int((floorTo(meta.MaxTime, interval)-b0)/interval)+1)
	}
	for i := range by {
		dims = append(dims, max(1, len(dicts[i].values)))
	}
	var lens []uint32
	if withBytes {
		var err error
		if lens, err = r.lengthCol(s); err != nil {
			return err
		}
	}
	total := 1
	for _, d := range dims {
		if total > denseGroups/d {
			total = -1
			break
		}
		total *= d
	}
	// each calls f for every selected event.
	each := func(f func(ev int)) {
		if c.all {
			for ev := 0; ev < meta.Count; ev++ {
				f(ev)
			}
			return
		}
		for _, ev := range c.list {
			f(int(ev))
		}
	}
	// The bucket of the event before: events come about in time order,
	// so most need no division.
	bLo, bHi, bIdx := int64(1), int64(0), 0
	index := func(ev int) int {
		idx := 0
		k := 0
		if interval > 0 {
			if t := s.times[ev]; t < bLo || t >= bHi {
				bLo = floorTo(t, interval)
				bHi, bIdx = bLo+interval, int((bLo-b0)/interval)
			}
			idx, k = bIdx, 1
		}
		for i := range ids {
			idx = idx*dims[k+i] + int(ids[i][ev])
		}
		return idx
	}
	// emit adds group idx (in dims' mixed radix).
	emit := func(idx int, n, size int64) {
		for i := len(ids) - 1; i >= 0; i-- {
			d := dims[len(dims)-len(ids)+i]
			key[i] = dicts[i].values[idx%d]
			idx /= d
		}
		var bucket int64
		if interval > 0 {
			bucket = b0 + int64(idx)*interval
		}
		add(bucket, n, size)
	}
	if total > 0 {
		counts := make([]int64, total)
		var sizes []int64
		if withBytes {
			sizes = make([]int64, total)
		}
		each(func(ev int) {
			idx := index(ev)
			counts[idx]++
			if lens != nil {
				sizes[idx] += int64(lens[ev])
			}
		})
		for idx, n := range counts {
			if n > 0 {
				var size int64
				if sizes != nil {
					size = sizes[idx]
				}
				emit(idx, n, size)
			}
		}
		return nil
	}
	type acc struct{ n, size int64 }
	groups := map[int]*acc{}
	each(func(ev int) {
		idx := index(ev)
		a := groups[idx]
		if a == nil {
			a = &acc{}
			groups[idx] = a
		}
		a.n++
		if lens != nil {
			a.size += int64(lens[ev])
		}
	})
	for idx, a := range groups {
		emit(idx, a.n, a.size)
	}
	return nil
}

// statsV2Sizes prepares, for StatsOf with Bytes, every v2 segment that
// holds selected events: its candidates and the sizes of its selected
// events, read by decompressing the blocks that hold them (segments in
// parallel), but for blocks whose events are all selected and in one
// group, whose size the segment keeps.
func (r *Reader) statsV2Sizes(p *plan, lo, hi int64, by []Column, interval int64, out map[*segView]*statSeg) error {
	var jobs []*statSeg
	for _, s := range r.segs {
		if s.r.meta.Version >= 3 || s.outside(lo, hi) {
			continue
		}
		c, skip, err := r.candidates(s, p, lo, hi, false)
		if err != nil {
			return err
		}
		if skip {
			continue
		}
		w := &statSeg{s: s, all: c.all}
		if !c.all {
			w.cand = make([]bool, s.r.meta.Count)
			for _, o := range c.list {
				w.cand[o] = true
			}
		}
		if err := r.statsV2Columns(w, by, interval); err != nil {
			return err
		}
		var first, cur []byte
		w.use = make([]blockUse, len(s.r.meta.Blocks))
		need := false
		for bi, b := range s.r.meta.Blocks {
			w.use[bi] = w.blockUse(b, func(ev int) []byte { first = w.ids(ev, interval, first[:0]); return first },
				func(ev int) []byte { cur = w.ids(ev, interval, cur[:0]); return cur })
			need = need || w.use[bi] == readSizes
		}
		if need {
			jobs = append(jobs, w)
		}
		out[s] = w
	}
	return parallel(len(jobs), func(dec *zstd.Decoder, i int) error {
		w := jobs[i]
		var err error
		w.sizes, err = w.s.r.eventSizes(dec, w.use)
		return err
	})
}

// statsV2Columns reads what w's group keys need: the grouped columns' ids
// and, with an interval, the times.
func (r *Reader) statsV2Columns(w *statSeg, by []Column, interval int64) error {
	r.use(w.s)
	w.cds = make([]*ColumnData, len(by))
	for i, c := range by {
		ids, err := r.colIDs(w.s, c)
		if err != nil {
			return err
		}
		d, err := r.dict(w.s, c)
		if err != nil {
			return err
		}
		w.cds[i] = &ColumnData{Values: d.values, IDs: ids}
	}
	if interval > 0 {
		if err := r.timeCol(w.s); err != nil {
			return err
		}
		w.times = w.s.times
	}
	return nil
}

// statsV2Segment adds a v2 segment's selected events, with their sizes, to
// the groups.
func (r *Reader) statsV2Segment(w *statSeg, by []Column, interval int64, key []string, add func(bucket, n, size int64)) error {
	if err := r.statsV2Columns(w, by, interval); err != nil {
		return err
	}
	type acc struct{ n, size int64 }
	counts := map[string]*acc{}
	get := func(k []byte) *acc {
		a := counts[string(k)]
		if a == nil {
			a = &acc{}
			counts[string(k)] = a
		}
		return a
	}
	var buf []byte
	for bi, b := range w.s.r.meta.Blocks {
		switch w.use[bi] {
		case noCandidate:
			continue
		case wholeBlock:
			a := get(w.ids(b.First, interval, buf[:0]))
			a.n += int64(b.Count)
			a.size += b.RawBytes
			continue
		}
		for ev := b.First; ev < b.First+b.Count; ev++ {
			if !w.all && !w.cand[ev] {
				continue
			}
			buf = w.ids(ev, interval, buf[:0])
			a := get(buf)
			a.n++
			a.size += int64(w.sizes[ev])
		}
	}
	for k, a := range counts {
		b := []byte(k)
		var bucket int64
		if interval > 0 {
			bucket = int64(binary.LittleEndian.Uint64(b))
			b = b[8:]
		}
		for i, cd := range w.cds {
			key[i] = cd.Values[binary.LittleEndian.Uint32(b[4*i:])]
		}
		add(bucket, a.n, a.size)
	}
	return nil
}

// ids appends event ev's group key in ids form: its bucket, then its id in
// each grouped column.
func (w *statSeg) ids(ev int, interval int64, dst []byte) []byte {
	if interval > 0 {
		dst = binary.LittleEndian.AppendUint64(dst, uint64(floorTo(w.times[ev], interval)))
	}
	for _, cd := range w.cds {
		dst = binary.LittleEndian.AppendUint32(dst, cd.IDs[ev])
	}
	return dst
}

// floorTo returns the start of t's bucket of size interval.
func floorTo(t, interval int64) int64 {
	return t - ((t%interval)+interval)%interval
}

// statSeg is a v2 segment's part in a statistics answer with bytes.
type statSeg struct {
	s *segView
	// cand (or all: every event) are the segment's selected events.
	cand []bool
	all  bool
	// cds are the grouped columns, times the event times (with an
	// interval), both valid while the reader uses s.
	cds   []*ColumnData
	times []int64
	// use says, with Bytes, how each block's sizes are known; sizes
	// holds the events' stored lengths for the blocks marked readSizes.
	use   []blockUse
	sizes []int32
}

// blockUse says how a statistics answer learns the sizes of a block's
// events.
type blockUse uint8

const (
	noCandidate blockUse = iota // no event of the block is selected
	wholeBlock                  // all are, in one group: the block's RawBytes
	readSizes                   // decompress the block
)

// blockUse classifies block b; first(ev) and key(ev) return event ev's
// group key (in two buffers, so that both may be held).
func (w *statSeg) blockUse(b blockMeta, first, key func(ev int) []byte) blockUse {
	var k0 []byte
	selected, skipped := false, false
	for ev := b.First; ev < b.First+b.Count; ev++ {
		switch {
		case !w.all && !w.cand[ev]:
			if selected {
				return readSizes
			}
			skipped = true
		case skipped:
			return readSizes
		case !selected:
			selected, k0 = true, first(ev)
		case !bytes.Equal(key(ev), k0):
			return readSizes
		}
	}
	if !selected {
		return noCandidate
	}
	return wholeBlock
}

// parallel runs fn(dec, i) for i in [0, n) on up to GOMAXPROCS goroutines,
// each with its own zstd decoder, and returns the first error.
func parallel(n int, fn func(dec *zstd.Decoder, i int) error) error {
	if n == 0 {
		return nil
	}
	workers := min(n, max(1, runtime.GOMAXPROCS(0)))
	next := make(chan int)
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for k := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
			if err != nil {
				errs[k] = err
				for range next {
				}
				return
			}
			defer dec.Close()
			for i := range next {
				if errs[k] == nil {
					errs[k] = fn(dec, i)
				}
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	return errors.Join(errs...)
}

// eventSizes returns the stored length of every event of the blocks that
// use marks readSizes (the others' entries stay 0), by decompressing them.
// It only reads the file, so calls for one segment may run concurrently.
func (r *segmentReader) eventSizes(dec *zstd.Decoder, use []blockUse) ([]int32, error) {
	sizes := make([]int32, r.meta.Count)
	var comp, plain []byte
	for bi, b := range r.meta.Blocks {
		if use[bi] != readSizes {
			continue
		}
		var err error
		if plain, err = r.readBlockText(dec, b, &comp, plain[:0]); err != nil {
			return nil, err
		}
		p := plain
		for i := b.First; i < b.First+b.Count; i++ {
			nl := bytes.IndexByte(p, '\n')
			if nl < 0 || i >= len(sizes) {
				return nil, r.fail(blockPart(b), fmt.Errorf("event %d is cut short", i))
			}
			sizes[i] = int32(nl)
			p = p[nl+1:]
		}
		if len(p) != 0 {
			return nil, r.fail(blockPart(b), fmt.Errorf("%d trailing bytes", len(p)))
		}
	}
	return sizes, nil
}

// SortGroups orders statistics groups as StatsOf returns them; another
// store's statistics use it so that both stores answer in the same order.
func SortGroups(out []Group, interval int64, byBytes bool) []Group {
	return sortGroups(out, interval, byBytes)
}

func sortGroups(out []Group, interval int64, byBytes bool) []Group {
	sort.Slice(out, func(i, j int) bool {
		if interval > 0 && out[i].Bucket != out[j].Bucket {
			return out[i].Bucket < out[j].Bucket
		}
		if byBytes && out[i].Bytes != out[j].Bytes {
			return out[i].Bytes > out[j].Bytes
		}
		if out[i].Count != out[j].Count {
			return out[i].Count > out[j].Count
		}
		return strings.Join(out[i].Key, "\x00") < strings.Join(out[j].Key, "\x00")
	})
	return out
}

type statAcc struct{ g Group }

func groups2(m map[string]*statAcc) []Group {
	out := make([]Group, 0, len(m))
	for _, a := range m {
		out = append(out, a.g)
	}
	return out
}
