package clickhouse

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/kubetrail/kubetrail/internal/pipeline"
	"github.com/kubetrail/kubetrail/internal/store/local"
	"github.com/kubetrail/kubetrail/internal/vfs"
	"github.com/kubetrail/kubetrail/internal/wal"
)

// A Collector is what serve, import and tail write to when the store is
// ClickHouse (docs/adr/0019-clickhouse-collectors.md). Append encodes a
// batch into rows and returns once they are fsync'd in the collector's own
// write-ahead log (internal/wal), so a sender is acknowledged without
// waiting for ClickHouse; Run ships the log's closed segments to
// ClickHouse, several per insert, retrying with backoff, and removes a
// segment only once ClickHouse took it. A crash between the insert and the
// removal sends the segment again; every answer counts the copies once
// by their key (dedupe.go), as it does an event two collectors sent. While ClickHouse is down the log grows up to MaxSpoolBytes; past
// it Append answers pipeline.ErrUnavailable (HTTP 503), so the API server
// keeps its batches.
type Collector struct {
	st   *Store
	opts CollectorOptions
	log  *wal.Log
	// unlock releases the folder's lock.
	unlock func() error

	// mu serialises the log's writers: the committer's appends and syncs
	// and the shipper's rotations.
	mu sync.Mutex
	// reqs carries batches to the committer, which makes groups of them
	// durable with one fsync. sendMu guards closing it: Append sends
	// under the read lock, Close closes under the write lock.
	reqs   chan *commitReq
	sendMu sync.RWMutex
	closed bool
	// wake tells the shipper that rows were committed.
	wake chan struct{}
	// spooled is the size of the WAL's segment files, all of which hold
	// rows not yet shipped (a segment is removed once shipped); unsent
	// counts the bytes appended to the open segment, which the shipper
	// closes before sending it.
	spooled, unsent atomic.Int64
	// lastInsert is when the shipper's last insert ended (Run and Drain
	// only).
	lastInsert time.Time
	// router sends rows to their shards when the store URL names its
	// cluster (shards.go); made by the shipper at its first insert and
	// again every ShardListEvery (routedAt), nil when the store has no
	// events_local.
	router   *shardRouter
	routedAt time.Time
	// split is the shipper's progress through a batch whose insert timed
	// out (Run and Drain only): sent in inserts of at most limit bytes,
	// of which the first rows rows from segment seq on are in ClickHouse.
	// limit 0: no batch is split.
	split struct {
		seq         uint64
		rows, limit int64
	}
	// bufs holds *[]byte buffers for Append's rows.
	bufs sync.Pool
	// schemaOK is set once the store's schema was checked (Dial does not).
	schemaOK atomic.Bool
	// full is set when a batch was refused for want of room, and cleared
	// when a shipped segment makes room.
	full          atomic.Bool
	stats         collectorCounters
	lastErr       atomic.Pointer[string]
	closeOnce     sync.Once
	committerDone chan struct{}
}

// CollectorOptions configure a Collector.
type CollectorOptions struct {
	// Dir is the collector's own folder: its WAL and its lock. One
	// process uses it at a time.
	Dir string
	// MaxSpoolBytes bounds the rows held in the WAL and not yet in
	// ClickHouse; an Append that would pass it is refused with
	// pipeline.ErrUnavailable. Default DefaultMaxSpoolBytes.
	MaxSpoolBytes int64
	// SegmentBytes is the size at which the WAL starts a new segment; a
	// backlog ships a segment or more per insert. Default 16 MiB.
	SegmentBytes int64
	// InsertBytes bounds the rows of one insert, in whole segments (one
	// segment larger than it goes alone). Default 64 MiB.
	InsertBytes int64
	// FlushEvery is how long rows may wait in the open segment for more
	// to join them in one insert, when fewer than SegmentBytes wait:
	// ClickHouse spends several times the CPU per row on small inserts
	// (ADR 0019). Default 1s.
	FlushEvery time.Duration
	// Backoff is the wait after the first failed insert; it doubles on
	// each failure up to MaxBackoff. Defaults 100ms and 10s.
	Backoff, MaxBackoff time.Duration
	// Logger gets a line when ClickHouse starts and stops failing.
	Logger *slog.Logger
	// NoSync skips fsync, for benchmarks that measure the rest.
	NoSync bool
	// ShardListEvery is how often a collector whose store URL names a
	// cluster reads its shards again from system.clusters, so that a
	// shard added or removed takes rows without a restart. Default 1
	// minute.
	ShardListEvery time.Duration
}

