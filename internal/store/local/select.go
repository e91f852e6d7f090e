package local

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/kubetrail/kubetrail/internal/audit"
	"github.com/kubetrail/kubetrail/internal/query"
	"github.com/kubetrail/kubetrail/internal/wal"
)

// Reader is a read-only view of a data folder as it was when opened: its
// sealed segments and the events still in its WAL. It works beside a
// running writer: it takes no write lock, only a shared lock on the
// segments folder while it lists and opens the segments, and it keeps
// reading the segments it opened after compaction or retention deletes
// them. Events stored after it was opened are not in it. A Reader is not
// safe for concurrent use.
type Reader struct {
	segs []*segView
	head []headEvent
	dec  *zstd.Decoder
}

type segView struct {
	r     *segmentReader
	cols  [NumColumns]*ColumnData
	times []int64
	recvs []int64
}

// headEvent is an event still in the WAL. It is decoded only when a query
// needs it; its column values come from what the committer built at ingest
// when the reader was opened by DB.OpenReader.
type headEvent struct {
	cluster        string
	time, received int64
	raw            []byte
	ev             *audit.Event // nil until decoded
	mem            *memCols     // nil when the columns were not at hand
	ord            int          // the event's index in mem
}

// event returns the event decoded, decoding it on first use.
func (h *headEvent) event() (*audit.Event, error) {
	if h.ev == nil {
		ev := new(audit.Event)
		if err := audit.DecodeStored(h.raw, ev); err != nil {
			return nil, fmt.Errorf("event in the WAL: %w", err)
		}
		h.ev = ev
	}
	return h.ev, nil
}

// OpenReader opens a data folder for reading. The events still in the WAL
// are read but not decoded: a query decodes those it needs. In the process
// that holds the folder open, DB.OpenReader is cheaper still.
func OpenReader(dir string) (*Reader, error) {
	return openReader(dir, nil)
}

// openReader opens a reader; walCols, when not nil, gives the column
// values built at ingest of a WAL segment's first events.
func openReader(dir string, walCols func(seq uint64) *memCols) (*Reader, error) {
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("data folder: %w", err)
	}
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
	if err != nil {
		return nil, err
	}
	r := &Reader{dec: dec}
	if err := r.load(dir, walCols); err != nil {
		r.Close()
		dec.Close()
		return nil, err
	}
	return r, nil
}

