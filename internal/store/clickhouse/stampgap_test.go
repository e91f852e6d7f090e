package clickhouse

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kubetrail/kubetrail/internal/store/local"
)

// TestDelayedInsertReachesTheFollower: an insert that becomes visible
// long after it began (held by a slow server or proxy, or failed and
// retried a minute later) still reaches a follower, each event once,
// though the follower only looks FollowMargin back behind its cursor.
// The stamps come from a clock 100 times as fast as the wall's, so that
// the margin's 30 s pass in 0.3 s: one writer (a Bulk, as migrate
// uses) goes through a proxy that holds or fails its first insert for 1 s
// (100 s on that clock) while another writer stores a batch every 20 ms
// and a follower polls.
//
// Planted: Flush sending the body stamped at the first Append (the
// stamp kept across attempts) loses "failed" (0 of 5 events); inserts
// without insertTimeout lose "held" (0 of 5).
func TestDelayedInsertReachesTheFollower(t *testing.T) {
	f := func(name string, hold bool) {
		t.Helper()
		cfg, s := newDB(t, "kt_delayed_"+name)
		start := time.Now()
		fast := func() time.Time { return start.Add(100 * time.Since(start)) }
		s.now = fast
		pcfg := cfg
		pcfg.Endpoint = firstInsertProxy(t, ch.URL(t), hold, time.Second)
		w := Dial(pcfg)
		w.now = fast
		w.c.insertTimeout = 100 * time.Millisecond // 10 s on the fast clock
		t.Cleanup(func() { w.Close() })

		ctx := context.Background()
		var done atomic.Bool
		go func() {
			defer done.Store(true)
			b := w.Bulk()
			if _, err := b.Append(ctx, testBatch(t, 0, 5)); err != nil {
				t.Error(err)
				return
			}
			for b.Flush(ctx) != nil {
				time.Sleep(time.Second) // ClickHouse down for 100 s
			}
		}()
		fl := s.Follow(local.Selection{})
		seen := map[string]int{}
		after := 0
		for i := 1; after < 30; i++ {
			if done.Load() {
				after++
			}
			if _, err := s.Append(ctx, testBatch(t, i, 5)); err != nil {
				t.Fatal(err)
			}
			if err := fl.Poll(ctx, func(h *local.Hit) error { seen[h.Event.AuditID]++; return nil }); err != nil {
				t.Fatal(err)
			}
			time.Sleep(20 * time.Millisecond)
		}
		var missing, twice []string
		for _, id := range wantIDs(0, 1, 5) {
			switch seen[id] {
			case 0:
				missing = append(missing, id)
			case 1:
			default:
				twice = append(twice, id)
			}
		}
		if len(missing) > 0 || len(twice) > 0 {
			t.Errorf("%s: the follower never got %v and got %v more than once", name, missing, twice)
		}
		for id, n := range seen {
			if n != 1 {
				t.Errorf("%s: %s given %d times", name, id, n)
			}
		}
	}
	f("held", true)
	f("failed", false)
}

// firstInsertProxy is a proxy to the ClickHouse server at target. The
// first INSERT it receives is held for d and then forwarded if its
// client still waits (dropped if it gave up), when hold; otherwise the
// proxy fails every INSERT for d from the first. It returns the proxy's
// URL.
func firstInsertProxy(t *testing.T, target string, hold bool, d time.Duration) string {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(u)
	var mu sync.Mutex
	var first time.Time
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Query().Get("query"), "INSERT") {
			proxy.ServeHTTP(w, r)
			return
		}
		mu.Lock()
		isFirst := first.IsZero()
		if isFirst {
			first = time.Now()
		}
		since := time.Since(first)
		mu.Unlock()
		if !hold {
			if since < d {
				http.Error(w, "held down by the test", http.StatusServiceUnavailable)
				return
			}
			proxy.ServeHTTP(w, r)
			return
		}
		if !isFirst {
			proxy.ServeHTTP(w, r)
			return
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			t.Error(err)
			return
		}
		select {
		case <-time.After(d):
		case <-r.Context().Done():
			return // the client gave up: the insert is dropped
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}
