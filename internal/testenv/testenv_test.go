package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// recorder is a testing.TB that records how the test would have ended.
type recorder struct {
	testing.TB
	failed, skipped string
}

func (r *recorder) Helper()                        {}
func (r *recorder) Fatalf(format string, a ...any) { r.failed = fmt.Sprintf(format, a...) }
func (r *recorder) Skip(a ...any)                  { r.skipped = fmt.Sprint(a...) }

// fakeJQ puts a jq on PATH that prints version.
func fakeJQ(t *testing.T, version string) string {
	dir := t.TempDir()
	p := filepath.Join(dir, "jq")
	if err := os.WriteFile(p, []byte("#!/bin/sh\necho "+version+"\n"), 0o700); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir)
	return p
}

func TestJQPinsTheVersion(t *testing.T) {
	for _, c := range []struct {
		version, ci string
		want        string // "ok", "fail" or "skip"
	}{
		{"jq-1.6", "true", "ok"},
		{"jq-1.6", "", "ok"},
		{"jq-1.7.1", "true", "fail"},
		{"jq-1.7.1", "", "skip"},
		{"jq-1.5", "true", "fail"},
	} {
		p := fakeJQ(t, c.version)
		t.Setenv("CI", c.ci)
		r := &recorder{TB: t}
		got := JQ(r)
		switch c.want {
		case "ok":
			if got != p || r.failed != "" || r.skipped != "" {
				t.Errorf("%s, CI=%q: got %q, failed %q, skipped %q; want %s", c.version, c.ci, got, r.failed, r.skipped, p)
			}
		case "fail":
			if got != "" || r.failed == "" || r.skipped != "" {
				t.Errorf("%s, CI=%q: got %q, failed %q, skipped %q; want a failure", c.version, c.ci, got, r.failed, r.skipped)
			}
		case "skip":
			if got != "" || r.failed != "" || r.skipped == "" {
				t.Errorf("%s, CI=%q: got %q, failed %q, skipped %q; want a skip", c.version, c.ci, got, r.failed, r.skipped)
			}
		}
	}
	// No jq at all.
	t.Setenv("PATH", t.TempDir())
	t.Setenv("CI", "true")
	if r := (&recorder{TB: t}); JQ(r) != "" || r.failed == "" {
		t.Errorf("no jq under CI: failed %q, skipped %q; want a failure", r.failed, r.skipped)
	}
}
