package main

import (
	"math"
	"strings"
	"testing"
)

// TestPercentile: nearest rank, the smallest value with at least p% of
// the values at or below it.
func TestPercentile(t *testing.T) {
	seq := func(n int) []float64 {
		v := make([]float64, n)
		for i := range v {
			v[i] = float64(i + 1)
		}
		return v
	}
	f := func(vals []float64, p, want float64) {
		t.Helper()
		if got := percentile(vals, p); got != want {
			t.Errorf("percentile(%d values, %g) = %g, want %g", len(vals), p, got, want)
		}
	}
	f(seq(1), 50, 1)
	f(seq(1), 99, 1)
	f(seq(2), 50, 1)
	f(seq(2), 99, 2)
	f(seq(10), 50, 5)
	f(seq(10), 99, 10)
	f(seq(100), 50, 50)
	f(seq(100), 99, 99)
	f(seq(100), 100, 100)
	f(seq(200), 99, 198)
	f(seq(500), 99, 495)
	f(seq(499), 99, 495) // ceil(494.01) = 495
	f(seq(1000), 1, 10)
	f([]float64{3, 7, 7, 9, 400}, 50, 7)
	f([]float64{3, 7, 7, 9, 400}, 99, 400)
	if !math.IsNaN(percentile(nil, 50)) {
		t.Error("no values: want NaN")
	}
}

// TestAlertKeys: alert lines compare by rule, audit IDs and time, whatever
// else they carry (seq, count) and however the time is written; a line
// that is not an alert is an error.
func TestAlertKeys(t *testing.T) {
	file := `{"rule":"A","auditIDs":["x","y"],"time":"2026-11-01T10:00:00.5Z","seq":2,"count":1}
{"rule":"B","auditIDs":["z"],"time":"2026-11-01T10:00:01Z","seq":3}
`
	det := `{"rule":"B","auditIDs":["z"],"time":"2026-11-01T11:00:01+01:00"}
{"rule":"A","auditIDs":["x","y"],"time":"2026-11-01T10:00:00.500000Z"}
`
	a, err := alertKeys(file)
	if err != nil {
		t.Fatal(err)
	}
	b, err := alertKeys(det)
	if err != nil {
		t.Fatal(err)
	}
	if err := sameLines("file", a, "detect", b); err != nil {
		t.Errorf("the same alerts: %v", err)
	}
	other := strings.Replace(det, `["x","y"]`, `["x"]`, 1)
	c, _ := alertKeys(other)
	if err := sameLines("file", a, "detect", c); err == nil {
		t.Error("an alert about other events was not reported")
	}
	d, _ := alertKeys(det + `{"rule":"B","auditIDs":["z"],"time":"2026-11-01T10:00:01Z"}` + "\n")
	if err := sameLines("file", a, "detect", d); err == nil || !strings.Contains(err.Error(), "2 lines, detect 3") {
		t.Errorf("an alert stored twice: %v", err)
	}
	if _, err := alertKeys("not json\n"); err == nil {
		t.Error("a line that is not JSON was accepted")
	}
	if _, err := alertKeys(`{"rule":"A","time":"yesterday"}`); err == nil {
		t.Error("a time that is not RFC 3339 was accepted")
	}
}

// TestProbeBatches: about probesPerRun batches carry a probe, every batch
// when there are fewer.
func TestProbeBatches(t *testing.T) {
	f := func(events, want int) {
		t.Helper()
		if got := probeBatchEvery(events); got != want {
			t.Errorf("probeBatchEvery(%d) = %d, want %d", events, got, want)
		}
	}
	f(5000, 1)
	f(200_000, 1)    // 500 batches
	f(2_000_000, 10) // 5000 batches
	f(2_000_001, 10)
	f(400_400, 2) // 1001 batches
}
