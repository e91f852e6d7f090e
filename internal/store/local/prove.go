package local

import (
	"cmp"
	"errors"
	"fmt"
	"path/filepath"
	"slices"

	"github.com/klauspost/compress/zstd"

	"github.com/kubetrail/kubetrail/internal/trust"
	"github.com/kubetrail/kubetrail/internal/vfs"
	"github.com/kubetrail/kubetrail/internal/wal"
)

// Prove builds the inclusion proof of the event at pos
// (docs/adr/0018-trust-event-level-evidence.md): its RFC 6962 audit path
// in its WAL segment's tree, recomputed from the stored bytes, and the
// chain steps from that tree's root to the first chain point signed reports
// true for (the head of a signed checkpoint, which the caller then puts in
// the proof). It fails, saying why, when the event is not sealed yet, its
// segment's events no longer give their root, or the chain does not reach
// a signed point.
func Prove(dir string, pos Pos, signed func(wal uint64, head [32]byte) bool) (*trust.Proof, error) {
	return ProveFS(vfs.OS, dir, pos, signed)
}

// ProveFS is Prove on a folder in fs.
func ProveFS(fs vfs.FS, dir string, pos Pos, signed func(wal uint64, head [32]byte) bool) (*trust.Proof, error) {
	segs, _, err := openSnapshot(fs, filepath.Join(dir, segmentDir), nil)
	if err != nil {
		return nil, err
	}
	defer closeSnapshot(segs)
	slices.SortFunc(segs, func(a, b segmentFile) int { return cmp.Compare(a.first, b.first) })
	i := slices.IndexFunc(segs, func(s segmentFile) bool { return s.first <= pos.WAL && pos.WAL <= s.last })
	if i < 0 {
		if _, err := fs.Stat(wal.SegmentPath(filepath.Join(dir, walDir), pos.WAL)); err == nil {
			return nil, fmt.Errorf("event %s is still in the WAL: it is covered once sealed (serve --seal-after) and the next checkpoint is signed", pos)
		}
		return nil, fmt.Errorf("no segment holds WAL segment %d: no event %s is stored", pos.WAL, pos)
	}
	r := segs[i].r
	t := r.meta.Trust
	if t == nil || !t.Linked {
		return nil, fmt.Errorf("%s is not linked into the hash chain (written before segments had Merkle roots, or after a sealing failure): its events cannot be proved", segs[i].path)
	}
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
	if err != nil {
		return nil, err
	}
	defer dec.Close()
	parts := r.meta.parts()
	pi := slices.IndexFunc(parts, func(p walPart) bool { return p.WAL == pos.WAL })
	part := parts[pi]
	if pos.Ord < 0 || pos.Ord >= part.Count {
		return nil, fmt.Errorf("WAL segment %d holds %d events: no event %s", pos.WAL, part.Count, pos)
	}
	p := &trust.Proof{Pos: pos.String(), WAL: pos.WAL, Index: pos.Ord, Size: part.Count}
	leaves := make([]hash, 0, part.Count)
	err = r.scanRange(dec, part.First, part.First+part.Count, nil, func(e entry) error {
		if e.ord-part.First == pos.Ord {
			p.Event, p.Cluster = string(e.raw), e.cluster
		}
		leaves = append(leaves, leafHash(e.raw))
		return nil
	})
	if err != nil {
		return nil, err
	}
	if root := trust.TreeHash(leaves); root != t.Roots[pi] {
		return nil, fmt.Errorf("%s: the events of WAL segment %d do not give the Merkle root sealed with them: altered (run kubetrail verify)", segs[i].path, pos.WAL)
	}
	p.Path = trust.HexHashes(trust.InclusionPath(leaves, pos.Ord))
	head := t.Prev
	for k := range pi {
		head = chainStep(head, t.Roots[k], parts[k].WAL, parts[k].Count)
	}
	p.Prev = fmt.Sprintf("%x", head)
	head = chainStep(head, t.Roots[pi], part.WAL, part.Count)
	if signed(part.WAL, head) {
		return p, nil
	}
	// The later parts of this segment, then the later segments.
	pi++
	for ; i < len(segs); i, pi = i+1, 0 {
		m := &segs[i].r.meta
		t := m.Trust
		if pi == 0 && (t == nil || !t.Linked || t.Prev != head) {
			return nil, fmt.Errorf("the hash chain breaks at %s before a signed checkpoint covers event %s (run kubetrail verify)", segs[i].path, pos)
		}
		parts := m.parts()
		for ; pi < len(parts); pi++ {
			q := parts[pi]
			head = chainStep(head, t.Roots[pi], q.WAL, q.Count)
			p.Next = append(p.Next, trust.Step{WAL: q.WAL, Events: q.Count, Root: fmt.Sprintf("%x", t.Roots[pi])})
			if signed(q.WAL, head) {
				return p, nil
			}
		}
	}
	return nil, errors.New("no signed checkpoint covers event " + pos.String() + " yet: serve signs one every --checkpoint-every after the event is sealed")
}
