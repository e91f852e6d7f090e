package local

import (
	"fmt"
	"math"
	"sync"

	"github.com/kubetrail/kubetrail/internal/vfs"
	"github.com/kubetrail/kubetrail/internal/wal"
)

// walHeads keeps, per WAL file, the events of its durable prefix as the
// readers of one DB decoded them, so that the next reader decodes only
// what was appended since. Under ingest every API request re-read and
// decoded the whole WAL head, 43% of serve's CPU at 50k events/s (issue
// 12). Only the durable prefix is kept: bytes past the last sync may be
// cut back after a failed write and replaced by others. The damage met in
// the prefix is kept with it and reported by every reader, as a scan
// would. An entry is dropped when its file is removed (sealed) or replaced.
//
// A walHeads is safe for concurrent use.
type walHeads struct {
	mu    sync.Mutex
	files map[string]*walHead
}

// walHead is the decoded durable prefix of one WAL file.
type walHead struct {
	ino     uint64
	end     int64 // offset past the last record kept
	version int
	// events are the prefix's events, in WAL order (ord = index). The
	// cache appends past len under mu; readers get events[:n:n].
	events []headEvent
	// damage is what the scans reported before end.
	damage []string
	// skipped is set when a record before end was left out: the columns
	// built at ingest no longer line up with the records read.
	skipped bool
	// colsOK says the events' times agree with the columns built at
	// ingest (see Reader.attach), checked as each was kept.
	colsOK bool
}

func newWALHeads() *walHeads { return &walHeads{files: map[string]*walHead{}} }

// walPos is where the WAL is durable: segment seq up to byte off.
type walPos struct {
	seq uint64
	off int64
}

// durableEnd returns the offset up to which WAL segment seq is durable:
// all of a segment older than the one being written, none of a newer.
func (db *DB) durableEnd(seq uint64) int64 {
	p := db.walDurable.Load()
	switch {
	case p == nil || seq > p.seq:
		return 0
	case seq < p.seq:
		return math.MaxInt64
	}
	return p.off
}

func (c *walHeads) drop(path string) {
	c.mu.Lock()
	delete(c.files, path)
	c.mu.Unlock()
}

// walRecord is where a record read by a scan was, and how many events the
// scan had emitted after it.
type walRecord struct {
	off, end int64
	events   int
}

