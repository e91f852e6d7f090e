package local

import (
	"bytes"
	"fmt"
	"slices"
	"strconv"

	"github.com/klauspost/compress/zstd"

	"github.com/kubetrail/kubetrail/internal/audit"
)

// The audit ID table of a segment (docs/adr/0022-auditid-lookup.md) finds
// the events of an audit ID (the event page, `kubetrail prove AUDITID`)
// without reading every event: audit IDs are unique per request, so a
// column of them would be a dictionary as large as the segment. The table
// is a zstd frame after the leaf prints holding, sorted, a 32-bit
// fingerprint of every event's audit ID and the event's ordinal, as two
// byte planes (appendPlanes): the fingerprints' deltas, then the
// ordinals. A lookup reads the frame, finds the fingerprint by binary
// search and names a superset of the events holding the audit ID: the
// caller checks each event (two IDs may share a fingerprint). Segments
// written before have no table and are read whole.
//
// A v5 segment written since 2026-12-05 holds the table by ordinal
// instead (docs/adr/0023, "Byte accounting at 2M"): a byte auditByOrdinal,
// then each event's print, in arrival order, cut to its low 24 bits (3
// bytes little endian). It takes 3.0 bytes an event where the sorted
// table, a 32-bit print and an ordinal each, takes 4.4 compressed; a
// lookup scans the prints instead of searching them (54,000 a segment at
// 2M events), and two IDs of a segment share a print about once in 300
// lookups, which the caller's check of each event absorbs. The first
// byte of the sorted table is a plane width, 0 to 4, never auditByOrdinal;
// both forms are read.

// auditPrint returns the fingerprint of an audit ID: FNV-1a 64 (the Bloom
// filters' hash, stable across processes) folded to 32 bits.
func auditPrint(id string) uint32 {
	h, _ := bloomHashes(id)
	return uint32(h) ^ uint32(h>>32)
}

// storedAuditID returns the audit ID of an event's stored bytes, looking for
// its one key in the text and decoding only that key (the event whole
// where that gives up) when the text is not plain: the key is missing,
// not plainly at the top level (after a '{' or '[' that may open a body,
// or not right after a ',' or the opening '{'), occurs twice (a request
// body may hold one) or in another case (encoding/json matches keys
// regardless of case, Unicode's simple folding, which folds none of these
// letters to another byte), the value holds an escape, or the text
// escapes a letter anywhere (a second key "\u0061uditID" is an auditID
// to encoding/json, and the last one wins). What it returns must be what
// decoding gives: a wrong print hides the event from lookups.
func storedAuditID(raw []byte, ev *audit.Event) (string, error) {
	const key = `"auditID":"`
	i := bytes.Index(raw, []byte(key))
	if i > 0 && (raw[i-1] == ',' || raw[i-1] == '{') && bytes.IndexAny(raw[1:i], "{[") < 0 && countFold(raw, "auditid", 2) == 1 && !escapesALetter(raw) {
		v := raw[i+len(key):]
		if j := bytes.IndexByte(v, '"'); j >= 0 && bytes.IndexByte(v[:j], '\\') < 0 {
			return string(v[:j]), nil
		}
	}
	if audit.StoredFields(raw, auditIDKey, false, ev) {
		return ev.AuditID, nil
	}
	if err := audit.DecodeStored(raw, ev); err != nil {
		return "", err
	}
	return ev.AuditID, nil
}

var auditIDKey = []string{"auditID"}

// escapesALetter reports whether raw holds a \u escape of an ASCII letter
// (or what looks like one: an escaped backslash before "u0061" counts
// too, which only costs the slower path).
func escapesALetter(raw []byte) bool {
	for i := 0; ; {
		j := bytes.Index(raw[i:], []byte(`\u`))
		if j < 0 {
			return false
		}
		i += j + 2
		if i+4 <= len(raw) {
			if v, err := strconv.ParseUint(string(raw[i:i+4]), 16, 16); err == nil && v|0x20 >= 'a' && v|0x20 <= 'z' {
				return true
			}
		}
	}
}

// countFold counts the occurrences of lower (ASCII lower-case letters) in
// b in any case. Each has lower[at] in one case or the other as its
// byte at, which IndexByte finds (vectorised): testing every byte of
// every event cost an import 7% of its CPU. A letter rare in b makes
// fewer calls: storedAuditID looks for the 'd' of "auditid", half as
// frequent as its 'a' in the bench corpus's events.
func countFold(b []byte, lower string, at int) int {
	n := 0
	for _, c := range [2]byte{lower[at], lower[at] - 0x20} {
		for i := at; i < len(b); i++ {
			j := bytes.IndexByte(b[i:], c)
			if j < 0 {
				break
			}
			i += j
			from := i - at
			if len(b)-from < len(lower) {
				break
			}
			k := 0
			for k < len(lower) && b[from+k]|0x20 == lower[k] {
				k++
			}
			if k == len(lower) {
				n++
			}
		}
	}
	return n
}

