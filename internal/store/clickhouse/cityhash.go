package clickhouse

import (
	"encoding/binary"
	"math/bits"

	"github.com/kubetrail/kubetrail/internal/store/local"
)

// keyHash is ClickHouse's cityHash64 of an event key (CityHash64 of
// CityHash v1.0.2, which ClickHouse keeps for compatibility), the
// sharding key of a cluster's Distributed table: a collector that
// computes it inserts each row into the shard the Distributed table
// would have sent it to. Only inputs of 9 to 16 bytes are needed (a key
// is 16), CityHash's HashLen0to16 for len > 8.
func keyHash(k local.Key) uint64 {
	const n = uint64(len(k))
	a := binary.LittleEndian.Uint64(k[0:])
	b := binary.LittleEndian.Uint64(k[n-8:])
	return hash128to64(a, bits.RotateLeft64(b+n, -int(n))) ^ b
}

// hash128to64 is CityHash's Hash128to64 of the 128-bit value (lo, hi).
func hash128to64(lo, hi uint64) uint64 {
	const mul = 0x9ddfea08eb382d69
	a := (lo ^ hi) * mul
	a ^= a >> 47
	b := (hi ^ a) * mul
	b ^= b >> 47
	return b * mul
}
