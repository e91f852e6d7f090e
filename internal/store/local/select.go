package local

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/kubetrail/kubetrail/internal/audit"
	"github.com/kubetrail/kubetrail/internal/query"
	"github.com/kubetrail/kubetrail/internal/vfs"
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
	// head is the events still in the WAL, in runs that share columns;
	// a DB's readers share the runs (walHeads): they are read only.
	head []headChunk
	// decoded holds the head events the reader decoded.
	decoded map[*headEvent]*audit.Event
	dec     *zstd.Decoder
	text    *textReader
	// cur is the segment whose decoded columns are held (see use); the
	// free lists keep the buffers of those released. With lag
	// (SelectFilters), prev's are held too: its caller still reads them
	// while the next segment is made ready.
	cur, prev *segView
	lag       bool
	freeIDs   [][]uint32
	freeTimes [][]int64
	freeLens  []uint32
	chunkBuf  []byte
	sc        scratch
	list      []int32 // candidates of the segment at hand
	plist     []int32 // postings being intersected
	// terms, evals and probe are candidates' per segment, kept for the
	// next.
	terms []colTerm
	evals []termEval
	probe audit.Event
	// colErr is the first error Hit.Column met during a Select.
	colErr error
	// fl is the floors of the Select under way (Hit.Floor).
	fl floorState
	// one reads single events' text, and whole holds the event decoded,
	// for Hit.Load; one has its own decoder, as Load runs while
	// SelectFilters reads the next segment's columns with dec.
	one   *oneText
	whole audit.Event
	// aheadText are the text readers of SelectFilters' read-ahead
	// workers, each with its own decoder.
	aheadText []*oneText
	// textSlots are Select's read-ahead text readers (textAhead), kept
	// with their buffers from one Select to the next; textWorkers is how
	// many goroutines read ahead: 0 for GOMAXPROCS, 1 for none (the
	// caller reads each group when it comes to it).
	textSlots   []*textSlot
	textWorkers int
	// textRead counts the jobs the read-ahead read, textPeak is what the
	// last one held at most, and textLimits replace its limits: for tests.
	textRead   int64
	textPeak   aheadPeak
	textLimits aheadLimits
	// damage is what the reader skipped (see Damaged).
	damage damageList
	// segCache, for a reader of a DB, shares its segments with the DB's
	// other readers.
	segCache *segCache
}

// headEvent is an event still in the WAL. It is decoded only when a query
// needs it; its column values come from what the committer built at ingest
// when the reader was opened by DB.OpenReader.
type headEvent struct {
	cluster        string
	time, received int64
	raw            []byte
	ord            int // the event's index in its WAL segment, and in its columns
}

// headChunk is a run of events of one WAL segment.
type headChunk struct {
	// wal is the WAL segment's sequence number: where the run goes among
	// the segments in the stored order (inStoredOrder).
	wal    uint64
	events []headEvent
	// mem holds the column values of the events whose ord is below
	// mem.n; nil when the columns were not at hand.
	mem *memCols
}

// cols returns the column values of h, an event of the chunk, or nil.
func (c *headChunk) cols(h *headEvent) *memCols {
	if c.mem != nil && h.ord < c.mem.n {
		return c.mem
	}
	return nil
}

// headEvent returns h decoded, decoding it on first use. The event is
// kept by the reader, not in h, which a DB's readers share.
func (r *Reader) headEvent(h *headEvent) (*audit.Event, error) {
	if ev := r.decoded[h]; ev != nil {
		return ev, nil
	}
	ev := new(audit.Event)
	if err := audit.DecodeStored(h.raw, ev); err != nil {
		return nil, fmt.Errorf("event in the WAL: %w", err)
	}
	if r.decoded == nil {
		r.decoded = map[*headEvent]*audit.Event{}
	}
	r.decoded[h] = ev
	return ev, nil
}

// OpenReader opens a data folder for reading. The events still in the WAL
// are read but not decoded: a query decodes those it needs. In the process
// that holds the folder open, DB.OpenReader is cheaper still.
func OpenReader(dir string) (*Reader, error) {
	return openReader(vfs.OS, dir, nil, nil)
}

// OpenReaderFS is OpenReader on a folder in fs.
func OpenReaderFS(fs vfs.FS, dir string) (*Reader, error) {
	return openReader(fs, dir, nil, nil)
}

// openReader opens a reader; db, when not nil, gives the WAL files'
// decoded prefixes and the column values built at ingest of their events,
// and cache, when not nil, the segments the DB's readers share.
func openReader(fs vfs.FS, dir string, db *DB, cache *segCache) (*Reader, error) {
	if db == nil {
		// A DB holds its folder, which exists.
		if _, err := fs.Stat(dir); err != nil {
			return nil, fmt.Errorf("data folder: %w", err)
		}
	}
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
	if err != nil {
		return nil, err
	}
	r := &Reader{dec: dec, text: newTextReader(dec), segCache: cache}
	if err := r.load(fs, dir, db); err != nil {
		r.Close()
		dec.Close()
		return nil, err
	}
	return r, nil
}

// Damaged returns what the reader left out of every answer: damaged WAL
// records, segments listed in the manifest that are missing, and files
// kept in the quarantine folder, as "PATH: reason". A command that answered from a
// reader with damage must print each on stderr and exit 3. Damage found
// while reading a segment is not skipped: it fails the call that met it
// with a *SegmentError naming the file and the part.
func (r *Reader) Damaged() []Damage { return r.damage.all() }

