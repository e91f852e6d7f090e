package local

import (
	"crypto/sha256"

	"github.com/kubetrail/kubetrail/internal/trust"
)

// Tamper evidence (docs/adr/0016-merkle-roots-and-hash-chain.md): every
// WAL segment's events, once sealed, are the leaves of a Merkle tree in
// arrival order, hashed as RFC 6962 does (leaf = SHA-256(0x00 || stored
// bytes), node = SHA-256(0x01 || left || right)), and the roots are
// chained across the data folder in WAL order:
//
//	head_w = SHA-256(head_prev || root_w || WAL number w || events of w)
//
// (the numbers 8 bytes big endian). Leaves are recomputed from the stored
// bytes; each segment keeps only a short print of each (leafPrint), to
// name the event that changed. A WAL segment is the unit because it never changes
// once sealed: compaction concatenates units and keeps each unit's root.

// hash is a SHA-256 digest.
type hash = trust.Hash

// The hashes are trust's, which checks proofs without the store.
func leafHash(raw []byte) hash { return trust.LeafHash(raw) }
func nodeHash(l, r hash) hash  { return trust.NodeHash(l, r) }
func chainStep(prev, root hash, seq uint64, count int) hash {
	return trust.ChainStep(prev, root, seq, count)
}

// merkle computes an RFC 6962 tree head over leaves given one at a time,
// holding one perfect subtree per bit of the count.
type merkle struct {
	stack []hash
	sizes []uint64
	n     uint64
}

// add adds a leaf, an event's stored bytes, and returns its leaf hash.
func (m *merkle) add(raw []byte) hash {
	return m.addLeaf(leafHash(raw))
}

// addLeaf adds a leaf given its hash.
func (m *merkle) addLeaf(leaf hash) hash {
	h, size := leaf, uint64(1)
	for len(m.sizes) > 0 && m.sizes[len(m.sizes)-1] == size {
		h = nodeHash(m.stack[len(m.stack)-1], h)
		size *= 2
		m.stack, m.sizes = m.stack[:len(m.stack)-1], m.sizes[:len(m.sizes)-1]
	}
	m.stack, m.sizes = append(m.stack, h), append(m.sizes, size)
	m.n++
	return leaf
}

// root returns the tree head of the leaves so far: RFC 6962 splits n
// leaves at the largest power of two below n, which is folding the
// perfect subtrees from the right.
func (m *merkle) root() hash {
	if len(m.stack) == 0 {
		return sha256.Sum256(nil)
	}
	acc := m.stack[len(m.stack)-1]
	for i := len(m.stack) - 2; i >= 0; i-- {
		acc = nodeHash(m.stack[i], acc)
	}
	return acc
}

func (m *merkle) reset() { m.stack, m.sizes, m.n = m.stack[:0], m.sizes[:0], 0 }

// segTrust is what a segment's meta holds for tamper evidence: the root of
// each of its parts (parts(): one per WAL segment, in order) and, when
// Linked, the chain head before its first part. A segment sealed while the
// chain could not be followed (a sealer failed earlier in the run, or an
// older WAL segment sealed late) has roots but no link.
type segTrust struct {
	Linked bool
	Prev   hash
	Roots  []hash
	// PrintsOff and PrintsLen locate a zstd frame of every event's leaf
	// print (leafPrintBytes each, in arrival order); 0 in segments
	// written before prints were kept.
	PrintsOff, PrintsLen int64
}

// head returns the chain head after the segment's last part.
func (t *segTrust) head(parts []walPart) hash {
	h := t.Prev
	for i, p := range parts {
		h = chainStep(h, t.Roots[i], p.WAL, p.Count)
	}
	return h
}

// leafPrintBytes is how much of each event's leaf hash a segment keeps
// (docs/adr/0018-trust-event-level-evidence.md): enough to name the event
// whose bytes changed (a changed event keeps its print by chance once in
// 65,536), 2 bytes an event where events take 87 stored. The root, not
// the print, is what proves: an attacker can rewrite prints as easily as
// events, and the root still tells.
const leafPrintBytes = 2

// appendLeafPrint appends a leaf hash's print.
func appendLeafPrint(b []byte, leaf hash) []byte { return append(b, leaf[:leafPrintBytes]...) }
