package detector

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kubetrail/kubetrail/internal/alert"
	"github.com/kubetrail/kubetrail/internal/audit"
	"github.com/kubetrail/kubetrail/internal/pipeline"
	"github.com/kubetrail/kubetrail/internal/rules"
	"github.com/kubetrail/kubetrail/internal/rules/engine"
	"github.com/kubetrail/kubetrail/internal/store/local"
)

// The test rules: one per event (every create), a threshold (3 denials by
// one user within a minute).
const testRules = `
- name: Create
  severity: low
  description: every create
  condition: verb=create
- name: Denied thrice
  severity: high
  description: three denials
  condition: code=403
  threshold: {count: 3, window: 1m, by: [user]}
`

func loadEngine(t *testing.T) *engine.Engine {
	t.Helper()
	eng, probs := engine.Load([]rules.File{{Name: "test.yaml", Data: []byte(testRules)}}, engine.Options{})
	for _, p := range probs {
		if !p.Warning {
			t.Fatal(p)
		}
	}
	return eng
}

var t0 = time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)

// ev returns event i: a create when verb is "create", a denied list when
// it is "deny", a get otherwise; i seconds after t0.
func ev(i int, verb, user string) audit.Record {
	code := 200
	if verb == "deny" {
		verb, code = "list", 403
	}
	ts := t0.Add(time.Duration(i) * time.Second).Format(time.RFC3339Nano)
	raw := fmt.Sprintf(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"id-%d","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/ns/configmaps","verb":%q,"user":{"username":%q},"objectRef":{"resource":"configmaps","namespace":"ns","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":%d},"requestReceivedTimestamp":%q,"stageTimestamp":%q}`,
		i, verb, user, code, ts, ts)
	var recs []audit.Record
	var bad []audit.Problem
	audit.NewDecoder(audit.Limits{}).DecodeBody("test", []byte(raw), func(r audit.Record) { recs = append(recs, r) }, func(p audit.Problem) { bad = append(bad, p) })
	if len(bad) > 0 || len(recs) != 1 {
		panic(fmt.Sprint(bad))
	}
	return recs[0]
}

type env struct {
	t      *testing.T
	dir    string
	db     *local.DB
	alerts *alert.Store
	next   int
}

func newEnv(t *testing.T, dir string) *env {
	t.Helper()
	db, err := local.Open(dir, local.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	st, _, err := alert.OpenStore(filepath.Join(dir, "alerts"), alert.StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, dir: dir, db: db, alerts: st}
	t.Cleanup(e.close)
	return e
}

func (e *env) close() {
	if e.db != nil {
		e.db.Close()
		e.alerts.Close()
		e.db = nil
	}
}

// add stores events with the given verbs (by user "u").
func (e *env) add(verbs ...string) {
	e.t.Helper()
	b := &pipeline.Batch{Cluster: "c"}
	for _, v := range verbs {
		b.Records = append(b.Records, ev(e.next, v, "u"))
		e.next++
	}
	if _, err := e.db.Append(context.Background(), b); err != nil {
		e.t.Fatal(err)
	}
}

// run starts a detector; stop ends it and returns Run's error.
func (e *env) run(opts Options) (d *Detector, stop func() error) {
	e.t.Helper()
	d, err := Open(e.db, loadEngine(e.t), e.alerts, filepath.Join(e.dir, "alerts"), opts)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	return d, func() error { cancel(); return <-done }
}

// waitEvaluated waits until d has evaluated every event stored so far.
func (e *env) waitEvaluated(d *Detector, n int64) {
	e.t.Helper()
	for i := 0; i < 2000; i++ {
		if d.Stats().Events >= n {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	e.t.Fatalf("detector evaluated %d events, want %d", d.Stats().Events, n)
}

// stored returns the stored alerts as "rule ids".
func (e *env) stored() []string {
	e.t.Helper()
	as, err := e.alerts.List(alert.Query{Limit: 100000})
	if err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for _, a := range as {
		out = append(out, a.Rule+" "+strings.Join(a.AuditIDs, ","))
	}
	return out
}

func TestLiveEventsAlertOnceEach(t *testing.T) {
	e := newEnv(t, t.TempDir())
	d, stop := e.run(Options{})
	e.add("create", "get", "create")
	e.add("deny", "deny", "get", "deny")
	e.waitEvaluated(d, 7)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	want := []string{"Create id-0", "Create id-2", "Denied thrice id-3,id-4,id-6"}
	if got := e.stored(); !slices.Equal(got, want) {
		t.Fatalf("stored alerts %q, want %q", got, want)
	}
	s := d.Stats()
	if len(s.Alerts) != 2 || s.Alerts[0].Rule != "Create" || s.Alerts[0].Alerts != 2 || s.Alerts[1].Alerts != 1 {
		t.Errorf("per-rule counts %+v", s.Alerts)
	}
}

// TestHistoryBeforeFirstStartIsLeftToDetect: without a cursor, the
// detector starts at the events stored from then on.
func TestHistoryBeforeFirstStartIsLeftToDetect(t *testing.T) {
	dir := t.TempDir()
	e := newEnv(t, dir)
	e.add("create")
	e.close()
	e = newEnv(t, dir)
	e.next = 1
	d, stop := e.run(Options{})
	e.add("create")
	e.waitEvaluated(d, 1)
	stop()
	if got := e.stored(); !slices.Equal(got, []string{"Create id-1"}) {
		t.Fatalf("stored %q", got)
	}
}

// TestEventsStoredWhileDownAreEvaluatedOnStart: events stored after the
// cursor while no detector ran (serve killed between a commit and its
// evaluation, or the detector behind) are evaluated on start, and a
// threshold they complete counts the denials evaluated before the
// restart (its state is rebuilt from the store).
func TestEventsStoredWhileDownAreEvaluatedOnStart(t *testing.T) {
	dir := t.TempDir()
	e := newEnv(t, dir)
	d, stop := e.run(Options{})
	e.add("deny", "deny", "get")
	e.waitEvaluated(d, 3)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	e.add("create", "deny") // no detector runs
	e.close()

	e = newEnv(t, dir)
	e.next = 5
	d, stop = e.run(Options{})
	e.waitEvaluated(d, 2)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	want := []string{"Create id-3", "Denied thrice id-0,id-1,id-4"}
	if got := e.stored(); !slices.Equal(got, want) {
		t.Fatalf("stored alerts %q, want %q", got, want)
	}
	if s := d.Stats(); s.Replayed != 3 || s.Events != 2 {
		t.Errorf("replayed %d events and evaluated %d; want 3 and 2", s.Replayed, s.Events)
	}
}

// TestCrashBeforeCursorSaveStoresNothingTwice: a crash after alerts were
// stored but before the cursor was saved past their events: the events are
// evaluated again, their alerts recognised and not stored again, and
// every event after them evaluated.
func TestCrashBeforeCursorSaveStoresNothingTwice(t *testing.T) {
	dir := t.TempDir()
	cursorPath := filepath.Join(dir, "alerts", CursorFile)
	e := newEnv(t, dir)
	d, stop := e.run(Options{SaveEvery: time.Hour})
	e.add("create", "deny")
	e.waitEvaluated(d, 2)
	if err := stop(); err != nil { // saves the cursor
		t.Fatal(err)
	}
	old, err := os.ReadFile(cursorPath)
	if err != nil {
		t.Fatal(err)
	}
	d, stop = e.run(Options{SaveEvery: time.Hour})
	e.add("create", "deny", "deny", "create")
	e.waitEvaluated(d, 4)
	stop()
	// The crash: the cursor saved at the end never reached the disk.
	if err := os.WriteFile(cursorPath, old, 0o600); err != nil {
		t.Fatal(err)
	}
	before := e.stored()
	e.add("create")
	d, stop = e.run(Options{})
	e.waitEvaluated(d, 5)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	want := append(before, "Create id-6")
	if got := e.stored(); !slices.Equal(got, want) {
		t.Fatalf("stored alerts\n%q\nwant\n%q", got, want)
	}
	if s := d.Stats(); s.Suppressed != 3 {
		t.Errorf("%d alerts recognised as stored before the crash, want 3", s.Suppressed)
	}
}

// slowEngine holds every evaluation until gate is closed, saying on
// entered that one is held, so that events stored meanwhile surely outrun
// the detector (a fixed sleep per event did not: on a loaded machine every
// event could be stored before the detector subscribed).
type slowEngine struct {
	*engine.Engine
	entered, gate chan struct{}
}

func (s *slowEngine) Eval(ev *rules.Event) []rules.Alert {
	select {
	case s.entered <- struct{}{}:
	default:
	}
	<-s.gate
	return s.Engine.Eval(ev)
}

// TestFallingBehindLosesNothing: a subscription of one group is dropped
// as soon as the detector is slower than ingest; it reads the store from
// its cursor and evaluates every event once.
func TestFallingBehindLosesNothing(t *testing.T) {
	e := newEnv(t, t.TempDir())
	slow := &slowEngine{Engine: loadEngine(t), entered: make(chan struct{}, 1), gate: make(chan struct{})}
	d, err := Open(e.db, slow, e.alerts, filepath.Join(e.dir, "alerts"), Options{Buffer: 1})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	var want []string
	for i := 0; i < 40; i++ {
		e.add("create", "get")
		want = append(want, fmt.Sprintf("Create id-%d", 2*i))
		if i == 0 {
			<-slow.entered // subscribed, and held on the first event
		}
	}
	close(slow.gate)
	e.waitEvaluated(d, 80)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := e.stored(); !slices.Equal(got, want) {
		t.Fatalf("stored %d alerts, want %d:\n%q", len(got), len(want), got)
	}
	if s := d.Stats(); s.CatchUps < 2 || s.Events != 80 {
		t.Errorf("catch-ups %d (want at least 2: the stream must have been dropped), events %d", s.CatchUps, s.Events)
	}
}

func TestDamagedCursorIsAnError(t *testing.T) {
	dir := t.TempDir()
	e := newEnv(t, dir)
	_, stop := e.run(Options{})
	stop()
	p := filepath.Join(dir, "alerts", CursorFile)
	b, _ := os.ReadFile(p)
	b[5] ^= 0x01
	os.WriteFile(p, b, 0o600)
	_, err := Open(e.db, loadEngine(t), e.alerts, filepath.Join(dir, "alerts"), Options{})
	if err == nil || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "damaged") {
		t.Fatalf("Open with a damaged cursor: %v", err)
	}
}
