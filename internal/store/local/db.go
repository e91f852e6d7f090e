// Package local is kubetrail's embedded store: one folder holding a
// write-ahead log for the newest events and immutable, compressed segments
// for the rest. Its writer side is a pipeline.Sink that acknowledges a batch
// only once it is durable, and never stores the same event twice.
package local

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/kubetrail/kubetrail/internal/audit"
	"github.com/kubetrail/kubetrail/internal/pipeline"
	"github.com/kubetrail/kubetrail/internal/vfs"
	"github.com/kubetrail/kubetrail/internal/wal"
)

// Options configure a DB.
type Options struct {
	// WALSegmentBytes is the WAL segment size; a full segment is sealed.
	WALSegmentBytes int64
	// SealAfter seals a WAL segment that has held events this long even when
	// it is not full, so that new events reach segments in bounded time.
	SealAfter time.Duration
	// MaxInflightBytes bounds the raw bytes of batches waiting to be made
	// durable; past it Append answers ErrOverloaded.
	MaxInflightBytes int64
	// MaxQueue bounds the batches waiting to be made durable.
	MaxQueue int
	// DedupCacheKeys bounds how many keys of sealed segments are kept in
	// memory for de-duplication; the least recently needed are dropped and
	// computed again when needed.
	DedupCacheKeys int
	// Bulk makes Append write the events it keeps straight into segments,
	// without the WAL (bulk.go): for an import, whose file is still there
	// to import again. Append then returns once its events are
	// de-duplicated and in memory, not once they are durable: they are
	// durable when Close returns nil. A crash loses the events not yet in
	// a segment, never leaves part of one, and never makes importing the
	// same events again store any twice. Subscribers are not told of
	// events stored so. The events' bytes (Record.Raw) are kept until
	// they are written: the caller must not reuse them.
	Bulk bool
	// SegmentFormat is the format new segments (sealed, compacted, bulk
	// loaded) are written in: 4, or 5 (docs/adr/0025); 0 means 5. Every
	// format is read whatever this says, so a folder may hold both.
	SegmentFormat int
	// NoSync turns fsync off. Only for tests and benchmarks of other parts:
	// nothing is durable with it.
	NoSync bool
	// Logger receives recovery and sealing reports.
	Logger *slog.Logger
	// FS is the file system every file of the data folder is read and
	// written through, locks included; nil means the real one. Tests give
	// a strict in-memory one to crash it, or one that holds syncs to watch
	// group commit.
	FS vfs.FS
	// layout, set by tests, makes segments' groups and blocks small.
	layout segLayout
	// sealers, set by tests, is the number of sealing goroutines (default
	// one per CPU): one makes the order of a test's file changes the same
	// on every run.
	sealers int
}

