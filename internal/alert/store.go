package alert

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/kubetrail/kubetrail/internal/rules"
	"github.com/kubetrail/kubetrail/internal/vfs"
	"github.com/kubetrail/kubetrail/internal/wal"
)

// The store's defaults (Options).
const (
	DefaultSegmentBytes = 4 << 20
	DefaultRecent       = 4096
	DefaultListLimit    = 1000
)

// Where serve keeps alerts inside its data folder: the store (StoreDir)
// and the dispatchers' cursor files (CursorDir, inside it: the store
// ignores what is not a segment file). Readers beside a running serve
// (`kubetrail alerts --data`) look there too.
const (
	StoreDir  = "alerts"
	CursorDir = "alerts/cursors"
)

// StoreOptions configure a Store.
type StoreOptions struct {
	// FS is the file system; nil means the real one. Crash tests give a
	// strict in-memory one.
	FS vfs.FS
	// SegmentBytes is the size past which a new segment file is started:
	// retention removes whole segments. 0 means DefaultSegmentBytes.
	SegmentBytes int64
	// MaxAge removes a segment once its newest alert was stored longer
	// ago than this; 0 keeps alerts forever.
	MaxAge time.Duration
	// MaxBytes removes the oldest segments while the folder holds more;
	// 0 means no limit.
	MaxBytes int64
	// Recent is how many of the newest alerts are kept in memory, so that
	// dispatchers that keep up never read the disk. 0 means DefaultRecent.
	Recent int
	// Now is the clock (Stored times, retention); nil means time.Now.
	Now func() time.Time
}

// Damage is a stretch of a segment file that holds no valid alert: it is
// reported, skipped by readers and left in place until retention removes
// the segment.
type Damage struct {
	Path           string
	Offset, Length int64
	Reason         string
}

func (d Damage) String() string {
	return fmt.Sprintf("%s: %d bytes at offset %d hold no valid alert: %s", d.Path, d.Length, d.Offset, d.Reason)
}

// Recovery says what Open found.
type Recovery struct {
	// Segments and Alerts count what was read.
	Segments, Alerts int
	// TornBytes were cut from the end of the newest segment: a crash left
	// them, and no Append that returned wrote them.
	TornBytes int64
	// Damage lists the bad stretches found elsewhere, and a numbers file
	// (NumbersFile) with no valid slot.
	Damage []Damage
	// Next is the number the next alert gets: above every number found,
	// and, when the store was not closed cleanly (a crash, a kill, a
	// failed sync), at the limit of the numbers file, above every number
	// a reader can have seen.
	Next uint64
}

// segment is what the store knows of one segment file without reading it.
type segment struct {
	num         uint64
	first, last uint64 // seqs of its first and last valid alert; 0 when it has none
	minT, maxT  time.Time
	lastStored  time.Time
	n           int // valid alerts
	bytes       int64
	damaged     bool
}

// Store is a durable, append-only store of alerts in a folder, made of
// wal segment files (format 2: CRC-checked records; a torn tail is cut on
// Open, damage costs only the records it is in). Every alert gets a
// sequence number; Append returns only when the alerts are synced. All
// methods are safe for concurrent use; memory is bounded by Recent alerts
// and a few words per segment.
type Store struct {
	dir  string
	opts StoreOptions
	fs   vfs.FS

	mu         sync.Mutex
	log        *wal.Log
	segs       []segment // in order; the last one is open for appends
	next       uint64    // the next seq
	last       uint64    // the newest durable seq (0: none)
	recent     []Alert   // the newest durable alerts, in order
	recentBase uint64    // every alert with a seq above it is in recent
	changed    chan struct{}
	damage     []Damage
	counts     map[RuleCount]uint64 // Count is zero in the keys
	broken     error
	closed     bool
	nums       *numbers // the durable limit of the numbers given
}

// RuleCount counts the alerts of one rule, severity and source that this
// Store appended since it was opened: the counters of /metrics. Counting
// from zero at each start is what a Prometheus counter does at a restart.
type RuleCount struct {
	Rule     string
	Severity rules.Severity
	Source   string
	Count    uint64
}

