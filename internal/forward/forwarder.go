package forward

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kubetrail/kubetrail/internal/audit"
	"github.com/kubetrail/kubetrail/internal/cursorfile"
	"github.com/kubetrail/kubetrail/internal/store/local"
	"github.com/kubetrail/kubetrail/internal/vfs"
)

// Dir is the folder of forwarding cursors in a data folder.
const Dir = "forward"

// Options configure a Forwarder.
type Options struct {
	// Log receives what goes wrong; nil discards it.
	Log *slog.Logger
	// FS holds the cursor file and the store; nil means the real one.
	FS vfs.FS
	// Cursor is the cursor file's path; "" keeps no cursor (a one-shot
	// forward without --cursor starts where it is told each time).
	Cursor string
	// SaveEvery is how often the cursor is saved while only filtered-out
	// events move it (default 1 s); a batch saves it before it is sent.
	SaveEvery time.Duration
	// Buffer is how many commit groups the live subscription holds
	// before the forwarder falls back to reading the store (default 256).
	// With Batch it bounds the forwarder's memory, whatever the backlog.
	Buffer int
	// RetryFor, when positive, ends a delivery that keeps failing for
	// this long with an error (one-shot forward); 0 retries forever.
	RetryFor time.Duration
}

// Stats are a forwarder's counters, for /metrics and the one-shot summary.
type Stats struct {
	// Events the destination acknowledged, and the Sends that carried them.
	Events, Batches uint64
	// Filtered counts events the destination's filter kept out.
	Filtered uint64
	// Failures counts failed Sends (each is retried).
	Failures uint64
	// Redelivered counts events sent again after a restart because their
	// batch was in flight when the process stopped: the destination may
	// have them twice (the only duplicates forwarding makes, bar a Send
	// whose acknowledgement was lost).
	Redelivered uint64
	// Existing counts events the destination reported it had already
	// (Elasticsearch: 409 on create); Rejected the ones it accepted but
	// dropped (OTLP partial success).
	Existing, Rejected uint64
	// CatchUps counts reads of the store (at start, and after the live
	// stream fell behind).
	CatchUps uint64
	// Backlog is the number of stored events the forwarder has not yet
	// passed (sent or filtered); -1 when unknown (one-shot).
	Backlog int64
	// Cursor is the position of the next event to forward.
	Cursor local.Pos
	// LastReceived is when the newest forwarded event was received (unix
	// microseconds), 0 before any.
	LastReceived int64
	// LastError is the last Send error, "" after a success.
	LastError string
}

// cursor is the saved state: one line of JSON and one line with its
// CRC-32C in hex, replaced atomically.
type cursor struct {
	Version int `json:"version"`
	// Next is the position of the next event to forward.
	Next local.Pos `json:"next"`
	// Inflight, when set, is the end of the batch being sent: written
	// before the Send, so that after a crash the events from Next to it
	// are known to be sent again (Redelivered).
	Inflight *local.Pos `json:"inflight,omitempty"`
}

// Forwarder sends stored events to one destination from a durable cursor.
type Forwarder struct {
	dest *Dest
	dir  string
	opts Options
	fs   vfs.FS
	rng  *rand.Rand

	cur         cursor
	dirty       bool
	redeliverTo local.Pos // events before it were in flight at the last stop

	// Backlog accounting: events stored by this process are counted by
	// stored(); the ones before start by old, at Run's start.
	stored      func() int64
	start       local.Pos
	old         atomic.Int64
	consumedNew atomic.Int64
	backlogOK   atomic.Bool

	events, batches, filtered, failures, redelivered, catchUps atomic.Uint64
	lastRecv                                                   atomic.Int64
	pos                                                        atomic.Pointer[local.Pos]
	mu                                                         sync.Mutex
	lastErr                                                    string
	// damage is the first damaged part of the store a read skipped.
	damage error
	// sub is Run's live subscription; dropped tells that deliver ended
	// it because the destination failed (Run then subscribes again).
	sub     *local.Subscription
	dropped bool
}

