package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// verify measures kubetrail verify --pubkey over the store kubetrail import
// wrote (every checksum, Merkle root, leaf print, chain link and signed
// checkpoint; docs/security.md, "Tamper evidence"). Issue 14's target:
// 2M events in under 10 s. The answer must be "whole": exit 0 and nothing
// on stdout.
func (s *suite) verify(ci int, c corpus) error {
	w := &s.out
	kt := filepath.Join(s.bin, "kubetrail")
	dir := filepath.Join(s.work, "data-import")
	pub := filepath.Join(s.work, "verify.pub")
	key, err := exec.Command(kt, "checkpoint", "pubkey", "--data", dir).Output()
	if err != nil {
		return fmt.Errorf("kubetrail checkpoint pubkey: %w", err)
	}
	if err := os.WriteFile(pub, key, 0o644); err != nil {
		return err
	}
	size := dirSize(dir)
	r, err := s.measure(s.runs, func() *exec.Cmd {
		return exec.Command(kt, "verify", "--data", dir, "--pubkey", pub, "-q")
	}, wantOutput(""))
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "## Verify, %s events\n\n", c.name)
	fmt.Fprintf(w, "`kubetrail verify --pubkey` over the store `kubetrail import` wrote (%s on disk): every checksum of every file, each segment's Merkle roots and leaf prints recomputed from the stored bytes, the hash chain, and the signed checkpoint (median of %d; the answer must be exit 0 with nothing printed). Target: 2M events in under 10 s.\n\n", human(size), r.runs)
	fmt.Fprintf(w, "| what | command | runs | median | events/s | MB/s (stored) | peak RSS |\n|---|---|---|---|---|---|---|\n")
	fmt.Fprintf(w, "| verify | %s | %d | %s | %s | %.0f | %s |\n\n", code("kubetrail verify --data DIR --pubkey KEY -q"), r.runs, dur(r.median),
		commas(float64(c.events)/r.median.Seconds()), float64(size)/1e6/r.median.Seconds(), human(r.rss))
	s.fig.add("kubetrail verify", ci, fig{kt: r.median, rss: r.rss})
	return nil
}
