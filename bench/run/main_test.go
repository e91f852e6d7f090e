package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/kubetrail/kubetrail/internal/testenv"
)

// TestGitCommit: the report names the commit, and says "-dirty" with the
// changed paths when the work tree differs from it, except for the report.
func TestGitCommit(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		testenv.Unavailable(t, "git is not on PATH")
		return
	}
	dir := t.TempDir()
	git := func(args ...string) {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-c", "user.name=t", "-c", "user.email=t@example.com"}, args...)...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	write := func(name, text string) {
		t.Helper()
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if got := gitCommit(dir, "docs/BENCHMARKS.md"); !strings.HasPrefix(got, "unknown") {
		t.Errorf("outside a checkout: %q", got)
	}
	git("init", "-q")
	write("main.go", "package main\n")
	write("docs/BENCHMARKS.md", "old report\n")
	git("add", ".")
	git("commit", "-q", "-m", "one")
	hash := regexp.MustCompile(`^[0-9a-f]{7,}$`)

	if got := gitCommit(dir, "docs/BENCHMARKS.md"); !hash.MatchString(got) {
		t.Errorf("clean checkout: %q, want the short hash alone", got)
	}
	write("docs/BENCHMARKS.md", "new report\n")
	if got := gitCommit(dir, "docs/BENCHMARKS.md"); !hash.MatchString(got) {
		t.Errorf("only the report changed: %q, want the short hash alone", got)
	}
	write("main.go", "package main // changed\n")
	if got := gitCommit(dir, "docs/BENCHMARKS.md"); !strings.Contains(got, "-dirty") || !strings.Contains(got, "main.go") || strings.Contains(got, "BENCHMARKS") {
		t.Errorf("a source file changed: %q, want -dirty naming main.go only", got)
	}
	git("checkout", "-q", "main.go")
	write("new.go", "package main\n")
	if got := gitCommit(dir, "docs/BENCHMARKS.md"); !strings.Contains(got, "-dirty") || !strings.Contains(got, "new.go") {
		t.Errorf("an untracked source file: %q, want -dirty naming new.go", got)
	}
}