// DefaultMaxSpoolBytes is how much a collector holds for a ClickHouse
// that does not answer before it refuses batches.
const DefaultMaxSpoolBytes = 1 << 30

func (o *CollectorOptions) defaults() {
	if o.MaxSpoolBytes <= 0 {
		o.MaxSpoolBytes = DefaultMaxSpoolBytes
	}
	if o.SegmentBytes <= 0 {
		o.SegmentBytes = 16 << 20
	}
	if o.InsertBytes <= 0 {
		o.InsertBytes = 64 << 20
	}
	if o.FlushEvery <= 0 {
		o.FlushEvery = time.Second
	}
	if o.Backoff <= 0 {
		o.Backoff = 100 * time.Millisecond
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = 10 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.ShardListEvery <= 0 {
		o.ShardListEvery = time.Minute
	}
}

// CollectorStats are a collector's counters since it started.
type CollectorStats struct {
	// Spooled is the bytes in the WAL not yet in ClickHouse.
	Spooled int64
	// Accepted and Shipped count rows made durable and rows inserted.
	Accepted, Shipped int64
	// Inserts and Failures count inserts that succeeded and failed.
	Inserts, Failures int64
	// Refused counts batches refused because the spool was full.
	Refused int64
}

type collectorCounters struct {
	accepted, shipped, inserts, failures, refused atomic.Int64
}

type commitReq struct {
	payload []byte
	done    chan error
}

// spoolVersion is the first byte of every WAL record: a version, then
// rows as appendRows writes them, then spoolEnd (so that no record ends
// in eight zero bytes, which the WAL reserves).
const (
	spoolVersion byte = 1
	spoolEnd     byte = 0xff
)

// NewCollector opens (or creates) the collector's folder, taking its lock,
// and recovers what a previous run left unshipped: it ships first.
func NewCollector(st *Store, o CollectorOptions) (*Collector, error) {
	o.defaults()
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("create collector folder: %w", err)
	}
	lockPath := filepath.Join(o.Dir, "LOCK")
	if err := os.WriteFile(lockPath, nil, 0o600); err != nil {
		return nil, fmt.Errorf("collector lock: %w", err)
	}
	unlock, err := vfs.OS.Lock(lockPath, vfs.LockExclusiveNow)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return nil, fmt.Errorf("collector folder %s is in use by another kubetrail process", o.Dir)
	}
	if err != nil {
		return nil, fmt.Errorf("collector lock %s: %w", lockPath, err)
	}
	l, _, err := wal.Open(filepath.Join(o.Dir, "wal"), 0, wal.Options{SegmentBytes: o.SegmentBytes, NoSync: o.NoSync})
	if err != nil {
		unlock()
		return nil, fmt.Errorf("collector WAL in %s: %w", o.Dir, err)
	}
	c := &Collector{st: st, opts: o, log: l, unlock: unlock,
		reqs: make(chan *commitReq, 64), wake: make(chan struct{}, 1), committerDone: make(chan struct{})}
	for _, seq := range l.Segments() {
		if fi, err := os.Stat(wal.SegmentPath(filepath.Join(o.Dir, "wal"), seq)); err == nil {
			c.spooled.Add(fi.Size())
		}
	}
	go c.commit()
	return c, nil
}

var _ pipeline.Sink = (*Collector)(nil)

