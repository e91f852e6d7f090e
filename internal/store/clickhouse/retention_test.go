package clickhouse

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/kubetrail/kubetrail/internal/audit"
	"github.com/kubetrail/kubetrail/internal/pipeline"
	"github.com/kubetrail/kubetrail/internal/store/local"
)

// dayBatch is n events at 12:00 UTC on day.
func dayBatch(t *testing.T, day string, n int) *pipeline.Batch {
	t.Helper()
	var lines []byte
	for i := range n {
		ts := day + "T12:00:00." + fmt.Sprintf("%06d", i) + "Z"
		lines = append(lines, fmt.Sprintf(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"%s-%d","stage":"ResponseComplete","requestURI":"/api","verb":"get","user":{"username":"u"},"requestReceivedTimestamp":%q,"stageTimestamp":%q}`+"\n", day, i, ts, ts)...)
	}
	var recs []audit.Record
	audit.NewDecoder(audit.Limits{}).DecodeLines("day", lines, func(r audit.Record) { recs = append(recs, r) },
		func(p audit.Problem) { t.Fatalf("%v", p) })
	return &pipeline.Batch{Cluster: "c", Received: time.Now(), Records: recs}
}

// TestRetentionDropsWholeDays: with 48 hours of retention at
// 2026-11-05T12:00Z the days that ended before 2026-11-03T12:00Z go
// (11-01, 11-02), and 11-03, which holds nothing that old only in part,
// stays with 11-04; enforcing again drops nothing.
func TestRetentionDropsWholeDays(t *testing.T) {
	_, s := newDB(t, "kt_retention")
	ctx := context.Background()
	for _, d := range []string{"2026-11-01", "2026-11-02", "2026-11-03", "2026-11-04"} {
		if _, err := s.Append(ctx, dayBatch(t, d, 5)); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Date(2026, 11, 5, 12, 0, 0, 0, time.UTC)
	dropped, err := s.Enforce(ctx, 48*time.Hour, now)
	if err != nil || !slices.Equal(dropped, []string{"2026-11-01", "2026-11-02"}) {
		t.Fatalf("dropped %v, %v; want 2026-11-01 and 2026-11-02", dropped, err)
	}
	var ids []string
	if err := s.Select(ctx, local.Selection{}, func(h *local.Hit) error { ids = append(ids, h.Event.AuditID[:10]); return nil }); err != nil {
		t.Fatal(err)
	}
	want := slices.Repeat([]string{"2026-11-03"}, 5)
	want = append(want, slices.Repeat([]string{"2026-11-04"}, 5)...)
	if !slices.Equal(ids, want) {
		t.Fatalf("left %v, want the events of 11-03 and 11-04", ids)
	}
	if dropped, err := s.Enforce(ctx, 48*time.Hour, now); err != nil || len(dropped) != 0 {
		t.Fatalf("again: dropped %v, %v", dropped, err)
	}
}