func (o Options) withDefaults() Options {
	if o.WALSegmentBytes <= 0 {
		o.WALSegmentBytes = wal.DefaultSegmentBytes
	}
	if o.SealAfter <= 0 {
		o.SealAfter = 5 * time.Minute
	}
	if o.MaxInflightBytes <= 0 {
		o.MaxInflightBytes = 512 << 20
	}
	if o.DedupCacheKeys <= 0 {
		o.DedupCacheKeys = 4 << 20
	}
	if o.MaxQueue <= 0 {
		o.MaxQueue = 4096
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.FS == nil {
		o.FS = vfs.OS
	}
	if o.SegmentFormat != 0 && o.layout.version == 0 {
		o.layout.version = o.SegmentFormat
	}
	return o
}

// Stats are counters for metrics.
type Stats struct {
	Stored     atomic.Int64 // events stored
	Duplicates atomic.Int64 // events dropped as already stored
	Batches    atomic.Int64 // batches made durable
	Syncs      atomic.Int64 // WAL syncs (group commits)
	Overloaded atomic.Int64 // batches refused with ErrOverloaded
	Failed     atomic.Int64 // batches that failed to become durable
	Sealed     atomic.Int64 // WAL segments sealed into segments
	Compacted  atomic.Int64 // small segments merged into larger ones
	// Quarantined counts damaged stretches of files kept aside in the
	// quarantine folder instead of being read or deleted: WAL records when
	// their segment is sealed, segments that cannot be opened on Open.
	Quarantined atomic.Int64
}

// DB is an open data folder. Append is safe for concurrent use.
type DB struct {
	dir string
	fs  vfs.FS
	// segs shares the sealed segments between the readers OpenReader
	// opens.
	segs *segCache
	// views shares the folder's listing between the readers OpenReader
	// opens, until the DB changes the folder (folderview.go).
	views views
	// heads shares the WAL files' decoded durable prefixes between the
	// readers OpenReader opens, and walDurable says how far the WAL is
	// durable (set after each sync).
	heads      *walHeads
	walDurable atomic.Pointer[walPos]
	opts       Options
	log        *slog.Logger
	lock       folderLock
	wal        *wal.Log
	stats      Stats
	reqs       chan *request
	seal       chan uint64
	done       chan struct{}
	wg         sync.WaitGroup // the committer
	sealWG     sync.WaitGroup // the sealers
	closed     atomic.Bool
	closeM     sync.Mutex
	sendMu     sync.RWMutex // held for reading while sending on reqs, for writing to close it

	inflight atomic.Int64

	dd *dedup

	// chain links sealed segments into the hash chain (chain.go); set by
	// recover before anything is sealed.
	chain *chainer

	// pending holds, per WAL segment not yet sealed, the columns of its
	// events in WAL order, built from the events already decoded at
	// ingest, so sealing need not decode them again. Guarded by pendingMu;
	// only the committer adds to them.
	pendingMu sync.Mutex
	pending   map[uint64]*columnBuilder

	unavailable atomic.Pointer[error]

	// unlisted is a WAL segment started but not yet listed in the ledger
	// (listing it failed, a full disk): the committer lists it before it
	// writes anything to it. Only the committer uses it.
	unlisted uint64

	// start is the position of the first event this process stores: the
	// WAL segment Open started is new.
	start Pos

	subsMu      sync.Mutex
	subs        map[*Subscription]struct{}
	observeSync atomic.Pointer[func(time.Duration)]

	// maintMu runs compaction and retention one at a time; Close waits
	// for the one running. infos caches segment sizes and time ranges for
	// them; it is guarded by maintMu.
	// ledgerMu orders changes to the WAL ledger (walledger.go).
	ledgerMu sync.Mutex

	maintMu sync.Mutex
	infos   map[string]segInfo
	// crashAt, set by tests, stops a compaction at a step as a crash would.
	crashAt func(step string) bool

	// bulk is set with Options.Bulk.
	bulk *bulkLoad
}

var _ pipeline.Sink = (*DB)(nil)

type request struct {
	batch      *pipeline.Batch
	keys       []Key
	times      []int64
	cols       []colRow
	prints     []uint32 // audit ID prints
	minT, maxT int64
	bytes      int64
	done       chan reply
}

type reply struct {
	res pipeline.Result
	err error
}

// Paths inside a data folder.
const (
	walDir     = "wal"
	segmentDir = "segments"
	lockFile   = "LOCK"
)

// Open opens the data folder for writing, creating it if needed. Only one
// process may have a folder open for writing (see lockFolder); readers
// need no lock.
// Open recovers from a crash: it cuts a torn WAL tail, reports it, and seals
// WAL segments left over from the last run.
func Open(dir string, opts Options) (*DB, error) {
	if f := opts.SegmentFormat; f != 0 && f != 4 && f != segVersion {
		return nil, fmt.Errorf("segment format %d: kubetrail writes format 4 or %d", f, segVersion)
	}
	opts = opts.withDefaults()
	fs := opts.FS
	// Synced as it is made, or a crash could take the folder, and every
	// segment sealed into it, away.
	if err := vfs.MkdirAllSynced(fs, filepath.Join(dir, segmentDir), 0o700); err != nil {
		return nil, fmt.Errorf("create data folder: %w", err)
	}
	fs.Chmod(dir, 0o700)
	lock, err := lockFolder(fs, dir)
	if err != nil {
		return nil, err
	}
	db := &DB{
		dir: dir, fs: fs, opts: opts, log: opts.Logger, lock: lock, segs: newSegCache(), heads: newWALHeads(),
		reqs:    make(chan *request, opts.MaxQueue),
		seal:    make(chan uint64, 1<<16),
		done:    make(chan struct{}),
		dd:      newDedup(fs, opts.DedupCacheKeys),
		pending: map[uint64]*columnBuilder{},
	}
	// Every change the DB makes to its folder is counted: its readers
	// share one listing of the folder until the next change.
	db.fs = vfs.CountChanges(fs, &db.views.changes)
	if err := db.recover(); err != nil {
		lock.Close()
		return nil, err
	}
	if err := db.reconcileManifest(); err != nil {
		lock.Close()
		return nil, err
	}
	// Sealing decodes and compresses every event again: one sealer per CPU
	// keeps it up with ingest.
	sealers := max(1, runtime.GOMAXPROCS(0))
	if opts.sealers > 0 {
		sealers = opts.sealers
	}
	if opts.Bulk {
		db.bulk = newBulkLoad(sealers)
	}
	db.wg.Add(1)
	go db.commitLoop()
	db.sealWG.Add(sealers)
	for range sealers {
		go db.sealLoop()
	}
	return db, nil
}

func (db *DB) recover() error {
	segDir := filepath.Join(db.dir, segmentDir)
	if err := removeTemporary(db.fs, segDir); err != nil {
		return fmt.Errorf("remove unfinished segments: %w", err)
	}
	if err := db.removeSuperseded(); err != nil {
		return err
	}
	segs, err := listSegments(db.fs, segDir)
	if err != nil {
		return err
	}
	var maxSealed uint64
	covered := map[uint64]bool{}
	retired, _, err := readRetired(db.fs, segDir)
	if err != nil {
		return err
	}
	// The chain goes on from the newest segment's head, sealed or retired.
	var head hash
	var headSeq uint64
	events := 0
	live := map[string]bool{}
	for _, s := range segs {
		live[filepath.Base(s.path)] = true
	}
	for _, r := range retired {
		if live[r.name] {
			continue // recorded, then a crash before its deletion
		}
		events += r.count
		if r.last > headSeq {
			headSeq, head = r.last, r.head
		}
	}
	for _, s := range segs {
		maxSealed = max(maxSealed, s.last)
		r, err := openSegment(db.fs, s.path)
		if err != nil {
			// Not covered: a WAL segment it holds that is still there is
			// sealed again.
			if err := db.quarantineSegment(s.path, err); err != nil {
				return err
			}
			continue
		}
		for q := s.first; q <= s.last; q++ {
			covered[q] = true
		}
		events += r.meta.Count
		if s.last > headSeq {
			headSeq, head = s.last, hash{}
			if t := r.meta.Trust; t != nil && t.Linked {
				head = t.head(r.meta.parts())
			}
		}
		db.dd.addSegment(s.path, r.meta.MinTime, r.meta.MaxTime, nil)
		r.close()
	}
	db.chain = newChainer(head, max(headSeq, maxSealed), events)
	// A number the ledger lists is never given to a new WAL segment: a
	// segment deleted behind our back must stay missing, not be replaced
	// by an empty one of the same name.
	if listed, _, _, err := readLedger(db.fs, filepath.Join(db.dir, walDir)); err == nil {
		for s := range listed {
			maxSealed = max(maxSealed, s)
		}
	}
	l, rec, err := wal.Open(filepath.Join(db.dir, walDir), maxSealed, wal.Options{SegmentBytes: db.opts.WALSegmentBytes, NoSync: db.opts.NoSync, FS: db.fs})
	if err != nil {
		return err
	}
	db.wal = l
	db.walDurable.Store(&walPos{seq: l.Current(), off: l.Size()})
	db.start = Pos{WAL: l.Current()}
	if err := db.reconcileLedger(covered); err != nil {
		return fmt.Errorf("WAL ledger: %w", err)
	}
	if rec.TornBytes > 0 {
		db.log.Warn("cut torn WAL tail left by a crash; every event before it is kept",
			"segment", wal.SegmentPath(filepath.Join(db.dir, walDir), rec.TornSegment),
			"offset", rec.TornOffset, "bytes_cut", rec.TornBytes, "reason", rec.Reason)
	}
	for _, seq := range l.Segments() {
		if seq == l.Current() {
			continue
		}
		if covered[seq] {
			// Sealed before a crash that came before its removal.
			if err := l.Remove(seq); err != nil {
				return err
			}
			continue
		}
		n := 0
		path := wal.SegmentPath(filepath.Join(db.dir, walDir), seq)
		res, err := wal.ScanFS(db.fs, path, func(_ int64, p []byte) error {
			if validBatch(p) != nil {
				return nil // quarantined when the segment is sealed
			}
			return decodeBatch(p, func(e entry) error {
				db.dd.head[e.key] = struct{}{}
				n++
				return nil
			})
		})
		if err != nil {
			return fmt.Errorf("replay WAL segment %s: %w", path, err)
		}
		for _, d := range res.Damage {
			db.log.Error("WAL segment holds damaged bytes; every valid record around them is kept, and the damaged bytes are quarantined when it is sealed",
				"segment", path, "offset", d.Offset, "bytes", d.Length, "reason", d.Reason)
		}
		if n > 0 {
			db.log.Info("replayed WAL segment left by the last run", "segment", seq, "events", n)
		}
		db.queueSeal(seq)
	}
	return nil
}

// queueSeal gives a closed WAL segment to the sealers, in WAL order.
func (db *DB) queueSeal(seq uint64) {
	db.chain.queued(seq)
	db.seal <- seq
}

// Append stores a batch durably. See pipeline.Sink.
func (db *DB) Append(ctx context.Context, b *pipeline.Batch) (pipeline.Result, error) {
	if db.closed.Load() {
		return pipeline.Result{}, pipeline.ErrClosed
	}
	if p := db.unavailable.Load(); p != nil {
		return pipeline.Result{}, fmt.Errorf("%w: %v", pipeline.ErrUnavailable, *p)
	}
	req := &request{batch: b, keys: make([]Key, len(b.Records)), times: make([]int64, len(b.Records)), cols: make([]colRow, len(b.Records)), prints: make([]uint32, len(b.Records)), done: make(chan reply, 1)}
	var minT, maxT int64
	for i := range b.Records {
		r := &b.Records[i]
		req.keys[i] = KeyOf(b.Cluster, r.Raw)
		columnValues(b.Cluster, &r.Event, &req.cols[i])
		req.prints[i] = auditPrint(r.Event.AuditID)
		t := r.Event.Time().UnixMicro()
		req.times[i] = t
		if i == 0 || t < minT {
			minT = t
		}
		if i == 0 || t > maxT {
			maxT = t
		}
		req.bytes += int64(len(r.Raw))
	}
	req.minT, req.maxT = minT, maxT
	db.dd.preload(minT, maxT)
	if db.inflight.Add(req.bytes) > db.opts.MaxInflightBytes && req.bytes < db.opts.MaxInflightBytes {
		db.inflight.Add(-req.bytes)
		db.stats.Overloaded.Add(1)
		return pipeline.Result{}, pipeline.ErrOverloaded
	}
	db.sendMu.RLock()
	if db.closed.Load() {
		db.sendMu.RUnlock()
		db.inflight.Add(-req.bytes)
		return pipeline.Result{}, pipeline.ErrClosed
	}
	select {
	case db.reqs <- req:
		db.sendMu.RUnlock()
	default:
		db.sendMu.RUnlock()
		db.inflight.Add(-req.bytes)
		db.stats.Overloaded.Add(1)
		return pipeline.Result{}, pipeline.ErrOverloaded
	}
	select {
	case r := <-req.done:
		return r.res, r.err
	case <-ctx.Done():
		// The batch may still become durable; the sender was not told so
		// and will retry, which de-duplication makes harmless.
		return pipeline.Result{}, ctx.Err()
	}
}

// commitLoop is the single writer: it takes every batch waiting, drops
// events already stored, appends the rest to the WAL, syncs once for the
// whole group and only then answers each batch.
func (db *DB) commitLoop() {
	defer db.wg.Done()
	var (
		group   []*request
		buf     []byte
		raws    [][]byte
		times   []int64
		started = time.Now()
		dirty   bool
	)
	ticker := time.NewTicker(time.Second)
	defer ticker.Stop()
	for {
		group = group[:0]
		select {
		case req, ok := <-db.reqs:
			if !ok {
				db.finishWAL(dirty)
				return
			}
			group = append(group, req)
		case <-ticker.C:
			if dirty && time.Since(started) >= db.opts.SealAfter {
				dirty = db.rotateLeft()
			}
			continue
		}
	drain:
		for len(group) < 1024 {
			select {
			case req, ok := <-db.reqs:
				if !ok {
					break drain
				}
				group = append(group, req)
			default:
				break drain
			}
		}
		if err := db.prepareWAL(); err != nil {
			db.refuse(group, err)
			continue
		}
		results := make([]pipeline.Result, len(group))
		refused := make([]error, len(group))
		keptIdx := make([][]int, len(group))
		firstOrd := make([]int, len(group)) // each request's first event's ordinal in the WAL segment
		var added []Key
		var err error
		seq := db.wal.Current()
		cb := db.columnsFor(seq)
		rowsBefore := cb.n
		db.dd.mu.Lock()
		for gi, req := range group {
			raws, times = raws[:0], times[:0]
			kept := make([]Key, 0, len(req.keys))
			cands := db.dd.candidates(req.minT, req.maxT)
			recv := recvOf(req.batch)
			reqRows := cb.n
			for i := range req.batch.Records {
				k := req.keys[i]
				dup, derr := db.dd.contains(k, req.times[i], cands)
				if derr != nil {
					// Storing it might store it twice: the sender must
					// retry once the segment is readable or set aside.
					refused[gi] = derr
					break
				}
				if dup {
					results[gi].Duplicates++
					continue
				}
				db.dd.head[k] = struct{}{}
				keptIdx[gi] = append(keptIdx[gi], i)
				cb.add(req.times[i], recv, &req.cols[i], req.prints[i])
				kept = append(kept, k)
				raws = append(raws, req.batch.Records[i].Raw)
				times = append(times, req.times[i])
			}
			if refused[gi] != nil {
				cb.truncate(reqRows)
				for _, k := range kept {
					delete(db.dd.head, k)
				}
				keptIdx[gi], results[gi] = nil, pipeline.Result{}
				continue
			}
			results[gi].Stored = len(raws)
			firstOrd[gi] = reqRows
			added = append(added, kept...)
			if len(raws) == 0 || err != nil {
				continue
			}
			if db.bulk != nil {
				db.bulk.add(req.batch.Cluster, recv, kept, times, raws)
				continue
			}
			buf = appendBatch(buf[:0], req.batch.Cluster, recv, kept, times, raws)
			err = db.wal.Append(buf)
		}
		db.dd.mu.Unlock()
		if err == nil && len(added) > 0 && db.bulk == nil {
			t0 := time.Now()
			err = db.wal.Sync()
			if f := db.observeSync.Load(); f != nil {
				(*f)(time.Since(t0))
			}
			db.stats.Syncs.Add(1)
		}
		if err != nil {
			cb.truncate(rowsBefore)
		}
		if err != nil {
			db.wal.Discard()
			db.dd.mu.Lock()
			for _, k := range added {
				delete(db.dd.head, k)
			}
			db.dd.mu.Unlock()
			if errors.Is(err, wal.ErrBroken) {
				db.unavailable.Store(&err)
			}
			db.refuse(group, err)
			continue
		}
		if len(added) > 0 && db.bulk == nil {
			// The columns before the position: a reader reads the
			// position first and expects columns for what is before it.
			cb.publish()
			db.walDurable.Store(&walPos{seq: seq, off: db.wal.Size()})
		}
		if len(added) > 0 && !dirty {
			dirty, started = true, time.Now()
		}
		if len(added) > 0 && db.bulk == nil {
			db.publish(group, keptIdx, seq, firstOrd)
		}
		for gi, req := range group {
			if refused[gi] != nil {
				db.inflight.Add(-req.bytes)
				db.stats.Failed.Add(1)
				db.log.Error("batch refused: cannot read a segment to check for duplicates", "err", refused[gi])
				req.done <- reply{err: fmt.Errorf("%w: cannot check for duplicates: %v", pipeline.ErrUnavailable, refused[gi])}
				continue
			}
			db.inflight.Add(-req.bytes)
			db.stats.Batches.Add(1)
			db.stats.Stored.Add(int64(results[gi].Stored))
			db.stats.Duplicates.Add(int64(results[gi].Duplicates))
			req.done <- reply{res: results[gi]}
		}
		if db.wal.NeedsRotate() || db.bulk != nil && db.bulk.full(db.opts.WALSegmentBytes) {
			dirty = db.rotateLeft()
		}
	}
}

// columnsFor returns the column builder the committer adds WAL segment
// seq's events to: the open bulk job's, or the one readers of the WAL
// share.
func (db *DB) columnsFor(seq uint64) *columnBuilder {
	if db.bulk != nil {
		return db.bulk.open().cb
	}
	db.pendingMu.Lock()
	defer db.pendingMu.Unlock()
	cb := db.pending[seq]
	if cb == nil {
		cb = newColumnBuilder()
		db.pending[seq] = cb
	}
	return cb
}

// refuse answers every batch of group with ErrUnavailable, which a sender
// retries: none of it was stored.
func (db *DB) refuse(group []*request, err error) {
	db.log.Error("batch not stored", "batches", len(group), "err", err)
	for _, req := range group {
		db.inflight.Add(-req.bytes)
		db.stats.Failed.Add(1)
		req.done <- reply{err: fmt.Errorf("%w: %v", pipeline.ErrUnavailable, err)}
	}
}

// prepareWAL readies the WAL for the next batch. A segment cut back after
// a failed write (wal.Log.CutBack) is replaced first: a follower in
// another process may have read events the cut dropped (never
// acknowledged) and remembers a position past them, so acknowledged events
// must never take their positions, and go to a new segment instead. A
// segment not yet in the ledger is listed. When either fails (a disk still
// full) the batch is refused and the next one tries again.
func (db *DB) prepareWAL() error {
	if db.wal.CutBack() {
		if err := db.rotate(); err != nil {
			return err
		}
	}
	return db.listWAL()
}

// listWAL lists the WAL segment being written in the ledger, unless it is
// already: nothing in it may be acknowledged before.
func (db *DB) listWAL() error {
	if db.unlisted == 0 {
		return nil
	}
	if err := db.ledgerChange(db.unlisted, 0); err != nil {
		return fmt.Errorf("list WAL segment %d in the ledger: %w", db.unlisted, err)
	}
	db.unlisted = 0
	return nil
}

// rotateLeft rotates and reports whether the events written since the
// last rotation are still in the segment being written (a rotation that
// failed and will be tried again), so the caller keeps it dirty.
func (db *DB) rotateLeft() bool {
	seq := db.wal.Current()
	db.rotate()
	return db.wal.Current() == seq && db.unavailable.Load() == nil
}

// rotate closes the WAL segment being written, queues it for sealing, and
// starts the next, listed in the ledger before anything in it is
// acknowledged. When the next cannot be started or listed (a full disk)
// the error is returned, the current segment stays in use (wal.Log.Rotate
// keeps it), and the committer refuses the batch at hand and tries again
// with the next (prepareWAL). A failure that leaves the WAL unusable, or
// any in a bulk load (whose job is lost), makes the store refuse every
// batch.
func (db *DB) rotate() error {
	seq, err := db.wal.Rotate()
	if db.bulk != nil {
		// The open job becomes the closed WAL segment's, which is empty.
		if seq != 0 {
			db.bulk.handOff(seq)
		} else {
			db.bulk.lose(err)
		}
	}
	// Rotate returns an error with a closed segment only when closing it
	// failed, and only ErrBroken leaves the log unusable.
	permanent := err != nil && (seq != 0 || errors.Is(err, wal.ErrBroken))
	if seq != 0 {
		// Listed before anything in it is acknowledged: the committer
		// writes the next batch only after listWAL succeeds.
		db.unlisted = db.wal.Current()
	}
	if err == nil {
		err = db.listWAL()
	}
	if seq != 0 {
		db.queueSeal(seq)
	}
	if err == nil {
		return nil
	}
	if permanent || db.bulk != nil {
		db.unavailable.Store(&err)
		db.log.Error("WAL rotation failed; refusing new batches", "err", err)
		return err
	}
	db.log.Error("WAL rotation failed; refusing batches until it succeeds", "err", err)
	return err
}

func (db *DB) finishWAL(dirty bool) {
	if dirty {
		db.rotate()
	}
	close(db.seal)
}

// sealLoop turns closed WAL segments into segments and removes them.
func (db *DB) sealLoop() {
	defer db.sealWG.Done()
	enc, _ := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1))
	defer enc.Close()
	bufs := &writerBufs{}
	for seq := range db.seal {
		if job := db.bulkJob(seq); job != nil {
			if err := db.sealBulk(seq, job, enc, bufs); err != nil {
				// Its events are in no file: the load must fail.
				err = fmt.Errorf("write bulk segment %d (%d events lost): %w", seq, len(job.entries), err)
				db.bulk.fail(err, len(job.entries))
				db.unavailable.CompareAndSwap(nil, &err)
				db.log.Error("bulk segment not written", "segment", seq, "err", err)
				db.chain.drop(seq, true)
				continue
			}
			db.stats.Sealed.Add(1)
			continue
		}
		if err := db.sealOne(seq, enc, bufs); err != nil {
			// The WAL segment stays; the next start seals it again.
			db.log.Error("seal WAL segment failed; it stays in the WAL", "segment", seq, "err", err)
			db.chain.drop(seq, true)
			continue
		}
		db.stats.Sealed.Add(1)
	}
}

