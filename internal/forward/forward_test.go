package forward

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kubetrail/kubetrail/internal/audit"
	"github.com/kubetrail/kubetrail/internal/pipeline"
	"github.com/kubetrail/kubetrail/internal/store/local"
	"github.com/kubetrail/kubetrail/internal/vfs"
)

var t0 = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

// ev is a small event; i makes it unique and sets its time.
func ev(i int, verb string) audit.Record {
	ts := t0.Add(time.Duration(i) * time.Second).Format("2006-01-02T15:04:05.000000Z")
	raw := fmt.Sprintf(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"id-%d","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/ns/configmaps","verb":%q,"user":{"username":"alice"},"objectRef":{"resource":"configmaps","namespace":"ns","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":%q,"stageTimestamp":%q,"annotations":{"authorization.k8s.io/decision":"allow"}}`,
		i, verb, ts, ts)
	var recs []audit.Record
	var bad []audit.Problem
	audit.NewDecoder(audit.Limits{}).DecodeBody("test", []byte(raw), func(r audit.Record) { recs = append(recs, r) }, func(p audit.Problem) { bad = append(bad, p) })
	if len(bad) > 0 || len(recs) != 1 {
		panic(fmt.Sprint(bad))
	}
	return recs[0]
}

// appendEvents stores events first..first+n-1 as one batch of cluster c;
// every third is a delete.
func appendEvents(t testing.TB, db *local.DB, first, n int) {
	t.Helper()
	b := &pipeline.Batch{Cluster: "prod"}
	for i := first; i < first+n; i++ {
		verb := "create"
		if i%3 == 2 {
			verb = "delete"
		}
		b.Records = append(b.Records, ev(i, verb))
	}
	if _, err := db.Append(context.Background(), b); err != nil {
		t.Fatal(err)
	}
}

// receiver is a fake destination: it records what it got, and fails
// while fail says so.
type receiver struct {
	mu    sync.Mutex
	got   []string // auditIDs, in arrival order, duplicates kept
	sends int
	fail  func(n int) error // n is the Send's number, from 1
}

func (r *receiver) Send(_ context.Context, evs []Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sends++
	if r.fail != nil {
		if err := r.fail(r.sends); err != nil {
			return err
		}
	}
	for i := range evs {
		r.got = append(r.got, evs[i].Ev.AuditID)
	}
	return nil
}

func (r *receiver) Close() error { return nil }

func (r *receiver) ids() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

func testDest(s Sender) *Dest {
	return &Dest{Sender: s, Name: "test://x", ID: "test", Config: Config{Batch: 4, BatchBytes: DefaultBatchBytes, MinBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond}}
}

func waitFor(t testing.TB, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// running is a forwarder's Run in a goroutine.
type running struct {
	f      *Forwarder
	cancel context.CancelFunc
	done   chan error
}

func runForwarder(t testing.TB, db *local.DB, d *Dest, opts Options) *running {
	t.Helper()
	f, err := New(db.Dir(), d, db.Start(), opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{f: f, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- f.Run(ctx, db) }()
	return r
}

func (r *running) stop(t testing.TB) {
	t.Helper()
	r.cancel()
	if err := <-r.done; err != nil {
		t.Fatalf("Run: %v", err)
	}
}

func idList(from, to int) []string {
	var out []string
	for i := from; i < to; i++ {
		out = append(out, fmt.Sprintf("id-%d", i))
	}
	return out
}

// TestCursorSurvivesRestart: events stored while serve runs, then while
// the forwarder is stopped (and the store closed and opened again), are
// all forwarded, in order, none skipped and none twice (a clean stop
// leaves nothing in flight).
// Mutations it catches: starting a reopened forwarder at db.Start()
// instead of its cursor (the events stored while it was stopped are
// skipped); not saving the cursor at stop (the first batch comes twice).
func TestCursorSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	cur := filepath.Join(dir, Dir, "test.cursor")
	rcv := &receiver{}
	db, err := local.Open(dir, local.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	r := runForwarder(t, db, testDest(rcv), Options{Cursor: cur})
	appendEvents(t, db, 0, 10)
	waitFor(t, "10 events", func() bool { return len(rcv.ids()) == 10 })
	r.stop(t)
	// Stored while no forwarder runs: only the store knows them.
	appendEvents(t, db, 10, 5)
	db.Close()
	db, err = local.Open(dir, local.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	r = runForwarder(t, db, testDest(rcv), Options{Cursor: cur})
	appendEvents(t, db, 15, 5)
	waitFor(t, "20 events", func() bool { return len(rcv.ids()) >= 20 })
	time.Sleep(20 * time.Millisecond)
	r.stop(t)
	if got, want := rcv.ids(), idList(0, 20); !slices.Equal(got, want) {
		t.Fatalf("received %v\nwant %v", got, want)
	}
	if st := r.f.Stats(); st.Redelivered != 0 || st.Backlog != 0 || st.Events != 10 {
		t.Errorf("after a clean restart: %+v; want 10 events, nothing redelivered, no backlog", st)
	}
}

// TestFailingDestinationKeepsEverything: a destination that fails (429,
// down) for a while gets every event once it recovers, in order; the
// failures are counted and the backlog is reported while it lasts.
// Mutation it catches: moving the cursor when a Send fails (events lost).
func TestFailingDestinationKeepsEverything(t *testing.T) {
	db, err := local.Open(t.TempDir(), local.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	isDown := true
	rcv := &receiver{fail: func(int) error {
		if isDown {
			return errors.New("503 Service Unavailable")
		}
		return nil
	}}
	r := runForwarder(t, db, testDest(rcv), Options{Cursor: filepath.Join(db.Dir(), Dir, "t.cursor"), Buffer: 2})
	for i := 0; i < 10; i++ {
		appendEvents(t, db, i*5, 5)
	}
	waitFor(t, "failures", func() bool { return r.f.Stats().Failures >= 3 })
	if st := r.f.Stats(); st.Backlog != 50 || st.LastError == "" {
		t.Errorf("while the destination is down: backlog %d, last error %q; want 50 and the error", st.Backlog, st.LastError)
	}
	rcv.mu.Lock()
	isDown = false
	rcv.mu.Unlock()
	waitFor(t, "50 events", func() bool { return len(rcv.ids()) >= 50 })
	r.stop(t)
	if got, want := rcv.ids(), idList(0, 50); !slices.Equal(got, want) {
		t.Fatalf("received %v\nwant %v", got, want)
	}
	if st := r.f.Stats(); st.Backlog != 0 || st.LastError != "" {
		t.Errorf("after recovery: %+v", st)
	}
}

// TestFilterPerDestination: a destination with a filter gets only the
// matching events; the others are counted and still move the cursor.
func TestFilterPerDestination(t *testing.T) {
	db, err := local.Open(t.TempDir(), local.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	reg := NewRegistry(Env{})
	d, err := reg.Open("webhook+http://127.0.0.1:1/x#filter=verb=delete", "", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	rcv := &receiver{}
	d.Sender = rcv
	r := runForwarder(t, db, d, Options{})
	appendEvents(t, db, 0, 9)
	waitFor(t, "the cursor past 9 events", func() bool { return r.f.Stats().Filtered == 6 })
	r.stop(t)
	if got := rcv.ids(); !slices.Equal(got, []string{"id-2", "id-5", "id-8"}) {
		t.Fatalf("received %v; want the deletes only", got)
	}
}

// TestOpenRejects: bad settings are errors naming them, and printed
// names never hold the URL's credentials or path.
func TestOpenRejects(t *testing.T) {
	reg := NewRegistry(Env{})
	bad := func(raw, want string) {
		t.Helper()
		_, err := reg.Open(raw, "", time.Now())
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Open(%q) = %v; want an error with %q", raw, err, want)
		}
		if err != nil && strings.Contains(err.Error(), "SECRET") {
			t.Errorf("Open(%q): the error shows a secret: %v", raw, err)
		}
	}
	bad("amqp://b/t", `unknown scheme "amqp"`)
	bad("webhook+https://h/SECRET#formt=jsonl", `unknown setting "formt"`)
	bad("webhook+https://h/x#format=xml", `format="xml"`)
	bad("splunk+https://h:8088", "no HEC token")
	bad("splunk+https://SECRET@h:8088#ack=yes", `ack="yes"`)
	bad("syslog+tcp://h", "no port")
	bad("elasticsearch+https://h:9200/a/b", "one index")
	bad("webhook+https://h/x#filter=verb=", "filter")
	bad("otlp+http://h:4318#batch=0", "batch")
	d, err := reg.Open("splunk+https://SECRET@splunk.example:8088#ack=true&index=k8s", "", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if d.Name != "splunk+https://splunk.example:8088" || strings.Contains(d.ID, "SECRET") {
		t.Errorf("name %q, id %q", d.Name, d.ID)
	}
}

// TestCursorFileDamaged: a damaged cursor is an error naming the file,
// not a silent restart.
func TestCursorFileDamaged(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "x.cursor")
	if err := vfs.WriteFileAtomic(vfs.OS, p, []byte("{\"version\":1}\n00000000\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := New(dir, testDest(&receiver{}), local.Pos{}, Options{Cursor: p})
	if err == nil || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "checksum") {
		t.Fatalf("New = %v; want a checksum error naming %s", err, p)
	}
}