// New prepares a forwarder of the store in dir to dest. Without a cursor
// file (or without Options.Cursor) it starts at from. A damaged cursor
// file is an error naming it: starting over would send the whole history
// again or skip events, and the operator must choose.
func New(dir string, dest *Dest, from local.Pos, opts Options) (*Forwarder, error) {
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
		opts.Buffer = 256
	}
	f := &Forwarder{dest: dest, dir: dir, opts: opts, fs: opts.FS, cur: cursor{Version: 1, Next: from},
		rng: rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0x6677))}
	if opts.Cursor != "" {
		if err := vfs.MkdirAllSynced(f.fs, filepath.Dir(opts.Cursor), 0o700); err != nil {
			return nil, fmt.Errorf("create cursor folder: %w", err)
		}
		b, err := vfs.ReadFile(f.fs, opts.Cursor)
		switch {
		case errors.Is(err, os.ErrNotExist):
			if err := f.save(); err != nil {
				return nil, err
			}
		case err != nil:
			return nil, fmt.Errorf("forward cursor: %w", err)
		default:
			if f.cur, err = decodeCursor(b); err != nil {
				return nil, fmt.Errorf("forward cursor %s: %w (remove it to start again from the events stored from now on)", opts.Cursor, err)
			}
			if f.cur.Inflight != nil {
				f.redeliverTo = *f.cur.Inflight
			}
		}
	}
	next := f.cur.Next
	f.pos.Store(&next)
	return f, nil
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

// save writes the cursor durably (cursorfile.Save); without a cursor
// file it does nothing.
func (f *Forwarder) save() error {
	if f.opts.Cursor == "" {
		f.dirty = false
		return nil
	}
	if err := cursorfile.Save(f.fs, f.opts.Cursor, &f.cur); err != nil {
		return fmt.Errorf("forward cursor: %w", err)
	}
	f.dirty = false
	return nil
}

// Name returns the destination's printable name.
func (f *Forwarder) Name() string { return f.dest.Name }

// Stats returns the counters.
func (f *Forwarder) Stats() Stats {
	s := Stats{Events: f.events.Load(), Batches: f.batches.Load(), Filtered: f.filtered.Load(), Failures: f.failures.Load(),
		Redelivered: f.redelivered.Load(), CatchUps: f.catchUps.Load(), Cursor: *f.pos.Load(), LastReceived: f.lastRecv.Load(), Backlog: -1}
	if c, ok := f.dest.Sender.(Counter); ok {
		s.Existing, s.Rejected = c.Counts()
	}
	// backlogOK is set after stored and start are: load it first.
	if f.backlogOK.Load() && f.stored != nil {
		s.Backlog = max(f.old.Load()+f.stored()-f.consumedNew.Load(), 0)
	}
	f.mu.Lock()
	s.LastError = f.lastErr
	f.mu.Unlock()
	return s
}

// Run forwards the events db stores, from the cursor, until ctx ends or
// db closes (then it forwards what the store holds, until ctx ends, and
// saves the cursor). It returns nil then; an error only when the cursor
// cannot be saved or the store cannot be read. A failing destination
// never ends Run: its batch is retried with backoff while the backlog
// stays in the store.
func (f *Forwarder) Run(ctx context.Context, db *local.DB) error {
	f.stored, f.start = db.Stats().Stored.Load, db.Start()
	if err := f.countOld(ctx); err != nil {
		return f.finish(err)
	}
	tick := time.NewTicker(f.opts.SaveEvery)
	defer tick.Stop()
	for {
		sub := db.Subscribe(f.opts.Buffer)
		f.sub, f.dropped = sub, false
		// Subscribed before reading, so nothing falls between the two:
		// what the read sees and the subscription repeats is skipped by
		// position.
		if err := f.catchUp(ctx, local.ScanOptions{}); err != nil {
			sub.Close()
			return f.finish(err)
		}
		err := f.live(ctx, sub, tick.C)
		lagged := sub.Lagged()
		sub.Close()
		f.sub = nil
		if err != nil || ctx.Err() != nil {
			return f.finish(err)
		}
		if f.dropped {
			continue // the destination failed; it is back
		}
		if !lagged {
			// The store closed: what it committed last may not have
			// reached the subscription.
			return f.finish(f.catchUp(ctx, local.ScanOptions{}))
		}
		f.opts.Log.Warn("forwarding fell behind the live stream; reading the store from its cursor", "dest", f.dest.Name, "cursor", f.cur.Next)
	}
}

// countOld counts the events stored before this process started that the
// cursor has not passed: the backlog a restart inherits.
func (f *Forwarder) countOld(ctx context.Context) error {
	if !f.cur.Next.Less(f.start) {
		f.backlogOK.Store(true)
		return nil
	}
	var n int64
	err := local.Scan(f.dir, local.ScanOptions{From: f.cur.Next, FS: f.fs}, func(s local.Stored) error {
		if !s.Pos.Less(f.start) {
			return errStop
		}
		n++
		return ctx.Err()
	})
	if err != nil && !errors.Is(err, errStop) && !local.IsDamage(err) {
		return err
	}
	f.old.Store(n)
	f.backlogOK.Store(true)
	return nil
}