// OpenStore opens or creates the store in dir.
func OpenStore(dir string, opts StoreOptions) (*Store, Recovery, error) {
	if opts.FS == nil {
		opts.FS = vfs.OS
	}
	if opts.SegmentBytes <= 0 {
		opts.SegmentBytes = DefaultSegmentBytes
	}
	if opts.Recent <= 0 {
		opts.Recent = DefaultRecent
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	var rec Recovery
	log, wrec, err := wal.Open(dir, 0, wal.Options{SegmentBytes: opts.SegmentBytes, FS: opts.FS})
	if err != nil {
		return nil, rec, fmt.Errorf("open alert store %s: %w", dir, err)
	}
	rec.TornBytes = wrec.TornBytes
	s := &Store{dir: dir, opts: opts, fs: opts.FS, log: log, changed: make(chan struct{}), counts: map[RuleCount]uint64{}}
	// A damaged stretch after the newest valid alert may have held alerts
	// with higher numbers, which a dispatcher may have delivered: numbers
	// skip one per damaged byte (a record is longer than a byte), so that
	// none is ever given twice.
	var hidden int64
	for _, num := range log.Segments() {
		seg := segment{num: num}
		path := wal.SegmentPath(dir, num)
		var lastOff int64 = -1
		res, err := wal.ScanFS(s.fs, path, func(off int64, p []byte) error {
			a, err := decodeRecord(p)
			if err != nil {
				s.damage = append(s.damage, Damage{Path: path, Offset: off, Length: int64(len(p)), Reason: "record holds no alert: " + err.Error()})
				return nil
			}
			seg.add(&a)
			rec.Alerts++
			if a.Seq > s.last {
				s.last, lastOff, hidden = a.Seq, off, 0
			}
			return nil
		})
		if err != nil {
			log.Close()
			return nil, rec, fmt.Errorf("read alert segment %s: %w", path, err)
		}
		seg.bytes = res.Size
		for _, d := range res.Damage {
			s.damage = append(s.damage, Damage{Path: path, Offset: d.Offset, Length: d.Length, Reason: d.Reason})
			seg.damaged = true
			if d.Offset > lastOff {
				hidden += d.Length
			}
		}
		s.segs = append(s.segs, seg)
	}
	if err := s.syncTail(); err != nil {
		log.Close()
		return nil, rec, err
	}
	rec.Segments = len(s.segs) - 1 // the new open one is not counted
	rec.Damage = slices.Clone(s.damage)
	s.next = s.last + 1 + uint64(hidden)
	// Numbers below the limit may have been written to a segment that a
	// crash, a kill or a failed sync then lost (cut back, never synced),
	// after a reader in another process read them.
	nums, bad, err := readNumbers(s.fs, dir)
	if err != nil {
		log.Close()
		return nil, rec, fmt.Errorf("alert store: %w", err)
	}
	if bad != nil {
		rec.Damage = append(rec.Damage, *bad)
	}
	s.nums = nums
	s.next = max(s.next, nums.limit)
	rec.Next = s.next
	s.recentBase = s.last
	return s, rec, nil
}

// syncTail syncs the segments found from the newest that holds an alert
// (or damage) on: a process killed before its sync, or after a failed
// one, left records there that Open reads as stored and that a reader
// may have seen, so they must not be lost to a power loss later, when
// they would be a torn record in a segment that is no longer the newest.
// Older segments were synced before the next one was started.
func (s *Store) syncTail() error {
	found := s.segs[:len(s.segs)-1] // the last one is the new open one
	from := 0
	for i := range found {
		if found[i].first != 0 || found[i].damaged {
			from = i
		}
	}
	for _, g := range found[from:] {
		path := wal.SegmentPath(s.dir, g.num)
		f, err := s.fs.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			return fmt.Errorf("alert store: open %s: %w", path, err)
		}
		err = f.Sync()
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("alert store: sync %s: %w", path, err)
		}
	}
	return nil
}

func (g *segment) add(a *Alert) {
	if g.first == 0 {
		g.first, g.minT, g.maxT = a.Seq, a.Time, a.Time
	}
	g.last = a.Seq
	g.n++
	if a.Time.Before(g.minT) {
		g.minT = a.Time
	}
	if a.Time.After(g.maxT) {
		g.maxT = a.Time
	}
	if a.Stored.After(g.lastStored) {
		g.lastStored = a.Stored
	}
}

// ErrClosed is returned by calls on a closed store.
var ErrClosed = errors.New("alert store is closed")

