package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kubetrail/kubetrail/internal/audit"
	"github.com/kubetrail/kubetrail/internal/query"
)

var testPool = valuePool{
	"user":     {"admin", "system:node:node-01", `we"ird\user*`},
	"ns":       {"default", "production"},
	"resource": {"pods", "secrets"},
	"verb":     {"get", "list"},
	"name":     {"important", "it's"},
	"ip":       {"10.0.0.5", "192.168.1.100"},
	"code":     {"200", "403"},
}

// TestGenFilterDeterministic: a seed always draws the same filters, another
// seed others; every filter has 1 to 3 terms on different fields with
// values of the pool, and parses in the filter language.
func TestGenFilterDeterministic(t *testing.T) {
	draw := func(seed uint64) []string {
		rng := rand.New(rand.NewPCG(seed, 0))
		var out []string
		for range 50 {
			out = append(out, genFilter(rng, testPool).String())
		}
		return out
	}
	a, b := draw(1), draw(1)
	if !slices.Equal(a, b) {
		t.Fatalf("seed 1 drew %q, then %q", a, b)
	}
	if slices.Equal(a, draw(2)) {
		t.Fatal("seeds 1 and 2 drew the same filters")
	}
	rng := rand.New(rand.NewPCG(1, 0))
	sizes := map[int]bool{}
	for range 200 {
		f := genFilter(rng, testPool)
		sizes[len(f)] = true
		if len(f) < 1 || len(f) > 3 {
			t.Fatalf("%s: %d terms, want 1 to 3", f, len(f))
		}
		fields := map[string]bool{}
		for _, tm := range f {
			if fields[tm.field] {
				t.Fatalf("%s: field %s twice", f, tm.field)
			}
			fields[tm.field] = true
			if !slices.Contains(testPool[tm.field], tm.value) {
				t.Fatalf("%s: %s=%q is not in the pool", f, tm.field, tm.value)
			}
		}
		if _, err := query.Compile(f.String()); err != nil {
			t.Fatalf("%s does not parse: %v", f, err)
		}
	}
	if len(sizes) != 3 {
		t.Errorf("drew filters of %v terms, want 1, 2 and 3", sizes)
	}
	if genFilter(rng, valuePool{}) != nil {
		t.Error("an empty pool drew a filter")
	}
}

// TestRandFilterForms: kubetrail's form and jq's select the event whose
// fields hold the values, including a quote, a backslash and a '*' (which
// must not glob), and not an event that differs in one field.
func TestRandFilterForms(t *testing.T) {
	ev := `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"a","stage":"ResponseComplete","requestURI":"/x","verb":"get",` +
		`"user":{"username":"we\"ird\\user*"},"sourceIPs":["192.168.1.100","10.0.0.5"],"objectRef":{"resource":"secrets","namespace":"production","name":"it's"},` +
		`"responseStatus":{"metadata":{},"code":403},"requestReceivedTimestamp":"2026-11-01T00:00:00.000000Z","stageTimestamp":"2026-11-01T00:00:00.000000Z"}`
	other := strings.Replace(ev, `"code":403`, `"code":200`, 1)
	other = strings.Replace(other, `we\"ird\\user*`, `we\"ird\\user-x`, 1)
	f := randFilter{{"code", "403"}, {"ip", "10.0.0.5"}, {"name", "it's"}, {"user", `we"ird\user*`}}
	flt, err := query.Compile(f.String())
	if err != nil {
		t.Fatalf("%s: %v", f, err)
	}
	match := func(line string) (bool, bool) {
		var e audit.Event
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatal(err)
		}
		got := runJQ(t, fmt.Sprintf(`inputs | if %s then "yes" else "no" end`, f.jq()), line)
		return flt.Match(&e, ""), slices.Equal(got, []string{"yes"})
	}
	if k, j := match(ev); !k || !j {
		t.Errorf("%s on its event: kubetrail %v, jq %v; want both true", f, k, j)
	}
	if k, j := match(other); k || j {
		t.Errorf("%s on another event: kubetrail %v, jq %v; want both false", f, k, j)
	}
	want := `code = 403 AND list_contains(sourceIPs, '10.0.0.5') AND name = 'it''s' AND username = 'we"ird\user*'`
	if got := f.sql(); got != want {
		t.Errorf("sql:\n got %s\nwant %s", got, want)
	}
}

// TestPickFilters: only filters matching randMin..randMax events are kept,
// each once, and the picking stops at the number wanted.
func TestPickFilters(t *testing.T) {
	asked := map[string]int{}
	count := func(f randFilter) (int, error) {
		asked[f.String()]++
		return []int{0, 7, 6000}[len(f)-1], nil // only 2-term filters qualify
	}
	got, counts, err := pickFilters(rand.New(rand.NewPCG(1, 0)), testPool, 4, 500, count)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 4 {
		t.Fatalf("kept %d filters, want 4", len(got))
	}
	for i, f := range got {
		if len(f) != 2 || counts[i] != 7 {
			t.Errorf("kept %s (%d events), want only 2-term filters matching 7", f, counts[i])
		}
	}
	for f, n := range asked {
		if n > 1 {
			t.Errorf("%s asked %d times", f, n)
		}
	}
}

// TestSplitByFilter: jq's tagged lines go to their filters; a line that is
// not tagged (a planted one) stops the run.
func TestSplitByFilter(t *testing.T) {
	keys, err := splitByFilter("1\tb x y\n0\ta x y\n1\ta x y\n", 3)
	if err != nil {
		t.Fatal(err)
	}
	if want := [][]string{{"a x y"}, {"a x y", "b x y"}, nil}; fmt.Sprint(keys) != fmt.Sprint(want) {
		t.Errorf("got %q, want %q", keys, want)
	}
	for _, bad := range []string{"a x y\n", "3\ta x y\n", "-1\tk\n"} {
		if _, err := splitByFilter(bad, 3); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
	if p := jqAllProgram([]randFilter{{{"verb", "get"}}}); !strings.Contains(p, `(if .verb == "get" then "0\t\($k)" else empty end)`) {
		t.Errorf("jq program %s", p)
	}
}

// TestSampleValues: values come from whole lines only, whatever the
// offset, and the same seed samples the same values.
func TestSampleValues(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	var b strings.Builder
	for i := range 50 {
		fmt.Fprintf(&b, `{"verb":"v%d","user":{"username":"u%d"},"sourceIPs":["10.0.0.%d"],"objectRef":{"resource":"pods","namespace":"n%d","name":"p%d"},"responseStatus":{"code":%d}}`+"\n", i, i, i, i, i, 200+i)
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	pool, err := sampleValues(path, rand.New(rand.NewPCG(1, 0)), 40)
	if err != nil {
		t.Fatal(err)
	}
	again, err := sampleValues(path, rand.New(rand.NewPCG(1, 0)), 40)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(pool) != fmt.Sprint(again) {
		t.Errorf("same seed, different samples:\n%v\n%v", pool, again)
	}
	if len(pool["verb"]) < 10 || len(pool["resource"]) != 1 {
		t.Errorf("pool %v: want many verbs and one resource", pool)
	}
	for _, v := range pool["verb"] {
		i := strings.TrimPrefix(v, "v")
		if !slices.Contains(pool["user"], "u"+i) || !slices.Contains(pool["code"], fmt.Sprint(200+atoi(t, i))) {
			t.Errorf("verb %s sampled without its line's user and code: %v", v, pool)
		}
	}
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	var n int
	if _, err := fmt.Sscan(s, &n); err != nil {
		t.Fatal(err)
	}
	return n
}
