package e2e

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"testing"
	"time"
)

// startServe runs `kubetrail serve` on a free loopback port with its data
// in dataDir, waits for /readyz, and returns the process and its address.
func startServe(t *testing.T, bin, dataDir string) (*proc, string) {
	t.Helper()
	addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	p := startProc(t, "kubetrail-serve", bin, "serve", "--listen", addr, "--data", dataDir)
	waitReady(t, p, 30*time.Second, func(ctx context.Context) error {
		return httpGetOK(ctx, http.DefaultClient, "http://"+addr+"/readyz", "")
	})
	return p, addr
}

// startTail runs `kubetrail tail` on the audit log at path, storing into
// dataDir.
func startTail(t *testing.T, bin, path, dataDir string) *proc {
	t.Helper()
	return startProc(t, "kubetrail-tail", bin, "tail", path, "--data", dataDir)
}

// exportEvents runs `kubetrail export` on dataDir, with any further
// arguments (a filter, --cluster NAME), and parses its output.
func exportEvents(t *testing.T, bin, dataDir string, args ...string) []event {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"export", "--data", dataDir}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("kubetrail export --data %s: %v\n%s", dataDir, err, stderr.String())
	}
	return parseEvents(t, &stdout, "export")
}

// waitExport exports until at least want events are stored or the timeout
// passes, and returns the last export. Ingest is asynchronous (the tail
// follows the file; the webhook's last batch may still be in flight), so a
// single export right after the API server stopped could be short.
func waitExport(t *testing.T, bin, dataDir string, want int, timeout time.Duration) []event {
	t.Helper()
	start := time.Now()
	for {
		got := exportEvents(t, bin, dataDir)
		if len(got) >= want || time.Since(start) > timeout {
			t.Logf("export holds %d events (audit log: %d) after waiting %s",
				len(got), want, time.Since(start).Round(time.Millisecond))
			return got
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// assertEventKind checks that every exported event is a complete v1 Event:
// the API server's webhook sends EventList items without kind and
// apiVersion, and export must restore them.
func assertEventKind(t *testing.T, events []event) {
	t.Helper()
	bad := 0
	for _, e := range events {
		if e.str("kind") != "Event" || e.str("apiVersion") != "audit.k8s.io/v1" {
			if bad < 5 {
				t.Errorf("exported event without kind Event / apiVersion audit.k8s.io/v1: kind=%q apiVersion=%q %s",
					e.str("kind"), e.str("apiVersion"), e.summary())
			}
			bad++
		}
	}
	if bad > 5 {
		t.Errorf("... %d exported events in all lack kind or apiVersion", bad)
	}
}

// writeWebhookConfig writes the kubeconfig for --audit-webhook-config-file
// with `kubetrail setup webhook-config`, which is part of what is tested: the
// API server must accept what it writes. A failure fails the test.
func writeWebhookConfig(t *testing.T, bin, url, out string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "setup", "webhook-config", "--url", url, "--out", out)
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	if err := cmd.Run(); err != nil {
		t.Fatalf("kubetrail setup webhook-config --url %s --out %s: %v\n%s", url, out, err, buf.String())
	}
	if _, err := os.Stat(out); err != nil {
		t.Fatalf("kubetrail setup webhook-config --out %s exited 0 but wrote no file: %v\n%s", out, err, buf.String())
	}
}

// importRE reads the summary line of `kubetrail import`.
var importRE = regexp.MustCompile(`(\d+) events stored, (\d+) already stored, (\d+) lines skipped`)

// importFiles runs `kubetrail import` of files into dataDir and returns how
// many events it stored and how many it found stored already.
func importFiles(t *testing.T, bin, dataDir string, files ...string) (stored, already int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"import", "--progress", "never", "--data", dataDir}, files...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("kubetrail import --data %s %v: %v\n%s", dataDir, files, err, out)
	}
	m := importRE.FindStringSubmatch(string(out))
	if m == nil {
		t.Fatalf("kubetrail import: no summary line in its output:\n%s", out)
	}
	if m[3] != "0" {
		t.Errorf("kubetrail import skipped %s lines of the API server's own log:\n%s", m[3], out)
	}
	stored, _ = strconv.Atoi(m[1])
	already, _ = strconv.Atoi(m[2])
	return stored, already
}
