package textcodec

import (
	"crypto/sha256"
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/encodings.sha256 from the current encoder")

// TestEncodingsUnchanged: the encoder writes the very bytes it wrote
// when testdata/encodings.sha256 was made, for the recorded incident in
// every layout and in the store's. A segment's groups are a file format:
// making the encoder faster must not change one byte (a change of the
// format is a new segment format, and -update).
func TestEncodingsUnchanged(t *testing.T) {
	lines := readLines(t, "../../investigate/testdata/incident/incident.log.gz", 1<<30)
	lines = append(lines, []byte(apiLine), []byte("not json"), []byte(`{"a":[1,2,{"b":"\"x\\"}]}`))
	var got strings.Builder
	for _, opt := range append(layouts, storeLayout, Options{BlockEvents: 64, Types: true, URI: true, Opaque: true, Rows: true, BodiesApart: true}) {
		x, err := NewEncoder(opt)
		if err != nil {
			t.Fatal(err)
		}
		// Groups from one Encoder, of lines of the same shapes: what one
		// group leaves behind must not reach the next.
		h := sha256.New()
		h.Write(x.Encode(lines[:300]).Bytes())
		h.Write(x.Encode(lines[100:]).Bytes())
		h.Write(x.Encode(lines[:200]).Bytes())
		x.Close()
		fmt.Fprintf(&got, "%x %+v\n", h.Sum(nil), opt)
	}
	const path = "testdata/encodings.sha256"
	if *update {
		if err := os.WriteFile(path, []byte(got.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got.String() != string(want) {
		t.Errorf("the encoder's bytes changed:\n got %s\nwant %s", got.String(), want)
	}
}
