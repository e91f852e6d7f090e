package local

import (
	"runtime"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/klauspost/compress/zstd"

	"github.com/kubetrail/kubetrail/internal/audit"
)

// textJob is one text group (v3 and later), part of a v5 group
// (textJobs), or block (v2) of a segment whose events a caller wants,
// read by a textAhead worker. The events are those of want, or all of
// [lo, hi) when want is nil, as for textReader.events.
type textJob struct {
	r      *segmentReader
	lo, hi int
	want   []int32
	// ids gives a v3 segment's sortBy ids, read by the caller beforehand:
	// the workers must not touch the Reader's columns.
	ids      idsFunc
	noBodies bool
	// decode has the workers decode each event too, a chunk at a time
	// (textChunk), for Select's NeedEvent or a residual filter: the
	// caller then only matches and gives.
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
	// whole, set on the first part of a group read in parts, is what
	// the whole group's read wants: the part also checks the blocks that
	// only the other parts read, so that it fails where that read fails,
	// before any of the group's events is given.
	whole *wholeGroup
	// inParts says the job reads a part of a group read in parts.
	inParts bool
	// est is the text the job reads, estimated from the meta before
	// (textAhead.budget); chunks are its chunks with the workers or
	// decoded, in order, and next the first of its events not in one.
	est    int64
	chunks []*textChunk
	next   int
}

// textSlot is a text reader and the events it read for one job. raws
// point into t's buffers: they stay valid until t reads again, which it
// does only once the slot is given back.
type textSlot struct {
	t    *textReader
	ords []int32
	raws [][]byte
}

// textChunk is up to chunkEvents events of a job, decoded by a worker
// (textJob.decode) into evs, a buffer reused from chunk to chunk: a
// job's events are decoded a chunk at a time, on every worker, rather
// than all at once by the worker that read the job's text, so that
// decoded events (about 2 KiB each on the heap, 1.6 times their text)
// are held only for the few chunks in flight.
type textChunk struct {
	raws     [][]byte
	noBodies bool
	evs      []audit.Event
	// err is the decoding error of the event after evs: the chunk's
	// events stop before it.
	err  error
	done chan struct{}
}

// chunkEvents is how many events a textChunk decodes: 256 events of the
// 2M-event corpus are 500 KiB decoded, about a millisecond of a worker.
const chunkEvents = 256

// aheadBytes bounds the text the jobs in flight hold together (by their
// estimate, textJob.est), unless a single job is larger: three whole
// 16 MiB groups, so that on two cores the caller gives one while the
// workers read the next two (export, and older segments' groups, which
// are read whole). Bounding by slots alone, with each slot's events
// decoded at once beside their text, had detect with Sigma's rules peak
// at 410 MiB (64 MiB before the read-ahead).
const aheadBytes = 3 * groupBytes

// aheadJobBytes is the most text a job of a v5 group whose events are
// decoded reads (unless one event is larger): a group whose wanted
// events hold more is read in parts of consecutive events, each part
// rendering only its own events from the group's blocks, so three jobs
// in flight hold 27 MiB of text, not 55. Each part opens the group's
// blocks again (0.3 s of CPU for all 2M events, against 7 s to decode
// them); export and -o jsonl, which decode nothing, read whole groups,
// as parts of a quarter of a group cost them half their CPU again. Parts
// also keep no group head: every slot keeping every head, and the
// templates built from it, held 55 MiB more.
const aheadJobBytes = 8 << 20

