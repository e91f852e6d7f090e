package cli

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/kubetrail/kubetrail/internal/metrics"
	"github.com/kubetrail/kubetrail/internal/store/clickhouse"
)

// TestCollectorMetricCountsDamagedSegments: /metrics has
// kubetrail_clickhouse_spool_damaged_segments, the .damaged files in the
// spool's WAL folder, read at each scrape (a person removing them brings
// it back to 0). No ClickHouse is needed: the collector is not shipping.
// Planted: the gauge returning the spooled bytes' gauge value, or a
// constant, fails it.
func TestCollectorMetricCountsDamagedSegments(t *testing.T) {
	dir := t.TempDir()
	c, err := clickhouse.NewCollector(clickhouse.Dial(clickhouse.Config{Endpoint: "http://127.0.0.1:1", Database: "kt"}), clickhouse.CollectorOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	reg := metrics.NewRegistry()
	reg.Register((&collector{c: c}).metrics()...)
	gauge := func() float64 {
		t.Helper()
		for _, f := range reg.Gather() {
			if f.Name == "kubetrail_clickhouse_spool_damaged_segments" {
				return f.Metrics[0].Value
			}
		}
		t.Fatal("no kubetrail_clickhouse_spool_damaged_segments in /metrics")
		return 0
	}
	if got := gauge(); got != 0 {
		t.Errorf("a new spool: %v damaged segments, want 0", got)
	}
	wal := filepath.Join(dir, "wal")
	for _, name := range []string{"0000000000000003.wal" + clickhouse.DamagedSuffix, "0000000000000007.wal" + clickhouse.DamagedSuffix} {
		if err := os.WriteFile(filepath.Join(wal, name), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if got := gauge(); got != 2 {
		t.Errorf("with two .damaged files: %v, want 2", got)
	}
	if err := os.Remove(filepath.Join(wal, "0000000000000003.wal"+clickhouse.DamagedSuffix)); err != nil {
		t.Fatal(err)
	}
	if got := gauge(); got != 1 {
		t.Errorf("after one was removed: %v, want 1", got)
	}
}
