package ingest

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/kubetrail/kubetrail/internal/pipeline"
)

// keepSink keeps every batch it is given, as the store keeps records
// until they are written.
type keepSink struct {
	batches []*pipeline.Batch
	during  func() // called in each Append, when set
}

func (k *keepSink) Append(_ context.Context, b *pipeline.Batch) (pipeline.Result, error) {
	if k.during != nil {
		k.during()
	}
	k.batches = append(k.batches, b)
	return pipeline.Result{Stored: len(b.Records)}, nil
}

// TestWebhookBodyReuseKeepsRecords: the handler reads each body into a
// buffer an earlier request used, so records must own their bytes, not
// point into the body. Requests of the same size with other audit IDs
// follow one another; afterwards every record kept by the sink must still
// hold its own event, and the memory budget must be whole again. A
// small body read into the buffer of a large one must count the whole
// buffer in the budget while it holds it. Planted bugs: decode items that
// carry kind as owned (audit's decodeOwned keeps their bytes where they
// are, in the body): the first batches read as later ones; count only
// what the body needs of a reused buffer (taken := lim): the budget holds
// less than the buffer. The records' slice is made once, of the list's
// size (planted: the handler ignores DecodeBodySized's count).
func TestWebhookBodyReuseKeepsRecords(t *testing.T) {
	sink := &keepSink{}
	h := NewWebhook(sink, WebhookConfig{})
	const rounds, per = 20, 50
	id := func(r, i int) string { return fmt.Sprintf("r%03d-i%03d", r, i) }
	for r := range rounds {
		var items []string
		for i := range per {
			if i%2 == 0 {
				items = append(items, line(id(r, i))) // kind and apiVersion: stored as sent
			} else {
				items = append(items, item(id(r, i)))
			}
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/ingest/webhook", strings.NewReader(eventList(items...))))
		if w.Code != http.StatusOK {
			t.Fatalf("round %d: status %d: %s", r, w.Code, w.Body)
		}
	}
	if len(sink.batches) != rounds {
		t.Fatalf("%d batches, want %d", len(sink.batches), rounds)
	}
	for r, b := range sink.batches {
		if cap(b.Records) != per {
			t.Fatalf("round %d: records in a slice of %d for %d items: not sized from the list's count", r, cap(b.Records), per)
		}
		for i, rec := range b.Records {
			if want := line(id(r, i)); string(rec.Raw) != want || rec.Event.AuditID != id(r, i) {
				t.Fatalf("round %d item %d: stored %.120s (auditID %q), want %.120s", r, i, rec.Raw, rec.Event.AuditID, want)
			}
		}
	}
	if h.mem.used != 0 {
		t.Fatalf("the budget holds %d bytes after every request was answered", h.mem.used)
	}
	// A body of about 1 MiB, then a small one: the second reads into the
	// first's buffer (when the pool gives it back) and holds all of it.
	var big []string
	for i := range 2000 {
		big = append(big, item(id(99, i)))
	}
	bigBody := eventList(big...)
	var held int64
	// Ten tries: under -race, sync.Pool drops a quarter of what it is
	// given, on purpose.
	for range 10 {
		sink.during = nil
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/ingest/webhook", strings.NewReader(bigBody)))
		if w.Code != http.StatusOK {
			t.Fatalf("big body: status %d: %s", w.Code, w.Body)
		}
		sink.during = func() {
			h.mem.mu.Lock()
			held = h.mem.used
			h.mem.mu.Unlock()
		}
		w = httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/ingest/webhook", strings.NewReader(eventList(item("small")))))
		if w.Code != http.StatusOK {
			t.Fatalf("small body: status %d: %s", w.Code, w.Body)
		}
		if held > int64(len(bigBody)) {
			return // the big body's buffer was reused and counted
		}
	}
	t.Fatalf("a small body after a %d-byte one held %d bytes of the budget: a reused buffer is not counted whole (or never reused)", len(bigBody), held)
}
