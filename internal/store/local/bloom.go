package local

// bloom is the Bloom filter a v2 segment keeps over a large dictionary
// (512 values or more), so that a question for one exact value
// (name=important) skips the segment without decompressing its
// dictionary. 10 bits per value and 7 probes give about 1% false
// positives. v3 segments keep no Bloom filters: a large dictionary is
// stored in chunks behind an index, and one lookup reads one chunk
// (docs/adr/0006-segment-v3.md). newBloom and add remain to build v2
// filters in tests.
type bloom struct {
	bits []byte
	k    uint32
}

const bloomMinValues = 512

func newBloom(n int) *bloom {
	m := max(64, n*10)
	return &bloom{bits: make([]byte, (m+7)/8), k: 7}
}

func bloomHashes(s string) (uint64, uint64) {
	// FNV-1a 64 and a second mix of it: stable across processes, unlike
	// maphash.
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	h2 := h ^ (h >> 29) ^ 0x9e3779b97f4a7c15
	h2 *= 0xbf58476d1ce4e5b9
	return h, h2 | 1
}

func (b *bloom) add(s string) {
	h1, h2 := bloomHashes(s)
	m := uint64(len(b.bits) * 8)
	for i := uint32(0); i < b.k; i++ {
		bit := (h1 + uint64(i)*h2) % m
		b.bits[bit/8] |= 1 << (bit % 8)
	}
}

func (b *bloom) mayContain(s string) bool {
	h1, h2 := bloomHashes(s)
	m := uint64(len(b.bits) * 8)
	for i := uint32(0); i < b.k; i++ {
		bit := (h1 + uint64(i)*h2) % m
		if b.bits[bit/8]&(1<<(bit%8)) == 0 {
			return false
		}
	}
	return true
}
