package clickhouse

import (
	"bytes"
	"testing"
)

// TestPutIPKey holds encodeRow's allocation-free source IP key to
// ipKey, which the filters' CIDR ranges are made of: a row written
// otherwise would fall outside the range of its own address.
func TestPutIPKey(t *testing.T) {
	for _, s := range []string{"192.168.1.100", "10.0.0.1", "0.0.0.0", "255.255.255.255", "::1", "2001:db8::1",
		"::ffff:10.1.2.3", "fe80::1%eth0", "", "not an ip", "1.2.3", "999.1.1.1", string(make([]byte, 65))} {
		want := putString([]byte{0xaa}, ipKey(s))
		if got := putIPKey([]byte{0xaa}, s); !bytes.Equal(got, want) {
			t.Errorf("putIPKey(%q) = %x, want putString(ipKey) = %x", s, got, want)
		}
	}
}

// TestAppendSortedKeys: a row's annotation and user.extra keys in order,
// also past the small array encodeRow passes.
func TestAppendSortedKeys(t *testing.T) {
	m := map[string]int{}
	var want []string
	for _, k := range []string{"a", "b", "c", "d", "e", "f", "g", "h", "i", "j"} {
		m[k] = 1
		want = append(want, k)
		var arr [8]string
		got := appendSortedKeys(arr[:0], m)
		if len(got) != len(want) {
			t.Fatalf("%d keys, want %d", len(got), len(want))
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("keys %v, want %v", got, want)
			}
		}
	}
}
