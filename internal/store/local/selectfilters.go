package local

import (
	"errors"

	"github.com/kubetrail/kubetrail/internal/audit"
	"github.com/kubetrail/kubetrail/internal/query"
)

// SelectFilters calls fn, in arrival order, for every selected event
// (sel) that may match at least one of filters, without reading its text:
// each filter is decided on the columns as Select decides one, and the
// hit says per filter what they decided (Hit.Known). The hit's Event is
// partial (Hit.Partial): it holds only the fields named in fields that
// columns hold (Hit.Fields), and Hit.Load reads the whole event when the
// caller needs more, decompressing only the blocks of the events loaded.
// Rules (`kubetrail detect`) use it: most of their conditions are decided
// by columns, and most events they see need no more.
//
// Events still in the WAL are given whole (Partial false, Known nil).
// sel.NeedEvent is ignored.
func (r *Reader) SelectFilters(sel Selection, filters []*query.Filter, fields []string, fn func(*Hit) error) error {
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
		if err := r.filterSegment(s, plans, restrict, lo, hi, cols, names, fn); err != nil {
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
func (r *Reader) filterSegment(s *segView, plans []*plan, restrict *plan, lo, hi int64, cols []Column, names []string, fn func(*Hit) error) error {
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
	var partial audit.Event
	for o := 0; o < n; o++ {
		m := may[o*words : (o+1)*words]
		if allZero(m) {
			continue
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
