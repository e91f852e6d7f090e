package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kubetrail/kubetrail/internal/audit"
	"github.com/kubetrail/kubetrail/internal/pipeline"
	"github.com/kubetrail/kubetrail/internal/store/clickhouse/chtest"
	"github.com/kubetrail/kubetrail/internal/store/local"
	"github.com/kubetrail/kubetrail/internal/wal"
)

// testBatch is batch number b of per events, each with its own auditID
// (b-i).
func testBatch(t testing.TB, b, per int) *pipeline.Batch {
	t.Helper()
	var lines []byte
	for i := range per {
		lines = append(append(lines, hostileEvent(i, fmt.Sprintf("%d-%d", b, i))...), '\n')
	}
	var recs []audit.Record
	audit.NewDecoder(audit.Limits{}).DecodeLines("gen", lines, func(r audit.Record) { recs = append(recs, r) },
		func(p audit.Problem) { t.Fatalf("%v", p) })
	return &pipeline.Batch{Cluster: "c1", Received: time.Now(), Records: recs}
}

// auditIDs returns the auditIDs Select gives, in its order.
func auditIDs(t testing.TB, s *Store) []string {
	t.Helper()
	var ids []string
	err := s.Select(context.Background(), local.Selection{}, func(h *local.Hit) error {
		ids = append(ids, h.Event.AuditID)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

// wantIDs are the auditIDs of batches from..to-1 of per events, in order.
func wantIDs(from, to, per int) []string {
	var ids []string
	for b := from; b < to; b++ {
		for i := range per {
			ids = append(ids, fmt.Sprintf("%d-%d", b, i))
		}
	}
	return ids
}

func newCollector(t *testing.T, s *Store, o CollectorOptions) *Collector {
	t.Helper()
	if o.Dir == "" {
		o.Dir = t.TempDir()
	}
	c, err := NewCollector(s, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestCollectorCountsEveryEventOnce: two collectors, one of them sending
// a batch twice (the API server's retry) and the other sending half of
// the same events again (two collectors given one stream): every answer
// counts each event once, Select gives them in the first collector's
// order, and both spools are empty once drained.
func TestCollectorCountsEveryEventOnce(t *testing.T) {
	_, s := newDB(t, "kt_collect")
	ctx := context.Background()
	a := newCollector(t, s, CollectorOptions{SegmentBytes: 32 << 10})
	b := newCollector(t, s, CollectorOptions{})
	const batches, per = 12, 50
	for i := range batches {
		if _, err := a.Append(ctx, testBatch(t, i, per)); err != nil {
			t.Fatal(err)
		}
		if i == 3 {
			if _, err := a.Append(ctx, testBatch(t, 3, per)); err != nil {
				t.Fatal(err)
			}
		}
	}
	// A batch holding an event twice: one row.
	dup := testBatch(t, 0, 2)
	dup.Records = append(dup.Records, dup.Records[0])
	if res, err := a.Append(ctx, dup); err != nil || res.Stored != 2 || res.Duplicates != 1 {
		t.Fatalf("a batch with a copy: %+v, %v; want 2 stored and 1 duplicate", res, err)
	}
	if err := a.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	for i := batches / 2; i < batches; i++ {
		if _, err := b.Append(ctx, testBatch(t, i, per)); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	want := wantIDs(0, batches, per)
	if got := auditIDs(t, s); !slices.Equal(got, want) {
		t.Fatalf("Select gave %d events, want %d in order; first difference at %d", len(got), len(want), firstDiff(got, want))
	}
	if n, err := s.Count(ctx, local.Selection{}); err != nil || n != int64(len(want)) {
		t.Errorf("count %d, %v; want %d", n, err, len(want))
	}
	_, tot, err := s.Stats(ctx, local.Selection{}, local.StatsOptions{By: []local.Column{local.ColUser}})
	if err != nil || tot.Count != int64(len(want)) {
		t.Errorf("stats count %d, %v; want %d", tot.Count, err, len(want))
	}
	n := 0
	if err := s.Export(ctx, local.ScanOptions{}, func(local.Stored) error { n++; return nil }); err != nil || n != len(want) {
		t.Errorf("export gave %d events, %v; want %d", n, err, len(want))
	}
	for _, c := range []*Collector{a, b} {
		st := c.Stats()
		if segs, _ := wal.ListSegments(filepath.Join(c.opts.Dir, "wal")); len(segs) != 1 || st.Inserts == 0 {
			t.Errorf("after Drain the WAL holds segments %v (want only the open one), %d inserts", segs, st.Inserts)
		}
	}
	if st := a.Stats(); st.Accepted != (batches+1)*per+2 || st.Shipped != st.Accepted || st.Inserts < 2 {
		// 32 KiB segments: the backlog ships in several inserts.
		t.Errorf("collector a: %+v; want %d accepted and shipped in several inserts", st, (batches+1)*per+2)
	}
}

func firstDiff(a, b []string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// TestCollectorClickHouseDown: with the server killed, the collector
// keeps acknowledging into its WAL until MaxSpoolBytes, then refuses with
// pipeline.ErrUnavailable (the webhook's 503) and says it is not ready;
// once the server is back, everything acknowledged is in ClickHouse,
// once, and batches are taken again.
func TestCollectorClickHouseDown(t *testing.T) {
	srv := newOwnServer(t)
	cfg, err := ParseURL(strings.Replace(srv.URL(t), "http://", "clickhouse://", 1) + "/kt_down")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := Setup(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	s, err := Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const per = 40
	one := testBatch(t, 0, per)
	rows, _ := appendRows(nil, one)
	c := newCollector(t, s, CollectorOptions{MaxSpoolBytes: int64(len(rows)) * 5, SegmentBytes: 1 << 10, Backoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond})
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- c.Run(runCtx) }()
	defer func() { stop(); <-done }()

	if _, err := c.Append(ctx, one); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the first batch in ClickHouse", func() bool { return c.Stats().Shipped == per })
	srv.Kill(t)
	acked := 1
	var refusal error
	for b := 1; b < 100; b++ {
		if _, err := c.Append(ctx, testBatch(t, b, per)); err != nil {
			refusal = err
			break
		}
		acked++
	}
	if !errors.Is(refusal, pipeline.ErrUnavailable) || !strings.Contains(refusal.Error(), "not reachable") {
		t.Fatalf("after %d batches with ClickHouse down: %v; want pipeline.ErrUnavailable naming ClickHouse's error", acked, refusal)
	}
	if acked < 4 {
		t.Errorf("only %d batches acknowledged while ClickHouse was down; the spool holds about 5", acked)
	}
	if c.Ready() == nil {
		t.Error("a full spool says ready")
	}
	srv.Restart(t)
	waitFor(t, "the spool shipped", func() bool { return c.Stats().Shipped == int64(acked*per) })
	if _, err := c.Append(ctx, testBatch(t, acked, per)); err != nil {
		t.Fatalf("after ClickHouse came back: %v", err)
	}
	acked++
	waitFor(t, "the last batch shipped", func() bool { return c.Stats().Shipped == int64(acked*per) })
	if got, want := auditIDs(t, s), wantIDs(0, acked, per); !slices.Equal(got, want) {
		t.Fatalf("ClickHouse holds %d events, want the %d acknowledged, in order (first difference at %d)", len(got), len(want), firstDiff(got, want))
	}
	if c.Ready() != nil || c.Stats().Failures == 0 {
		t.Errorf("ready: %v; failures %d (want some)", c.Ready(), c.Stats().Failures)
	}
}

// TestCollectorRecoversItsWAL: rows committed by a collector that stopped
// before shipping (its process died) ship when the folder is opened
// again; a second process cannot open a folder in use.
func TestCollectorRecoversItsWAL(t *testing.T) {
	_, s := newDB(t, "kt_recover")
	ctx := context.Background()
	dir := t.TempDir()
	c, err := NewCollector(s, CollectorOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	for b := range 3 {
		if _, err := c.Append(ctx, testBatch(t, b, 30)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := NewCollector(s, CollectorOptions{Dir: dir}); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("a second collector on the folder: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if n := len(auditIDs(t, s)); n != 0 {
		t.Fatalf("%d events in ClickHouse before any shipping", n)
	}
	c2, err := NewCollector(s, CollectorOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if err := c2.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := auditIDs(t, s), wantIDs(0, 3, 30); !slices.Equal(got, want) {
		t.Fatalf("after a restart: %d events, want %d", len(got), len(want))
	}
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// newOwnServer starts a clickhouse-server for one test, which may stop it.
func newOwnServer(t *testing.T) *chtest.Server {
	t.Helper()
	srv := &chtest.Server{}
	t.Cleanup(func() {
		if err := srv.Stop(); err != nil {
			t.Error(err)
		}
	})
	return srv
}

// TestCollectorBodyCutShortInsertsNothing: when the insert's body cannot
// be read to its end (here a record that is not rows, after megabytes of
// rows already sent), ClickHouse keeps none of it and the segment stays.
func TestCollectorBodyCutShortInsertsNothing(t *testing.T) {
	_, s := newDB(t, "kt_cut")
	ctx := context.Background()
	c := newCollector(t, s, CollectorOptions{SegmentBytes: 64 << 20})
	for b := range 80 {
		if _, err := c.Append(ctx, testBatch(t, b, 50)); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.write([]*commitReq{{payload: []byte{spoolVersion + 1, 1, 2, spoolEnd}}}); err != nil {
		t.Fatal(err)
	}
	if c.spooled.Load() < 3<<20 {
		t.Fatalf("only %d bytes spooled; the test needs more than the writer's buffer", c.spooled.Load())
	}
	shipped, err := c.shipOnce(ctx, true)
	if err == nil || shipped || !strings.Contains(err.Error(), "not rows") {
		t.Fatalf("shipping a bad record: %v, %v", shipped, err)
	}
	if n, err := s.Count(ctx, local.Selection{}); err != nil || n != 0 {
		t.Fatalf("ClickHouse kept %d rows of a body cut short (%v)", n, err)
	}
	if segs := c.closedSegments(); len(segs) != 1 {
		t.Fatalf("closed segments %v, want the one not shipped", segs)
	}
}

// TestCollectorKeepsDamagedSegments: a closed WAL segment damaged on disk
// (a flipped byte in its first record) ships its intact records, is kept
// as .damaged, and DamagedSegments and Damage (serve --store's
// Kubetrail-Damage) list it, in this run and the next.
// Planted: DamagedSegments counting the WAL's segments instead (3 before
// shipping) fails it, as does removing the damaged segment instead of
// keeping it (0 after shipping and in the next run).
func TestCollectorKeepsDamagedSegments(t *testing.T) {
	_, s := newDB(t, "kt_damaged")
	ctx := context.Background()
	dir := t.TempDir()
	c, err := NewCollector(s, CollectorOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	for b := range 3 {
		if _, err := c.Append(ctx, testBatch(t, b, 10)); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.rotate(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Append(ctx, testBatch(t, 3, 10)); err != nil {
		t.Fatal(err)
	}
	first := wal.SegmentPath(filepath.Join(dir, "wal"), c.log.Segments()[0])
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(first)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/6] ^= 0xff // inside the first of three records of one size
	if err := os.WriteFile(first, b, 0o600); err != nil {
		t.Fatal(err)
	}

	c = newCollector(t, s, CollectorOptions{Dir: dir})
	if d, err := c.DamagedSegments(); err != nil || len(d) != 0 {
		t.Fatalf("before shipping: damaged segments %v, %v; want none", d, err)
	}
	if err := c.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := auditIDs(t, s), wantIDs(1, 4, 10); !slices.Equal(got, want) {
		t.Errorf("shipped %v, want the intact records' %v", got, want)
	}
	if _, err := os.Stat(first + DamagedSuffix); err != nil {
		t.Errorf("the damaged segment is not kept: %v", err)
	}
	if d, err := c.DamagedSegments(); err != nil || !slices.Equal(d, []string{first + DamagedSuffix}) {
		t.Errorf("after shipping: damaged segments %v, %v; want %s", d, err, first+DamagedSuffix)
	}
	c.Close()
	c = newCollector(t, s, CollectorOptions{Dir: dir})
	if d := c.Damage(); len(d) != 1 || d[0].Path != first+DamagedSuffix || !strings.Contains(d[0].Reason, "never reached ClickHouse") {
		t.Errorf("the next run: damage %v; want %s, its events never in ClickHouse", d, first+DamagedSuffix)
	}
}

// TestCollectorClusterURLOnOneServer: a collector given ?cluster= for a
// store set up on one server (no events_local) inserts into its events
// table, as before it routed rows to shards. Planted: routing whenever
// the URL names a cluster fails every insert (no such table).
func TestCollectorClusterURLOnOneServer(t *testing.T) {
	cfg, _ := newDB(t, "kt_cluster_one")
	cfg.Cluster = "kt_nowhere"
	s, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c := newCollector(t, s, CollectorOptions{})
	if _, err := c.Append(context.Background(), testBatch(t, 0, 10)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := c.Drain(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := auditIDs(t, s), wantIDs(0, 1, 10); !slices.Equal(got, want) {
		t.Errorf("stored %v, want %v", got, want)
	}
}
