package migrate

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kubetrail/kubetrail/internal/audit"
	"github.com/kubetrail/kubetrail/internal/pipeline"
	"github.com/kubetrail/kubetrail/internal/store"
	"github.com/kubetrail/kubetrail/internal/store/clickhouse"
	"github.com/kubetrail/kubetrail/internal/store/clickhouse/chtest"
	"github.com/kubetrail/kubetrail/internal/store/local"
)

var ch chtest.Server

func TestMain(m *testing.M) { os.Exit(chtest.Run(m, &ch)) }

// batches are 30 batches of 20 events, each with its own received time,
// three of one cluster, three of the other, and so on.
func batches() []*pipeline.Batch {
	var out []*pipeline.Batch
	for b := range 30 {
		batch := &pipeline.Batch{Cluster: []string{"east", "west"}[b/3%2], Received: time.Date(2026, 11, 1, 0, 0, b, 0, time.UTC)}
		for i := range 20 {
			n := b*20 + i
			raw := fmt.Sprintf(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"id-%d","stage":"ResponseComplete","requestURI":"/api/v1/pods","verb":"list","user":{"username":"u%d"},"stageTimestamp":"2026-11-01T00:%02d:%02d.%06dZ"}`, n, n%7, n/60%60, n%60, n)
			var ev audit.Event
			if err := audit.DecodeStored([]byte(raw), &ev); err != nil {
				panic(err)
			}
			batch.Records = append(batch.Records, audit.Record{Raw: []byte(raw), Event: ev})
		}
		out = append(out, batch)
	}
	return out
}

// crashAt fails the n-th batch after storing it, as a process killed
// between the destination's answer and the cursor's save would; with
// before, without storing it, as one killed before the destination
// stored it.
type crashAt struct {
	pipeline.Sink
	n, calls int
	before   bool
}

var errCrash = errors.New("crash")

func (c *crashAt) Append(ctx context.Context, b *pipeline.Batch) (pipeline.Result, error) {
	c.calls++
	if c.calls == c.n && c.before {
		return pipeline.Result{}, errCrash
	}
	res, err := c.Sink.Append(ctx, b)
	if err == nil && c.calls == c.n {
		return res, errCrash
	}
	return res, err
}

// source is a data folder holding batches().
func source(t *testing.T) string {
	t.Helper()
	src := t.TempDir()
	ls, err := store.OpenLocal(src, local.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range batches() {
		if _, err := ls.Append(context.Background(), b); err != nil {
			t.Fatal(err)
		}
	}
	if err := ls.Close(); err != nil {
		t.Fatal(err)
	}
	return src
}

func export(t *testing.T, r store.Reader) []byte {
	t.Helper()
	var b bytes.Buffer
	err := r.Export(context.Background(), local.ScanOptions{}, func(s local.Stored) error {
		fmt.Fprintf(&b, "%s %d %s\n", s.Cluster, s.Received, s.Raw)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestResumeAfterCrashBetweenAppendAndCursor: a migration that stops
// after the destination stored a batch but before the cursor moved past
// it sends that batch again when run again, one that stops before the
// batch was stored sends it then, and the destination, either store,
// holds every event once, in the source's arrival order, with its cluster
// and received time.
func TestResumeAfterCrashBetweenAppendAndCursor(t *testing.T) {
	src := source(t)
	srcReader, err := store.OpenReader(context.Background(), "", src)
	if err != nil {
		t.Fatal(err)
	}
	want := export(t, srcReader)
	if strings.Count(string(want), "\n") != 600 {
		t.Fatalf("the source exports %d events, want 600", strings.Count(string(want), "\n"))
	}
	for _, tc := range []struct {
		kind   string
		at     int
		before bool
	}{
		{"clickhouse", 1, false}, {"clickhouse", 7, false}, {"clickhouse", 30, false},
		{"embedded", 1, false}, {"embedded", 7, false}, {"embedded", 30, false},
		{"embedded", 7, true}, {"embedded", 30, true},
	} {
		kind, at := tc.kind, tc.at
		t.Run(fmt.Sprintf("%s/crash at batch %d, before storing it %v", kind, at, tc.before), func(t *testing.T) {
			var dst store.Store
			if kind == "clickhouse" {
				cfg, err := clickhouse.ParseURL(strings.Replace(ch.URL(t), "http://", "clickhouse://", 1) + fmt.Sprintf("/kt_resume_%d", at))
				if err != nil {
					t.Fatal(err)
				}
				if err := clickhouse.Setup(context.Background(), cfg); err != nil {
					t.Fatal(err)
				}
				s, err := clickhouse.Open(context.Background(), cfg)
				if err != nil {
					t.Fatal(err)
				}
				dst = s
			} else {
				s, err := store.OpenLocal(t.TempDir(), local.Options{})
				if err != nil {
					t.Fatal(err)
				}
				dst = s
			}
			defer dst.Close()
			o := Options{Cursor: filepath.Join(t.TempDir(), "c"), To: kind, BatchSize: 1000}
			_, err := Run(context.Background(), Local{Dir: src}, &crashAt{Sink: dst, n: at, before: tc.before}, o)
			if !errors.Is(err, errCrash) {
				t.Fatalf("first run: %v; want the crash", err)
			}
			p, err := Run(context.Background(), Local{Dir: src}, dst, o)
			// Before the first batch there was no cursor to resume at.
			if err != nil || p.Resumed != (at > 1) || p.ThisRun != int64(600-20*(at-1)) {
				t.Fatalf("second run: %+v, %v; want it to begin at batch %d", p, err, at)
			}
			if kind == "embedded" && !tc.before && p.Duplicates != 20 {
				t.Errorf("the embedded store saw %d duplicates; want the 20 of the batch sent again", p.Duplicates)
			}
			if got := export(t, dst); !bytes.Equal(got, want) {
				t.Errorf("the destination exports %d events (%d bytes), want the source's %d bytes", strings.Count(string(got), "\n"), len(got), len(want))
			}
		})
	}
}

// TestCursorForAnotherMigration: a cursor file is used only for the pair
// of stores it was written for.
func TestCursorForAnotherMigration(t *testing.T) {
	src := source(t)
	dst, err := store.OpenLocal(t.TempDir(), local.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	o := Options{Cursor: filepath.Join(t.TempDir(), "c"), To: "here"}
	if _, err := Run(context.Background(), Local{Dir: src}, dst, o); err != nil {
		t.Fatal(err)
	}
	o.To = "elsewhere"
	if _, err := Run(context.Background(), Local{Dir: src}, dst, o); err == nil || !strings.Contains(err.Error(), "is for data folder") {
		t.Errorf("a cursor of another migration: %v; want a refusal", err)
	}
}

// failFlush is a Buffered destination whose first Flush fails without
// storing anything, as a ClickHouse that went away would; it counts the
// flushes.
type failFlush struct {
	*clickhouse.Bulk
	flushes int
}

func (f *failFlush) Flush(ctx context.Context) error {
	f.flushes++
	if f.flushes == 1 {
		return errCrash
	}
	return f.Bulk.Flush(ctx)
}

// TestBufferedMovesCursorAfterFlush: into a Buffered destination
// (ClickHouse through a Bulk), the 30 batches go in one insert, not one
// each, and the cursor moves only once that insert is stored: a failed
// flush leaves it at the start, and the next run sends every event again,
// each stored once. With a small FlushBytes, an insert is made whenever
// that many bytes wait, and the cursor follows each.
func TestBufferedMovesCursorAfterFlush(t *testing.T) {
	src := source(t)
	srcReader, err := store.OpenReader(context.Background(), "", src)
	if err != nil {
		t.Fatal(err)
	}
	want := export(t, srcReader)
	for _, tc := range []struct {
		name        string
		flushBytes  int
		wantFlushes int
	}{{"one insert", 0, 1}, {"inserts of 40 KiB", 40 << 10, 0}} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := clickhouse.ParseURL(strings.Replace(ch.URL(t), "http://", "clickhouse://", 1) + fmt.Sprintf("/kt_bulk_%d", tc.flushBytes))
			if err != nil {
				t.Fatal(err)
			}
			if err := clickhouse.Setup(context.Background(), cfg); err != nil {
				t.Fatal(err)
			}
			s, err := clickhouse.Open(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			o := Options{Cursor: filepath.Join(t.TempDir(), "c"), To: "clickhouse", BatchSize: 1000, FlushBytes: tc.flushBytes}
			dst := &failFlush{Bulk: s.Bulk()}
			if _, err := Run(context.Background(), Local{Dir: src}, dst, o); !errors.Is(err, errCrash) {
				t.Fatalf("first run: %v; want the failed flush", err)
			}
			p, err := Run(context.Background(), Local{Dir: src}, s.Bulk(), o)
			if err != nil || p.Resumed || p.ThisRun != 600 || p.Moved != 600 {
				t.Fatalf("second run: %+v, %v; want all 600 events sent again from the start", p, err)
			}
			if got := export(t, s); !bytes.Equal(got, want) {
				t.Fatalf("ClickHouse exports %d events (%d bytes), want the source's %d bytes", strings.Count(string(got), "\n"), len(got), len(want))
			}
			// Again from the start (another cursor), every flush working:
			// the inserts it takes.
			o2 := o
			o2.Cursor = filepath.Join(t.TempDir(), "c2")
			dst = &failFlush{Bulk: s.Bulk(), flushes: 1}
			p, err = Run(context.Background(), Local{Dir: src}, dst, o2)
			inserts := dst.flushes - 1
			if err != nil || p.Moved != 600 {
				t.Fatalf("run with every flush working: %+v, %v", p, err)
			}
			if tc.wantFlushes > 0 && inserts != tc.wantFlushes || tc.wantFlushes == 0 && inserts < 4 {
				t.Errorf("30 batches took %d inserts with FlushBytes %d; want %d (0: several)", inserts, tc.flushBytes, tc.wantFlushes)
			}
		})
	}
}
