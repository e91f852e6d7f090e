package local

import (
	"bufio"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"testing"

	"github.com/kubetrail/kubetrail/internal/audit"
	"github.com/kubetrail/kubetrail/internal/testenv"
)

// TestColumnBuilderAddAsMaps: add, which reuses the previous event's id
// when a column's value is the same, gives each value the id the
// dictionary alone gives it (first seen, first numbered), over rows of
// few values, repeated and not, with truncations between them. Mutation
// caught: reusing the previous id without comparing the values.
func TestColumnBuilderAddAsMaps(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	b := newColumnBuilder()
	var want [NumColumns][]uint32
	var seen [NumColumns]map[string]uint32
	for c := range seen {
		seen[c] = map[string]uint32{}
	}
	var row colRow
	for i := range 20000 {
		for c := range row {
			if rng.IntN(3) > 0 { // else the previous event's value
				row[c] = strconv.Itoa(rng.IntN(1 + c*c))
			}
		}
		if rng.IntN(500) == 0 && b.n > 0 {
			n := rng.IntN(b.n)
			b.truncate(n)
			for c := range want {
				want[c] = want[c][:n]
			}
		}
		b.add(int64(i), 0, &row, 0)
		for c, v := range row {
			id, ok := seen[c][v]
			if !ok {
				id = uint32(len(seen[c]))
				seen[c][v] = id
			}
			want[c] = append(want[c], id)
		}
	}
	for c := range want {
		if !slices.Equal(b.ids[c], want[c]) {
			t.Fatalf("column %v: ids differ from the dictionary's", Column(c))
		}
		for id, v := range b.vals[c] {
			if seen[c][v] != uint32(id) {
				t.Fatalf("column %v: value %q has id %d, want %d", Column(c), v, id, seen[c][v])
			}
		}
	}
}

// BenchmarkColumnBuilderAdd adds the columns of 50,000 events of the
// bench corpus, in arrival order, as the committer does at import, to a
// builder whose dictionaries hold their values already (as they mostly
// do after a segment's first events).
func BenchmarkColumnBuilderAdd(b *testing.B) {
	rows := benchRows(b, 50000)
	cb := newColumnBuilder()
	cpu := testenv.CPUTime()
	for b.Loop() {
		cb.truncate(0)
		for i := range rows {
			cb.add(int64(i), 0, &rows[i], 0)
		}
	}
	b.ReportMetric(float64(testenv.CPUTime()-cpu)/float64(b.N), "cpu-ns/op")
}

// benchRows returns the column values of the first n events of make
// bench's 200k corpus (skipped when it is absent).
func benchRows(b *testing.B, n int) []colRow {
	b.Helper()
	f, err := os.Open("/tmp/kubetrail-bench/audit-200000.log")
	if err != nil {
		b.Skipf("no corpus (make bench-quick writes it): %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 64<<20)
	var rows []colRow
	var ev audit.Event
	for sc.Scan() && len(rows) < n {
		if err := audit.DecodeStored(sc.Bytes(), &ev); err != nil {
			b.Fatal(err)
		}
		var row colRow
		columnValues("bench", &ev, &row)
		rows = append(rows, row)
	}
	if err := sc.Err(); err != nil {
		b.Fatal(err)
	}
	return rows
}