func (r *Reader) load(dir string, walCols func(seq uint64) *memCols) error {
	walPath := filepath.Join(dir, walDir)
	segPath := filepath.Join(dir, segmentDir)
	// The WAL first: a WAL segment sealed after this listing is read from
	// the WAL, or, once its file is gone, from the segment that holds it,
	// which is not among those listed next.
	walSegs, err := wal.ListSegments(walPath)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	segs, err := openSnapshot(segPath)
	if err != nil {
		return err
	}
	// Every segment goes in r.segs at once, so Close closes them all
	// whatever fails next.
	for _, s := range segs {
		r.segs = append(r.segs, &segView{r: s.r})
	}
	// The events' bytes go into large shared buffers, not one each.
	var arena []byte
	add := func(e entry) error {
		if len(arena)+len(e.raw) > cap(arena) {
			arena = make([]byte, 0, max(4<<20, len(e.raw)))
		}
		start := len(arena)
		arena = append(arena, e.raw...)
		r.head = append(r.head, headEvent{cluster: e.cluster, time: e.time, received: e.received, raw: arena[start:len(arena):len(arena)]})
		return nil
	}
	for _, src := range sources(segs, walSegs) {
		if src.seg != nil {
			continue
		}
		first := len(r.head)
		_, _, err := wal.Scan(wal.SegmentPath(walPath, src.wal), func(p []byte) error {
			return decodeBatch(p, add)
		})
		if errors.Is(err, os.ErrNotExist) {
			err = readSealed(segPath, src.wal, func(sr *segmentReader, lo, hi int) error {
				return sr.scanRange(r.dec, lo, hi, nil, add)
			})
		} else if err == nil && walCols != nil {
			// Taken after the WAL was read, so it covers every event
			// read that was durable; those past it are decoded if needed.
			if m := walCols(src.wal); m != nil {
				r.attach(r.head[first:], m)
			}
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// attach gives a WAL segment's events, in WAL order, the column values
// built at ingest. The event times must agree: they cannot unless the WAL
// was cut back after a failed write, and then nothing is attached.
func (r *Reader) attach(head []headEvent, m *memCols) {
	n := min(len(head), m.n)
	for i := 0; i < n; i++ {
		if m.times[i] != head[i].time {
			return
		}
	}
	for i := 0; i < n; i++ {
		head[i].mem, head[i].ord = m, i
	}
}

// Close releases the reader's files.
func (r *Reader) Close() error {
	for _, s := range r.segs {
		s.r.close()
	}
	r.segs = nil
	return nil
}

// Count returns the number of events in the view.
func (r *Reader) Count() int {
	n := len(r.head)
	for _, s := range r.segs {
		n += s.r.meta.Count
	}
	return n
}

// column returns a column with its ids.
func (s *segView) column(dec *zstd.Decoder, c Column) (*ColumnData, error) {
	cd, err := s.dict(dec, c)
	if err != nil {
		return nil, err
	}
	if cd.IDs == nil {
		if err := s.r.readIDs(dec, c, cd); err != nil {
			return nil, fmt.Errorf("%s: %w", s.r.f.Name(), err)
		}
	}
	return cd, nil
}

// dict returns a column with at least its dictionary.
func (s *segView) dict(dec *zstd.Decoder, c Column) (*ColumnData, error) {
	if s.cols[c] == nil {
		cd, err := s.r.readDict(dec, c)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s.r.f.Name(), err)
		}
		s.cols[c] = cd
	}
	return s.cols[c], nil
}

func (s *segView) timeCols(dec *zstd.Decoder) error {
	if s.times != nil {
		return nil
	}
	var err error
	if s.times, err = s.r.readTimes(dec, s.r.meta.Time); err != nil {
		return err
	}
	s.recvs, err = s.r.readTimes(dec, s.r.meta.Received)
	return err
}

// Selection says which events Select returns.
type Selection struct {
	// Filter selects events; nil selects all.
	Filter *query.Filter
	// Since and Until bound the event time in unix microseconds (Since
	// inclusive, Until exclusive); 0 leaves a side open.
	Since, Until int64
	// NeedEvent makes every Hit carry the event and its stored bytes; without
	// it, hits that the columns alone decided carry only column values.
	NeedEvent bool
}

// Hit is one selected event. Its slices are valid only during the callback.
type Hit struct {
	Cluster        string
	Time, Received int64
	// Raw and Event are set when the selection needed the event (NeedEvent,
	// or a filter the columns could not decide).
	Raw   []byte
	Event *audit.Event
	seg   *segView
	head  *headEvent
	r     *Reader
	ord   int
	vals  *colRow // the event's column values, computed once when asked
}

// Column returns a column value of the hit, from the columns or the event.
func (h *Hit) Column(c Column) string {
	if h.seg != nil {
		if cd, err := h.seg.column(h.r.dec, c); err == nil {
			return cd.Values[cd.IDs[h.ord]]
		}
	}
	ev := h.Event
	if h.head != nil {
		if h.head.mem != nil {
			return h.head.mem.value(c, h.head.ord)
		}
		if ev == nil {
			// A WAL event the selection did not need decoded. It was
			// decoded once at ingest, so this cannot fail but for a bug.
			ev, _ = h.head.event()
		}
	}
	if ev != nil {
		if h.vals == nil {
			h.vals = new(colRow)
			columnValues(h.Cluster, ev, h.vals)
		}
		return h.vals[c]
	}
	return ""
}

// plan is a filter cut into what the columns can decide and what needs
// the event.
type plan struct {
	full     *query.Filter
	colTerms []colTerm
	timeTerm []*query.Filter // conjuncts on time only
	residual bool            // some conjunct needs the whole event
}

type colTerm struct {
	col Column
	f   *query.Filter
	// vals, when set, are the only values the column may hold for the
	// term to match (from = and in), for the Bloom filters.
	vals []string
}

// columnOf maps a filter field to the column that holds it.
var columnOf = map[string]Column{
	"cluster": ColCluster, "user": ColUser, "group": ColGroups, "as": ColAs, "verb": ColVerb,
	"resource": ColResource, "subresource": ColSubresource, "ns": ColNamespace, "name": ColName,
	"apigroup": ColAPIGroup, "apiversion": ColAPIVersion, "code": ColCode, "level": ColLevel,
	"stage": ColStage, "ip": ColSourceIPs, "peer": ColSourceIPs, "ua": ColUserAgent,
	"decision": ColDecision, "reason": ColReason, "status": ColStatus,
}

func makePlan(f *query.Filter) (*plan, error) {
	p := &plan{full: f}
	if f == nil {
		return p, nil
	}
	for _, conj := range f.Conjuncts() {
		fieldsIn := map[string]bool{}
		text := false
		query.Walk(conj, func(e query.Expr) bool {
			switch e := e.(type) {
			case *query.Cmp:
				fieldsIn[e.Field.Name] = true
			case *query.Text:
				text = true
			}
			return true
		})
		sub, err := query.CompileExpr(conj, f.Now())
		if err != nil {
			return nil, err
		}
		if !text && len(fieldsIn) == 1 {
			for name := range fieldsIn {
				if c, ok := columnOf[name]; ok {
					t := colTerm{col: c, f: sub}
					if c != ColGroups && c != ColSourceIPs && name != "cluster" {
						if vals, ok := query.RequiredValues(conj, query.Field{Name: name}); ok {
							t.vals = vals
						}
					}
					p.colTerms = append(p.colTerms, t)
					continue
				}
				// The time column holds each event's time. "received" is
				// the event's requestReceivedTimestamp, which no column
				// holds (the received column is when kubetrail got it).
				if name == "time" {
					p.timeTerm = append(p.timeTerm, sub)
					continue
				}
				p.residual = true
			}
			continue
		}
		p.residual = true
	}
	return p, nil
}

// eventWith builds an event holding only one column's value, to test a
// single-field condition against a dictionary value.
func eventWith(c Column, v string, ev *audit.Event) (cluster string) {
	*ev = audit.Event{}
	split := func() []string {
		if v == "" {
			return nil
		}
		return strings.Split(v, ListSep)
	}
	ref := func() *audit.ObjectReference {
		if ev.ObjectRef == nil {
			ev.ObjectRef = &audit.ObjectReference{}
		}
		return ev.ObjectRef
	}
	switch c {
	case ColCluster:
		return v
	case ColUser:
		ev.User.Username = v
	case ColGroups:
		ev.User.Groups = split()
	case ColAs:
		if v != "" {
			ev.ImpersonatedUser = &audit.UserInfo{Username: v}
		}
	case ColVerb:
		ev.Verb = v
	case ColResource:
		ref().Resource = v
	case ColSubresource:
		ref().Subresource = v
	case ColNamespace:
		ref().Namespace = v
	case ColName:
		ref().Name = v
	case ColAPIGroup:
		ref().APIGroup = v
	case ColAPIVersion:
		ref().APIVersion = v
	case ColCode:
		if n, err := strconv.Atoi(v); err == nil {
			ev.ResponseStatus = &audit.Status{Code: int32(n)}
		}
	case ColLevel:
		ev.Level = audit.Level(v)
	case ColStage:
		ev.Stage = audit.Stage(v)
	case ColSourceIPs:
		ev.SourceIPs = split()
	case ColUserAgent:
		ev.UserAgent = v
	case ColDecision:
		if v != "" {
			ev.Annotations = map[string]string{"authorization.k8s.io/decision": v}
		}
	case ColReason:
		ev.ResponseStatus = &audit.Status{Reason: v}
	case ColStatus:
		ev.ResponseStatus = &audit.Status{Status: v}
	}
	return ""
}

// bounds returns the time bounds of a selection, its filter's included.
func bounds(sel Selection) (lo, hi int64) {
	lo, hi = sel.Since, sel.Until
	if sel.Filter != nil {
		from, to := sel.Filter.TimeRange()
		if !from.IsZero() && (lo == 0 || from.UnixMicro() > lo) {
			lo = from.UnixMicro()
		}
		if !to.IsZero() && (hi == 0 || to.UnixMicro()+1 < hi) {
			hi = to.UnixMicro() + 1
		}
	}
	return lo, hi
}

func (s *segView) outside(lo, hi int64) bool {
	return (lo != 0 && s.r.meta.MaxTime < lo) || (hi != 0 && s.r.meta.MinTime >= hi)
}

// Select calls fn for every selected event: sealed segments in arrival
// order, then the WAL's. It decides what it can from the columns, reading
// an event's text only when the filter or the caller needs it.
func (r *Reader) Select(sel Selection, fn func(*Hit) error) error {
	p, err := makePlan(sel.Filter)
	if err != nil {
		return err
	}
	lo, hi := bounds(sel)
	for _, s := range r.segs {
		if s.outside(lo, hi) {
			continue
		}
		if err := r.selectSegment(s, p, sel, lo, hi, fn); err != nil {
			return err
		}
	}
	return r.selectHead(p, sel, lo, hi, fn)
}

// selectHead selects among the events still in the WAL. Those with column
// values from ingest are decided like a segment's, testing each value once;
// the others are decoded.
func (r *Reader) selectHead(p *plan, sel Selection, lo, hi int64, fn func(*Hit) error) error {
	m := headMatcher{p: p}
	for i := range r.head {
		h := &r.head[i]
		if (lo != 0 && h.time < lo) || (hi != 0 && h.time >= hi) {
			continue
		}
		if p.full != nil {
			if h.mem != nil && !p.residual {
				if !m.match(h) {
					continue
				}
			} else {
				ev, err := h.event()
				if err != nil {
					return err
				}
				if !p.full.Match(ev, h.cluster) {
					continue
				}
			}
		}
		if (sel.NeedEvent || p.residual) && h.ev == nil {
			if _, err := h.event(); err != nil {
				return err
			}
		}
		hit := Hit{Cluster: h.cluster, Time: h.time, Received: h.received, Raw: h.raw, Event: h.ev, head: h, r: r}
		if err := fn(&hit); err != nil {
			return err
		}
	}
	return nil
}

// headMatcher decides a plan without a residual on WAL events that have
// column values, testing each dictionary value of a WAL segment once.
type headMatcher struct {
	p *plan
	// oks holds, per WAL segment's columns, per column term, per value
	// id: 0 not tested yet, 1 matches, -1 does not.
	oks   map[*memCols][][]int8
	probe audit.Event
}

func (m *headMatcher) match(h *headEvent) bool {
	oks := m.oks[h.mem]
	if oks == nil {
		oks = make([][]int8, len(m.p.colTerms))
		for ti, t := range m.p.colTerms {
			oks[ti] = make([]int8, len(h.mem.vals[t.col]))
		}
		if m.oks == nil {
			m.oks = map[*memCols][][]int8{}
		}
		m.oks[h.mem] = oks
	}
	for ti, t := range m.p.colTerms {
		id := h.mem.ids[t.col][h.ord]
		ok := oks[ti][id]
		if ok == 0 {
			cluster := eventWith(t.col, h.mem.vals[t.col][id], &m.probe)
			ok = -1
			if t.f.Match(&m.probe, cluster) {
				ok = 1
			}
			oks[ti][id] = ok
		}
		if ok < 0 {
			return false
		}
	}
	for _, tf := range m.p.timeTerm {
		m.probe = audit.Event{StageTimestamp: audit.MicroTime{Time: microTime(h.time)}}
		if !tf.Match(&m.probe, "") {
			return false
		}
	}
	return true
}

// candidates narrows a segment's events with the columns: cand[i] says
// event i may match (nil with all set: every event may). skip means none can.
func (r *Reader) candidates(s *segView, p *plan, lo, hi int64) (cand []bool, all, skip bool, err error) {
	n := s.r.meta.Count
	// cand[i] says event i may still match.
	all = true
	restrict := func(keep func(i int) bool) {
		if cand == nil {
			cand = make([]bool, n)
			for i := range cand {
				cand[i] = true
			}
		}
		for i := range cand {
			if cand[i] && !keep(i) {
				cand[i] = false
			}
		}
		all = false
	}
	// First the dictionaries, smallest first: a segment none of whose
	// values can match one condition is skipped before any ids are read.
	var probe audit.Event
	terms := append([]colTerm(nil), p.colTerms...)
	sort.SliceStable(terms, func(i, j int) bool {
		return s.r.meta.Columns[terms[i].col].DictLen < s.r.meta.Columns[terms[j].col].DictLen
	})
	// Bloom filters first: no dictionary is read for a value the segment
	// cannot hold.
	for _, t := range terms {
		if t.vals == nil || s.cols[t.col] != nil {
			continue
		}
		bf, err := s.r.readBloom(t.col)
		if err != nil {
			return nil, false, false, err
		}
		if bf == nil {
			continue
		}
		maybe := false
		for _, v := range t.vals {
			if bf.mayContain(v) {
				maybe = true
				break
			}
		}
		if !maybe {
			return nil, false, true, nil
		}
	}
	oks := make([][]bool, len(terms))
	for ti, t := range terms {
		cd, err := s.dict(r.dec, t.col)
		if err != nil {
			return nil, false, false, err
		}
		ok := make([]bool, len(cd.Values))
		any, everything := false, true
		if t.vals != nil {
			// Only these values can match: find them in the sorted
			// dictionary instead of testing every value.
			everything = false
			for _, v := range t.vals {
				id := sort.SearchStrings(cd.Values, v)
				if id < len(cd.Values) && cd.Values[id] == v {
					cluster := eventWith(t.col, v, &probe)
					ok[id] = t.f.Match(&probe, cluster)
					any = any || ok[id]
				}
			}
		} else {
			for id, v := range cd.Values {
				cluster := eventWith(t.col, v, &probe)
				ok[id] = t.f.Match(&probe, cluster)
				any = any || ok[id]
				everything = everything && ok[id]
			}
		}
		if !any {
			return nil, false, true, nil // no value in this segment can match
		}
		if everything {
			ok = nil // every event passes: no need to read the ids
		}
		oks[ti] = ok
	}
	// Then the ids, the condition that keeps the smallest share of the
	// dictionary first (name=x before verb=delete), stopping as soon as no
	// event is left: a rare name spares reading the other columns' ids.
	order := make([]int, 0, len(terms))
	share := make([]float64, len(terms))
	for ti, ok := range oks {
		if ok == nil {
			continue
		}
		kept := 0
		for _, b := range ok {
			if b {
				kept++
			}
		}
		share[ti] = float64(kept) / float64(len(ok))
		order = append(order, ti)
	}
	sort.SliceStable(order, func(a, b int) bool { return share[order[a]] < share[order[b]] })
	for _, ti := range order {
		ok := oks[ti]
		cd, err := s.column(r.dec, terms[ti].col)
		if err != nil {
			return nil, false, false, err
		}
		restrict(func(i int) bool { return ok[cd.IDs[i]] })
		if !slices.Contains(cand, true) {
			return nil, false, true, nil
		}
	}
	if lo != 0 || hi != 0 || len(p.timeTerm) > 0 {
		if err := s.timeCols(r.dec); err != nil {
			return nil, false, false, err
		}
	}
	if lo != 0 || hi != 0 {
		restrict(func(i int) bool { t := s.times[i]; return (lo == 0 || t >= lo) && (hi == 0 || t < hi) })
	}
	for _, tf := range p.timeTerm {
		restrict(func(i int) bool {
			probe = audit.Event{StageTimestamp: audit.MicroTime{Time: microTime(s.times[i])}}
			return tf.Match(&probe, "")
		})
	}
	return cand, all, false, nil
}

func (r *Reader) selectSegment(s *segView, p *plan, sel Selection, lo, hi int64, fn func(*Hit) error) error {
	n := s.r.meta.Count
	cand, all, skip, err := r.candidates(s, p, lo, hi)
	if err != nil || skip {
		return err
	}
	if err := s.timeCols(r.dec); err != nil {
		return err
	}
	cl, err := s.column(r.dec, ColCluster)
	if err != nil {
		return err
	}
	needEvent := sel.NeedEvent || p.residual
	if !needEvent {
		for i := 0; i < n; i++ {
			if !all && !cand[i] {
				continue
			}
			h := Hit{Cluster: cl.Values[cl.IDs[i]], Time: s.times[i], Received: s.recvs[i], seg: s, r: r, ord: i}
			if err := fn(&h); err != nil {
				return err
			}
		}
		return nil
	}
	// Read the blocks that hold candidates, and check the whole filter on
	// each candidate's event.
	var comp, plain []byte
	var ev audit.Event
	for _, b := range s.r.meta.Blocks {
		if !all {
			found := false
			for i := b.First; i < b.First+b.Count; i++ {
				if cand[i] {
					found = true
					break
				}
			}
			if !found {
				continue
			}
		}
		if int64(cap(comp)) < b.Len {
			comp = make([]byte, b.Len)
		}
		comp = comp[:b.Len]
		if _, err := s.r.f.ReadAt(comp, b.Off); err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("read block: %w", err)
		}
		if plain, err = r.dec.DecodeAll(comp, plain[:0]); err != nil {
			return fmt.Errorf("decompress block: %w", err)
		}
		rest := plain
		for i := b.First; i < b.First+b.Count; i++ {
			nl := bytes.IndexByte(rest, '\n')
			if nl < 0 {
				return fmt.Errorf("%s: block at %d is cut short", s.r.f.Name(), b.Off)
			}
			raw := rest[:nl]
			rest = rest[nl+1:]
			if !all && !cand[i] {
				continue
			}
			if err := audit.DecodeStored(raw, &ev); err != nil {
				return err
			}
			cluster := cl.Values[cl.IDs[i]]
			if p.full != nil && !p.full.Match(&ev, cluster) {
				continue
			}
			h := Hit{Cluster: cluster, Time: s.times[i], Received: s.recvs[i], Raw: raw, Event: &ev, seg: s, r: r, ord: i}
			if err := fn(&h); err != nil {
				return err
			}
		}
	}
	return nil
}

func microTime(us int64) time.Time { return time.UnixMicro(us).UTC() }

// CountMatching returns how many events the selection selects, reading
// only what it must: columns when they decide the filter, events otherwise.
func (r *Reader) CountMatching(sel Selection) (int64, error) {
	p, err := makePlan(sel.Filter)
	if err != nil {
		return 0, err
	}
	sel.NeedEvent = false
	if p.residual {
		var n int64
		err := r.Select(sel, func(*Hit) error { n++; return nil })
		return n, err
	}
	lo, hi := bounds(sel)
	var n int64
	for _, s := range r.segs {
		if s.outside(lo, hi) {
			continue
		}
		cand, all, skip, err := r.candidates(s, p, lo, hi)
		if err != nil {
			return 0, err
		}
		switch {
		case skip:
		case all:
			n += int64(s.r.meta.Count)
		default:
			for _, c := range cand {
				if c {
					n++
				}
			}
		}
	}
	head := &Reader{head: r.head, dec: r.dec}
	err = head.Select(sel, func(*Hit) error { n++; return nil })
	return n, err
}
