package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestWithProbe: the probe becomes the batch's last item and the body stays
// an EventList.
func TestWithProbe(t *testing.T) {
	body := []byte(`{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":[{"auditID":"a"},{"auditID":"b"}]}`)
	out := withProbe(body, probeEvent("bench-probe-000001", time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)))
	var list struct {
		Kind  string
		Items []struct {
			AuditID        string `json:"auditID"`
			StageTimestamp string `json:"stageTimestamp"`
			ObjectRef      struct{ Resource string }
		}
	}
	if err := json.Unmarshal(out, &list); err != nil {
		t.Fatalf("%s: %v", out, err)
	}
	if list.Kind != "EventList" || len(list.Items) != 3 || list.Items[2].AuditID != "bench-probe-000001" ||
		list.Items[2].StageTimestamp != "2026-12-01T10:00:00.000000Z" || list.Items[2].ObjectRef.Resource != "selfsubjectrulesreviews" {
		t.Errorf("%s", out)
	}
}

// TestProbeLatencies: latency is alert minus send, per probe, sorted; a
// probe without an alert is an error naming it.
func TestProbeLatencies(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	sent := map[string]time.Time{"p1": t0, "p2": t0.Add(time.Second)}
	seen := map[string]time.Time{"p1": t0.Add(30 * time.Millisecond), "p2": t0.Add(time.Second + 5*time.Millisecond), "bench-probe-marker": t0}
	got, err := probeLatencies(sent, seen)
	if err != nil || len(got) != 2 || got[0] != 5 || got[1] != 30 {
		t.Errorf("got %v, %v; want [5 30]", got, err)
	}
	delete(seen, "p2")
	if _, err := probeLatencies(sent, seen); err == nil || !strings.Contains(err.Error(), "p2") {
		t.Errorf("a probe without an alert: %v", err)
	}
}

// TestProbeEvery: about probes batches carry one, at least every batch.
func TestProbeEvery(t *testing.T) {
	for _, c := range []struct{ batches, probes, want int }{{500, 500, 1}, {13, 500, 1}, {5000, 500, 10}, {5000, 0, 0}, {0, 500, 0}} {
		if got := probeEvery(c.batches, c.probes); got != c.want {
			t.Errorf("probeEvery(%d, %d) = %d, want %d", c.batches, c.probes, got, c.want)
		}
	}
}
