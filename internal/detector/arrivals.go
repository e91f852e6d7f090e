package detector

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/kubetrail/kubetrail/internal/alert"
	"github.com/kubetrail/kubetrail/internal/cursorfile"
	"github.com/kubetrail/kubetrail/internal/rules"
	"github.com/kubetrail/kubetrail/internal/store/local"
	"github.com/kubetrail/kubetrail/internal/vfs"
)

// ArrivalsCursorFile is the cursor of detection over a shared store, in the
// alert store's folder (beside CursorFile, which is the embedded store's).
const ArrivalsCursorFile = "detect-arrivals.cursor"

// Arrivals is the store a shared-store detector reads: every selected
// event with an arrival stamp above after, in arrival order, each event
// once, but those whose key known holds (nil: none), whose stored bytes
// it need not read (*clickhouse.Store). It may block on the network; ctx
// ends it.
type Arrivals interface {
	Arrivals(ctx context.Context, sel local.Selection, after uint64, known func(local.Key) bool, fn func(h *local.Hit, seq uint64) error) error
}

// ArrivalsOptions configure an ArrivalsDetector.
type ArrivalsOptions struct {
	// Log receives what the detector does; nil discards it. Each poll's
	// evaluated events and each cursor save are logged at debug level.
	Log *slog.Logger
	// PollEvery is the wait between reads of the store (default 500 ms).
	PollEvery time.Duration
	// Margin is how far below the highest arrival stamp evaluated each
	// read looks again, for inserts stamped earlier that became visible
	// later (another collector's clock behind, an insert in flight). The
	// keys evaluated within it are kept in the cursor (default 30 s).
	Margin time.Duration
	// Retry is the first wait after a failed read or alert append; it
	// doubles up to a minute (default 1 s).
	Retry time.Duration
}

// arrivalsCursor is the saved state: every event with seq <= Seq-Margin,
// and every event whose key is in Keys, was evaluated and its alerts
// stored. Version 2 keeps Keys in a key log (arrivalskeys.go) that the
// cursor names; version 1, read still, kept them in its JSON.
type arrivalsCursor struct {
	Version int `json:"version"`
	// Seq is the highest arrival stamp evaluated.
	Seq uint64 `json:"seq"`
	// Time is the newest event time evaluated (unix microseconds): the
	// replay on start covers the rules' memory before it.
	Time int64 `json:"time"`
	// Keys are the events evaluated with a seq within the margin below
	// Seq (hex event key -> seq): in the key log from version 2 on.
	Keys map[string]uint64 `json:"keys,omitempty"`
	// KeysGen, KeysLen and KeysCRC name the key log's generation, its
	// length and the CRC-32C of those bytes (version 2).
	KeysGen int    `json:"keysGen,omitempty"`
	KeysLen int64  `json:"keysLen,omitempty"`
	KeysCRC uint32 `json:"keysCRC,omitempty"`
	// AlertSeq is the alert store's newest number at the save.
	AlertSeq uint64 `json:"alertSeq"`
}

// ArrivalsDetector evaluates the events of a store that several
// collectors fill, in the store's own arrival order, from a durable
// cursor: each event once across restarts, its alerts stored before the
// cursor moves past it. Only one process may run it for a store and a
// folder (the caller locks the folder); rules then run once per event
// whatever the number of collectors.
type ArrivalsDetector struct {
	src    Arrivals
	eng    Engine
	alerts *alert.Store
	opts   ArrivalsOptions
	path   string
	keys   *keyLog

	cur    arrivalsCursor
	stored map[string]int
	// replayed is set once rule state was rebuilt (the first Poll).
	replayed bool

	// Evaluated counts events evaluated since Open; Suppressed counts
	// alerts raised again for events evaluated before a crash and found
	// stored; Failures counts alert appends that failed (and were
	// retried); Replayed counts events read again on start to rebuild
	// rule state.
	Evaluated, Suppressed, Failures, Replayed atomic.Int64
}

