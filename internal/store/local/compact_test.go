package local

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
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

func TestPlanCompaction(t *testing.T) {
	f := func(sizes []int64, below int64, want string) {
		t.Helper()
		var segs []segInfo
		for i, s := range sizes {
			segs = append(segs, segInfo{segmentFile: segmentFile{first: uint64(i), last: uint64(i)}, size: s, minT: int64(i), maxT: int64(i)})
		}
		var got []string
		for _, g := range planCompaction(segs, Compaction{Below: below}) {
			got = append(got, fmt.Sprintf("%d-%d", g[0].first, g[len(g)-1].last))
		}
		if s := strings.Join(got, " "); s != want {
			t.Errorf("sizes %v below %d: merges %q, want %q", sizes, below, s, want)
		}
	}
	f(nil, 100, "")
	f([]int64{10}, 100, "")
	f([]int64{10, 10}, 100, "0-1")
	f([]int64{10, 10, 10, 10, 10}, 100, "0-4")
	// A large segment is not rewritten to add a little to it...
	f([]int64{60, 10, 10}, 100, "1-2")
	// ...only once the small ones add up to as much as it holds.
	f([]int64{40, 20, 10, 10}, 100, "0-3")
	// Segments at or over the size are never merged, nor merged across.
	f([]int64{10, 10, 100, 10, 10}, 100, "0-1 3-4")
	// The output stays within the size.
	f([]int64{30, 30, 30, 30, 30}, 100, "0-2 3-4")
	f([]int64{10, 10}, 0, "")

	// Nor beyond the time span.
	day := (24 * time.Hour).Microseconds()
	segs := []segInfo{
		{segmentFile: segmentFile{first: 1, last: 1}, size: 1, minT: 0, maxT: 10},
		{segmentFile: segmentFile{first: 2, last: 2}, size: 1, minT: 20, maxT: 30},
		{segmentFile: segmentFile{first: 3, last: 3}, size: 1, minT: day, maxT: day + 10},
		{segmentFile: segmentFile{first: 4, last: 4}, size: 1, minT: day + 20, maxT: day + 30},
	}
	if g := planCompaction(segs, Compaction{Below: 100}); len(g) != 2 || len(g[0]) != 2 || len(g[1]) != 2 {
		t.Errorf("a day apart: %d merges, want two of two segments", len(g))
	}
}

func TestSplitSuperseded(t *testing.T) {
	segs := []segmentFile{{first: 1, last: 1}, {first: 1, last: 5}, {first: 3, last: 3}, {first: 5, last: 5}, {first: 6, last: 6}, {first: 7, last: 9}, {first: 9, last: 9}}
	slices.SortFunc(segs, func(a, b segmentFile) int {
		if a.first != b.first {
			return int(a.first) - int(b.first)
		}
		return int(b.last) - int(a.last)
	})
	live, stale := splitSuperseded(segs)
	str := func(ss []segmentFile) string {
		var out []string
		for _, s := range ss {
			out = append(out, fmt.Sprintf("%d-%d", s.first, s.last))
		}
		return strings.Join(out, " ")
	}
	if got := str(live); got != "1-5 6-6 7-9" {
		t.Errorf("live %q", got)
	}
	if got := str(stale); got != "1-1 3-3 5-5 9-9" {
		t.Errorf("superseded %q", got)
	}
}

// namedEvent is genEvent with a name of its own, so that dictionaries of
// merged segments grow past the Bloom filter threshold.
func namedEvent(rng *rand.Rand, i int) audit.Record {
	rec := genEvent(rng, i)
	ev := rec.Event
	if ev.ObjectRef == nil {
		ev.ObjectRef = &audit.ObjectReference{Resource: "pods", APIVersion: "v1", Namespace: "ns"}
	}
	ev.ObjectRef.Name = fmt.Sprintf("pod-%d", i)
	raw, _ := json.Marshal(&ev)
	audit.NewDecoder(audit.Limits{}).DecodeBody("gen", raw, func(r audit.Record) { rec = r }, func(p audit.Problem) { panic(p.String()) })
	return rec
}

// smallBatches makes the batches the compaction tests store: batch b holds
// per events, alternately of cluster "default" and "prod".
func smallBatches(batches, per int) []*pipeline.Batch {
	rng := rand.New(rand.NewPCG(11, 12))
	var out []*pipeline.Batch
	for b := 0; b < batches; b++ {
		batch := &pipeline.Batch{Cluster: []string{"default", "prod"}[b%2], Received: time.Date(2026, 11, 23, 0, 0, b, 0, time.UTC)}
		for i := 0; i < per; i++ {
			batch.Records = append(batch.Records, namedEvent(rng, b*per+i))
		}
		out = append(out, batch)
	}
	return out
}

