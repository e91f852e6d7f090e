package detector

import (
	"context"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kubetrail/kubetrail/internal/alert"
	"github.com/kubetrail/kubetrail/internal/pipeline"
	"github.com/kubetrail/kubetrail/internal/store/clickhouse"
	"github.com/kubetrail/kubetrail/internal/store/clickhouse/chtest"
)

// ch is the package's ClickHouse server, started by the first test that
// needs it.
var ch chtest.Server

func TestMain(m *testing.M) { os.Exit(chtest.Run(m, &ch)) }

// chStore creates a fresh kubetrail database on the package's server.
func chStore(t *testing.T, name string) *clickhouse.Store {
	t.Helper()
	cfg, err := clickhouse.ParseURL(strings.Replace(ch.URL(t), "http://", "clickhouse://", 1) + "/" + name)
	if err != nil {
		t.Fatal(err)
	}
	if err := clickhouse.Setup(context.Background(), cfg); err != nil {
		t.Fatalf("setup: %v\n%s", err, ch.Log())
	}
	s, err := clickhouse.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// send makes events from..to-1 (verb for each from kind) durable in the
// collector and ships them to ClickHouse.
func send(t *testing.T, c *clickhouse.Collector, from, to int, kind func(int) string) {
	t.Helper()
	b := &pipeline.Batch{Cluster: "default", Received: time.Now()}
	for i := from; i < to; i++ {
		b.Records = append(b.Records, ev(i, kind(i), "u"))
	}
	if _, err := c.Append(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	if err := c.Drain(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func collector(t *testing.T, s *clickhouse.Store) *clickhouse.Collector {
	t.Helper()
	c, err := clickhouse.NewCollector(s, clickhouse.CollectorOptions{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// kinds: every event a create but 10, 11, 12 (three denials: one
// threshold alert).
func kinds(i int) string {
	if i >= 10 && i <= 12 {
		return "deny"
	}
	return "create"
}

// storedAlerts returns the stored alerts' rule and first audit ID.
func storedAlerts(t *testing.T, dir string) []string {
	t.Helper()
	as, _, err := alert.ListDir(nil, dir, alert.Query{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, a := range as {
		got = append(got, a.Rule+" "+strings.Join(a.AuditIDs, ","))
	}
	slices.Sort(got)
	return got
}

func wantAlerts(n int) []string {
	var want []string
	for i := range n {
		if kinds(i) == "create" {
			want = append(want, "Create id-"+strconv.Itoa(i))
		}
	}
	want = append(want, "Denied thrice id-10,id-11,id-12")
	slices.Sort(want)
	return want
}

// openArrivals opens the alert store in dir and a detector over s.
func openArrivals(t *testing.T, s *clickhouse.Store, dir string) (*ArrivalsDetector, *alert.Store) {
	t.Helper()
	store, _, err := alert.OpenStore(dir, alert.StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d, err := OpenArrivals(s, loadEngine(t), store, dir, ArrivalsOptions{Retry: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return d, store
}

// TestArrivalsOncePerEvent: two collectors feed one store, with copies
// (a retried batch, the same events through both); one reader polls
// between their inserts and is stopped and opened again half-way: every
// event is evaluated once (a restart does not evaluate what its cursor
// covers), and each expected alert is stored once.
// Planted: Poll not saving the cursor makes the second detector evaluate
// all 60 events again (Evaluated 100+60, want 100).
func TestArrivalsOncePerEvent(t *testing.T) {
	s := chStore(t, "kt_detect_once")
	a, b := collector(t, s), collector(t, s)
	dir := t.TempDir()
	ctx := context.Background()
	d, store := openArrivals(t, s, dir)
	send(t, a, 0, 30, kinds)
	if err := d.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	send(t, b, 20, 60, kinds) // 20..29 again, through the other collector
	send(t, a, 0, 30, kinds)  // a retried batch
	if err := d.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	first := d.Evaluated.Load()
	store.Close()
	send(t, b, 60, 100, kinds)
	send(t, a, 50, 70, kinds)
	d, store = openArrivals(t, s, dir)
	defer store.Close()
	for range 2 {
		if err := d.Poll(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if first != 60 || d.Evaluated.Load() != 40 {
		t.Errorf("evaluated %d events, then %d after the restart; want 60 then 40", first, d.Evaluated.Load())
	}
	if got, want := storedAlerts(t, dir), wantAlerts(100); !slices.Equal(got, want) {
		t.Errorf("stored alerts:\n%v\nwant each once:\n%v", got, want)
	}
}

// TestArrivalsAlertsBeforeCursor: while the alert store refuses appends
// the cursor must not move; the reader stopped then and started again
// stores every alert once.
// Planted: saving the cursor before the alerts are appended loses the
// alerts of the events evaluated while the store refused them.
func TestArrivalsAlertsBeforeCursor(t *testing.T) {
	s := chStore(t, "kt_detect_order")
	c := collector(t, s)
	dir := t.TempDir()
	d, store := openArrivals(t, s, dir)
	send(t, c, 0, 20, kinds)
	store.Close() // appends fail from now on
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	deadline := time.Now().Add(20 * time.Second)
	for d.Failures.Load() < 2 {
		if time.Now().After(deadline) {
			t.Fatal("the closed alert store never refused an append")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	d, store = openArrivals(t, s, dir)
	defer store.Close()
	if err := d.Poll(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, want := storedAlerts(t, dir), wantAlerts(20); !slices.Equal(got, want) {
		t.Errorf("stored alerts:\n%v\nwant each once:\n%v", got, want)
	}
}

// TestArrivalsWindowsSurviveRestart: two denials before a restart and one
// after complete the threshold (rule state rebuilt from the store), and
// the replay raises nothing again.
// Planted: skipping replay leaves "Denied thrice" unraised.
func TestArrivalsWindowsSurviveRestart(t *testing.T) {
	s := chStore(t, "kt_detect_windows")
	c := collector(t, s)
	dir := t.TempDir()
	ctx := context.Background()
	d, store := openArrivals(t, s, dir)
	send(t, c, 0, 12, kinds) // creates 0-9, denials 10 and 11
	if err := d.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	store.Close()
	d, store = openArrivals(t, s, dir)
	defer store.Close()
	send(t, c, 12, 20, kinds) // denial 12, creates 13-19
	if err := d.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := storedAlerts(t, dir), wantAlerts(20); !slices.Equal(got, want) {
		t.Errorf("stored alerts:\n%v\nwant each once:\n%v", got, want)
	}
	if d.Replayed.Load() != 12 || d.Evaluated.Load() != 8 {
		t.Errorf("after the restart: %d events replayed, %d evaluated; want 12 and 8", d.Replayed.Load(), d.Evaluated.Load())
	}
}
