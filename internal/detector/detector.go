// Package detector runs the rule engine over the live stream in serve:
// every event is evaluated after it is durable, from a durable cursor, so
// that after a crash or a restart each stored event is evaluated once and
// no alert is lost or stored twice (docs/detection.md, "Detection in
// serve").
//
// The cursor is the store position (local.Pos) of the next event to
// evaluate, saved with the event time reached and the alert store's newest
// number at that moment. Alerts are stored (fsync) before the cursor moves
// past their events, so a crash can only make the detector evaluate again
// events whose alerts may already be stored; those alerts are recognised
// among the ones stored after the saved number and not stored again.
// Threshold, sequence and once-per-request state is rebuilt on start by
// replaying, without alerting, the events of the rules' memory
// (engine.Memory) before the cursor.
package detector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kubetrail/kubetrail/internal/alert"
	"github.com/kubetrail/kubetrail/internal/audit"
	"github.com/kubetrail/kubetrail/internal/cursorfile"
	"github.com/kubetrail/kubetrail/internal/rules"
	"github.com/kubetrail/kubetrail/internal/store/local"
	"github.com/kubetrail/kubetrail/internal/vfs"
)

// CursorFile is the cursor's name in the alert store's folder.
const CursorFile = "detect.cursor"

// Engine is what the detector evaluates events with (*engine.Engine).
type Engine interface {
	Eval(ev *rules.Event) []rules.Alert
	Memory() time.Duration
}

// Options configure a Detector.
type Options struct {
	// Log receives what the detector does and what goes wrong; nil
	// discards it.
	Log *slog.Logger
	// FS holds the cursor file; nil means the real file system.
	FS vfs.FS
	// SaveEvery is how often the cursor is saved while events arrive
	// (default 1 s). A crash re-evaluates at most what came since.
	SaveEvery time.Duration
	// Buffer is how many commit groups the live subscription holds
	// before the detector falls back to reading the store (default 4096).
	Buffer int
	// Retry is the first wait after the alert store refused an append;
	// it doubles up to a minute (default 1 s).
	Retry time.Duration
}

// Stats are the detector's counters, for /metrics.
type Stats struct {
	// Events evaluated since start (replayed ones not counted).
	Events int64
	// Replayed events were read again on start to rebuild rule state.
	Replayed int64
	// Alerts stored, per rule.
	Alerts []RuleCount
	// Suppressed alerts were raised again after a restart for events
	// evaluated before it, found already stored, and not stored twice.
	Suppressed int64
	// CatchUps counts reads of the store after the live stream fell
	// behind or broke off (and the one at start).
	CatchUps int64
	// Cursor is the position of the next event to evaluate.
	Cursor local.Pos
	// LastReceived is when the newest evaluated event was received (unix
	// microseconds), 0 before any.
	LastReceived int64
	// Failures counts alert store appends that failed (and are retried).
	Failures int64
}

// RuleCount is how many alerts a rule raised.
type RuleCount struct {
	Rule, Source, Severity string
	Alerts                 int64
}

// cursor is the saved state.
type cursor struct {
	Version int `json:"version"`
	// Next is the position of the next event to evaluate.
	Next local.Pos `json:"next"`
	// Time is the newest event time evaluated (unix microseconds): the
	// replay on start covers the rules' memory before it.
	Time int64 `json:"time"`
	// AlertSeq is the alert store's newest number when the cursor was
	// saved: alerts above it may belong to events at or after Next.
	AlertSeq uint64 `json:"alertSeq"`
}

// Detector evaluates stored events from a durable cursor.
type Detector struct {
	db     *local.DB
	eng    Engine
	alerts *alert.Store
	opts   Options
	fs     vfs.FS
	dir    string
	path   string

	cur   cursor
	dirty bool
	// stored are alerts stored after the saved cursor, by key, counted:
	// the ones a re-evaluation raises again are not stored twice.
	stored map[string]int

	events, replayed, suppressed, catchUps, failures atomic.Int64
	lastRecv                                         atomic.Int64
	pos                                              atomic.Pointer[local.Pos]
	mu                                               sync.Mutex
	counts                                           map[[3]string]int64
}