func (db *DB) sealOne(seq uint64, enc *zstd.Encoder, bufs *writerBufs) error {
	path := wal.SegmentPath(filepath.Join(db.dir, walDir), seq)
	db.pendingMu.Lock()
	cb := db.pending[seq]
	db.pendingMu.Unlock()
	for {
		w, err := newSegmentWriter(db.fs, filepath.Join(db.dir, segmentDir), seq, seq, enc, db.opts.layout, bufs)
		if err != nil {
			return err
		}
		if cb != nil {
			w.cols2 = cb // built at ingest: add only writes the text
		}
		n := 0
		keys := make(map[Key]struct{})
		bad, err := scanForSeal(db.fs, path, func(e entry) error {
			n++
			keys[e.key] = struct{}{}
			return w.add(e, cb != nil)
		})
		if err == nil && len(bad) > 0 && cb != nil {
			// The columns built at ingest no longer line up with the
			// records left around the damage: seal again, decoding every
			// event (damage is rare; the common case reads the file once).
			w.abort()
			cb = nil
			continue
		}
		if err == nil && cb != nil && n != cb.n {
			err = fmt.Errorf("BUG: WAL segment %d holds %d events but its columns %d", seq, n, cb.n)
		}
		if err == nil {
			// The damaged bytes are kept aside before the WAL segment is
			// removed.
			err = db.quarantineWAL(path, bad)
		}
		if err != nil {
			w.abort()
			return err
		}
		if n == 0 {
			w.abort()
			db.chain.drop(seq, false)
			return db.removeWAL(seq)
		}
		return db.finishSeal(seq, w, n, keys)
	}
}

