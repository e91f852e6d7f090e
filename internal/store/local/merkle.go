package local

import (
	"crypto/sha256"
	"encoding/binary"
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
// bytes, never stored. A WAL segment is the unit because it never changes
// once sealed: compaction concatenates units and keeps each unit's root.

// hash is a SHA-256 digest.
type hash = [sha256.Size]byte

// leafHash is RFC 6962's hash of one leaf: an event's stored bytes.
func leafHash(raw []byte) hash {
	h := sha256.New()
	h.Write([]byte{0})
	h.Write(raw)
	var out hash
	h.Sum(out[:0])
	return out
}

// nodeHash is RFC 6962's hash of an inner node.
func nodeHash(l, r hash) hash {
	var b [1 + 2*sha256.Size]byte
	b[0] = 1
	copy(b[1:], l[:])
	copy(b[1+sha256.Size:], r[:])
	return sha256.Sum256(b[:])
}

// merkle computes an RFC 6962 tree head over leaves given one at a time,
// holding one perfect subtree per bit of the count.
type merkle struct {
	stack []hash
	sizes []uint64
	n     uint64
}

func (m *merkle) add(raw []byte) {
	h, size := leafHash(raw), uint64(1)
	for len(m.sizes) > 0 && m.sizes[len(m.sizes)-1] == size {
		h = nodeHash(m.stack[len(m.stack)-1], h)
		size *= 2
		m.stack, m.sizes = m.stack[:len(m.stack)-1], m.sizes[:len(m.sizes)-1]
	}
	m.stack, m.sizes = append(m.stack, h), append(m.sizes, size)
	m.n++
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

// chainStep links a unit (WAL segment seq, count events, Merkle root) to
// the chain head before it.
func chainStep(prev, root hash, seq uint64, count int) hash {
	var b [2*sha256.Size + 16]byte
	copy(b[:], prev[:])
	copy(b[sha256.Size:], root[:])
	binary.BigEndian.PutUint64(b[2*sha256.Size:], seq)
	binary.BigEndian.PutUint64(b[2*sha256.Size+8:], uint64(count))
	return sha256.Sum256(b[:])
}

// segTrust is what a segment's meta holds for tamper evidence: the root of
// each of its parts (parts(): one per WAL segment, in order) and, when
// Linked, the chain head before its first part. A segment sealed while the
// chain could not be followed (a sealer failed earlier in the run, or an
// older WAL segment sealed late) has roots but no link.
type segTrust struct {
	Linked bool
	Prev   hash
	Roots  []hash
}

// head returns the chain head after the segment's last part.
func (t *segTrust) head(parts []walPart) hash {
	h := t.Prev
	for i, p := range parts {
		h = chainStep(h, t.Roots[i], p.WAL, p.Count)
	}
	return h
}