// Append stores alerts, numbering them, and returns them as stored once
// they are synced to disk. On an error none of them is acknowledged (some
// may still be found after a restart). After a failed sync the store
// refuses every Append: a restart recovers.
func (s *Store) Append(in []rules.Alert) ([]Alert, error) {
	if len(in) == 0 {
		return nil, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	if s.broken != nil {
		return nil, s.broken
	}
	if s.log.NeedsRotate() {
		if err := s.rotate(); err != nil {
			return nil, err
		}
	}
	if end := s.next + uint64(len(in)); end > s.nums.limit || s.nums.f == nil || s.nums.missing() {
		// No number reaches a file before the limit above it is durable,
		// in a file this store holds open (not one it failed to make
		// again after it was deleted).
		if err := s.nums.set(max(end+numbersStep, s.nums.limit)); err != nil {
			return nil, fmt.Errorf("alert store: raise the limit of the numbers given: %w", err)
		}
	}
	now := s.opts.Now().UTC()
	out := make([]Alert, len(in))
	var bytes int64
	for i := range in {
		out[i] = Alert{Alert: in[i], Seq: s.next + uint64(i), Stored: now}
		b, err := encodeRecord(&out[i])
		if err == nil {
			err = s.log.Append(b)
		}
		if err != nil {
			s.log.Discard()
			if s.log.CutBack() {
				// Some of them reached the file before it was cut back:
				// a reader beside the store (ListDir) may have read them
				// and asks only for higher numbers now, so theirs are
				// never given again.
				s.next += uint64(len(in))
			}
			return nil, fmt.Errorf("append alert %q: %w", in[i].Rule, err)
		}
		bytes += int64(len(b)) + int64(wal.HeaderLen(2))
	}
	if err := s.log.Sync(); err != nil {
		// Their numbers are in the file, or were, and a reader may have
		// seen them: the store takes no more alerts, and the limit, above
		// them, makes the next Open number above them.
		s.broken = fmt.Errorf("alert store: %w", err)
		return nil, s.broken
	}
	seg := &s.segs[len(s.segs)-1]
	for i := range out {
		seg.add(&out[i])
	}
	seg.bytes += bytes
	for i := range out {
		s.counts[RuleCount{Rule: out[i].Rule, Severity: out[i].Severity, Source: out[i].Source}]++
	}
	s.next += uint64(len(out))
	s.last = out[len(out)-1].Seq
	s.recent = append(s.recent, out...)
	if n := len(s.recent); n > 2*s.opts.Recent {
		s.recentBase = s.recent[n-s.opts.Recent-1].Seq
		s.recent = slices.Clone(s.recent[n-s.opts.Recent:])
	}
	close(s.changed)
	s.changed = make(chan struct{})
	return out, nil
}

// numberAbove makes every number given from now on above seq, a
// reader's durable position (a dispatcher's cursor): a cursor past every
// stored alert means the store lost alerts and the limit of its numbers
// together (removed by hand, or a damaged numbers file and a power loss),
// and the reader would skip every new alert numbered up to it. A seq past
// maxNumber was not written by a store (see maxNumber) and is ignored,
// rather than wrap the numbers.
func (s *Store) numberAbove(seq uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if seq >= s.next && seq < maxNumber {
		s.next = seq + 1
	}
}

// rotate closes the open segment and starts the next; s.mu must be held.
// When the next cannot be made (a full disk), the log keeps the open
// segment, synced, and nothing was written: the Append fails and a later
// one tries again, without a restart. A failed sync of the open segment
// breaks the log, which then refuses every Append itself.
func (s *Store) rotate() error {
	closed, err := s.log.Rotate()
	if closed == 0 {
		return fmt.Errorf("alert store: rotate: %w", err)
	}
	if s.segs[len(s.segs)-1].num != closed {
		panic("BUG: alert store: segment list out of step with the wal")
	}
	s.segs = append(s.segs, segment{num: s.log.Current()})
	if err != nil {
		// Its alerts were synced and the new segment is in use: only the
		// old file's close failed.
		return fmt.Errorf("alert store: rotate: %w", err)
	}
	return nil
}

// Last returns the newest stored seq, 0 when none; and a channel closed at
// the next Append, for readers that wait for more.
func (s *Store) Last() (uint64, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last, s.changed
}

// First returns the oldest seq kept, 0 when the store holds none.
func (s *Store) First() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, g := range s.segs {
		if g.first != 0 {
			return g.first
		}
	}
	return 0
}