// appendAuditTable appends the table of prints, given per event in
// arrival order.
func appendAuditTable(dst []byte, prints []uint32) []byte {
	ords := make([]uint32, len(prints))
	for i := range ords {
		ords[i] = uint32(i)
	}
	slices.SortFunc(ords, func(a, b uint32) int {
		if prints[a] != prints[b] {
			return int(int64(prints[a]) - int64(prints[b]))
		}
		return int(int64(a) - int64(b))
	})
	vals := make([]uint64, len(ords))
	prev := uint32(0)
	for i, o := range ords {
		vals[i] = uint64(prints[o] - prev)
		prev = prints[o]
	}
	dst = appendPlanes(dst, vals)
	for i, o := range ords {
		vals[i] = uint64(o)
	}
	return appendPlanes(dst, vals)
}

// auditByOrdinal starts an audit ID table by ordinal; auditPrintMask24
// keeps the part of a print it holds.
const (
	auditByOrdinal   = 0x80
	auditPrintMask24 = 1<<24 - 1
)

// appendAuditTableByOrdinal appends the table by ordinal of the prints,
// given per event in arrival order.
func appendAuditTableByOrdinal(dst []byte, prints []uint32) []byte {
	dst = append(dst, auditByOrdinal)
	for _, p := range prints {
		dst = append(dst, byte(p), byte(p>>8), byte(p>>16))
	}
	return dst
}

// auditTable is a segment's table, decoded: prints ascending and ords the
// ordinal of each, or (a table by ordinal) prints by ordinal and no ords.
// mask keeps the part of a print the table holds.
type auditTable struct {
	prints, ords []uint32
	mask         uint32
}

// print returns the print of an audit ID as the table holds it.
func (t *auditTable) print(id string) uint32 { return auditPrint(id) & t.mask }

// readAuditTable returns the segment's audit ID table, or nil for a
// segment written without one.
func (r *segmentReader) readAuditTable(dec *zstd.Decoder) (*auditTable, error) {
	m := &r.meta
	if m.AuditLen == 0 {
		return nil, nil
	}
	var sc *scratch
	plain, err := sc.frame(r, dec, m.AuditOff, m.AuditLen)
	if err != nil {
		return nil, r.fail("audit id table", err)
	}
	n := m.Count
	t := &auditTable{mask: ^uint32(0)}
	if len(plain) == 0 {
		return nil, r.fail("audit id table", fmt.Errorf("empty for %d events", n))
	}
	if plain[0] == auditByOrdinal {
		if len(plain) != 1+3*n {
			return nil, r.fail("audit id table", fmt.Errorf("%d bytes for %d events by ordinal", len(plain), n))
		}
		t.mask, t.prints = auditPrintMask24, make([]uint32, n)
		for i := range t.prints {
			b := plain[1+3*i:]
			t.prints[i] = uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16
		}
		return t, nil
	}
	cut := 1 + int(plain[0])*n
	if cut > len(plain) {
		return nil, r.fail("audit id table", fmt.Errorf("cut short: %d bytes for %d events", len(plain), n))
	}
	if t.prints, err = unplane(plain[:cut], n, 4, t.prints); err != nil {
		return nil, r.fail("audit id table", err)
	}
	if t.ords, err = unplane(plain[cut:], n, 4, t.ords); err != nil {
		return nil, r.fail("audit id table", err)
	}
	for i := 1; i < n; i++ {
		t.prints[i] += t.prints[i-1]
	}
	for _, o := range t.ords {
		if int(o) >= n {
			return nil, r.fail("audit id table", fmt.Errorf("ordinal %d of %d events", o, n))
		}
	}
	return t, nil
}

// lookup appends to dst the ordinals of the events whose audit ID may be
// one of ids, ascending.
func (t *auditTable) lookup(ids []string, dst []int32) []int32 {
	if t.ords == nil {
		for _, id := range ids {
			p := t.print(id)
			for o, q := range t.prints {
				if q == p {
					dst = append(dst, int32(o))
				}
			}
		}
		slices.Sort(dst)
		return slices.Compact(dst)
	}
	for _, id := range ids {
		p := auditPrint(id)
		i, _ := slices.BinarySearch(t.prints, p)
		for ; i < len(t.prints) && t.prints[i] == p; i++ {
			dst = append(dst, int32(t.ords[i]))
		}
	}
	slices.Sort(dst)
	return slices.Compact(dst)
}

// byOrdinal returns the prints by event ordinal, checking that the table
// names each event once; nil for no table.
func (t *auditTable) byOrdinal() ([]uint32, error) {
	if t == nil {
		return nil, nil
	}
	if t.ords == nil {
		return t.prints, nil
	}
	out := make([]uint32, len(t.ords))
	seen := make([]bool, len(t.ords))
	for i, o := range t.ords {
		if seen[o] {
			return nil, fmt.Errorf("event %d listed twice", o)
		}
		seen[o] = true
		out[o] = t.prints[i]
	}
	return out, nil
}