// bulkJob returns the bulk job handed off as WAL segment seq, or nil.
func (db *DB) bulkJob(seq uint64) *bulkJob {
	if db.bulk == nil {
		return nil
	}
	return db.bulk.take(seq)
}

// finishSeal links the n events w holds, WAL segment seq's, into the hash
// chain, puts the segment in place and removes the WAL segment.
func (db *DB) finishSeal(seq uint64, w *segmentWriter, n int, keys map[Key]struct{}) error {
	root := w.tree.root()
	prev, linked := db.chain.link(seq, n, root)
	w.meta.Trust = &segTrust{Linked: linked, Prev: prev, Roots: []hash{root}}
	final, err := w.finish(db.opts.NoSync)
	if err != nil {
		return err
	}
	db.chain.placed(seq)
	db.listInManifest(final)
	db.dd.addSegment(final, w.meta.MinTime, w.meta.MaxTime, keys)
	db.pendingMu.Lock()
	delete(db.pending, seq)
	db.pendingMu.Unlock()
	return db.removeWAL(seq)
}

// removeWAL removes a finished WAL segment: out of the ledger first, so
// that a reader never finds it listed and gone.
func (db *DB) removeWAL(seq uint64) error {
	if err := db.ledgerChange(0, seq); err != nil {
		return err
	}
	err := db.wal.Remove(seq)
	db.heads.drop(wal.SegmentPath(filepath.Join(db.dir, walDir), seq))
	return err
}