func (r *Reader) load(fs vfs.FS, dir string, db *DB) error {
	walPath := filepath.Join(dir, walDir)
	segPath := filepath.Join(dir, segmentDir)
	var v *folderView
	var err error
	if db != nil {
		v, err = db.takeView()
	} else {
		v, err = readFolder(fs, dir, nil)
	}
	if err != nil {
		return err
	}
	segs, walSegs := v.segs, v.walSegs
	for _, d := range v.damage {
		r.damage.add(d.Path, d.Reason)
	}
	// Every segment goes in r.segs at once, so Close closes them all
	// whatever fails next. One allocation for all: one per segment was
	// half of opening a DB's reader once it stopped listing the folder.
	views := make([]segView, len(segs))
	r.segs = make([]*segView, len(segs))
	for i, s := range segs {
		views[i].r = s.r
		r.segs[i] = &views[i]
	}
	// The events' bytes go into large shared buffers, not one each.
	var arena []byte
	var run []headEvent
	add := func(e entry) error {
		if len(arena)+len(e.raw) > cap(arena) {
			arena = make([]byte, 0, max(4<<20, len(e.raw)))
		}
		start := len(arena)
		arena = append(arena, e.raw...)
		run = append(run, headEvent{cluster: e.cluster, time: e.time, received: e.received, raw: arena[start:len(arena):len(arena)], ord: len(run)})
		return nil
	}
	newest := uint64(0)
	if len(walSegs) > 0 {
		newest = walSegs[len(walSegs)-1]
	}
	for _, src := range sources(segs, walSegs) {
		if src.seg != nil {
			continue
		}
		path := wal.SegmentPath(walPath, src.wal)
		if db != nil {
			if db.durableEnd(src.wal) <= int64(len(wal.Magic)) {
				// No durable record yet (the open segment of an idle
				// store): nothing a DB's reader may read, and no stat.
				continue
			}
		} else if st, err := fs.Stat(path); err == nil && st.Size() <= int64(len(wal.Magic)) {
			// No record yet (the open segment of an idle store): skip the
			// scan and its 1 MiB read buffer, a tenth of a query's time.
			continue
		}
		var err error
		run = nil
		if db != nil {
			err = r.loadShared(fs, db, path, src.wal, src.wal == newest)
		} else {
			_, err = scanWAL(fs, path, src.wal == newest, &r.damage, add)
		}
		if errors.Is(err, os.ErrNotExist) {
			db.dropHead(path)
			run = nil
			err = readSealed(fs, segPath, src.wal, func(sr *segmentReader, lo, hi int) error {
				return sr.scanRange(r.dec, lo, hi, nil, add)
			})
		}
		if err != nil {
			return err
		}
		if len(run) > 0 {
			r.head = append(r.head, headChunk{wal: src.wal, events: run})
		}
	}
	return nil
}

// loadShared reads WAL segment seq at path through the DB's decoded
// prefixes, with the columns built at ingest. The events' times must agree
// with the columns': they cannot unless the WAL was cut back after a failed
// write, and then the events are decoded when needed. (After damage the
// columns no longer line up with the records read: likewise.)
func (r *Reader) loadShared(fs vfs.FS, db *DB, path string, seq uint64, newest bool) error {
	// The durable end before the read, the columns after: the columns
	// cover every event kept.
	limit := db.durableEnd(seq)
	var m *memCols
	cols := func() *memCols {
		m = db.walColumns(seq)
		return m
	}
	prefix, tail, _, colsOK, err := db.heads.read(fs, path, newest, limit, &r.damage, cols)
	if err != nil {
		return err
	}
	if !colsOK {
		m = nil
	}
	for _, run := range [][]headEvent{prefix, tail} {
		if len(run) > 0 {
			r.head = append(r.head, headChunk{wal: seq, events: run, mem: m})
		}
	}
	return nil
}

// headOnly returns a reader of the events still in the WAL alone, that
// keeps what it decodes in r.
func (r *Reader) headOnly() *Reader {
	if r.decoded == nil {
		r.decoded = map[*headEvent]*audit.Event{}
	}
	return &Reader{head: r.head, dec: r.dec, decoded: r.decoded}
}

// headLen returns the number of events still in the WAL.
func (r *Reader) headLen() int {
	n := 0
	for _, c := range r.head {
		n += len(c.events)
	}
	return n
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
	n := r.headLen()
	for _, s := range r.segs {
		n += s.r.meta.Count
	}
	return n
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
	// NeedRaw makes every Hit carry its stored bytes; the event is decoded
	// only when NeedEvent or the filter asks for it (printing -o jsonl
	// needs the bytes alone).
	NeedRaw bool
	// NoBodies says the caller reads no request or response body (an
	// investigation's metadata): events of v5 segments may then come
	// without them (nil in Event, null in Raw), their bodies never
	// decompressed. A filter the columns cannot decide (one on the
	// bodies, say) still sees the whole event.
	NoBodies bool
	// NoTimes says the caller reads neither Hit.Time nor Hit.Received
	// (an investigation, whose times are the events' own): a segment's
	// time columns are then not decoded for the hits, which come with
	// both 0. Bounds (Since, Until) and time terms still apply.
	NoTimes bool
}