// Append encodes b and returns once its rows are durable in the WAL.
// Copies within b are dropped and counted as duplicates. A full spool is
// pipeline.ErrUnavailable, naming ClickHouse's last error.
func (c *Collector) Append(ctx context.Context, b *pipeline.Batch) (pipeline.Result, error) {
	buf := c.buffer(rowsSize(b))
	// The committer is done with the payload once Append returns.
	defer func() { c.bufs.Put(buf) }()
	payload, res := appendRows(append((*buf)[:0], spoolVersion), b)
	*buf = payload
	if res.Stored == 0 {
		return res, nil
	}
	payload = append(payload, spoolEnd)
	*buf = payload
	if int64(len(payload)) > c.opts.MaxSpoolBytes {
		// Never unavailable: no amount of shipping makes room for it, and
		// a sender told to wait (tail, import) would wait for ever.
		return pipeline.Result{}, fmt.Errorf("a batch of %d events is %d bytes of rows, more than the collector's whole spool (%d bytes, --spool-max-bytes): raise it",
			res.Stored, len(payload), c.opts.MaxSpoolBytes)
	}
	if n := c.spooled.Load(); n+int64(len(payload)) > c.opts.MaxSpoolBytes {
		c.stats.refused.Add(1)
		c.full.Store(true)
		why := "not yet"
		if p := c.lastErr.Load(); p != nil {
			why = *p
		}
		return pipeline.Result{}, fmt.Errorf("%w: the collector holds %d bytes ClickHouse has not taken (limit %d, --spool-max-bytes); ClickHouse: %s",
			pipeline.ErrUnavailable, n, c.opts.MaxSpoolBytes, why)
	}
	req := &commitReq{payload: payload, done: make(chan error, 1)}
	c.sendMu.RLock()
	if c.closed {
		c.sendMu.RUnlock()
		return pipeline.Result{}, pipeline.ErrClosed
	}
	select {
	case c.reqs <- req:
	case <-ctx.Done():
		c.sendMu.RUnlock()
		return pipeline.Result{}, ctx.Err()
	}
	c.sendMu.RUnlock()
	if err := <-req.done; err != nil {
		return pipeline.Result{}, err
	}
	c.stats.accepted.Add(int64(res.Stored))
	return res, nil
}

// buffer returns a buffer of at least n bytes for a batch's rows; reused,
// since a batch's rows are megabytes that would otherwise be allocated
// and cleared for every batch.
func (c *Collector) buffer(n int) *[]byte {
	if b, ok := c.bufs.Get().(*[]byte); ok && cap(*b) >= n {
		return b
	}
	b := make([]byte, 0, n)
	return &b
}

// commit is the committer: it writes every waiting batch, syncs once and
// answers them all (group commit).
func (c *Collector) commit() {
	defer close(c.committerDone)
	for first := range c.reqs {
		group := []*commitReq{first}
	more:
		for len(group) < 256 {
			select {
			case r, ok := <-c.reqs:
				if !ok {
					break more
				}
				group = append(group, r)
			default:
				break more
			}
		}
		err := c.write(group)
		for _, r := range group {
			r.done <- err
		}
		if err == nil {
			select {
			case c.wake <- struct{}{}:
			default:
			}
		}
	}
}

func (c *Collector) write(group []*commitReq) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	before := c.log.Size()
	for _, r := range group {
		if err := c.log.Append(r.payload); err != nil {
			c.log.Discard()
			return fmt.Errorf("collector WAL: %w", err)
		}
	}
	if err := c.log.Sync(); err != nil {
		return fmt.Errorf("collector WAL: %w", err)
	}
	n := c.log.Size() - before
	c.spooled.Add(n)
	c.unsent.Add(n)
	if c.log.NeedsRotate() {
		return c.rotateLocked()
	}
	return nil
}

// rotateLocked closes the open segment and starts the next; c.mu is held.
func (c *Collector) rotateLocked() error {
	if _, err := c.log.Rotate(); err != nil {
		return fmt.Errorf("collector WAL: %w", err)
	}
	c.spooled.Add(c.log.Size()) // the new segment's header
	c.unsent.Store(0)
	return nil
}

// Stats returns the collector's counters.
func (c *Collector) Stats() CollectorStats {
	return CollectorStats{Spooled: c.spooled.Load(), Accepted: c.stats.accepted.Load(), Shipped: c.stats.shipped.Load(),
		Inserts: c.stats.inserts.Load(), Failures: c.stats.failures.Load(), Refused: c.stats.refused.Load()}
}

// Ready reports whether Append takes batches: nil unless a batch was
// refused for want of room and nothing has shipped since.
func (c *Collector) Ready() error {
	if n := c.spooled.Load(); c.full.Load() {
		return fmt.Errorf("the collector's spool is full (%d bytes not yet in ClickHouse)", n)
	}
	return nil
}

