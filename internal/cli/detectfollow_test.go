package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kubetrail/kubetrail/internal/audit"
	"github.com/kubetrail/kubetrail/internal/pipeline"
	"github.com/kubetrail/kubetrail/internal/store/clickhouse"
)

// followLog is what detect --follow --log-json --log-level debug said:
// the events it evaluated, in order, and how many of them its cursor
// covered at its last save.
type followLog struct {
	evaluated []string
	cursored  int
	saves     int
}

func parseFollowLog(t *testing.T, b []byte) followLog {
	t.Helper()
	var l followLog
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		var m struct {
			Msg      string   `json:"msg"`
			AuditIDs []string `json:"auditIDs"`
		}
		if json.Unmarshal(sc.Bytes(), &m) != nil {
			continue // a line cut by SIGKILL
		}
		switch m.Msg {
		case "evaluated":
			l.evaluated = append(l.evaluated, m.AuditIDs...)
		case "cursor saved":
			l.cursored, l.saves = len(l.evaluated), l.saves+1
		}
	}
	return l
}

// TestDetectFollowSIGKILL: two collectors feed one ClickHouse store (with
// copies of each other's events), and one detect --follow reader
// evaluates them; it is SIGKILLed mid-way and started again. Every event
// is evaluated; none that the cursor covered at the kill is evaluated
// again; each alert is stored once (kubetrail alerts) and reaches the
// file output at least once. A second reader on the folder is refused.
// Planted: with Poll's cursor save removed, the second run evaluates
// the events the first run had logged as cursored; without the folder
// lock the second reader runs.
func TestDetectFollowSIGKILL(t *testing.T) {
	// A database of its own per run (-count=N would find the last run's events).
	url := chURL(t, fmt.Sprintf("kt_detect_follow_%d", time.Now().UnixNano()%1e9))
	cfg, err := clickhouse.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	st, err := clickhouse.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var cols []*clickhouse.Collector
	for range 2 {
		c, err := clickhouse.NewCollector(st, clickhouse.CollectorOptions{Dir: t.TempDir(), FlushEvery: 50 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		cols = append(cols, c)
	}
	tmp := t.TempDir()
	rulesFile := filepath.Join(tmp, "rules.yaml")
	if err := os.WriteFile(rulesFile, []byte("- name: Update\n  severity: low\n  description: every update\n  condition: verb=update\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	data, outFile := filepath.Join(tmp, "detect"), filepath.Join(tmp, "alerts.jsonl")
	args := []string{"detect", "--follow", "--store", url, "--data", data, "--rules", rulesFile,
		"--alert-output", "file://" + outFile, "--log-json", "--log-level", "debug"}

	// Batch b (25 events) goes to collector b%2, and every third batch
	// also through the other collector.
	const batches, per = 40, 25
	feed := func(b int) {
		var recs []audit.Record
		for i := b * per; i < (b+1)*per; i++ {
			audit.NewDecoder(audit.Limits{}).DecodeBody("t", []byte(fwdEvent(i, "update")),
				func(r audit.Record) { recs = append(recs, r) }, func(p audit.Problem) { t.Error(p) })
		}
		for k, c := range cols {
			if k != b%2 && b%3 != 0 {
				continue
			}
			if _, err := c.Append(context.Background(), &pipeline.Batch{Cluster: "prod", Received: time.Now(), Records: recs}); err != nil {
				t.Error(err)
			}
			if err := c.Drain(context.Background()); err != nil {
				t.Error(err)
			}
		}
	}
	var log1, log2 syncBuf
	cmd := kubetrailProc(t, &log1, args...)
	var fed sync.WaitGroup
	fed.Go(func() {
		for b := range batches {
			feed(b)
			time.Sleep(50 * time.Millisecond)
		}
	})
	waitUntil(t, "a first part evaluated", 60*time.Second, func() bool {
		l := parseFollowLog(t, []byte(log1.String()))
		return l.saves > 0 && len(l.evaluated) >= batches*per/4
	})
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	first := parseFollowLog(t, []byte(log1.String()))
	cmd = kubetrailProc(t, &log2, args...)
	waitUntil(t, "the reader started", 20*time.Second, func() bool { return strings.Contains(log2.String(), "detection reads the store") })
	// A second reader on the same folder is refused (the folder's lock).
	var log3 syncBuf
	other := kubetrailProc(t, &log3, args...)
	exited := make(chan error, 1)
	go func() { exited <- other.Wait() }()
	select {
	case err := <-exited:
		if err == nil || !strings.Contains(log3.String(), "in use by another kubetrail process") {
			t.Errorf("a second detect --follow on the folder: %v\n%s", err, log3.String())
		}
	case <-time.After(20 * time.Second):
		t.Errorf("a second detect --follow on the same folder kept running")
	}
	fed.Wait()
	// Until every event is evaluated (or a minute: the checks below then
	// say which are missing).
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		second := parseFollowLog(t, []byte(log2.String()))
		if first.cursored+len(second.evaluated) >= batches*per {
			break
		}
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("detect --follow after SIGTERM: %v\n%s", err, log2.String())
	}
	second := parseFollowLog(t, []byte(log2.String()))

	if first.saves == 0 || first.cursored == 0 || first.cursored == batches*per {
		t.Fatalf("the first run saved its cursor %d times over %d events: the kill was not mid-way", first.saves, first.cursored)
	}
	cursored := first.evaluated[:first.cursored]
	for _, id := range second.evaluated {
		if slices.Contains(cursored, id) {
			t.Fatalf("%s was evaluated again after the restart, though the cursor covered it", id)
		}
	}
	all := append(slices.Clone(cursored), second.evaluated...)
	// The kill may land after a save and before its "cursor saved" line
	// (the save's directory fsync is in between): that poll's events are
	// then covered by the cursor without the log saying so, and the
	// second run rightly skips them. They were evaluated once, by the
	// first run (their alerts are checked below); TestArrivalsKeyLog
	// shows that keys a poll appended without saving its cursor are not
	// taken as covered.
	for _, id := range first.evaluated[first.cursored:] {
		if !slices.Contains(second.evaluated, id) {
			all = append(all, id)
		}
	}
	slices.Sort(all)
	if want := fwIDs(0, batches*per, 1); !slices.Equal(all, want) {
		var missing []string
		for _, id := range want {
			if _, found := slices.BinarySearch(all, id); !found {
				missing = append(missing, id)
			}
		}
		t.Fatalf("evaluated %d events (cursored, then after the restart), want each of %d once; missing %v", len(all), len(want), missing)
	}

	code, out, errOut := run("alerts", "--data", data, "-o", "jsonl")
	if code != 0 {
		t.Fatalf("alerts: exit %d: %s", code, errOut)
	}
	if got, want := alertIDs(t, []byte(out)), fwIDs(0, batches*per, 1); !slices.Equal(got, want) {
		t.Errorf("stored alerts: %d, want one for each of %d events", len(got), len(want))
	}
	b, err := os.ReadFile(outFile)
	if err != nil {
		t.Fatal(err)
	}
	if got := slices.Compact(alertIDs(t, b)); !slices.Equal(got, fwIDs(0, batches*per, 1)) {
		t.Errorf("the file output has alerts for %d events, want every one of %d at least once", len(got), batches*per)
	}
}

// alertIDs returns the first auditID of every alert in a jsonl stream,
// sorted.
func alertIDs(t *testing.T, b []byte) []string {
	t.Helper()
	var ids []string
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if l == "" {
			continue
		}
		var a struct {
			AuditIDs []string `json:"auditIDs"`
		}
		if err := json.Unmarshal([]byte(l), &a); err != nil || len(a.AuditIDs) == 0 {
			t.Fatalf("alert line %q: %v", l, err)
		}
		ids = append(ids, a.AuditIDs[0])
	}
	slices.Sort(ids)
	return ids
}