// read returns the events of WAL file path before limit, the offset up to
// which it is durable: prefix, shared with the DB's other readers and not
// to be modified, then tail, read now past what was kept (when another
// reader kept more meanwhile), each event's ord its index in the file.
// Every acknowledged event is before limit; those past it are in batches
// not answered yet (their sync is running), which may still fail and be
// cut back: they are left out, and they have no columns yet (decoding
// them was most of a request's time under ingest). What was read before
// limit is kept for the next reader. newest, dl and skipped are as
// scanWAL's, damage past limit included; cols gives the columns built at
// ingest, checked against the events before they are kept (colsOK).
func (c *walHeads) read(fsys vfs.FS, path string, newest bool, limit int64, dl *damageList, cols func() *memCols) (prefix, tail []headEvent, skipped, colsOK bool, err error) {
	c.mu.Lock()
	kept := c.files[path]
	c.mu.Unlock()
	if kept != nil && kept.end >= limit {
		// Nothing was made durable since it was kept: the file is not
		// read at all (under ingest most requests come between two
		// syncs, and a stat, an open and a read of the bytes being
		// written were a fifth of a warm count). What was kept cannot
		// change: the DB never cuts its WAL back below a sync.
		for _, d := range kept.damage {
			dl.add(path, d)
		}
		n := len(kept.events)
		return kept.events[:n:n], nil, kept.skipped, kept.colsOK && !kept.skipped && cols() != nil, nil
	}
	st, err := fsys.Stat(path)
	if err != nil {
		return nil, nil, false, false, err
	}
	ino := fileIDOf(st).ino
	c.mu.Lock()
	old := c.files[path]
	c.mu.Unlock()
	e := old
	if e == nil || e.ino != ino || st.Size() < e.end {
		e = &walHead{ino: ino, colsOK: true}
	}
	for _, d := range e.damage {
		dl.add(path, d)
	}
	base := len(e.events)
	var arena []byte
	var recs []walRecord
	var damage []walDamageAt
	add := func(en entry) error {
		if len(arena)+len(en.raw) > cap(arena) {
			// At most what was appended: most reads find a batch or two.
			arena = make([]byte, 0, max(min(4<<20, st.Size()-e.end), int64(len(en.raw))))
		}
		start := len(arena)
		arena = append(arena, en.raw...)
		tail = append(tail, headEvent{cluster: en.cluster, time: en.time, received: en.received, raw: arena[start:len(arena):len(arena)], ord: base + len(tail)})
		return nil
	}
	fn := func(off int64, p []byte) error {
		if err := validBatch(p); err != nil {
			damage = append(damage, walDamageAt{off, fmt.Sprintf("record at byte %d: %v", off, err)})
			return nil
		}
		if err := decodeBatch(p, add); err != nil {
			return err
		}
		recs = append(recs, walRecord{off: off, end: off + int64(len(p)), events: len(tail)})
		return nil
	}
	var res wal.ScanResult
	if e.end == 0 {
		res, err = wal.ScanFS(fsys, path, fn)
	} else {
		res, err = wal.ScanFromFS(fsys, path, e.end, e.version, fn)
	}
	if err != nil {
		return nil, nil, false, false, err
	}
	for _, d := range res.Damage {
		if d.Torn && newest {
			continue
		}
		damage = append(damage, walDamageAt{d.Offset, describeWALDamage(d)})
	}
	// What is kept: the records wholly before limit.
	keep, keepEnd := 0, e.end
	for _, r := range recs {
		end := r.end + int64(wal.HeaderLen(res.Version))
		if end > limit {
			break
		}
		keep, keepEnd = r.events, end
	}
	tail = tail[:keep]
	skipped = e.skipped
	var keptDamage []string
	for _, d := range damage {
		skipped = true
		dl.add(path, d.reason)
		if d.off < keepEnd {
			keptDamage = append(keptDamage, d.reason)
		}
	}
	m := cols()
	colsOK = e.colsOK && !skipped && m != nil && timesAgree(tail, m)
	prefix = e.events[:base:base]
	if keep > 0 || len(keptDamage) > 0 {
		c.mu.Lock()
		// Another reader may have kept more meanwhile: only the one that
		// finds the entry it read from extends it, as the events' array
		// is appended to in place.
		if c.files[path] == old {
			n := &walHead{ino: ino, end: keepEnd, version: res.Version, events: append(e.events, tail[:keep]...),
				damage: append(e.damage[:len(e.damage):len(e.damage)], keptDamage...), skipped: e.skipped || len(keptDamage) > 0}
			n.colsOK = e.colsOK && m != nil && !n.skipped && timesAgree(tail[:keep], m)
			c.files[path] = n
			prefix, tail = n.events[:base+keep:base+keep], tail[keep:]
		}
		c.mu.Unlock()
	}
	return prefix, tail, skipped, colsOK, nil
}

// walDamageAt is a damage found by a scan, with its offset.
type walDamageAt struct {
	off    int64
	reason string
}

// timesAgree reports whether events, at their ords, have the times of
// the columns m built at ingest (those past m have none to disagree with).
func timesAgree(events []headEvent, m *memCols) bool {
	for i := range events {
		h := &events[i]
		if h.ord < m.n && m.times[h.ord] != h.time {
			return false
		}
	}
	return true
}

// dropHead forgets WAL file path's decoded prefix (db may be nil).
func (db *DB) dropHead(path string) {
	if db != nil {
		db.heads.drop(path)
	}
}