// OpenReader opens a reader on the DB's folder, like the package's
// OpenReader, that takes the column values of the events still in the WAL
// from what the committer built at ingest instead of decoding them again:
// a query the columns decide reads no JSON, and opening costs one read of
// the WAL files.
func (db *DB) OpenReader() (*Reader, error) {
	return openReader(db.fs, db.dir, db, db.segs)
}

// walColumns returns the durable columns of WAL segment seq, or nil when
// it has none in memory (recovered after a crash, or sealed meanwhile).
func (db *DB) walColumns(seq uint64) *memCols {
	db.pendingMu.Lock()
	cb := db.pending[seq]
	db.pendingMu.Unlock()
	if cb == nil {
		return nil
	}
	return cb.durable.Load()
}

// SetObserveSync sets a function told the duration of each WAL sync.
func (db *DB) SetObserveSync(f func(time.Duration)) { db.observeSync.Store(&f) }

// Stats returns the DB's counters.
func (db *DB) Stats() *Stats { return &db.stats }

// Ready reports nil when the DB accepts batches, or why it does not.
func (db *DB) Ready() error {
	if db.closed.Load() {
		return pipeline.ErrClosed
	}
	if p := db.unavailable.Load(); p != nil {
		return *p
	}
	return nil
}

// Quarantined lists the files kept aside in the quarantine folder; an
// unreadable folder is listed as damage of its own.
func (db *DB) Quarantined() []Damage {
	q, err := quarantined(db.fs, db.dir)
	if err != nil {
		q = append(q, Damage{Path: filepath.Join(db.dir, quarantineDir), Reason: err.Error()})
	}
	return q
}