// OpenArrivals prepares a detector over src storing alerts in store, whose
// folder dir holds the cursor. Without a cursor it starts at the first
// event stored: a new reader of a shared store evaluates what the
// collectors have sent so far (use kubetrail detect without --follow for
// history with a --since). A damaged cursor is an error naming it.
func OpenArrivals(src Arrivals, eng Engine, store *alert.Store, dir string, opts ArrivalsOptions) (*ArrivalsDetector, error) {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.PollEvery <= 0 {
		opts.PollEvery = 500 * time.Millisecond
	}
	if opts.Margin <= 0 {
		opts.Margin = 30 * time.Second
	}
	if opts.Retry <= 0 {
		opts.Retry = time.Second
	}
	d := &ArrivalsDetector{src: src, eng: eng, alerts: store, opts: opts, path: filepath.Join(dir, ArrivalsCursorFile)}
	b, err := os.ReadFile(d.path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		last, _ := store.Last()
		d.cur = arrivalsCursor{Version: 2, Keys: map[string]uint64{}, AlertSeq: last}
	case err != nil:
		return nil, fmt.Errorf("detection cursor: %w", err)
	default:
		if err := cursorfile.Decode(b, &d.cur); err != nil {
			return nil, fmt.Errorf("detection cursor %s: %w (remove it to evaluate the store again from its first event)", d.path, err)
		}
		if d.cur.Version != 1 && d.cur.Version != 2 {
			return nil, fmt.Errorf("detection cursor %s: version %d: this kubetrail reads versions 1 and 2", d.path, d.cur.Version)
		}
		if d.cur.Keys == nil {
			d.cur.Keys = map[string]uint64{}
		}
	}
	if d.keys, err = openKeyLog(dir, d.cur.KeysGen, d.cur.KeysLen, d.cur.KeysCRC, d.cur.Keys); err != nil {
		return nil, err
	}
	d.cur.Version = 2
	if err := d.readStored(); err != nil {
		return nil, err
	}
	return d, nil
}

// readStored reads the alerts stored after the saved cursor: a crash
// between storing them and saving the cursor makes their events be
// evaluated again, and those alerts are recognised and not stored twice.
func (d *ArrivalsDetector) readStored() error {
	after := d.cur.AlertSeq
	for {
		as, err := d.alerts.Read(after, 1000)
		if err != nil {
			return fmt.Errorf("read alerts stored after the detection cursor: %w", err)
		}
		if len(as) == 0 {
			return nil
		}
		for i := range as {
			if d.stored == nil {
				d.stored = map[string]int{}
			}
			d.stored[key(&as[i].Alert)]++
			after = as[i].Seq
		}
	}
}

// Run polls the store and evaluates what arrived until ctx ends. It
// returns nil then; an error when the cursor cannot be saved.
func (d *ArrivalsDetector) Run(ctx context.Context) error {
	wait := d.opts.Retry
	for {
		err := d.Poll(ctx)
		if ctx.Err() != nil {
			return nil
		}
		next := d.opts.PollEvery
		var ce *cursorError
		switch {
		case errors.As(err, &ce):
			return err
		case err != nil:
			d.opts.Log.Error("detection could not read the store or store alerts; retrying (the cursor does not move)", "err", err)
			next, wait = wait, min(2*wait, time.Minute)
		default:
			wait = d.opts.Retry
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(next):
		}
	}
}

// cursorError is a cursor that could not be saved: detection stops.
type cursorError struct{ err error }

func (e *cursorError) Error() string { return "detection cursor: " + e.err.Error() }
func (e *cursorError) Unwrap() error { return e.err }

