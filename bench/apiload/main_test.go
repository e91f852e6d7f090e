package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// corpus writes n audit events, one a line.
func corpus(t *testing.T, n int) string {
	t.Helper()
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, `{"kind":"Event","auditID":"id-%d","stageTimestamp":"2026-11-01T00:00:00.000000Z"}`+"\n", i)
	}
	path := filepath.Join(t.TempDir(), "audit.log")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// slowWebhook answers each batch after d, as serve does after its fsync,
// and records how many batches it held at once.
func slowWebhook(d time.Duration, most *atomic.Int64) *httptest.Server {
	var now atomic.Int64
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := now.Add(1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		time.Sleep(d)
		now.Add(-1)
	}))
}

// TestIngestSendersOverlap: with a webhook that takes 20 ms per batch,
// four senders hold four batches at once. (The rate they reach is not
// asserted: on a loaded machine, under -race, it fell below one sender's
// 20k events/s with the senders overlapping.) Mutation it catches: senders
// that wait for one another (one at a time: never two batches held at
// once).
func TestIngestSendersOverlap(t *testing.T) {
	var most atomic.Int64
	srv := slowWebhook(20*time.Millisecond, &most)
	defer srv.Close()
	var sent atomic.Int64
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := ingest(ctx, srv.URL, corpus(t, 3000), 1_000_000, 4, &sent); err != nil {
		t.Fatal(err)
	}
	if most.Load() != 4 || sent.Load() == 0 {
		t.Fatalf("%d batches held at once, %d events sent: want 4 at once", most.Load(), sent.Load())
	}
}

// TestIngestPacesJointly: four senders together keep to the asked rate
// (4000 events/s: ten batches a second), not four times it.
func TestIngestPacesJointly(t *testing.T) {
	var most atomic.Int64
	srv := slowWebhook(time.Millisecond, &most)
	defer srv.Close()
	var sent atomic.Int64
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	if err := ingest(ctx, srv.URL, corpus(t, 3000), 4000, 4, &sent); err != nil {
		t.Fatal(err)
	}
	// Batches leave at 0, 0.1, ..., 1.4 s: 15 of them.
	if n := sent.Load(); n < 13*ingestBatch || n > 16*ingestBatch {
		t.Fatalf("%d events sent in 1.5 s at 4000 events/s", n)
	}
}

// TestIngestReportsAFailingWebhook: a webhook that refuses ends the
// ingest with its answer, not a hang.
func TestIngestReportsAFailingWebhook(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no", http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	var sent atomic.Int64
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := ingest(ctx, srv.URL, corpus(t, 3000), 1_000_000, 4, &sent)
	if err == nil || !strings.Contains(err.Error(), "503") {
		t.Fatalf("err %v, want the webhook's 503", err)
	}
}
