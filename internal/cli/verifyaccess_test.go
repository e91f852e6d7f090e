package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kubetrail/kubetrail/internal/server"
	"github.com/kubetrail/kubetrail/internal/trust"
)

// TestVerifyAccessLog runs serve with reads only (no event is sealed):
// its checkpoints still sign the access log's head, and verify --pubkey
// holds. Then, as someone with disk access: a line edited, deleted, and
// the log cut below the signed head are each named (the line, or the
// checkpoint); a torn last line is a note with exit 0.
// Mutations it catches: serve not giving the signer the access log
// (openAccessLog without signer.Access: no format 2 checkpoint), verify
// not reading the access log (the edit passes), Check not comparing the
// signed count (the cut passes).
func TestVerifyAccessLog(t *testing.T) {
	dir := t.TempDir()
	e := &env{stdin: strings.NewReader(""), stdout: io.Discard, stderr: io.Discard, logLevel: "error"}
	addr := freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := serveCmd(e)
	cmd.SetArgs([]string{"--data", dir, "--listen", addr, "--detect=false", "--checkpoint-every", "50ms"})
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()
	cps := filepath.Join(dir, checkpointsName)
	for i := range 12 {
		waitUntil(t, "a read answered", 10*time.Second, func() bool {
			resp, err := http.Get(fmt.Sprintf("http://%s/api/v1/events?filter=user%%3Du%d", addr, i))
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == 200
		})
		if i == 5 || i == 11 {
			waitUntil(t, "a checkpoint signing the access log while serve runs", 10*time.Second, func() bool {
				l, _ := trust.Read(cps)
				return len(l) > 0 && l[len(l)-1].V == 2 && l[len(l)-1].AccessLines >= int64(i+1)
			})
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("serve: %v", err)
	}
	pub := filepath.Join(t.TempDir(), "key.pub")
	if code, pem, _ := run("checkpoint", "pubkey", "--data", dir); code != 0 || os.WriteFile(pub, []byte(pem), 0o600) != nil {
		t.Fatalf("pubkey: exit %d", code)
	}
	logPath := filepath.Join(dir, server.AccessLogFile)
	orig, _ := os.ReadFile(logPath)
	lines := strings.SplitAfter(string(orig), "\n")
	lines = lines[:len(lines)-1]
	if len(lines) < 12 {
		t.Fatalf("access log: %d lines", len(lines))
	}
	verify := func(t *testing.T, content string, want, wantNote string) {
		t.Helper()
		os.WriteFile(logPath, []byte(content), 0o600)
		defer os.WriteFile(logPath, orig, 0o600)
		code, out, errOut := run("verify", "--data", dir, "--pubkey", pub)
		if want == "" {
			if code != 0 || out != "" || !strings.Contains(errOut, wantNote) {
				t.Fatalf("verify: exit %d: %q %q; want exit 0, note %q", code, out, errOut, wantNote)
			}
			return
		}
		if code != 1 || !strings.Contains(out, want) {
			t.Fatalf("verify: exit %d, output %q; want %q", code, out, want)
		}
	}
	verify(t, string(orig), "", "every checksum")
	verify(t, strings.Join(lines[:4], "")+strings.Replace(lines[4], `"who":""`, `"who":"alice"`, 1)+strings.Join(lines[5:], ""),
		logPath+":5: edited: its hash is not the one the next line", "")
	verify(t, strings.Join(lines[:4], "")+strings.Join(lines[5:], ""), logPath+":5: 1 lines deleted before it", "")
	verify(t, strings.Join(lines[:len(lines)-3], ""), "access log lines, the log holds", "")
	verify(t, string(orig)+`{"time":"2026-`, "", "torn last line")

	// The attacker cuts the log and the checkpoints file to match: only
	// the witness's copy tells.
	witness := filepath.Join(t.TempDir(), "witness")
	if code, exported, _ := run("checkpoint", "export", "--data", dir); code != 0 || os.WriteFile(witness, []byte(exported), 0o600) != nil {
		t.Fatalf("export: exit %d", code)
	}
	own, _ := trust.Read(cps)
	var kept strings.Builder
	cut := own[0].AccessLines
	for _, l := range own {
		if l.AccessLines == cut {
			b, _ := json.Marshal(l.Checkpoint)
			kept.Write(append(b, '\n'))
		}
	}
	origCps, _ := os.ReadFile(cps)
	os.WriteFile(cps, []byte(kept.String()), 0o600)
	os.WriteFile(logPath, []byte(strings.Join(lines[:cut], "")), 0o600)
	code, out, _ := run("verify", "--data", dir, "--pubkey", pub)
	if code != 0 {
		t.Fatalf("cut consistently, verify without the witness: exit %d %q; want 0 (nothing on the host tells)", code, out)
	}
	code, out, _ = run("verify", "--data", dir, "--pubkey", pub, "--checkpoint", witness)
	if code != 1 || !strings.Contains(out, witness+":") || !strings.Contains(out, fmt.Sprintf("access log lines, the log holds %d", cut)) {
		t.Fatalf("cut consistently, verify with the witness: exit %d %q", code, out)
	}
	os.WriteFile(cps, origCps, 0o600)
	os.WriteFile(logPath, orig, 0o600)
}