// Hit is one selected event. Its slices are valid only during the
// callback, and Column may be called only then.
type Hit struct {
	Cluster        string
	Time, Received int64
	// Raw is set when the selection needed the event's bytes (NeedEvent,
	// NeedRaw, or a filter the columns could not decide), Event when it
	// needed the event (NeedEvent, or such a filter).
	Raw   []byte
	Event *audit.Event
	// Partial (SelectFilters) says Event holds only the fields Fields
	// names (filter-language names) and Raw is nil, until Load; Known
	// says per filter what the columns decided: 1 the event matches it,
	// -1 it does not, 0 only the event can tell.
	Partial bool
	Fields  []string
	Known   []int8
	ahead   *aheadSlot // what a read-ahead read of the event
	ready   *readySeg  // SelectFilters' segment of the event
	seg     *segView
	head    *headEvent
	hmem    *memCols // head's columns, or nil
	r       *Reader
	ord     int
	vals    *colRow // the event's column values, computed once when asked
	// groups is the groups column's value, when hasGroups (JoinedGroups).
	groups    string
	hasGroups bool
}

// Column returns a column value of the hit, from the columns or the event.
// A column that cannot be read (a damaged segment) gives "" and makes
// Select fail with its error as soon as the callback returns, so the
// value is never part of an answer; ColumnErr returns the error at once.
func (h *Hit) Column(c Column) string {
	v, err := h.ColumnErr(c)
	if err != nil && h.r != nil && h.r.colErr == nil {
		h.r.colErr = err
	}
	return v
}

// ColumnErr returns a column value of the hit, or why it cannot be read.
func (h *Hit) ColumnErr(c Column) (string, error) {
	if h.ready != nil {
		return "", errors.New("BUG: Column called on a hit of SelectFilters")
	}
	if h.seg != nil {
		return h.r.value(h.seg, c, h.ord)
	}
	ev := h.Event
	if h.head != nil {
		if h.hmem != nil {
			return h.hmem.value(c, h.head.ord), nil
		}
		if ev == nil {
			// A WAL event the selection did not need decoded.
			var err error
			if ev, err = h.r.headEvent(h.head); err != nil {
				return "", err
			}
		}
	}
	if ev == nil {
		return "", errors.New("BUG: a hit with neither columns nor event")
	}
	if h.vals == nil {
		h.vals = new(colRow)
		columnValues(h.Cluster, ev, h.vals)
	}
	return h.vals[c], nil
}

// plan is a filter cut into what the columns can decide and what needs
// the event.
type plan struct {
	full     *query.Filter
	colTerms []colTerm
	timeTerm []*query.Filter // conjuncts on time only
	residual bool            // some conjunct needs the whole event
	// auditIDs, when set, are the only audit IDs an event may hold to
	// match (a conjunct auditid="..."): the segments' audit ID tables
	// name the events to read (auditids.go). The conjunct stays a residual.
	auditIDs []string
	// anyOf are conjuncts that are disjunctions, each term a plan whose
	// candidates (colTerms, auditIDs) the segment answers: the union of
	// their candidates narrows the events to read, as
	// (code in (401,403) or decision=forbid) does. When no term has a
	// residual the union is exact and the conjunct is no residual;
	// otherwise it is checked on each event read.
	anyOf [][]*plan
	// rest are the conjuncts the columns do not decide (none without a
	// residual): an event the columns let through matches full exactly
	// when it matches them all (restFilter).
	rest []query.Expr
}

// restFilter is the conjunction of p's rest; only SelectFilters' keys
// need it compiled, not every plan.
func (p *plan) restFilter() (*query.Filter, error) {
	if len(p.rest) == 1 {
		return query.CompileExpr(p.rest[0], p.full.Now())
	}
	return query.CompileExpr(&query.And{Terms: p.rest}, p.full.Now())
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
				if vals, ok := query.RequiredValues(conj, query.Field{Name: "auditid"}); ok && name == "auditid" && p.auditIDs == nil {
					p.auditIDs = vals
				}
				p.residual = true
				p.rest = append(p.rest, conj)
			}
			continue
		}
		if or, ok := conj.(*query.Or); ok && !text {
			terms, err := orPlans(or, f)
			if err != nil {
				return nil, err
			}
			if terms != nil {
				p.anyOf = append(p.anyOf, terms)
				// The union of exact candidates is exact: the
				// columns decide the conjunct.
				if !slices.ContainsFunc(terms, func(tp *plan) bool { return tp.residual }) {
					continue
				}
			}
		}
		p.residual = true
		p.rest = append(p.rest, conj)
	}
	return p, nil
}

// orPlans returns the plans of a disjunction's terms, or nil when one of
// them narrows nothing (its candidates would be every event).
func orPlans(or *query.Or, f *query.Filter) ([]*plan, error) {
	var terms []*plan
	for _, e := range or.Terms {
		sub, err := query.CompileExpr(e, f.Now())
		if err != nil {
			return nil, err
		}
		tp, err := makePlan(sub)
		if err != nil {
			return nil, err
		}
		if len(tp.colTerms) == 0 && tp.auditIDs == nil && tp.anyOf == nil {
			return nil, nil
		}
		terms = append(terms, tp)
	}
	return terms, nil
}

// narrow returns the events of segment s that the plan's audit IDs and
// disjunctions leave, ascending, in a new slice; all when they leave every
// event (or the plan has neither).
func (r *Reader) narrow(s *segView, p *plan) (list []int32, all bool, err error) {
	all = true
	and := func(l []int32) {
		if all {
			list, all = l, false
			return
		}
		list = intersect(list, l)
	}
	if p.auditIDs != nil {
		t, err := s.r.readAuditTable(r.dec)
		if err != nil {
			return nil, false, err
		}
		if t != nil {
			and(t.lookup(p.auditIDs, nil))
		}
	}
	for _, terms := range p.anyOf {
		var union []int32
		every := false
		for _, tp := range terms {
			c, skip, err := r.candidates(s, tp, 0, 0, false)
			if err != nil {
				return nil, false, err
			}
			if skip {
				continue
			}
			if c.all {
				every = true
				break
			}
			union = append(union, c.list...)
		}
		if every {
			continue
		}
		slices.Sort(union)
		and(slices.Compact(union))
	}
	return list, all, nil
}

