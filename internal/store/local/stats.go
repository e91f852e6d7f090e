package local

import (
	"encoding/binary"
	"sort"
	"strconv"
	"strings"
)

// Group is one row of a statistics answer.
type Group struct {
	// Key holds the grouped columns' values, in the order asked for; with
	// an interval, the bucket start (unix microseconds) comes first as Bucket.
	Key    []string
	Bucket int64
	Count  int64
}

// Stats counts the selected events grouped by columns and, when interval
// (microseconds) is positive, by time bucket. It reads only columns.
// Groups come back by count, largest first (ties by key), or by bucket then
// count with an interval.
func (r *Reader) Stats(sel Selection, by []Column, interval int64) ([]Group, int64, error) {
	sel.NeedEvent = false
	groups := map[string]*statAcc{}
	var total int64
	var kb []byte
	key := make([]string, len(by))
	add := func(bucket int64, n int64) {
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
		total += n
	}
	// addHit counts one event read by Select (the WAL's, or all of them
	// when the columns cannot decide the filter).
	addHit := func(h *Hit) error {
		var bucket int64
		if interval > 0 {
			bucket = h.Time - ((h.Time%interval)+interval)%interval
		}
		for i, c := range by {
			key[i] = h.Column(c)
		}
		add(bucket, 1)
		return nil
	}
	p, err := makePlan(sel.Filter)
	if err != nil {
		return nil, 0, err
	}
	if !p.residual {
		// Count ids segment by segment; only then turn them into values.
		lo, hi := bounds(sel)
		for _, s := range r.segs {
			if s.outside(lo, hi) {
				continue
			}
			cand, all, skip, err := r.candidates(s, p, lo, hi)
			if err != nil {
				return nil, 0, err
			}
			if skip {
				continue
			}
			if interval > 0 {
				if err := s.timeCols(r.dec); err != nil {
					return nil, 0, err
				}
			}
			cds := make([]*ColumnData, len(by))
			for i, c := range by {
				if cds[i], err = s.column(r.dec, c); err != nil {
					return nil, 0, err
				}
			}
			counts := map[string]int64{}
			ids := make([]byte, 0, 4*len(by)+8)
			for ev := 0; ev < s.r.meta.Count; ev++ {
				if !all && !cand[ev] {
					continue
				}
				ids = ids[:0]
				if interval > 0 {
					t := s.times[ev]
					ids = binary.LittleEndian.AppendUint64(ids, uint64(t-((t%interval)+interval)%interval))
				}
				for _, cd := range cds {
					ids = binary.LittleEndian.AppendUint32(ids, cd.IDs[ev])
				}
				counts[string(ids)]++
			}
			for k, n := range counts {
				b := []byte(k)
				var bucket int64
				if interval > 0 {
					bucket = int64(binary.LittleEndian.Uint64(b))
					b = b[8:]
				}
				for i, cd := range cds {
					key[i] = cd.Values[binary.LittleEndian.Uint32(b[4*i:])]
				}
				add(bucket, n)
			}
		}
		// The WAL's events, one by one.
		head := &Reader{head: r.head, dec: r.dec}
		if err := head.Select(sel, addHit); err != nil {
			return nil, 0, err
		}
		return sortGroups(groups2(groups), interval), total, nil
	}
	err = r.Select(sel, addHit)
	if err != nil {
		return nil, 0, err
	}
	return sortGroups(groups2(groups), interval), total, nil
}

func sortGroups(out []Group, interval int64) []Group {
	sort.Slice(out, func(i, j int) bool {
		if interval > 0 && out[i].Bucket != out[j].Bucket {
			return out[i].Bucket < out[j].Bucket
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
