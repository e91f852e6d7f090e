package detector

import (
	"context"
	"fmt"
	"hash/fnv"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kubetrail/kubetrail/internal/alert"
	"github.com/kubetrail/kubetrail/internal/audit"
	"github.com/kubetrail/kubetrail/internal/pipeline"
	"github.com/kubetrail/kubetrail/internal/rules"
	"github.com/kubetrail/kubetrail/internal/store/local"
	"github.com/kubetrail/kubetrail/internal/vfs"
)

// The crash workload: the detector runs while batches are stored, is
// stopped (saving its cursor) and started again, on a file system that a
// test crashes after any one of its changes.
var crashBatches = [][]string{
	{"create", "deny", "get"},
	{"deny", "create"},
	{"deny", "deny", "create", "deny"},
	{"get", "create"},
	{"deny", "deny", "deny"},
	{"create", "create"},
}

const crashDir = "/data"

func crashWorkload(t *testing.T, fs vfs.FS) error {
	db, err := local.Open(crashDir, local.Options{FS: fs})
	if err != nil {
		return err
	}
	defer db.Close()
	st, _, err := alert.OpenStore(filepath.Join(crashDir, "alerts"), alert.StoreOptions{FS: fs})
	if err != nil {
		return err
	}
	defer st.Close()
	n := 0
	for half := 0; half < 2; half++ {
		d, err := Open(db, loadEngine(t), st, filepath.Join(crashDir, "alerts"), Options{FS: fs, SaveEvery: time.Hour, Retry: time.Millisecond})
		if err != nil {
			return err
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- d.Run(ctx) }()
		stop := func() error { cancel(); return <-done }
		var evaluated int64
		for _, verbs := range crashBatches[half*3 : half*3+3] {
			b := &pipeline.Batch{Cluster: "c"}
			for _, v := range verbs {
				b.Records = append(b.Records, ev(n, v, "u"))
				n++
			}
			if _, err := db.Append(context.Background(), b); err != nil {
				stop()
				return err
			}
			evaluated += int64(len(verbs))
			// Evaluated, or stuck on a crashed disk.
			for i := 0; i < 2000 && d.Stats().Events < evaluated && d.Stats().Failures == 0; i++ {
				time.Sleep(time.Millisecond)
			}
		}
		if err := stop(); err != nil {
			return err
		}
	}
	return nil
}

func waitFor(t *testing.T, ok func() bool) {
	t.Helper()
	for i := 0; i < 4000 && !ok(); i++ {
		time.Sleep(time.Millisecond)
	}
	if !ok() {
		t.Fatal("timed out")
	}
}

// crashRecover opens what a crash left, runs the detector until it has
// evaluated every stored event, and returns the problem with the alerts
// it leaves, or "".
func crashRecover(t *testing.T, fs vfs.FS) string {
	db, err := local.Open(crashDir, local.Options{FS: fs})
	if err != nil {
		return fmt.Sprintf("open the store: %v", err)
	}
	defer db.Close()
	st, _, err := alert.OpenStore(filepath.Join(crashDir, "alerts"), alert.StoreOptions{FS: fs})
	if err != nil {
		return fmt.Sprintf("open the alert store: %v", err)
	}
	defer st.Close()
	// What an uninterrupted run raises over every stored event.
	want := map[string]int{}
	eng := loadEngine(t)
	stored := 0
	err = local.Scan(crashDir, local.ScanOptions{FS: fs}, func(s local.Stored) error {
		var e audit.Event
		if err := audit.DecodeStored(s.Raw, &e); err != nil {
			return err
		}
		for _, a := range eng.Eval(&rules.Event{Ev: &e, Raw: s.Raw, Cluster: s.Cluster}) {
			want[key(&a)]++
		}
		stored++
		return nil
	})
	if err != nil {
		return fmt.Sprintf("scan: %v", err)
	}
	d, err := Open(db, loadEngine(t), st, filepath.Join(crashDir, "alerts"), Options{FS: fs})
	if err != nil {
		return fmt.Sprintf("open the detector: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	// Done when the cursor is past the last stored event.
	var last local.Pos
	local.Scan(crashDir, local.ScanOptions{FS: fs}, func(s local.Stored) error { last = s.Pos; return nil })
	waitFor(t, func() bool { p := d.Stats().Cursor; return stored == 0 || last.Less(p) })
	cancel()
	if err := <-done; err != nil {
		return fmt.Sprintf("detector: %v", err)
	}
	as, err := st.List(alert.Query{Limit: 100000})
	if err != nil {
		return fmt.Sprintf("list alerts: %v", err)
	}
	got := map[string]int{}
	for _, a := range as {
		got[key(&a.Alert)]++
	}
	if !maps.Equal(got, want) {
		return fmt.Sprintf("%d events stored; alerts stored:\n%s\nan uninterrupted run raises:\n%s", stored, show(got), show(want))
	}
	return ""
}

func show(m map[string]int) string {
	var b []string
	for k, n := range m {
		b = append(b, fmt.Sprintf("  %dx %s", n, strings.ReplaceAll(k, "\x00", " ")))
	}
	slices.Sort(b)
	return strings.Join(b, "\n")
}

// crashAll crashes the workload after each of its changes, dropping site
// (none when ""), and returns the first problem a recovery finds, the
// number of crash points and the sites the workload called.
func crashAll(t *testing.T, site string) (problem string, points int, sites []string) {
	mem := vfs.NewStrictMem()
	c := vfs.NewCrasher(mem, 0, vfs.CrashOptions{})
	ff := vfs.NewFaults(c)
	ff.Drop(site)
	if err := crashWorkload(t, ff); err != nil {
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
		crashWorkload(t, ff) // fails once the file system has crashed
		after, what := c.Crashed()
		if after == nil {
			continue // the run made fewer changes this time
		}
		rf := vfs.NewFaults(after)
		rf.Drop(site)
		if p := crashRecover(t, rf); p != "" {
			return fmt.Sprintf("crash after change %d (%s): %s", k, what, p), n, ff.Sites()
		}
	}
	return "", n, ff.Sites()
}

// TestCrashEvaluatesEveryStoredEventOnce crashes the workload after each
// change it makes to its files, recovers from what the crash left, and
// requires the alert store to hold exactly the alerts an uninterrupted
// run raises over the events the store kept: none lost, none twice. Then
// it removes, one at a time, each sync, folder sync and rename the
// detector makes (vfs.Faults): some crash must then break the promise, or
// the call is one nothing depends on, or a hole in this test.
func TestCrashEvaluatesEveryStoredEventOnce(t *testing.T) {
	p, n, sites := crashAll(t, "")
	if p != "" {
		t.Fatal(p)
	}
	if n < 50 {
		t.Fatalf("the workload made %d changes; the test expects more", n)
	}
	t.Logf("%d crash points", n)
	var ours []string
	for _, s := range sites {
		if strings.Contains(s, "detector.") {
			ours = append(ours, s)
		}
	}
	if len(ours) < 3 {
		t.Fatalf("the detector's sites %q: want its cursor's sync, rename and folder sync", ours)
	}
	for _, site := range ours {
		if p, _, _ := crashAll(t, site); p == "" {
			t.Errorf("without %q every crash still recovers exactly: that call is not needed, or this test misses what it is for", site)
		} else {
			t.Logf("without %q: %s", site, strings.SplitN(p, "\n", 2)[0])
		}
	}
}
