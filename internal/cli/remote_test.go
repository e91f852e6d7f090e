package cli

import (
	"bytes"
	"context"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kubetrail/kubetrail/internal/investigate/investigatetest"
	"github.com/kubetrail/kubetrail/internal/pipeline"
	"github.com/kubetrail/kubetrail/internal/server"
	"github.com/kubetrail/kubetrail/internal/store/local"
)

// serveIncident stores investigatetest's incident in a data folder and
// serves it with a bearer token. It returns the folder, the server's URL
// and a token file.
func serveIncident(t *testing.T) (dir, url, tokenFile string) {
	t.Helper()
	dir = t.TempDir()
	db, err := local.Open(dir, local.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	recs, err := investigatetest.Records(investigatetest.Incident())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Append(context.Background(), &pipeline.Batch{Cluster: "prod", Received: time.Now(), Records: recs}); err != nil {
		t.Fatal(err)
	}
	s, err := server.New(server.Config{Listen: "127.0.0.1:0", Tokens: []string{"s3cret"}}, db, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	tokenFile = filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir, ts.URL, tokenFile
}

// run runs the CLI and returns its exit code, stdout and stderr.
func run(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := Main(args, strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

// TestServerAndDataPrintTheSame runs every investigation, and stats, on
// the data folder and through the server that serves it: the output must
// be the same, byte for byte, in every format.
func TestServerAndDataPrintTheSame(t *testing.T) {
	dir, url, tokenFile := serveIncident(t)
	cmds := [][]string{
		{"who", "delete", "secrets/important", "-n", "production"},
		{"who", "deleted", "secret", "important"},
		{"who", "*", "pods/web/exec", "-n", "prod*"},
		{"who", "get,list", "secrets", "--since", "2026-11-23T10:00:11Z", "--until", "2026-11-23T10:01:00Z"},
		{"activity", "alice"},
		{"activity", "admin", "--where", "verb!=get", "--limit", "3"},
		{"history", "deploy/web", "-n", "production"},
		{"history", "deployments.apps", "web", "--reads", "--diff=false"},
		{"secrets"},
		{"secrets", "--since", "100000h"},
		{"execs"},
		{"denied"},
		{"denied", "--where", "code=403"},
		{"rbac"},
		{"from", "192.168.1.100"},
		{"from", "192.168.0.0/16", "--where", "user=eve"},
		{"who", "delete", "secrets/nothing"}, // no rows
	}
	for _, c := range cmds {
		formats := []string{"table", "wide", "json", "jsonl"}
		for _, f := range formats {
			args := append(append([]string(nil), c...), "-o", f)
			lc, lout, lerr := run(append(args, "--data", dir)...)
			rc, rout, rerr := run(append(args, "--server", url, "--token-file", tokenFile)...)
			if lc != 0 || rc != 0 {
				t.Fatalf("%v: exit %d (%s) with --data, %d (%s) with --server", args, lc, lerr, rc, rerr)
			}
			if lout != rout {
				t.Errorf("%v: --data prints\n%s\n--server prints\n%s", args, lout, rout)
			}
			if f == "table" && strings.TrimSpace(lout) == "" {
				t.Errorf("%v prints nothing", args)
			}
		}
	}
	for _, c := range [][]string{
		{"stats", "--by", "user"},
		{"stats", "--by", "user", "--bytes", "--top", "3"},
		{"stats", "--by", "verb,resource", "--bytes", "--sort", "count", "resource=secrets"},
		{"stats", "--bytes", "--interval", "1h", `"production"`},
		{"stats", "--by", "user", "--sort", "bytes", "--since", "2026-11-23T10:00:30Z"},
	} {
		lc, lout, lerr := run(append(c, "--data", dir)...)
		rc, rout, rerr := run(append(c, "--server", url, "--token-file", tokenFile)...)
		if lc != 0 || rc != 0 {
			t.Fatalf("%v: exit %d (%s) with --data, %d (%s) with --server", c, lc, lerr, rc, rerr)
		}
		if lout != rout {
			t.Errorf("%v: --data prints\n%s\n--server prints\n%s", c, lout, rout)
		}
	}
}

func TestServerErrors(t *testing.T) {
	dir, url, tokenFile := serveIncident(t)
	f := func(wantCode int, wantErr string, args ...string) {
		t.Helper()
		code, out, stderr := run(args...)
		if code != wantCode || !strings.Contains(stderr, wantErr) || out != "" {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want %d saying %q", args, code, out, stderr, wantCode, wantErr)
		}
	}
	f(1, "server: unauthorized", "secrets", "--server", url)
	f(1, "server: unauthorized", "stats", "--server", url)
	// A mistake in --where is shown with its caret before anything is
	// asked, as with --data.
	f(2, "--where: column 1: unknown field \"usr\"", "denied", "--where", "usr=x", "--server", url, "--token-file", tokenFile)
	f(2, "--where: column 1: unknown field \"usr\"", "denied", "--where", "usr=x", "--data", dir)
	f(1, "server: addr: \"10.0.0.0/33\"", "from", "10.0.0.0/33", "--server", url, "--token-file", tokenFile)
	f(1, "--server \"localhost:1\": want http(s)://HOST:PORT", "execs", "--server", "localhost:1")
	f(1, "--sort \"size\": want count or bytes", "stats", "--sort", "size", "--data", dir)
}

// TestWhereWarnings: an investigation's --where says what query says of
// a filter that can only answer empty (a verb the API server never
// writes), from a data folder and through a server, and still runs.
// Mutation it catches: compiling --where without printing its warnings.
func TestWhereWarnings(t *testing.T) {
	dir, url, tokenFile := serveIncident(t)
	for _, where := range [][]string{{"--data", dir}, {"--server", url, "--token-file", tokenFile}} {
		code, _, errOut := run(append([]string{"denied", "--where", "verb=lst"}, where...)...)
		if code != 0 || !strings.Contains(errOut, `kubetrail: warning: --where: verb=lst: "lst" is not a verb the API server writes, so it matches nothing (did you mean list?)`) {
			t.Errorf("denied --where verb=lst %s: exit %d, stderr %q; want 0 and the warning", where[0], code, errOut)
		}
	}
}
