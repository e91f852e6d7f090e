package cli

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kubetrail/kubetrail/internal/investigate/investigatetest"
	"github.com/kubetrail/kubetrail/internal/pipeline"
	"github.com/kubetrail/kubetrail/internal/store/local"
)

// TestPrinterKeepsEveryEvent: the copies a printer keeps until it sorts
// (in slabs) each hold their event's bytes after many more events were
// kept, across slab boundaries and for events too large for a slab.
// Mutation it catches: a full slab reused instead of a new one.
func TestPrinterKeepsEveryEvent(t *testing.T) {
	p := &printer{}
	var want, got [][]byte
	for i := range 3000 {
		n := 1 + (i*7919)%3000
		if i%500 == 0 {
			n = slabBytes/4 + 1 + i
		}
		raw := bytes.Repeat([]byte{byte('a' + i%26)}, n)
		raw[0] = byte(i)
		want = append(want, raw)
		got = append(got, p.keep(slices.Clone(raw)))
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("event %d (%d bytes): kept %d bytes, not its own", i, len(want[i]), len(got[i]))
		}
	}
}

// TestQueryPrintsInTimeOrder: `query -o jsonl` (and json, csv, table with
// --limit) prints the events oldest first, events of one time in stored
// order, as a stable sort of the stored order would, over sealed segments
// whose times overlap and go back, and events still in the WAL; with
// --limit the first rows of that order. Printing settles rows as the
// store's floors rise (printInTime), so this is what holds it to a sort.
// Mutation it catches: every row kept settled at each floor (not only
// those at or below it).
func TestQueryPrintsInTimeOrder(t *testing.T) {
	dir := t.TempDir()
	db, err := local.Open(dir, local.Options{NoSync: true, WALSegmentBytes: 4 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rng := rand.New(rand.NewPCG(9, 9))
	n := 0
	for b := range 80 {
		var evs []*investigatetest.Event
		for range 5 {
			sec := float64(b*10 + rng.IntN(15)) // ties and overlaps
			if b%3 == 2 {
				sec -= 100 // a batch that goes back
			}
			ev := investigatetest.Req(sec, "alice", "get", "/api/v1/namespaces/default/pods/p").Obj("pods", "default", "p")
			ev.Ev.AuditID = fmt.Sprintf("id-%d", n)
			n++
			evs = append(evs, ev)
		}
		recs, err := investigatetest.Records(evs)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.Append(context.Background(), &pipeline.Batch{Cluster: "prod", Received: time.Now(), Records: recs}); err != nil {
			t.Fatal(err)
		}
	}
	// The reference: the stored order, sorted stably by time.
	r, err := local.OpenReader(dir)
	if err != nil {
		t.Fatal(err)
	}
	type ev struct {
		time int64
		raw  string
	}
	var stored []ev
	if err := r.Select(local.Selection{NeedRaw: true}, func(h *local.Hit) error {
		stored = append(stored, ev{h.Time, string(h.Raw)})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	r.Close()
	slices.SortStableFunc(stored, func(a, b ev) int { return cmp.Compare(a.time, b.time) })
	var want []string
	for _, e := range stored {
		want = append(want, e.raw)
	}
	if len(want) != n {
		t.Fatalf("%d events stored of %d", len(want), n)
	}
	for _, limit := range []int{0, 1, 17, 150, n - 1} {
		code, out, errs := run("query", "--data", dir, "-o", "jsonl", "--limit", fmt.Sprint(limit))
		if code != 0 {
			t.Fatalf("exit %d: %s", code, errs)
		}
		got := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		w := want
		if limit > 0 {
			w = want[:limit]
		}
		if !slices.Equal(got, w) {
			for i := range min(len(got), len(w)) {
				if got[i] != w[i] {
					t.Fatalf("--limit %d: line %d of %d is\n%s\nwant\n%s", limit, i, len(got), got[i], w[i])
				}
			}
			t.Fatalf("--limit %d: %d lines, want %d", limit, len(got), len(w))
		}
	}
	// The formats that settle before printing give as many rows.
	for _, o := range []string{"json", "csv", "table"} {
		code, out, errs := run("query", "--data", dir, "-o", o, "--limit", "40")
		if code != 0 || out == "" {
			t.Fatalf("-o %s: exit %d: %s", o, code, errs)
		}
		if o == "json" {
			if c := strings.Count(out, `"auditID"`); c != 40 {
				t.Fatalf("-o json --limit 40: %d events", c)
			}
		} else if c := strings.Count(out, "\n"); c != 41 {
			t.Fatalf("-o %s --limit 40: %d lines", o, c)
		}
	}
}
