// Package ui_test runs the web UI's browser test (web/test/browser.mjs)
// against a real `kubetrail serve`: the binary built from this tree, the
// recorded incident (internal/investigate/testdata/incident) sent to its
// webhook so that detection raises its alerts, one event whose user
// agent and object name are markup (testdata/hostile.jsonl), and the
// life of a configmap with bodies, for the object page's diff
// (testdata/object.jsonl). Debian's
// chromium and Node.js with web/node_modules (make ui) are needed: under
// CI the test fails without them, by hand it skips and says why.
package ui_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

const root = "../.."

func TestBrowser(t *testing.T) {
	chromium := os.Getenv("CHROMIUM")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	var missing []string
	if _, err := exec.LookPath("node"); err != nil {
		missing = append(missing, "node (Debian's nodejs)")
	}
	if _, err := os.Stat(chromium); err != nil {
		missing = append(missing, chromium+" (apt-get install chromium)")
	}
	if _, err := os.Stat(filepath.Join(root, "web/node_modules/playwright-core")); err != nil {
		missing = append(missing, "web/node_modules/playwright-core (make ui)")
	}
	if len(missing) > 0 {
		msg := "the browser test needs " + strings.Join(missing, ", ")
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "kubetrail")
	args := []string{"build", "-o", bin}
	if raceBuild {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, "./cmd/kubetrail")...)
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	const token = "ui-test-token"
	tokens := filepath.Join(dir, "tokens")
	if err := os.WriteFile(tokens, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := startServe(t, bin, filepath.Join(dir, "data"), tokens)

	post(t, base, token, filepath.Join(root, "internal/investigate/testdata/incident/incident.log.gz"), "gzip", `{"stored":553,`)
	post(t, base, token, "testdata/hostile.jsonl", "", `{"stored":1,`)
	post(t, base, token, "testdata/object.jsonl", "", `{"stored":3,`)
	// Detection evaluates each event once it is durable; wait for the
	// alert the alerts step looks for.
	waitFor(t, base, token, "/api/v1/alerts", "Binding to cluster-admin")

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	node := exec.CommandContext(ctx, "node", "test/browser.mjs")
	node.Dir = filepath.Join(root, "web")
	node.Env = append(os.Environ(), "KUBETRAIL_URL="+base, "KUBETRAIL_TOKEN="+token, "CHROMIUM="+chromium)
	out, err := node.CombinedOutput()
	if err != nil || !regexp.MustCompile(`(?m)^[0-9]+ passed, 0 failed$`).Match(out) {
		t.Fatalf("web/test/browser.mjs: %v\n%s", err, out)
	}
	t.Logf("web/test/browser.mjs:\n%s", out)
}

// startServe starts `kubetrail serve` on a free loopback port and returns
// its URL; the server is stopped (SIGTERM) when the test ends.
func startServe(t *testing.T, bin, data, tokens string) string {
	t.Helper()
	cmd := exec.Command(bin, "serve", "--data", data, "--listen", "127.0.0.1:0", "--token-file", tokens)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	addr := make(chan string, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		re := regexp.MustCompile(`msg="kubetrail serving" addr=(\S+)`)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			logs.WriteString(sc.Text() + "\n")
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				addr <- m[1]
			}
		}
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		<-done
		if err := cmd.Wait(); err != nil {
			t.Errorf("serve: %v\n%s", err, logs.String())
		}
	})
	select {
	case a := <-addr:
		return "http://" + a
	case <-time.After(time.Minute):
		cmd.Process.Kill()
		t.Fatalf("serve did not start in a minute")
	}
	return ""
}

// post sends a file to the webhook and checks the answer begins with want.
func post(t *testing.T, base, token, file, encoding, want string) {
	t.Helper()
	body, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("POST", base+"/ingest/webhook", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	if encoding != "" {
		req.Header.Set("Content-Encoding", encoding)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	got, _ := io.ReadAll(res.Body)
	if res.StatusCode != 200 || !strings.HasPrefix(string(got), want) {
		t.Fatalf("POST %s: %d %s; want 200 %s...", file, res.StatusCode, got, want)
	}
}

func waitFor(t *testing.T, base, token, path, want string) {
	t.Helper()
	var last string
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		req, _ := http.NewRequest("GET", base+path, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if last = fmt.Sprintf("%d %s", res.StatusCode, b); strings.Contains(last, want) {
			return
		}
	}
	t.Fatalf("GET %s never held %q; last answer: %.500s", path, want, last)
}