// Counts returns how many alerts of each rule, severity and source this
// Store appended since it was opened, sorted by rule, source and severity.
// There is one entry per distinct triple, so memory is bounded by the
// rules loaded.
func (s *Store) Counts() []RuleCount {
	s.mu.Lock()
	out := make([]RuleCount, 0, len(s.counts))
	for k, n := range s.counts {
		k.Count = n
		out = append(out, k)
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b RuleCount) int {
		if c := strings.Compare(a.Rule, b.Rule); c != 0 {
			return c
		}
		if c := strings.Compare(a.Source, b.Source); c != 0 {
			return c
		}
		return int(a.Severity) - int(b.Severity)
	})
	return out
}

// Damage returns the bad stretches found since Open that retention has
// not removed.
func (s *Store) Damage() []Damage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.damage)
}

// Read returns up to max stored alerts with a seq above after, in order.
// Readers that keep up are served from memory.
func (s *Store) Read(after uint64, max int) ([]Alert, error) {
	if max <= 0 {
		max = DefaultListLimit
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, ErrClosed
	}
	if after >= s.last {
		s.mu.Unlock()
		return nil, nil
	}
	if after >= s.recentBase {
		i, _ := slices.BinarySearchFunc(s.recent, after+1, func(a Alert, seq uint64) int { return cmpU(a.Seq, seq) })
		out := slices.Clone(s.recent[i:min(len(s.recent), i+max)])
		s.mu.Unlock()
		return out, nil
	}
	segs, last := slices.Clone(s.segs), s.last
	s.mu.Unlock()
	var out []Alert
	err := s.scan(segs, func(g *segment) bool { return g.first != 0 && g.last > after }, func(a *Alert) (bool, error) {
		if a.Seq > after && a.Seq <= last {
			out = append(out, *a)
		}
		return len(out) < max, nil
	})
	return out, err
}

func cmpU(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Query chooses alerts for List.
type Query struct {
	// After keeps alerts whose seq is above it (paging).
	After uint64
	// Since and Until keep alerts whose time (the last event's) is in
	// [Since, Until); zero means unbounded.
	Since, Until time.Time
	// Rules and Sources keep alerts of one of these rules or sources;
	// empty keeps all.
	Rules, Sources []string
	// Namespace, when set, keeps alerts whose last event was in it
	// (alerts about cluster-scoped objects are left out, as with
	// kubectl -n).
	Namespace string
	// Clusters and Namespaces, when not empty, keep alerts whose cluster
	// (and namespace) is one of them: the access scope of a viewer, which
	// the other conditions only narrow. A namespace scope leaves out
	// alerts without a namespace.
	Clusters, Namespaces []string
	// MinSeverity keeps alerts at least this severe.
	MinSeverity rules.Severity
	// Limit keeps the newest Limit matches; 0 means DefaultListLimit.
	Limit int
	// Oldest keeps the oldest Limit matches instead (with After, a page
	// of what came after a seq: a reader that pages on from the last seq
	// it got misses nothing), and stops reading once it has them.
	Oldest bool
}

// Match reports whether a meets q's conditions (all but Limit): what a
// reader following new alerts (Read) keeps.
func (q *Query) Match(a *Alert) bool {
	return a.Seq > q.After && a.Severity >= q.MinSeverity && (q.Namespace == "" || a.Namespace == q.Namespace) &&
		(q.Since.IsZero() || !a.Time.Before(q.Since)) && (q.Until.IsZero() || a.Time.Before(q.Until)) &&
		(len(q.Rules) == 0 || slices.Contains(q.Rules, a.Rule)) &&
		(len(q.Sources) == 0 || slices.Contains(q.Sources, a.Source)) &&
		(len(q.Clusters) == 0 || slices.Contains(q.Clusters, a.Cluster)) &&
		(len(q.Namespaces) == 0 || slices.Contains(q.Namespaces, a.Namespace))
}

func (q *Query) segment(g *segment) bool {
	return g.first != 0 && g.last > q.After &&
		(q.Since.IsZero() || !g.maxT.Before(q.Since)) && (q.Until.IsZero() || g.minT.Before(q.Until))
}

// List returns the newest alerts that match q (at most q.Limit), oldest
// first. Memory is bounded by the limit.
func (s *Store) List(q Query) ([]Alert, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, ErrClosed
	}
	segs, last := slices.Clone(s.segs), s.last
	s.mu.Unlock()
	return list(q, func(fn func(*Alert) (bool, error)) error {
		return s.scan(segs, q.segment, func(a *Alert) (bool, error) {
			if a.Seq > last {
				return true, nil
			}
			return fn(a)
		})
	})
}

