package local

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestOneWriterEvenWithoutLOCK opens a folder for writing, deletes its LOCK
// file (or replaces it) and tries again: the second writer must be refused,
// or it would replay and delete the first one's open WAL (a review lost
// 100 acknowledged events this way). Once the first closes, a writer gets
// in.
// Mutation it catches: locking the LOCK file only (the old behaviour).
func TestOneWriterEvenWithoutLOCK(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(dir, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, tamper := range []func(){
		func() {},
		func() { os.Remove(filepath.Join(dir, lockFile)) },
		func() {
			os.Remove(filepath.Join(dir, lockFile))
			os.WriteFile(filepath.Join(dir, lockFile), nil, 0o600)
		},
	} {
		tamper()
		db2, err := Open(dir, Options{NoSync: true})
		if err == nil {
			db2.Close()
			t.Fatal("a second writer opened a folder that is open for writing")
		}
		if !strings.Contains(err.Error(), "in use by another kubetrail process") {
			t.Fatalf("second writer: %v", err)
		}
	}
	// flock(1) from another process is kept out too: the lock is the
	// kernel's, not this process's bookkeeping.
	if path, err := exec.LookPath("flock"); err == nil {
		if out, err := exec.Command(path, "-n", dir, "true").CombinedOutput(); err == nil {
			t.Fatalf("another process locked the folder while it is open for writing: %s", out)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db, err = Open(dir, Options{NoSync: true})
	if err != nil {
		t.Fatalf("after the first writer closed: %v", err)
	}
	db.Close()
}
