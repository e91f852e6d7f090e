package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kubetrail/kubetrail/internal/investigate/investigatetest"
	"github.com/kubetrail/kubetrail/internal/pipeline"
	"github.com/kubetrail/kubetrail/internal/query"
	"github.com/kubetrail/kubetrail/internal/store/local"
	"github.com/kubetrail/kubetrail/internal/vfs"
)

// lockedBuf is a buffer a follower writes while the test reads it.
type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// ids returns the audit IDs of the JSON lines written so far.
func (l *lockedBuf) ids(t *testing.T) []string {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var ids []string
	for _, line := range strings.Split(strings.TrimSpace(l.b.String()), "\n") {
		if line == "" {
			continue
		}
		var ev struct {
			AuditID string `json:"auditID"`
		}
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("followed output line %q: %v", line, err)
		}
		ids = append(ids, ev.AuditID)
	}
	return ids
}

// followEvent is event i: a get by alice when get, else a delete (which
// the tests' filter verb=get leaves out). Its time is second i.
func followEvent(i int, get bool) *investigatetest.Event {
	verb := "delete"
	if get {
		verb = "get"
	}
	return investigatetest.Req(float64(i), "alice", verb, "/api/v1/namespaces/default/pods/p").Obj("pods", "default", "p")
}

// appendFollowed stores events i..j-1 (the even ones gets) as one batch
// received at recv.
func appendFollowed(t *testing.T, db *local.DB, recv time.Time, i, j int) {
	t.Helper()
	var evs []*investigatetest.Event
	for k := i; k < j; k++ {
		evs = append(evs, followEvent(k, k%2 == 0))
	}
	recs, err := investigatetest.Records(evs)
	if err != nil {
		t.Error(err)
		return
	}
	if _, err := db.Append(context.Background(), &pipeline.Batch{Cluster: "prod", Received: recv, Records: recs}); err != nil {
		t.Error(err)
	}
}

// wantIDs returns the audit IDs of the gets among events i..j-1.
func wantIDs(i, j int) []string {
	var ids []string
	for k := i; k < j; k++ {
		if k%2 == 0 {
			ids = append(ids, followEvent(k, true).Ev.AuditID)
		}
	}
	return ids
}

// startFollow runs follow (followLocal or a localFollower's run) for
// verb=get with -o jsonl until the returned stop is called.
func startFollow(t *testing.T, follow func(context.Context, local.Selection, *printer) error) (*lockedBuf, func()) {
	t.Helper()
	f, err := query.CompileAt("verb=get", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var buf lockedBuf
	out, err := newPrinter("jsonl", &buf)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	out.ctx, out.errw = ctx, io.Discard
	done := make(chan error, 1)
	go func() { done <- follow(ctx, local.Selection{Filter: f}, out) }()
	return &buf, func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("follow ended with %v", err)
		}
	}
}

// waitPrinted waits until the follower printed id.
func waitPrinted(t *testing.T, buf *lockedBuf, id string) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		for _, got := range buf.ids(t) {
			if got == id {
				return
			}
		}
	}
	t.Fatalf("the follower did not print %s; it printed %q", id, buf.ids(t))
}

func sameIDs(t *testing.T, got, want []string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("followed output, by audit ID:\n got %q\nwant %q (each matching event once, in stored order)", got, want)
	}
}

