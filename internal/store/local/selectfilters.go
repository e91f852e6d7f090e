package local

import (
	"errors"

	"github.com/klauspost/compress/zstd"

	"github.com/kubetrail/kubetrail/internal/audit"
	"github.com/kubetrail/kubetrail/internal/query"
)

// LazyOptions say what SelectFilters decides and reads ahead.
type LazyOptions struct {
	// Filters are decided on the columns, each as Select decides one.
	Filters []*query.Filter
	// Fields are the filter-language fields a partial event should hold;
	// those no column holds are left out (Hit.Fields says which are in).
	Fields []string
	// ReadAhead, when set, tells from what the columns decided (Known)
	// whether the caller will surely load the event: those events are
	// read and decoded ahead, on another goroutine, while the caller
	// works on the ones before. It must be safe to call from SelectFilters'
	// goroutine (it is not called concurrently).
	ReadAhead func(known []int8) bool
}

// SelectFilters calls fn, in arrival order, for every selected event
// (sel) that may match at least one of opts.Filters, without reading its
// text: each filter is decided on the columns as Select decides one, and
// the hit says per filter what they decided (Hit.Known). The hit's Event
// is partial (Hit.Partial): it holds only the fields of opts.Fields that
// columns hold (Hit.Fields), and Hit.Load reads the whole event when the
// caller needs more, decompressing only the blocks of the events loaded.
// Rules (`kubetrail detect`) use it: most of their conditions are decided
// by columns, and most events they see need no more.
//
// Events still in the WAL are given whole (Partial false, Known nil).
// sel.NeedEvent is ignored.
func (r *Reader) SelectFilters(sel Selection, opts LazyOptions, fn func(*Hit) error) error {
	filters, fields := opts.Filters, opts.Fields
	if len(filters) == 0 {
		return nil
	}
	plans := make([]*plan, len(filters))
	for j, f := range filters {
		p, err := makePlan(f)
		if err != nil {
			return err
		}
		plans[j] = p
	}
	restrict, err := makePlan(sel.Filter)
	if err != nil {
		return err
	}
	// Lists (groups, source IPs) are left out: a column joins them, and
	// an empty entry does not come back.
	var cols []Column
	var names []string
	for _, f := range fields {
		if c, ok := columnOf[f]; ok && c != ColGroups && c != ColSourceIPs {
			cols, names = append(cols, c), append(names, f)
		}
	}
	r.colErr = nil
	lo, hi := bounds(sel)
	if r.one == nil {
		r.one = newOneText(r.dec)
	}
	for _, s := range r.segs {
		if s.outside(lo, hi) {
			continue
		}
		if err := r.filterSegment(s, plans, restrict, lo, hi, cols, names, opts.ReadAhead, fn); err != nil {
			return err
		}
		if r.colErr != nil {
			return r.colErr
		}
	}
	// The WAL's events: those some filter may match, whole.
	sel.Filter = orOf(filters, sel.Filter)
	sel.NeedEvent = true
	return r.selectHead(&plan{full: sel.Filter, residual: true}, sel, lo, hi, fn)
}

// orOf returns the filter of the events that match restrict (when not
// nil) and one of filters.
func orOf(filters []*query.Filter, restrict *query.Filter) *query.Filter {
	var terms []query.Expr
	for _, f := range filters {
		terms = append(terms, f.Expr())
	}
	var e query.Expr = &query.Or{Terms: terms}
	if restrict != nil {
		e = &query.And{Terms: []query.Expr{restrict.Expr(), e}}
	}
	f, err := query.CompileExpr(e, filters[0].Now())
	if err != nil {
		panic("BUG: a disjunction of compiled filters does not compile: " + err.Error())
	}
	return f
}

// filterSegment is SelectFilters over one segment.
func (r *Reader) filterSegment(s *segView, plans []*plan, restrict *plan, lo, hi int64, cols []Column, names []string, readAhead func([]int8) bool, fn func(*Hit) error) (err error) {
	n := s.r.meta.Count
	// may holds, per event, a bit per filter that the columns did not rule
	// out; a filter with a residual is then undecided.
	words := (len(plans) + 63) / 64
	may := make([]uint64, n*words)
	mark := func(c cands, j int) {
		w, bit := j/64, uint64(1)<<(j%64)
		if c.all {
			for o := 0; o < n; o++ {
				may[o*words+w] |= bit
			}
			return
		}
		for _, o := range c.list {
			may[int(o)*words+w] |= bit
		}
	}
	any := false
	for j, p := range plans {
		c, skip, err := r.candidates(s, p, lo, hi, false)
		if err != nil {
			return err
		}
		if !skip {
			mark(c, j)
			any = true
		}
	}
	if !any {
		return nil
	}
	if restrict.full != nil {
		c, skip, err := r.candidates(s, restrict, lo, hi, false)
		if err != nil || skip {
			return err
		}
		if !c.all {
			keep := make([]bool, n)
			for _, o := range c.list {
				keep[o] = true
			}
			for o := 0; o < n; o++ {
				if !keep[o] {
					clear(may[o*words : (o+1)*words])
				}
			}
		}
	}
	if err := r.timeCols(s); err != nil {
		return err
	}
	cl, err := r.colIDs(s, ColCluster)
	if err != nil {
		return err
	}
	cd, err := r.dict(s, ColCluster)
	if err != nil {
		return err
	}
	ids := make([][]uint32, len(cols))
	dicts := make([]*dictData, len(cols))
	for k, c := range cols {
		if ids[k], err = r.colIDs(s, c); err != nil {
			return err
		}
		if dicts[k], err = r.dict(s, c); err != nil {
			return err
		}
	}
	known := make([]int8, len(plans))
	decide := func(o int) bool {
		m := may[o*words : (o+1)*words]
		if allZero(m) {
			return false
		}
		for j, p := range plans {
			switch {
			case m[j/64]&(1<<(j%64)) == 0:
				known[j] = -1
			case p.residual:
				known[j] = 0
			default:
				known[j] = 1
			}
		}
		return true
	}
	if readAhead != nil {
		var list []int32
		for o := 0; o < n; o++ {
			if decide(o) && readAhead(known) {
				list = append(list, int32(o))
			}
		}
		if len(list) > 0 {
			if r.ahead, err = r.readAhead(s, list); err != nil {
				return err
			}
			defer func() {
				r.ahead.stop()
				r.ahead = nil
			}()
		}
	}
	var partial audit.Event
	for o := 0; o < n; o++ {
		if !decide(o) {
			continue
		}
		cluster := cd.values[cl[o]]
		partial = audit.Event{}
		for k, c := range cols {
			setColumn(c, dicts[k].values[ids[k][o]], &partial)
		}
		h := Hit{Cluster: cluster, Time: s.times[o], Received: s.recvs[o], Event: &partial, Partial: true,
			Fields: names, Known: known, seg: s, r: r, ord: o}
		if restrict.residual {
			if err := h.Load(); err != nil {
				return err
			}
			if !restrict.full.Match(h.Event, cluster) {
				continue
			}
		}
		if err := fn(&h); err != nil {
			return err
		}
	}
	return nil
}