// eventWith builds an event holding only one column's value, to test a
// single-field condition against a dictionary value.
func eventWith(c Column, v string, ev *audit.Event) (cluster string) {
	*ev = audit.Event{}
	return setColumn(c, v, ev)
}

// setColumn sets the field of ev that column c holds to v, leaving the
// others as they are; for ColCluster it returns v instead.
func setColumn(c Column, v string, ev *audit.Event) (cluster string) {
	split := func() []string {
		if v == "" {
			return nil
		}
		return strings.Split(v, ListSep)
	}
	status := func() *audit.Status {
		if ev.ResponseStatus == nil {
			ev.ResponseStatus = &audit.Status{}
		}
		return ev.ResponseStatus
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
			status().Code = int32(n)
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
		status().Reason = v
	case ColStatus:
		status().Status = v
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

// inStoredOrder calls segs and head with the reader's segments and WAL
// events cut into runs, in the order the events were stored (by WAL
// sequence, Scan's and the positions' order): usually every segment, then
// the WAL's events. Sealers work concurrently, and a sealing that failed
// leaves its WAL segment until the next start, so a newer WAL segment can
// be sealed while an older one is still in the WAL; its segment then
// comes after the older one's events, not before.
func (r *Reader) inStoredOrder(segs func([]*segView) error, head func([]headChunk) error) error {
	i, j := 0, 0
	for i < len(r.segs) || j < len(r.head) {
		i0, j0 := i, j
		for i < len(r.segs) && (j == len(r.head) || r.segs[i].r.meta.WALFirst < r.head[j].wal) {
			i++
		}
		if i > i0 {
			if err := segs(r.segs[i0:i]); err != nil {
				return err
			}
		}
		for j < len(r.head) && (i == len(r.segs) || r.head[j].wal <= r.segs[i].r.meta.WALFirst) {
			j++
		}
		if j > j0 {
			if err := head(r.head[j0:j]); err != nil {
				return err
			}
		}
	}
	return nil
}

// floorState is what Hit.Floor answers from during a Select.
type floorState struct {
	// on: the Select gives times (no NoTimes). lo and hi are its time
	// bounds (bounds): an event outside them is no hit, and its segment
	// or WAL chunk bounds nothing (an old import stored last would keep
	// every floor below --since).
	on     bool
	lo, hi int64
	// segs are, once made (makeFloors, on the first Hit.Floor: a Select
	// whose caller never asks, as serve's API and detect, would walk
	// every WAL event for nothing), the earliest event time in the
	// bounds of each segment and everything after it; head that of the
	// WAL's chunks.
	segs map[*segView]int64
	head int64
}

// makeFloors computes r.fl's floors: walking the segments and the WAL's
// chunks in stored order from the last, the earliest event time of each
// and of everything after it (segments by their meta's MinTime), of
// those that may hold a hit.
func (r *Reader) makeFloors() {
	type source struct {
		s   *segView // nil for a WAL chunk
		min int64
	}
	lo, hi := r.fl.lo, r.fl.hi
	var order []source
	r.inStoredOrder(func(segs []*segView) error {
		for _, s := range segs {
			m := s.r.meta.MinTime
			switch {
			case s.outside(lo, hi):
				m = math.MaxInt64 // no hit
			case lo != 0:
				m = max(m, lo) // no hit before lo
			}
			order = append(order, source{s: s, min: m})
		}
		return nil
	}, func(head []headChunk) error {
		for i := range head {
			m := int64(math.MaxInt64)
			for _, e := range head[i].events {
				if (lo == 0 || e.time >= lo) && (hi == 0 || e.time < hi) {
					m = min(m, e.time)
				}
			}
			order = append(order, source{min: m})
		}
		return nil
	})
	r.fl.segs = make(map[*segView]int64, len(r.segs))
	r.fl.head = math.MaxInt64
	floor := int64(math.MaxInt64)
	for i := len(order) - 1; i >= 0; i-- {
		floor = min(floor, order[i].min)
		if order[i].s != nil {
			r.fl.segs[order[i].s] = floor
		} else {
			// One floor for every WAL chunk: the lowest, which holds for
			// the first of them and so for all.
			r.fl.head = floor
		}
	}
}

// Floor returns, during Select, a time no hit given after this one (this
// one included) is before: the caller may print, in time order, what it
// kept from before with a time at or below it. ok is false outside
// Select, with Selection.NoTimes, or for SelectFilters' hits.
func (h *Hit) Floor() (t int64, ok bool) {
	if h.r == nil || !h.r.fl.on || h.Partial {
		return 0, false
	}
	if h.r.fl.segs == nil {
		h.r.makeFloors()
	}
	if h.seg != nil {
		t, ok = h.r.fl.segs[h.seg]
		return t, ok
	}
	if h.head != nil {
		return h.r.fl.head, true
	}
	return 0, false
}

// Select calls fn for every selected event in the order they were stored
// (Scan's). It decides what it can from the columns, reading an event's
// text only when the filter or the caller needs it.
func (r *Reader) Select(sel Selection, fn func(*Hit) error) error {
	p, err := makePlan(sel.Filter)
	if err != nil {
		return err
	}
	r.colErr = nil
	call := fn
	fn = func(h *Hit) error {
		if err := call(h); err != nil {
			return err
		}
		return r.colErr
	}
	lo, hi := bounds(sel)
	text := sel.NeedEvent || sel.NeedRaw || p.residual
	// A Select run from another's callback leaves the outer one's
	// floors as they were.
	outer := r.fl
	r.fl = floorState{on: !sel.NoTimes, lo: lo, hi: hi}
	defer func() { r.fl = outer }()
	return r.inStoredOrder(func(segs []*segView) error {
		if text && r.textWorkers != 1 && (r.textWorkers > 1 || runtime.GOMAXPROCS(0) > 1) {
			return r.selectAhead(segs, p, sel, lo, hi, fn)
		}
		for _, s := range segs {
			if s.outside(lo, hi) {
				continue
			}
			if err := r.selectSegment(s, p, sel, lo, hi, fn); err != nil {
				return err
			}
		}
		return nil
	}, func(head []headChunk) error {
		return r.selectHead(head, p, sel, lo, hi, fn)
	})
}

// selectHead selects among head, events still in the WAL. Those with
// column values from ingest are decided like a segment's, testing each
// value once; the others are decoded.
func (r *Reader) selectHead(head []headChunk, p *plan, sel Selection, lo, hi int64, fn func(*Hit) error) error {
	m := headMatcher{p: p}
	for ci := range head {
		c := &head[ci]
		for i := range c.events {
			if err := r.selectHeadEvent(c, &c.events[i], &m, p, sel, lo, hi, fn); err != nil {
				return err
			}
		}
	}
	return nil
}

func (r *Reader) selectHeadEvent(c *headChunk, h *headEvent, m *headMatcher, p *plan, sel Selection, lo, hi int64, fn func(*Hit) error) error {
	if (lo != 0 && h.time < lo) || (hi != 0 && h.time >= hi) {
		return nil
	}
	mem := c.cols(h)
	var ev *audit.Event
	if p.full != nil {
		if mem != nil && !p.residual {
			if !m.match(h, mem) {
				return nil
			}
		} else {
			var err error
			if ev, err = r.headEvent(h); err != nil {
				return err
			}
			if !p.full.Match(ev, h.cluster) {
				return nil
			}
		}
	}
	if (sel.NeedEvent || p.residual) && ev == nil {
		var err error
		if ev, err = r.headEvent(h); err != nil {
			return err
		}
	}
	hit := Hit{Cluster: h.cluster, Time: h.time, Received: h.received, Raw: h.raw, Event: ev, head: h, hmem: mem, r: r}
	return fn(&hit)
}

// headMatcher decides a plan without a residual on WAL events that have
// column values, testing each dictionary value of a WAL segment once.
type headMatcher struct {
	p *plan
	// oks holds, per WAL segment's columns, per column term, per value
	// id: 0 not tested yet, 1 matches, -1 does not.
	oks map[*memCols][][]int8
	// last and lastOks are the WAL segment's columns of the event before
	// and their oks: a map lookup per event was most of counting a WAL
	// head of 50,000 events.
	last    *memCols
	lastOks [][]int8
	probe   audit.Event
	// anyOf are matchers of the plan's disjunctions' terms.
	anyOf [][]*headMatcher
}

// oksOf returns the verdicts on mem's values, made now if need be.
func (m *headMatcher) oksOf(mem *memCols) [][]int8 {
	oks := m.lastOks
	if mem != m.last {
		oks = m.oks[mem]
	}
	if oks == nil {
		oks = make([][]int8, len(m.p.colTerms))
		for ti, t := range m.p.colTerms {
			oks[ti] = make([]int8, len(mem.vals[t.col]))
		}
		if m.oks == nil {
			m.oks = map[*memCols][][]int8{}
		}
		m.oks[mem] = oks
	}
	m.last, m.lastOks = mem, oks
	return oks
}

func (m *headMatcher) match(h *headEvent, mem *memCols) bool {
	oks := m.oksOf(mem)
	for ti, t := range m.p.colTerms {
		id := mem.ids[t.col][h.ord]
		ok := oks[ti][id]
		if ok == 0 {
			ok = m.verdict(ti, id, mem)
		}
		if ok < 0 {
			return false
		}
	}
	if m.anyOf == nil && m.p.anyOf != nil {
		for _, terms := range m.p.anyOf {
			subs := make([]*headMatcher, len(terms))
			for k, tp := range terms {
				subs[k] = &headMatcher{p: tp}
			}
			m.anyOf = append(m.anyOf, subs)
		}
	}
	for _, subs := range m.anyOf {
		if !slices.ContainsFunc(subs, func(sub *headMatcher) bool { return sub.match(h, mem) }) {
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

// countRun counts the events at the start of c that have column values,
// as match decides them one by one, and returns how many it decided. It
// is match's loop turned inside out, column ids read in order: counting a
// WAL head of 100,000 events under ingest went through match for each, a
// quarter of serve's CPU. m's plan must have column terms only.
func (m *headMatcher) countRun(c *headChunk) (n int64, decided int) {
	if c.mem == nil || len(c.events) == 0 {
		return 0, 0
	}
	first := c.events[0].ord
	k := min(len(c.events), c.mem.n-first)
	if k <= 0 || c.events[k-1].ord != first+k-1 {
		return 0, 0 // not a run of ordinals: match decides each
	}
	oks, terms := m.oksOf(c.mem), m.p.colTerms
	ids := make([][]uint32, len(terms))
	for ti, t := range terms {
		ids[ti] = c.mem.ids[t.col][first : first+k]
	}
	for i := 0; i < k; i++ {
		ok := true
		for ti := range terms {
			id := ids[ti][i]
			v := oks[ti][id]
			if v == 0 {
				v = m.verdict(ti, id, c.mem)
			}
			if v < 0 {
				ok = false
				break
			}
		}
		if ok {
			n++
		}
	}
	return n, k
}

// verdict tests value id of term ti on mem's column once, and keeps the
// answer in m.oks.
func (m *headMatcher) verdict(ti int, id uint32, mem *memCols) int8 {
	t := m.p.colTerms[ti]
	cluster := eventWith(t.col, mem.vals[t.col][id], &m.probe)
	ok := int8(-1)
	if t.f.Match(&m.probe, cluster) {
		ok = 1
	}
	m.oks[mem][ti][id] = ok
	return ok
}

// cands are a segment's events that may match a plan.
type cands struct {
	// all: every event of the segment matches.
	all bool
	// list holds otherwise the ordinals of the events that may match,
	// ascending (that do match, when the plan has no residual).
	list []int32
	// counted: only the number matching is known, in count (asked for
	// with countOnly, and decided by the dictionaries' counts).
	counted bool
	count   int64
}

// size returns how many events c holds out of a segment of n.
func (c cands) size(n int) int64 {
	switch {
	case c.all:
		return int64(n)
	case c.counted:
		return c.count
	}
	return int64(len(c.list))
}

// termEval is a column term decided on one segment's dictionary.
type termEval struct {
	col Column
	// ids are the matching values' ids, when few were looked up (the
	// term's required values), and counts how many events hold each (-1:
	// unknown); ok, when the whole dictionary was tested, says per id
	// whether it matches.
	ids    []int
	counts []int64
	ok     []bool
	// count is how many events hold a matching value; -1 when unknown (a
	// v2 segment keeps no counts).
	count int64
	// share is the matching share of the dictionary, to order terms when
	// counts are unknown.
	share float64
}

// okTable returns per value id whether it matches.
func (t *termEval) okTable(values int) []bool {
	if t.ok == nil {
		t.ok = make([]bool, values)
		for _, id := range t.ids {
			t.ok[id] = true
		}
	}
	return t.ok
}

// evalTerm decides term t on segment s's dictionary: which values match,
// and how many events hold them. none: no event of s can match; every:
// every event does.
func (r *Reader) evalTerm(s *segView, t colTerm, probe *audit.Event) (e termEval, none, every bool, err error) {
	e = termEval{col: t.col}
	m := s.r.meta.Columns[t.col]
	if t.vals != nil {
		// Only these values can match: look them up instead of testing
		// every value.
		for _, v := range t.vals {
			f, ok, err := r.find(s, t.col, v)
			if err != nil {
				return e, false, false, err
			}
			if !ok || slices.Contains(e.ids, f.id) {
				continue
			}
			cluster := eventWith(t.col, v, probe)
			if !t.f.Match(probe, cluster) {
				continue
			}
			e.ids = append(e.ids, f.id)
			e.counts = append(e.counts, f.count)
			if f.count < 0 || e.count < 0 {
				e.count = -1
			} else {
				e.count += f.count
			}
		}
		if len(e.ids) == 0 {
			return e, true, false, nil
		}
		e.share = float64(len(e.ids)) / float64(max(1, m.Values))
		return e, false, false, nil
	}
	d, err := r.dict(s, t.col)
	if err != nil {
		return e, false, false, err
	}
	e.ok = make([]bool, len(d.values))
	kept := 0
	for id, v := range d.values {
		cluster := eventWith(t.col, v, probe)
		if t.f.Match(probe, cluster) {
			e.ok[id] = true
			kept++
			if d.counts != nil {
				e.count += int64(d.counts[id])
			}
		}
	}
	if d.counts == nil {
		e.count = -1
	} else if kept <= fewPostings {
		// Few values match: their postings may be kept.
		for id, ok := range e.ok {
			if ok {
				e.ids = append(e.ids, id)
				e.counts = append(e.counts, int64(d.counts[id]))
			}
		}
	}
	e.share = float64(kept) / float64(max(1, len(d.values)))
	return e, kept == 0, kept == len(d.values), nil
}

// filterIDs keeps the events of list whose value of column c is ok (all
// of the segment's, with !started, appended to list). It reads the ids
// where they are, without keeping them: a small column's ids frame is
// decompressed into the reader's scratch and read as it is stored.
func (r *Reader) filterIDs(s *segView, c Column, ok []bool, list []int32, started bool) ([]int32, error) {
	m := s.r.meta.Columns[c]
	if s.ids[c] != nil || m.Kind == kindPostings || idWidth(m.Values) != 1 {
		ids, err := r.colIDs(s, c)
		if err != nil {
			return nil, err
		}
		if !started {
			for i, id := range ids {
				if ok[id] {
					list = append(list, int32(i))
				}
			}
			return list, nil
		}
		out := list[:0]
		for _, o := range list {
			if ok[ids[o]] {
				out = append(out, o)
			}
		}
		return out, nil
	}
	raw, err := r.idBytes(s, c)
	if err != nil {
		return nil, s.r.fail("column "+c.String()+" ids", err)
	}
	if len(raw) != s.r.meta.Count {
		return nil, s.r.fail("column "+c.String()+" ids", fmt.Errorf("%d bytes of ids for %d events", len(raw), s.r.meta.Count))
	}
	// One byte per id: a table of 256 needs no bounds check, and an id
	// past the dictionary (a damaged frame fails its checksum first)
	// matches nothing.
	var ok256 [256]bool
	copy(ok256[:], ok)
	if !started {
		for i, id := range raw {
			if ok256[id] {
				list = append(list, int32(i))
			}
		}
		return list, nil
	}
	out := list[:0]
	for _, o := range list {
		if ok256[raw[o]] {
			out = append(out, o)
		}
	}
	return out, nil
}

// idBytes returns the ids frame of column c, one byte per id: from the
// shared segment's decodedChunks, or decoded into the reader's scratch.
func (r *Reader) idBytes(s *segView, c Column) ([]byte, error) {
	m := s.r.meta.Columns[c]
	d := s.r.decoded
	if d == nil {
		return r.sc.frame(s.r, r.dec, m.DictOff+m.DictLen, m.IDsLen)
	}
	if raw := d.idBytes(c); raw != nil {
		return raw, nil
	}
	var sc *scratch // new memory, to keep
	raw, err := sc.frame(s.r, r.dec, m.DictOff+m.DictLen, m.IDsLen)
	if err == nil && len(raw) == s.r.meta.Count {
		d.keepIDBytes(c, raw)
	}
	return raw, err
}

// fewPostings is how many values' postings a term merges; beyond, the
// column's ids are read whole.
const fewPostings = 64

// candidates narrows a segment's events with its columns. A term's
// dictionary (or, for a large one, the chunk that can hold the value) says
// which values match and how many events hold them; a segment where a term
// matches nothing is skipped. The terms are then applied rarest first,
// starting from the postings of the matching values or a scan of the ids,
// and stopping when no event is left. With countOnly and a single term
// left, the dictionary's counts are the answer, and no ids are read.
func (r *Reader) candidates(s *segView, p *plan, lo, hi int64, countOnly bool) (c cands, skip bool, err error) {
	r.use(s)
	meta := &s.r.meta
	n := meta.Count
	inTime := (lo == 0 || meta.MinTime >= lo) && (hi == 0 || meta.MaxTime < hi) && len(p.timeTerm) == 0
	// Bloom filters of v2 segments first: no dictionary is read for a
	// value the segment cannot hold.
	for _, t := range p.colTerms {
		if t.vals == nil || s.dicts[t.col] != nil || meta.Columns[t.col].BloomLen == 0 {
			continue
		}
		bf, err := s.r.readBloom(t.col)
		if err != nil {
			return c, false, err
		}
		if !slices.ContainsFunc(t.vals, bf.mayContain) {
			return c, true, nil
		}
	}
	// Then the dictionaries, the cheapest first: a segment none of whose
	// values can match one condition is skipped before the others are read.
	cost := func(t colTerm) int64 {
		cm := meta.Columns[t.col]
		if cm.Kind == kindPostings {
			if t.vals != nil {
				return 0 // an index and a chunk
			}
			return cm.DictLen + cm.IDsLen
		}
		return cm.DictLen
	}
	narrowed, all, err := r.narrow(s, p)
	if err != nil {
		return c, false, err
	}
	if !all && len(narrowed) == 0 {
		return c, true, nil
	}
	// The terms, evaluations and probe event are the reader's, reused from
	// one segment to the next: allocating them per segment was a tenth of
	// a warm count's time at 2M (38 segments).
	terms := append(r.terms[:0], p.colTerms...)
	r.terms = terms
	// SortStableFunc, unlike sort.SliceStable, allocates nothing: that was
	// one allocation per segment per request.
	slices.SortStableFunc(terms, func(a, b colTerm) int { return cmp.Compare(cost(a), cost(b)) })
	probe := &r.probe
	evals := r.evals[:0]
	defer func() { r.evals = evals[:0] }()
	for _, t := range terms {
		e, none, every, err := r.evalTerm(s, t, probe)
		if err != nil {
			return c, false, err
		}
		if none {
			return c, true, nil
		}
		if !every {
			evals = append(evals, e)
		}
	}
	switch {
	case len(evals) == 0 && inTime && all:
		return cands{all: true}, false, nil
	case len(evals) == 1 && inTime && countOnly && evals[0].count >= 0 && all:
		return cands{counted: true, count: evals[0].count}, false, nil
	}
	// The rarest first: by count, or by share of the dictionary. After the
	// first, the terms that postings answer go before those that read a
	// whole ids column: merging a few hundred ordinals costs less than
	// decompressing one, and may leave nothing to check.
	sort.SliceStable(evals, func(i, j int) bool {
		a, b := evals[i], evals[j]
		if a.count >= 0 && b.count >= 0 {
			return a.count < b.count
		}
		return a.share < b.share
	})
	byPostings := func(e termEval) bool {
		if e.ids == nil || len(e.ids) > fewPostings {
			return false
		}
		for _, n := range e.counts {
			if !hasPostings(meta, e.col, n) {
				return false
			}
		}
		return true
	}
	if len(evals) > 2 {
		sort.SliceStable(evals[1:], func(i, j int) bool { return byPostings(evals[1+i]) && !byPostings(evals[1+j]) })
	}
	list := r.list[:0]
	started := false
	if !all {
		list, started = append(list, narrowed...), true
	}
	for i := range evals {
		e := &evals[i]
		if byPostings(*e) {
			plist := r.plist[:0]
			for _, id := range e.ids {
				if plist, err = r.postings(s, e.col, id, plist); err != nil {
					return c, false, err
				}
			}
			if len(e.ids) > 1 {
				slices.Sort(plist)
			}
			r.plist = plist
			if !started {
				list = append(list, plist...)
			} else {
				list = intersect(list, plist)
			}
		} else {
			ok := e.okTable(meta.Columns[e.col].Values)
			if list, err = r.filterIDs(s, e.col, ok, list, started); err != nil {
				return c, false, err
			}
		}
		started = true
		if len(list) == 0 {
			r.list = list
			return c, true, nil
		}
	}
	if !inTime {
		if err := r.timeCol(s); err != nil {
			return c, false, err
		}
		keep := func(o int32) bool {
			t := s.times[o]
			if (lo != 0 && t < lo) || (hi != 0 && t >= hi) {
				return false
			}
			for _, tf := range p.timeTerm {
				*probe = audit.Event{StageTimestamp: audit.MicroTime{Time: microTime(t)}}
				if !tf.Match(probe, "") {
					return false
				}
			}
			return true
		}
		if !started {
			for i := 0; i < n; i++ {
				if keep(int32(i)) {
					list = append(list, int32(i))
				}
			}
		} else {
			out := list[:0]
			for _, o := range list {
				if keep(o) {
					out = append(out, o)
				}
			}
			list = out
		}
		if len(list) == 0 {
			r.list = list
			return c, true, nil
		}
	}
	r.list = list
	return cands{list: list}, false, nil
}

func (r *Reader) selectSegment(s *segView, p *plan, sel Selection, lo, hi int64, fn func(*Hit) error) error {
	c, skip, err := r.candidates(s, p, lo, hi, false)
	if err != nil || skip {
		return err
	}
	// The hits' own list: a callback may use the reader's columns.
	var list []int32
	if !c.all {
		list = append([]int32(nil), c.list...)
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
	needEvent := sel.NeedEvent || p.residual
	if !needEvent && !sel.NeedRaw {
		emit := func(i int) error {
			h := Hit{Cluster: cd.values[cl[i]], Time: s.times[i], Received: s.recvs[i], seg: s, r: r, ord: i}
			return fn(&h)
		}
		if c.all {
			for i := 0; i < s.r.meta.Count; i++ {
				if err := emit(i); err != nil {
					return err
				}
			}
			return nil
		}
		for _, i := range list {
			if err := emit(int(i)); err != nil {
				return err
			}
		}
		return nil
	}
	// Read the blocks that hold candidates, and check the whole filter on
	// each candidate's event.
	var ev audit.Event
	if c.all {
		list = nil
	}
	r.text.noBodies = sel.NoBodies && !p.residual
	defer func() { r.text.noBodies = false }()
	return r.text.events(s.r, 0, s.r.meta.Count, list, nil, r.idsOf(s), func(i int, raw []byte) error {
		cluster := cd.values[cl[i]]
		h := Hit{Cluster: cluster, Time: s.times[i], Received: s.recvs[i], Raw: raw, seg: s, r: r, ord: i}
		if needEvent {
			if err := audit.DecodeStored(raw, &ev); err != nil {
				return err
			}
			if r.text.noBodies {
				ev.RequestObject, ev.ResponseObject = nil, nil
			}
			if p.full != nil && p.residual && !p.full.Match(&ev, cluster) {
				return nil
			}
			h.Event = &ev
		}
		return fn(&h)
	})
}

func microTime(us int64) time.Time { return time.UnixMicro(us).UTC() }

// CountMatching returns how many events the selection selects, reading
// only what it must: the dictionaries' counts when one condition is left
// in a segment, columns when they decide the filter, events otherwise.
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
		c, skip, err := r.candidates(s, p, lo, hi, true)
		if err != nil {
			return 0, err
		}
		if !skip {
			n += c.size(s.r.meta.Count)
		}
	}
	k, err := r.countHead(p, lo, hi)
	return n + k, err
}

// countHead counts the events still in the WAL that match p, which has no
// residual, in [lo, hi): as selectHead decides them, without making a Hit
// of each (under ingest the WAL holds tens of thousands of events, and a
// count went through each).
func (r *Reader) countHead(p *plan, lo, hi int64) (int64, error) {
	head := r.headOnly()
	m := headMatcher{p: p}
	var n int64
	for ci := range head.head {
		c := &head.head[ci]
		from := 0
		if lo == 0 && hi == 0 && p.full != nil && len(p.anyOf) == 0 && len(p.timeTerm) == 0 {
			var k int64
			k, from = m.countRun(c)
			n += k
		}
		for i := from; i < len(c.events); i++ {
			h := &c.events[i]
			if (lo != 0 && h.time < lo) || (hi != 0 && h.time >= hi) {
				continue
			}
			if p.full != nil {
				if mem := c.cols(h); mem != nil {
					if !m.match(h, mem) {
						continue
					}
				} else {
					ev, err := head.headEvent(h)
					if err != nil {
						return n, err
					}
					if !p.full.Match(ev, h.cluster) {
						continue
					}
				}
			}
			n++
		}
	}
	return n, nil
}

// Span returns how many events the view holds and the times (unix
// microseconds) of its oldest and newest, for telling a person what the
// store holds when an answer is empty. min and max are 0 when it is empty.
func (r *Reader) Span() (count int, minT, maxT int64) {
	add := func(lo, hi int64) {
		if count == 0 || lo < minT {
			minT = lo
		}
		if count == 0 || hi > maxT {
			maxT = hi
		}
	}
	for _, s := range r.segs {
		if m := &s.r.meta; m.Count > 0 {
			add(m.MinTime, m.MaxTime)
			count += m.Count
		}
	}
	for _, c := range r.head {
		for i := range c.events {
			add(c.events[i].time, c.events[i].time)
			count++
		}
	}
	return count, minT, maxT
}
