package forward

import (
	"context"
	"fmt"
	"hash/fnv"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kubetrail/kubetrail/internal/pipeline"
	"github.com/kubetrail/kubetrail/internal/store/local"
	"github.com/kubetrail/kubetrail/internal/vfs"
)

const crashDir = "/data"

var crashCursor = filepath.Join(crashDir, Dir, "dest.cursor")

// crashWorkload stores events while a forwarder runs, stops it cleanly
// and starts it again, on a file system a test crashes after any one of
// its changes. The receiver is the remote destination: it outlives the
// crash.
func crashWorkload(fs vfs.FS, rcv *receiver) error {
	db, err := local.Open(crashDir, local.Options{FS: fs})
	if err != nil {
		return err
	}
	defer db.Close()
	n := 0
	for half := 0; half < 2; half++ {
		f, err := New(crashDir, testDest(rcv), db.Start(), Options{FS: fs, Cursor: crashCursor, SaveEvery: time.Hour})
		if err != nil {
			return err
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- f.Run(ctx, db) }()
		stop := func() error { cancel(); return <-done }
		for _, size := range []int{3, 5, 2} {
			if err := appendErr(db, n, size); err != nil {
				stop()
				return err
			}
			n += size
			// Forwarded, or stuck on a crashed disk.
			for i := 0; i < 2000 && f.Stats().Cursor.Ord < n && len(done) == 0; i++ {
				time.Sleep(time.Millisecond)
			}
		}
		if err := stop(); err != nil {
			return err
		}
	}
	return nil
}

func appendErr(db *local.DB, first, n int) error {
	b := &pipeline.Batch{Cluster: "prod"}
	for i := first; i < first+n; i++ {
		b.Records = append(b.Records, ev(i, "create"))
	}
	_, err := db.Append(context.Background(), b)
	return err
}

// crashRecover opens what a crash left, forwards until the cursor is past
// every stored event, and returns what breaks the promise, or "": every
// stored event at the receiver, nothing else, and no more duplicates
// than the recovery counted as redelivered.
func crashRecover(fs vfs.FS, rcv *receiver) string {
	db, err := local.Open(crashDir, local.Options{FS: fs})
	if err != nil {
		return fmt.Sprintf("open the store: %v", err)
	}
	defer db.Close()
	stored := map[string]bool{}
	var last local.Pos
	err = local.Scan(crashDir, local.ScanOptions{FS: fs}, func(s local.Stored) error {
		stored[idOf(s.Raw)] = true
		last = s.Pos
		return nil
	})
	if err != nil {
		return fmt.Sprintf("scan: %v", err)
	}
	f, err := New(crashDir, testDest(rcv), db.Start(), Options{FS: fs, Cursor: crashCursor})
	if err != nil {
		return fmt.Sprintf("open the forwarder: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx, db) }()
	for i := 0; i < 4000 && len(stored) > 0 && !last.Less(f.Stats().Cursor) && len(done) == 0; i++ {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		return fmt.Sprintf("forwarder: %v", err)
	}
	seen := map[string]int{}
	dups := 0
	for _, id := range rcv.ids() {
		if seen[id]++; seen[id] > 1 {
			dups++
		}
		if !stored[id] {
			return fmt.Sprintf("%s reached the receiver but is not stored", id)
		}
	}
	for id := range stored {
		if seen[id] == 0 {
			return fmt.Sprintf("%s is stored but never reached the receiver (%d stored, %d received)", id, len(stored), len(seen))
		}
	}
	if red := f.Stats().Redelivered; uint64(dups) > red {
		return fmt.Sprintf("%d duplicates at the receiver, %d counted as redelivered", dups, red)
	}
	return ""
}

func idOf(raw []byte) string {
	s := string(raw)
	i := strings.Index(s, `"auditID":"`) + len(`"auditID":"`)
	return s[i : i+strings.IndexByte(s[i:], '"')]
}

// crashAll crashes the workload after each of its changes, with site
// dropped (none when ""), and returns the first broken promise, the
// number of crash points and the sites seen.
func crashAll(t *testing.T, site string) (problem string, points int, sites []string) {
	c := vfs.NewCrasher(vfs.NewStrictMem(), 0, vfs.CrashOptions{})
	ff := vfs.NewFaults(c)
	ff.Drop(site)
	if err := crashWorkload(ff, &receiver{}); err != nil {
		t.Fatal(err)
	}
	n := c.Changes()
	for k := 1; k <= n; k++ {
		keep := vfs.CrashOptions{
			Appended: func(_, unsynced int) int { return unsynced * (k % 3) / 2 },
			Names: func(dir, change string) bool {
				h := fnv.New64a()
				fmt.Fprint(h, k, dir, change)
				return h.Sum64()>>40&1 == 0
			},
		}
		c := vfs.NewCrasher(vfs.NewStrictMem(), k, keep)
		ff := vfs.NewFaults(c)
		ff.Drop(site)
		rcv := &receiver{}
		crashWorkload(ff, rcv) // fails once the file system has crashed
		after, what := c.Crashed()
		if after == nil {
			continue
		}
		rf := vfs.NewFaults(after)
		rf.Drop(site)
		if p := crashRecover(rf, rcv); p != "" {
			return fmt.Sprintf("crash after change %d (%s): %s", k, what, p), n, ff.Sites()
		}
	}
	return "", n, ff.Sites()
}

// TestCrashForwardsEveryStoredEvent crashes the workload after each change
// it makes to its files (the store's and the cursor's), recovers, and
// requires every stored event at the receiver, and every duplicate there
// counted as redelivered. Then it removes, one at a time, each sync,
// folder sync and rename the forwarder makes: some crash must then break
// the promise.
func TestCrashForwardsEveryStoredEvent(t *testing.T) {
	p, n, sites := crashAll(t, "")
	if p != "" {
		t.Fatal(p)
	}
	if n < 40 {
		t.Fatalf("the workload made %d changes; the test expects more", n)
	}
	t.Logf("%d crash points", n)
	var ours []string
	for _, s := range sites {
		if strings.Contains(s, "forward.") {
			ours = append(ours, s)
		}
	}
	if len(ours) < 3 {
		t.Fatalf("the forwarder's sites %q: want its cursor's sync, rename and folder sync", ours)
	}
	for _, site := range ours {
		if p, _, _ := crashAll(t, site); p == "" {
			t.Errorf("without %q every crash still recovers: that call is not needed, or this test misses what it is for", site)
		} else {
			t.Logf("without %q: %s", site, strings.SplitN(p, "\n", 2)[0])
		}
	}
}
