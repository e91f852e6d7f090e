package local

import (
	"slices"
	"sync"
)

// chainer links sealed WAL segments into the hash chain in WAL order
// (merkle.go), although several sealers seal at once: a sealer computes
// its segment's Merkle root in parallel with the others, then waits until
// every WAL segment queued before its own is linked or dropped.
type chainer struct {
	mu   sync.Mutex
	cond *sync.Cond
	head hash
	// last is the newest WAL segment linked (or sealed in an earlier run):
	// an older one sealed late cannot be linked without breaking the chain.
	last  uint64
	queue []uint64 // queued for sealing, in WAL order
	// unplaced holds the WAL segments queued whose segment is not in
	// place yet (nor dropped), in WAL order. A bulk-loaded job's events
	// are in no file until its segment is, so its segment must not come
	// before theirs (waitPlaced): a reader finding it would end after
	// events it cannot see, and query --follow, going on from there,
	// would skip them for good.
	unplaced []uint64
	// events counts the events of every segment up to last, retired ones
	// included: a checkpoint's tree size (ChainPoint.Events).
	events int
	// broken is set when a sealer failed after the chain moved on: the
	// segments sealed after it in this run are not linked.
	broken bool
}

func newChainer(head hash, last uint64, events int) *chainer {
	c := &chainer{head: head, last: last, events: events}
	c.cond = sync.NewCond(&c.mu)
	return c
}

// queued records that seq goes to the sealers; it must be called in WAL
// order, before the sealers may see seq.
func (c *chainer) queued(seq uint64) {
	c.mu.Lock()
	c.queue = append(c.queue, seq)
	c.unplaced = append(c.unplaced, seq)
	c.mu.Unlock()
}

// waitPlaced waits until the segment of every WAL segment queued before
// seq is in place, or dropped.
func (c *chainer) waitPlaced(seq uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.unplaced) > 0 && c.unplaced[0] != seq && slices.Contains(c.unplaced, seq) {
		c.cond.Wait()
	}
}

// placed records that seq's segment is in place.
func (c *chainer) placed(seq uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if i := slices.Index(c.unplaced, seq); i >= 0 {
		c.unplaced = slices.Delete(c.unplaced, i, i+1)
		c.cond.Broadcast()
	}
}

// link waits for seq's turn and links it: it returns the chain head before
// it, or linked false when it cannot be linked.
func (c *chainer) link(seq uint64, count int, root hash) (prev hash, linked bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.queue) > 0 && c.queue[0] != seq && slices.Contains(c.queue, seq) {
		c.cond.Wait()
	}
	c.remove(seq)
	if c.broken || seq <= c.last {
		c.events += count
		return hash{}, false
	}
	prev = c.head
	c.head = chainStep(prev, root, seq, count)
	c.last = seq
	c.events += count
	return prev, true
}

// drop takes seq out of the queue: it held no event, or sealing it failed
// (failed), in which case the chain is broken for the rest of the run.
func (c *chainer) drop(seq uint64, failed bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.remove(seq)
	if i := slices.Index(c.unplaced, seq); i >= 0 {
		c.unplaced = slices.Delete(c.unplaced, i, i+1)
		c.cond.Broadcast()
	}
	if failed {
		c.broken = true
	}
}

func (c *chainer) remove(seq uint64) {
	if i := slices.Index(c.queue, seq); i >= 0 {
		c.queue = slices.Delete(c.queue, i, i+1)
		c.cond.Broadcast()
	}
}

// point returns the chain's head now, and false when the chain is broken
// or has no linked segment: there is nothing a checkpoint could sign.
func (c *chainer) point() (ChainPoint, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.broken || c.head == (hash{}) {
		return ChainPoint{}, false
	}
	return ChainPoint{WAL: c.last, Events: c.events, Head: c.head}, true
}

// ChainHead returns the hash chain's head after the newest sealed WAL
// segment, for a signed checkpoint; false when there is none to sign (no
// segment sealed with tamper evidence, or the chain broke in this run).
// Events still in the WAL are not covered until sealed.
func (db *DB) ChainHead() (ChainPoint, bool) { return db.chain.point() }