func list(q Query, each func(func(*Alert) (bool, error)) error) ([]Alert, error) {
	limit := q.Limit
	if limit <= 0 {
		limit = DefaultListLimit
	}
	var out []Alert
	err := each(func(a *Alert) (bool, error) {
		if !q.Match(a) {
			return true, nil
		}
		if q.Oldest {
			out = append(out, *a)
			return len(out) < limit, nil
		}
		if len(out) == 2*limit {
			out = append(out[:0], out[limit:]...)
		}
		out = append(out, *a)
		return true, nil
	})
	if len(out) > limit {
		out = out[len(out)-limit:]
	}
	return slices.Clone(out), err
}

// scan reads the segments that want keeps, in order, calling fn with each
// alert until it returns false. A segment removed meanwhile is skipped:
// retention took it.
func (s *Store) scan(segs []segment, want func(*segment) bool, fn func(*Alert) (bool, error)) error {
	stop := errors.New("stop")
	for i := range segs {
		if !want(&segs[i]) {
			continue
		}
		err := scanSegment(s.fs, wal.SegmentPath(s.dir, segs[i].num), func(a *Alert) error {
			more, err := fn(a)
			if err == nil && !more {
				err = stop
			}
			return err
		})
		if errors.Is(err, stop) {
			return nil
		}
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

// scanSegment calls fn with every valid alert of a segment file; records
// that hold no alert are skipped (Open reports them).
func scanSegment(fs vfs.FS, path string, fn func(*Alert) error) error {
	_, err := wal.ScanFS(fs, path, func(_ int64, p []byte) error {
		a, err := decodeRecord(p)
		if err != nil {
			return nil
		}
		return fn(&a)
	})
	return err
}

// ListDir is List over a store's folder without opening the store (no
// torn tail is cut, nothing is written), for a reader beside a running
// serve. It also returns the damage it met, torn tails excepted: bad
// stretches and records that hold no alert. With q.After set, segments
// that hold only older alerts are skipped unread (the first alert of
// each newer segment tells), so a reader polling for new alerts reads
// little more than what is new.
func ListDir(fs vfs.FS, dir string, q Query) ([]Alert, []Damage, error) {
	if fs == nil {
		fs = vfs.OS
	}
	segs, err := wal.ListSegmentsFS(fs, dir)
	if err != nil {
		return nil, nil, fmt.Errorf("list alert store %s: %w", dir, err)
	}
	if q.After > 0 {
		if segs, err = segmentsAfter(fs, dir, segs, q.After); err != nil {
			return nil, nil, err
		}
	}
	var damage []Damage
	out, err := list(q, func(fn func(*Alert) (bool, error)) error {
		stop := errors.New("stop")
		for _, num := range segs {
			path := wal.SegmentPath(dir, num)
			res, err := wal.ScanFS(fs, path, func(off int64, p []byte) error {
				a, err := decodeRecord(p)
				if err != nil {
					damage = append(damage, Damage{Path: path, Offset: off, Length: int64(len(p)), Reason: "record holds no alert: " + err.Error()})
					return nil
				}
				if more, err := fn(&a); err != nil || !more {
					return cmpErr(err, stop)
				}
				return nil
			})
			if errors.Is(err, stop) {
				return nil
			}
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("read alert segment %s: %w", path, err)
			}
			for _, d := range res.Damaged() {
				damage = append(damage, Damage{Path: path, Offset: d.Offset, Length: d.Length, Reason: d.Reason})
			}
		}
		return nil
	})
	return out, damage, err
}

// segmentsAfter drops the segments that hold only alerts numbered at
// most after: seqs increase with segment numbers, so every segment
// before the newest one whose first alert is at most after is older.
func segmentsAfter(fs vfs.FS, dir string, segs []uint64, after uint64) ([]uint64, error) {
	for i := len(segs) - 1; i >= 0; i-- {
		first, err := firstSeq(fs, wal.SegmentPath(dir, segs[i]))
		if err != nil {
			return nil, err
		}
		if first != 0 && first <= after {
			return segs[i:], nil
		}
	}
	return segs, nil
}

// firstSeq returns the seq of a segment's first valid alert, 0 when it
// holds none (or is gone: retention removed it).
func firstSeq(fs vfs.FS, path string) (uint64, error) {
	stop := errors.New("stop")
	var first uint64
	_, err := wal.ScanFS(fs, path, func(_ int64, p []byte) error {
		a, err := decodeRecord(p)
		if err != nil {
			return nil
		}
		first = a.Seq
		return stop
	})
	if err != nil && !errors.Is(err, stop) && !errors.Is(err, os.ErrNotExist) {
		return 0, fmt.Errorf("read alert segment %s: %w", path, err)
	}
	return first, nil
}

func cmpErr(err, fallback error) error {
	if err != nil {
		return err
	}
	return fallback
}

// Retain removes whole segments past MaxAge or beyond MaxBytes (oldest
// first) and empty ones. It never removes the open segment nor the newest
// segment that holds an alert (its numbers keep later ones increasing).
// It returns the number of alerts removed.
func (s *Store) Retain() (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, ErrClosed
	}
	now := s.opts.Now()
	newest := -1
	var total int64
	for i, g := range s.segs {
		if g.first != 0 {
			newest = i
		}
		total += g.bytes
	}
	removed := 0
	keep := s.segs[:0]
	for i, g := range s.segs {
		empty := g.first == 0 && !g.damaged
		drop := false
		switch {
		case i == len(s.segs)-1 || i == newest:
		case i > newest:
			drop = empty
		default:
			drop = empty || s.opts.MaxAge > 0 && now.Sub(g.lastStored) > s.opts.MaxAge || s.opts.MaxBytes > 0 && total > s.opts.MaxBytes
		}
		if !drop {
			keep = append(keep, g)
			continue
		}
		if err := s.log.Remove(g.num); err != nil {
			keep = append(keep, s.segs[i:]...)
			s.segs = keep
			return removed, fmt.Errorf("remove alert segment %d: %w", g.num, err)
		}
		total -= g.bytes
		removed += g.n
		gone := wal.SegmentPath(s.dir, g.num)
		s.damage = slices.DeleteFunc(s.damage, func(d Damage) bool { return d.Path == gone })
	}
	s.segs = keep
	if removed > 0 {
		// Readers served from memory must not see what was removed.
		first := uint64(0)
		for _, g := range s.segs {
			if g.first != 0 {
				first = g.first
				break
			}
		}
		i, _ := slices.BinarySearchFunc(s.recent, first, func(a Alert, seq uint64) int { return cmpU(a.Seq, seq) })
		s.recent = slices.Clone(s.recent[i:])
	}
	return removed, nil
}

