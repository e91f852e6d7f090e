package ingest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kubetrail/kubetrail/internal/pipeline"
	"github.com/kubetrail/kubetrail/internal/store/local"
)

func appendLines(t *testing.T, path string, from, to int) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for i := from; i < to; i++ {
		b.WriteString(line(fmt.Sprintf("ev-%04d", i)))
		b.WriteByte('\n')
	}
	if _, err := f.WriteString(b.String()); err != nil {
		t.Fatal(err)
	}
	f.Close()
}

func storedIDs(t *testing.T, dir string) []string {
	t.Helper()
	var ids []string
	err := local.Scan(dir, local.ScanOptions{}, func(s local.Stored) error {
		var ev struct{ AuditID string }
		json.Unmarshal(s.Raw, &ev)
		ids = append(ids, ev.AuditID)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

func waitStored(t *testing.T, dir string, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := len(storedIDs(t, dir))
		if got == n {
			return
		}
		if got > n || time.Now().After(deadline) {
			t.Fatalf("stored %d events, want %d", got, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type tailRun struct {
	cancel context.CancelFunc
	done   chan error
}

func startTail(t *testing.T, db *local.DB, path, state string) *tailRun {
	ctx, cancel := context.WithCancel(context.Background())
	r := &tailRun{cancel: cancel, done: make(chan error, 1)}
	go func() {
		r.done <- Tail(ctx, db, TailConfig{Path: path, StateDir: state, Poll: 10 * time.Millisecond, BatchEvents: 37})
	}()
	return r
}

func (r *tailRun) stop(t *testing.T) {
	r.cancel()
	if err := <-r.done; err != nil {
		t.Fatal(err)
	}
}

func TestTailRotationAndRestart(t *testing.T) {
	logDir, path, dataDir, db := tailSetup(t)

	appendLines(t, path, 0, 100)
	run := startTail(t, db, path, dataDir)
	waitStored(t, dataDir, 100)

	// Rotation by rename, as the API server's lumberjack does: the last
	// lines of the old file land just before the rename.
	appendLines(t, path, 100, 150)
	if err := os.Rename(path, filepath.Join(logDir, "audit-2026-11-23T10-00-00.000.log")); err != nil {
		t.Fatal(err)
	}
	appendLines(t, path, 150, 200)
	waitStored(t, dataDir, 200)

	// copytruncate: the copy is someone else's; we go on from the start of
	// the truncated file.
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	appendLines(t, path, 200, 220)
	waitStored(t, dataDir, 220)

	// Stopped while the log goes on and rotates: on restart the rest of the
	// rotated file is read from the checkpoint, then the new file.
	run.stop(t)
	appendLines(t, path, 220, 250)
	if err := os.Rename(path, filepath.Join(logDir, "audit-2026-11-23T11-00-00.000.log")); err != nil {
		t.Fatal(err)
	}
	appendLines(t, path, 250, 260)
	run = startTail(t, db, path, dataDir)
	waitStored(t, dataDir, 260)

	// A partial line at the end waits for its newline.
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	l := line("ev-0260")
	f.WriteString(l[:50])
	time.Sleep(100 * time.Millisecond)
	if n := len(storedIDs(t, dataDir)); n != 260 {
		t.Fatalf("a partial line was stored: %d", n)
	}
	f.WriteString(l[50:] + "\n")
	f.Close()
	waitStored(t, dataDir, 261)

	// Restart with nothing new: no duplicates.
	run.stop(t)
	run = startTail(t, db, path, dataDir)
	time.Sleep(100 * time.Millisecond)
	run.stop(t)

	ids := storedIDs(t, dataDir)
	if len(ids) != 261 {
		t.Fatalf("stored %d events, want 261", len(ids))
	}
	for i, id := range ids {
		if want := fmt.Sprintf("ev-%04d", i); id != want {
			t.Fatalf("event %d is %s, want %s: gap, duplicate or reordering", i, id, want)
		}
	}
}

// TestTailResendAfterCrashIsDeduplicated loses the checkpoint (as a crash
// between a durable batch and its checkpoint would) and shows that the
// re-sent lines add nothing.
func TestTailResendAfterCrashIsDeduplicated(t *testing.T) {
	_, path, dataDir, db := tailSetup(t)
	appendLines(t, path, 0, 80)
	run := startTail(t, db, path, dataDir)
	waitStored(t, dataDir, 80)
	run.stop(t)
	cps, _ := filepath.Glob(filepath.Join(dataDir, "tail-*.json"))
	if len(cps) != 1 {
		t.Fatalf("checkpoints: %v", cps)
	}
	os.Remove(cps[0])
	var mu sync.Mutex
	var dups int
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		done <- Tail(ctx, db, TailConfig{Path: path, StateDir: dataDir, Poll: 10 * time.Millisecond, OnBatch: func(r pipeline.Result) {
			mu.Lock()
			dups += r.Duplicates
			mu.Unlock()
		}})
	}()
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		d := dups
		mu.Unlock()
		if d == 80 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("re-sent lines reported as duplicates: %d, want 80", d)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	if n := len(storedIDs(t, dataDir)); n != 80 {
		t.Fatalf("stored %d, want 80", n)
	}
}

// TestTailSeveralRotationsBetweenLooks rotates the log several times faster
// than tail looks, while it runs and while it is stopped: the files that
// rotated before tail reached them are read whole, in order.
func TestTailSeveralRotationsBetweenLooks(t *testing.T) {
	logDir, path, dataDir, db := tailSetup(t)
	rotate := func(stamp string) {
		t.Helper()
		if err := os.Rename(path, filepath.Join(logDir, "audit-2026-11-23T10-00-"+stamp+".log")); err != nil {
			t.Fatal(err)
		}
	}
	appendLines(t, path, 0, 10)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	start := func() {
		ctx, cancel = context.WithCancel(context.Background())
		go func() { done <- Tail(ctx, db, TailConfig{Path: path, StateDir: dataDir, Poll: 300 * time.Millisecond}) }()
	}
	start()
	waitStored(t, dataDir, 10)
	// Three rotations within one poll interval.
	appendLines(t, path, 10, 20)
	rotate("01.000")
	appendLines(t, path, 20, 30)
	rotate("02.000")
	appendLines(t, path, 30, 40)
	rotate("03.000")
	appendLines(t, path, 40, 50)
	waitStored(t, dataDir, 50)
	// Two more while stopped, the checkpoint in the middle of a file.
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	appendLines(t, path, 50, 60)
	rotate("04.000")
	appendLines(t, path, 60, 70)
	rotate("05.000")
	appendLines(t, path, 70, 80)
	start()
	waitStored(t, dataDir, 80)
	cancel()
	<-done
	for i, id := range storedIDs(t, dataDir) {
		if want := fmt.Sprintf("ev-%04d", i); id != want {
			t.Fatalf("event %d is %s, want %s", i, id, want)
		}
	}
}

// tailSetup makes a log folder with the path of its audit.log, and a data
// folder with a store open on it (closed when the test ends).
func tailSetup(t *testing.T) (logDir, path, dataDir string, db *local.DB) {
	t.Helper()
	logDir, dataDir = t.TempDir(), t.TempDir()
	db, err := local.Open(dataDir, local.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return logDir, filepath.Join(logDir, "audit.log"), dataDir, db
}

// TestCheckpointDamageNeverSkips flips every byte of a checkpoint file: the
// checkpoint read back is either the one written or none (tail then reads
// the file from its start, and the store drops what it already has); never
// another offset, which would skip events.
// Mutation it catches: a checkpoint without its checksum (a flipped digit
// of the offset is read as a larger offset).
func TestCheckpointDamageNeverSkips(t *testing.T) {
	cp := checkpoint{Path: "/var/log/kubernetes/audit/audit.log", Dev: 2049, Ino: 1234567, Offset: 48213, Line: 117}
	b := encodeCheckpoint(&cp)
	if got, err := decodeCheckpoint(b); err != nil || got != cp {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	for i := range b {
		for _, x := range []byte{0x01, 0x02, 0x10, 0x20} {
			d := append([]byte(nil), b...)
			d[i] ^= x
			got, err := decodeCheckpoint(d)
			if err == nil && got != cp {
				t.Fatalf("byte %d ^ %#x: read as %+v, want the checkpoint or an error", i, x, got)
			}
		}
	}
	// A checkpoint from before the checksum is still read.
	old := []byte(`{"path":"/a","dev":1,"ino":2,"offset":3,"line":4}`)
	if got, err := decodeCheckpoint(old); err != nil || got.Offset != 3 {
		t.Fatalf("old checkpoint: %+v %v", got, err)
	}
}
