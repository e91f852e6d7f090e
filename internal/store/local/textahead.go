package local

import (
	"runtime"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/klauspost/compress/zstd"

	"github.com/kubetrail/kubetrail/internal/audit"
)

// textJob is one text group (v3 and later) or block (v2) of a segment
// whose events a caller wants, decoded by a textAhead worker. The events
// are those of want, or all of [lo, hi) when want is nil, as for
// textReader.events.
type textJob struct {
	r      *segmentReader
	lo, hi int
	want   []int32
	// ids gives a v3 segment's sortBy ids, read by the caller beforehand:
	// the workers must not touch the Reader's columns.
	ids      idsFunc
	noBodies bool
	// decode has the worker decode each event too (Select's NeedEvent
	// or a residual filter): the caller then only matches and gives.
	decode bool
	// seg is what Select needs to make its hits; scan, what Scan needs
	// for its entries, and part, which of scan.parts the job reads.
	seg  *segText
	scan *scanSeg
	part int
	// err, set before the job is queued, is a failure met while planning
	// it: the caller returns it in its turn, having given the events
	// before.
	err error

	// Set by the worker: the events read, in order, and the error that
	// stopped the read (after ords, as the serial read gives them).
	slot *textSlot
	done chan struct{}
}

// textSlot is a text reader and the events it read for one job. raws
// point into t's buffers: they stay valid until t reads again, which it
// does only once the slot is given back.
type textSlot struct {
	t    *textReader
	ords []int32
	raws [][]byte
	// evs are the events decoded (textJob.decode), reused from job to job.
	evs []audit.Event
}

// textAhead decodes the text of the jobs queued on up to workers
// goroutines, ahead of the caller, who takes them in the order queued.
// Memory is bounded by the slots: a job in flight (sent, decoding, or
// read but not yet given back) holds one, and there are at most
// workers+1 of them, each holding up to a group's text (groupBytes, 16
// MiB, and an eighth of headroom), its stored bytes and, when the caller
// needs them, its events decoded: about 3 × 25 MiB on two cores. The
// slots and their decoders are kept (by a Reader from one Select to the
// next, by Scan for its whole run) so that their buffers are reused, not
// allocated and cleared again.
type textAhead struct {
	workers int
	started bool
	jobs    chan *textJob
	quit    chan struct{}
	wg      sync.WaitGroup
	// queue holds the jobs in the caller's order; queue[:sent] are with
	// the workers or done.
	queue []*textJob
	sent  int
	cur   *textJob // the job whose events the caller is given
	free  []*textSlot
	made  int // slots made, those given to newTextAhead included
	reads atomic.Int64
}

// newTextAhead returns a read-ahead with workers goroutines (GOMAXPROCS
// when workers is 0) that reads with slots, made before, and new ones.
func newTextAhead(slots []*textSlot, workers int) *textAhead {
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	a := &textAhead{workers: workers, quit: make(chan struct{}), free: slots, made: len(slots)}
	a.jobs = make(chan *textJob, a.slots())
	return a
}

// slots is how many jobs may be in flight.
func (a *textAhead) slots() int { return a.workers + 1 }

// add queues j behind the jobs queued before.
func (a *textAhead) add(j *textJob) { a.queue = append(a.queue, j) }

// pending reports whether a queued job is not yet with the workers.
func (a *textAhead) pending() bool { return a.sent < len(a.queue) }

// send gives the workers the queued jobs that a slot is free for. A job
// that failed while planned takes no slot, and nothing after it is sent.
func (a *textAhead) send() error {
	for a.sent < len(a.queue) {
		j := a.queue[a.sent]
		if j.err != nil {
			return nil
		}
		sl, err := a.slot()
		if err != nil || sl == nil {
			return err
		}
		if !a.started {
			a.started = true
			for range a.workers {
				a.wg.Add(1)
				go a.work()
			}
		}
		j.slot, j.done = sl, make(chan struct{})
		a.jobs <- j // never blocks: no more jobs than slots are in flight
		a.sent++
	}
	return nil
}

// slot returns a free slot, a new one if fewer than slots() were made, or
// nil when all are in flight.
func (a *textAhead) slot() (*textSlot, error) {
	if n := len(a.free); n > 0 {
		sl := a.free[n-1]
		a.free = a.free[:n-1]
		return sl, nil
	}
	if a.made >= a.slots() {
		return nil, nil
	}
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
	if err != nil {
		return nil, err
	}
	a.made++
	return &textSlot{t: newTextReader(dec)}, nil
}

