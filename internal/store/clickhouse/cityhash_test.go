package clickhouse

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"strings"
	"testing"

	"github.com/kubetrail/kubetrail/internal/store/local"
)

// TestKeyHashIsClickHousesCityHash64 asks the server for cityHash64 of
// keys (the sharding key of a Distributed store) and compares keyHash's.
func TestKeyHashIsClickHousesCityHash64(t *testing.T) {
	_, s := newDB(t, "kt_cityhash")
	var keys []local.Key
	var lits []string
	for i := range 500 {
		var k local.Key
		h := sha256.Sum256([]byte{byte(i), byte(i >> 8)})
		copy(k[:], h[:])
		if i == 0 {
			k = local.Key{}
		}
		keys = append(keys, k)
		lits = append(lits, "toFixedString(unhex('"+hex.EncodeToString(k[:])+"'), 16)")
	}
	var got []uint64
	err := s.c.query(context.Background(), "SELECT cityHash64(k) FROM (SELECT arrayJoin(["+strings.Join(lits, ",")+"]) AS k) FORMAT RowBinary", func(body io.Reader) error {
		r := newRowReader(body)
		for r.more() {
			got = append(got, r.u64())
		}
		return r.err
	})
	if err != nil || len(got) != len(keys) {
		t.Fatalf("%d hashes, %v", len(got), err)
	}
	for i, k := range keys {
		if h := keyHash(k); h != got[i] {
			t.Fatalf("key %x: keyHash %d, ClickHouse's cityHash64 %d", k, h, got[i])
		}
	}
}
