package cursorfile

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/kubetrail/kubetrail/internal/vfs"
)

type state struct {
	Next  int    `json:"next"`
	Label string `json:"label"`
}

// TestRoundTripAndDamage: what Save wrote Load reads back; every byte
// flipped, and every cut, is an error, never another position.
func TestRoundTripAndDamage(t *testing.T) {
	fs := vfs.NewStrictMem()
	fs.MkdirAll("/d", 0o700)
	in := state{Next: 42, Label: "a\nb"}
	if err := Save(fs, "/d/c", in); err != nil {
		t.Fatal(err)
	}
	var out state
	if err := Load(fs, "/d/c", &out); err != nil || out != in {
		t.Fatalf("Load: %+v %v", out, err)
	}
	if err := Load(fs, "/d/none", &out); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a missing file: %v", err)
	}
	b, _ := Encode(in)
	for i := range b {
		d := append([]byte(nil), b...)
		d[i] ^= 0x04
		var s state
		if err := Decode(d, &s); err == nil && s != in {
			t.Errorf("byte %d flipped: read %+v without an error", i, s)
		}
		if err := Decode(b[:i], &s); err == nil {
			t.Errorf("cut at %d: no error", i)
		}
	}
	if err := Decode([]byte("{}\nzzzzzzzz\n"), &out); err == nil || !strings.Contains(err.Error(), "damaged") {
		t.Errorf("a wrong checksum: %v", err)
	}
}
