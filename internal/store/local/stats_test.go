package local

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/kubetrail/kubetrail/internal/audit"
	"github.com/kubetrail/kubetrail/internal/pipeline"
	"github.com/kubetrail/kubetrail/internal/query"
)

// TestStatsBytesMatchesNaiveSum sums stored bytes per group with StatsOf
// and by hand from a full scan, over segments of several blocks (some
// holding one user only, whose size StatsOf takes from the block's meta
// without reading it) and events still in the WAL.
func TestStatsBytesMatchesNaiveSum(t *testing.T) {
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(7, 8))
	dec := audit.NewDecoder(audit.Limits{})
	var stored int64
	// Small batches of mixed users, and large ones of one user that fill
	// whole blocks (blockBytes); a WAL segment holds two batches. The
	// store is closed, which seals the WAL, before the last batch.
	var db *DB
	for b := 0; b < 5; b++ {
		if b == 0 || b == 4 {
			if db != nil {
				if err := db.Close(); err != nil {
					t.Fatal(err)
				}
			}
			var err error
			if db, err = Open(dir, Options{WALSegmentBytes: 8 << 20, NoSync: true}); err != nil {
				t.Fatal(err)
			}
		}
		batch := &pipeline.Batch{Cluster: "c", Received: time.Now()}
		for i := 0; i < 600; i++ {
			rec := genEvent(rng, b*1000+i)
			ev := rec.Event
			pad := 4000
			if b%2 == 1 {
				ev.User.Username = fmt.Sprintf("bulk-%d", b)
				pad = 28000
			}
			if ev.RequestObject == nil { // some hold a password, for free text
				ev.RequestObject = json.RawMessage(fmt.Sprintf(`{"pad":%q}`, strings.Repeat("x", rng.IntN(pad))))
			}
			raw, _ := json.Marshal(&ev)
			dec.DecodeBody("gen", raw, func(r audit.Record) { rec = r }, func(p audit.Problem) { t.Fatal(p.String()) })
			stored += int64(len(rec.Raw))
			batch.Records = append(batch.Records, rec)
		}
		if _, err := db.Append(context.Background(), batch); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { db.Close() })
	r, err := OpenReader(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	multi := 0
	for _, s := range r.segs {
		if len(s.r.meta.Blocks) > 1 {
			multi++
		}
	}
	if multi < 2 || len(r.head) == 0 {
		t.Fatalf("%d segments of several blocks and %d events in the WAL: the test needs both", multi, len(r.head))
	}

	hour := int64(time.Hour / time.Microsecond)
	mid := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC).Add(2500 * 37 * time.Second).UnixMicro()
	type statsCase struct {
		filter       string
		by           []Column
		interval     int64
		since, until int64
	}
	cases := []statsCase{
		{"", nil, 0, 0, 0},
		{"", []Column{ColUser}, 0, 0, 0},
		{"", []Column{ColCluster}, 0, 0, 0},
		{"", []Column{ColUser, ColVerb}, 0, 0, 0},
		{"", []Column{ColUser}, hour, 0, 0},
		{"", nil, 24 * hour, 0, 0},
		{"verb=get", []Column{ColUser}, 0, 0, 0},
		{"user=bulk-1", []Column{ColResource}, 0, 0, 0},
		{"user=bulk-3", nil, 0, 0, 0},
		{"", []Column{ColUser}, 0, mid, 0},
		{"", []Column{ColUser}, 0, 0, mid},
		{`"password"`, []Column{ColNamespace}, 0, 0, 0}, // needs the events
		{"code>=400", []Column{ColSourceIPs}, 6 * hour, 0, 0},
	}
	// The naive answers, from one full scan: every event decoded, each
	// case's filter and bounds tested on it.
	type sums struct{ n, bytes int64 }
	want := make([]map[string]sums, len(cases))
	wantTotal := make([]sums, len(cases))
	filters := make([]*query.Filter, len(cases))
	for i, tc := range cases {
		want[i] = map[string]sums{}
		if tc.filter != "" {
			filters[i], _ = query.Compile(tc.filter)
		}
	}
	r.Select(Selection{NeedEvent: true}, func(h *Hit) error {
		for i, tc := range cases {
			if (tc.since != 0 && h.Time < tc.since) || (tc.until != 0 && h.Time >= tc.until) ||
				(filters[i] != nil && !filters[i].Match(h.Event, h.Cluster)) {
				continue
			}
			k := ""
			if tc.interval > 0 {
				k = fmt.Sprint(h.Time - h.Time%tc.interval)
			}
			for _, c := range tc.by {
				k += "|" + h.Column(c)
			}
			s := want[i][k]
			s.n++
			s.bytes += int64(len(h.Raw))
			want[i][k] = s
			wantTotal[i].n++
			wantTotal[i].bytes += int64(len(h.Raw))
		}
		return nil
	})
	for i, tc := range cases {
		want, wantTotal := want[i], wantTotal[i]
		sel := Selection{Filter: filters[i], Since: tc.since, Until: tc.until}
		if wantTotal.n == 0 {
			t.Fatalf("%q: selects nothing; the case tests nothing", tc.filter)
		}
		for _, byBytes := range []bool{false, true} {
			name := fmt.Sprintf("%q by %v every %d since %d until %d (by bytes %v)", tc.filter, tc.by, tc.interval, tc.since, tc.until, byBytes)
			got, total, err := r.StatsOf(sel, StatsOptions{By: tc.by, Interval: tc.interval, Bytes: true, ByBytes: byBytes})
			if err != nil {
				t.Fatal(err)
			}
			if total.Count != wantTotal.n || total.Bytes != wantTotal.bytes || len(got) != len(want) {
				t.Fatalf("%s: %d events of %d bytes in %d groups, want %d of %d in %d", name, total.Count, total.Bytes, len(got), wantTotal.n, wantTotal.bytes, len(want))
			}
			for _, g := range got {
				k := ""
				if tc.interval > 0 {
					k = fmt.Sprint(g.Bucket)
				}
				for _, v := range g.Key {
					k += "|" + v
				}
				if w := want[k]; g.Count != w.n || g.Bytes != w.bytes {
					t.Errorf("%s: group %q has %d events of %d bytes, want %d of %d", name, k, g.Count, g.Bytes, w.n, w.bytes)
				}
			}
			ordered := sort.SliceIsSorted(got, func(i, j int) bool {
				a, b := got[i], got[j]
				if a.Bucket != b.Bucket {
					return a.Bucket < b.Bucket
				}
				if byBytes {
					return a.Bytes > b.Bytes
				}
				return a.Count > b.Count
			})
			if !ordered {
				t.Errorf("%s: groups out of order", name)
			}
			// Without Bytes, the same counts and no bytes.
			counts, ctotal, err := r.StatsOf(sel, StatsOptions{By: tc.by, Interval: tc.interval})
			if err != nil || ctotal.Count != total.Count || ctotal.Bytes != 0 || len(counts) != len(got) {
				t.Errorf("%s: without bytes: %+v %v", name, ctotal, err)
			}
		}
		if tc.filter == "" && tc.since == 0 && tc.until == 0 && wantTotal.bytes != stored {
			t.Errorf("all events hold %d bytes, %d were stored", wantTotal.bytes, stored)
		}
	}
}

// TestStatsIntervalRange: StatsOf itself refuses an interval outside
// MinInterval..MaxInterval, whoever calls it (a microsecond interval would
// make a bucket per event; a century one, a 1970 bucket).
func TestStatsIntervalRange(t *testing.T) {
	r, err := OpenReader(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for _, us := range []int64{1, int64(MinInterval/time.Microsecond) - 1, int64(MaxInterval/time.Microsecond) + 1, -5} {
		if _, _, err := r.StatsOf(Selection{}, StatsOptions{Interval: us}); err == nil || !strings.Contains(err.Error(), "want between 1s and 366d") {
			t.Errorf("interval %dus: %v, want the range", us, err)
		}
	}
	for _, us := range []int64{0, int64(MinInterval / time.Microsecond), int64(MaxInterval / time.Microsecond)} {
		if _, _, err := r.StatsOf(Selection{}, StatsOptions{Interval: us}); err != nil {
			t.Errorf("interval %dus: %v", us, err)
		}
	}
}
