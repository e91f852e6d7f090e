package server

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kubetrail/kubetrail/internal/alert"
	"github.com/kubetrail/kubetrail/internal/rules"
)

var alertT0 = time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)

// testAlerts are 10 alerts, one a minute from alertT0: rules r0..r2 in
// turn, severities info..critical in turn, every third from falco.
func testAlerts() []rules.Alert {
	var out []rules.Alert
	for i := range 10 {
		src := rules.SourceKubetrail
		if i%3 == 2 {
			src = rules.SourceFalco
		}
		out = append(out, rules.Alert{Rule: fmt.Sprintf("r%d", i%3), Severity: rules.Severity(i % 5), Source: src,
			AuditIDs: []string{fmt.Sprintf("id-%d", i)}, User: "alice", Message: fmt.Sprintf("thing %d", i),
			Time: alertT0.Add(time.Duration(i) * time.Minute), Namespace: "prod"})
	}
	return out
}

func openAlerts(t *testing.T) *alert.Store {
	t.Helper()
	st, _, err := alert.OpenStore(filepath.Join(t.TempDir(), alert.StoreDir), alert.StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// alertSeqs parses an answer of /api/v1/alerts into its seqs, checking
// each line is a stored alert with its stored time.
func alertSeqs(t *testing.T, body string) []uint64 {
	t.Helper()
	var out []uint64
	for _, l := range strings.Split(strings.TrimSpace(body), "\n") {
		if l == "" {
			continue
		}
		a, err := alert.ParseStoredJSON([]byte(l))
		if err != nil || a.Stored.IsZero() || !strings.Contains(l, `"stored":`) {
			t.Fatalf("not a stored alert (%v): %s", err, l)
		}
		out = append(out, a.Seq)
	}
	return out
}

// TestAlertsAPI: every filter, newest-first limits, paging with after
// (every alert once, in order), bad parameters, and the same
// authentication as the rest of the API.
// Planted bugs: severity kept as an exact match instead of a minimum
// ("severity=high" loses the critical ones); rule read with Get (only the
// first of two rules); after ignored (paging loops on the newest page).
func TestAlertsAPI(t *testing.T) {
	st := openAlerts(t)
	if _, err := st.Append(testAlerts()); err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{Listen: "127.0.0.1:0", Tokens: []string{"tok"}, Alerts: st}, openDB(t), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()
	get := func(q string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", ts.URL+"/api/v1/alerts?"+q, nil)
		req.Header.Set("Authorization", "Bearer tok")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode == 200 && resp.Header.Get("Content-Type") != "application/x-ndjson" {
			t.Errorf("%s: Content-Type %q", q, resp.Header.Get("Content-Type"))
		}
		return resp.StatusCode, string(b)
	}
	f := func(q, want string) {
		t.Helper()
		code, body := get(q)
		if code != 200 {
			t.Fatalf("%s: %d %s", q, code, body)
		}
		if got := fmt.Sprint(alertSeqs(t, body)); got != want {
			t.Errorf("%s: %s, want %s", q, got, want)
		}
	}
	f("", "[1 2 3 4 5 6 7 8 9 10]")
	f("limit=3", "[8 9 10]") // the newest, oldest first
	f("rule=r1", "[2 5 8]")
	f("rule=r1&rule=r2", "[2 3 5 6 8 9]")
	f("source=falco", "[3 6 9]")
	f("source=sigma", "[]")
	f("severity=high", "[4 5 9 10]")
	f("severity=high&rule=r0", "[4 10]")
	f("since=2026-11-23T10:03:00Z&until=2026-11-23T10:06:00Z", "[4 5 6 7]") // both bounds inclusive
	f("since=100000h&limit=2", "[9 10]")
	f("after=8", "[9 10]")
	f("after=0&limit=4", "[1 2 3 4]") // a page from the oldest
	var paged []uint64
	for after, pages := uint64(0), 0; pages < 10; pages++ {
		code, body := get(fmt.Sprintf("after=%d&limit=3&severity=low", after))
		if code != 200 {
			t.Fatalf("%d %s", code, body)
		}
		page := alertSeqs(t, body)
		paged = append(paged, page...)
		if len(page) < 3 {
			break
		}
		after = page[len(page)-1]
	}
	if fmt.Sprint(paged) != "[2 3 4 5 7 8 9 10]" {
		t.Errorf("paging by 3 from after=0 gave %v", paged)
	}

	bad := func(q, want string) {
		t.Helper()
		code, body := get(q)
		var e apiError
		if code != 400 || json.Unmarshal([]byte(body), &e) != nil || !strings.Contains(e.Error, want) {
			t.Errorf("%s: %d %s; want 400 saying %q", q, code, body, want)
		}
	}
	bad("severity=urgent", `severity "urgent": want one of info, low`)
	bad("source=splunk", `want kubetrail, sigma or falco`)
	bad("limit=0", "want a number from 1 to")
	bad("after=-1", "want an alert's seq")
	bad("since=yesterday", `since "yesterday"`)

	resp, err := http.Get(ts.URL + "/api/v1/alerts")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Errorf("without a token: %d, want 401", resp.StatusCode)
	}
}

// TestAlertsAPIWithoutDetection: no alert store is a 404 whose JSON error
// says detection is off (not an empty list, which would read as "no
// attack"), and /metrics has no alert series.
func TestAlertsAPIWithoutDetection(t *testing.T) {
	s, err := New(Config{Listen: "127.0.0.1:0"}, openDB(t), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()
	resp, err := http.Get(ts.URL + "/api/v1/alerts")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var e apiError
	if resp.StatusCode != 404 || json.Unmarshal(b, &e) != nil || !strings.Contains(e.Error, "detection is off") {
		t.Errorf("%d %s; want 404 saying detection is off", resp.StatusCode, b)
	}
	if m := scrape(t, ts.URL); strings.Contains(m, "kubetrail_alert") {
		t.Errorf("metrics hold alert series without an alert store:\n%s", m)
	}
}

// TestAlertsAPIFollow: follow=1 sends the listed alerts, then each new
// matching alert as it is stored (and not the others), and ends, saying
// why, as soon as the server shuts down.
// Planted bugs: the loop not waiting on the store's change channel (no
// new alert arrives); not watching s.stopping (Run waits for its 30 s
// shutdown timeout; the test's 10 s bound fails).
func TestAlertsAPIFollow(t *testing.T) {
	st := openAlerts(t)
	if _, err := st.Append(testAlerts()[:2]); err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{Listen: "127.0.0.1:0", Alerts: st}, openDB(t), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr := make(chan string, 1)
	ran := make(chan error, 1)
	go func() { ran <- s.Run(ctx, func(a string) { addr <- a }) }()
	resp, err := http.Get("http://" + <-addr + "/api/v1/alerts?follow=1&rule=r0&rule=r1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	next := func() string {
		t.Helper()
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("the stream ended")
			}
			return l
		case <-time.After(5 * time.Second):
			t.Fatal("no line within 5 s")
		}
		return ""
	}
	for want := uint64(1); want <= 2; want++ {
		if a, err := alert.ParseStoredJSON([]byte(next())); err != nil || a.Seq != want {
			t.Fatalf("listed alert %d: %+v %v", want, a, err)
		}
	}
	// r2 (seq 3) is filtered out; r0 (seq 4) comes live.
	if _, err := st.Append(testAlerts()[2:4]); err != nil {
		t.Fatal(err)
	}
	if a, err := alert.ParseStoredJSON([]byte(next())); err != nil || a.Seq != 4 || a.Rule != "r0" {
		t.Fatalf("live alert: %+v %v; want seq 4 (r0)", a, err)
	}
	began := time.Now()
	cancel()
	select {
	case err := <-ran:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("shutdown is still waiting for the alert follower after 10 s")
	}
	if l := next(); !strings.Contains(l, "shutting down") {
		t.Errorf("last line %q; want the stream to say the server is shutting down", l)
	}
	if time.Since(began) > 5*time.Second {
		t.Errorf("shutdown took %v with a follower", time.Since(began))
	}
}

