package local

import (
	"errors"
	"os"
	"sync"

	"github.com/klauspost/compress/zstd"

	"github.com/kubetrail/kubetrail/internal/vfs"
)

// dedup answers "is this event stored already?" without keeping a key per
// stored event on disk or in memory (docs/adr/0001-storage.md).
//
// Two deliveries of one event have the same bytes, so the same event time.
// The keys of events still in the WAL (the head) are always in memory. A
// sealed segment's keys are computed from its events when an incoming event's
// time falls inside the segment's time range, and kept in a bounded cache:
// live ingest after a restart touches only the newest segments, an import of
// an old file only the segments of its days.
type dedup struct {
	fs     vfs.FS // segments are read through it
	mu     sync.Mutex
	head   map[Key]struct{}
	segs   []*dedupSeg
	budget int // keys held for sealed segments before the least recently used are dropped
	held   int
	clock  uint64
}

type dedupSeg struct {
	path       string
	minT, maxT int64
	keys       map[Key]struct{} // nil until needed
	used       uint64
	gone       bool // removed (retention, compaction): its keys must not be loaded
}

func newDedup(fs vfs.FS, budget int) *dedup {
	return &dedup{fs: fs, head: make(map[Key]struct{}), budget: budget}
}

// addSegment registers a sealed segment. keys, when not nil, are its keys
// (the sealer has them at hand); they are moved out of the head.
func (d *dedup) addSegment(path string, minT, maxT int64, keys map[Key]struct{}) {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := &dedupSeg{path: path, minT: minT, maxT: maxT}
	for k := range keys {
		delete(d.head, k)
	}
	if keys != nil {
		d.clock++
		s.keys, s.used = keys, d.clock
		d.held += len(keys)
		d.evict(s)
	}
	d.segs = append(d.segs, s)
}

// candidates returns the segments whose time range overlaps [minT, maxT].
// The caller holds d.mu.
func (d *dedup) candidates(minT, maxT int64) []*dedupSeg {
	var out []*dedupSeg
	for _, s := range d.segs {
		if s.minT <= maxT && minT <= s.maxT {
			out = append(out, s)
		}
	}
	return out
}

// load computes a segment's keys. The caller holds d.mu.
func (d *dedup) load(s *dedupSeg) error {
	d.clock++
	s.used = d.clock
	if s.keys != nil {
		return nil
	}
	keys, err := segmentKeys(d.fs, s.path)
	if err != nil {
		return err
	}
	s.keys = keys
	d.held += len(keys)
	d.evict(s)
	return nil
}

// evict drops the least recently used segment key sets while over budget,
// never keep.
func (d *dedup) evict(keep *dedupSeg) {
	for d.held > d.budget {
		var lru *dedupSeg
		for _, s := range d.segs {
			if s.keys != nil && s != keep && (lru == nil || s.used < lru.used) {
				lru = s
			}
		}
		if lru == nil {
			return
		}
		d.held -= len(lru.keys)
		lru.keys = nil
	}
}

// contains reports whether an event with this key and time is stored. The
// caller holds d.mu and passes the candidates for the batch.
func (d *dedup) contains(k Key, t int64, cands []*dedupSeg) (bool, error) {
	if _, ok := d.head[k]; ok {
		return true, nil
	}
	for _, s := range cands {
		if t < s.minT || t > s.maxT || s.gone {
			continue
		}
		if err := d.load(s); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				// Moved away by an operator (the store removes a segment
				// from here before its file): its events are no longer
				// stored, so storing them again is right.
				d.remove(s.path)
				continue
			}
			return false, err
		}
		if _, ok := s.keys[k]; ok {
			return true, nil
		}
	}
	return false, nil
}

// preload computes, outside the commit path, the key sets a batch with
// events in [minT, maxT] will need, so that the single committer rarely
// waits for a segment to be read.
func (d *dedup) preload(minT, maxT int64) {
	d.mu.Lock()
	var todo []*dedupSeg
	for _, s := range d.candidates(minT, maxT) {
		if s.keys == nil {
			todo = append(todo, s)
		}
	}
	d.mu.Unlock()
	for _, s := range todo {
		keys, err := segmentKeys(d.fs, s.path)
		if err != nil {
			continue // contains reads it again and reports the error
		}
		d.mu.Lock()
		if s.keys == nil && !s.gone {
			d.clock++
			s.keys, s.used = keys, d.clock
			d.held += len(keys)
			d.evict(s)
		}
		d.mu.Unlock()
	}
}

// segmentKeys computes the keys of a sealed segment's events.
func segmentKeys(fs vfs.FS, path string) (map[Key]struct{}, error) {
	r, err := openSegment(fs, path)
	if err != nil {
		return nil, err
	}
	defer r.close()
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
	if err != nil {
		return nil, err
	}
	defer dec.Close()
	keys := make(map[Key]struct{}, r.meta.Count)
	err = r.scan(dec, nil, func(e entry) error {
		keys[KeyOf(e.cluster, e.raw)] = struct{}{}
		return nil
	})
	return keys, err
}

// removeSegment forgets a segment deleted by retention.
func (d *dedup) removeSegment(path string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.remove(path)
}

// remove forgets a segment. The caller holds d.mu.
func (d *dedup) remove(path string) *dedupSeg {
	for i, s := range d.segs {
		if s.path == path {
			d.held -= len(s.keys)
			s.gone = true
			d.segs = append(d.segs[:i], d.segs[i+1:]...)
			return s
		}
	}
	return nil
}

// replaceSegments swaps the inputs of a compaction for its output in one
// step, so the committer finds every stored event either in the inputs
// (their files are deleted only after this) or in the output (in place
// before this). When every input's keys are in memory, the output's are
// their union and nothing is read again.
func (d *dedup) replaceSegments(olds []string, path string, minT, maxT int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var keys map[Key]struct{}
	union := true
	var removed []*dedupSeg
	for _, p := range olds {
		s := d.remove(p)
		if s == nil || s.keys == nil {
			union = false
			continue
		}
		removed = append(removed, s)
	}
	if union && len(removed) > 0 {
		n := 0
		for _, s := range removed {
			n += len(s.keys)
		}
		keys = make(map[Key]struct{}, n)
		for _, s := range removed {
			for k := range s.keys {
				keys[k] = struct{}{}
			}
		}
	}
	s := &dedupSeg{path: path, minT: minT, maxT: maxT}
	if keys != nil {
		d.clock++
		s.keys, s.used = keys, d.clock
		d.held += len(keys)
	}
	d.segs = append(d.segs, s)
	if keys != nil {
		d.evict(s)
	}
}
