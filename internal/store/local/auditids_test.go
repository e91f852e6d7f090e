package local

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/kubetrail/kubetrail/internal/audit"
	"github.com/kubetrail/kubetrail/internal/pipeline"
	"github.com/kubetrail/kubetrail/internal/query"
	"github.com/kubetrail/kubetrail/internal/vfs"
	"github.com/kubetrail/kubetrail/internal/wal"
)

// TestStoredAuditIDAgreesWithDecoding: the audit ID read from the text
// must be the one decoding gives, or the table hides the event.
func TestStoredAuditIDAgreesWithDecoding(t *testing.T) {
	f := func(raw string) {
		t.Helper()
		var ev, scratch audit.Event
		if err := audit.DecodeStored([]byte(raw), &ev); err != nil {
			t.Fatalf("%s: %v", raw, err)
		}
		got, err := storedAuditID([]byte(raw), &scratch)
		if err != nil || got != ev.AuditID {
			t.Errorf("%s: %q, %v; decoding gives %q", raw, got, err, ev.AuditID)
		}
	}
	f(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"a1","verb":"get"}`)
	// A body's key before the event's own.
	f(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","requestObject":{"auditID":"fake"},"auditID":"a2","verb":"get"}`)
	// Escapes in the value.
	f(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"a\u0033","verb":"get"}`)
	f(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"a\"4","verb":"get"}`)
	// No audit ID, or only in a body.
	f(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","verb":"get"}`)
	f(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","requestObject":{"auditID":"fake"},"verb":"get"}`)
	// Another case, which encoding/json accepts.
	f(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","AuditID":"a5","requestObject":{"auditID":"fake"},"verb":"get"}`)
	// A key that ends in the name, escaped quote and all.
	f(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","x\"auditID":"evil","verb":"get"}`)
	// Spaces around the colon.
	f(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID" : "a6","verb":"get"}`)
	// A second key spelling auditID with an escape: encoding/json decodes
	// it, and the last one wins.
	f(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"a7","verb":"get","\u0061uditID":"evil"}`)
	f(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"a8","verb":"get","audit\u0049D":"evil"}`)
}

// TestAuditIDLookupMatchesFullScan looks audit IDs up through the
// segments' tables and compares with a full scan: the same events, and
// the tables must narrow the segment to those events (plus a rare
// fingerprint collision), not leave it whole.
//
// It runs on each form of the table a segment may hold: by ordinal (v5),
// sorted (v4, and v5 segments written before 2026-12-05).
func TestAuditIDLookupMatchesFullScan(t *testing.T) {
	for _, c := range []struct {
		name   string
		layout segLayout
		form   byte // the table's first byte: auditByOrdinal, or a plane width
	}{
		{"v5", segLayout{}, auditByOrdinal},
		{"v5 sorted", segLayout{sortedAuditTable: true}, 4},
		{"v4", segLayout{version: 4}, 4},
	} {
		t.Run(c.name, func(t *testing.T) {
			l := c.layout
			l.groupBytes, l.blockBytes, l.blockEvents = 32<<10, 4<<10, 4
			testAuditIDLookup(t, l, c.form)
		})
	}
}

