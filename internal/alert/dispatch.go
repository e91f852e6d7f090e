package alert

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kubetrail/kubetrail/internal/cursorfile"
	"github.com/kubetrail/kubetrail/internal/vfs"
)

// DispatchConfig configures one output's dispatcher.
type DispatchConfig struct {
	// Name is the output as it may be printed (Spec.Name: scheme and host,
	// never a token): what logs and /metrics call the dispatcher. Open
	// sets it; empty means the cursor file's id.
	Name string
	// Batch is the most alerts one Send carries.
	Batch int
	// MinBackoff and MaxBackoff bound the wait between failed sends: it
	// doubles from MinBackoff up to MaxBackoff, each wait drawn at random
	// between half and all of it (jitter), so that outputs that failed
	// together do not retry together.
	MinBackoff, MaxBackoff time.Duration
	// Throttle groups bursts of notifications.
	Throttle Throttle
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Dispatcher defaults.
const (
	DefaultBatch      = 100
	DefaultMinBackoff = 500 * time.Millisecond
	DefaultMaxBackoff = time.Minute
)

// DefaultDispatchConfig returns the defaults for an output scheme:
// notifications for people (slack, alertmanager) are throttled by rule,
// cluster and user over DefaultThrottleWindow; records for machines
// (file, webhook, syslog) get every alert.
func DefaultDispatchConfig(scheme string) DispatchConfig {
	c := DispatchConfig{Batch: DefaultBatch, MinBackoff: DefaultMinBackoff, MaxBackoff: DefaultMaxBackoff,
		Throttle: Throttle{GroupBy: defaultGroupBy, MaxGroups: DefaultMaxGroups}}
	if strings.HasPrefix(scheme, "slack+") || strings.HasPrefix(scheme, "alertmanager+") {
		c.Throttle.Window = DefaultThrottleWindow
	}
	return c
}

// DispatchStats are a dispatcher's counters, ready for /metrics.
type DispatchStats struct {
	// Cursor is the seq of the last stored alert handed to the output.
	Cursor uint64
	// Notifications and Alerts count what the output acknowledged:
	// notifications sent, and the stored alerts they stand for.
	Notifications, Alerts uint64
	// Throttled counts alerts folded into a grouped notification.
	Throttled uint64
	// Failures counts failed Send calls (each is retried).
	Failures uint64
	// Redelivered counts notifications sent again after a restart because
	// they were in flight when the process stopped: the output may have
	// had them already (the only duplicates a crash makes).
	Redelivered uint64
	// Replayed counts alerts sent again from the oldest kept because the
	// cursor file was damaged.
	Replayed uint64
	// LastError is the last Send error, "" after a success.
	LastError string
}

// Dispatcher delivers the alerts of a Store to one Output at least once.
// Its cursor file holds the seq of the last alert handed to the output,
// the batch in flight (written, synced, before Send) and the throttle's
// open windows; after a crash, the batch in flight is sent again (counted
// in Redelivered), then delivery goes on from the cursor.
type Dispatcher struct {
	store *Store
	out   Output
	fs    vfs.FS
	dir   string
	path  string
	cfg   DispatchConfig
	rng   *rand.Rand

	st       dstate
	thr      *throttler
	replayTo uint64 // alerts up to here are sent again (damaged cursor)

	notifications, alerts, throttled, failures, redelivered, replayed atomic.Uint64
	cursor                                                            atomic.Uint64
	mu                                                                sync.Mutex
	lastErr                                                           string
}

// dstate is the cursor file's content.
type dstate struct {
	Cursor   uint64            `json:"cursor"`
	Inflight []json.RawMessage `json:"inflight,omitempty"`
	Groups   []dgroup          `json:"groups,omitempty"`
}

type dgroup struct {
	Key   string          `json:"key"`
	End   time.Time       `json:"end"`
	Count int             `json:"count,omitempty"`
	Last  json.RawMessage `json:"last,omitempty"`
}

// OpenDispatcher loads the dispatcher's cursor file, DIR/ID.cursor, or
// creates it: a new output starts after the newest alert stored now, so
// it must be opened before rules start to store alerts. The store then
// numbers above the cursor (Store.numberAbove). fs nil means the real
// file system.
func OpenDispatcher(store *Store, out Output, fs vfs.FS, dir, id string, cfg DispatchConfig) (*Dispatcher, error) {
	if fs == nil {
		fs = vfs.OS
	}
	if cfg.Batch <= 0 {
		cfg.Batch = DefaultBatch
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = DefaultMinBackoff
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = max(cfg.MinBackoff, DefaultMaxBackoff)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Name == "" {
		cfg.Name = id
	}
	d := &Dispatcher{store: store, out: out, fs: fs, dir: dir, path: filepath.Join(dir, id+".cursor"), cfg: cfg,
		rng: rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0x6b74)), thr: newThrottler(cfg.Throttle)}
	if err := vfs.MkdirAllSynced(fs, dir, 0o700); err != nil {
		return nil, fmt.Errorf("create cursor folder %s: %w", dir, err)
	}
	b, err := vfs.ReadFile(fs, d.path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		last, _ := store.Last()
		d.st.Cursor = last
		if err := d.save(); err != nil {
			return nil, err
		}
	case err != nil:
		return nil, fmt.Errorf("read cursor %s: %w", d.path, err)
	default:
		if err := d.load(b); err != nil {
			// Lost: send again everything kept rather than lose an alert.
			d.replayTo, _ = store.Last()
			d.st = dstate{}
			d.lastErr = fmt.Sprintf("cursor %s is damaged (%v): sending every stored alert again", d.path, err)
		}
	}
	d.cursor.Store(d.st.Cursor)
	store.numberAbove(d.st.Cursor)
	return d, nil
}

