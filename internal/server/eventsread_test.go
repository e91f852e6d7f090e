package server

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/kubetrail/kubetrail/internal/audit"
	"github.com/kubetrail/kubetrail/internal/pipeline"
	"github.com/kubetrail/kubetrail/internal/query"
	"github.com/kubetrail/kubetrail/internal/store/local"
)

// manyEventsDB stores n events of users u0..u9 (and "rare" every 1000th),
// one a second from 2026-11-23T00:00:00Z but arriving out of time order,
// with runs of equal times, over WAL segments small enough to be sealed.
func manyEventsDB(t *testing.T, n int) *local.DB {
	t.Helper()
	db, err := local.Open(t.TempDir(), local.Options{WALSegmentBytes: 64 << 10, NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	start := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)
	dec := audit.NewDecoder(audit.Limits{})
	for b := 0; b < n; b += 500 {
		var lines []string
		for i := b; i < min(b+500, n); i++ {
			user := fmt.Sprintf("u%d", i%10)
			if i%1000 == 999 {
				user = "rare"
			}
			// Swapped neighbours arrive out of order; every fifth shares
			// its neighbour's second.
			sec := i ^ 1
			if i%5 == 0 {
				sec = i + 1
			}
			ts := start.Add(time.Duration(sec) * time.Second).Format(time.RFC3339Nano)
			lines = append(lines, fmt.Sprintf(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"id-%d","stage":"ResponseComplete","requestURI":"/api/v1/pods","verb":"get","user":{"username":%q},"requestReceivedTimestamp":%q,"stageTimestamp":%q}`, i, user, ts, ts))
		}
		var recs []audit.Record
		dec.DecodeBody("test", []byte(strings.Join(lines, "\n")), func(r audit.Record) { recs = append(recs, r) }, func(p audit.Problem) { t.Fatal(p.String()) })
		if _, err := db.Append(context.Background(), &pipeline.Batch{Cluster: "c", Received: time.Now(), Records: recs}); err != nil {
			t.Fatal(err)
		}
	}
	return db
}

// countingSource counts the hits the store gives readEvents.
type countingSource struct {
	*local.Reader
	hits, selects int
}

func (c *countingSource) Select(sel local.Selection, fn func(*local.Hit) error) error {
	c.selects++
	return c.Reader.Select(sel, func(h *local.Hit) error {
		c.hits++
		return fn(h)
	})
}

// naiveEvents is what the events API did before readEvents: every match,
// sorted stably, then cut.
func naiveEvents(t *testing.T, rd *local.Reader, sel local.Selection, sortBy string, limit int, tail bool) []string {
	var ids []string
	var times []int64
	err := rd.Select(sel, func(h *local.Hit) error {
		ids = append(ids, h.Event.AuditID)
		times = append(times, h.Time)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	idx := make([]int, len(ids))
	for i := range idx {
		idx[i] = i
	}
	if sortBy != "stored" {
		sort.SliceStable(idx, func(i, j int) bool {
			if sortBy == "-time" {
				return times[idx[i]] > times[idx[j]]
			}
			return times[idx[i]] < times[idx[j]]
		})
	}
	if limit > 0 && len(idx) > limit {
		if tail {
			idx = idx[len(idx)-limit:]
		} else {
			idx = idx[:limit]
		}
	}
	out := make([]string, len(idx))
	for i, k := range idx {
		out[i] = ids[k]
	}
	return out
}

func hitIDs(t *testing.T, hits []storedHit) []string {
	var ids []string
	for _, h := range hits {
		var ev audit.Event
		if err := audit.DecodeStored(h.raw, &ev); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, ev.AuditID)
	}
	return ids
}

// TestReadEventsIsTheNaiveAnswer compares readEvents with reading every
// match, sorting and cutting, over orders, limits, tails, filters and
// ranges.
func TestReadEventsIsTheNaiveAnswer(t *testing.T) {
	const n = 3000
	db := manyEventsDB(t, n)
	rd, err := db.OpenReader()
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	start := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC).UnixMicro()
	for _, filter := range []string{"", "user=u3", "user=rare", "user=nobody"} {
		for _, rng := range [][2]int64{{0, 0}, {start + 1000e6, 0}, {0, start + 2000e6}, {start + 500e6, start + 520e6}} {
			sel := local.Selection{Since: rng[0], Until: rng[1], NeedEvent: true}
			if filter != "" {
				if sel.Filter, err = query.Compile(filter); err != nil {
					t.Fatal(err)
				}
			}
			for _, sortBy := range []string{"time", "-time", "stored"} {
				for _, limit := range []int{0, 1, 2, 7, 100, 299, 300, 301, n - 1, n, n + 5} {
					for _, tail := range []bool{false, true} {
						hits, err := readEvents(rd, sel, sortBy, limit, tail)
						if err != nil {
							t.Fatal(err)
						}
						want := naiveEvents(t, rd, sel, sortBy, limit, tail)
						if got := hitIDs(t, hits); !slices.Equal(got, want) {
							t.Fatalf("filter %q range %v sort %s limit %d tail %v:\n got %d %v\nwant %d %v", filter, rng, sortBy, limit, tail, len(got), got[:min(len(got), 8)], len(want), want[:min(len(want), 8)])
						}
					}
				}
			}
		}
	}
}

// TestReadEventsStopsAtLimit holds readEvents to reading about limit
// matches, not every one: the answer to "the newest 10" over 20,000
// events must come from a few windows at the newest end.
func TestReadEventsStopsAtLimit(t *testing.T) {
	const n = 20000
	db := manyEventsDB(t, n)
	rd, err := db.OpenReader()
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	rare, _ := query.Compile("user=rare")
	f := func(name string, sel local.Selection, sortBy string, limit int, tail bool, most int) {
		t.Helper()
		sel.NeedEvent = true
		c := &countingSource{Reader: rd}
		hits, err := readEvents(c, sel, sortBy, limit, tail)
		if err != nil {
			t.Fatal(err)
		}
		if len(hits) != limit {
			t.Errorf("%s: %d events, want %d", name, len(hits), limit)
		}
		if c.hits > most {
			t.Errorf("%s: read %d matches in %d selects for %d events; want at most %d", name, c.hits, c.selects, limit, most)
		}
	}
	f("newest 10", local.Selection{}, "-time", 10, false, 100)
	f("oldest 10", local.Selection{}, "time", 10, false, 100)
	f("follow's last 10", local.Selection{}, "time", 10, true, 100)
	f("first 10 stored", local.Selection{}, "stored", 10, false, 10)
	f("newest 500", local.Selection{}, "-time", 500, false, 2500)
	// 20 rare events, one every 1000 seconds: windows widen until 3 are held.
	f("newest 3 rare", local.Selection{Filter: rare}, "-time", 3, false, 10)
}

// TestEventsAPIOverSegments: over sealed segments, a filter the columns
// decide (user=rare) and an audit ID lookup give the events' stored
// bytes, as a full scan finds them. The handler asks for the bytes
// (Selection.NeedRaw); without it a hit the columns decided has none and
// the answer is empty lines.
func TestEventsAPIOverSegments(t *testing.T) {
	db := manyEventsDB(t, 3000)
	// Over sealed segments, as its name says: its six WAL segments are
	// sealed by two sealers, and a reader opened while the first is still
	// in the WAL reads the second's segment before it (sort=stored then
	// gave id-999 before id-7, once the API answered fast enough to ask
	// before the seals were done).
	for start := time.Now(); db.Stats().Sealed.Load() < 6; time.Sleep(time.Millisecond) {
		if time.Since(start) > 10*time.Second {
			t.Fatalf("%d WAL segments sealed after 10 s, want 6", db.Stats().Sealed.Load())
		}
	}
	s, err := New(Config{Listen: "127.0.0.1:0"}, db, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()
	for _, tc := range []struct{ filter, want string }{
		{"user=rare", "id-999,id-1999,id-2999"},
		{`auditid="id-1234"`, "id-1234"},
		{`(auditid="id-7" or user=rare)`, "id-7,id-999,id-1999,id-2999"},
	} {
		resp, err := http.Get(ts.URL + "/api/v1/events?sort=stored&filter=" + url.QueryEscape(tc.filter))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", tc.filter, resp.StatusCode, b)
		}
		if ids := auditIDs(t, strings.Split(strings.TrimSpace(string(b)), "\n")); strings.Join(ids, ",") != tc.want {
			t.Errorf("%s: %v, want %s", tc.filter, ids, tc.want)
		}
	}
}