// work is a worker's goroutine: it reads each job it is given, unless the
// caller stopped.
func (a *textAhead) work() {
	defer a.wg.Done()
	for j := range a.jobs {
		select {
		case <-a.quit:
		default:
			a.read(j)
		}
		close(j.done)
	}
}

// read reads job j's events into its slot.
func (a *textAhead) read(j *textJob) {
	a.reads.Add(1)
	sl := j.slot
	sl.ords, sl.raws = sl.ords[:0], sl.raws[:0]
	sl.t.noBodies = j.noBodies
	j.err = sl.t.events(j.r, j.lo, j.hi, j.want, nil, j.ids, func(ord int, raw []byte) error {
		sl.ords = append(sl.ords, int32(ord))
		sl.raws = append(sl.raws, raw)
		return nil
	})
	if !j.decode {
		return
	}
	if cap(sl.evs) < len(sl.raws) {
		sl.evs = make([]audit.Event, len(sl.raws))
	}
	sl.evs = sl.evs[:len(sl.raws)]
	for k, raw := range sl.raws {
		ev := &sl.evs[k]
		if err := audit.DecodeStored(raw, ev); err != nil {
			// The serial read fails at this event, after the ones
			// before it and before the text's own error.
			sl.ords, sl.raws, j.err = sl.ords[:k], sl.raws[:k], err
			return
		}
		if j.noBodies {
			ev.RequestObject, ev.ResponseObject = nil, nil
		}
	}
}

// next waits for the first queued job, which must have been sent or have
// failed, and takes it off the queue; done must be called with it once
// its events are given.
func (a *textAhead) next() *textJob {
	j := a.queue[0]
	switch {
	case j.done != nil:
		<-j.done
		a.sent--
	case j.err == nil:
		panic("BUG: the read-ahead's first job was never sent")
	}
	a.queue[0] = nil
	a.queue = a.queue[1:]
	a.cur = j
	return j
}

// done gives j's slot back.
func (a *textAhead) done(j *textJob) {
	if a.cur == j {
		a.cur = nil
	}
	if j.slot != nil {
		a.free = append(a.free, j.slot)
		j.slot = nil
	}
}

// drive runs the read-ahead: while every queued job has a slot and
// more says so, it queues plan's jobs (a plan's error is queued as a job
// of its own, after the jobs before it, and ends the planning); then it
// gives each job, in order, to give (only when it was read) and returns
// the job's error after its events. Its queue is empty when it returns
// nil.
func (a *textAhead) drive(more func() bool, plan func() ([]*textJob, error), give func(j *textJob) error) error {
	planning := true
	for {
		for planning && !a.pending() && more() {
			jobs, err := plan()
			if err != nil {
				a.add(&textJob{err: err})
				planning = false
				break
			}
			for _, j := range jobs {
				a.add(j)
			}
		}
		if err := a.send(); err != nil {
			return err
		}
		if len(a.queue) == 0 {
			return nil
		}
		j := a.next()
		if err := give(j); err != nil {
			return err
		}
		if j.err != nil {
			return j.err
		}
		a.done(j)
	}
}

// stop ends the workers, which finish at most the job each is reading and
// skip the others, waits for them, and returns every slot, to keep for
// the next read-ahead, and how many jobs were read.
func (a *textAhead) stop() ([]*textSlot, int64) {
	close(a.quit)
	close(a.jobs)
	a.wg.Wait()
	if a.cur != nil {
		a.done(a.cur)
	}
	for _, j := range a.queue {
		a.done(j)
	}
	a.queue = nil
	return a.free, a.reads.Load()
}

// segText is a segment planned for Select's read-ahead: its events'
// cluster ids and dictionary. Its times are the segment's, which the
// Reader keeps (with lag) while its hits are given.
type segText struct {
	s  *segView
	cl []uint32
	cd *dictData
}