// Run ships until ctx ends: closed segments first, oldest first; the
// open segment is closed when nothing else is left to ship. A failed
// insert is retried with backoff, forever: the WAL keeps the rows.
func (c *Collector) Run(ctx context.Context) error {
	backoff := time.Duration(0) // 0 while inserts work
	for {
		shipped, err := c.shipOnce(ctx, false)
		if ctx.Err() != nil {
			return nil
		}
		var wait time.Duration
		switch {
		case err != nil:
			c.stats.failures.Add(1)
			msg := err.Error()
			c.lastErr.Store(&msg)
			if backoff == 0 {
				c.opts.Logger.Warn("ClickHouse insert failed; the rows stay in the collector's WAL and are retried", "err", err)
			}
			backoff = min(max(2*backoff, c.opts.Backoff), c.opts.MaxBackoff)
			wait = backoff
		case backoff > 0:
			c.opts.Logger.Info("ClickHouse inserts work again", "spooled_bytes", c.spooled.Load())
			backoff = 0
			continue
		case shipped:
			continue
		case c.unsent.Load() > 0:
			// Rows in the open segment wait for FlushEvery to pass.
			wait = max(time.Until(c.lastInsert.Add(c.opts.FlushEvery)), time.Millisecond)
		}
		var timer <-chan time.Time
		if wait > 0 {
			timer = time.After(wait)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-c.wake:
			if err != nil {
				// Keep backing off: a new batch is no sign ClickHouse is back.
				select {
				case <-ctx.Done():
					return nil
				case <-timer:
				}
			}
		case <-timer:
		}
	}
}

// Drain ships everything committed so far, retrying failed inserts with
// backoff until it succeeds or ctx ends (then the rest ships on the next
// start). It must not run beside Run.
func (c *Collector) Drain(ctx context.Context) error {
	wait := time.Duration(0)
	for {
		shipped, err := c.shipOnce(ctx, true)
		if err == nil && !shipped {
			return nil
		}
		if err != nil {
			c.stats.failures.Add(1)
			wait = min(max(2*wait, c.opts.Backoff), c.opts.MaxBackoff)
			c.opts.Logger.Warn("ClickHouse insert failed; retrying", "err", err, "retry_in", wait)
			select {
			case <-ctx.Done():
				return fmt.Errorf("%d bytes of rows not yet in ClickHouse stay in %s and ship at the next start: %w", c.spooled.Load(), c.opts.Dir, err)
			case <-time.After(wait):
			}
		}
	}
}

// shipOnce sends the oldest closed segments in one insert and removes
// them. It reports whether it sent anything. The open segment is closed
// and sent when nothing else waits, if now or FlushEvery has passed
// since the last insert. The insert's body is
// streamed from the segment files as ClickHouse reads it, so the server
// parses while the collector reads, and no body is held in memory.
func (c *Collector) shipOnce(ctx context.Context, now bool) (bool, error) {
	segs := c.closedSegments()
	due := now || time.Since(c.lastInsert) >= c.opts.FlushEvery
	if len(segs) == 0 && c.unsent.Load() > 0 && due {
		if err := c.rotate(); err != nil {
			return false, err
		}
		segs = c.closedSegments()
	}
	if len(segs) == 0 {
		return false, nil
	}
	if !c.schemaOK.Load() {
		if err := c.st.checkSchema(ctx); err != nil {
			return false, err
		}
		c.schemaOK.Store(true)
	}
	dir := filepath.Join(c.opts.Dir, "wal")
	var paths []string
	var bytes int64
	for _, seq := range segs {
		path := wal.SegmentPath(dir, seq)
		fi, err := os.Stat(path)
		if err != nil {
			return false, fmt.Errorf("collector WAL: %w", err)
		}
		if len(paths) > 0 && bytes+fi.Size() > c.opts.InsertBytes {
			break
		}
		paths = append(paths, path)
		bytes += fi.Size()
	}
	if c.split.limit > 0 && c.split.seq != segs[0] {
		c.split.rows, c.split.limit = 0, 0 // the split batch is no longer the oldest
	}
	win := window{skip: c.split.rows, limit: c.split.limit}
	st := stamper{seq: c.st.nextSeq()}
	var damaged []string
	var err error
	if err := c.route(ctx); err != nil {
		return false, err
	}
	if c.router != nil {
		damaged, err = c.insertSharded(ctx, c.router, paths, &win, &st)
	} else {
		damaged, err = c.insert(ctx, paths, &win, &st)
	}
	if errors.Is(err, errInsertTimeout) {
		c.splitAfterTimeout(segs[0], paths[0], bytes, win.rows == 1 && win.full)
	}
	if err != nil {
		return false, err
	}
	c.lastInsert = time.Now()
	c.stats.inserts.Add(1)
	if win.full {
		// Part of a split batch: its segments stay until all of it is in.
		c.split.seq, c.split.rows = segs[0], c.split.rows+win.rows
		c.stats.shipped.Add(int64(st.ord))
		return true, nil
	}
	c.split.rows, c.split.limit = 0, 0
	err = c.dropShipped(damaged, segs[:len(paths)])
	if err == nil {
		c.spooled.Add(-bytes)
		c.full.Store(false)
	}
	// Counted once the spool has let go of the rows: whoever sees them
	// shipped in Stats finds their room free for the next batch.
	c.stats.shipped.Add(int64(st.ord))
	return true, err
}

