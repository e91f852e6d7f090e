package cli

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kubetrail/kubetrail/internal/investigate/investigatetest"
	"github.com/kubetrail/kubetrail/internal/pipeline"
	"github.com/kubetrail/kubetrail/internal/query"
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
		appendEvents(t, db, evs)
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

// floorless gives a local reader's hits without their floors (as a
// ClickHouse store's): printInTime then settles every row at the end,
// as the sort it replaced did.
type floorless struct{ r *local.Reader }

func (f floorless) Select(sel local.Selection, fn func(*local.Hit) error) error {
	sel.NeedEvent = true // Column reads the event: the hit has no columns
	return f.r.Select(sel, func(h *local.Hit) error {
		c := local.Hit{Cluster: h.Cluster, Time: h.Time, Received: h.Received, Raw: h.Raw, Event: h.Event}
		return fn(&c)
	})
}

func (f floorless) CountMatching(sel local.Selection) (int64, error) { return f.r.CountMatching(sel) }
func (f floorless) Span() (int, int64, int64)                        { return f.r.Span() }

// TestPrintInTimeMatchesASort: for every format, with and without
// --limit, --since, a filter the columns decide and one that needs the
// text, printInTime over the store's floors prints the bytes it prints
// with every row settled at the end (a stable sort of the stored order),
// over segments whose times overlap, go back and tie, events of the
// years 1 and 9999, and events still in the WAL.
func TestPrintInTimeMatchesASort(t *testing.T) {
	dir := t.TempDir()
	db, err := local.Open(dir, local.Options{NoSync: true, WALSegmentBytes: 4 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rng := rand.New(rand.NewPCG(7, 8))
	n := 0
	for b := range 60 {
		var evs []*investigatetest.Event
		for range 6 {
			sec := float64(b*10 + rng.IntN(25))
			if b%4 == 3 {
				sec -= 300
			}
			ev := investigatetest.Req(sec, "alice", []string{"get", "list", "delete"}[rng.IntN(3)], fmt.Sprintf("/api/v1/namespaces/default/pods/p%d", rng.IntN(3))).Obj("pods", "default", "p")
			ev.Ev.AuditID = fmt.Sprintf("id-%d", n)
			k := n % 11
			if k == 0 && b > 5 {
				k = 3 // the year 1 only early: floors must rise after
			}
			switch k {
			case 0:
				ev.Ev.StageTimestamp.Time = time.Date(1, 1, 1, 0, 0, 1, 0, time.UTC)
			case 1:
				ev.Ev.StageTimestamp.Time = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)
			case 2:
				ev.Ev.StageTimestamp.Time = investigatetest.T0 // ties across segments
			}
			n++
			evs = append(evs, ev)
		}
		appendEvents(t, db, evs)
	}
	r, err := local.OpenReader(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	printWith := func(src eventSource, format string, sel local.Selection, limit int) string {
		var out, errb bytes.Buffer
		p, err := newPrinter(format, &out)
		if err != nil {
			t.Fatal(err)
		}
		p.ctx = context.Background()
		sel.NeedRaw = p.needsEvent()
		if err := p.printInTime(&env{stdout: &out, stderr: &errb}, src, sel, limit); err != nil {
			t.Fatal(err)
		}
		return out.String() + errb.String()
	}
	since := investigatetest.T0.Add(200 * time.Second).UnixMicro()
	compared := 0
	for _, filter := range []string{"", "verb=get", `uri~"p1$"`} {
		var f *query.Filter
		if filter != "" {
			if f, err = query.Compile(filter); err != nil {
				t.Fatal(err)
			}
		}
		for _, s := range []int64{0, since} {
			sel := local.Selection{Filter: f, Since: s}
			for _, format := range []string{"jsonl", "json", "yaml", "csv", "table", "wide"} {
				for _, limit := range []int{0, 1, 7, 60} {
					got, want := printWith(r, format, sel, limit), printWith(floorless{r}, format, sel, limit)
					if got != want {
						t.Fatalf("%q since %d -o %s --limit %d: floors print\n%.600s\nwant\n%.600s", filter, s, format, limit, got, want)
					}
					compared++
				}
			}
		}
	}
	if compared == 0 || n < 300 {
		t.Fatal("nothing compared")
	}
}

// TestQueryLimitAndDamage: `query --limit N` stops reading once its rows
// are known: a segment it never reaches is not read, and damage in it
// does not fail the answer (as --jq's stored order); the reading that
// meets it fails with the segment named, after the events printed
// before it. The damage the store lists (here a file in quarantine)
// is still reported, exit 3, however early the reading stopped.
// Mutation: printInTime returning errEnough (no rows known early) fails
// the first; withDamage skipped when the limit is reached fails the last.
func TestQueryLimitAndDamage(t *testing.T) {
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(filepath.Join("..", "store", "local", "testdata", "v4"))); err != nil {
		t.Fatal(err)
	}
	// The last segment in stored order, and in time.
	seg := filepath.Join(dir, "segments", "0000000000000013-0000000000000013.kts")
	b, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	copy(b[len(b)/3:], bytes.Repeat([]byte{0xff}, 8))
	if err := os.WriteFile(seg, b, 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errs := run("query", "--data", dir, "-o", "jsonl", "--limit", "1")
	if code != 0 || strings.Count(out, "\n") != 1 || errs != "" {
		t.Fatalf("--limit 1: exit %d, %d lines, stderr %q", code, strings.Count(out, "\n"), errs)
	}
	code, out, errs = run("query", "--data", dir, "-o", "jsonl")
	if code != 1 || !strings.Contains(errs, "0000000000000013-0000000000000013.kts") || out == "" {
		t.Fatalf("the whole read: exit %d, %d lines, stderr %q", code, strings.Count(out, "\n"), errs)
	}
	if err := os.Mkdir(filepath.Join(dir, "quarantine"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "quarantine", "x.kts"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errs = run("query", "--data", dir, "-o", "jsonl", "--limit", "1")
	if code != 3 || strings.Count(out, "\n") != 1 || !strings.Contains(errs, "x.kts") {
		t.Fatalf("--limit 1 with a file in quarantine: exit %d, %d lines, stderr %q", code, strings.Count(out, "\n"), errs)
	}
}

// appendEvents stores evs in db as one batch of cluster prod.
func appendEvents(t *testing.T, db *local.DB, evs []*investigatetest.Event) {
	t.Helper()
	recs, err := investigatetest.Records(evs)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Append(context.Background(), &pipeline.Batch{Cluster: "prod", Received: time.Now(), Records: recs}); err != nil {
		t.Fatal(err)
	}
}
