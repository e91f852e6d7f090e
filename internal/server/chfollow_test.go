package server

import (
	"bufio"
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kubetrail/kubetrail/internal/alert"
	"github.com/kubetrail/kubetrail/internal/audit"
	"github.com/kubetrail/kubetrail/internal/pipeline"
	"github.com/kubetrail/kubetrail/internal/rules"
	"github.com/kubetrail/kubetrail/internal/store/clickhouse"
)

// appendEvents stores events (JSON) as one batch received at recv.
func appendEvents(t *testing.T, st *clickhouse.Store, recv time.Time, events ...string) {
	t.Helper()
	var recs []audit.Record
	audit.NewDecoder(audit.Limits{}).DecodeLines("batch", []byte(strings.Join(events, "\n")), func(r audit.Record) { recs = append(recs, r) },
		func(p audit.Problem) { t.Fatalf("batch: %v", p) })
	if _, err := st.Append(context.Background(), &pipeline.Batch{Cluster: "prod", Received: recv, Records: recs}); err != nil {
		t.Fatal(err)
	}
}

// streamLines opens a streaming GET and gives its lines on a channel,
// closed when the answer ends.
func streamLines(t *testing.T, url string) <-chan string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	req.Header.Set("Authorization", "Bearer all")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d", url, resp.StatusCode)
	}
	lines := make(chan string, 100)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	t.Cleanup(func() { cancel(); resp.Body.Close() })
	return lines
}

// next returns the stream's next line, "" when none comes within d.
func next(lines <-chan string, d time.Duration) string {
	select {
	case l := <-lines:
		return l
	case <-time.After(d):
		return ""
	}
}

// TestFollowOnClickHouse: GET /api/v1/events?follow=1 on a server on
// ClickHouse gives the selected events, then each selected event stored
// later once: not the snapshot's events again (the tail starts
// FollowMargin before the snapshot), not a retried batch's copies, not
// an event the filter leaves out.
//
// Planted: keeping only the snapshot's events received in the last
// minute as sent (the embedded store's rule, api.go) sends a1 and a2
// again: the test fails on "a1".
func TestFollowOnClickHouse(t *testing.T) {
	st := clickhouseStore(t, nil)
	old := time.Now().Add(-time.Hour)
	appendEvents(t, st, old, apiEvent("a1", "alice"), apiEvent("a2", "alice"))
	ts := httptest.NewServer(clickhouseServer(t, st, t.TempDir()))
	t.Cleanup(ts.Close)
	lines := streamLines(t, ts.URL+"/api/v1/events?follow=1&filter=user%3Dalice")
	for _, id := range []string{"a1", "a2"} {
		if l := next(lines, 10*time.Second); !strings.Contains(l, `"auditID":"`+id+`"`) {
			t.Fatalf("snapshot: got %q, want event %s", l, id)
		}
	}
	appendEvents(t, st, old, apiEvent("b1", "alice"), apiEvent("c1", "bob"))
	appendEvents(t, st, old, apiEvent("a1", "alice"), apiEvent("a2", "alice"), apiEvent("b1", "alice")) // a retried batch
	if l := next(lines, 10*time.Second); !strings.Contains(l, `"auditID":"b1"`) {
		t.Fatalf("live: got %q, want event b1", l)
	}
	// Two more polls bring nothing.
	if l := next(lines, 2*storePollEvery+500*time.Millisecond); l != "" {
		t.Fatalf("live: got %q, want nothing more", l)
	}
}

// TestAlertsOnClickHouse: a server on ClickHouse lists the alerts that
// detect --follow --store keeps in its data folder, scoped and filtered
// as on the embedded store, and follows them; without an alert store
// there it answers 404 saying where alerts come from.
//
// Planted: answering 200 with nothing when the folder has no alert store
// fails the first check; a follow that never reads the folder again
// fails the last.
func TestAlertsOnClickHouse(t *testing.T) {
	dir := t.TempDir()
	ts := httptest.NewServer(clickhouseServer(t, clickhouseStore(t, nil), dir))
	t.Cleanup(ts.Close)
	code, body := getWith(t, "all", ts.URL+"/api/v1/alerts")
	if code != 404 || !strings.Contains(string(body), "detect --follow --store") || !strings.Contains(string(body), `"error"`) {
		t.Fatalf("no alert store: %d %s; want 404 naming detect --follow --store", code, body)
	}
	// The detector's store, open beside the server as detect --follow
	// keeps it.
	as, _, err := alert.OpenStore(filepath.Join(dir, alert.StoreDir), alert.StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer as.Close()
	if _, err := as.Append(testAlerts()); err != nil {
		t.Fatal(err)
	}
	code, body = getWith(t, "all", ts.URL+"/api/v1/alerts")
	if seqs := alertSeqs(t, string(body)); code != 200 || len(seqs) != 10 {
		t.Fatalf("alerts: %d, %d alerts; want 10\n%s", code, len(seqs), body)
	}
	code, body = getWith(t, "all", ts.URL+"/api/v1/alerts?rule=r1")
	if seqs := alertSeqs(t, string(body)); code != 200 || !slices.Equal(seqs, []uint64{2, 5, 8}) {
		t.Fatalf("alerts of rule r1: %d, %v; want seqs 2, 5, 8", code, seqs)
	}
	code, body = getWith(t, "prod-production", ts.URL+"/api/v1/alerts")
	if seqs := alertSeqs(t, string(body)); code != 200 || len(seqs) != 0 {
		t.Fatalf("alerts of namespace prod for a viewer of production: %d, %v; want none", code, seqs)
	}
	lines := streamLines(t, ts.URL+"/api/v1/alerts?follow=1&rule=r2")
	for range 3 {
		if l := next(lines, 10*time.Second); !strings.Contains(l, `"rule":"r2"`) {
			t.Fatalf("follow: got %q, want an alert of r2", l)
		}
	}
	late := []rules.Alert{
		{Rule: "r1", Severity: rules.High, Source: rules.SourceKubetrail, AuditIDs: []string{"late-1"}, User: "bob", Message: "late 1", Time: time.Now(), Namespace: "prod"},
		{Rule: "r2", Severity: rules.High, Source: rules.SourceKubetrail, AuditIDs: []string{"late-2"}, User: "bob", Message: "late 2", Time: time.Now(), Namespace: "prod"},
	}
	if _, err := as.Append(late); err != nil {
		t.Fatal(err)
	}
	if l := next(lines, 10*time.Second); !strings.Contains(l, `"message":"late 2"`) {
		t.Fatalf("follow: got %q, want the new alert of r2", l)
	}
	if l := next(lines, 2*alertsDirPollEvery+500*time.Millisecond); l != "" {
		t.Fatalf("follow: got %q, want nothing more", l)
	}
}
