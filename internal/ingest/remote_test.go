package ingest

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kubetrail/kubetrail/internal/audit"
	"github.com/kubetrail/kubetrail/internal/pipeline"
)

// TestRemoteSplitsWhatTheServerFindsTooLarge: a batch over the server's
// body limit is sent again in halves until it fits, so tail --server is
// not stuck retrying a batch the server can never take. Planted bug: no
// split (Append fails with the 413).
func TestRemoteSplitsWhatTheServerFindsTooLarge(t *testing.T) {
	// Room for about three events per body.
	srv, dir := newTestWebhook(t, WebhookConfig{MaxBodyBytes: int64(3*len(line("r-00")) + 10)})
	remote, err := NewRemote(RemoteConfig{URL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	var recs []audit.Record
	var want []string
	for i := range 20 {
		id := fmt.Sprintf("r-%02d", i)
		recs = append(recs, audit.Record{Raw: []byte(line(id))})
		want = append(want, id)
	}
	res, err := remote.Append(context.Background(), &pipeline.Batch{Cluster: "default", Records: recs})
	if err != nil || res.Stored != 20 {
		t.Fatalf("stored %d, err %v; want 20", res.Stored, err)
	}
	if got := strings.Join(storedIDs(t, dir), " "); got != strings.Join(want, " ") {
		t.Errorf("stored %q", got)
	}
	// Sent again: all duplicates, still split.
	if res, err := remote.Append(context.Background(), &pipeline.Batch{Cluster: "default", Records: recs}); err != nil || res.Duplicates != 20 {
		t.Errorf("again: %+v %v", res, err)
	}
	// One event over the limit cannot be split: it is returned as
	// rejected, with the server's answer, and the events around it are
	// stored (a tail must not be held up by it forever).
	big := audit.Record{Raw: []byte(strings.Replace(line("big"), "alice", strings.Repeat("a", 3000), 1))}
	mixed := []audit.Record{{Raw: []byte(line("m-0"))}, big, {Raw: []byte(line("m-2"))}}
	res, err = remote.Append(context.Background(), &pipeline.Batch{Cluster: "default", Records: mixed})
	if err != nil || res.Stored != 2 || len(res.Rejected) != 1 || res.Rejected[0].Index != 1 || !strings.Contains(res.Rejected[0].Reason, "413") {
		t.Errorf("one event over the limit among two: %+v %v; want 2 stored and index 1 rejected with the 413", res, err)
	}
}

// TestTailGoesOnPastARefusedEvent tails a file holding one event the
// server will never take (over its body limit) between good ones: every
// good event is stored, tail does not stop or hold up, and the refused
// one is logged by its auditID.
// Mutation it catches: tail retrying a refused batch forever (the old
// behaviour: nothing after the big event was ever stored).
func TestTailGoesOnPastARefusedEvent(t *testing.T) {
	srv, dir := newTestWebhook(t, WebhookConfig{MaxBodyBytes: 2000})
	remote, err := NewRemote(RemoteConfig{URL: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "audit.log")
	var b strings.Builder
	var want []string
	for i := range 10 {
		id := fmt.Sprintf("t-%02d", i)
		if i == 4 {
			b.WriteString(strings.Replace(line("huge"), "alice", strings.Repeat("a", 5000), 1) + "\n")
		}
		b.WriteString(line(id) + "\n")
		want = append(want, id)
	}
	os.WriteFile(path, []byte(b.String()), 0o600)
	var logs strings.Builder
	var mu sync.Mutex
	logger := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return logs.Write(p)
	}), nil))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Tail(ctx, remote, TailConfig{Path: path, StateDir: t.TempDir(), Poll: 10 * time.Millisecond, BatchEvents: 100, Logger: logger})
	}()
	// The refusal is logged once the sink answers the whole batch, which
	// may be after the good events are stored: wait for both.
	reported := func() bool {
		mu.Lock()
		defer mu.Unlock()
		return strings.Contains(logs.String(), "auditID=huge")
	}
	deadline := time.Now().Add(10 * time.Second)
	for (len(storedIDs(t, dir)) < len(want) || !reported()) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(storedIDs(t, dir), " "); got != strings.Join(want, " ") {
		t.Fatalf("stored %q, want every event but the refused one", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if !strings.Contains(logs.String(), "refused an event for good") || !strings.Contains(logs.String(), "auditID=huge") {
		t.Fatalf("the refused event is not reported: %s", logs.String())
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
