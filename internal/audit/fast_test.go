package audit

import (
	"encoding/binary"
	"testing"
)

// TestPlain8 checks the eight-byte skip against the byte-by-byte rule for
// every byte value in every position.
func TestPlain8(t *testing.T) {
	plain := func(c byte) bool { return c != '"' && c != '\\' && c >= 0x20 }
	for pos := 0; pos < 8; pos++ {
		for c := 0; c < 256; c++ {
			var b [8]byte
			for i := range b {
				b[i] = 'a'
			}
			b[pos] = byte(c)
			if got, want := plain8(binary.LittleEndian.Uint64(b[:])), plain(byte(c)); got != want {
				t.Fatalf("byte %#x at %d: plain8 %v, want %v", c, pos, got, want)
			}
		}
	}
	// Bytes at and above 0x80 next to each other (UTF-8) stay plain.
	if !plain8(binary.LittleEndian.Uint64([]byte("é€😀x"))) {
		t.Error("UTF-8 text is plain")
	}
}
