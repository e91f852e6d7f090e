package cli

import (
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

// TestDamageSetsExitCode checks the commands' side of damage: with a file
// in the quarantine folder, every reading command still prints its answer,
// names the file on stderr and exits 3; verify names it and exits 1; with
// the folder whole, verify exits 0.
// Mutation it catches: Main printing a DamageError as a plain error (exit
// 1, no PATH: reason lines), or a command that does not check Damaged.
func TestDamageSetsExitCode(t *testing.T) {
	dir := t.TempDir()
	db, err := local.Open(dir, local.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	recs, err := investigatetest.Records(investigatetest.Incident())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Append(context.Background(), &pipeline.Batch{Cluster: "prod", Received: time.Now(), Records: recs}); err != nil {
		t.Fatal(err)
	}
	db.Close()

	code, out, errOut := run("verify", "--data", dir)
	if code != 0 || out != "" || !strings.Contains(errOut, "every checksum, Merkle root and chain link holds") {
		t.Fatalf("verify of a whole folder: exit %d, %q %q", code, out, errOut)
	}
	q := filepath.Join(dir, "quarantine")
	os.MkdirAll(q, 0o700)
	os.WriteFile(filepath.Join(q, "wal-1-at-8.bad"), []byte("xx"), 0o600)
	os.WriteFile(filepath.Join(q, "wal-1-at-8.bad.reason"), []byte("wal/1.wal bytes 8-10: record checksum does not match\n"), 0o600)
	policyFile := filepath.Join(t.TempDir(), "policy.yaml")
	os.WriteFile(policyFile, []byte("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n"), 0o600)
	want := filepath.Join(q, "wal-1-at-8.bad") + ": quarantined: wal/1.wal bytes 8-10: record checksum does not match"

	for _, args := range [][]string{
		{"query", "verb=delete"},
		{"query", "--count", ""},
		{"query", "--jq", "select(.verb == \"delete\") | .user.username"},
		{"stats", "--by", "user"},
		{"export"},
		{"who", "delete", "secrets"},
		{"denied"},
		{"timeline"},
		{"policy", "simulate", policyFile},
	} {
		code, out, errOut := run(append(args, "--data", dir)...)
		if code != 3 || !strings.Contains(errOut, want) || out == "" {
			t.Errorf("%v: exit %d, stdout %d bytes, stderr %q; want the answer, %q on stderr, exit 3", args, code, len(out), errOut, want)
		}
	}
	code, out, _ = run("verify", "--data", dir)
	if code != 1 || strings.TrimSpace(out) != want {
		t.Fatalf("verify with a quarantined file: exit %d, %q", code, out)
	}

	// Through a server: its answers name the damage, the client exits 3.
	db, err = local.Open(dir, local.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	s, err := server.New(server.Config{Listen: "127.0.0.1:0", Tokens: []string{"s3cret"}}, db, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()
	tokenFile := filepath.Join(t.TempDir(), "token")
	os.WriteFile(tokenFile, []byte("s3cret\n"), 0o600)
	for _, args := range [][]string{
		{"query", "verb=delete"},
		{"stats", "--by", "user"},
		{"who", "delete", "secrets"},
		{"timeline", "-o", "jsonl"},
	} {
		code, out, errOut := run(append(args, "--server", ts.URL, "--token-file", tokenFile)...)
		if code != 3 || !strings.Contains(errOut, want) || out == "" {
			t.Errorf("%v --server: exit %d, stdout %d bytes, stderr %q; want the answer, %q on stderr, exit 3", args, code, len(out), errOut, want)
		}
	}
}