// textJobs returns the jobs that read segment r's events of list
// (ascending), or when list is nil its events of [lo, hi): one per group
// (v3 and later) or block (v2) holding some that keep (when not nil)
// does not refuse by its time range, as textReader.events reads them.
func textJobs(r *segmentReader, lo, hi int, list []int32, keep func(minT, maxT int64) bool, noBodies bool, st *segText) []*textJob {
	m := &r.meta
	type unit struct {
		first, count int
		minT, maxT   int64
	}
	var units []unit
	if m.Version < 3 {
		for _, b := range m.Blocks {
			units = append(units, unit{b.First, b.Count, b.MinTime, b.MaxTime})
		}
	} else {
		for _, g := range m.Groups {
			units = append(units, unit{g.First, g.Count, g.MinTime, g.MaxTime})
		}
	}
	var jobs []*textJob
	for _, u := range units {
		first, end := u.first, u.first+u.count
		if list == nil {
			first, end = max(lo, first), min(hi, end)
		}
		if first >= end || (keep != nil && !keep(u.minT, u.maxT)) {
			continue
		}
		var in []int32
		if list != nil {
			i := sort.Search(len(list), func(i int) bool { return int(list[i]) >= u.first })
			k := sort.Search(len(list), func(i int) bool { return int(list[i]) >= end })
			if in = list[i:k:k]; len(in) == 0 {
				continue
			}
		}
		jobs = append(jobs, &textJob{r: r, lo: first, hi: end, want: in, noBodies: noBodies, seg: st})
	}
	return jobs
}

// selectAhead is Select over segs when the events' text is needed, as
// selectSegment does it for each segment but with the text of the groups
// holding candidates read ahead on a textAhead's workers: the caller is
// given the same events in the same order, and the same error after the
// same events, as the serial read gives. The columns of a segment are
// read on the caller's goroutine, when the segment is planned (its
// candidates, times and clusters) and by Hit.Column; r.lag keeps those of
// the segment before the one planned last, whose events may still be
// being given.
func (r *Reader) selectAhead(segs []*segView, p *plan, sel Selection, lo, hi int64, fn func(*Hit) error) error {
	a := newTextAhead(r.textSlots, r.textWorkers)
	r.textSlots = nil
	r.lag = true
	defer func() {
		var n int64
		r.textSlots, n = a.stop()
		r.textRead += n
		r.lag = false
		r.release(r.prev)
		r.prev = nil
	}()
	noBodies := sel.NoBodies && !p.residual
	needEvent := sel.NeedEvent || p.residual
	next := 0         // segs[next] is the next segment to plan
	var last *segView // the segment planned last: r.cur
	// Only the segment planned last may have jobs queued: planning
	// another releases the columns of the one before it.
	more := func() bool {
		return next < len(segs) && (len(a.queue) == 0 || a.queue[0].seg == nil || a.queue[0].seg.s == last)
	}
	plan := func() ([]*textJob, error) {
		for ; next < len(segs); next++ {
			if s := segs[next]; !s.outside(lo, hi) {
				next++
				last = s
				return r.planText(s, p, lo, hi, noBodies, needEvent)
			}
		}
		return nil, nil
	}
	return a.drive(more, plan, func(j *textJob) error {
		sl := j.slot
		if sl == nil {
			return nil
		}
		st := j.seg
		s := st.s
		for k, o := range sl.ords {
			i := int(o)
			cluster := st.cd.values[st.cl[i]]
			h := Hit{Cluster: cluster, Time: s.times[i], Received: s.recvs[i], Raw: sl.raws[k], seg: s, r: r, ord: i}
			if needEvent {
				ev := &sl.evs[k]
				if p.full != nil && p.residual && !p.full.Match(ev, cluster) {
					continue
				}
				h.Event = ev
			}
			if err := fn(&h); err != nil {
				return err
			}
		}
		return nil
	})
}

// planText reads what segment s's hits need from its columns, as
// selectSegment does, and returns the jobs that read its candidates'
// text (none when no event of s may match).
func (r *Reader) planText(s *segView, p *plan, lo, hi int64, noBodies, decode bool) ([]*textJob, error) {
	c, skip, err := r.candidates(s, p, lo, hi, false)
	if err != nil || skip {
		return nil, err
	}
	// The jobs' own list: the reader's is the next segment's.
	var list []int32
	if !c.all {
		list = append([]int32(nil), c.list...)
	}
	if err := r.timeCols(s); err != nil {
		return nil, err
	}
	st := &segText{s: s}
	if st.cl, err = r.colIDs(s, ColCluster); err != nil {
		return nil, err
	}
	if st.cd, err = r.dict(s, ColCluster); err != nil {
		return nil, err
	}
	var ids idsFunc
	jobs := textJobs(s.r, 0, s.r.meta.Count, list, nil, noBodies, st)
	for _, j := range jobs {
		j.decode = decode
	}
	if len(jobs) > 0 && s.r.meta.Version == 3 {
		// The workers must not read columns: the sortBy ids are read now.
		var key [NumColumns][]uint32
		for _, c := range s.r.meta.SortBy {
			if key[c], err = r.colIDs(s, c); err != nil {
				return nil, err
			}
		}
		ids = func(c Column) ([]uint32, error) { return key[c], nil }
		for _, j := range jobs {
			j.ids = ids
		}
	}
	return jobs, nil
}