func testAuditIDLookup(t *testing.T, layout segLayout, form byte) {
	dir := t.TempDir()
	db, err := Open(dir, Options{WALSegmentBytes: 128 << 10, layout: layout})
	if err != nil {
		t.Fatal(err)
	}
	// Events whose text is not plain: the writer must decode them.
	odd := []string{
		`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","requestObject":{"auditID":"id-7"},"auditID":"odd-1","stage":"ResponseComplete","requestURI":"/","verb":"get","user":{},"stageTimestamp":"2026-11-20T00:00:00.000000Z"}`,
		`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"odd\u002d2","stage":"ResponseComplete","requestURI":"/","verb":"get","user":{},"stageTimestamp":"2026-11-20T00:00:00.000000Z"}`,
	}
	for _, raw := range odd {
		var rec audit.Record
		audit.NewDecoder(audit.Limits{}).DecodeBody("odd", []byte(raw), func(r audit.Record) { rec = r }, func(p audit.Problem) { t.Fatal(p.String()) })
		if _, err := db.Append(context.Background(), &pipeline.Batch{Cluster: "c", Received: time.Now(), Records: []audit.Record{rec}}); err != nil {
			t.Fatal(err)
		}
	}
	// Every tenth audit ID twice: a client may reuse one.
	rng := rand.New(rand.NewPCG(5, 6))
	for b := 0; b < 12; b++ {
		batch := &pipeline.Batch{Cluster: "c", Received: time.Now()}
		for i := 0; i < 150; i++ {
			n := b*150 + i
			if n%10 == 9 {
				n -= 5
			}
			batch.Records = append(batch.Records, genEvent(rng, n))
		}
		if _, err := db.Append(context.Background(), batch); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { db.Close() })
	// Compacted segments hold several WAL segments' events (parts): Scan
	// must give each candidate its own part's position. Compaction takes
	// sealed segments only: wait until every WAL segment but the open one
	// is sealed (under -race sealing lagged behind, and nothing merged).
	for k := 0; k < 2000; k++ {
		if ws, _ := wal.ListSegments(filepath.Join(dir, walDir)); len(ws) <= 1 {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := db.Compact(context.Background(), Compaction{Below: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	// And a batch left in the WAL, one of its audit IDs also sealed.
	tail := &pipeline.Batch{Cluster: "c", Received: time.Now()}
	for i := 0; i < 20; i++ {
		tail.Records = append(tail.Records, genEvent(rng, 1800+i*7%30))
	}
	if _, err := db.Append(context.Background(), tail); err != nil {
		t.Fatal(err)
	}
	r, err := OpenReader(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	parts := 0
	for _, s := range r.segs {
		parts = max(parts, len(s.r.meta.parts()))
	}
	if len(r.segs) == 0 || len(r.head) == 0 || parts < 3 {
		t.Fatalf("%d segments (at most %d parts), %d events in the WAL: the test wants several segments, compacted ones, and the WAL", len(r.segs), parts, len(r.head))
	}
	for _, s := range r.segs {
		m := &s.r.meta
		plain, err := (*scratch)(nil).frame(s.r, r.dec, m.AuditOff, m.AuditLen)
		if err != nil || plain[0] != form {
			t.Fatalf("%s: audit ID table of form %#x (%v), want %#x", s.r.f.Name(), plain[0], err, form)
		}
	}
	var all []audit.Event
	if err := Scan(dir, ScanOptions{}, func(s Stored) error {
		var ev audit.Event
		all = append(all, ev)
		return audit.DecodeStored(s.Raw, &all[len(all)-1])
	}); err != nil {
		t.Fatal(err)
	}
	ids := []string{"odd-1", "odd-2", "id-7", "id-4", "id-1799", "id-0", "id-999999", `id-3" or "id-5`}
	for k := 0; k < 20; k++ {
		ids = append(ids, fmt.Sprintf("id-%d", rng.IntN(1900)))
	}
	// Scan with AuditIDs (`kubetrail prove AUDITID`): the same positions
	// as a full scan, having given few others.
	for _, id := range ids {
		var want, got []Pos
		if err := Scan(dir, ScanOptions{}, func(s Stored) error {
			var ev audit.Event
			if err := audit.DecodeStored(s.Raw, &ev); err != nil || ev.AuditID != id {
				return err
			}
			want = append(want, s.Pos)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		given := 0
		if err := Scan(dir, ScanOptions{AuditIDs: []string{id}}, func(s Stored) error {
			given++
			var ev audit.Event
			if err := audit.DecodeStored(s.Raw, &ev); err != nil || ev.AuditID != id {
				return err
			}
			got = append(got, s.Pos)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("Scan for %q: %v, a full scan %v", id, got, want)
		}
		if given > len(want)+r.headLen()+2 {
			t.Fatalf("Scan for %q gave %d events for %d matching: the tables left them in", id, given, len(want))
		}
	}
	for _, id := range ids {
		for _, src := range []string{fmt.Sprintf("auditid=%q", id), fmt.Sprintf("auditid in (%q, \"id-12\") verb!=watch", id)} {
			f, err := query.Compile(src)
			if err != nil {
				t.Fatalf("%s: %v", src, err)
			}
			want := 0
			for i := range all {
				if f.Match(&all[i], "c") {
					want++
				}
			}
			got := 0
			read := map[*segView][]int32{}
			if err := r.Select(Selection{Filter: f}, func(h *Hit) error {
				got++
				if h.seg != nil {
					read[h.seg] = append(read[h.seg], int32(h.ord))
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if got != want {
				t.Fatalf("%s: %d events, a full scan finds %d", src, got, want)
			}
			p, err := makePlan(f)
			if err != nil {
				t.Fatal(err)
			}
			for _, s := range r.segs {
				c, skip, err := r.candidates(s, p, 0, 0, false)
				if err != nil {
					t.Fatal(err)
				}
				if skip {
					c = cands{}
				}
				if c.all || len(c.list) > len(read[s])+2 {
					t.Fatalf("%s: the segment's table leaves %d of %d events to read (all: %v) for %d matching", src, len(c.list), s.r.meta.Count, c.all, len(read[s]))
				}
			}
		}
	}
}

// TestDisjunctionCandidatesMatchFullScan: a disjunction of column
// conditions ((code in (401,403) or decision=forbid), the overview's
// denied requests) is answered from the columns: each segment's
// candidates are exactly the matching events, and Stats counts what a
// full scan counts.
func TestDisjunctionCandidatesMatchFullScan(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(dir, Options{WALSegmentBytes: 128 << 10, layout: segLayout{groupBytes: 32 << 10, blockBytes: 4 << 10, blockEvents: 4}})
	if err != nil {
		t.Fatal(err)
	}
	r, _ := readGenerated(t, dir, db, rand.New(rand.NewPCG(7, 8)), 12, func(b int) int { return 120 + b }, 200)
	if len(r.segs) < 3 {
		t.Fatalf("%d segments: the test wants several", len(r.segs))
	}
	for _, src := range []string{
		"(code in (401,403) or decision=forbid)",
		"(code in (401,403) or decision=forbid) verb=get",
		"(user=alice or resource=secrets or ns=production)",
		"(user=alice or (verb=delete and code>=400))",
		"(user=bob or auditid=id-5)",
		"(user=bob or level>=Request)",
		`(user=bob or "password")`, // a term no column answers: every event
	} {
		f, err := query.Compile(src)
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		p, err := makePlan(f)
		if err != nil {
			t.Fatal(err)
		}
		exact := map[*segView][]int32{}
		byUser := map[string]int64{}
		var total int64
		if err := r.Select(Selection{NeedEvent: true}, func(h *Hit) error {
			if !f.Match(h.Event, h.Cluster) {
				return nil
			}
			total++
			byUser[h.Event.User.Username]++
			if h.seg != nil {
				exact[h.seg] = append(exact[h.seg], int32(h.ord))
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		narrowed := 0
		for _, s := range r.segs {
			c, skip, err := r.candidates(s, p, 0, 0, false)
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case skip:
				c = cands{}
			case c.all:
				if len(exact[s]) != s.r.meta.Count && p.anyOf != nil {
					t.Fatalf("%s: every event of a segment is a candidate, %d match", src, len(exact[s]))
				}
				continue
			}
			narrowed++
			got := slices.Clone(c.list)
			if p.auditIDs == nil && !slices.Equal(got, exact[s]) && len(p.anyOf) > 0 && !hasOtherTerms(p) {
				t.Fatalf("%s: candidates %v, a full scan matches %v", src, got, exact[s])
			}
			for _, o := range exact[s] {
				if _, ok := slices.BinarySearch(got, o); !ok {
					t.Fatalf("%s: event %d matches but is no candidate", src, o)
				}
			}
		}
		if p.anyOf != nil && narrowed == 0 {
			t.Fatalf("%s: no segment narrowed", src)
		}
		got, n, err := r.Stats(Selection{Filter: f}, []Column{ColUser}, 0)
		if err != nil {
			t.Fatal(err)
		}
		if n != total || len(got) != len(byUser) {
			t.Fatalf("%s: stats count %d in %d groups, a full scan %d in %d", src, n, len(got), total, len(byUser))
		}
		for _, g := range got {
			if byUser[g.Key[0]] != g.Count {
				t.Fatalf("%s: user %q counts %d, a full scan %d", src, g.Key[0], g.Count, byUser[g.Key[0]])
			}
		}
	}
}

// hasOtherTerms says whether a plan's disjunctions hold a term whose
// candidates may be more than its matches.
func hasOtherTerms(p *plan) bool {
	for _, terms := range p.anyOf {
		for _, tp := range terms {
			if tp.residual || len(tp.timeTerm) > 0 {
				return true
			}
		}
	}
	return false
}

// TestVerifyChecksAuditTable: a table whose checksum holds but that gives
// an event another audit ID's print would hide the event from lookups;
// verify must name it.
func TestVerifyChecksAuditTable(t *testing.T) {
	for _, l := range []segLayout{{}, {sortedAuditTable: true}, {version: 4}} {
		l.groupBytes, l.blockBytes, l.blockEvents = 40<<10, 5<<10, 5
		testVerifyChecksAuditTable(t, l)
	}
}

func testVerifyChecksAuditTable(t *testing.T, layout segLayout) {
	write := func(dir string, wrong bool) string {
		enc, _ := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))
		defer enc.Close()
		w, err := newSegmentWriter(vfs.OS, dir, 1, 1, enc, layout, nil)
		if err != nil {
			t.Fatal(err)
		}
		rng := rand.New(rand.NewPCG(9, 10))
		for i := 0; i < 300; i++ {
			rec := genEvent(rng, i)
			if err := w.add(entry{cluster: "c", received: 1, time: rec.Event.StageTimestamp.UnixMicro(), raw: rec.Raw}, false); err != nil {
				t.Fatal(err)
			}
		}
		if wrong {
			w.auditPrints[123] = auditPrint("id-124")
		}
		path, err := w.finish(true)
		if err != nil {
			t.Fatal(err)
		}
		return path
	}
	if d := verifySegment(vfs.OS, write(t.TempDir(), false)); d != nil {
		t.Fatalf("an intact segment: %v", d)
	}
	d := verifySegment(vfs.OS, write(t.TempDir(), true))
	if len(d) != 1 || !strings.Contains(d[0].Reason, `event 123 has audit ID "id-123"`) {
		t.Fatalf("a wrong print: %v", d)
	}
}
