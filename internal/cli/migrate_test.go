package cli

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kubetrail/kubetrail/internal/cursorfile"
	"github.com/kubetrail/kubetrail/internal/store"
	"github.com/kubetrail/kubetrail/internal/store/local"
	"github.com/kubetrail/kubetrail/internal/vfs"
)

// migrateKilled runs kubetrail migrate ARGS as a child process and
// SIGKILLs it once its cursor file says it moved at least min events,
// before it ends.
func migrateKilled(t *testing.T, cursor string, min int64, args ...string) {
	t.Helper()
	var log syncBuf
	cmd := kubetrailProc(t, &log, append([]string{"migrate", "--progress", "never"}, args...)...)
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	deadline := time.Now().Add(60 * time.Second)
	for {
		var cur struct{ Moved int64 }
		if err := cursorfile.Load(vfs.OS, cursor, &cur); err == nil && cur.Moved >= min {
			break
		}
		select {
		case <-exited:
			t.Fatalf("migrate ended before it could be killed: %s", log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("migrate moved fewer than %d events in 60s: %s", min, log.String())
		}
		time.Sleep(2 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	<-exited
}

// TestMigrateSurvivesSIGKILL moves the conformance corpus from a data
// folder to ClickHouse and from there to a new data folder, each time
// SIGKILLing kubetrail migrate part-way and running it again: every
// store then exports the same bytes in the same order (every event once,
// in the source's arrival order), counts and groups the same, and a third
// run moves nothing. (internal/migrate's tests check the clusters and
// received times kept.)
func TestMigrateSurvivesSIGKILL(t *testing.T) {
	batches := conformanceBatches(t)
	total := 0
	for _, b := range batches {
		total += len(b.Records)
	}
	data := t.TempDir()
	ls, err := store.OpenLocal(data, local.Options{})
	if err != nil {
		t.Fatal(err)
	}
	appendBatches(t, ls, batches)
	if err := ls.Close(); err != nil {
		t.Fatal(err)
	}
	url := strings.Replace(ch.URL(t), "http://", "clickhouse://", 1) + "/kt_migrate"
	if code, out, errOut := run("setup", "clickhouse", "--store", url); code != 0 {
		t.Fatalf("setup clickhouse: %s%s", out, errOut)
	}
	back := filepath.Join(t.TempDir(), "back")

	for _, leg := range []struct {
		from, to string
		flag     []string // what reads the destination
	}{
		{data, url, []string{"--store", url}},
		{url, back, []string{"--data", back}},
	} {
		args := []string{"--from", leg.from, "--to", leg.to, "--batch", "100"}
		cursor := predictCursor(t, leg.from, leg.to)
		migrateKilled(t, cursor, 300, args...)
		code, out, errOut := run(append([]string{"migrate", "--progress", "always"}, args...)...)
		if code != 0 || out != "" || !strings.Contains(errOut, "resumed at the cursor") {
			t.Fatalf("migrate %v after SIGKILL: exit %d, %q %s", args, code, out, errOut)
		}
		// The embedded store counts a batch sent again as duplicates;
		// ClickHouse cannot tell, and counts it as moved.
		var cur struct{ Moved, Duplicates int64 }
		err := cursorfile.Load(vfs.OS, cursor, &cur)
		if sent := cur.Moved + cur.Duplicates; err != nil || cur.Moved > int64(total)+100 || sent < int64(total) || sent > int64(total)+100 {
			t.Errorf("cursor says %d moved and %d duplicates, %v; want %d in all, plus at most the one batch sent again", cur.Moved, cur.Duplicates, err, total)
		}
		for _, q := range [][]string{
			{"export"},
			{"query", "--count"},
			{"query", "--count", "received<2026-12-01T00:00:10Z"},
			{"stats", "--by", "cluster,verb"},
		} {
			c1, o1, e1 := run(append(q, "--data", data)...)
			c2, o2, e2 := run(append(q, leg.flag...)...)
			if c1 != 0 || c2 != 0 || o1 != o2 || e1 != e2 {
				t.Errorf("after %s to %s, %v differs: exit %d, %d bytes; want exit %d, %d bytes (%s)", leg.from, leg.to, q, c2, len(o2), c1, len(o1), e2)
			}
			if q[0] == "query" {
				if n, _ := strconv.Atoi(strings.TrimSpace(o1)); n == 0 || (len(q) == 2 && n != total) || (len(q) == 3 && n >= total) {
					t.Errorf("%v --data: %s; the corpus proves nothing there", q, o1)
				}
			}
		}
		code, _, errOut = run(append([]string{"migrate"}, args...)...)
		if code != 0 || !strings.Contains(errOut, "0 events read this run") {
			t.Errorf("a third migrate: exit %d, %s; want nothing read", code, errOut)
		}
	}
}

// predictCursor is the default cursor path migrate uses.
func predictCursor(t *testing.T, from, to string) string {
	t.Helper()
	m, err := openMigration(t.Context(), &env{logLevel: "error", stderr: os.Stderr}, from, to, "", 4)
	if err != nil {
		t.Fatal(err)
	}
	defer m.close()
	return m.cursor
}
