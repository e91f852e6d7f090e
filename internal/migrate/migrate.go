// Package migrate moves stored events from one store to another (the
// embedded store in a data folder and ClickHouse, either way) without
// losing or doubling any, and resumably.
//
// The source is read in arrival order from a durable cursor; events are
// appended to the destination in batches that keep each event's cluster
// and received time, and the cursor moves past a batch only once the
// destination has stored it (pipeline.Sink's Append returns when the
// batch is durable). A migration killed at any moment, run again, sends
// again at most the batch it was appending, and the destination counts
// those events once: both stores de-duplicate by the event key (the
// embedded store when appending, ClickHouse when reading FINAL). Events
// stored in the source after a run are moved by the next run.
package migrate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/kubetrail/kubetrail/internal/audit"
	"github.com/kubetrail/kubetrail/internal/cursorfile"
	"github.com/kubetrail/kubetrail/internal/pipeline"
	"github.com/kubetrail/kubetrail/internal/store/clickhouse"
	"github.com/kubetrail/kubetrail/internal/store/local"
	"github.com/kubetrail/kubetrail/internal/vfs"
)

// Source is a store read in arrival order from a cursor.
type Source interface {
	// Name identifies the store (no credentials), for the cursor file.
	Name() string
	// Scan calls fn for every event stored after cursor (nil: from the
	// first) in arrival order, with the cursor that resumes after that
	// event. A Stored's Raw is valid only during the call.
	Scan(ctx context.Context, cursor json.RawMessage, fn func(s local.Stored, next json.RawMessage) error) error
}

// Local is the embedded store in a data folder as a Source; its cursor is
// the local.Pos of the next event.
type Local struct{ Dir string }

// Name is the folder.
func (l Local) Name() string { return "data folder " + l.Dir }

// Scan reads the folder (local.Scan) from the cursor's position. Damaged
// data comes back as a *local.DamageError after everything intact.
func (l Local) Scan(ctx context.Context, cursor json.RawMessage, fn func(local.Stored, json.RawMessage) error) error {
	var from local.Pos
	if cursor != nil {
		if err := json.Unmarshal(cursor, &from); err != nil {
			return fmt.Errorf("cursor %s: %w", cursor, err)
		}
	}
	return local.Scan(l.Dir, local.ScanOptions{From: from}, func(s local.Stored) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		next, err := json.Marshal(local.Pos{WAL: s.Pos.WAL, Ord: s.Pos.Ord + 1})
		if err != nil {
			return err
		}
		return fn(s, next)
	})
}

// ClickHouse is a ClickHouse store as a Source; its cursor is the
// clickhouse.Position of the last event read.
type ClickHouse struct {
	Store *clickhouse.Store
	// ID names the store: its endpoint and database.
	ID string
}

// Name is the endpoint and database.
func (c ClickHouse) Name() string { return "ClickHouse " + c.ID }

// Scan reads the store (clickhouse.Store.ScanFrom) after the cursor.
func (c ClickHouse) Scan(ctx context.Context, cursor json.RawMessage, fn func(local.Stored, json.RawMessage) error) error {
	var from clickhouse.Position
	if cursor != nil {
		if err := json.Unmarshal(cursor, &from); err != nil {
			return fmt.Errorf("cursor %s: %w", cursor, err)
		}
	}
	return c.Store.ScanFrom(ctx, from, func(s local.Stored, p clickhouse.Position) error {
		next, err := json.Marshal(p)
		if err != nil {
			return err
		}
		return fn(s, next)
	})
}

// Options tune a migration.
type Options struct {
	// Cursor is the cursor file's path; it must be given.
	Cursor string
	// To names the destination (no credentials), kept in the cursor so
	// that a cursor is never used for another pair of stores.
	To string
	// BatchSize caps the events per Append; 0 means 5000. A batch also
	// ends where the source's cluster or received time changes.
	BatchSize int
	// Progress, when set, is called after every batch and at the end.
	Progress func(Progress)
	// FlushBytes is how many bytes a Buffered destination gathers before
	// they are flushed and the cursor moves; 0 means 32 MiB.
	FlushBytes int
}

// Buffered is a destination whose Append only gathers a batch's rows
// for one large write, which Flush makes: the rows are stored once Flush
// returns, so the cursor moves only after it. clickhouse.Bulk is one:
// ClickHouse spends far more per insert than per row, and a migration's
// batches end wherever the received time changes, every few hundred
// events when the source was fed by a webhook.
type Buffered interface {
	pipeline.Sink
	// Pending is the bytes gathered and not yet flushed.
	Pending() int
	Flush(ctx context.Context) error
}

// Progress says how far a migration got.
type Progress struct {
	// Moved counts the events appended to the destination, this run and
	// before (from the cursor); Duplicates those it said it held already.
	// ClickHouse tells no copy of an earlier batch (it drops them when
	// read), so after a resume up to one batch is counted twice there.
	Moved, Duplicates int64
	// ThisRun counts the events read this run.
	ThisRun int64
	// Resumed is true when the run began at a saved cursor.
	Resumed bool
	// Elapsed is the time since the run began.
	Elapsed time.Duration
	// Done is set on the last call, after the last batch.
	Done bool
}

