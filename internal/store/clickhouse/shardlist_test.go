package clickhouse

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestCollectorReadsTheShardsAgain: a collector whose store URL names a
// cluster reads the cluster's shards again every ShardListEvery, so that
// a shard added or removed takes rows without a restart (asked through a
// proxy that counts the statements looking for events_local).
//
// Planted: the list read once per run (as before): 1 reading for 2.
func TestCollectorReadsTheShardsAgain(t *testing.T) {
	cfg, _ := newDB(t, "kt_shard_list")
	target, err := url.Parse(ch.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	var lookups atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			t.Error(err)
			return
		}
		if strings.Contains(string(body), "'events_local'") {
			lookups.Add(1)
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		proxy.ServeHTTP(w, r)
	}))
	defer srv.Close()
	cfg.Endpoint = srv.URL
	cfg.Cluster = "kt_nowhere"
	s, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c := newCollector(t, s, CollectorOptions{ShardListEvery: 300 * time.Millisecond})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ship := func(batch int) {
		t.Helper()
		if _, err := c.Append(ctx, testBatch(t, batch, 10)); err != nil {
			t.Fatal(err)
		}
		if err := c.Drain(ctx); err != nil {
			t.Fatal(err)
		}
	}
	ship(0)
	ship(1) // within ShardListEvery: the list read before
	if n := lookups.Load(); n != 1 {
		t.Errorf("two inserts within ShardListEvery read the shards %d times, want once", n)
	}
	time.Sleep(400 * time.Millisecond)
	ship(2)
	if n := lookups.Load(); n != 2 {
		t.Errorf("an insert after ShardListEvery: the shards read %d times in all, want 2", n)
	}
	if got, want := auditIDs(t, s), wantIDs(0, 3, 10); !slices.Equal(got, want) {
		t.Errorf("stored %v, want %v", got, want)
	}
}
