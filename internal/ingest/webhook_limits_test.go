package ingest

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kubetrail/kubetrail/internal/pipeline"
	"github.com/kubetrail/kubetrail/internal/store/local"
)

// answer is a webhook reply as a client sees it.
type answer struct {
	code       int
	retryAfter string
	size       int
	resp       WebhookResponse
}

func send(t *testing.T, url string, body []byte, header ...string) answer {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	// A timeout turns a request stuck in a blocked sink into a failure.
	resp, err := (&http.Client{Timeout: time.Minute}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	a := answer{code: resp.StatusCode, retryAfter: resp.Header.Get("Retry-After"), size: len(data)}
	if err := json.Unmarshal(data, &a.resp); err != nil {
		t.Fatalf("answer is not JSON: %v: %.200s", err, data)
	}
	return a
}

func gzipped(t testing.TB, b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}

// gzipBomb is n zero bytes, gzip-compressed (about n/1000 bytes).
func gzipBomb(t testing.TB, n int) []byte {
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	zero := make([]byte, 1<<20)
	for ; n > 0; n -= len(zero) {
		zw.Write(zero[:min(n, len(zero))])
	}
	zw.Close()
	return buf.Bytes()
}

// emptyItems is an EventList of n "{}" items: 3n bytes that used to cost
// the server a reply of 93 bytes per item.
func emptyItems(n int) []byte {
	var b bytes.Buffer
	b.WriteString(`{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":[{}`)
	for i := 1; i < n; i++ {
		b.WriteString(",{}")
	}
	b.WriteString("]}")
	return b.Bytes()
}

// fakeSink answers every batch with err, after release is closed when set.
type fakeSink struct {
	err     error
	release chan struct{}
	entered chan struct{}
}

func (f *fakeSink) Append(ctx context.Context, b *pipeline.Batch) (pipeline.Result, error) {
	if f.entered != nil {
		f.entered <- struct{}{}
	}
	if f.release != nil {
		<-f.release
	}
	if f.err != nil {
		return pipeline.Result{}, f.err
	}
	return pipeline.Result{Stored: len(b.Records)}, nil
}

// TestWebhookStatusAndRetryAfter pins the status and Retry-After of every
// answer that tells the sender what to do: the API server retries 429 and
// 503 and drops a batch answered 4xx otherwise, so 429 turned into 503 or
// 413 into 400 changes what happens to the events. Planted bugs, each
// caught here: ErrOverloaded answered 503; Retry-After not set on 429;
// the budget's 429 answered 503; a gzip bomb read past the limit.
func TestWebhookStatusAndRetryAfter(t *testing.T) {
	body := []byte(eventList(item("s1"), item("s2")))
	f := func(name string, sink pipeline.Sink, cfg WebhookConfig, body []byte, wantCode int, wantRetry, wantErr string, header ...string) {
		t.Helper()
		srv := httptest.NewServer(NewWebhook(sink, cfg))
		defer srv.Close()
		a := send(t, srv.URL, body, header...)
		if a.code != wantCode || a.retryAfter != wantRetry {
			t.Errorf("%s: %d Retry-After %q, want %d %q (%+v)", name, a.code, a.retryAfter, wantCode, wantRetry, a.resp)
		}
		if !strings.Contains("error: "+a.resp.Error, wantErr) {
			t.Errorf("%s: error %q does not say %q", name, a.resp.Error, wantErr)
		}
	}
	f("stored", &fakeSink{}, WebhookConfig{}, body, 200, "", "")
	f("store overloaded", &fakeSink{err: pipeline.ErrOverloaded}, WebhookConfig{}, body, 429, "1", "nothing was stored, retry")
	f("disk full", &fakeSink{err: fmt.Errorf("%w: write wal: no space left on device", pipeline.ErrUnavailable)}, WebhookConfig{}, body, 503, "5", "no space left on device")
	f("store closed", &fakeSink{err: pipeline.ErrClosed}, WebhookConfig{}, body, 503, "5", "sink closed")
	f("body too large", &fakeSink{}, WebhookConfig{MaxBodyBytes: 100}, body, 413, "", "over the 100-byte limit")
	f("gzip", &fakeSink{}, WebhookConfig{}, gzipped(t, body), 200, "", "", "Content-Encoding", "gzip")
	f("gzip over the limit once decompressed", &fakeSink{}, WebhookConfig{MaxBodyBytes: 200}, gzipped(t, body), 413, "", "decompressed body is over the 200-byte limit", "Content-Encoding", "gzip")
	// Random bytes do not compress: the wire limit is reached first.
	noise := make([]byte, 1000)
	rand.Read(noise)
	f("gzip on the wire over the limit", &fakeSink{}, WebhookConfig{MaxBodyBytes: 200}, gzipped(t, noise), 413, "", "error: body is over the 200-byte limit", "Content-Encoding", "gzip")
	f("gzip garbage", &fakeSink{}, WebhookConfig{}, []byte("not gzip at all"), 400, "", "gzip:", "Content-Encoding", "gzip")
	f("unknown encoding", &fakeSink{}, WebhookConfig{}, body, 415, "", `Content-Encoding "br" is not supported`, "Content-Encoding", "br")
	f("two encodings", &fakeSink{}, WebhookConfig{}, body, 415, "", "not supported", "Content-Encoding", "gzip, br")

	// A real store that has shut down.
	db, err := local.Open(t.TempDir(), local.Options{})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	f("store unavailable", db, WebhookConfig{}, body, 503, "5", "retry")
}

// TestWebhookMemoryBudget: requests in flight share one memory budget. A
// request that does not fit while others hold it gets 429 with
// Retry-After, and fits again once they are answered; a batch that alone
// needs more than the budget gets 413, since retrying cannot help.
// Planted bugs: give() never called (the retry after release gets 429);
// the budget's 429 answered 503 (code check).
func TestWebhookMemoryBudget(t *testing.T) {
	items := func(prefix string, n int) []byte {
		var its []string
		for i := range n {
			its = append(its, item(fmt.Sprintf("%s-%d", prefix, i)))
		}
		return []byte(eventList(its...))
	}
	// About 0.5 MB of body and 1.5 MB of decoded events each: one fits in
	// 3 MiB, two do not.
	first, second := items("a", 1000), items("b", 1000)
	sink := &fakeSink{release: make(chan struct{}), entered: make(chan struct{}, 1)}
	srv := httptest.NewServer(NewWebhook(sink, WebhookConfig{MaxBodyBytes: 4 << 20, MaxInflightBytes: 3 << 20}))
	defer srv.Close()

	var wg sync.WaitGroup
	var held answer
	wg.Go(func() { held = send(t, srv.URL, first) })
	<-sink.entered // the first request holds its share, waiting to be stored
	a := send(t, srv.URL, second)
	if a.code != 429 || a.retryAfter != "1" || !strings.Contains(a.resp.Error, "--max-inflight-bytes") || a.resp.Stored != 0 {
		t.Errorf("over the budget: %d Retry-After %q %+v, want 429 with Retry-After 1", a.code, a.retryAfter, a.resp)
	}
	close(sink.release)
	wg.Wait()
	if held.code != 200 || held.resp.Stored != 1000 {
		t.Errorf("first request: %d %+v", held.code, held.resp)
	}
	sink.entered = nil
	if a := send(t, srv.URL, second); a.code != 200 || a.resp.Stored != 1000 {
		t.Errorf("retry once the budget is free: %d %+v", a.code, a.resp)
	}
	if a := send(t, srv.URL, items("c", 3000)); a.code != 413 || a.retryAfter != "" || !strings.Contains(a.resp.Error, "send smaller batches") {
		t.Errorf("batch larger than the whole budget: %d Retry-After %q %+v, want 413", a.code, a.retryAfter, a.resp)
	}
}

func TestWebhookConfigCheck(t *testing.T) {
	if err := (WebhookConfig{}).Check(); err != nil {
		t.Errorf("defaults: %v", err)
	}
	if err := (WebhookConfig{MaxBodyBytes: 100 << 20}).Check(); err != nil {
		t.Errorf("a larger body limit scales the default budget: %v", err)
	}
	err := (WebhookConfig{MaxBodyBytes: 32 << 20, MaxInflightBytes: 64 << 20}).Check()
	if err == nil || !strings.Contains(err.Error(), "at least four times --max-body-bytes") {
		t.Errorf("budget below four bodies: %v", err)
	}
}
