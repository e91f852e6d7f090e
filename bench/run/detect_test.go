package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kubetrail/kubetrail/internal/testenv"
)

// TestDetectionSection runs the suite's detection section on a small
// corpus: three rows, each with alerts, the store and the file agreeing
// (detection fails the run otherwise), and the pack beside jq, agreeing.
func TestDetectionSection(t *testing.T) {
	if testing.Short() {
		t.Skip("builds kubetrail")
	}
	testenv.JQ(t) // the pack beside jq
	work := t.TempDir()
	s := &suite{work: work, bin: filepath.Join(work, "bin"), runs: 1}
	for _, p := range []string{"cmd/kubetrail", "bench/peakrss"} {
		out, err := exec.Command("go", "build", "-o", filepath.Join(s.bin, filepath.Base(p)), "../../"+p).CombinedOutput()
		if err != nil {
			t.Fatalf("go build %s: %v\n%s", p, err, out)
		}
	}
	log := filepath.Join(work, "audit.log")
	corpusOut, err := exec.Command("go", "run", "../gen", "--events", "20000", "--seed", "3").Output()
	if err != nil {
		t.Fatalf("bench/gen: %v", err)
	}
	if err := os.WriteFile(log, corpusOut, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(filepath.Join(s.bin, "kubetrail"), "import", "--data", filepath.Join(work, "data-import"), log).CombinedOutput(); err != nil {
		t.Fatalf("import: %v\n%s", err, out)
	}
	if err := s.detection(0, corpus{name: "20k", path: log, events: 20000}); err != nil {
		t.Fatal(err)
	}
	rows := 0
	for _, l := range strings.Split(s.out.String(), "\n") {
		if strings.HasPrefix(l, "| built-in") || strings.HasPrefix(l, "| Falco") || strings.HasPrefix(l, "| SigmaHQ") {
			rows++
		}
	}
	if !strings.Contains(s.out.String(), "| jq, the 18 single-event conditions |") {
		t.Errorf("no jq row:\n%s", s.out.String())
	}
	if rows != 3 {
		t.Fatalf("%d rows:\n%s", rows, s.out.String())
	}
	t.Logf("\n%s", s.out.String())
}