// Once forwards every stored event from the cursor that sel selects and
// returns once the destination acknowledged them all, and the cursor is
// saved. A Send that keeps failing for Options.RetryFor ends it with the
// last error. Damaged parts of the store are skipped and reported in the
// error after everything else is forwarded.
func (f *Forwarder) Once(ctx context.Context, sel local.ScanOptions) error {
	err := f.catchUp(ctx, sel)
	if err == nil && f.damage != nil {
		err = f.damage
	}
	return f.finish(err)
}

func (f *Forwarder) finish(err error) error {
	if f.dirty {
		if serr := f.save(); err == nil {
			err = serr
		}
	}
	if errors.Is(err, context.Canceled) {
		err = nil
	}
	return err
}

var errStop = errors.New("stop")

// pending is the batch being gathered, and the position after the last
// event it considered (sent or filtered).
type pending struct {
	evs   []Event
	bytes int
	end   local.Pos
}

// add takes an event into the batch, or counts it filtered.
func (f *Forwarder) add(p *pending, e Event) {
	p.end = local.Pos{WAL: e.Pos.WAL, Ord: e.Pos.Ord + 1}
	if flt := f.dest.Config.Filter; flt != nil && !flt.Match(e.Ev, e.Cluster) {
		f.filtered.Add(1)
		f.consumed(e.Pos, 1)
		return
	}
	p.evs = append(p.evs, e)
	p.bytes += len(e.Raw)
}

func (p *pending) full(c *Config) bool { return len(p.evs) >= c.Batch || p.bytes >= c.BatchBytes }

// consumed counts n events passed at pos for the backlog.
func (f *Forwarder) consumed(pos local.Pos, n int64) {
	if pos.Less(f.start) {
		f.old.Add(-n)
	} else {
		f.consumedNew.Add(n)
	}
}

// catchUp forwards every stored event from the cursor on.
func (f *Forwarder) catchUp(ctx context.Context, sel local.ScanOptions) error {
	f.catchUps.Add(1)
	p := pending{end: f.cur.Next}
	sel.From, sel.FS = f.cur.Next, f.fs
	err := local.Scan(f.dir, sel, func(s local.Stored) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		ev := new(audit.Event)
		if err := audit.DecodeStored(s.Raw, ev); err != nil {
			f.opts.Log.Error("stored event does not decode; forwarded as stored", "dest", f.dest.Name, "pos", s.Pos, "err", err)
			*ev = audit.Event{}
		}
		f.add(&p, Event{Raw: append([]byte(nil), s.Raw...), Ev: ev, Cluster: s.Cluster, Pos: s.Pos, Received: s.Received})
		if p.full(&f.dest.Config) {
			if err := f.flush(ctx, &p); err != nil {
				return err
			}
		}
		return nil
	})
	if local.IsDamage(err) {
		f.opts.Log.Error("forwarding skipped damaged parts of the store", "dest", f.dest.Name, "err", err)
		if f.damage == nil {
			f.damage = err
		}
		err = nil
	}
	if err != nil {
		return err
	}
	return f.flush(ctx, &p)
}

// live forwards the subscription's events until it ends.
func (f *Forwarder) live(ctx context.Context, sub *local.Subscription, tick <-chan time.Time) error {
	p := pending{end: f.cur.Next}
	for {
		var (
			group []local.Committed
			ok    bool
		)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick:
			if f.dirty {
				if err := f.save(); err != nil {
					return err
				}
			}
			continue
		case group, ok = <-sub.C:
			if !ok {
				return nil
			}
		}
		for i := range group {
			c := &group[i]
			if c.Pos.Less(p.end) {
				continue // read by the catch-up already
			}
			if !local.Follows(p.end, c.Pos) {
				// A gap: events the subscription never carried. Read
				// them from the store first.
				if err := f.flush(ctx, &p); err != nil {
					return err
				}
				if err := f.catchUp(ctx, local.ScanOptions{}); err != nil {
					return err
				}
				p.end = f.cur.Next
				if c.Pos.Less(p.end) {
					continue
				}
			}
			f.add(&p, Event{Raw: c.Record.Raw, Ev: &c.Record.Event, Cluster: c.Cluster, Pos: c.Pos, Received: c.Received})
			if p.full(&f.dest.Config) {
				if err := f.flush(ctx, &p); err != nil {
					return err
				}
			}
		}
		// Gather the groups already waiting into one batch.
		if len(sub.C) > 0 && !p.full(&f.dest.Config) {
			continue
		}
		if err := f.flush(ctx, &p); err != nil {
			return err
		}
	}
}

