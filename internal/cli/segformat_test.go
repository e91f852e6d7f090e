package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSegmentFormatFlag: import writes format 5 segments unless
// --segment-format 4 says otherwise, a folder holding both answers and
// exports as one, and a format kubetrail cannot write is refused by name.
// Planted: the flag not passed on to local.Options (every segment v5)
// fails it; so does a default of 4.
func TestSegmentFormatFlag(t *testing.T) {
	dir := t.TempDir()
	first, second := auditLines(t, 0, 300), auditLines(t, 300, 600)
	if code, _, errOut := run("import", "--data", dir, first); code != 0 {
		t.Fatalf("import: exit %d: %s", code, errOut)
	}
	if got := segmentMagics(t, dir); got != "KTSEG05" {
		t.Fatalf("segments written by default: %s, want KTSEG05", got)
	}
	if code, _, errOut := run("import", "--data", dir, "--segment-format", "4", second); code != 0 {
		t.Fatalf("import --segment-format 4: exit %d: %s", code, errOut)
	}
	if got := segmentMagics(t, dir); got != "KTSEG05 KTSEG04" {
		t.Fatalf("segments after import --segment-format 4: %s, want KTSEG05 KTSEG04", got)
	}
	code, out, errOut := run("export", "--data", dir)
	if code != 0 {
		t.Fatalf("export: exit %d: %s", code, errOut)
	}
	var want []byte
	for _, f := range []string{first, second} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, b...)
	}
	if !bytes.Equal([]byte(out), want) {
		t.Errorf("export of a folder with v4 and v5 segments is not the imported bytes (%d bytes, want %d)", len(out), len(want))
	}
	if code, _, errOut := run("verify", "--data", dir); code != 0 {
		t.Errorf("verify of a folder with v4 and v5 segments: exit %d: %s", code, errOut)
	}
	code, _, errOut = run("import", "--data", t.TempDir(), "--segment-format", "3", first)
	if code == 0 || !strings.Contains(errOut, "segment format 3") {
		t.Errorf("--segment-format 3: exit %d, %q; want it refused by name", code, errOut)
	}
}

// segmentMagics returns the magics of a folder's segments, in name
// order, without their newline.
func segmentMagics(t *testing.T, dir string) string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(dir, "segments", "*.kts"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no segments in %s: %v", dir, err)
	}
	var magics []string
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		magics = append(magics, strings.TrimSpace(string(b[:min(8, len(b))])))
	}
	return strings.Join(magics, " ")
}
