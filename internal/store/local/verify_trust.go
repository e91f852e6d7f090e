package local

import (
	"encoding/hex"
	"fmt"
	"path/filepath"
	"sort"

	"github.com/klauspost/compress/zstd"
)

// ChainPoint is the hash chain's head after one WAL segment: what a signed
// checkpoint of Events events must say.
type ChainPoint struct {
	// WAL is the WAL segment the head follows.
	WAL uint64
	// Events counts the events of every segment up to and including WAL,
	// retired ones included.
	Events int
	// Head is the chain head after WAL.
	Head [32]byte
}

// chainItem is one sealed or retired segment in WAL order, for the walk.
type chainItem struct {
	first   uint64
	path    string
	retired *retiredSeg
	meta    *segmentMeta
	roots   []hash // recomputed from the stored bytes; nil when not covered
}

// segmentRoots recomputes the Merkle root of each part of r from its
// stored bytes, in arrival order.
func segmentRoots(r *segmentReader, dec *zstd.Decoder) ([]hash, error) {
	parts := r.meta.parts()
	roots := make([]hash, 0, len(parts))
	var m merkle
	pi := 0
	err := r.scan(dec, nil, func(e entry) error {
		m.add(e.raw)
		for pi < len(parts) && int(m.n) == parts[pi].Count {
			roots = append(roots, m.root())
			m.reset()
			pi++
		}
		return nil
	})
	return roots, err
}

// checkChain checks each covered segment's roots against its stored bytes
// and walks the chain over segments and retired records in WAL order. It
// returns findings of tampering, notes (events not covered, chains that
// restart where they may), and the chain's points.
func checkChain(items []chainItem, retiredPath string) (tamper, notes []Damage, points []ChainPoint) {
	sort.SliceStable(items, func(i, j int) bool { return items[i].first < items[j].first })
	var head hash
	have := false   // head is known
	broken := false // an item before the current one was not linked
	events := 0
	prevName := "(start of the chain)"
	for _, it := range items {
		if r := it.retired; r != nil {
			if r.linked {
				if have && r.prev != head {
					tamper = append(tamper, Damage{Path: retiredPath, Reason: fmt.Sprintf("record of %s does not follow the chain after %s: the record or the segments around it were altered", r.name, prevName)})
				}
				head, have = r.head, true
				points = append(points, ChainPoint{WAL: r.last, Events: events + r.count, Head: head})
			} else {
				have, broken = false, true
			}
			events += r.count
			prevName = r.name + " (retired)"
			continue
		}
		m, name := it.meta, filepath.Base(it.path)
		t := m.Trust
		if t == nil {
			notes = append(notes, Damage{Path: it.path, Reason: fmt.Sprintf("%d events not covered by tamper evidence: written before segments had Merkle roots (compaction covers them)", m.Count)})
			events += m.Count
			have, broken = false, true
			prevName = name
			continue
		}
		parts := m.parts()
		for i, p := range parts {
			if it.roots != nil && i < len(it.roots) && it.roots[i] != t.Roots[i] {
				tamper = append(tamper, Damage{Path: it.path, Reason: fmt.Sprintf("events %d-%d (WAL segment %d) do not give the Merkle root sealed with them: an event was modified, inserted, deleted or reordered", p.First, p.First+p.Count-1, p.WAL)})
			}
		}
		switch {
		case !t.Linked:
			notes = append(notes, Damage{Path: it.path, Reason: "not linked into the hash chain (sealed after a sealing failure, or compacted with such a segment): its roots are checked, its place is not"})
			have, broken = false, true
		case have && t.Prev != head:
			tamper = append(tamper, Damage{Path: it.path, Reason: fmt.Sprintf("hash chain broken: it follows chain head %s, but %s ends at %s: a segment was deleted, inserted or reordered before it", short(t.Prev), prevName, short(head))})
		case !have && !broken && t.Prev != (hash{}):
			tamper = append(tamper, Damage{Path: it.path, Reason: "hash chain broken: it follows segments that are gone and not recorded in " + retiredName + ": deleted"})
		case !have && broken && t.Prev != (hash{}):
			notes = append(notes, Damage{Path: it.path, Reason: "its place in the hash chain cannot be checked: the segment before it is not linked"})
		}
		if t.Linked {
			head, have = t.Prev, true
			for i, p := range parts {
				head = chainStep(head, t.Roots[i], p.WAL, p.Count)
				events += p.Count
				points = append(points, ChainPoint{WAL: p.WAL, Events: events, Head: head})
			}
		} else {
			events += m.Count
		}
		prevName = name
	}
	return tamper, notes, points
}

func short(h hash) string { return hex.EncodeToString(h[:6]) }
