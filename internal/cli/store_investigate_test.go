package cli

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/kubetrail/kubetrail/internal/audit"
	"github.com/kubetrail/kubetrail/internal/pipeline"
	"github.com/kubetrail/kubetrail/internal/store"
	"github.com/kubetrail/kubetrail/internal/store/clickhouse"
	"github.com/kubetrail/kubetrail/internal/store/local"
)

// conformanceBatches is the store conformance suite's corpus (see
// internal/store/store_test.go): the recorded incident as cluster prod in
// batches of 100, and 4,000 bench/gen events over three days as cluster
// staging in batches of 500.
func conformanceBatches(t *testing.T) []*pipeline.Batch {
	t.Helper()
	cmd := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "run", "./bench/gen", "--events", "4000", "--seed", "7")
	cmd.Dir = "../.."
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	gen, err := cmd.Output()
	if err != nil {
		t.Fatalf("bench/gen: %v\n%s", err, stderr.String())
	}
	var batches []*pipeline.Batch
	recv := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	for _, part := range []struct {
		cluster string
		raw     []byte
		size    int
	}{{"prod", recordedIncident(t), 100}, {"staging", gen, 500}} {
		var recs []audit.Record
		audit.NewDecoder(audit.Limits{}).DecodeLines(part.cluster, part.raw, func(r audit.Record) { recs = append(recs, r) },
			func(p audit.Problem) { t.Fatalf("%v", p) })
		for len(recs) > 0 {
			n := min(part.size, len(recs))
			batches = append(batches, &pipeline.Batch{Cluster: part.cluster, Received: recv, Records: recs[:n]})
			recs, recv = recs[n:], recv.Add(time.Second)
		}
	}
	return batches
}

// appendBatches stores the batches in s.
func appendBatches(t *testing.T, s store.Store, batches []*pipeline.Batch) {
	t.Helper()
	for _, b := range batches {
		if _, err := s.Append(context.Background(), b); err != nil {
			t.Fatal(err)
		}
	}
}

// TestInvestigationsOnStore runs every investigation, with their options,
// over the conformance corpus in a data folder and in ClickHouse (each
// batch stored twice there, so that an event counted twice would show):
// --store prints what --data prints, byte for byte, and exits the same.
func TestInvestigationsOnStore(t *testing.T) {
	batches := conformanceBatches(t)
	data := t.TempDir()
	ls, err := store.OpenLocal(data, local.Options{})
	if err != nil {
		t.Fatal(err)
	}
	appendBatches(t, ls, batches)
	if err := ls.Close(); err != nil {
		t.Fatal(err)
	}
	url := strings.Replace(ch.URL(t), "http://", "clickhouse://", 1) + "/kt_investigate"
	if code, out, errOut := run("setup", "clickhouse", "--store", url); code != 0 {
		t.Fatalf("setup clickhouse: %s%s", out, errOut)
	}
	cfg, err := clickhouse.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := clickhouse.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	appendBatches(t, cs, batches)
	appendBatches(t, cs, batches)
	for _, args := range [][]string{
		{"timeline"},
		{"timeline", "-o", "wide", "--user", "attacker"},
		{"timeline", "-o", "json", "--limit", "3"},
		{"timeline", "--include-system", "--gap", "0", "-o", "jsonl"},
		{"who", "delete", "secrets"},
		{"who", "get", "secret", "db-creds", "-n", "production", "-o", "wide"},
		{"who", "create", "clusterrolebindings", "-o", "json"},
		{"who", "changed", "cm", "-A", "--since", "2026-11-02", "--until", "2026-11-03"},
		{"activity", "attacker"},
		{"activity", "system:serviceaccount:*", "-o", "jsonl", "--limit", "20"},
		{"history", "clusterrolebinding/backdoor"},
		{"history", "configmap/stolen", "-n", "production", "-o", "json"},
		{"secrets"},
		{"secrets", "-o", "wide", "--include-system"},
		{"execs"},
		{"execs", "-o", "wide", "--include-system"},
		{"denied"},
		{"denied", "-o", "json", "--where", "verb=list"},
		{"denied", "--include-system", "-n", "production"},
		{"rbac"},
		{"rbac", "-o", "wide", "--include-system"},
		{"from", "127.0.0.1"},
		{"from", "10.0.0.0/8", "--include-system", "--limit", "50"},
		{"who", "delete", "secrets", "--where", "verb="}, // a mistake in --where
	} {
		code1, out1, err1 := run(append(args, "--data", data)...)
		code2, out2, err2 := run(append(args, "--store", url)...)
		if code1 == 0 && strings.Count(out1, "\n") < 3 || code1 != 0 && err1 == "" {
			t.Fatalf("%v --data: exit %d, %q %s: too little to show anything", args, code1, out1, err1)
		}
		if code2 != code1 || out2 != out1 || err2 != err1 {
			t.Errorf("%v: --store gave exit %d and\n%s%s\n--data gave exit %d and\n%s%s", args, code2, head(out2), err2, code1, head(out1), err1)
		}
	}
}
