package local

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"

	"github.com/kubetrail/kubetrail/internal/vfs"
)

// TestKeptHeadsBoundedByBytes: the heads a textReader keeps hold at most
// maxHeadBytes of meta together, however large each group's templates
// are. Events of many shapes with long keys (annotations here) make
// heads of a MiB and more; kept by count alone (256), 30 of them held
// tens of MiB where the bound says 16.
func TestKeptHeadsBoundedByBytes(t *testing.T) {
	dir := t.TempDir()
	segDir := filepath.Join(dir, segmentDir)
	if err := os.MkdirAll(segDir, 0o700); err != nil {
		t.Fatal(err)
	}
	enc, _ := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))
	defer enc.Close()
	w, err := newSegmentWriter(vfs.OS, segDir, 1, 1, enc, segLayout{groupBytes: 1 << 20, version: 5}, nil)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	keys := make([]string, 3000)
	for i := range keys {
		keys[i] = fmt.Sprintf("example.com/annotation-%04d-%s", i, strings.Repeat("k", 120))
	}
	for i := range 6000 {
		var b strings.Builder
		for j := range 40 {
			if j > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, "%q:%q", keys[rng.IntN(len(keys))], "v")
		}
		raw := fmt.Sprintf(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"id-%d","stage":"ResponseComplete","requestURI":"/x","verb":"get","user":{"username":"u"},"sourceIPs":["10.0.0.1"],"objectRef":{"resource":"pods","namespace":"ns","name":"n","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"2026-11-20T00:00:00.000000Z","stageTimestamp":"2026-11-20T00:00:00.000000Z","annotations":{%s}}`, i, b.String())
		if err := w.add(entry{cluster: "c", received: int64(i), time: int64(i), raw: []byte(raw)}, false); err != nil {
			t.Fatal(err)
		}
	}
	path, err := w.finish(true)
	if err != nil {
		t.Fatal(err)
	}
	r, err := openSegment(vfs.OS, path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.close()
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
	if err != nil {
		t.Fatal(err)
	}
	defer dec.Close()
	tr := newTextReader(dec)
	most, total := 0, 0
	for _, g := range r.meta.Groups {
		if err := tr.events(r, 0, 0, []int32{int32(g.First)}, nil, nil, func(int, []byte) error { return nil }); err != nil {
			t.Fatal(err)
		}
		n := tr.head.MetaBytes()
		most, total = max(most, n), total+n
		kept := 0
		for _, h := range tr.heads {
			kept += h.MetaBytes()
		}
		if kept > maxHeadBytes+most {
			t.Fatalf("%d heads kept hold %d bytes of meta: want at most %d and one head (%d)", len(tr.heads), kept, maxHeadBytes, most)
		}
	}
	if total < 2*maxHeadBytes {
		t.Fatalf("the %d groups' heads hold %d bytes of meta together (largest %d): the test wants more than twice the bound", len(r.meta.Groups), total, most)
	}
}