// TestFollowLocalPrintsBatchStampedEarlier: a batch stored after the one
// printed but stamped with an earlier receive time (two webhook batches
// committed in one order, stamped in the other) is printed. The follow
// kept a cursor of the highest receive time printed and skipped it for
// good, with exit 0.
func TestFollowLocalPrintsBatchStampedEarlier(t *testing.T) {
	dir := t.TempDir()
	db, err := local.Open(dir, local.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	t0 := time.Now().Add(-time.Hour)
	appendFollowed(t, db, t0.Add(10*time.Second), 0, 2)
	buf, stop := startFollow(t, func(ctx context.Context, sel local.Selection, out *printer) error {
		return followLocal(ctx, dir, sel, out)
	})
	waitPrinted(t, buf, followEvent(0, true).Ev.AuditID)
	appendFollowed(t, db, t0, 2, 4)                     // stored later, received earlier
	appendFollowed(t, db, t0.Add(20*time.Second), 4, 6) // and a later one after it
	waitPrinted(t, buf, followEvent(4, true).Ev.AuditID)
	stop()
	sameIDs(t, buf.ids(t), wantIDs(0, 6))
}

// TestFollowLocalAcrossSealAndCompaction: events stored while the follow
// starts and while WAL segments are sealed and segments compacted are
// each printed once, in stored order: the first answer and the follow
// meet at the reader's end (Reader.End), and positions do not change when
// events move from the WAL to segments.
// Mutations it catches: End returning the zero Pos (the first answer
// printed again), the cursor not moved (each look prints it all again),
// moved to the next WAL segment (the rest of one missed).
func TestFollowLocalAcrossSealAndCompaction(t *testing.T) {
	dir := t.TempDir()
	db, err := local.Open(dir, local.Options{NoSync: true, WALSegmentBytes: 4 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	const batches, per = 120, 3
	t0 := time.Now().Add(-time.Hour)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // compaction, all along
		defer wg.Done()
		for ctx.Err() == nil {
			if _, err := db.Compact(ctx, local.Compaction{Below: 1 << 20}); err != nil && ctx.Err() == nil {
				t.Errorf("compact: %v", err)
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	started := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for b := range batches {
			if b == 20 {
				close(started)
			}
			// Receive stamps go back and forth, as concurrent ingest's do.
			appendFollowed(t, db, t0.Add(time.Duration(b%7)*time.Second), b*per, (b+1)*per)
			time.Sleep(2 * time.Millisecond)
		}
	}()
	<-started
	buf, stop := startFollow(t, func(ctx context.Context, sel local.Selection, out *printer) error {
		return localFollower{fs: vfs.OS, dir: dir, sel: sel, every: 5 * time.Millisecond}.run(ctx, out)
	})
	want := wantIDs(0, batches*per)
	waitPrinted(t, buf, want[len(want)-1])
	time.Sleep(100 * time.Millisecond) // more looks, to print anything twice
	stop()
	cancel()
	wg.Wait()
	if db.Stats().Sealed.Load() < 5 || db.Stats().Compacted.Load() == 0 {
		t.Errorf("sealed %d WAL segments and compacted %d: the test did not follow across them", db.Stats().Sealed.Load(), db.Stats().Compacted.Load())
	}
	sameIDs(t, buf.ids(t), want)
}

// readCounter counts the bytes read from files opened through it.
type readCounter struct {
	vfs.FS
	n *atomic.Int64
}

func (c readCounter) Open(name string) (vfs.File, error) {
	f, err := c.FS.Open(name)
	if err != nil {
		return nil, err
	}
	return countedFile{File: f, n: c.n}, nil
}

func (c readCounter) OpenFile(name string, flag int, perm os.FileMode) (vfs.File, error) {
	f, err := c.FS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return countedFile{File: f, n: c.n}, nil
}

type countedFile struct {
	vfs.File
	n *atomic.Int64
}

func (f countedFile) Read(p []byte) (int, error) {
	n, err := f.File.Read(p)
	f.n.Add(int64(n))
	return n, err
}

func (f countedFile) ReadAt(p []byte, off int64) (int, error) {
	n, err := f.File.ReadAt(p, off)
	f.n.Add(int64(n))
	return n, err
}

// TestFollowLocalIdleReadsNothing: a look at a store where nothing new was
// stored reads no file's contents, whatever the store holds (it re-read
// every matching event of the store, seconds at 2M events); a look after
// one new event prints just it.
// Mutations it catches: poll not comparing the folder's stamp; a stamp
// of file names alone (an event appended to the open WAL segment missed).
func TestFollowLocalIdleReadsNothing(t *testing.T) {
	dir := t.TempDir()
	db, err := local.Open(dir, local.Options{NoSync: true, WALSegmentBytes: 4 << 10})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now().Add(-time.Hour)
	for b := range 30 {
		appendFollowed(t, db, t0, b*4, (b+1)*4)
	}
	// Closed, so that no sealing goes on in the background: the store
	// is idle.
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	var read atomic.Int64
	f, err := query.CompileAt("verb=get", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	fl := localFollower{fs: readCounter{FS: vfs.OS, n: &read}, dir: dir, sel: local.Selection{Filter: f}}
	var buf lockedBuf
	out, err := newPrinter("jsonl", &buf)
	if err != nil {
		t.Fatal(err)
	}
	var c followCursor
	if c.next, err = fl.first(&c, out); err != nil {
		t.Fatal(err)
	}
	sameIDs(t, buf.ids(t), wantIDs(0, 120))
	ctx := context.Background()
	if err := fl.poll(ctx, &c, out); err != nil { // the first look reads
		t.Fatal(err)
	}
	for range 3 {
		read.Store(0)
		if err := fl.poll(ctx, &c, out); err != nil {
			t.Fatal(err)
		}
		if n := read.Load(); n != 0 {
			t.Fatalf("a look at an idle store of %d events read %d bytes, want none", 120, n)
		}
	}
	if db, err = local.Open(dir, local.Options{NoSync: true}); err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// Open seals the WAL segment Close left; wait for it, so that no
	// file comes or goes below.
	for deadline := time.Now().Add(20 * time.Second); db.Stats().Sealed.Load() == 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the WAL segment left at Close was not sealed")
		}
	}
	// Each new event is read, the second one appended to the WAL
	// segment the first look read (no file comes or goes).
	for i := 120; i < 124; i += 2 {
		appendFollowed(t, db, t0, i, i+1)
		if err := fl.poll(ctx, &c, out); err != nil {
			t.Fatal(err)
		}
		sameIDs(t, buf.ids(t), wantIDs(0, i+1))
	}
}

// TestFollowLocalRowsAsFirstAnswer: an event printed by a look (read with
// Scan and decoded) gets the very cells it gets in the first answer (read
// through the store's columns), for every -o wide column.
func TestFollowLocalRowsAsFirstAnswer(t *testing.T) {
	recs, err := investigatetest.Records(investigatetest.Incident())
	if err != nil {
		t.Fatal(err)
	}
	// lines follows a new folder with -o wide's columns printed as CSV
	// (no padding to differ), storing the incident before the first
	// answer or after it; it returns the event lines, sorted.
	lines := func(before bool) []string {
		dir := t.TempDir()
		db, err := local.Open(dir, local.Options{NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		add := func() {
			if _, err := db.Append(context.Background(), &pipeline.Batch{Cluster: "prod", Received: time.Now(), Records: recs}); err != nil {
				t.Fatal(err)
			}
		}
		var buf bytes.Buffer
		out, err := newPrinter("wide", &buf)
		if err != nil {
			t.Fatal(err)
		}
		out.format = "csv"
		fl := localFollower{fs: vfs.OS, dir: dir}
		if before {
			add()
		}
		var c followCursor
		if c.next, err = fl.first(&c, out); err != nil {
			t.Fatal(err)
		}
		if !before {
			add()
		}
		if err := fl.poll(context.Background(), &c, out); err != nil {
			t.Fatal(err)
		}
		l := strings.Split(strings.TrimSpace(buf.String()), "\n")[1:]
		slices.Sort(l)
		return l
	}
	first, followed := lines(true), lines(false)
	if len(first) != len(recs) {
		t.Fatalf("the first answer printed %d events, want %d", len(first), len(recs))
	}
	if d := cmp.Diff(first, followed); d != "" {
		t.Errorf("rows of followed events differ from the first answer's (-first +followed):\n%s", d)
	}
}

// TestFollowLocalAcrossRestarts: a follow outlives the writers of its
// folder: serve stopped and started again (its WAL sealed on Close, a new
// WAL segment on Open), and an import between them (bulk loaded: new
// segments and no WAL). Each matching event is printed once, in stored
// order, and the events imported again are not printed again.
// Mutation it catches: the cursor moved to the next WAL segment (a
// restart's Close seals the rest of one, and the follow missed it).
func TestFollowLocalAcrossRestarts(t *testing.T) {
	dir := t.TempDir()
	t0 := time.Now().Add(-time.Hour)
	run := func(opts local.Options, from, to int) {
		t.Helper()
		db, err := local.Open(dir, opts)
		if err != nil {
			t.Fatal(err)
		}
		for b := from; b < to; b += 3 {
			appendFollowed(t, db, t0.Add(time.Duration(b)*time.Second), b, min(b+3, to))
			time.Sleep(3 * time.Millisecond)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
	}
	serve := local.Options{NoSync: true, WALSegmentBytes: 2 << 10}
	run(serve, 0, 12)
	buf, stop := startFollow(t, func(ctx context.Context, sel local.Selection, out *printer) error {
		return localFollower{fs: vfs.OS, dir: dir, sel: sel, every: 2 * time.Millisecond}.run(ctx, out)
	})
	waitPrinted(t, buf, followEvent(10, true).Ev.AuditID)
	run(serve, 12, 60)
	run(local.Options{NoSync: true, Bulk: true, WALSegmentBytes: 2 << 10}, 30, 90) // half already stored
	// Seen with no WAL write after it: an import writes new segments only.
	waitPrinted(t, buf, followEvent(88, true).Ev.AuditID)
	run(serve, 90, 120)
	run(local.Options{NoSync: true, Bulk: true, SegmentFormat: 5}, 0, 130)
	waitPrinted(t, buf, followEvent(128, true).Ev.AuditID)
	run(serve, 130, 150)
	waitPrinted(t, buf, followEvent(148, true).Ev.AuditID)
	time.Sleep(50 * time.Millisecond) // more looks, to print anything twice
	stop()
	sameIDs(t, buf.ids(t), wantIDs(0, 150))
}

// TestFollowLocalReportsDamage: a follow over a folder whose answer
// leaves damaged data out says so on stderr, once for each, as soon as it
// meets it, and ends with a *local.DamageError (exit 3), as query without
// --follow does. It printed the intact events alone and exited 0.
func TestFollowLocalReportsDamage(t *testing.T) {
	dir := t.TempDir()
	db, err := local.Open(dir, local.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	appendFollowed(t, db, time.Now(), 0, 4)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db, err = local.Open(dir, local.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	appendFollowed(t, db, time.Now(), 4, 8)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	segs, _ := filepath.Glob(filepath.Join(dir, "segments", "*.kts"))
	if len(segs) != 2 {
		t.Fatalf("%d segments, want 2", len(segs))
	}
	if err := os.Remove(segs[0]); err != nil { // listed in the manifest: missing
		t.Fatal(err)
	}
	f, err := query.CompileAt("verb=get", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var buf, errBuf lockedBuf
	out, err := newPrinter("jsonl", &buf)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	out.ctx, out.errw = ctx, &errBuf
	done := make(chan error, 1)
	go func() {
		done <- localFollower{fs: vfs.OS, dir: dir, sel: local.Selection{Filter: f}, every: 2 * time.Millisecond}.run(ctx, out)
	}()
	waitPrinted(t, &buf, followEvent(6, true).Ev.AuditID)
	time.Sleep(50 * time.Millisecond) // several looks
	cancel()
	err = <-done
	var de *local.DamageError
	if !errors.As(err, &de) || len(de.List) != 1 {
		t.Errorf("the follow ended with %v, want a DamageError naming the missing segment", err)
	}
	errBuf.mu.Lock()
	said := errBuf.b.String()
	errBuf.mu.Unlock()
	if strings.Count(said, filepath.Base(segs[0])) != 1 {
		t.Errorf("stderr should name the missing segment once; it says %q", said)
	}
	sameIDs(t, buf.ids(t), wantIDs(4, 8))
}