// openSmall opens a store that seals every group commit into its own
// segment, as a slow cluster or frequent restarts do.
func openSmall(t *testing.T, dir string) *DB {
	t.Helper()
	db, err := Open(dir, Options{WALSegmentBytes: 1, NoSync: true, layout: segLayout{groupBytes: 64 << 10, blockBytes: 8 << 10, blockEvents: 8}})
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func appendAll(t *testing.T, db *DB, batches []*pipeline.Batch) (stored, dups int) {
	t.Helper()
	for _, b := range batches {
		res, err := db.Append(context.Background(), b)
		if err != nil {
			t.Fatal(err)
		}
		stored += res.Stored
		dups += res.Duplicates
	}
	return stored, dups
}

// waitSettled waits until every WAL segment but the open one is sealed.
func waitSettled(t *testing.T, dir string) {
	t.Helper()
	// Settled: one WAL segment, empty. The committer rotates after it
	// answers (one-byte segments), so a last segment that still holds the
	// last batch is about to be rotated and sealed, and one more being
	// sealed is not listed in the MANIFEST yet.
	for k := 0; k < 1000; k++ {
		ws, _ := wal.ListSegments(filepath.Join(dir, walDir))
		if len(ws) == 0 {
			return
		}
		if len(ws) == 1 {
			if st, err := os.Stat(wal.SegmentPath(filepath.Join(dir, walDir), ws[0])); err == nil && st.Size() <= int64(len(wal.Magic)) {
				return
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("WAL segments were not sealed")
}

func segmentCount(t *testing.T, dir string) int {
	t.Helper()
	segs, err := listSegments(vfs.OS, filepath.Join(dir, segmentDir))
	if err != nil {
		t.Fatal(err)
	}
	return len(segs)
}

// TestCompactKeepsEveryEvent merges 60 small segments and checks that the
// events, their order, Select (against a full scan), Stats, the Bloom
// filters, de-duplication and retention are the same on the merged ones.
func TestCompactKeepsEveryEvent(t *testing.T) {
	dir := t.TempDir()
	db := openSmall(t, dir)
	defer func() { db.Close() }() // the DB reopened below, not this one
	batches := smallBatches(60, 40)
	appendAll(t, db, batches)
	waitSettled(t, dir)
	before := exportAll(t, dir)
	nBefore := segmentCount(t, dir)
	if nBefore < 55 {
		t.Fatalf("%d segments: the test wants one per batch", nBefore)
	}
	// The events are 37 s apart: 2400 of them span a day and an hour.
	c := Compaction{Below: 1 << 20, MaxSpan: 48 * time.Hour}
	res, err := db.Compact(context.Background(), c)
	if err != nil {
		t.Fatal(err)
	}
	nAfter := segmentCount(t, dir)
	t.Logf("%d segments (%d bytes) -> %d (%d bytes)", res.Inputs, res.BytesIn, nAfter, res.BytesOut)
	if res.Inputs < 55 || nAfter != 1 || db.Stats().Compacted.Load() != int64(res.Inputs) {
		t.Fatalf("compaction merged %d segments into %d; %d segments left", res.Inputs, res.Outputs, nAfter)
	}
	if res.BytesOut >= res.BytesIn {
		t.Errorf("merged segments take %d bytes, the small ones took %d", res.BytesOut, res.BytesIn)
	}
	if after := exportAll(t, dir); !slices.Equal(after, before) {
		t.Fatalf("events differ after compaction: %d before, %d after", len(before), len(after))
	}
	// Nothing to do a second time.
	if res, err := db.Compact(context.Background(), c); err != nil || res.Inputs != 0 {
		t.Fatalf("second pass: %+v %v", res, err)
	}

	// Select and Stats agree with a full scan; the merged segment keeps
	// names as postings although no small one did.
	r, err := OpenReader(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	postings := 0
	for _, s := range r.segs {
		if s.r.meta.Columns[ColName].Kind == kindPostings {
			postings++
		}
	}
	if postings == 0 {
		t.Error("no compacted segment keeps names as postings")
	}
	checkSelect(t, dir, r, rand.New(rand.NewPCG(13, 14)), 150,
		"name=pod-7", "name=pod-2399", "name=pod-99999", "name in (pod-5,pod-1200) cluster=prod",
		"received>=2026-11-20T12:00:00Z", "time<2026-11-20T12:00:00Z verb=get")
	groups, total, err := r.Stats(Selection{}, []Column{ColCluster}, 0)
	if err != nil || total != int64(len(before)) || len(groups) != 2 || groups[0].Count != 1200 {
		t.Errorf("stats by cluster: %+v total %d, %v", groups, total, err)
	}

	// Every part says where its WAL segment's events are, for a reader
	// that saw the WAL segment before it was sealed and compacted.
	seqs := map[uint64]bool{}
	for _, s := range r.segs {
		for _, p := range s.r.meta.Parts {
			seqs[p.WAL] = true
		}
	}
	if len(seqs) != 60 {
		t.Fatalf("the compacted segments name %d WAL segments, want 60", len(seqs))
	}
	for seq := range seqs {
		var got []string
		err := readSealed(vfs.OS, filepath.Join(dir, segmentDir), seq, func(sr *segmentReader, lo, hi int) error {
			dec, _ := zstd.NewReader(nil)
			defer dec.Close()
			return sr.scanRange(dec, lo, hi, nil, func(e entry) error { got = append(got, string(e.raw)); return nil })
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 40 {
			t.Fatalf("WAL segment %d: %d events, want 40", seq, len(got))
		}
		i := slices.Index(before, got[0])
		if i < 0 || !slices.Equal(before[i:i+40], got) {
			t.Fatalf("WAL segment %d: its events are not one batch", seq)
		}
	}

	// De-duplication finds every event in the merged segment, before and
	// after a restart.
	if stored, dups := appendAll(t, db, batches); stored != 0 || dups != 2400 {
		t.Fatalf("re-sent after compaction: %d stored, %d duplicates", stored, dups)
	}
	db.Close()
	db = openSmall(t, dir)
	if stored, dups := appendAll(t, db, batches); stored != 0 || dups != 2400 {
		t.Fatalf("re-sent after restart: %d stored, %d duplicates", stored, dups)
	}

	// Retention deletes merged segments whole, oldest first.
	n, _, err := db.Enforce(Retention{MaxBytes: 1}, time.Now())
	if err != nil || n == 0 {
		t.Fatalf("retention: %d deleted, %v", n, err)
	}
	if got := exportAll(t, dir); len(got) != 0 {
		t.Fatalf("%d events left after retention to 1 byte", len(got))
	}
	if stored, _ := appendAll(t, db, batches[:1]); stored != 40 {
		t.Fatalf("re-sent after retention: %d stored, want 40", stored)
	}
}

// checkSelect runs random filters (and extra ones) through Select and
// CountMatching and compares them with a full scan of the folder.
func checkSelect(t *testing.T, dir string, r *Reader, rng *rand.Rand, n int, extra ...string) {
	t.Helper()
	type stored struct {
		cluster, raw string
		ev           audit.Event
	}
	var all []stored
	if err := Scan(dir, ScanOptions{}, func(s Stored) error {
		st := stored{cluster: s.Cluster, raw: string(s.Raw)}
		all = append(all, st)
		return audit.DecodeStored(s.Raw, &all[len(all)-1].ev)
	}); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)
	srcs := extra
	for k := 0; k < n; k++ {
		srcs = append(srcs, genFilter(rng, 2))
	}
	for _, src := range srcs {
		f, err := query.CompileAt(src, now)
		if err != nil {
			t.Fatalf("%q: %v", src, err)
		}
		var want []string
		for _, s := range all {
			if f.Match(&s.ev, s.cluster) {
				want = append(want, s.raw)
			}
		}
		var got []string
		if err := r.Select(Selection{Filter: f, NeedEvent: true}, func(h *Hit) error {
			got = append(got, string(h.Raw))
			return nil
		}); err != nil {
			t.Fatalf("%q: %v", src, err)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("%q: Select finds %d events, a full scan %d (or in another order)", src, len(got), len(want))
		}
		if c, err := r.CountMatching(Selection{Filter: f}); err != nil || c != int64(len(want)) {
			t.Fatalf("%q: CountMatching %d (%v), want %d", src, c, err, len(want))
		}
	}
}

// TestCompactCrashAtEachStep stops a compaction at each of its steps as a
// crash would, reads the folder as it was left (as another process would),
// then opens it again: every event must be there exactly once, the leftovers
// gone, de-duplication intact, and the next compaction must finish the job.
func TestCompactCrashAtEachStep(t *testing.T) {
	batches := smallBatches(6, 30)
	for _, step := range []string{"written", "synced", "renamed", "published", "listed", "removed 1", "removed 3", "removed 6"} {
		t.Run(strings.ReplaceAll(step, " ", "-"), func(t *testing.T) {
			dir := t.TempDir()
			segDir := filepath.Join(dir, segmentDir)
			db := openSmall(t, dir)
			appendAll(t, db, batches)
			waitSettled(t, dir)
			want := exportAll(t, dir)
			db.crashAt = func(s string) bool { return s == step }
			if _, err := db.Compact(context.Background(), Compaction{Below: 1 << 20}); !errors.Is(err, errCrash) {
				t.Fatalf("compaction did not reach step %q: %v", step, err)
			}
			db.crashAt = nil
			all, _ := listSegmentFiles(vfs.OS, segDir)
			live, stale := splitSuperseded(all)
			tmps, _ := filepath.Glob(filepath.Join(segDir, ".tmp-seg-*"))
			t.Logf("left: %d segments, %d of them superseded, %d temporary files", len(all), len(stale), len(tmps))

			// A reader in another process, before any recovery: the
			// manifest lists nothing that is missing.
			for _, d := range checkManifest(vfs.OS, dir) {
				if strings.Contains(d.Reason, "missing") || strings.Contains(d.Reason, "overlaps") {
					t.Fatalf("after the crash: %s", d)
				}
			}
			if got := exportAll(t, dir); !slices.Equal(got, want) {
				t.Fatalf("Scan after the crash: %d events, want the %d stored", len(got), len(want))
			}
			r, err := OpenReader(dir)
			if err != nil {
				t.Fatal(err)
			}
			n := 0
			ids := map[string]bool{}
			r.Select(Selection{NeedEvent: true}, func(h *Hit) error {
				n++
				ids[h.Event.AuditID] = true
				return nil
			})
			count := r.Count()
			r.Close()
			if n != len(want) || len(ids) != len(want) || count != len(want) {
				t.Fatalf("Select after the crash: %d hits of %d events, want %d", n, len(ids), len(want))
			}

			// The crashed process is gone; a new one opens the folder.
			db.Close()
			db = openSmall(t, dir)
			defer db.Close()
			waitSettled(t, dir) // the empty WAL segment left by Close
			all, _ = listSegmentFiles(vfs.OS, segDir)
			tmps, _ = filepath.Glob(filepath.Join(segDir, ".tmp-seg-*"))
			if len(tmps) != 0 || len(all) != len(live) {
				t.Fatalf("after reopening: %d temporary files, %d segment files, want 0 and %d", len(tmps), len(all), len(live))
			}
			if d := checkManifest(vfs.OS, dir); d != nil {
				t.Fatalf("after reopening, the manifest does not list the segments: %v", d)
			}
			if got := exportAll(t, dir); !slices.Equal(got, want) {
				t.Fatalf("after reopening: %d events, want %d", len(got), len(want))
			}
			if stored, _ := appendAll(t, db, batches); stored != 0 {
				t.Fatalf("after reopening, %d re-sent events were stored again", stored)
			}
			if _, err := db.Compact(context.Background(), Compaction{Below: 1 << 20}); err != nil {
				t.Fatal(err)
			}
			if got := exportAll(t, dir); !slices.Equal(got, want) || segmentCount(t, dir) != 1 {
				t.Fatalf("after compacting again: %d events in %d segments, want %d in 1", len(got), segmentCount(t, dir), len(want))
			}
			if stored, _ := appendAll(t, db, batches); stored != 0 {
				t.Fatalf("after compacting again, %d re-sent events were stored again", stored)
			}
		})
	}
}

// TestCompactLeavesUnsealedWALAlone checks that a segment sealed after a
// WAL segment still waiting to be sealed is not merged: the merged range
// would cover the waiting one, and its events would be dropped at the next
// start.
func TestCompactLeavesUnsealedWALAlone(t *testing.T) {
	dir := t.TempDir()
	db := openSmall(t, dir)
	defer db.Close()
	appendAll(t, db, smallBatches(8, 10))
	waitSettled(t, dir)
	segs, _ := listSegments(vfs.OS, filepath.Join(dir, segmentDir))
	// Put the fifth segment back in the WAL, as if its sealer were slow.
	mid := segs[4].first
	os.Remove(segs[4].path)
	w, _, err := wal.Open(filepath.Join(dir, "wal-tmp"), mid-1, wal.Options{})
	if err != nil {
		t.Fatal(err)
	}
	w.Close()
	if err := os.Rename(wal.SegmentPath(filepath.Join(dir, "wal-tmp"), mid), wal.SegmentPath(filepath.Join(dir, walDir), mid)); err != nil {
		t.Fatal(err)
	}
	res, err := db.Compact(context.Background(), Compaction{Below: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range mustList(t, dir) {
		if s.first <= mid && mid <= s.last {
			t.Fatalf("segment %d-%d covers WAL segment %d, which is not sealed", s.first, s.last, mid)
		}
	}
	if res.Inputs != 4 {
		t.Errorf("merged %d segments, want the 4 below the waiting WAL segment", res.Inputs)
	}
}

func mustList(t *testing.T, dir string) []segmentFile {
	t.Helper()
	segs, err := listSegments(vfs.OS, filepath.Join(dir, segmentDir))
	if err != nil {
		t.Fatal(err)
	}
	return segs
}