// splitAfterTimeout halves the inserts of the batch starting at segment
// seq (path; bytes of segments) after one timed out: a smaller insert
// ends sooner, and must end within InsertTimeout for followers to see its
// rows (ADR 0021). At one row (single) it cannot be split: that row is
// retried with backoff, and said so.
func (c *Collector) splitAfterTimeout(seq uint64, path string, bytes int64, single bool) {
	c.split.seq = seq
	if c.split.limit == 0 {
		c.split.limit = bytes
	}
	if single || c.split.limit <= 1 {
		c.opts.Logger.Error("an insert of a single row took longer than the insert timeout; retrying it with backoff", "segment", path, "row", c.split.rows)
		return
	}
	c.split.limit /= 2
	c.opts.Logger.Warn("a ClickHouse insert took longer than the insert timeout; sending its rows again in smaller inserts", "segment", path, "rows_already_in", c.split.rows, "insert_bytes", c.split.limit)
}

// route reads the shards of the store URL's cluster before the first
// insert and every ShardListEvery after it. A list that cannot be read
// again leaves the one read before in use; each shard keeps the replica
// it had moved on to if it still has it.
func (c *Collector) route(ctx context.Context) error {
	if c.st.c.cfg.Cluster == "" || (!c.routedAt.IsZero() && time.Since(c.routedAt) < c.opts.ShardListEvery) {
		return nil
	}
	r, err := newShardRouter(ctx, c.st.c.cfg)
	if err != nil {
		if c.routedAt.IsZero() {
			return err
		}
		c.opts.Logger.Warn("reading the ClickHouse cluster's shards again failed; keeping the list read before", "err", err)
		c.routedAt = time.Now()
		return nil
	}
	if r != nil && c.router != nil {
		for i := range min(len(r.next), len(c.router.next)) {
			if c.router.next[i] < len(r.replicas[i]) {
				r.next[i] = c.router.next[i]
			}
		}
	}
	c.router, c.routedAt = r, time.Now()
	return nil
}

// DamagedSuffix ends the name of a WAL segment in which shipping met
// damage: its intact records shipped, the damaged ones never reached
// ClickHouse, and the file is kept for a person to look at and remove.
const DamagedSuffix = ".damaged"

// DamagedSegments returns the paths of the segments kept as damaged in
// the collector's WAL folder, this run's and earlier runs', until a
// person removes them.
func (c *Collector) DamagedSegments() ([]string, error) {
	m, err := filepath.Glob(filepath.Join(c.opts.Dir, "wal", "*"+DamagedSuffix))
	if err != nil {
		return nil, fmt.Errorf("collector WAL: %w", err)
	}
	return m, nil
}

// Damage lists the damaged segments as what every answer from the store
// leaves out: events this collector acknowledged that never reached
// ClickHouse (serve --store names them in Kubetrail-Damage headers). A
// folder that cannot be read is itself listed.
func (c *Collector) Damage() []local.Damage {
	paths, err := c.DamagedSegments()
	if err != nil {
		return []local.Damage{{Path: filepath.Join(c.opts.Dir, "wal"), Reason: err.Error()}}
	}
	out := make([]local.Damage, len(paths))
	for i, p := range paths {
		out[i] = local.Damage{Path: p, Reason: "records of this collector's WAL could not be read back; their events, acknowledged, never reached ClickHouse"}
	}
	return out
}

// insert sends the rows of the segments at paths that win lets through,
// stamped by st, in one insert into the events table, and returns the
// segments in which it met damage.
func (c *Collector) insert(ctx context.Context, paths []string, win *window, st *stamper) ([]string, error) {
	pr, pw := io.Pipe()
	var damaged []string
	written := make(chan error, 1)
	go func() {
		var err error
		damaged, err = c.stream(pw, paths, win, st)
		pw.CloseWithError(err) // nil: the body ends
		written <- err
	}()
	err := c.st.insertStream(ctx, bigChunks{pr})
	pr.CloseWithError(errors.New("insert ended")) // unblocks the writer if the request stopped reading
	if werr := <-written; werr != nil && err == nil {
		// The request read a body cut short; it must not count as sent.
		err = werr
	}
	return damaged, err
}

