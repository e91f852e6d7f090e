package main

import (
	"strings"
	"testing"
	"time"
)

// TestGrowthRSS: a row without a measured peak RSS (the Web UI's browser,
// the random filters) prints "-", not "0 B"; a measured one prints both.
func TestGrowthRSS(t *testing.T) {
	s := &suite{corpora: []corpus{{name: "200k", events: 200_000}, {name: "2M", events: 2_000_000}}}
	for ci := range 2 {
		s.fig.add("web UI: overview drawn in the browser", ci, fig{kt: time.Duration(ci+1) * time.Second})
		s.fig.add("investigation: x", ci, fig{kt: time.Duration(ci+1) * time.Millisecond, rss: int64(ci+1) << 20, jq: time.Second})
	}
	s.growth()
	out := s.out.String()
	if strings.Contains(out, "0 B") {
		t.Errorf("growth prints a peak RSS of 0 B:\n%s", out)
	}
	for _, want := range []string{"| web UI: overview drawn in the browser | 1.00 s → 2.00 s (2.0x) | - |", "| investigation: x | 1.0 ms → 2.0 ms (2.0x) | 1.0 MiB → 2.0 MiB |"} {
		if !strings.Contains(out, want) {
			t.Errorf("growth lacks %q:\n%s", want, out)
		}
	}
}
