package clickhouse

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/kubetrail/kubetrail/internal/pipeline"
)

// TestInsertIntoAServerThatNeverAnswers: an insert to a server that
// takes the request and never answers (a hung shard) gives up after the
// insert timeout as pipeline.ErrUnavailable, which collectors and the
// pipeline retry (a collector on the next replica of the shard), instead
// of waiting forever while every other shard's rows wait with it.
//
// Planted: do without the insert timeout (the insert waits until the
// test's 5 s deadline: context.DeadlineExceeded).
func TestInsertIntoAServerThatNeverAnswers(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	s := Dial(Config{Endpoint: srv.URL, Database: "kt"})
	s.c.insertTimeout = 200 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	_, err := s.Append(ctx, testBatch(t, 0, 3))
	if !errors.Is(err, pipeline.ErrUnavailable) {
		t.Fatalf("insert into a server that never answers: %v; want pipeline.ErrUnavailable", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("the insert gave up after %v; its timeout is 200ms", d)
	}
}
