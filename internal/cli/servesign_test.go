package cli

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kubetrail/kubetrail/internal/trust"
)

// TestServeSignsCheckpoints runs serve twice on one data folder. The first
// run signs every 100 ms and seals every 50 ms: a checkpoint covering the
// first batch must appear while it runs. The second signs only on
// shutdown and seals only then: no checkpoint while it runs, and after it
// stops the newest covers both batches. verify --pubkey holds.
// Mutations it catches: serve not starting signer.Run (the first wait
// times out), serve closing the store without signing (closeAndSign given
// a nil signer: the second run's events are not covered).
func TestServeSignsCheckpoints(t *testing.T) {
	dir := t.TempDir()
	cps := filepath.Join(dir, checkpointsName)
	e := &env{stdin: strings.NewReader(""), stdout: io.Discard, stderr: io.Discard, logLevel: "error"}
	serve := func(t *testing.T, first, n int, every, seal string, running func()) {
		t.Helper()
		addr := freeAddr(t)
		ctx, cancel := context.WithCancel(context.Background())
		cmd := serveCmd(e)
		cmd.SetArgs([]string{"--data", dir, "--listen", addr, "--detect=false", "--checkpoint-every", every, "--seal-after", seal})
		done := make(chan error, 1)
		go func() { done <- cmd.ExecuteContext(ctx) }()
		var items []string
		for i := first; i < first+n; i++ {
			items = append(items, fmt.Sprintf(`{"level":"Metadata","auditID":"id-%d","stage":"ResponseComplete","requestURI":"/api/v1/pods","verb":"list","user":{"username":"u"},"sourceIPs":["10.0.0.1"],"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"2026-12-01T00:00:00.000000Z","stageTimestamp":"2026-12-01T00:00:00.%06dZ"}`, i, i))
		}
		body := `{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":[` + strings.Join(items, ",") + `]}`
		waitUntil(t, "the webhook's 200", 10*time.Second, func() bool {
			resp, err := http.Post("http://"+addr+"/ingest/webhook", "application/json", strings.NewReader(body))
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == 200
		})
		running()
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("serve: %v", err)
		}
	}
	newest := func() trust.Line {
		lines, err := trust.Read(cps)
		if err != nil || len(lines) == 0 {
			return trust.Line{}
		}
		return lines[len(lines)-1]
	}

	serve(t, 0, 30, "100ms", "50ms", func() {
		waitUntil(t, "a periodic checkpoint of 30 events while serve runs", 10*time.Second, func() bool { return newest().Events == 30 })
	})
	before, _ := trust.Read(cps)
	serve(t, 30, 20, "0", "1h", func() {
		time.Sleep(300 * time.Millisecond)
		if now, _ := trust.Read(cps); len(now) != len(before) {
			t.Errorf("--checkpoint-every 0 signed %d checkpoints while running", len(now)-len(before))
		}
	})
	if got := newest(); got.Events != 50 {
		t.Fatalf("after shutdown the newest checkpoint covers %d events, want 50", got.Events)
	}
	pub := filepath.Join(t.TempDir(), "key.pub")
	if code, pem, _ := run("checkpoint", "pubkey", "--data", dir); code != 0 || os.WriteFile(pub, []byte(pem), 0o600) != nil {
		t.Fatalf("pubkey: exit %d", code)
	}
	if code, out, errOut := run("verify", "--data", dir, "--pubkey", pub); code != 0 || out != "" {
		t.Fatalf("verify: exit %d: %s %s", code, out, errOut)
	}
}
