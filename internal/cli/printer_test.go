package cli

import (
	"bytes"
	"slices"
	"testing"
)

// TestPrinterKeepsEveryEvent: the copies a printer keeps until it sorts
// (in slabs) each hold their event's bytes after many more events were
// kept, across slab boundaries and for events too large for a slab.
// Mutation it catches: a full slab reused instead of a new one.
func TestPrinterKeepsEveryEvent(t *testing.T) {
	p := &printer{}
	var want, got [][]byte
	for i := range 3000 {
		n := 1 + (i*7919)%3000
		if i%500 == 0 {
			n = slabBytes/4 + 1 + i
		}
		raw := bytes.Repeat([]byte{byte('a' + i%26)}, n)
		raw[0] = byte(i)
		want = append(want, raw)
		got = append(got, p.keep(slices.Clone(raw)))
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("event %d (%d bytes): kept %d bytes, not its own", i, len(want[i]), len(got[i]))
		}
	}
}
