package local

import (
	"errors"
	"slices"
	"sort"

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
	// read ahead, on other goroutines, while the caller works on the
	// ones before. There a filter whose body condition needs a literal
	// the event's text lacks (query.RawRejecter) is decided too, and the
	// event is decoded only when ReadAhead still says so. It must be safe
	// for concurrent use.
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
// sel.NeedEvent is ignored. Hit.Column must not be called on the partial
// hits: the reader is then reading the next segment's columns.
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
	sc := &lazyScan{plans: plans, restrict: restrict, cols: cols, names: names, groups: slices.Contains(fields, "group"), readAhead: opts.ReadAhead, fn: fn,
		rejects: make([]func([]byte) bool, len(plans))}
	sc.keys, sc.rest = make([][]string, len(plans)), make([]*query.Filter, len(plans))
	for j, p := range plans {
		if p.residual {
			sc.rejects[j] = query.RawRejecter(filters[j])
			rest, err := p.restFilter()
			if err != nil {
				return err
			}
			if keys, ok := rest.EventKeys(); ok {
				sc.keys[j], sc.rest[j] = keys, rest
			}
		}
	}
	sc.lo, sc.hi = bounds(sel)
	lo, hi := sc.lo, sc.hi
	if err := r.lazyTexts(); err != nil {
		return err
	}
	// The WAL's events: those some filter may match, whole.
	head := sel
	head.Filter = orOf(filters, sel.Filter)
	head.NeedEvent = true
	headPlan := &plan{full: head.Filter, residual: true}
	return r.inStoredOrder(func(all []*segView) error {
		var segs []*segView
		for _, s := range all {
			if !s.outside(lo, hi) {
				segs = append(segs, s)
			}
		}
		r.colErr = nil
		if err := r.filterSegments(segs, sc); err != nil {
			return err
		}
		return r.colErr
	}, func(chunks []headChunk) error {
		return r.selectHead(chunks, headPlan, head, lo, hi, fn)
	})
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

// lazyScan is what SelectFilters works with.
type lazyScan struct {
	plans    []*plan
	restrict *plan
	lo, hi   int64
	// cols are the columns of the partial events' fields, names the
	// fields.
	cols  []Column
	names []string
	// groups says the partial events' user groups column is read too
	// (Hit.JoinedGroups): a list, it is not one of cols.
	groups    bool
	readAhead func([]int8) bool
	// rejects are the filters' tests of stored bytes (query.RawRejecter),
	// nil where they have none.
	rejects []func([]byte) bool
	// keys are the event keys each filter's residual (rest, plan.rest)
	// reads (query.Filter.EventKeys), nil where it reads what no key
	// holds: the read-ahead decides a filter the columns left undecided
	// by decoding only those.
	keys [][]string
	rest []*query.Filter
	fn   func(*Hit) error
}

// segKnown is what the columns decided of one segment's events.
type segKnown struct {
	plans []*plan
	words int
	// may holds, per event, a bit per filter that the columns did not
	// rule out; a filter with a residual is then undecided.
	may []uint64
}

// decide fills known with what the columns decided of event o, and
// reports whether some filter may match it.
func (k *segKnown) decide(o int, known []int8) bool {
	m := k.may[o*k.words : (o+1)*k.words]
	if allZero(m) {
		return false
	}
	for j, p := range k.plans {
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

// lazyTexts makes the text readers of lazy hits and of the read-ahead
// workers, each with its own decoder.
func (r *Reader) lazyTexts() error {
	if r.one == nil {
		dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return err
		}
		r.one = newOneText(dec)
	}
	for len(r.aheadText) < aheadWorkers {
		dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return err
		}
		r.aheadText = append(r.aheadText, newOneText(dec))
	}
	return nil
}

// readySeg is a segment made ready for SelectFilters' caller: what its
// columns decided, the column values partial events take, and the
// read-ahead of the events the caller will load (nil when none).
type readySeg struct {
	s            *segView
	sk           *segKnown
	times, recvs []int64
	cl           []uint32
	cd           *dictData
	ids          [][]uint32
	dicts        []*dictData
	// gids and gd are the groups column, when lazyScan.groups.
	gids []uint32
	gd   *dictData
	// sortIDs are a v3 segment's sortBy columns, by which its text is
	// found.
	sortIDs [NumColumns][]uint32
	ahead   *ahead
	err     error
}

// textIDs gives a v3 segment's sortBy columns to its text readers.
func (rs *readySeg) textIDs(c Column) ([]uint32, error) { return rs.sortIDs[c], nil }

// filterSegments is SelectFilters over segs, in two stages: a goroutine
// reads segment N+1's columns, decides the filters on them and starts its
// read-ahead while the caller is given segment N's events. Without it, the
// read-ahead workers waited, at the start of each segment, for its columns.
// The stage ahead uses the reader's decoder, buffers and column caches;
// the caller's stage only what readySeg holds, r.one and r.whole; r.lag
// keeps the caller's segment's columns until the next but one is read.
func (r *Reader) filterSegments(segs []*segView, sc *lazyScan) error {
	ready := make(chan *readySeg)
	quit := make(chan struct{})
	r.lag = true
	go func() {
		defer close(ready)
		// The read-ahead of a segment starts once that of the segment
		// before is over: they share the text readers, each of which
		// holds up to a group's text (16 MiB).
		var after []chan struct{}
		for _, s := range segs {
			rs, err := r.prepare(s, sc, after)
			if err != nil {
				rs = &readySeg{err: err}
			}
			if rs == nil {
				// No event of s may match: the caller's segment, used
				// before s, must stay the one whose columns the next
				// segment's use keeps.
				r.unuse(s)
				continue
			}
			if rs.ahead != nil {
				after = rs.ahead.done
			}
			select {
			case ready <- rs:
			case <-quit:
				rs.ahead.stop()
				return
			}
			if err != nil {
				return
			}
		}
	}()
	defer func() {
		close(quit)
		for rs := range ready {
			rs.ahead.stop()
		}
		r.lag = false
		r.release(r.prev)
		r.prev = nil
	}()
	for rs := range ready {
		if rs.err != nil {
			return rs.err
		}
		err := r.give(rs, sc)
		rs.ahead.stop()
		if err != nil {
			return err
		}
	}
	return nil
}

// prepare makes segment s ready, or returns nil when none of its events
// may match. Its read-ahead workers start reading once those of after
// (when not nil) are over.
func (r *Reader) prepare(s *segView, sc *lazyScan, after []chan struct{}) (*readySeg, error) {
	plans, restrict, lo, hi := sc.plans, sc.restrict, sc.lo, sc.hi
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
	// A small column that several filters test is read once, whole:
	// otherwise each filter decompresses its ids again.
	r.use(s)
	uses := [NumColumns]int{}
	for _, p := range plans {
		for _, t := range p.colTerms {
			uses[t.col]++
		}
	}
	for c, k := range uses {
		if k > 1 && s.r.meta.Columns[c].Kind != kindPostings {
			if _, err := r.colIDs(s, Column(c)); err != nil {
				return nil, err
			}
		}
	}
	any := false
	for j, p := range plans {
		c, skip, err := r.candidates(s, p, lo, hi, false)
		if err != nil {
			return nil, err
		}
		if !skip {
			mark(c, j)
			any = true
		}
	}
	if !any {
		return nil, nil
	}
	if restrict.full != nil {
		c, skip, err := r.candidates(s, restrict, lo, hi, false)
		if err != nil || skip {
			return nil, err
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
		return nil, err
	}
	rs := &readySeg{s: s, sk: &segKnown{plans: plans, words: words, may: may}, times: s.times, recvs: s.recvs,
		ids: make([][]uint32, len(sc.cols)), dicts: make([]*dictData, len(sc.cols))}
	var err error
	if rs.cl, err = r.colIDs(s, ColCluster); err != nil {
		return nil, err
	}
	if rs.cd, err = r.dict(s, ColCluster); err != nil {
		return nil, err
	}
	for k, c := range sc.cols {
		if rs.ids[k], err = r.colIDs(s, c); err != nil {
			return nil, err
		}
		if rs.dicts[k], err = r.dict(s, c); err != nil {
			return nil, err
		}
	}
	if sc.groups {
		if rs.gids, err = r.colIDs(s, ColGroups); err != nil {
			return nil, err
		}
		if rs.gd, err = r.dict(s, ColGroups); err != nil {
			return nil, err
		}
	}
	// A v3 segment's order comes from its sortBy columns.
	if s.r.meta.Version == 3 {
		for _, c := range s.r.meta.SortBy {
			if rs.sortIDs[c], err = r.colIDs(s, c); err != nil {
				return nil, err
			}
		}
	}
	if sc.readAhead != nil {
		known := make([]int8, len(plans))
		var list []int32
		for o := 0; o < n; o++ {
			if rs.sk.decide(o, known) && sc.readAhead(known) {
				list = append(list, int32(o))
			}
		}
		if len(list) > 0 {
			rs.ahead = newAhead(rs, sc, list, r.aheadText, after)
		}
	}
	return rs, nil
}

// give calls sc.fn with the events of rs that may match.
func (r *Reader) give(rs *readySeg, sc *lazyScan) error {
	s, restrict := rs.s, sc.restrict
	known := make([]int8, len(sc.plans))
	var partial audit.Event
	for o := 0; o < s.r.meta.Count; o++ {
		if !rs.sk.decide(o, known) {
			continue
		}
		sl, err := rs.ahead.next(o)
		if err != nil {
			return err
		}
		if sl != nil {
			copy(known, sl.known) // with what the text told
		}
		cluster := rs.cd.values[rs.cl[o]]
		partial = audit.Event{}
		for k, c := range sc.cols {
			setColumn(c, rs.dicts[k].values[rs.ids[k][o]], &partial)
		}
		h := Hit{Cluster: cluster, Time: rs.times[o], Received: rs.recvs[o], Event: &partial, Partial: true,
			Fields: sc.names, Known: known, seg: s, ready: rs, r: r, ord: o, ahead: sl}
		if rs.gd != nil {
			h.groups, h.hasGroups = rs.gd.values[rs.gids[o]], true
		}
		if restrict.residual {
			if err := h.Load(); err != nil {
				return err
			}
			if !restrict.full.Match(h.Event, cluster) {
				continue
			}
		}
		if err := sc.fn(&h); err != nil {
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
	if sl := h.ahead; sl != nil && sl.decoded {
		h.Event, h.Raw, h.Partial, h.Fields = &sl.ev, sl.raw, false, nil
		return nil
	}
	r := h.r
	raw, err := r.one.text(h.seg.r, h.ord, h.ready.textIDs)
	if err != nil {
		return err
	}
	if err := audit.DecodeStored(raw, &r.whole); err != nil {
		return h.seg.r.fail("event text", err)
	}
	h.Event, h.Raw, h.Partial, h.Fields = &r.whole, raw, false, nil
	return nil
}

// JoinedGroups returns a partial hit's user groups as the store's column
// holds them, joined by ListSep (so [] and [""] are both "", and a group
// holding ListSep reads as two), when the selection asked for the field
// group (LazyOptions.Fields); for a test that may only rule events out.
func (h *Hit) JoinedGroups() (string, bool) { return h.groups, h.hasGroups }

// LoadRaw returns a partial hit's stored text without decoding it (a
// rule key that needs one field no column holds decodes only that); the
// text is valid until the next Load or LoadRaw of the Reader's hits.
func (h *Hit) LoadRaw() ([]byte, error) {
	if !h.Partial {
		return h.Raw, nil
	}
	if h.seg == nil {
		return nil, errors.New("BUG: a partial hit without a segment")
	}
	if sl := h.ahead; sl != nil && sl.decoded {
		return sl.raw, nil
	}
	return h.r.one.text(h.seg.r, h.ord, h.ready.textIDs)
}

// aheadSlots is how many events a read-ahead worker holds at most.
const aheadSlots = 256

// aheadWorkers is how many goroutines read ahead a segment. With the
// caller's, and those of the next segment once it is under way, they share
// the machine's two cores: reading and decoding the events a rule needs
// took about twice the time of deciding the rules.
const aheadWorkers = 2

// ahead reads, on its own goroutines, the events of one segment that the
// caller of SelectFilters will load, while the caller works on the ones
// before: their text, what it tells of the filters, and the event decoded
// when it is still needed. Each worker takes every other text group (v3,
// v4) or block (v2), so that no block is decompressed twice, and gives its
// events in order.
type ahead struct {
	workers []*aheadWorker
	// done are closed as the workers' goroutines end, in order.
	done []chan struct{}
	unit func(ord int) int // the group or block of an event
	quit chan struct{}
	cur  *aheadSlot // the slot of the hit at hand
	curW *aheadWorker
}

type aheadWorker struct {
	list  []int32 // the events it reads, ascending
	at    int     // list[at] is the next to come from ready
	ready chan *aheadSlot
	free  chan *aheadSlot
}

type aheadSlot struct {
	ord     int
	known   []int8
	decoded bool // ev and raw hold the event
	ev      audit.Event
	raw     []byte
	err     error
	keys    []string // decideOnKeys' scratch
}

// newAhead starts reading the events of list (ascending) of rs, each
// worker with one of texts once the one before it (after[k], when not
// nil) is over.
func newAhead(rs *readySeg, sc *lazyScan, list []int32, texts []*oneText, after []chan struct{}) *ahead {
	m := &rs.s.r.meta
	a := &ahead{quit: make(chan struct{}), unit: func(ord int) int {
		if m.Version < 3 {
			return sort.Search(len(m.Blocks), func(i int) bool { return m.Blocks[i].First+m.Blocks[i].Count > ord })
		}
		return sort.Search(len(m.Groups), func(i int) bool { return m.Groups[i].First+m.Groups[i].Count > ord })
	}}
	for range aheadWorkers {
		w := &aheadWorker{ready: make(chan *aheadSlot, aheadSlots), free: make(chan *aheadSlot, aheadSlots)}
		for range aheadSlots {
			w.free <- &aheadSlot{known: make([]int8, len(sc.plans))}
		}
		a.workers = append(a.workers, w)
		a.done = append(a.done, make(chan struct{}))
	}
	for _, o := range list {
		w := a.workers[a.unit(int(o))%aheadWorkers]
		w.list = append(w.list, o)
	}
	for k, w := range a.workers {
		var prev chan struct{}
		if after != nil {
			prev = after[k]
		}
		go a.run(w, prev, a.done[k], rs.s, rs.sk, sc, texts[k], rs.textIDs)
	}
	return a
}

// run is a worker's goroutine. It starts once after (when not nil) is
// closed, and closes done as it ends.
func (a *ahead) run(w *aheadWorker, after, done chan struct{}, s *segView, sk *segKnown, sc *lazyScan, one *oneText, ids idsFunc) {
	defer close(done)
	defer close(w.ready)
	if after != nil {
		select {
		case <-after:
		case <-a.quit:
			return
		}
	}
	one.expect(s.r, w.list)
	defer one.expect(nil, nil)
	for _, o := range w.list {
		var sl *aheadSlot
		select {
		case sl = <-w.free:
		case <-a.quit:
			return
		}
		sl.ord, sl.decoded = int(o), false
		sk.decide(int(o), sl.known)
		sl.err = a.read(s, sc, one, ids, sl)
		select {
		case w.ready <- sl:
		case <-a.quit:
			return
		}
		if sl.err != nil {
			return
		}
	}
}

// read reads event sl.ord's text, decides the undecided filters that its
// text rules out, and decodes the event when it is still needed.
func (a *ahead) read(s *segView, sc *lazyScan, one *oneText, ids idsFunc, sl *aheadSlot) error {
	raw, err := one.text(s.r, sl.ord, ids)
	if err != nil {
		return err
	}
	for j, k := range sl.known {
		if k == 0 && sc.rejects[j] != nil && sc.rejects[j](raw) {
			sl.known[j] = -1
		}
	}
	sc.decideOnKeys(raw, sl)
	if !sc.readAhead(sl.known) {
		return nil
	}
	sl.raw = append(sl.raw[:0], raw...)
	if err := audit.DecodeStored(sl.raw, &sl.ev); err != nil {
		return s.r.fail("event text", err)
	}
	sl.decoded = true
	return nil
}

// decideOnKeys decides the filters still undecided of sl's event whose
// keys are known, decoding only those keys of its text raw: a filter on a
// field no column holds (the impersonated user, the URI, an annotation)
// then costs a pass over the event's bytes, not a decoding of all of them
// (the built-in pack's "System identity impersonated" left 224k of 2M
// events undecided, each decoded whole). Where the fast decoder would not
// decode the event, they stay undecided.
func (sc *lazyScan) decideOnKeys(raw []byte, sl *aheadSlot) {
	sl.keys = sl.keys[:0]
	for j, k := range sl.known {
		if k == 0 && sc.keys[j] != nil {
			for _, key := range sc.keys[j] {
				if !slices.Contains(sl.keys, key) {
					sl.keys = append(sl.keys, key)
				}
			}
		}
	}
	if len(sl.keys) == 0 {
		return
	}
	// Strings point into raw: the event is forgotten before raw changes.
	defer func() { sl.ev = audit.Event{} }()
	if !audit.StoredFields(raw, sl.keys, true, &sl.ev) {
		return
	}
	for j, k := range sl.known {
		if k == 0 && sc.keys[j] != nil {
			sl.known[j] = -1
			if sc.rest[j].Match(&sl.ev, "") {
				sl.known[j] = 1
			}
		}
	}
}

// next returns the slot of event ord, or nil when ord was not read ahead
// (or a is nil). Events must be asked for in ascending order; the slot
// is valid until the next call.
func (a *ahead) next(ord int) (*aheadSlot, error) {
	if a == nil {
		return nil, nil
	}
	if a.cur != nil {
		a.curW.free <- a.cur
		a.cur, a.curW = nil, nil
	}
	w := a.workers[a.unit(ord)%aheadWorkers]
	for w.at < len(w.list) && int(w.list[w.at]) <= ord {
		sl := <-w.ready
		if sl == nil {
			return nil, errors.New("BUG: the read-ahead stopped early")
		}
		w.at++
		if sl.err != nil {
			return nil, sl.err
		}
		if sl.ord < ord {
			w.free <- sl
			continue
		}
		a.cur, a.curW = sl, w
		return sl, nil
	}
	return nil, nil
}

// stop ends the read-ahead (when not nil) and waits for its goroutines.
func (a *ahead) stop() {
	if a == nil {
		return
	}
	close(a.quit)
	for _, w := range a.workers {
		for range w.ready {
		}
	}
}
