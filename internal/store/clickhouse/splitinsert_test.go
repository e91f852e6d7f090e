package clickhouse

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kubetrail/kubetrail/internal/store/local"
)

// TestCollectorSplitsAnInsertThatTimesOut: a server too slow for a
// large insert to end within the insert timeout, but quick with small
// ones, still gets every row of a collector's backlog: the collector
// sends a batch whose insert timed out again in halves until the inserts
// fit, instead of retrying the whole batch forever (nothing shipped, the
// spool filling). The store counts and gives each event once, in order
// (a small insert the server wrote after its client gave up is a copy,
// counted once), and a follower on a clock 100 times the wall's (the
// 200 ms timeout is 20 s on it, within FollowMargin) gets each once.
//
// Planted: splitAfterTimeout doing nothing (the whole batch retried):
// Drain gives up at its deadline with nothing shipped.
func TestCollectorSplitsAnInsertThatTimesOut(t *testing.T) {
	const batches, per = 8, 10
	cfg, s := newDB(t, "kt_split")
	start := time.Now()
	fast := func() time.Time { return start.Add(100 * time.Since(start)) }
	s.now = fast
	rows, _ := appendRows(nil, testBatch(t, 0, per))
	maxBody := int64(len(rows)) // about one batch; the backlog is 8
	pcfg := cfg
	pcfg.Endpoint = slowLargeInsertProxy(t, ch.URL(t), maxBody)
	w := Dial(pcfg)
	w.now = fast
	w.c.insertTimeout = 200 * time.Millisecond
	t.Cleanup(func() { w.Close() })
	c := newCollector(t, w, CollectorOptions{Backoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond})

	ctx := context.Background()
	for b := range batches {
		if _, err := c.Append(ctx, testBatch(t, b, per)); err != nil {
			t.Fatal(err)
		}
	}
	fl := s.Follow(local.Selection{})
	seen := map[string]int{}
	poll := func() {
		t.Helper()
		if err := fl.Poll(ctx, func(h *local.Hit) error { seen[h.Event.AuditID]++; return nil }); err != nil {
			t.Fatal(err)
		}
	}
	var drained atomic.Pointer[error]
	go func() {
		dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		err := c.Drain(dctx)
		drained.Store(&err)
	}()
	for drained.Load() == nil {
		poll()
		time.Sleep(20 * time.Millisecond)
	}
	if err := *drained.Load(); err != nil {
		t.Fatalf("drain through a server slow with large inserts: %v (shipped %d of %d)", err, c.Stats().Shipped, batches*per)
	}
	time.Sleep(50 * time.Millisecond)
	poll()

	if n, err := s.Count(ctx, local.Selection{}); err != nil || n != batches*per {
		t.Errorf("the store counts %d events, %v; want %d", n, err, batches*per)
	}
	if got, want := auditIDs(t, s), wantIDs(0, batches, per); !slices.Equal(got, want) {
		t.Errorf("the store holds %d events, want the %d appended, in order (first difference at %d)", len(got), len(want), firstDiff(got, want))
	}
	for _, id := range wantIDs(0, batches, per) {
		if seen[id] != 1 {
			t.Errorf("the follower got %s %d times; want once", id, seen[id])
		}
	}
	if len(seen) != batches*per {
		t.Errorf("the follower got %d events; want %d", len(seen), batches*per)
	}
	if c.Stats().Failures == 0 {
		t.Error("no insert timed out: the test did not hold the large ones")
	}
}

// slowLargeInsertProxy is a proxy to the ClickHouse server at target
// that forwards an INSERT whose body is at most maxBody bytes and holds
// a larger one until its client gives up, then drops it (a server too
// slow for it). It returns the proxy's URL.
func slowLargeInsertProxy(t *testing.T, target string, maxBody int64) string {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Query().Get("query"), "INSERT") {
			proxy.ServeHTTP(w, r)
			return
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return // the client gave up while sending
		}
		if int64(len(body)) > maxBody {
			<-r.Context().Done()
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestCollectorSaysWhichRowTimesOutAlone: a server too slow for even one
// row gets inserts halved down to that row, which is then retried with
// backoff and an error line naming its segment, not halved further.
//
// Planted: splitAfterTimeout without its single-row case (it halves on
// to a limit of 0, which sends the whole batch again, and never says
// so): no such line.
func TestCollectorSaysWhichRowTimesOutAlone(t *testing.T) {
	cfg, _ := newDB(t, "kt_split_row")
	pcfg := cfg
	pcfg.Endpoint = slowLargeInsertProxy(t, ch.URL(t), 0)
	w := Dial(pcfg)
	w.c.insertTimeout = 50 * time.Millisecond
	t.Cleanup(func() { w.Close() })
	var logs syncBuffer
	c := newCollector(t, w, CollectorOptions{Backoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	ctx := context.Background()
	if _, err := c.Append(ctx, testBatch(t, 0, 3)); err != nil {
		t.Fatal(err)
	}
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := c.Drain(dctx); err == nil {
		t.Fatal("drain into a server too slow for one row succeeded")
	}
	if got := logs.String(); !strings.Contains(got, "level=ERROR msg=\"an insert of a single row took longer") || !strings.Contains(got, "segment=") {
		t.Errorf("no error line naming the row that times out alone; logs:\n%s", got)
	}
	if c.split.limit < 1 {
		t.Errorf("split limit %d; want the single row's insert kept at 1 or more", c.split.limit)
	}
}

// syncBuffer is a bytes.Buffer safe for a logger and a test to share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