// Poll reads the events that arrived since the cursor, evaluates them,
// stores their alerts, then saves the cursor past them.
func (d *ArrivalsDetector) Poll(ctx context.Context) error {
	if !d.replayed {
		if err := d.replay(ctx); err != nil {
			return err
		}
		d.replayed = true
	}
	margin := uint64(d.opts.Margin.Nanoseconds())
	from := uint64(0)
	if d.cur.Seq > margin {
		from = d.cur.Seq - margin
	}
	var (
		out  []rules.Alert
		news []keySeq
		ids  []string
	)
	// The keys evaluated within the margin are not read again.
	known := func(k local.Key) bool { _, done := d.cur.Keys[hex.EncodeToString(k[:])]; return done }
	err := d.src.Arrivals(ctx, local.Selection{NeedEvent: true}, from, known, func(h *local.Hit, seq uint64) error {
		k := local.KeyOf(h.Cluster, h.Raw)
		hk := hex.EncodeToString(k[:])
		if _, done := d.cur.Keys[hk]; done {
			return nil
		}
		for _, a := range d.eng.Eval(&rules.Event{Ev: h.Event, Raw: h.Raw, Cluster: h.Cluster}) {
			if k := key(&a); d.stored[k] > 0 {
				if d.stored[k]--; d.stored[k] == 0 {
					delete(d.stored, k)
				}
				d.Suppressed.Add(1)
				continue
			}
			out = append(out, a)
		}
		news = append(news, keySeq{hk, seq})
		d.cur.Time = max(d.cur.Time, h.Event.StageTimestamp.Time.UnixMicro())
		ids = append(ids, h.Event.AuditID)
		return nil
	})
	if len(news) == 0 {
		return err
	}
	// What was evaluated is stored and cursored even if the read broke
	// off after it: the engine's windows have counted those events.
	// Alerts first, then the cursor (ADR 0010): retried until the alert
	// store takes them. If ctx ends first, nothing is cursored and a
	// restart evaluates these events again.
	if err := storeAlerts(ctx, d.alerts, out, d.opts.Retry, &d.Failures, d.opts.Log); err != nil {
		return err
	}
	d.Evaluated.Add(int64(len(news)))
	d.opts.Log.Debug("evaluated", "events", len(news), "auditIDs", ids)
	for _, g := range news {
		d.cur.Keys[g.key] = g.seq
		d.cur.Seq = max(d.cur.Seq, g.seq)
	}
	if d.cur.Seq > margin {
		for k, seq := range d.cur.Keys {
			if seq < d.cur.Seq-margin {
				delete(d.cur.Keys, k)
			}
		}
	}
	// The keys first (appended: 24 bytes an event), then the cursor that
	// names them, without them.
	if kerr := d.keys.add(news, d.cur.Keys); kerr != nil {
		return &cursorError{kerr}
	}
	d.cur.AlertSeq, _ = d.alerts.Last()
	d.cur.KeysGen, d.cur.KeysLen, d.cur.KeysCRC = d.keys.gen, d.keys.size, d.keys.crc
	disk := d.cur
	disk.Keys = nil
	if serr := cursorfile.Save(vfs.OS, d.path, &disk); serr != nil {
		return &cursorError{serr}
	}
	if kerr := d.keys.saved(); kerr != nil {
		return &cursorError{kerr}
	}
	d.opts.Log.Debug("cursor saved", "seq", d.cur.Seq, "keys", len(d.cur.Keys))
	return err
}

// replay rebuilds threshold, sequence and once-per-request state, as the
// embedded store's detector does (ADR 0010): the events the cursor covers
// whose time is within the rules' memory before the cursor's newest event
// time are evaluated again, in arrival order, their alerts discarded.
func (d *ArrivalsDetector) replay(ctx context.Context) error {
	mem := d.eng.Memory()
	if mem == 0 || d.cur.Time == 0 {
		return nil
	}
	margin := uint64(d.opts.Margin.Nanoseconds())
	sel := local.Selection{Since: d.cur.Time - mem.Microseconds(), NeedEvent: true}
	err := d.src.Arrivals(ctx, sel, 0, nil, func(h *local.Hit, seq uint64) error {
		k := local.KeyOf(h.Cluster, h.Raw)
		if _, done := d.cur.Keys[hex.EncodeToString(k[:])]; !done && seq+margin > d.cur.Seq {
			return nil // not evaluated yet: the first poll evaluates it
		}
		d.eng.Eval(&rules.Event{Ev: h.Event, Raw: h.Raw, Cluster: h.Cluster})
		d.Replayed.Add(1)
		return nil
	})
	if err != nil {
		return fmt.Errorf("rebuild rule state from the store: %w", err)
	}
	if n := d.Replayed.Load(); n > 0 {
		d.opts.Log.Info("rebuilt rule state from the store", "events", n, "span", mem)
	}
	return nil
}
