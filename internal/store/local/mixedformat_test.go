package local

import (
	"bufio"
	"compress/gzip"
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/kubetrail/kubetrail/internal/audit"
	"github.com/kubetrail/kubetrail/internal/pipeline"
	"github.com/kubetrail/kubetrail/internal/query"
	"github.com/kubetrail/kubetrail/internal/vfs"
)

// incidentRecords decodes the log a real kube-apiserver wrote
// (internal/investigate/testdata/incident).
func incidentRecords(t *testing.T) []audit.Record {
	t.Helper()
	f, err := os.Open("../../investigate/testdata/incident/incident.log.gz")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	z, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(z)
	sc.Buffer(nil, 64<<20)
	dec := audit.NewDecoder(audit.Limits{})
	var recs []audit.Record
	for n := 1; sc.Scan(); n++ {
		dec.DecodeLine("incident", n, sc.Bytes(), func(r audit.Record) { recs = append(recs, r) }, func(p audit.Problem) { t.Fatal(p.String()) })
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return recs
}

// storeRuns appends recs[from:to] for each run, each run in its own Open
// with the segment format it names, in batches of 50.
func storeRuns(t *testing.T, dir string, recs []audit.Record, runs []mixedRun, bulk bool) {
	t.Helper()
	for _, run := range runs {
		db, err := Open(dir, Options{SegmentFormat: run.format, WALSegmentBytes: 64 << 10, Bulk: bulk, layout: segLayout{groupBytes: 32 << 10, blockBytes: 4 << 10}})
		if err != nil {
			t.Fatal(err)
		}
		for i := run.from; i < run.to; i += 50 {
			b := &pipeline.Batch{Cluster: "default", Received: time.Unix(1e9, 0), Records: slices.Clone(recs[i:min(i+50, run.to)])}
			if _, err := db.Append(context.Background(), b); err != nil {
				t.Fatal(err)
			}
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

type mixedRun struct{ from, to, format int }

// TestMixedFormatsAnswerAsOne: a folder whose segments are of format 4
// and format 5 (runs written with each, overlapping so that
// de-duplication looks across them, then compacted together) exports
// the same bytes in the same order, and counts the same for every filter,
// as a folder of format 4 alone holding the same events; verify finds it
// whole, before and after compaction, bulk loaded or not.
// Mutation it catches: de-duplication not finding the events of format-4
// segments (921 events exported for 553).
func TestMixedFormatsAnswerAsOne(t *testing.T) {
	recs := incidentRecords(t)
	n := len(recs)
	pure := t.TempDir()
	storeRuns(t, pure, recs, []mixedRun{{0, n, 4}}, false)
	want := exportAll(t, pure)
	if len(want) != n {
		t.Fatalf("pure v4 store holds %d events of %d", len(want), n)
	}
	filters := []string{"verb=delete", "resource=secrets", "user~\"^system:\"", "code>=400", "subresource in (exec,attach)", "ns=kube-system not verb=get", "verb=get"}
	rng := rand.New(rand.NewPCG(5, 25))
	for range 60 {
		filters = append(filters, genFilter(rng, 2))
	}
	counts := func(dir string) []int64 {
		r, err := OpenReader(dir)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		var out []int64
		for _, src := range filters {
			f, err := query.CompileAt(src, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			c, err := r.CountMatching(Selection{Filter: f})
			if err != nil {
				t.Fatalf("%s: %v", src, err)
			}
			var sel int64
			if err := r.Select(Selection{Filter: f, NeedRaw: true}, func(*Hit) error { sel++; return nil }); err != nil {
				t.Fatal(err)
			}
			if sel != c {
				t.Fatalf("%s in %s: Select finds %d, CountMatching %d", src, dir, sel, c)
			}
			out = append(out, c)
		}
		return out
	}
	wantCounts := counts(pure)
	nonzero := 0
	for _, c := range wantCounts {
		if c > 0 {
			nonzero++
		}
	}
	if nonzero < len(filters)/2 {
		t.Fatalf("only %d of %d filters match some event: the counts compare little", nonzero, len(filters))
	}
	whole := func(dir string) {
		t.Helper()
		rep, err := Verify(dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(rep.Damage) > 0 || len(rep.Tamper) > 0 {
			t.Fatalf("verify: damage %v, tamper %v", rep.Damage, rep.Tamper)
		}
	}
	third := n / 3
	for _, bulk := range []bool{false, true} {
		mixed := t.TempDir()
		storeRuns(t, mixed, recs, []mixedRun{{0, 2 * third, 4}, {third, n, 5}, {0, n, 4}}, bulk)
		check := func(when string) {
			t.Helper()
			if got := exportAll(t, mixed); !slices.Equal(got, want) {
				t.Fatalf("bulk %v, %s: the mixed folder exports %d events, not the %d of the v4 one (or other bytes, or in another order)", bulk, when, len(got), len(want))
			}
			if got := counts(mixed); !slices.Equal(got, wantCounts) {
				t.Fatalf("bulk %v, %s: counts %v, want %v (%v)", bulk, when, got, wantCounts, filters)
			}
			whole(mixed)
		}
		if v := segmentVersions(t, mixed); !v[4] || !v[5] {
			t.Fatalf("the folder holds segments of formats %v, not both", v)
		}
		check("before compaction")
		for _, format := range []int{5, 4} {
			db, err := Open(mixed, Options{SegmentFormat: format})
			if err != nil {
				t.Fatal(err)
			}
			res, err := db.Compact(context.Background(), Compaction{Below: 64 << 20, MaxSpan: 1 << 62})
			if cerr := db.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				t.Fatal(err)
			}
			if format == 5 && res.Inputs < 2 {
				t.Fatalf("compaction merged %d segments", res.Inputs)
			}
			check("after compaction into format " + string(rune('0'+format)))
			// Everything again: all duplicates.
			storeRuns(t, mixed, recs, []mixedRun{{0, n, 9 - format}}, bulk)
			check("after importing everything again")
		}
	}
}

// segmentVersions returns the formats of dir's segments.
func segmentVersions(t *testing.T, dir string) map[int]bool {
	t.Helper()
	segs, err := listSegments(vfs.OS, filepath.Join(dir, segmentDir))
	if err != nil {
		t.Fatal(err)
	}
	out := map[int]bool{}
	for _, s := range segs {
		r, err := openSegment(vfs.OS, s.path)
		if err != nil {
			t.Fatal(err)
		}
		out[r.meta.Version] = true
		r.close()
	}
	return out
}