// textAhead decodes the text of the jobs queued on up to workers
// goroutines, ahead of the caller, who takes them in the order queued.
// Memory is bounded by bytes: the jobs in flight (sent, reading, or read
// but not yet given back) hold at most budget bytes of text together
// (by their estimate, unless one job alone is larger), each in a slot
// (at most workers+1 of them, holding its text with an eighth of
// headroom and its stored bytes), and the events decoded for the caller
// are held a chunk at a time, at most maxChunks() chunks. The slots and
// their decoders are kept (by a Reader from one Select to the next, by
// Scan for its whole run) so that their buffers are reused, not
// allocated and cleared again.
type textAhead struct {
	workers int
	// budget bounds the text of the jobs in flight, jobBytes that of a
	// job (aheadJobBytes), as textJobs splits them.
	budget, jobBytes int64
	started          bool
	jobs             chan *textJob
	chunks           chan *textChunk
	quit             chan struct{}
	wg               sync.WaitGroup
	// queue holds the jobs in the caller's order; queue[:sent] are with
	// the workers or done.
	queue []*textJob
	sent  int
	cur   *textJob // the job whose events the caller is given
	free  []*textSlot
	made  int // slots made, those given to newTextAhead included
	reads atomic.Int64
	// held is the estimate of the text of the jobs in flight; freeChunks
	// are the chunk buffers not in flight, of chunksMade made; inChunks
	// counts the events of the chunks in flight.
	held       int64
	freeChunks []*textChunk
	chunksMade int
	inChunks   int
	// chunkEvents is how many events a chunk decodes (chunkEvents);
	// peak, for tests, what was in flight at most.
	chunkEvents int
	peak        aheadPeak
}

// aheadLimits, when not zero, replace a read-ahead's job bytes and chunk
// events: for tests, which read small groups.
type aheadLimits struct {
	jobBytes    int64
	chunkEvents int
}

// aheadPeak is what a read-ahead held at most at once: the estimated text
// of the jobs in flight (held) and of the largest job, and the events of
// the chunks in flight (decoded or being decoded).
type aheadPeak struct {
	held, job int64
	events    int
}

// limit applies lim to a, whose read-ahead has not started.
func (a *textAhead) limit(lim aheadLimits) {
	if lim.jobBytes > 0 {
		a.setJobBytes(lim.jobBytes)
	}
	if lim.chunkEvents > 0 {
		a.chunkEvents = lim.chunkEvents
	}
}

// newTextAhead returns a read-ahead with workers goroutines (GOMAXPROCS
// when workers is 0) that reads with slots, made before, and new ones.
func newTextAhead(slots []*textSlot, workers int) *textAhead {
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	a := &textAhead{workers: workers, chunkEvents: chunkEvents, quit: make(chan struct{}), free: slots, made: len(slots)}
	a.setJobBytes(aheadJobBytes)
	a.jobs = make(chan *textJob, a.slots())
	a.chunks = make(chan *textChunk, a.maxChunks())
	return a
}

// setJobBytes sets the most text a job reads to n, and the budget to
// match: older groups are read whole, three at a time, or one a slot
// when there are more slots than parts of a v5 group to fill them.
func (a *textAhead) setJobBytes(n int64) {
	a.jobBytes = n
	a.budget = max(aheadBytes, int64(a.slots())*n)
}

// slots is how many jobs may be in flight.
func (a *textAhead) slots() int { return a.workers + 1 }