// scanRun is a segment's part of a Scan: its ordinals [lo, hi), read in
// the ranges of its WAL segments that Scan gives.
type scanRun struct {
	r      *segmentReader
	lo, hi int
}

// scanSeg is a segment planned for scanAhead: the columns its entries
// need and the WAL segments its ranges belong to. Those of each segment
// with jobs queued are held, at most a.slots()+1 of them.
type scanSeg struct {
	cl           *ColumnData
	times, recvs []int64
	parts        []walPart
}

// scanAhead is scanText over the runs in turn, each over the ranges of its
// WAL segments (of at least fromWAL), with the text read ahead on a's
// workers: fn(part, e) is given the events in arrival order, and the error
// that stops the serial read after the same events. The next run's groups
// are queued as soon as every group of the run before has a slot, so the
// workers do not wait at a segment's end; a run is planned (its columns
// read, on the caller's goroutine, with dec) only then, and a failure to
// plan it is returned once the events before it are given. a's queue is
// empty when it returns nil. given is called after each group's events,
// before the error that stops the read and before the events' Raws are
// reused.
func scanAhead(a *textAhead, dec *zstd.Decoder, runs []scanRun, fromWAL uint64, keep func(minT, maxT int64) bool, fn func(part walPart, e entry) error, given func() error) error {
	next := 0
	more := func() bool { return next < len(runs) }
	plan := func() ([]*textJob, error) {
		next++
		return planScan(dec, runs[next-1], fromWAL, keep)
	}
	return a.drive(more, plan, func(j *textJob) error {
		if sl := j.slot; sl != nil {
			s := j.scan
			for k, o := range sl.ords {
				i := int(o)
				e := entry{cluster: s.cl.Values[s.cl.IDs[i]], received: s.recvs[i], time: s.times[i], raw: sl.raws[k], ord: i}
				if err := fn(s.parts[j.part], e); err != nil {
					return err
				}
			}
		}
		return given()
	})
}

// planScan returns the jobs that read run's events, as scanText reads
// them, and reads the columns their entries need unless run has no event
// to read.
func planScan(dec *zstd.Decoder, run scanRun, fromWAL uint64, keep func(minT, maxT int64) bool) ([]*textJob, error) {
	r := run.r
	if !keep(r.meta.MinTime, r.meta.MaxTime) {
		return nil, nil
	}
	s := &scanSeg{}
	var jobs []*textJob
	some := false
	for _, part := range r.meta.parts() {
		if part.WAL < fromWAL {
			continue
		}
		lo, hi := max(run.lo, part.First), min(run.hi, part.First+part.Count)
		some = some || lo < hi
		for _, j := range textJobs(r, lo, hi, nil, keep, false, nil) {
			j.part, j.scan = len(s.parts), s
			jobs = append(jobs, j)
		}
		s.parts = append(s.parts, part)
	}
	if !some {
		return nil, nil
	}
	// The serial read reads these for each range, even one whose groups
	// its times refuse (and fails there when they are damaged); once is
	// enough.
	var err error
	if s.cl, s.times, s.recvs, err = r.entryColumns(dec); err != nil {
		return nil, err
	}
	if r.meta.Version == 3 {
		// The workers must not share dec: the sortBy ids are read now.
		var key [NumColumns][]uint32
		for _, c := range r.meta.SortBy {
			if key[c], err = r.readIDs(dec, c, nil, nil, nil); err != nil {
				return nil, err
			}
		}
		for _, j := range jobs {
			j.ids = func(c Column) ([]uint32, error) { return key[c], nil }
		}
	}
	return jobs, nil
}
