package server

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

func apiEvent(id, user string) string {
	return fmt.Sprintf(`{"level":"Metadata","auditID":"%s","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/production/secrets/important","verb":"delete","user":{"username":"%s"},"sourceIPs":["10.0.0.1"],"objectRef":{"resource":"secrets","namespace":"production","name":"important","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"2026-11-23T10:00:00.000001Z","stageTimestamp":"2026-11-23T10:00:00.%06dZ"}`, id, user, len(id))
}

func ingestEvents(t *testing.T, base string, items ...string) {
	t.Helper()
	body := `{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[` + strings.Join(items, ",") + `]}`
	resp, err := http.Post(base+"/ingest/webhook", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("ingest: %d", resp.StatusCode)
	}
}

func auditIDs(t *testing.T, lines []string) []string {
	var ids []string
	for _, l := range lines {
		var ev struct {
			Kind    string `json:"kind"`
			AuditID string `json:"auditID"`
		}
		if err := json.Unmarshal([]byte(l), &ev); err != nil || ev.Kind != "Event" {
			t.Fatalf("not a stored event: %v %s", err, l)
		}
		ids = append(ids, ev.AuditID)
	}
	return ids
}

func TestEventsAPI(t *testing.T) {
	s, err := New(Config{Listen: "127.0.0.1:0"}, openDB(t), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()
	ingestEvents(t, ts.URL, apiEvent("a1", "alice"), apiEvent("b1", "bob"), apiEvent("a22", "alice"))

	get := func(q string) (int, string) {
		resp, err := http.Get(ts.URL + "/api/v1/events?" + q)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, body := get("filter=" + url.QueryEscape("user=alice") + "&sort=-time")
	if code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	if ids := auditIDs(t, strings.Split(strings.TrimSpace(body), "\n")); strings.Join(ids, ",") != "a22,a1" {
		t.Errorf("user=alice newest first: %v", ids)
	}
	code, body = get("filter=" + url.QueryEscape("usr=alice"))
	if code != 400 || !strings.Contains(body, `"column":1`) || !strings.Contains(body, "did you mean") {
		t.Errorf("bad filter: %d %s", code, body)
	}
	code, body = get("envelope=1&limit=1")
	if code != 200 || !strings.Contains(body, `"cluster":"default"`) || strings.Count(body, "\n") != 1 {
		t.Errorf("envelope: %d %s", code, body)
	}

	// Follow: the snapshot, then live events that match, each once.
	resp, err := http.Get(ts.URL + "/api/v1/events?follow=1&filter=" + url.QueryEscape("user=alice"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	read := func(n int) []string {
		var out []string
		for len(out) < n {
			select {
			case l := <-lines:
				out = append(out, l)
			case <-time.After(5 * time.Second):
				t.Fatalf("follow: got %d lines, want %d", len(out), n)
			}
		}
		return out
	}
	if ids := auditIDs(t, read(2)); strings.Join(ids, ",") != "a1,a22" {
		t.Errorf("snapshot: %v", ids)
	}
	ingestEvents(t, ts.URL, apiEvent("b333", "bob"), apiEvent("a4444", "alice"), apiEvent("a1", "alice"))
	if ids := auditIDs(t, read(1)); ids[0] != "a4444" {
		t.Errorf("live: %v", ids)
	}
	select {
	case l := <-lines:
		t.Errorf("unexpected line: %s", l)
	case <-time.After(200 * time.Millisecond):
	}

	// Stats.
	resp2, err := http.Get(ts.URL + "/api/v1/stats?by=user")
	if err != nil {
		t.Fatal(err)
	}
	var st StatsAnswer
	json.NewDecoder(resp2.Body).Decode(&st)
	resp2.Body.Close()
	if st.Total != 5 || len(st.Groups) != 2 || st.Groups[0].Key["user"] != "alice" || st.Groups[0].Count != 3 {
		t.Errorf("stats: %+v", st)
	}
}