func scrape(t *testing.T, base string) string {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("/metrics: %d %s", resp.StatusCode, b)
	}
	return string(b)
}

// flakyOutput fails its first send, then takes everything.
type flakyOutput struct {
	mu    sync.Mutex
	calls int
	got   int
}

func (o *flakyOutput) Send(_ context.Context, batch []alert.Alert) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.calls++
	if o.calls == 1 {
		return errors.New("peer down")
	}
	o.got += len(batch)
	return nil
}

func (o *flakyOutput) Close() error { return nil }

// TestAlertMetrics: per-rule counters follow the store's appends, and each
// output's counters are its dispatcher's, labelled by its printable name
// (no path or token), read at scrape time.
// Planted bugs: the collector reporting the stored counts under the wrong
// label order (rule and source swapped); reading Failures for Throttled;
// labelling outputs by the full URL (the token leaks).
func TestAlertMetrics(t *testing.T) {
	st := openAlerts(t)
	reg := alert.NewRegistry()
	out := &flakyOutput{}
	reg.Register("test+https", func(*alert.Target) (alert.Output, error) { return out, nil })
	spec, err := reg.Open("test+https://hooks.example/services/SECRET-TOKEN#throttle=1h&group_by=user")
	if err != nil {
		t.Fatal(err)
	}
	spec.Dispatch.MinBackoff = time.Millisecond
	d, err := alert.OpenDispatcher(st, spec.Output, nil, filepath.Join(t.TempDir(), alert.CursorDir), spec.ID, spec.Dispatch)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{Listen: "127.0.0.1:0", Alerts: st, Dispatchers: []*alert.Dispatcher{d}}, openDB(t), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()
	as := testAlerts()
	if _, err := st.Append(as[:6]); err != nil { // r0 info, r1 low, r2 medium (falco), r0 high, r1 critical, r2 info (falco)
		t.Fatal(err)
	}
	m := scrape(t, ts.URL)
	for _, want := range []string{
		`kubetrail_alerts_stored_total{rule="r0",severity="high",source="kubetrail"} 1`,
		`kubetrail_alerts_stored_total{rule="r2",severity="info",source="falco"} 1`,
		`kubetrail_alerts_last_seq 6`,
		`kubetrail_alert_output_alerts_total{output="test+https://hooks.example/..."} 0`,
		`kubetrail_alert_output_cursor{output="test+https://hooks.example/..."} 0`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if strings.Contains(m, "SECRET") {
		t.Errorf("metrics leak the output's path:\n%s", m)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	// Grouped by rule and user with a 1 h window: the first of each rule
	// is sent (3 notifications), the other 3 are throttled; the first
	// send fails once.
	deadline := time.Now().Add(10 * time.Second)
	for d.Stats().Notifications < 3 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	if _, err := st.Append(as[:1]); err != nil { // r0 info again, after the dispatcher stopped
		t.Fatal(err)
	}
	m = scrape(t, ts.URL)
	const o = `{output="test+https://hooks.example/..."}`
	for _, want := range []string{
		`kubetrail_alerts_stored_total{rule="r0",severity="info",source="kubetrail"} 2`,
		`kubetrail_alerts_last_seq 7`,
		`kubetrail_alert_output_notifications_total` + o + ` 3`,
		`kubetrail_alert_output_alerts_total` + o + ` 3`,
		`kubetrail_alert_output_throttled_total` + o + ` 3`,
		`kubetrail_alert_output_send_failures_total` + o + ` 1`,
		`kubetrail_alert_output_redelivered_total` + o + ` 0`,
		`kubetrail_alert_output_replayed_total` + o + ` 0`,
		`kubetrail_alert_output_cursor` + o + ` 6`,
		`kubetrail_alert_output_failing` + o + ` 0`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if t.Failed() {
		t.Logf("metrics:\n%s", m)
	}
}