func allZero(m []uint64) bool {
	for _, w := range m {
		if w != 0 {
			return false
		}
	}
	return true
}

// Load makes a partial hit (SelectFilters) whole: it reads and decodes the
// event's text into Event and Raw, valid during the callback. A whole hit
// is left as it is.
func (h *Hit) Load() error {
	if !h.Partial {
		return nil
	}
	if h.seg == nil {
		return errors.New("BUG: a partial hit without a segment")
	}
	r := h.r
	if ev, raw, ok, err := r.ahead.take(h.ord); ok || err != nil {
		if err != nil {
			return err
		}
		h.Event, h.Raw, h.Partial, h.Fields = ev, raw, false, nil
		return nil
	}
	raw, err := r.one.text(h.seg.r, h.ord, r.idsOf(h.seg))
	if err != nil {
		return err
	}
	if err := audit.DecodeStored(raw, &r.whole); err != nil {
		return h.seg.r.fail("event text", err)
	}
	h.Event, h.Raw, h.Partial, h.Fields = &r.whole, raw, false, nil
	return nil
}

// aheadSlots is how many events a read-ahead holds decoded at most.
const aheadSlots = 256

// ahead reads and decodes, on its own goroutine, the events of one
// segment that the caller of SelectFilters will load, in order, while the
// caller works on the ones before.
type ahead struct {
	list  []int32 // the events read ahead, ascending
	next  int     // list[next] is the next to come from ready
	ready chan *aheadSlot
	free  chan *aheadSlot
	quit  chan struct{}
	cur   *aheadSlot // the slot of the hit at hand
}

type aheadSlot struct {
	ord int
	ev  audit.Event
	raw []byte
	err error
}

// readAhead starts reading the events of list (ascending) of s.
func (r *Reader) readAhead(s *segView, list []int32) (*ahead, error) {
	if r.dec2 == nil {
		dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, err
		}
		r.dec2, r.one2 = dec, newOneText(dec)
	}
	// A v3 segment's order comes from its sortBy columns: read here, on
	// the reader's goroutine.
	var sortIDs [NumColumns][]uint32
	if s.r.meta.Version == 3 {
		for _, c := range s.r.meta.SortBy {
			ids, err := r.colIDs(s, c)
			if err != nil {
				return nil, err
			}
			sortIDs[c] = ids
		}
	}
	ids := func(c Column) ([]uint32, error) { return sortIDs[c], nil }
	a := &ahead{list: list, ready: make(chan *aheadSlot, aheadSlots), free: make(chan *aheadSlot, aheadSlots), quit: make(chan struct{})}
	for range aheadSlots {
		a.free <- new(aheadSlot)
	}
	one := r.one2
	go func() {
		defer close(a.ready)
		for _, o := range list {
			var sl *aheadSlot
			select {
			case sl = <-a.free:
			case <-a.quit:
				return
			}
			sl.ord = int(o)
			raw, err := one.text(s.r, int(o), ids)
			if err == nil {
				sl.raw = append(sl.raw[:0], raw...)
				if err = audit.DecodeStored(sl.raw, &sl.ev); err != nil {
					err = s.r.fail("event text", err)
				}
			}
			sl.err = err
			select {
			case a.ready <- sl:
			case <-a.quit:
				return
			}
			if err != nil {
				return
			}
		}
	}()
	return a, nil
}

// take returns event ord when it was read ahead (ok), passing over those
// before it that the caller did not load.
func (a *ahead) take(ord int) (ev *audit.Event, raw []byte, ok bool, err error) {
	if a == nil {
		return nil, nil, false, nil
	}
	if a.cur != nil {
		a.free <- a.cur
		a.cur = nil
	}
	for a.next < len(a.list) && int(a.list[a.next]) <= ord {
		sl := <-a.ready
		if sl == nil {
			return nil, nil, false, errors.New("BUG: the read-ahead stopped early")
		}
		a.next++
		if sl.err != nil {
			return nil, nil, false, sl.err
		}
		if sl.ord < ord {
			a.free <- sl
			continue
		}
		a.cur = sl
		return &sl.ev, sl.raw, true, nil
	}
	return nil, nil, false, nil
}

// stop ends the read-ahead and waits for its goroutine.
func (a *ahead) stop() {
	close(a.quit)
	for range a.ready {
	}
}