// Start returns the position of the first event stored after Open: every
// event stored before Open comes before it.
func (db *DB) Start() Pos { return db.start }

// Dir returns the data folder.
func (db *DB) Dir() string { return db.dir }

// Close stops accepting batches, makes everything accepted durable, seals
// the WAL and releases the folder.
func (db *DB) Close() error {
	db.closeM.Lock()
	defer db.closeM.Unlock()
	db.sendMu.Lock()
	if db.closed.Swap(true) {
		db.sendMu.Unlock()
		return nil
	}
	close(db.reqs)
	db.sendMu.Unlock()
	db.wg.Wait()
	db.closeSubscriptions()
	db.sealWG.Wait()
	// A compaction or retention pass stops at its next step; wait for it
	// before the folder is released.
	db.maintMu.Lock()
	db.maintMu.Unlock()
	err := db.wal.Close()
	if db.bulk != nil {
		err = errors.Join(db.bulk.failed(), err)
	}
	db.closeView()
	db.segs.close()
	if err2 := db.lock.Close(); err == nil {
		err = err2
	}
	return err
}

// Committed is an event that has just become durable.
type Committed struct {
	Cluster  string
	Received int64 // unix microseconds
	// Record is the event as it was appended; it must not be modified.
	Record *audit.Record
	// Pos is the event's place in the store, as Scan will report it.
	Pos Pos
}