// flush sends the batch (the outbox: its end is saved before the Send, so
// a crash from here on sends it again, counted, and nothing else) and
// moves the cursor past every event it considered.
func (f *Forwarder) flush(ctx context.Context, p *pending) error {
	if len(p.evs) > 0 {
		end := p.end
		f.cur.Inflight = &end
		if err := f.save(); err != nil {
			return err
		}
		if err := f.deliver(ctx, p.evs); err != nil {
			return err
		}
		f.cur.Inflight = nil
		for i := range p.evs {
			f.consumed(p.evs[i].Pos, 1)
		}
	}
	if f.cur.Next != p.end {
		f.cur.Next = p.end
		f.dirty = f.opts.Cursor != ""
		next := p.end
		f.pos.Store(&next)
	}
	clear(p.evs)
	p.evs, p.bytes = p.evs[:0], 0
	return nil
}

// dropSubscription ends the live subscription while the destination
// fails: the events stored meanwhile wait in the store, not in the
// subscription's buffer, so an outage costs no memory. Run reads them
// from the store once the destination is back.
func (f *Forwarder) dropSubscription() {
	if f.sub == nil || f.dropped {
		return
	}
	f.dropped = true
	f.sub.Close()
	for range f.sub.C {
		// Release what the buffer held.
	}
}

// deliver sends a batch until the destination takes it, ctx is done, or
// it has failed for Options.RetryFor.
func (f *Forwarder) deliver(ctx context.Context, evs []Event) error {
	wait := f.dest.Config.MinBackoff
	var failingSince time.Time
	counter, _ := f.dest.Sender.(Counter)
	for {
		var rejectedBefore uint64
		if counter != nil {
			_, rejectedBefore = counter.Counts()
		}
		err := f.dest.Sender.Send(ctx, evs)
		if err == nil {
			if counter != nil {
				// Taken and then dropped for good (an OTLP partial
				// success, which must not be sent again): counted in
				// Stats, and said here with the batch it was in, as the
				// destination does not say which events it dropped.
				if _, r := counter.Counts(); r > rejectedBefore {
					f.opts.Log.Warn("the destination accepted a batch but dropped some of its events", "dest", f.dest.Name,
						"rejected", r-rejectedBefore, "events", len(evs), "first", evs[0].Ev.AuditID, "last", evs[len(evs)-1].Ev.AuditID,
						"from", evs[0].Pos, "to", evs[len(evs)-1].Pos)
				}
			}
			f.events.Add(uint64(len(evs)))
			f.batches.Add(1)
			for i := range evs {
				if evs[i].Pos.Less(f.redeliverTo) {
					f.redelivered.Add(1)
				}
			}
			f.lastRecv.Store(evs[len(evs)-1].Received)
			f.mu.Lock()
			f.lastErr = ""
			f.mu.Unlock()
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		now := time.Now()
		if failingSince.IsZero() {
			failingSince = now
		}
		f.failures.Add(1)
		f.mu.Lock()
		f.lastErr = err.Error()
		f.mu.Unlock()
		f.dropSubscription()
		if f.opts.RetryFor > 0 && now.Sub(failingSince) >= f.opts.RetryFor {
			return fmt.Errorf("forward to %s: failing for %s: %w", f.dest.Name, f.opts.RetryFor, err)
		}
		// Jitter: between half and all of the wait.
		sleep := wait/2 + time.Duration(f.rng.Int64N(int64(wait/2)+1))
		var ra RetryAfter
		if errors.As(err, &ra) {
			sleep = min(max(sleep, ra.RetryAfter()), f.dest.Config.MaxBackoff)
		}
		if f.opts.RetryFor > 0 {
			sleep = min(sleep, f.opts.RetryFor-now.Sub(failingSince))
		}
		f.opts.Log.Warn("forwarding failed; retrying", "dest", f.dest.Name, "events", len(evs), "in", sleep.Round(time.Millisecond), "err", err)
		t := time.NewTimer(sleep)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		wait = min(wait*2, f.dest.Config.MaxBackoff)
	}
}
