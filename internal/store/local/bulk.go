package local

import (
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/klauspost/compress/zstd"
)

// Bulk loading (Options.Bulk) writes the events the committer keeps
// straight into segments, without the WAL: an import read every byte twice
// and wrote it twice (WAL, then segment) for an acknowledgement nobody
// waits for, since the file is still there to import again.
//
// The committer gathers the events it keeps, in the order it keeps them,
// into an open job (their bytes, which the job holds on to instead of
// copying them, and their columns, built as for the WAL). A job as large as a WAL segment, or the last one
// at Close, is handed to the sealers under the number of the open WAL
// segment, which holds nothing, and the WAL rotates past it, as it does
// when a WAL segment is full. A sealer then writes the job as that WAL
// segment's sealed segment, put in place only after those of the WAL
// segments before it (a reader that found it without them would end after
// events it cannot see, and a follow from its end would skip them), and
// removes the empty WAL segment, the same
// steps, in the same order, as sealing one from its file, so a crash at
// any step leaves what it would leave there: the segment renamed into
// place (complete: it is synced first) and the empty WAL segment, which
// the next Open removes as covered, or no segment and the empty WAL
// segment, which the next Open drops. The events of a job not yet sealed
// are lost in a crash; they were never acknowledged as durable, and
// importing the file again stores them, and only them: the events of the
// sealed segments are found by de-duplication.
type bulkLoad struct {
	// job is the open job; only the committer uses it.
	job *bulkJob
	// slots bounds the jobs handed to the sealers and not yet written, so
	// that a reader faster than the sealers waits instead of holding the
	// whole file in memory.
	slots chan struct{}
	mu    sync.Mutex
	ready map[uint64]*bulkJob // handed to the sealers, by WAL segment number
	// err is the first job that could not be written: its events are
	// lost, so Close reports it; lost counts the events of every such job.
	err  atomic.Pointer[error]
	lost atomic.Int64
}

// bulkJob is a segment's worth of events kept by the committer.
type bulkJob struct {
	cb      *columnBuilder
	entries []entry // their raw bytes are the batches' own
	bytes   int64
}

func newBulkLoad(sealers int) *bulkLoad {
	return &bulkLoad{slots: make(chan struct{}, sealers), ready: map[uint64]*bulkJob{}}
}

// open returns the open job, starting one when there is none.
func (b *bulkLoad) open() *bulkJob {
	if b.job == nil {
		b.job = &bulkJob{cb: newColumnBuilder()}
	}
	return b.job
}

// add appends one request's kept events to the open job; their columns
// are already in the job's column builder.
func (b *bulkLoad) add(cluster string, recv int64, keys []Key, times []int64, raws [][]byte) {
	j := b.open()
	for i, raw := range raws {
		// Copying the bytes cost a tenth of an import's CPU (fresh pages
		// to fault in); keeping them keeps only the bytes, not the
		// decoded events around them.
		j.entries = append(j.entries, entry{key: keys[i], cluster: cluster, received: recv, time: times[i], raw: raw})
		j.bytes += int64(len(raw))
	}
}

// full reports whether the open job holds a segment's worth of events.
func (b *bulkLoad) full(segmentBytes int64) bool {
	return b.job != nil && b.job.bytes >= segmentBytes
}

// handOff gives the open job, when it holds events, to the sealers as WAL
// segment seq. It waits for a free slot. The caller queues seq for sealing
// afterwards.
func (b *bulkLoad) handOff(seq uint64) {
	j := b.job
	b.job = nil
	if j == nil || len(j.entries) == 0 {
		return
	}
	b.slots <- struct{}{}
	b.mu.Lock()
	b.ready[seq] = j
	b.mu.Unlock()
}

// lose records that the open job's events can never be written (the WAL
// could not give it a number).
func (b *bulkLoad) lose(why error) {
	if j := b.job; j != nil && len(j.entries) > 0 {
		b.fail(fmt.Errorf("%d events of a bulk load not written: %w", len(j.entries), why), len(j.entries))
	}
	b.job = nil
}

// take returns the job handed off as seq, or nil.
func (b *bulkLoad) take(seq uint64) *bulkJob {
	b.mu.Lock()
	defer b.mu.Unlock()
	j := b.ready[seq]
	delete(b.ready, seq)
	return j
}

// fail records that n events, told to their senders as stored, are not.
func (b *bulkLoad) fail(err error, n int) {
	b.err.CompareAndSwap(nil, &err)
	b.lost.Add(int64(n))
}

// failed returns the first failure, or nil.
func (b *bulkLoad) failed() error {
	if p := b.err.Load(); p != nil {
		return *p
	}
	return nil
}

// BulkLost returns how many of the events Append told as stored a bulk
// load could not write (Close's error says why): an import's summary
// counts them out of the stored.
func (db *DB) BulkLost() int64 {
	if db.bulk == nil {
		return 0
	}
	return db.bulk.lost.Load()
}

// sealBulk writes job as the sealed segment of WAL segment seq, which is
// empty, and removes that WAL segment.
func (db *DB) sealBulk(seq uint64, job *bulkJob, enc *zstd.Encoder, bufs *writerBufs) error {
	defer func() { <-db.bulk.slots }()
	w, err := newSegmentWriter(db.fs, filepath.Join(db.dir, segmentDir), seq, seq, enc, db.opts.layout, bufs)
	if err != nil {
		return err
	}
	w.cols2 = job.cb // built by the committer: add only writes the text
	keys := make(map[Key]struct{}, len(job.entries))
	for _, e := range job.entries {
		keys[e.key] = struct{}{}
		if err := w.add(e, true); err != nil {
			w.abort()
			return err
		}
	}
	if job.cb.n != len(job.entries) {
		w.abort()
		return fmt.Errorf("BUG: bulk job %d holds %d events but its columns %d", seq, len(job.entries), job.cb.n)
	}
	// In WAL order: the jobs before it are in no file until their
	// segments are in place (chainer.unplaced).
	db.chain.waitPlaced(seq)
	return db.finishSeal(seq, w, len(job.entries), keys)
}