// Subscription receives events as they become durable, for live tails.
type Subscription struct {
	// C delivers groups of events in commit order. It is closed when the
	// subscription ends: by Close, by the DB closing, or because the
	// subscriber fell behind (Lagged then reports true).
	C      <-chan []Committed
	ch     chan []Committed
	db     *DB
	lagged atomic.Bool
	once   sync.Once
}

// Subscribe starts a subscription that buffers up to buf commits.
func (db *DB) Subscribe(buf int) *Subscription {
	s := &Subscription{ch: make(chan []Committed, max(buf, 1)), db: db}
	s.C = s.ch
	db.subsMu.Lock()
	if db.subs == nil {
		db.subs = map[*Subscription]struct{}{}
	}
	db.subs[s] = struct{}{}
	db.subsMu.Unlock()
	return s
}

// Lagged reports whether the subscription ended because it fell behind.
func (s *Subscription) Lagged() bool { return s.lagged.Load() }

// Close ends the subscription.
func (s *Subscription) Close() {
	s.db.subsMu.Lock()
	delete(s.db.subs, s)
	s.db.subsMu.Unlock()
	s.once.Do(func() { close(s.ch) })
}

// publish hands a durable group to subscribers without ever blocking the
// committer: a subscriber whose buffer is full is dropped, marked lagged.
func (db *DB) publish(group []*request, kept [][]int, seq uint64, firstOrd []int) {
	db.subsMu.Lock()
	defer db.subsMu.Unlock()
	if len(db.subs) == 0 {
		return
	}
	var evs []Committed
	now := time.Now()
	for gi, req := range group {
		recv := req.batch.Received
		if recv.IsZero() {
			recv = now
		}
		for k, i := range kept[gi] {
			evs = append(evs, Committed{Cluster: req.batch.Cluster, Received: recv.UnixMicro(), Record: &req.batch.Records[i],
				Pos: Pos{WAL: seq, Ord: firstOrd[gi] + k}})
		}
	}
	for s := range db.subs {
		select {
		case s.ch <- evs:
		default:
			s.lagged.Store(true)
			delete(db.subs, s)
			s.once.Do(func() { close(s.ch) })
		}
	}
}