// load reads the cursor file (cursorfile's framing) and checks what it
// holds.
func (d *Dispatcher) load(b []byte) error {
	if err := cursorfile.Decode(b, &d.st); err != nil {
		return err
	}
	for _, g := range d.st.Groups {
		ng := &group{key: g.Key, end: g.End, count: g.Count}
		if g.Count > 0 {
			a, err := decodeRecord(g.Last)
			if err != nil {
				return fmt.Errorf("group %q: %w", g.Key, err)
			}
			ng.last = &a
		}
		d.thr.groups[g.Key] = ng
	}
	for _, raw := range d.st.Inflight {
		if _, err := decodeRecord(raw); err != nil {
			return fmt.Errorf("alert in flight: %w", err)
		}
	}
	return nil
}

// save writes the cursor file durably (cursorfile.Save).
func (d *Dispatcher) save() error {
	d.st.Groups = d.st.Groups[:0]
	for _, g := range d.thr.groups {
		dg := dgroup{Key: g.key, End: g.end, Count: g.count}
		if g.last != nil {
			b, err := encodeRecord(g.last)
			if err != nil {
				return err
			}
			dg.Last = b
		}
		d.st.Groups = append(d.st.Groups, dg)
	}
	slices.SortFunc(d.st.Groups, func(a, b dgroup) int { return strings.Compare(a.Key, b.Key) })
	if err := cursorfile.Save(d.fs, d.path, &d.st); err != nil {
		return fmt.Errorf("dispatcher cursor: %w", err)
	}
	d.cursor.Store(d.st.Cursor)
	return nil
}

// Name returns the output's printable name (DispatchConfig.Name).
func (d *Dispatcher) Name() string { return d.cfg.Name }

// Stats returns the dispatcher's counters.
func (d *Dispatcher) Stats() DispatchStats {
	d.mu.Lock()
	defer d.mu.Unlock()
	return DispatchStats{Cursor: d.cursor.Load(), Notifications: d.notifications.Load(), Alerts: d.alerts.Load(),
		Throttled: d.throttled.Load(), Failures: d.failures.Load(), Redelivered: d.redelivered.Load(),
		Replayed: d.replayed.Load(), LastError: d.lastErr}
}

