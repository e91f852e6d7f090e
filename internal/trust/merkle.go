package trust

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
)

// The hashes of docs/adr/0016-merkle-roots-and-hash-chain.md, here so
// that the store that computes them and a proof checked without the store
// (Proof.Check) share one definition. Every WAL segment's events, in
// arrival order, are the leaves of an RFC 6962 Merkle tree; the trees'
// roots are chained in WAL order (ChainStep).

// Hash is a SHA-256 digest.
type Hash = [sha256.Size]byte

// LeafHash is RFC 6962's hash of one leaf, an event's stored bytes:
// SHA-256(0x00 || raw).
func LeafHash(raw []byte) Hash {
	h := sha256.New()
	h.Write([]byte{0})
	h.Write(raw)
	var out Hash
	h.Sum(out[:0])
	return out
}

// NodeHash is RFC 6962's hash of an inner node: SHA-256(0x01 || l || r).
func NodeHash(l, r Hash) Hash {
	var b [1 + 2*sha256.Size]byte
	b[0] = 1
	copy(b[1:], l[:])
	copy(b[1+sha256.Size:], r[:])
	return sha256.Sum256(b[:])
}

// ChainStep links a WAL segment (number seq, count events, Merkle root)
// to the chain head before it: SHA-256(prev || root || seq || count), the
// numbers 8 bytes big endian.
func ChainStep(prev, root Hash, seq uint64, count int) Hash {
	var b [2*sha256.Size + 16]byte
	copy(b[:], prev[:])
	copy(b[sha256.Size:], root[:])
	binary.BigEndian.PutUint64(b[2*sha256.Size:], seq)
	binary.BigEndian.PutUint64(b[2*sha256.Size+8:], uint64(count))
	return sha256.Sum256(b[:])
}

// split is RFC 6962's k: the largest power of two smaller than n (n > 1).
func split(n int) int {
	k := 1
	for k*2 < n {
		k *= 2
	}
	return k
}

// TreeHash is RFC 6962's MTH over leaf hashes.
func TreeHash(leaves []Hash) Hash {
	switch len(leaves) {
	case 0:
		return sha256.Sum256(nil)
	case 1:
		return leaves[0]
	}
	k := split(len(leaves))
	return NodeHash(TreeHash(leaves[:k]), TreeHash(leaves[k:]))
}

// InclusionPath is RFC 6962's audit path PATH(m, D[n]) of leaf m among
// the leaf hashes given: the sibling hashes from the leaf up to the root.
func InclusionPath(leaves []Hash, m int) []Hash {
	if len(leaves) <= 1 {
		return nil
	}
	k := split(len(leaves))
	if m < k {
		return append(InclusionPath(leaves[:k], m), TreeHash(leaves[k:]))
	}
	return append(InclusionPath(leaves[k:], m-k), TreeHash(leaves[:k]))
}

// RootFromPath computes the root that an audit path gives leaf hash leaf
// at index m of a tree of n leaves (RFC 9162 section 2.1.3.2).
func RootFromPath(leaf Hash, m, n int, path []Hash) (Hash, error) {
	if m < 0 || m >= n {
		return Hash{}, errors.New("leaf index outside the tree")
	}
	fn, sn, r := uint64(m), uint64(n-1), leaf
	for _, p := range path {
		if sn == 0 {
			return Hash{}, errors.New("audit path too long for the tree")
		}
		if fn&1 == 1 || fn == sn {
			r = NodeHash(p, r)
			for fn&1 == 0 && fn != 0 {
				fn >>= 1
				sn >>= 1
			}
		} else {
			r = NodeHash(r, p)
		}
		fn >>= 1
		sn >>= 1
	}
	if sn != 0 {
		return Hash{}, errors.New("audit path too short for the tree")
	}
	return r, nil
}
