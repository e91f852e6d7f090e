package trust

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
	"time"
)

// mth is RFC 6962's MTH written from section 2.1 over the leaves' bytes,
// independent of TreeHash.
func mth(leaves [][]byte) Hash {
	switch len(leaves) {
	case 0:
		return sha256.Sum256(nil)
	case 1:
		return sha256.Sum256(append([]byte{0}, leaves[0]...))
	}
	k := 1
	for k*2 < len(leaves) {
		k *= 2
	}
	l, r := mth(leaves[:k]), mth(leaves[k:])
	return sha256.Sum256(append(append([]byte{1}, l[:]...), r[:]...))
}

// TestInclusionPaths checks every leaf of every tree up to 70 leaves: the
// audit path gives the RFC 6962 root, and a path with one hash changed,
// one too many or one too few, or given for another index, does not.
// Mutations it catches: RootFromPath hashing the sibling on the wrong
// side for a right child, not skipping the levels where a last node has
// no sibling, or not checking that the path used the whole tree.
func TestInclusionPaths(t *testing.T) {
	var raw [][]byte
	var leaves []Hash
	for n := 1; n <= 70; n++ {
		raw = append(raw, []byte{byte(n), 'e'})
		leaves = append(leaves, LeafHash(raw[n-1]))
		root := mth(raw)
		if TreeHash(leaves) != root {
			t.Fatalf("%d leaves: TreeHash differs from RFC 6962's", n)
		}
		for m := range n {
			path := InclusionPath(leaves, m)
			if got, err := RootFromPath(leaves[m], m, n, path); err != nil || got != root {
				t.Fatalf("leaf %d of %d: %v", m, n, err)
			}
			for i := range path {
				bad := append([]Hash(nil), path...)
				bad[i][0] ^= 1
				if got, _ := RootFromPath(leaves[m], m, n, bad); got == root {
					t.Fatalf("leaf %d of %d: hash %d of the path changed, same root", m, n, i)
				}
			}
			if got, err := RootFromPath(leaves[m], m, n, append(path, root)); err == nil && got == root {
				t.Fatalf("leaf %d of %d: a path too long is accepted", m, n)
			}
			if len(path) > 0 {
				if got, err := RootFromPath(leaves[m], m, n, path[:len(path)-1]); err == nil && got == root {
					t.Fatalf("leaf %d of %d: a path too short is accepted", m, n)
				}
			}
			if o := (m + 1) % n; o != m {
				if got, _ := RootFromPath(leaves[m], o, n, path); got == root {
					t.Fatalf("leaf %d of %d: accepted at index %d", m, n, o)
				}
			}
		}
	}
}

// TestProofCheck builds a proof by hand over three WAL segments and checks
// that Check accepts it and names each thing altered.
func TestProofCheck(t *testing.T) {
	pub, key, _ := ed25519.GenerateKey(nil)
	events := [][]byte{[]byte(`{"auditID":"a"}`), []byte(`{"auditID":"b"}`), []byte(`{"auditID":"c"}`)}
	leaves := []Hash{LeafHash(events[0]), LeafHash(events[1]), LeafHash(events[2])}
	prev := sha256.Sum256([]byte("before"))
	head := ChainStep(prev, TreeHash(leaves), 7, 3)
	later := sha256.Sum256([]byte("root of 9"))
	head = ChainStep(head, later, 9, 40)
	good := Proof{
		Pos: "7:1", Event: string(events[1]), WAL: 7, Index: 1, Size: 3,
		Path: HexHashes(InclusionPath(leaves, 1)), Prev: hex.EncodeToString(prev[:]),
		Next:       []Step{{WAL: 9, Events: 40, Root: hex.EncodeToString(later[:])}},
		Checkpoint: Sign(key, 100, 9, head, time.Now()),
	}
	if err := good.Check(pub); err != nil {
		t.Fatalf("good proof: %v", err)
	}
	if good.AuditID() != "b" {
		t.Fatalf("auditID %q", good.AuditID())
	}
	_, other, _ := ed25519.GenerateKey(nil)
	for _, c := range []struct {
		name, want string
		alter      func(p *Proof)
	}{
		{"event byte", "the event or the proof was altered", func(p *Proof) { p.Event = `{"auditID":"B"}` }},
		{"another event", "the event or the proof was altered", func(p *Proof) { p.Event = string(events[0]) }},
		{"index", "audit path too long", func(p *Proof) { p.Index = 2 }},
		{"size", "the event or the proof was altered", func(p *Proof) { p.Size = 4 }},
		{"later root", "the event or the proof was altered", func(p *Proof) { p.Next[0].Root = p.Prev }},
		{"step dropped", "the chain ends at WAL segment 7, the checkpoint at 9", func(p *Proof) { p.Next = nil }},
		{"steps backwards", "must go forward", func(p *Proof) { p.Next[0].WAL = 6 }},
		{"re-signed with another key", "signature does not verify", func(p *Proof) {
			p.Checkpoint = Sign(other, 100, 9, head, time.Now())
		}},
		{"checkpoint edited", "signature does not verify", func(p *Proof) { p.Checkpoint.Events = 99 }},
	} {
		p := good
		p.Next = append([]Step(nil), good.Next...)
		c.alter(&p)
		if err := p.Check(pub); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
}
