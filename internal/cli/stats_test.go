package cli

import (
	"strings"
	"testing"
)

// TestStatsIntervalBounds: an interval below a second or above 366 days is
// refused, naming the flag and the range, locally and through a server;
// the ends of the range are accepted and label their buckets in the
// incident's own time, not in 1970. (Mutation tried: CheckInterval
// accepting everything lets "1ns" print a 1970 bucket.)
func TestStatsIntervalBounds(t *testing.T) {
	dir, url, tokenFile := serveIncident(t)
	for _, where := range [][]string{{"--data", dir}, {"--server", url, "--token-file", tokenFile}} {
		// Units below a second are not durations timespec reads; a
		// duration it reads is then held to the range.
		for iv, want := range map[string]string{"1ns": `unknown duration unit "n"`, "999ms": "whole numbers", "1000000h": "too large", "367d": "between 1s and 366d", "0s": "between 1s and 366d"} {
			code, out, errs := run(append([]string{"stats", "--interval", iv}, where...)...)
			if code != 1 || out != "" || !strings.Contains(errs, "--interval") || !strings.Contains(errs, want) {
				t.Errorf("%v --interval %s: exit %d, stdout %q, stderr %q; want exit 1 naming --interval and saying %q", where, iv, code, out, errs, want)
			}
		}
		for _, c := range []struct{ iv, label string }{{"1s", "2026-11-23T10:00:01Z"}, {"90s", "2026-11-23T10:00:00Z"}, {"1m", "2026-11-23T10:00Z"}, {"366d", "2026-"}} {
			code, out, errs := run(append([]string{"stats", "--interval", c.iv}, where...)...)
			lines := strings.Split(strings.TrimSpace(out), "\n")
			if code != 0 || len(lines) < 3 || !strings.HasPrefix(strings.TrimSpace(lines[1]), c.label) || strings.Contains(out, "1970") {
				t.Errorf("%v --interval %s: exit %d, stderr %q, stdout:\n%s\nwant the first bucket labelled %s...", where, c.iv, code, errs, out, c.label)
			}
		}
	}
}
