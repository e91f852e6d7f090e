package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kubetrail/kubetrail/internal/server"
)

// TestServeRoleFlags: serve refuses role settings it cannot honour,
// naming the flag, the file and line, and never the token.
func TestServeRoleFlags(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	tokens := func(content string) string {
		p := filepath.Join(t.TempDir(), "tokens")
		os.WriteFile(p, []byte(content), 0o600)
		return p
	}
	// serve runs under a deadline, so that one that starts anyway fails
	// the test instead of hanging it.
	f := func(want string, args ...string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		cmd := serveCmd(&env{stdin: strings.NewReader(""), stdout: io.Discard, stderr: io.Discard, logLevel: "error"})
		cmd.SetArgs(append([]string{"--data", data, "--listen", "127.0.0.1:0", "--detect=false"}, args...))
		cmd.SetOut(io.Discard)
		cmd.SetErr(io.Discard)
		err := cmd.ExecuteContext(ctx)
		if ctx.Err() != nil {
			t.Errorf("serve %q started; want it refused with %q", args, want)
		} else if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("serve %q: %v; want %q", args, err, want)
		}
	}
	f("--client-role needs --client-ca", "--client-role", "kube-apiserver=ingest")
	f(`--client-role "kube-apiserver=root": role "root"`, "--client-role", "kube-apiserver=root")
	bad := tokens("# tokens\ns3cret,alice,role=superuser\n")
	f("--token-file "+bad+`:2: role "superuser"`, "--token-file", bad)
	roleless := tokens("s3cret,alice,role=viewer\ns3cret2,apiserver\n")
	f("--token-file "+roleless+":2: token apiserver has no role", "--token-file", roleless, "--require-roles")
	open := tokens("s3cret,alice,role=viewer\n")
	os.Chmod(open, 0o644)
	f("chmod 600", "--token-file", open)
}

// TestServeRolesAndAccessLog wires what serve runs: the token file's roles
// reach the server (an ingest token writes and cannot read, a viewer reads,
// the CLI's --token-file takes its line of the same file), a token without a
// role is warned about by line and name, and reads land in DATA/access.log,
// synced when serve stops.
func TestServeRolesAndAccessLog(t *testing.T) {
	dir, addr := t.TempDir(), freeAddr(t)
	tokenFile := filepath.Join(t.TempDir(), "tokens")
	os.WriteFile(tokenFile, []byte("ingest-s3cret,apiserver,role=ingest\nviewer-s3cret,alice,role=viewer\nold-s3cret\n"), 0o600)
	viewerFile := filepath.Join(t.TempDir(), "viewer")
	os.WriteFile(viewerFile, []byte("viewer-s3cret,alice,role=viewer\n"), 0o600)
	var logs bytes.Buffer
	e := &env{stdin: strings.NewReader(""), stdout: io.Discard, stderr: &logs, logLevel: "warn"}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := serveCmd(e)
	cmd.SetArgs([]string{"--data", dir, "--listen", addr, "--detect=false", "--token-file", tokenFile})
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()
	do := func(token, method, path, body string) int {
		t.Helper()
		var resp *http.Response
		var err error
		for start := time.Now(); time.Since(start) < 10*time.Second; time.Sleep(50 * time.Millisecond) {
			req, _ := http.NewRequest(method, "http://"+addr+path, strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+token)
			if resp, err = http.DefaultClient.Do(req); err == nil {
				break
			}
		}
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	ev := `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"x1","stage":"ResponseComplete","requestURI":"/api","verb":"get","user":{"username":"u"},"requestReceivedTimestamp":"2026-11-23T10:00:00.000001Z","stageTimestamp":"2026-11-23T10:00:00.000002Z"}`
	if c := do("ingest-s3cret", "POST", "/ingest/webhook", ev); c != 200 {
		t.Errorf("ingest token writing: %d", c)
	}
	if c := do("ingest-s3cret", "GET", "/api/v1/events", ""); c != 403 {
		t.Errorf("ingest token reading: %d, want 403", c)
	}
	code, out, errOut := run("query", "--server", "http://"+addr, "--token-file", viewerFile, "-o", "jsonl", "verb=get")
	if code != 0 || !strings.Contains(out, `"x1"`) {
		t.Errorf("query --server as the viewer: exit %d, %q %q", code, out, errOut)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), tokenFile+":3: token line 3 has no role") || strings.Contains(logs.String(), "s3cret") {
		t.Errorf("serve's warnings: %s", logs.String())
	}
	raw, err := os.ReadFile(filepath.Join(dir, server.AccessLogFile))
	if err != nil {
		t.Fatal(err)
	}
	var whos []string
	for _, l := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		var e struct{ Who, Role, Endpoint string }
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Fatalf("access log line %q: %v", l, err)
		}
		whos = append(whos, e.Who+" "+e.Role+" "+e.Endpoint)
	}
	if want := "apiserver ingest GET /api/v1/events|alice viewer GET /api/v1/events"; strings.Join(whos, "|") != want || strings.Contains(string(raw), "s3cret") {
		t.Errorf("access log:\n%s\nwant %s", raw, want)
	}
}
