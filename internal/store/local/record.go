package local

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
)

// Key identifies an event for de-duplication: a hash of its cluster and its
// stored bytes. auditID alone cannot be the key: a client may choose it,
// and every stage of one request shares it. Two deliveries of the same event
// (a retried webhook batch, a file imported twice, the webhook and the log
// file of one API server) have the same bytes and so the same key.
type Key [16]byte

// KeyOf returns the key of an event's stored bytes in a cluster.
func KeyOf(cluster string, raw []byte) Key {
	h := sha256.New()
	h.Write([]byte(cluster))
	h.Write([]byte{0})
	h.Write(raw)
	var sum [sha256.Size]byte
	var k Key
	copy(k[:], h.Sum(sum[:0]))
	return k
}

// walBatchV1 is the version byte of a WAL batch record:
//
//	version  byte (1)
//	received uvarint, unix microseconds
//	cluster  uvarint length + bytes
//	count    uvarint
//	count times: key [16]byte, time uvarint (event unix microseconds), raw uvarint length + bytes
const walBatchV1 = 1

// entry is one stored event as the store handles it.
type entry struct {
	key      Key
	cluster  string
	received int64 // unix microseconds
	time     int64 // event time, unix microseconds
	raw      []byte
	ord      int // ordinal in a segment (scanRange); 0 from the WAL
}

func appendBatch(dst []byte, cluster string, received int64, keys []Key, times []int64, raws [][]byte) []byte {
	dst = append(dst, walBatchV1)
	dst = binary.AppendUvarint(dst, uint64(received))
	dst = binary.AppendUvarint(dst, uint64(len(cluster)))
	dst = append(dst, cluster...)
	dst = binary.AppendUvarint(dst, uint64(len(raws)))
	for i, r := range raws {
		dst = append(dst, keys[i][:]...)
		dst = binary.AppendUvarint(dst, uint64(times[i]))
		dst = binary.AppendUvarint(dst, uint64(len(r)))
		dst = append(dst, r...)
	}
	return dst
}

var errCorruptBatch = errors.New("corrupt batch record")

// decodeBatch calls fn for each event of a WAL batch record. The raw slices
// alias payload.
func decodeBatch(payload []byte, fn func(e entry) error) error {
	if len(payload) == 0 || payload[0] != walBatchV1 {
		return fmt.Errorf("%w: unknown version", errCorruptBatch)
	}
	p := payload[1:]
	next := func() (uint64, bool) {
		v, n := binary.Uvarint(p)
		if n <= 0 {
			return 0, false
		}
		p = p[n:]
		return v, true
	}
	recv, ok := next()
	if !ok {
		return errCorruptBatch
	}
	cl, ok := next()
	if !ok || cl > uint64(len(p)) {
		return errCorruptBatch
	}
	cluster := string(p[:cl])
	p = p[cl:]
	count, ok := next()
	if !ok {
		return errCorruptBatch
	}
	for i := uint64(0); i < count; i++ {
		if len(p) < 16 {
			return errCorruptBatch
		}
		key := Key(p[:16])
		p = p[16:]
		t, ok1 := next()
		n, ok2 := next()
		if !ok1 || !ok2 || n > uint64(len(p)) {
			return errCorruptBatch
		}
		if err := fn(entry{key: key, cluster: cluster, received: int64(recv), time: int64(t), raw: p[:n]}); err != nil {
			return err
		}
		p = p[n:]
	}
	return nil
}
