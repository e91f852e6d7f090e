package textcodec

import (
	"bytes"
	"encoding/hex"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestPutTypedAsInTurn: putTyped, which picks the one kind to try by a
// value's length, writes every value as the first kind of UUID, time,
// integer and string ending in a UUID that reads it, each read here the
// slow way (hex, time.Parse, strconv), with the same UUID bytes. Values
// are near each kind: one byte changed, upper case, one byte more or
// less, the longest integers. Mutations caught: integers tried up to 18
// bytes rather than 19; upper-case digits taken in UUIDs.
func TestPutTypedAsInTurn(t *testing.T) {
	uuidOf := func(v string) ([]byte, bool) {
		if len(v) != 36 || strings.ToLower(v) != v || v[8] != '-' || v[13] != '-' || v[18] != '-' || v[23] != '-' {
			return nil, false
		}
		u, err := hex.DecodeString(v[:8] + v[9:13] + v[14:18] + v[19:23] + v[24:])
		return u, err == nil
	}
	// want returns the kind of v and the UUID bytes it holds, if any.
	want := func(v string) (byte, []byte) {
		if u, ok := uuidOf(v); ok {
			return kindUUID, u
		}
		if tm, err := time.Parse(microLayout, v); err == nil && tm.Format(microLayout) == v {
			return kindTime, nil
		}
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && strconv.FormatInt(n, 10) == v && len(strings.TrimPrefix(v, "-")) <= 18 {
			return kindInt, nil
		}
		if len(v) > 36 {
			if u, ok := uuidOf(v[len(v)-36:]); ok {
				return kindTailID, u
			}
		}
		return kindString, nil
	}
	rng := rand.New(rand.NewPCG(7, 8))
	const alphabet = "0123456789abcdefABCDEF-:.TZ x"
	seeds := []string{
		"a8b83341-a8b6-40d4-9435-aaa7e00d238c", "2026-11-01T00:00:00.874346Z", "0", "-1", "123456789012345678",
		"-123456789012345678", "1234567890123456789", "-1234567890123456789", "JTI=20613075-1f67-46ef-8f2e-686626aa5f98",
		"", "-", "00", "-0", "+1", "605DDA5B-5e74-4a28-bb1a-a179631597f2",
	}
	var vs []string
	for _, s := range seeds {
		vs = append(vs, s)
		for range 300 {
			b := []byte(s)
			switch rng.IntN(4) {
			case 0:
				if len(b) > 0 {
					b[rng.IntN(len(b))] = alphabet[rng.IntN(len(alphabet))]
				}
			case 1:
				at := rng.IntN(len(b) + 1)
				b = append(b[:at], append([]byte{alphabet[rng.IntN(len(alphabet))]}, b[at:]...)...)
			case 2:
				if len(b) > 0 {
					at := rng.IntN(len(b))
					b = append(b[:at], b[at+1:]...)
				}
			case 3:
				b = bytes.ToUpper(b)
			}
			vs = append(vs, string(b))
		}
	}
	e := newEncoder(Options{Types: true, Rows: true}, nil)
	kinds := map[byte]int{}
	for _, v := range vs {
		c := &column{}
		kind, fix := kindString, []byte(nil)
		if e.putTyped(c, []byte(v)) {
			kind, fix = c.kinds[0], c.fix
		}
		wk, wu := want(v)
		if kind != wk || !bytes.Equal(fix, wu) {
			t.Fatalf("putTyped(%q): kind %d, UUID %x; want %d, %x", v, kind, fix, wk, wu)
		}
		kinds[kind]++
	}
	for k := kindString; k <= kindTailID; k++ {
		if kinds[k] < 10 {
			t.Errorf("%d values of kind %d, want values of every kind: %v", kinds[k], k, kinds)
		}
	}
}