func (db *DB) closeSubscriptions() {
	db.subsMu.Lock()
	defer db.subsMu.Unlock()
	for s := range db.subs {
		delete(db.subs, s)
		s.once.Do(func() { close(s.ch) })
	}
}

// recvOf is the receive time of a batch as the WAL records it.
func recvOf(b *pipeline.Batch) int64 {
	if b.Received.IsZero() {
		return time.Now().UnixMicro()
	}
	return b.Received.UnixMicro()
}

// folderLock is the writer's hold on a data folder: an exclusive flock on
// the folder itself and on its LOCK file.
type folderLock struct{ dir, file func() error }

// lockFolder takes the writer's lock. The flock on the folder is the one
// that counts: a lock on a file alone is lost when someone deletes the
// file, and a second writer would then create a new LOCK, lock it, and
// replay and delete the first one's open WAL. A folder cannot be deleted
// while it holds files. The LOCK file is locked too, so that a kubetrail
// from before this change, which locks only that, is kept out as well.
// The kernel drops both locks when the process dies, however it dies.
func lockFolder(fs vfs.FS, dir string) (folderLock, error) {
	unlockDir, err := fs.Lock(dir, vfs.LockExclusiveNow)
	if err != nil {
		if errors.As(err, new(*os.PathError)) {
			return folderLock{}, fmt.Errorf("open data folder: %w", err)
		}
		return folderLock{}, fmt.Errorf("data folder %s is in use by another kubetrail process (%w)", dir, err)
	}
	path := filepath.Join(dir, lockFile)
	f, err := fs.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err == nil {
		err = f.Close()
	}
	if err != nil {
		unlockDir()
		return folderLock{}, fmt.Errorf("open lock file: %w", err)
	}
	unlockFile, err := fs.Lock(path, vfs.LockExclusiveNow)
	if err != nil {
		unlockDir()
		if errors.As(err, new(*os.PathError)) {
			return folderLock{}, fmt.Errorf("open lock file: %w", err)
		}
		return folderLock{}, fmt.Errorf("data folder %s is in use by another kubetrail process (%w)", dir, err)
	}
	return folderLock{dir: unlockDir, file: unlockFile}, nil
}

// Close releases the lock.
func (l folderLock) Close() error {
	err := l.file()
	if err2 := l.dir(); err == nil {
		err = err2
	}
	return err
}
