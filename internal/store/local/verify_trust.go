package local

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sort"
	"strings"

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
	// Retired, when not 0, says the point ends a RETIRED record of that
	// many events: retention deleted a segment (perhaps compacted from
	// several WAL segments), and the chain points inside it are gone.
	Retired int
}

// chainItem is one sealed or retired segment in WAL order, for the walk.
type chainItem struct {
	first   uint64
	path    string
	retired *retiredSeg
	meta    *segmentMeta
	roots   []hash // recomputed from the stored bytes; nil when not covered
	// diffs lists, per part, the events whose leaf hash differs from the
	// print sealed with it; prints says the segment has prints.
	diffs  [][]leafDiff
	prints bool
}

// leafDiff is an event whose recomputed leaf print is not the one sealed.
type leafDiff struct {
	ord       int // ordinal in its part (WAL segment)
	got, want [leafPrintBytes]byte
	auditID   string
}

// maxLeafDiffs bounds the events a part's findings keep: a rewritten
// segment may differ everywhere.
const maxLeafDiffs = 1000

// segmentRoots recomputes the Merkle root of each part of it from its
// stored bytes, in arrival order, and compares each event's leaf hash with
// the print sealed with it (docs/adr/0018), to name the events changed.
// Verify computes the same in its own pass over the text (rootsBuilder).
func segmentRoots(it *chainItem, r *segmentReader, dec *zstd.Decoder) error {
	b, err := newRootsBuilder(r, dec)
	if err != nil {
		return err
	}
	err = r.scan(dec, nil, func(e entry) error { b.add(e.ord, e.raw); return nil })
	b.fill(it)
	return err
}

// rootsBuilder takes a segment's events in ordinal order and keeps, per
// part, the Merkle root of their leaves and the events whose leaf hash is
// not the print sealed with them.
type rootsBuilder struct {
	prints []byte
	parts  []walPart
	roots  []hash
	diffs  [][]leafDiff
	m      merkle
	pi     int
}

// newRootsBuilder reads r's leaf prints, which the events are compared with.
func newRootsBuilder(r *segmentReader, dec *zstd.Decoder) (*rootsBuilder, error) {
	prints, err := r.readPrints(dec)
	if err != nil {
		return nil, err
	}
	parts := r.meta.parts()
	return &rootsBuilder{prints: prints, parts: parts, roots: make([]hash, 0, len(parts)), diffs: make([][]leafDiff, len(parts))}, nil
}

// add takes event ord, the next in ordinal order.
func (b *rootsBuilder) add(ord int, raw []byte) {
	leaf := b.m.add(raw)
	if p := b.prints[min(len(b.prints), ord*leafPrintBytes):]; len(p) >= leafPrintBytes && [leafPrintBytes]byte(leaf[:]) != [leafPrintBytes]byte(p) && b.pi < len(b.parts) && len(b.diffs[b.pi]) < maxLeafDiffs {
		b.diffs[b.pi] = append(b.diffs[b.pi], leafDiff{ord: int(b.m.n) - 1, got: [leafPrintBytes]byte(leaf[:]), want: [leafPrintBytes]byte(p), auditID: auditIDOf(raw)})
	}
	for b.pi < len(b.parts) && int(b.m.n) == b.parts[b.pi].Count {
		b.roots = append(b.roots, b.m.root())
		b.m.reset()
		b.pi++
	}
}

// fill gives it the roots and findings of the events added.
func (b *rootsBuilder) fill(it *chainItem) {
	it.roots, it.diffs, it.prints = b.roots, b.diffs, b.prints != nil
}

// auditIDOf finds an event's auditID in its stored bytes, for a message.
func auditIDOf(raw []byte) string {
	var ev struct {
		AuditID string `json:"auditID"`
	}
	json.Unmarshal(raw, &ev)
	return ev.AuditID
}

// describeDiffs names the events of part p whose leaf prints differ: two
// that exchanged places, or each one changed.
func describeDiffs(diffs []leafDiff, p walPart, prints bool) string {
	if !prints {
		return ""
	}
	if len(diffs) == 0 {
		return "; every event still gives the leaf print sealed with it, so the one changed cannot be named (the prints were rewritten too, or the change kept its print, once in 65,536)"
	}
	var names []string
	paired := map[int]bool{}
	for i, a := range diffs {
		if paired[i] {
			continue
		}
		swapped := false
		for j := i + 1; j < len(diffs); j++ {
			if b := diffs[j]; !paired[j] && a.got == b.want && b.got == a.want {
				names = append(names, fmt.Sprintf("events %s and %s exchanged places", eventName(p, a), eventName(p, b)))
				paired[j], swapped = true, true
				break
			}
		}
		if !swapped {
			names = append(names, fmt.Sprintf("event %s was modified or replaced", eventName(p, a)))
		}
	}
	const show = 5
	more := ""
	if len(names) > show {
		more = fmt.Sprintf(", and %d more", len(names)-show)
		names = names[:show]
	}
	return "; " + strings.Join(names, ", ") + more
}

// eventName is how a finding names an event: its position (kubetrail
// prove --pos) and auditID.
func eventName(p walPart, d leafDiff) string {
	return fmt.Sprintf("%s (auditID %q, segment ordinal %d)", Pos{WAL: p.WAL, Ord: d.ord}, d.auditID, p.First+d.ord)
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
				points = append(points, ChainPoint{WAL: r.last, Events: events + r.count, Head: head, Retired: r.count})
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
			if it.roots == nil || i >= len(it.roots) {
				continue
			}
			switch {
			case it.roots[i] != t.Roots[i]:
				tamper = append(tamper, Damage{Path: it.path, Reason: fmt.Sprintf("events %d-%d (WAL segment %d) do not give the Merkle root sealed with them: an event was modified, inserted, deleted or reordered%s", p.First, p.First+p.Count-1, p.WAL, describeDiffs(it.diffs[i], p, it.prints))})
			case len(it.diffs[i]) > 0:
				tamper = append(tamper, Damage{Path: it.path, Reason: fmt.Sprintf("events %d-%d (WAL segment %d) give the Merkle root sealed with them, but %d of their leaf prints differ: the prints were altered", p.First, p.First+p.Count-1, p.WAL, len(it.diffs[i]))})
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
