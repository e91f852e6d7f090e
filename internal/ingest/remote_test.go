package ingest

import (
	"context"
	"fmt"
	"strings"
	"testing"

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
	// One event over the limit cannot be split: the error says so.
	big := audit.Record{Raw: []byte(strings.Replace(line("big"), "alice", strings.Repeat("a", 3000), 1))}
	if _, err := remote.Append(context.Background(), &pipeline.Batch{Records: []audit.Record{big}}); err == nil || !strings.Contains(err.Error(), "413") {
		t.Errorf("one event over the limit: %v", err)
	}
}
