package cli

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestServeStoreShowsDetectAlerts is the deployment docs/clickhouse.md
// describes: serve --store collects webhook batches into ClickHouse and
// answers the read API from it; detect --follow --store, with the same
// --data, runs the rules over what ClickHouse holds and keeps the alerts
// there; serve's alerts API lists them. Both run at once on one folder
// (the collector locks its spool, the detector the folder).
func TestServeStoreShowsDetectAlerts(t *testing.T) {
	url := chURL(t, fmt.Sprintf("kt_serve_alerts_%d", time.Now().UnixNano()%1e9))
	data := t.TempDir()
	rulesFile := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(rulesFile, []byte("- name: Update\n  severity: low\n  description: every update\n  condition: verb=update\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var dlog, slog syncBuf
	det := kubetrailProc(t, &dlog, "detect", "--follow", "--store", url, "--data", data, "--rules", rulesFile)
	addr := freeAddr(t)
	srv := kubetrailProc(t, &slog, "serve", "--data", data, "--listen", addr, "--store", url)
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	waitUntil(t, "serve ready", 20*time.Second, func() bool { code, _ := get("/readyz"); return code == 200 })
	var items []string
	for i := range 5 {
		items = append(items, fwdEvent(i, "update"))
	}
	body := `{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[` + strings.Join(items, ",") + `]}`
	resp, err := http.Post("http://"+addr+"/ingest/webhook?cluster=prod", "application/json", strings.NewReader(body))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("webhook: %v %v", resp, err)
	}
	resp.Body.Close()
	lines := func(s string) int {
		return strings.Count(strings.TrimSpace(s), "\n") + min(1, len(strings.TrimSpace(s)))
	}
	waitUntil(t, "five events in the read API", 20*time.Second, func() bool {
		code, b := get("/api/v1/events")
		return code == 200 && lines(b) == 5
	})
	// The CLI asks the serve as it asks one on the embedded store.
	if code, out, errOut := run("query", "--server", "http://"+addr, "--count", "verb=update"); code != 0 || strings.TrimSpace(out) != "5" {
		t.Errorf("query --server --count: exit %d, %q %s; want 5", code, out, errOut)
	}
	if code, out, errOut := run("query", "--server", "http://"+addr, "-o", "jsonl", "auditid=fw-00003"); code != 0 || lines(out) != 1 || !strings.Contains(out, `"auditID":"fw-00003"`) {
		t.Errorf("query --server auditid=fw-00003: exit %d, %q %s; want that event", code, out, errOut)
	}
	waitUntil(t, "five alerts in the alerts API", 30*time.Second, func() bool {
		code, b := get("/api/v1/alerts")
		return code == 200 && lines(b) == 5 && strings.Count(b, `"rule":"Update"`) == 5
	})
	srv.Process.Signal(syscall.SIGTERM)
	det.Process.Signal(syscall.SIGTERM)
	if err := srv.Wait(); err != nil {
		t.Errorf("serve: %v\n%s", err, slog.String())
	}
	if err := det.Wait(); err != nil {
		t.Errorf("detect --follow: %v\n%s", err, dlog.String())
	}
}