// Close syncs and closes the store. When every sync succeeded, it lowers
// the limit of the numbers given to the next number, so that the next
// Open goes on without a gap: every number given is then in a durable
// segment or below the next number (skipped after a cut-back). A limit
// that cannot be lowered stays higher, which only skips numbers.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	err := s.log.Close()
	// The limit stays where it is unless every Append's sync succeeded.
	// After a failed fsync the log's Close fails too; but after a final
	// flush that filled the disk, the log was cut back to its synced size
	// and closes cleanly, while the alerts flushed before the cut (never
	// acknowledged, their numbers at and past s.next) may have been read:
	// s.broken tells.
	lower := err == nil && s.broken == nil
	switch {
	case s.nums.missing():
		// Deleted while the store ran: made again.
		limit := s.nums.limit
		if lower {
			limit = s.next
		}
		if lerr := s.nums.set(limit); lerr != nil && err == nil {
			err = fmt.Errorf("alert store: make the numbers file again: %w", lerr)
		}
	case lower && s.nums.found && s.next < s.nums.limit:
		if lerr := s.nums.set(s.next); lerr != nil {
			err = fmt.Errorf("alert store: lower the limit of the numbers given: %w", lerr)
		}
	}
	if cerr := s.nums.close(); err == nil && cerr != nil {
		err = fmt.Errorf("alert store: close %s: %w", s.nums.path, cerr)
	}
	return err
}
