package clickhouse

import (
	"context"
	"io"
	"net/http"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kubetrail/kubetrail/internal/pipeline"
	"github.com/kubetrail/kubetrail/internal/store/local"
)

// TestFollow: each Poll gives the events inserted since the last one,
// once: not a copy of an event given before (a retried batch, a second
// collector), and an insert stamped a little before the last event given
// (another collector's clock behind) still shows up.
func TestFollow(t *testing.T) {
	_, s := newDB(t, "kt_follow")
	ctx := context.Background()
	f := s.Follow(local.Selection{})
	poll := func() []string {
		t.Helper()
		var ids []string
		if err := f.Poll(ctx, func(h *local.Hit) error { ids = append(ids, h.Event.AuditID); return nil }); err != nil {
			t.Fatal(err)
		}
		return ids
	}
	if got := poll(); len(got) != 0 {
		t.Fatalf("an empty store gave %v", got)
	}
	a := newCollector(t, s, CollectorOptions{})
	b := newCollector(t, s, CollectorOptions{})
	appendDrain := func(c *Collector, batch int) {
		t.Helper()
		if _, err := c.Append(ctx, testBatch(t, batch, 20)); err != nil {
			t.Fatal(err)
		}
		if err := c.Drain(ctx); err != nil {
			t.Fatal(err)
		}
	}
	appendDrain(a, 0)
	if got, want := poll(), wantIDs(0, 1, 20); !slices.Equal(got, want) {
		t.Fatalf("first poll: %v, want %v", got, want)
	}
	appendDrain(b, 0) // the same events from another collector
	appendDrain(a, 1)
	appendDrain(a, 0) // and again from the first
	if got, want := poll(), wantIDs(1, 2, 20); !slices.Equal(got, want) {
		t.Fatalf("after new events and copies: %v, want only %v", got, want)
	}
	if got := poll(); len(got) != 0 {
		t.Fatalf("nothing new, yet %v", got)
	}
	// An insert stamped 5 s before the last event given.
	rows, _ := appendRows(nil, testBatch(t, 2, 20))
	st := stamper{seq: f.last - uint64(5*time.Second)}
	body, err := st.add(nil, rows)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.insertRows(ctx, body); err != nil {
		t.Fatal(err)
	}
	if got, want := poll(), wantIDs(2, 3, 20); !slices.Equal(got, want) {
		t.Fatalf("a late insert: %v, want %v", got, want)
	}
}

// countingTransport counts the bytes of the answers a store reads.
type countingTransport struct {
	rt http.RoundTripper
	n  *atomic.Int64
}

func (c countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := c.rt.RoundTrip(req)
	if err == nil {
		resp.Body = countingBody{resp.Body, c.n}
	}
	return resp, err
}

type countingBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (b countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	return n, err
}

// TestFollowReadsTheMarginsKeysOnly: a poll looks FollowMargin back in
// insert time, but the events it gave already are read again as keys
// and stamps, not as stored lines: a poll that finds nothing new reads
// a small part of the margin's bytes. And nothing is missed or doubled:
// a late insert stamped below the newest event given shows up once,
// copies of events given (merges stopped, so they are rows) never.
// Planted: Follow reading the margin whole (selectAfter, dropping known
// keys after reading them) fails the byte count; selectNew giving every
// row of a key rather than its first arrival doubles b1 in Arrivals.
func TestFollowReadsTheMarginsKeysOnly(t *testing.T) {
	_, s := newDB(t, "kt_follow_keys")
	ctx := context.Background()
	if err := s.c.exec(ctx, "SYSTEM STOP MERGES kt_follow_keys.events"); err != nil {
		t.Fatal(err)
	}
	var read atomic.Int64
	s.c.http.Transport = countingTransport{s.c.http.Transport, &read}
	f := s.Follow(local.Selection{})
	poll := func() []string {
		t.Helper()
		var ids []string
		if err := f.Poll(ctx, func(h *local.Hit) error { ids = append(ids, h.Event.AuditID); return nil }); err != nil {
			t.Fatal(err)
		}
		return ids
	}
	b0 := testBatch(t, 0, 40)
	if _, err := s.Append(ctx, b0); err != nil {
		t.Fatal(err)
	}
	if got, want := poll(), wantIDs(0, 1, 40); !slices.Equal(got, want) {
		t.Fatalf("first poll: %v, want %v", got, want)
	}
	raw := 0
	for _, r := range b0.Records {
		raw += len(r.Raw)
	}
	read.Store(0)
	if got := poll(); len(got) != 0 {
		t.Fatalf("nothing new, yet %v", got)
	}
	if n := read.Load(); n*4 > int64(raw) {
		t.Errorf("a poll that found nothing read %d bytes; the margin's events hold %d bytes of lines and should not be read again", n, raw)
	}
	// New events twice, copies of the given ones (twice), and a late
	// insert stamped 5 s before the newest event given.
	b1 := testBatch(t, 1, 40)
	for _, b := range []*pipeline.Batch{b1, b0, b1, b0} {
		if _, err := s.Append(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	rows, _ := appendRows(nil, testBatch(t, 2, 40))
	st := stamper{seq: f.last - uint64(5*time.Second)}
	body, err := st.add(nil, rows)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.insertRows(ctx, body); err != nil {
		t.Fatal(err)
	}
	want := append(wantIDs(2, 3, 40), wantIDs(1, 2, 40)...) // arrival order: the late insert's stamp is older
	if got := poll(); !slices.Equal(got, want) {
		t.Errorf("after new events, copies and a late insert: %v, want %v", got, want)
	}
	if got := poll(); len(got) != 0 {
		t.Errorf("nothing new, yet %v", got)
	}
	// Arrivals as the detector asks, b0's keys known: b2 and b1, each once.
	given := map[local.Key]bool{}
	for _, r := range b0.Records {
		given[local.KeyOf(b0.Cluster, r.Raw)] = true
	}
	var got []string
	err = s.Arrivals(ctx, local.Selection{}, 1, func(k local.Key) bool { return given[k] }, func(h *local.Hit, _ uint64) error {
		got = append(got, h.Event.AuditID)
		return nil
	})
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("arrivals with b0's keys known: %v, %v; want %v", got, err, want)
	}
}