// maxChunks is how many chunks may be in flight: two for each worker, so
// that none waits while the caller takes a chunk.
func (a *textAhead) maxChunks() int { return 2 * a.workers }

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
		if a.held > 0 && a.held+j.est > a.budget {
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
		a.held += j.est
		a.peak.held = max(a.peak.held, a.held)
		a.peak.job = max(a.peak.job, j.est)
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

// work is a worker's goroutine: it reads each job and decodes each chunk
// it is given, unless the caller stopped.
func (a *textAhead) work() {
	defer a.wg.Done()
	jobs, chunks := a.jobs, a.chunks
	for jobs != nil || chunks != nil {
		select {
		case j, ok := <-jobs:
			if !ok {
				jobs = nil
				continue
			}
			if !a.stopped() {
				a.read(j)
			}
			close(j.done)
		case c, ok := <-chunks:
			if !ok {
				chunks = nil
				continue
			}
			if !a.stopped() {
				c.decode()
			}
			close(c.done)
		}
	}
}

// stopped reports whether the caller stopped.
func (a *textAhead) stopped() bool {
	select {
	case <-a.quit:
		return true
	default:
		return false
	}
}

// read reads job j's events into its slot.
func (a *textAhead) read(j *textJob) {
	a.reads.Add(1)
	sl := j.slot
	sl.ords, sl.raws = sl.ords[:0], sl.raws[:0]
	sl.t.noBodies = j.noBodies
	sl.t.whole, sl.t.part = j.whole, j.inParts
	j.err = sl.t.events(j.r, j.lo, j.hi, j.want, nil, j.ids, func(ord int, raw []byte) error {
		sl.ords = append(sl.ords, int32(ord))
		sl.raws = append(sl.raws, raw)
		return nil
	})
}

// decode decodes c's events, up to the first that fails.
func (c *textChunk) decode() {
	c.evs, c.err = c.evs[:0], nil
	for _, raw := range c.raws {
		c.evs = append(c.evs, audit.Event{})
		ev := &c.evs[len(c.evs)-1]
		if err := audit.DecodeStored(raw, ev); err != nil {
			c.evs, c.err = c.evs[:len(c.evs)-1], err
			return
		}
		if c.noBodies {
			ev.RequestObject, ev.ResponseObject = nil, nil
		}
	}
}

// dispatch gives the workers the chunks of the jobs read, in the order
// the caller takes them, while a chunk buffer is free: the current job's
// first, then those of the queued jobs whose text is read.
func (a *textAhead) dispatch() {
	if a.cur != nil && !a.chunkOut(a.cur) {
		return
	}
	for _, j := range a.queue {
		if j.done == nil {
			return // not sent, or failed while planned
		}
		select {
		case <-j.done:
		default:
			return
		}
		if !a.chunkOut(j) {
			return
		}
	}
}

// chunkOut gives the workers j's chunks not yet given, and reports
// whether all are (false when no chunk buffer is free).
func (a *textAhead) chunkOut(j *textJob) bool {
	if !j.decode || j.slot == nil {
		return true
	}
	for j.next < len(j.slot.raws) {
		c := a.chunk()
		if c == nil {
			return false
		}
		end := min(j.next+a.chunkEvents, len(j.slot.raws))
		c.raws, c.noBodies, c.done = j.slot.raws[j.next:end], j.noBodies, make(chan struct{})
		j.next = end
		j.chunks = append(j.chunks, c)
		a.inChunks += len(c.raws)
		a.peak.events = max(a.peak.events, a.inChunks)
		a.chunks <- c // never blocks: no more chunks than buffers are in flight
	}
	return true
}

// chunk returns a free chunk buffer, a new one if fewer than
// maxChunks() were made, or nil.
func (a *textAhead) chunk() *textChunk {
	if n := len(a.freeChunks); n > 0 {
		c := a.freeChunks[n-1]
		a.freeChunks = a.freeChunks[:n-1]
		return c
	}
	if a.chunksMade >= a.maxChunks() {
		return nil
	}
	a.chunksMade++
	return &textChunk{evs: make([]audit.Event, 0, a.chunkEvents)}
}

// decoded calls fn with each event of j, the job the caller took with
// next, decoded, in order, and returns the error of the first that fails
// to decode after the events before it (and before j's own error, as the
// serial read does). j must have been read with decode set.
func (a *textAhead) decoded(j *textJob, fn func(k int, ev *audit.Event) error) error {
	for k := 0; k < len(j.slot.raws); {
		a.dispatch()
		if len(j.chunks) == 0 {
			panic("BUG: no chunk of the read-ahead's current job was given to the workers")
		}
		c := j.chunks[0]
		<-c.done
		j.chunks = j.chunks[1:]
		a.inChunks -= len(c.raws)
		for i := range c.evs {
			if err := fn(k+i, &c.evs[i]); err != nil {
				return err
			}
		}
		a.freeChunks = append(a.freeChunks, c)
		k += len(c.evs)
		if c.err != nil {
			return c.err
		}
	}
	return nil
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
		a.held -= j.est
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
	close(a.chunks)
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
	// times says s's time columns were read for the hits (not with
	// Selection.NoTimes).
	times bool
}

// textJobs returns the jobs that read segment r's events of list
// (ascending), or when list is nil its events of [lo, hi): one per group
// (v3 and later) or block (v2) holding some that keep (when not nil)
// does not refuse by its time range, as textReader.events reads them;
// a v5 group's events that hold more than jobBytes (when not 0) of text
// are read in parts of consecutive events that hold about as much.
func textJobs(r *segmentReader, lo, hi int, list []int32, keep func(minT, maxT int64) bool, noBodies bool, st *segText, jobBytes int64) []*textJob {
	m := &r.meta
	type unit struct {
		first, count int
		minT, maxT   int64
		raw          int64
	}
	var units []unit
	if m.Version < 3 {
		for _, b := range m.Blocks {
			units = append(units, unit{b.First, b.Count, b.MinTime, b.MaxTime, b.RawBytes})
		}
	} else {
		for _, g := range m.Groups {
			units = append(units, unit{g.First, g.Count, g.MinTime, g.MaxTime, g.RawBytes})
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
		n := end - first
		if list != nil {
			n = len(in)
		}
		// The events' share of the unit's text: every event is the
		// average size as far as the meta knows.
		est := u.raw * int64(n) / int64(max(u.count, 1))
		if m.Version < 5 || jobBytes <= 0 || est <= jobBytes {
			jobs = append(jobs, &textJob{r: r, lo: first, hi: end, want: in, noBodies: noBodies, seg: st, est: est})
			continue
		}
		parts := int(min((est+jobBytes-1)/jobBytes, int64(n)))
		whole := &wholeGroup{lo: first, hi: end, want: in}
		for k := range parts {
			a, b := k*n/parts, (k+1)*n/parts
			j := &textJob{r: r, lo: first + a, hi: first + b, noBodies: noBodies, seg: st, est: est * int64(b-a) / int64(n)}
			if list != nil {
				j.want = in[a:b:b]
				j.lo, j.hi = int(in[a]), int(in[b-1])+1
			}
			j.inParts = true
			if k == 0 {
				j.whole = whole
			}
			jobs = append(jobs, j)
		}
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
	a.limit(r.textLimits)
	r.textSlots = nil
	r.lag = true
	defer func() {
		var n int64
		r.textSlots, n = a.stop()
		r.textRead += n
		r.textPeak = a.peak
		r.lag = false
		r.release(r.prev)
		r.prev = nil
	}()
	noBodies := sel.NoBodies && !p.residual
	needEvent := sel.NeedEvent || p.residual
	// Only groups whose events are decoded are read in parts: the
	// decoding costs 40 times the opening of the blocks again.
	var jobBytes int64
	if needEvent {
		jobBytes = a.jobBytes
	}
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
				return r.planText(s, p, lo, hi, noBodies, sel.NoTimes, needEvent, jobBytes)
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
		give := func(k int, ev *audit.Event) error {
			i := int(sl.ords[k])
			cluster := st.cd.values[st.cl[i]]
			h := Hit{Cluster: cluster, Raw: sl.raws[k], seg: s, r: r, ord: i}
			if st.times {
				h.Time, h.Received = s.times[i], s.recvs[i]
			}
			if ev != nil {
				if p.full != nil && p.residual && !p.full.Match(ev, cluster) {
					return nil
				}
				h.Event = ev
			}
			return fn(&h)
		}
		if needEvent {
			return a.decoded(j, give)
		}
		for k := range sl.ords {
			if err := give(k, nil); err != nil {
				return err
			}
		}
		return nil
	})
}

// planText reads what segment s's hits need from its columns, as
// selectSegment does, and returns the jobs that read its candidates'
// text (none when no event of s may match).
func (r *Reader) planText(s *segView, p *plan, lo, hi int64, noBodies, noTimes, decode bool, jobBytes int64) ([]*textJob, error) {
	c, skip, err := r.candidates(s, p, lo, hi, false)
	if err != nil || skip {
		return nil, err
	}
	// The jobs' own list: the reader's is the next segment's.
	var list []int32
	if !c.all {
		list = append([]int32(nil), c.list...)
	}
	st := &segText{s: s, times: !noTimes}
	if st.times {
		if err := r.timeCols(s); err != nil {
			return nil, err
		}
	}
	if st.cl, err = r.colIDs(s, ColCluster); err != nil {
		return nil, err
	}
	if st.cd, err = r.dict(s, ColCluster); err != nil {
		return nil, err
	}
	var ids idsFunc
	jobs := textJobs(s.r, 0, s.r.meta.Count, list, nil, noBodies, st, jobBytes)
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
// them, each group whole (Scan decodes no event: aheadJobBytes), and
// reads the columns their entries need unless run has no event to read.
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
		for _, j := range textJobs(r, lo, hi, nil, keep, false, nil, 0) {
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