// Run delivers alerts until ctx is done, returning ctx's error, or a
// cursor file error (the store's folder is failing: a restart recovers).
// A failing output never ends Run: its batch is retried with backoff.
func (d *Dispatcher) Run(ctx context.Context) error {
	for {
		more, err := d.round(ctx)
		if err != nil {
			return err
		}
		if more {
			continue
		}
		last, changed := d.store.Last()
		if last > d.st.Cursor {
			continue
		}
		var timer <-chan time.Time
		var t *time.Timer
		if end := d.thr.next(); !end.IsZero() {
			t = time.NewTimer(max(end.Sub(d.cfg.Now()), time.Millisecond))
			timer = t.C
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		case <-timer:
		}
		if t != nil {
			t.Stop()
		}
	}
}

// round makes one step: the batch in flight, else the next alerts and
// the windows that ended. It reports whether more is ready at once.
func (d *Dispatcher) round(ctx context.Context) (bool, error) {
	if len(d.st.Inflight) > 0 {
		// A batch was in flight when the process stopped.
		batch := make([]Alert, len(d.st.Inflight))
		for i, raw := range d.st.Inflight {
			batch[i], _ = decodeRecord(raw) // checked by load
		}
		// Counted before the send: a crash during it may deliver it a
		// third time, and the next start counts that one.
		d.redelivered.Add(uint64(len(batch)))
		if err := d.deliver(ctx, batch); err != nil {
			return false, err
		}
		d.st.Inflight = nil
		return true, d.save()
	}
	read, err := d.store.Read(d.st.Cursor, d.cfg.Batch)
	if err != nil {
		return false, fmt.Errorf("read alerts after %d: %w", d.st.Cursor, err)
	}
	now := d.cfg.Now()
	var notes []Alert
	for i := range read {
		if d.thr.admit(&read[i], now) {
			notes = append(notes, read[i])
		} else {
			d.throttled.Add(1)
		}
		if read[i].Seq <= d.replayTo {
			d.replayed.Add(1)
		}
	}
	notes = append(notes, d.thr.due(now, d.cfg.Batch)...)
	if len(read) > 0 {
		d.st.Cursor = read[len(read)-1].Seq
	}
	if len(notes) == 0 {
		if len(read) == 0 && len(d.st.Groups) == len(d.thr.groups) {
			return false, nil
		}
		return len(read) == d.cfg.Batch, d.save()
	}
	// The outbox: the batch is durable before it is sent, with the cursor
	// past it, so a crash from here on sends it again and nothing else.
	d.st.Inflight = d.st.Inflight[:0]
	for i := range notes {
		b, err := encodeRecord(&notes[i])
		if err != nil {
			return false, err
		}
		d.st.Inflight = append(d.st.Inflight, b)
	}
	if err := d.save(); err != nil {
		return false, err
	}
	if err := d.deliver(ctx, notes); err != nil {
		return false, err
	}
	d.st.Inflight = nil
	return len(read) == d.cfg.Batch, d.save()
}

// deliver sends a batch until the output takes it or ctx is done.
func (d *Dispatcher) deliver(ctx context.Context, batch []Alert) error {
	wait := d.cfg.MinBackoff
	for {
		err := d.out.Send(ctx, batch)
		if err == nil {
			d.notifications.Add(uint64(len(batch)))
			for _, a := range batch {
				d.alerts.Add(uint64(max(a.Count, 1)))
			}
			d.mu.Lock()
			d.lastErr = ""
			d.mu.Unlock()
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		d.failures.Add(1)
		d.mu.Lock()
		d.lastErr = err.Error()
		d.mu.Unlock()
		// Jitter: between half and all of the wait.
		sleep := wait/2 + time.Duration(d.rng.Int64N(int64(wait/2)+1))
		t := time.NewTimer(sleep)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		wait = min(wait*2, d.cfg.MaxBackoff)
	}
}