// Open prepares a detector over db, storing alerts in store (whose folder
// holds the cursor). Without a cursor file it starts at the first event
// db stores from now on: history is for `kubetrail detect`. A damaged
// cursor file is an error naming it: starting over would evaluate the
// whole history again or skip events, and the operator must choose.
func Open(db *local.DB, eng Engine, store *alert.Store, dir string, opts Options) (*Detector, error) {
	if opts.FS == nil {
		opts.FS = vfs.OS
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.SaveEvery <= 0 {
		opts.SaveEvery = time.Second
	}
	if opts.Buffer <= 0 {
		opts.Buffer = 4096
	}
	if opts.Retry <= 0 {
		opts.Retry = time.Second
	}
	d := &Detector{db: db, eng: eng, alerts: store, opts: opts, fs: opts.FS, dir: dir,
		path: filepath.Join(dir, CursorFile), counts: map[[3]string]int64{}}
	b, err := vfs.ReadFile(d.fs, d.path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		last, _ := store.Last()
		d.cur = cursor{Version: 1, Next: db.Start(), AlertSeq: last}
		if err := d.save(); err != nil {
			return nil, err
		}
		opts.Log.Info("detection starts with the events stored from now on; run kubetrail detect for the history", "cursor", d.path)
	case err != nil:
		return nil, fmt.Errorf("detection cursor: %w", err)
	default:
		if d.cur, err = decodeCursor(b); err != nil {
			return nil, fmt.Errorf("detection cursor %s: %w (remove it to evaluate only new events from now on)", d.path, err)
		}
	}
	next := d.cur.Next
	d.pos.Store(&next)
	return d, nil
}

// decodeCursor reads a cursor file (cursorfile's framing).
func decodeCursor(b []byte) (cursor, error) {
	var c cursor
	if err := cursorfile.Decode(b, &c); err != nil {
		return c, err
	}
	if c.Version != 1 {
		return c, fmt.Errorf("version %d: this kubetrail reads version 1", c.Version)
	}
	return c, nil
}

// save writes the cursor durably (cursorfile.Save).
func (d *Detector) save() error {
	if err := cursorfile.Save(d.fs, d.path, &d.cur); err != nil {
		return fmt.Errorf("detection cursor: %w", err)
	}
	d.dirty = false
	return nil
}

// Stats returns the counters.
func (d *Detector) Stats() Stats {
	s := Stats{Events: d.events.Load(), Replayed: d.replayed.Load(), Suppressed: d.suppressed.Load(),
		CatchUps: d.catchUps.Load(), Cursor: *d.pos.Load(), LastReceived: d.lastRecv.Load(), Failures: d.failures.Load()}
	d.mu.Lock()
	for k, n := range d.counts {
		s.Alerts = append(s.Alerts, RuleCount{Rule: k[0], Source: k[1], Severity: k[2], Alerts: n})
	}
	d.mu.Unlock()
	sort.Slice(s.Alerts, func(i, j int) bool {
		a, b := s.Alerts[i], s.Alerts[j]
		if a.Rule != b.Rule {
			return a.Rule < b.Rule
		}
		return a.Source < b.Source
	})
	return s
}

// errStop ends a scan early.
var errStop = errors.New("stop")

// Run evaluates events until ctx ends or the store closes, then saves the
// cursor. It returns nil then; an error only when the cursor cannot be
// saved or the store cannot be read (the detector then stops, and serve
// with it: detection that silently stopped would be worse).
func (d *Detector) Run(ctx context.Context) error {
	if err := d.prepare(); err != nil {
		return err
	}
	tick := time.NewTicker(d.opts.SaveEvery)
	defer tick.Stop()
	for {
		sub := d.db.Subscribe(d.opts.Buffer)
		// Subscribed before reading, so nothing falls between the two:
		// what the read sees and the subscription repeats is skipped by
		// position.
		if err := d.catchUp(ctx); err != nil {
			sub.Close()
			return d.finish(err)
		}
		err := d.live(ctx, sub, tick.C)
		lagged := sub.Lagged()
		sub.Close()
		if err != nil || ctx.Err() != nil || !lagged {
			return d.finish(err)
		}
		d.opts.Log.Warn("detection fell behind the live stream; reading the store from its cursor", "cursor", d.cur.Next)
	}
}

func (d *Detector) finish(err error) error {
	if d.dirty {
		if serr := d.save(); err == nil {
			err = serr
		}
	}
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}

// prepare rebuilds rule state and reads the alerts stored after the saved
// cursor.
func (d *Detector) prepare() error {
	after := d.cur.AlertSeq
	for {
		as, err := d.alerts.Read(after, 1000)
		if err != nil {
			return fmt.Errorf("read alerts stored after the detection cursor: %w", err)
		}
		if len(as) == 0 {
			break
		}
		for i := range as {
			if d.stored == nil {
				d.stored = map[string]int{}
			}
			d.stored[key(&as[i].Alert)]++
			after = as[i].Seq
		}
	}
	mem := d.eng.Memory()
	if mem == 0 || d.cur.Time == 0 {
		return nil
	}
	since := d.cur.Time - mem.Microseconds()
	var ev audit.Event
	err := local.Scan(d.db.Dir(), local.ScanOptions{Since: since, FS: d.fs}, func(s local.Stored) error {
		if !s.Pos.Less(d.cur.Next) {
			return errStop
		}
		ev = audit.Event{}
		if err := audit.DecodeStored(s.Raw, &ev); err != nil {
			return nil // a stored event always decodes; the store reports damage
		}
		d.eng.Eval(&rules.Event{Ev: &ev, Raw: s.Raw, Cluster: s.Cluster})
		d.replayed.Add(1)
		return nil
	})
	if err != nil && !errors.Is(err, errStop) && !local.IsDamage(err) {
		return fmt.Errorf("rebuild rule state from the store: %w", err)
	}
	if n := d.replayed.Load(); n > 0 {
		d.opts.Log.Info("rebuilt rule state from the store", "events", n, "span", mem)
	}
	return nil
}

// key identifies an alert for recognising one raised again.
func key(a *rules.Alert) string {
	return a.Rule + "\x00" + a.Source + "\x00" + strings.Join(a.AuditIDs, ",") + "\x00" + a.Time.UTC().Format(time.RFC3339Nano)
}

// catchUp evaluates every stored event from the cursor on.
func (d *Detector) catchUp(ctx context.Context) error {
	d.catchUps.Add(1)
	var (
		batch []pending
		ev    []audit.Event
	)
	flush := func() error {
		err := d.process(ctx, batch)
		batch, ev = batch[:0], ev[:0]
		return err
	}
	err := local.Scan(d.db.Dir(), local.ScanOptions{From: d.cur.Next, FS: d.fs}, func(s local.Stored) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		var e audit.Event
		if err := audit.DecodeStored(s.Raw, &e); err != nil {
			d.opts.Log.Error("stored event does not decode; not evaluated", "pos", s.Pos, "err", err)
			e = audit.Event{}
		}
		batch = append(batch, pending{ev: rules.Event{Ev: &e, Raw: append([]byte(nil), s.Raw...), Cluster: s.Cluster}, pos: s.Pos, received: s.Received})
		if len(batch) == 1000 {
			return flush()
		}
		return nil
	})
	if err == nil || local.IsDamage(err) {
		if local.IsDamage(err) {
			d.opts.Log.Error("detection skipped damaged parts of the store", "err", err)
		}
		err = flush()
	}
	return err
}

