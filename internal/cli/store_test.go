package cli

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kubetrail/kubetrail/internal/audit"
	"github.com/kubetrail/kubetrail/internal/investigate/investigatetest"
	"github.com/kubetrail/kubetrail/internal/pipeline"
	"github.com/kubetrail/kubetrail/internal/store/clickhouse"
	"github.com/kubetrail/kubetrail/internal/store/clickhouse/chtest"
)

// ch is the package's ClickHouse server, started by the first test that
// needs it.
var ch chtest.Server

func TestMain(m *testing.M) { os.Exit(chtest.Run(m, &ch)) }

// TestStoreFlagPrintsTheSame stores the recorded incident in a data folder
// (kubetrail import) and in ClickHouse (set up by kubetrail setup
// clickhouse), and runs query, stats and export on both: the output must
// be the same, byte for byte.
func TestStoreFlagPrintsTheSame(t *testing.T) {
	base := ch.URL(t)
	url := strings.Replace(base, "http://", "clickhouse://", 1) + "/kt_cli"
	raw := recordedIncident(t)
	logFile := filepath.Join(t.TempDir(), "audit.log")
	if err := os.WriteFile(logFile, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	data := t.TempDir()
	if code, _, errOut := run("import", "--data", data, "--progress", "never", logFile); code != 0 {
		t.Fatalf("import: %s", errOut)
	}
	for range 2 { // idempotent
		if code, out, errOut := run("setup", "clickhouse", "--store", url); code != 0 || !strings.Contains(out, "kt_cli") {
			t.Fatalf("setup clickhouse: exit %d, %s%s", code, out, errOut)
		}
	}
	cfg, err := clickhouse.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	s, err := clickhouse.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var recs []audit.Record
	audit.NewDecoder(audit.Limits{}).DecodeLines("incident", raw, func(r audit.Record) { recs = append(recs, r) },
		func(p audit.Problem) { t.Fatalf("%v", p) })
	for i := 0; i < len(recs); i += 200 {
		b := &pipeline.Batch{Cluster: "default", Received: time.Now(), Records: recs[i:min(i+200, len(recs))]}
		if _, err := s.Append(context.Background(), b); err != nil {
			t.Fatal(err)
		}
	}
	for _, args := range [][]string{
		{"query"},
		{"query", "user=attacker", "-o", "wide"},
		{"query", "verb=create resource=clusterroles", "-o", "jsonl", "--sort", "-time", "--limit", "7"},
		{"query", "code>=400 not user~\"^system:\"", "-o", "csv"},
		{"query", "--count", "ip in 127.0.0.0/8"},
		{"query", `"secret"`, "-o", "json"},
		{"query", "--jq", `select(.verb == "list") | .objectRef`},
		{"query", "--since", "2000-01-01", "--until", "2000-01-02"},
		{"stats"},
		{"stats", "--by", "user,verb", "--bytes"},
		{"stats", "--interval", "1m", "code>=400", "-o", "json"},
		{"export"},
		{"export", "--cluster", "default", "--since", "2026-11-23T10:00:30Z"},
	} {
		code1, out1, err1 := run(append(args, "--data", data)...)
		code2, out2, err2 := run(append(args, "--store", url)...)
		if code1 != 0 || out1 == "" && err1 == "" {
			t.Fatalf("%v --data: exit %d, %q %s", args, code1, out1, err1)
		}
		if code2 != code1 || out2 != out1 || err2 != err1 {
			t.Errorf("%v: --store gave exit %d and\n%s%s\n--data gave exit %d and\n%s%s", args, code2, head(out2), err2, code1, head(out1), err1)
		}
	}
}

func head(s string) string {
	if len(s) > 2000 {
		return s[:2000] + "...\n"
	}
	return s
}

func recordedIncident(t *testing.T) []byte {
	t.Helper()
	return investigatetest.RecordedLines(t)
}

// TestStoreFlagErrors: a store that cannot be reached, or one that was
// never set up, is a clear error and exit status 1; --store does not mix
// with --server or --follow.
func TestStoreFlagErrors(t *testing.T) {
	down := "clickhouse://127.0.0.1:1/kubetrail"
	for _, args := range [][]string{
		{"query", "--store", down},
		{"stats", "--store", down},
		{"export", "--store", down},
		{"setup", "clickhouse", "--store", down},
	} {
		code, _, errOut := run(args...)
		if code != 1 || !strings.Contains(errOut, "ClickHouse is not reachable at http://127.0.0.1:1") {
			t.Errorf("%v: exit %d, %q; want 1 and ClickHouse is not reachable", args, code, errOut)
		}
	}
	f := func(want string, args ...string) {
		t.Helper()
		code, _, errOut := run(args...)
		if code == 0 || !strings.Contains(errOut, want) {
			t.Errorf("%v: exit %d, %q; want an error with %q", args, code, errOut, want)
		}
	}
	f("want clickhouse://", "query", "--store", "mysql://db/x")
	f("database", "export", "--store", "clickhouse://h:8123/a;b")
	f("give one", "query", "--store", down, "--server", "http://127.0.0.1:1")
	f("ClickHouse is not reachable", "query", "--store", down, "--follow")
	f("ClickHouse is not reachable", "import", "--store", down, "--data", t.TempDir(), "-")
	f("--store is required", "setup", "clickhouse")
	never := strings.Replace(ch.URL(t), "http://", "clickhouse://", 1) + "/kt_never_set_up"
	f("kubetrail setup clickhouse", "query", "--store", never)
}
