package cli

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kubetrail/kubetrail/internal/server"
	"github.com/kubetrail/kubetrail/internal/store/local"
)

// TestShutdownEndsFollowers: serve stopping while a query --follow client
// is connected ends the stream at once (it held the shutdown for its 30 s
// timeout), and the follower says the stream ended and exits non-zero
// (it exited 0 without a word).
// Mutation it catches: the follow loop not watching the server's
// shutdown (Run takes 30 s; the test's 10 s bound fails it).
func TestShutdownEndsFollowers(t *testing.T) {
	db, err := local.Open(t.TempDir(), local.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	s, err := server.New(server.Config{Listen: "127.0.0.1:0", Tokens: []string{"s3cret"}}, db, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	addr := make(chan string, 1)
	ran := make(chan error, 1)
	go func() { ran <- s.Run(ctx, func(a string) { addr <- a }) }()
	url := "http://" + <-addr
	tokenFile := filepath.Join(t.TempDir(), "token")
	os.WriteFile(tokenFile, []byte("s3cret\n"), 0o600)

	type result struct {
		code   int
		stderr string
	}
	followed := make(chan result, 1)
	go func() {
		code, _, errOut := run("query", "--follow", "--server", url, "--token-file", tokenFile)
		followed <- result{code, errOut}
	}()
	time.Sleep(300 * time.Millisecond) // the follower is connected and waiting
	began := time.Now()
	cancel()
	select {
	case err := <-ran:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("shutdown is still waiting for the follower after 10 s")
	}
	took := time.Since(began)
	select {
	case r := <-followed:
		if r.code == 0 || !strings.Contains(r.stderr, "shutting down") {
			t.Fatalf("follower: exit %d, stderr %q; want non-zero, saying the server is shutting down", r.code, r.stderr)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the follower did not end")
	}
	t.Logf("shutdown with a follower took %v", took)
}
