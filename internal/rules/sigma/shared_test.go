package sigma

import (
	"os"
	"path/filepath"
	"sort"
	"testing"

	"github.com/kubetrail/kubetrail/internal/rules"
)

// sharedDir finds the project's shared folder, which holds the public rule
// sets the tests load unchanged (never copied into the repository):
// $KUBETRAIL_SHARED, else shared/ beside the repository (where CI puts
// it), else /work/shared.
func sharedDir(t testing.TB) string {
	t.Helper()
	var tries []string
	if d := os.Getenv("KUBETRAIL_SHARED"); d != "" {
		tries = append(tries, d)
	}
	if wd, err := os.Getwd(); err == nil {
		for d := wd; ; d = filepath.Dir(d) {
			if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
				tries = append(tries, filepath.Join(filepath.Dir(d), "shared"))
				break
			}
			if filepath.Dir(d) == d {
				break
			}
		}
	}
	tries = append(tries, "/work/shared")
	for _, d := range tries {
		if st, err := os.Stat(filepath.Join(d, "rulesets", "sigma")); err == nil && st.IsDir() {
			return d
		}
	}
	t.Fatalf("no shared folder with rulesets/sigma in %q; set KUBETRAIL_SHARED", tries)
	return ""
}

// sigmaHQFiles reads SigmaHQ's kubernetes/audit rules, sorted by file name.
func sigmaHQFiles(t testing.TB) []rules.File {
	t.Helper()
	dir := filepath.Join(sharedDir(t), "rulesets", "sigma")
	names, err := filepath.Glob(filepath.Join(dir, "*.yml"))
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(names)
	var files []rules.File
	for _, n := range names {
		data, err := os.ReadFile(n)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, rules.File{Name: filepath.Base(n), Data: data})
	}
	if len(files) != 16 {
		t.Fatalf("%s holds %d rules, want SigmaHQ's 16", dir, len(files))
	}
	return files
}
