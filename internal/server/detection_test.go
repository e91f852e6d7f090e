package server

import (
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/kubetrail/kubetrail/internal/detector"
	"github.com/kubetrail/kubetrail/internal/store/local"
)

// TestDetectionMetrics: /metrics reads the detector's counters at each
// scrape, each under its own name.
func TestDetectionMetrics(t *testing.T) {
	db, err := local.Open(t.TempDir(), local.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	st := detector.Stats{Events: 1001, Replayed: 1002, Suppressed: 1003, CatchUps: 1004, Failures: 1005, LastReceived: 1_700_000_000_500_000}
	s, err := New(Config{Listen: "127.0.0.1:0", Detection: func() detector.Stats { return st }}, db, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()
	m := scrape(t, ts.URL)
	for _, want := range []string{
		"kubetrail_detect_events_total 1001", "kubetrail_detect_replayed_events_total 1002",
		"kubetrail_detect_suppressed_alerts_total 1003", "kubetrail_detect_catchups_total 1004",
		"kubetrail_detect_append_failures_total 1005", "kubetrail_detect_last_received_timestamp_seconds 1.7000000005e+09",
	} {
		if !strings.Contains(m, want+"\n") {
			t.Errorf("metrics lack %q", want)
		}
	}
	st.Events = 2001
	if m := scrape(t, ts.URL); !strings.Contains(m, "kubetrail_detect_events_total 2001\n") {
		t.Error("a second scrape does not read the counters again")
	}
}
