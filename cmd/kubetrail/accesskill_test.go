package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestAccessLogSurvivesKill9 reads from serve (and writes a little, so the
// event chain moves too) while serve signs a checkpoint every 100 ms and
// is killed with SIGKILL at random moments, restarted each time; after
// some kills a torn line is left at the access log's end, as a kill in
// the middle of a large write or a power loss would. verify --pubkey must
// then find nothing (a torn last line is a note), every line must be one
// JSON object, and each restart after a tear must have cut it.
// Mutations it catches: OpenAccessLog not cutting the torn line (the next
// line is glued onto it: verify exits 1, "not a JSON object"), a torn last
// line reported as tampering (exit 1). A head signed before the log is
// synced would need a machine crash, not a kill: TestAccessLogChain
// checks that Head syncs.
func TestAccessLogSurvivesKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("kills a server 8 times")
	}
	bin, err := buildOnce()
	if err != nil {
		t.Fatal(err)
	}
	data := t.TempDir()
	addr := freePort(t)
	start := func() (*exec.Cmd, *syncBuffer) {
		log := &syncBuffer{}
		cmd := exec.Command(bin, "serve", "--listen", addr, "--data", data, "--detect=false", "--checkpoint-every", "100ms", "--seal-after", "150ms")
		cmd.Stdout, cmd.Stderr = log, log
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			if resp, err := http.Get("http://" + addr + "/readyz"); err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					return cmd, log
				}
			}
			if time.Now().After(deadline) {
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("serve did not become ready: %s", log.String())
			}
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	httpc := &http.Client{Timeout: 2 * time.Second}
	for c := range 3 {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				// Long filters make some lines longer than a page, so
				// that a kill can land inside a line's write.
				url := fmt.Sprintf("http://%s/api/v1/events?filter=user%%3D%s&limit=5", addr, strings.Repeat("x", 1+(i*c*997)%6000))
				if i%3 == 0 {
					url = "http://" + addr + "/api/v1/stats"
				}
				if resp, err := httpc.Get(url); err == nil {
					resp.Body.Close()
				} else {
					time.Sleep(5 * time.Millisecond)
				}
			}
		})
	}
	wg.Go(func() {
		for seq := 0; ctx.Err() == nil; seq++ {
			if resp, err := httpc.Post("http://"+addr+"/ingest/webhook", "application/json", bytes.NewReader(batchBody(9, seq, 5))); err == nil {
				resp.Body.Close()
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
	logPath := filepath.Join(data, "access.log")
	tear := func() {
		f, err := os.OpenFile(logPath, os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		f.WriteString(`{"time":"2026-12-05T10:00:00.1Z","who":"","credential":"none","role":"unas`)
		f.Close()
	}
	rng := rand.New(rand.NewPCG(14, 4))
	tears, cuts := 0, 0
	const kills = 8
	for k := range kills {
		cmd, log := start()
		cuts += strings.Count(log.String(), "cut a torn last line")
		time.Sleep(time.Duration(150+rng.IntN(350)) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		if k%2 == 1 {
			tear()
			tears++
		}
	}
	cancel()
	wg.Wait()

	pub := filepath.Join(t.TempDir(), "key.pub")
	pem, err := exec.Command(bin, "checkpoint", "pubkey", "--data", data).Output()
	if err != nil || os.WriteFile(pub, pem, 0o600) != nil {
		t.Fatalf("pubkey: %v", err)
	}
	v := exec.Command(bin, "verify", "--data", data, "--pubkey", pub)
	var out, errOut bytes.Buffer
	v.Stdout, v.Stderr = &out, &errOut
	if err := v.Run(); err != nil || out.Len() != 0 {
		t.Fatalf("verify after %d kills: %v\n%s\n%s", kills, err, out.String(), errOut.String())
	}
	if !strings.Contains(errOut.String(), "access.log:") || !strings.Contains(errOut.String(), "torn last line") {
		t.Errorf("verify does not note the torn last line the last kill left: %s", errOut.String())
	}
	// Each tear but the last was followed by a start, which must cut it.
	if cuts != tears-1 {
		t.Errorf("%d starts cut a torn line, want %d", cuts, tears-1)
	}
	raw, _ := os.ReadFile(logPath)
	lines := strings.Split(string(raw), "\n")
	lines = lines[:len(lines)-1] // the torn last line
	for i, l := range lines {
		if !json.Valid([]byte(l)) {
			t.Fatalf("access.log:%d is not one JSON object: %.200s", i+1, l)
		}
	}
	cps, _ := os.ReadFile(filepath.Join(data, "checkpoints"))
	signed := strings.Count(string(cps), `"v":2`)
	if len(lines) < 100 || signed < kills {
		t.Fatalf("%d access log lines, %d format 2 checkpoints: the test did not exercise much", len(lines), signed)
	}
	t.Logf("%d kills, %d torn lines left, %d cut at a start; %d access log lines, %d signed checkpoints", kills, tears, cuts, len(lines), signed)
}