// cursor is what the cursor file holds.
type cursor struct {
	Version int             `json:"version"`
	From    string          `json:"from"`
	To      string          `json:"to"`
	Next    json.RawMessage `json:"next,omitempty"`
	Moved   int64           `json:"moved"`
	Dups    int64           `json:"duplicates"`
}

// Run moves every event of src after the cursor into dst, and returns
// the progress at the end. ctx's cancellation stops it between events;
// the cursor then holds every batch stored.
func Run(ctx context.Context, src Source, dst pipeline.Sink, o Options) (Progress, error) {
	if o.Cursor == "" {
		return Progress{}, errors.New("BUG: migrate without a cursor file")
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 5000
	}
	if o.FlushBytes <= 0 {
		o.FlushBytes = 32 << 20
	}
	cur := cursor{Version: 1, From: src.Name(), To: o.To}
	err := cursorfile.Load(vfs.OS, o.Cursor, &cur)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return Progress{}, fmt.Errorf("migration cursor %s: %w", o.Cursor, err)
	case cur.From != src.Name() || cur.To != o.To:
		return Progress{}, fmt.Errorf("migration cursor %s is for %s to %s, not %s to %s: give another --cursor", o.Cursor, cur.From, cur.To, src.Name(), o.To)
	}
	m := &mover{ctx: ctx, dst: dst, o: o, cur: cur, pend: cur, start: time.Now()}
	m.prog.Resumed = cur.Next != nil
	err = src.Scan(ctx, cur.Next, m.add)
	if err == nil || local.IsDamage(err) {
		// What was read before damage is stored, and the cursor says so.
		ferr := m.flush()
		if ferr == nil {
			ferr = m.commit()
		}
		err = errors.Join(err, ferr)
	}
	if err == nil {
		m.report(true)
	}
	return m.progress(false), err
}

// mover collects a batch and appends it.
type mover struct {
	ctx context.Context
	dst pipeline.Sink
	o   Options
	cur cursor
	// pend is the cursor past every batch appended; cur moves to it
	// once they are stored (at once, unless dst is Buffered).
	pend  cursor
	start time.Time
	prog  Progress

	batch pipeline.Batch
	next  json.RawMessage // cursor after the batch's last event
}

func (m *mover) add(s local.Stored, next json.RawMessage) error {
	b := &m.batch
	recv := time.UnixMicro(s.Received).UTC()
	if len(b.Records) > 0 && (len(b.Records) >= m.o.BatchSize || b.Cluster != s.Cluster || !b.Received.Equal(recv)) {
		if err := m.flush(); err != nil {
			return err
		}
	}
	raw := append([]byte(nil), s.Raw...)
	r := audit.Record{Raw: raw}
	if err := audit.DecodeStored(raw, &r.Event); err != nil {
		return fmt.Errorf("event stored at %s: %w", next, err)
	}
	b.Cluster, b.Received = s.Cluster, recv
	b.Records = append(b.Records, r)
	m.next = next
	m.prog.ThisRun++
	return nil
}

// flush appends the batch and then, unless dst is Buffered and has room
// for more, commits. Cancelled or failed, the cursor stays before the
// batches not yet stored, and the next run sends them again.
func (m *mover) flush() error {
	if len(m.batch.Records) == 0 {
		return nil
	}
	res, err := m.dst.Append(m.ctx, &m.batch)
	if err != nil {
		return fmt.Errorf("store %d events in %s: %w", len(m.batch.Records), m.o.To, err)
	}
	m.pend.Next = m.next
	m.pend.Moved += int64(res.Stored)
	m.pend.Dups += int64(res.Duplicates)
	m.batch.Records = m.batch.Records[:0:0]
	if b, ok := m.dst.(Buffered); ok && b.Pending() < m.o.FlushBytes {
		m.report(false)
		return nil
	}
	return m.commit()
}

// commit flushes a Buffered destination and moves the cursor past every
// batch appended.
func (m *mover) commit() error {
	if b, ok := m.dst.(Buffered); ok {
		if err := b.Flush(m.ctx); err != nil {
			return fmt.Errorf("store %d events in %s: %w", m.pend.Moved-m.cur.Moved, m.o.To, err)
		}
	}
	if string(m.pend.Next) == string(m.cur.Next) {
		return nil
	}
	m.cur = m.pend
	if err := cursorfile.Save(vfs.OS, m.o.Cursor, m.cur); err != nil {
		return fmt.Errorf("save migration cursor %s: %w", m.o.Cursor, err)
	}
	m.report(false)
	return nil
}

func (m *mover) progress(done bool) Progress {
	p := m.prog
	p.Moved, p.Duplicates, p.Elapsed, p.Done = m.cur.Moved, m.cur.Dups, time.Since(m.start), done
	return p
}

func (m *mover) report(done bool) {
	if m.o.Progress != nil {
		m.o.Progress(m.progress(done))
	}
}