// dropShipped removes the WAL segments an insert shipped, keeping the
// damaged ones beside them for a person to look at.
func (c *Collector) dropShipped(damaged []string, segs []uint64) error {
	for _, path := range damaged {
		// Remove below tolerates its absence.
		if err := os.Rename(path, path+DamagedSuffix); err != nil {
			return fmt.Errorf("collector WAL: keep damaged segment: %w", err)
		}
	}
	for _, seq := range segs {
		if err := c.log.Remove(seq); err != nil {
			return fmt.Errorf("collector WAL: remove shipped segment: %w", err)
		}
	}
	return nil
}

// stream writes the rows of the segments at paths that win lets
// through to w, stamped by st, and returns the segments in which it met
// damage.
func (c *Collector) stream(w io.Writer, paths []string, win *window, st *stamper) ([]string, error) {
	bw := bufio.NewWriterSize(w, 1<<20)
	damaged, err := c.scanSegments(paths, win, func(rows []byte) error { return st.write(bw, rows) })
	if err != nil {
		return damaged, err
	}
	return damaged, bw.Flush()
}

// scanSegments calls fn with the rows of each record of the segments at
// paths that w lets through, and returns the segments in which it met damage.
func (c *Collector) scanSegments(paths []string, w *window, fn func(rows []byte) error) ([]string, error) {
	var damaged []string
	for _, path := range paths {
		res, err := wal.Scan(path, func(_ int64, p []byte) error {
			if len(p) < 2 || p[0] != spoolVersion || p[len(p)-1] != spoolEnd {
				return fmt.Errorf("a record that is not rows of version %d", spoolVersion)
			}
			rows, err := w.cut(p[1 : len(p)-1])
			if err != nil || len(rows) == 0 {
				return err
			}
			return fn(rows)
		})
		if err != nil {
			return damaged, fmt.Errorf("collector WAL %s: %w", path, err)
		}
		if d := res.Damaged(); len(d) > 0 {
			// A closed segment's damage is not a crash's torn tail (those
			// are cut when the WAL opens): say so, ship what is intact.
			damaged = append(damaged, path)
			c.opts.Logger.Error("damaged records in the collector's WAL; the intact ones ship, the file is kept as .damaged", "file", path, "damage", fmt.Sprint(d))
		}
	}
	return damaged, nil
}

// bigChunks is an insert's body read from the pipe in 1 MiB pieces.
// net/http sends a body of unknown length in chunks, one per Read of its
// 32 KiB copy buffer, each flushed in its own system call, unless the
// body is an io.WriterTo: then each Write is a chunk. Read in 1 MiB
// pieces, 200k events leave in 400 writes instead of 13,000, and
// ClickHouse reads fewer, larger chunks.
type bigChunks struct{ r io.Reader }

func (b bigChunks) Read(p []byte) (int, error) { return b.r.Read(p) }

func (b bigChunks) WriteTo(w io.Writer) (int64, error) {
	buf := make([]byte, 1<<20)
	var total int64
	for {
		n, err := io.ReadFull(b.r, buf)
		if n > 0 {
			m, werr := w.Write(buf[:n])
			total += int64(m)
			if werr != nil {
				return total, werr
			}
		}
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// closedSegments returns the WAL's closed segments, oldest first.
func (c *Collector) closedSegments() []uint64 {
	segs := c.log.Segments()
	return segs[:len(segs)-1]
}

// rotate closes the open segment so that it can ship.
func (c *Collector) rotate() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.unsent.Load() == 0 {
		return nil
	}
	return c.rotateLocked()
}

// Close stops taking batches and closes the WAL. Rows not shipped stay in
// it for the next start; call Drain first to ship them.
func (c *Collector) Close() error {
	var err error
	c.closeOnce.Do(func() {
		c.sendMu.Lock()
		c.closed = true
		close(c.reqs)
		c.sendMu.Unlock()
		<-c.committerDone
		c.mu.Lock()
		err = c.log.Close()
		c.mu.Unlock()
		err = errors.Join(err, c.unlock())
	})
	return err
}
