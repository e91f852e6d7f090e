//go:build !race

// The race detector multiplies memory and time, so peak memory is measured
// only without it.

package ingest

import (
	"fmt"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync"
	"testing"
	"time"
)

// peakHeap runs f and returns the highest Go heap (live and not yet
// collected objects) seen while it ran, above what it was before.
func peakHeap(f func()) uint64 {
	runtime.GC()
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	read := func() uint64 { metrics.Read(s); return s[0].Value.Uint64() }
	base := read()
	peak := base
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			peak = max(peak, read())
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
		}
	})
	f()
	close(stop)
	wg.Wait()
	peak = max(peak, read())
	return peak - min(base, peak)
}

// TestWebhookHostileMemory sends hostile bodies, some many at once, and
// asserts for each the status, what is stored, the size of the answer and
// the peak Go heap of the whole process (server, store and client).
//
// The bounds: 10 parallel lists of 1M "{}" items (3 MB each) stay under
// 160 MiB; before, one such list took the server to 548 MB and got a 93 MB
// answer. A gzip bomb of 1 GiB stays under 3x the 32 MiB body limit.
// Planted bugs, each caught here: the rejection list uncapped (answer size
// and heap), the decompressed size unchecked (heap and status).
func TestWebhookHostileMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("sends about 100 MB of hostile bodies")
	}
	srv, dir := newTestWebhook(t, WebhookConfig{})
	url := srv.URL + "/ingest/webhook?cluster=hostile"
	million := emptyItems(1_000_000)
	good := func(id string) string { return item(id) }
	type tc struct {
		name        string
		body        []byte
		header      []string
		parallel    int
		wantCode    int
		wantStored  int
		wantReject  int // rejectedCount
		wantInError string
		maxReply    int
		maxHeap     uint64
	}
	cases := []tc{
		{"1M empty items, 10 at once", million, nil, 10, 400, 0, 1_000_000, "no usable audit event", 4 << 10, 160 << 20},
		{"NUL inside one item", []byte(eventList(good("nul1"), strings.Replace(good("nul2"), "alice", "al\x00ice", 1), good("nul3"))), nil, 1, 200, 2, 1, "", 4 << 10, 32 << 20},
		{"syntax error inside one item", []byte(eventList(good("syn1"), strings.Replace(good("syn2"), `"verb":"delete"`, `"verb" "delete"`, 1), good("syn3"))), nil, 1, 200, 2, 1, "", 4 << 10, 32 << 20},
		{"20 MiB of nesting", []byte(`{"kind":"EventList","items":[` + strings.Repeat("[", 20<<20) + `]}`), nil, 1, 400, 0, 1, "nested deeper than 100 levels", 4 << 10, 96 << 20},
		{"deep item beside good ones", []byte(eventList(good("deep1"), `{"level":"Request","requestObject":`+strings.Repeat("[", 1<<20)+strings.Repeat("]", 1<<20)+`}`, good("deep2"))), nil, 1, 200, 2, 1, "", 4 << 10, 32 << 20},
		{"gzip bomb, 1 GiB", gzipBomb(t, 1<<30), []string{"Content-Encoding", "gzip"}, 1, 413, 0, 0, "decompressed body is over the 33554432-byte limit", 4 << 10, 96 << 20},
		{"gzip EventList", gzipped(t, []byte(eventList(good("gz1"), good("gz2")))), []string{"Content-Encoding", "gzip"}, 1, 200, 2, 0, "", 4 << 10, 32 << 20},
		{"unknown Content-Encoding", gzipped(t, []byte(eventList(good("br1")))), []string{"Content-Encoding", "br"}, 1, 415, 0, 0, `Content-Encoding "br" is not supported`, 4 << 10, 32 << 20},
	}
	for _, c := range cases {
		answers := make([]answer, c.parallel)
		heap := peakHeap(func() {
			var wg sync.WaitGroup
			for i := range c.parallel {
				wg.Go(func() { answers[i] = send(t, url, c.body, c.header...) })
			}
			wg.Wait()
		})
		for _, a := range answers {
			if a.code != c.wantCode || a.resp.Stored != c.wantStored || a.resp.RejectedCount != c.wantReject {
				t.Errorf("%s: %d stored %d rejected %d, want %d stored %d rejected %d (%.300s)", c.name, a.code, a.resp.Stored, a.resp.RejectedCount, c.wantCode, c.wantStored, c.wantReject, fmt.Sprint(a.resp))
			}
			if !strings.Contains(a.resp.Error, c.wantInError) {
				t.Errorf("%s: error %q does not say %q", c.name, a.resp.Error, c.wantInError)
			}
			if a.size > c.maxReply {
				t.Errorf("%s: answer of %d bytes, over %d", c.name, a.size, c.maxReply)
			}
			if len(a.resp.Rejected) > MaxListedRejections || len(a.resp.Rejected)+a.resp.RejectedNotListed != a.resp.RejectedCount {
				t.Errorf("%s: %d rejections listed, %d not listed, %d counted", c.name, len(a.resp.Rejected), a.resp.RejectedNotListed, a.resp.RejectedCount)
			}
		}
		t.Logf("%s: peak heap +%.1f MiB (bound %d MiB), answer %d bytes", c.name, float64(heap)/(1<<20), c.maxHeap>>20, answers[0].size)
		if heap > c.maxHeap {
			t.Errorf("%s: peak heap grew by %.1f MiB, over the %d MiB bound", c.name, float64(heap)/(1<<20), c.maxHeap>>20)
		}
	}
	if got, want := strings.Join(storedIDs(t, dir), " "), "nul1 nul3 syn1 syn3 deep1 deep2 gz1 gz2"; got != want {
		t.Errorf("stored %q, want %q", got, want)
	}
}
