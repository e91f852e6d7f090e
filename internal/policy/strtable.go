package policy

import "math/bits"

// strTable maps the few strings a policy names (verbs, users, groups,
// namespaces, API groups, resources) to rule bit sets. It is an
// open-addressing hash table with a hash that reads at most 16 bytes of
// the key, which makes a lookup several times cheaper than a Go map's for
// the short keys of a policy. It is built once and then only read.
type strTable struct {
	mask    uint64 // len(entries)-1; len(entries) is a power of two
	entries []strEntry
}

type strEntry struct {
	key   string
	first uint64   // set[0]
	set   []uint64 // nil marks an empty slot
}

// newStrTable builds a table of m's entries.
func newStrTable(m map[string][]uint64) strTable {
	if len(m) == 0 {
		return strTable{}
	}
	size := 4
	for size < 2*len(m) {
		size *= 2
	}
	t := strTable{mask: uint64(size - 1), entries: make([]strEntry, size)}
	for k, set := range m {
		i := strHash(k) & t.mask
		for t.entries[i].set != nil {
			i = (i + 1) & t.mask
		}
		t.entries[i] = strEntry{key: k, first: set[0], set: set}
	}
	return t
}

// get returns the set stored for s, or nil.
func (t *strTable) get(s string) []uint64 {
	if t.entries == nil {
		return nil
	}
	for i := strHash(s) & t.mask; ; i = (i + 1) & t.mask {
		e := &t.entries[i]
		if e.set == nil {
			return nil
		}
		if e.key == s {
			return e.set
		}
	}
}

// get1 returns the first word of the set stored for s, or 0.
func (t *strTable) get1(s string) uint64 {
	if t.entries == nil {
		return 0
	}
	for i := strHash(s) & t.mask; ; i = (i + 1) & t.mask {
		e := &t.entries[i]
		if e.set == nil {
			return 0
		}
		if e.key == s {
			return e.first
		}
	}
}

// strHash mixes the length and the first and last eight bytes of s.
// Keys that share all of those collide and are told apart by comparison.
func strHash(s string) uint64 {
	n := len(s)
	var a, b uint64
	switch {
	case n >= 8:
		a, b = le64(s), le64(s[n-8:])
	case n >= 4:
		a, b = uint64(le32(s)), uint64(le32(s[n-4:]))
	case n > 0:
		a = uint64(s[0])<<16 | uint64(s[n>>1])<<8 | uint64(s[n-1])
	}
	h := (a ^ bits.RotateLeft64(b, 29) ^ uint64(n)*0x9e3779b97f4a7c15) * 0xbf58476d1ce4e5b9
	return h ^ h>>31
}

func le64(s string) uint64 {
	_ = s[7]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}

func le32(s string) uint32 {
	_ = s[3]
	return uint32(s[0]) | uint32(s[1])<<8 | uint32(s[2])<<16 | uint32(s[3])<<24
}