// pending is an event to evaluate.
type pending struct {
	ev       rules.Event
	pos      local.Pos
	received int64
}

// live evaluates the subscription's events until it ends.
func (d *Detector) live(ctx context.Context, sub *local.Subscription, tick <-chan time.Time) error {
	var batch []pending
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick:
			if d.dirty {
				if err := d.save(); err != nil {
					return err
				}
			}
		case evs, ok := <-sub.C:
			if !ok {
				return nil
			}
			batch = batch[:0]
			for i := range evs {
				c := &evs[i]
				if c.Pos.Less(d.cur.Next) {
					continue // read by the catch-up already
				}
				if !local.Follows(d.cur.Next, c.Pos) && len(batch) == 0 {
					// A gap: events the subscription never carried.
					// Read them from the store first.
					if err := d.catchUp(ctx); err != nil {
						return err
					}
					if c.Pos.Less(d.cur.Next) {
						continue
					}
				}
				batch = append(batch, pending{ev: rules.Event{Ev: &c.Record.Event, Raw: c.Record.Raw, Cluster: c.Cluster}, pos: c.Pos, received: c.Received})
			}
			if err := d.process(ctx, batch); err != nil {
				return err
			}
		}
	}
}

// process evaluates events, stores their alerts (retrying until the store
// takes them or ctx ends) and moves the cursor past them.
func (d *Detector) process(ctx context.Context, batch []pending) error {
	if len(batch) == 0 {
		return nil
	}
	var out []rules.Alert
	for i := range batch {
		p := &batch[i]
		for _, a := range d.eng.Eval(&p.ev) {
			if k := key(&a); d.stored[k] > 0 {
				if d.stored[k]--; d.stored[k] == 0 {
					delete(d.stored, k)
				}
				d.suppressed.Add(1)
				continue
			}
			out = append(out, a)
		}
	}
	if err := storeAlerts(ctx, d.alerts, out, d.opts.Retry, &d.failures, d.opts.Log); err != nil {
		return err
	}
	if len(out) > 0 {
		d.mu.Lock()
		for _, a := range out {
			d.counts[[3]string{a.Rule, a.Source, a.Severity.String()}]++
		}
		d.mu.Unlock()
	}
	last := batch[len(batch)-1]
	d.cur.Next = local.Pos{WAL: last.pos.WAL, Ord: last.pos.Ord + 1}
	for i := range batch {
		d.cur.Time = max(d.cur.Time, batch[i].ev.Ev.Time().UnixMicro())
	}
	d.cur.AlertSeq, _ = d.alerts.Last()
	d.dirty = true
	next := d.cur.Next
	d.pos.Store(&next)
	d.events.Add(int64(len(batch)))
	d.lastRecv.Store(last.received)
	return nil
}

// storeAlerts appends out to the alert store, retrying with backoff (from
// retry, doubling up to a minute) until the store takes them or ctx ends.
// Both detectors call it before their cursor moves (ADR 0010): a cursor
// past events whose alerts are not stored would lose those alerts. Each
// failed append is counted in failures and logged.
func storeAlerts(ctx context.Context, st *alert.Store, out []rules.Alert, retry time.Duration, failures *atomic.Int64, log *slog.Logger) error {
	wait := retry
	for {
		_, err := st.Append(out)
		if err == nil {
			return nil
		}
		failures.Add(1)
		log.Error("alerts not stored; retrying (the cursor does not move)", "alerts", len(out), "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Minute)
	}
}
