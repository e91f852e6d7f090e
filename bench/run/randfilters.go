package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Random selective filters: the targets must not be met by a special case
// for the bench's exact questions (issue 12), so the suite also asks
// filters it draws itself, with values present in the corpus.
const (
	// randSeed drives the value sample and the filters: every run asks
	// the same filters of the same corpus.
	randSeed = 1
	// randFilters is how many filters are kept, randTries how many are
	// drawn at most to find them.
	randFilters, randTries = 25, 600
	// randMin and randMax bound the events a kept filter matches.
	randMin, randMax = 1, 5000
	// randSampleLines is how many lines, at random offsets, give the
	// values drawn from.
	randSampleLines = 3000
)

// randFields are the fields a term is drawn from: the filter-language
// name, then how jq and SQL read it.
var randFields = []struct{ name, jq, sql string }{
	{"user", ".user.username", "username"},
	{"ns", ".objectRef.namespace", "namespace"},
	{"resource", ".objectRef.resource", "resource"},
	{"verb", ".verb", "verb"},
	{"name", ".objectRef.name", "name"},
	{"ip", ".sourceIPs", "sourceIPs"},
	{"code", ".responseStatus.code", "code"},
}

// term is field=value.
type term struct{ field, value string }

// randFilter is a conjunction of 1 to 3 terms on different fields.
type randFilter []term

// String is the filter in kubetrail's language; string values are quoted,
// so that no character of a value is read as syntax or a glob.
func (f randFilter) String() string {
	parts := make([]string, len(f))
	for i, t := range f {
		v := t.value
		if t.field != "code" {
			v = `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(v) + `"`
		}
		parts[i] = t.field + "=" + v
	}
	return strings.Join(parts, " ")
}

// jq is the filter as a jq condition.
func (f randFilter) jq() string {
	parts := make([]string, len(f))
	for i, t := range f {
		q, _ := json.Marshal(t.value)
		switch t.field {
		case "ip":
			parts[i] = fmt.Sprintf("any(.sourceIPs[]?; . == %s)", q)
		case "code":
			parts[i] = ".responseStatus.code == " + t.value
		default:
			parts[i] = fieldJQ(t.field) + " == " + string(q)
		}
	}
	return strings.Join(parts, " and ")
}

// sql is the filter as an SQL condition over bench/duckdb's table.
func (f randFilter) sql() string {
	parts := make([]string, len(f))
	for i, t := range f {
		q := "'" + strings.ReplaceAll(t.value, "'", "''") + "'"
		switch t.field {
		case "ip":
			parts[i] = "list_contains(sourceIPs, " + q + ")"
		case "code":
			parts[i] = "code = " + t.value
		default:
			parts[i] = fieldSQL(t.field) + " = " + q
		}
	}
	return strings.Join(parts, " AND ")
}

func fieldJQ(name string) string {
	for _, f := range randFields {
		if f.name == name {
			return f.jq
		}
	}
	panic("BUG: no field " + name)
}

func fieldSQL(name string) string {
	for _, f := range randFields {
		if f.name == name {
			return f.sql
		}
	}
	panic("BUG: no field " + name)
}

// valuePool is, per field, the distinct values seen, sorted.
type valuePool map[string][]string

// sampleValues reads the line after each of n seeded random offsets of
// the corpus and collects every field's values (empty ones left out).
func sampleValues(path string, rng *rand.Rand, n int) (valuePool, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	seen := map[string]map[string]bool{}
	r := bufio.NewReaderSize(f, 64<<10)
	for range n {
		off := rng.Int64N(st.Size())
		if _, err := f.Seek(off, io.SeekStart); err != nil {
			return nil, err
		}
		r.Reset(f)
		if _, err := r.ReadBytes('\n'); err != nil { // the rest of a cut line
			continue
		}
		line, err := r.ReadBytes('\n')
		if err != nil {
			continue // the offset was in the last line
		}
		if err := addValues(seen, line); err != nil {
			return nil, fmt.Errorf("%s near offset %d: %w", path, off, err)
		}
	}
	pool := valuePool{}
	for field, vs := range seen {
		for v := range vs {
			pool[field] = append(pool[field], v)
		}
		sort.Strings(pool[field])
	}
	return pool, nil
}

// addValues adds one event's values to seen.
func addValues(seen map[string]map[string]bool, line []byte) error {
	var e struct {
		Verb string `json:"verb"`
		User struct {
			Username string `json:"username"`
		} `json:"user"`
		SourceIPs []string `json:"sourceIPs"`
		ObjectRef *struct {
			Resource, Namespace, Name string
		} `json:"objectRef"`
		ResponseStatus *struct {
			Code int `json:"code"`
		} `json:"responseStatus"`
	}
	if err := json.Unmarshal(line, &e); err != nil {
		return err
	}
	add := func(field, v string) {
		if v == "" {
			return
		}
		if seen[field] == nil {
			seen[field] = map[string]bool{}
		}
		seen[field][v] = true
	}
	add("user", e.User.Username)
	add("verb", e.Verb)
	for _, ip := range e.SourceIPs {
		add("ip", ip)
	}
	if o := e.ObjectRef; o != nil {
		add("resource", o.Resource)
		add("ns", o.Namespace)
		add("name", o.Name)
	}
	if s := e.ResponseStatus; s != nil && s.Code != 0 {
		add("code", strconv.Itoa(s.Code))
	}
	return nil
}

// genFilter draws 1 to 3 terms on different fields, each value uniform
// among the distinct values seen (so rare values are drawn as often as
// common ones, which makes most combinations selective).
func genFilter(rng *rand.Rand, pool valuePool) randFilter {
	var fields []string
	for _, f := range randFields {
		if len(pool[f.name]) > 0 {
			fields = append(fields, f.name)
		}
	}
	if len(fields) == 0 {
		return nil
	}
	n := min(1+rng.IntN(3), len(fields))
	rng.Shuffle(len(fields), func(i, j int) { fields[i], fields[j] = fields[j], fields[i] })
	f := make(randFilter, n)
	for i, name := range fields[:n] {
		vs := pool[name]
		f[i] = term{name, vs[rng.IntN(len(vs))]}
	}
	slices.SortFunc(f, func(a, b term) int { return strings.Compare(a.field, b.field) })
	return f
}

// pickFilters draws filters until want of them match between randMin and
// randMax events by count (kubetrail query --count), or tries are spent.
// A filter drawn twice is asked once.
func pickFilters(rng *rand.Rand, pool valuePool, want, tries int, count func(randFilter) (int, error)) ([]randFilter, []int, error) {
	var kept []randFilter
	var counts []int
	seen := map[string]bool{}
	for range tries {
		if len(kept) == want {
			break
		}
		f := genFilter(rng, pool)
		if f == nil || seen[f.String()] {
			continue
		}
		seen[f.String()] = true
		n, err := count(f)
		if err != nil {
			return nil, nil, fmt.Errorf("filter %s: %w", f, err)
		}
		if n >= randMin && n <= randMax {
			kept = append(kept, f)
			counts = append(counts, n)
		}
	}
	return kept, counts, nil
}

// randomFilters asks the random selective filters as new processes, each
// printing its events (-o jsonl) and counting them (--count), and checks
// every answer against DuckDB's rows and jq's (one pass for all filters).
func (s *suite) randomFilters(ci int, c corpus) error {
	w := &s.out
	kt := filepath.Join(s.bin, "kubetrail")
	dir := filepath.Join(s.work, "data-import")
	rng := rand.New(rand.NewPCG(randSeed, 0))
	pool, err := sampleValues(c.path, rng, randSampleLines)
	if err != nil {
		return err
	}
	filters, counts, err := pickFilters(rng, pool, randFilters, randTries, func(f randFilter) (int, error) {
		out, err := exec.Command(kt, "query", "--data", dir, "--count", f.String()).Output()
		if err != nil {
			return 0, fmt.Errorf("kubetrail query --count: %w", err)
		}
		return strconv.Atoi(strings.TrimSpace(string(out)))
	})
	if err != nil {
		return err
	}
	if len(filters) == 0 {
		return fmt.Errorf("random filters: none of %d drawn matched %d to %d events", randTries, randMin, randMax)
	}

	// The answers: DuckDB's rows and jq's, one pass over the file for all.
	var reqs []duckRequest
	for i, f := range filters {
		reqs = append(reqs, duckRequest{Name: fmt.Sprintf("rand %d", i), SQL: "SELECT auditID, stage, stageTimestamp FROM events WHERE " + f.sql(), Runs: 1})
	}
	duck, err := s.duckQuery(c, reqs)
	if err != nil {
		return err
	}
	jqOut, jqTime, err := s.jqAllFilters(c, filters)
	if err != nil {
		return err
	}

	runs := max(3, s.runs)
	var prints, countTimes []time.Duration
	for i, f := range filters {
		var dkeys []string
		for _, r := range duck.results[fmt.Sprintf("rand %d", i)].Rows {
			dkeys = append(dkeys, strings.Join(r, " "))
		}
		sort.Strings(dkeys)
		if err := sameKeys(dkeys, jqOut[i]); err != nil {
			return fmt.Errorf("random filter %s: DuckDB and jq: %w", f, err)
		}
		kp, err := s.measure(runs, func() *exec.Cmd {
			return exec.Command(kt, "query", "--data", dir, "-o", "jsonl", f.String())
		}, func(out string) error {
			got, err := eventKeys(strings.NewReader(out))
			if err != nil {
				return err
			}
			if err := sameKeys(dkeys, got); err != nil {
				return fmt.Errorf("random filter %s: DuckDB and kubetrail -o jsonl: %w", f, err)
			}
			return nil
		})
		if err != nil {
			return err
		}
		kc, err := s.measure(runs, func() *exec.Cmd {
			return exec.Command(kt, "query", "--data", dir, "--count", f.String())
		}, wantOutput(strconv.Itoa(len(dkeys))))
		if err != nil {
			return fmt.Errorf("random filter %s: %w", f, err)
		}
		prints, countTimes = append(prints, kp.median), append(countTimes, kc.median)
	}

	sorted := slices.Clone(counts)
	slices.Sort(sorted)
	worst := func(ds []time.Duration) (time.Duration, string) {
		i := 0
		for j, d := range ds {
			if d > ds[i] {
				i = j
			}
		}
		return ds[i], fmt.Sprintf("%s (%d events)", code(filters[i].String()), counts[i])
	}
	wp, wpf := worst(prints)
	wc, wcf := worst(countTimes)
	fmt.Fprintf(w, "## Random selective filters, %s events\n\n", c.name)
	fmt.Fprintf(w, "So that no target is met by a special case for the questions above (issue 12): filters drawn by bench/run/randfilters.go with seed %d, "+
		"each 1 to 3 `field=value` terms on different fields among user, ns, resource, verb, name, ip (any sourceIPs entry) and code, "+
		"each value drawn uniformly among the distinct values found in %d lines read at random offsets of the corpus; "+
		"a filter is kept when `kubetrail query --count` finds %d to %s events, until %d are kept (at most %d drawn). "+
		"Each kept filter runs as a new process printing its events, `kubetrail query -o jsonl FILTER > out`, and counting them, `kubetrail query --count FILTER` (median of %d each). "+
		"Before a time is written, the events printed are compared, as sorted (auditID, stage, stageTimestamp) lists, with DuckDB's rows for the same condition "+
		"and with jq's, one `jq -r` pass over the file printing the matches of every filter (%s); every count must be that many. "+
		"median and worst are over the filters (each filter's time its median).\n\n",
		randSeed, randSampleLines, randMin, commas(randMax), randFilters, randTries, runs, dur(jqTime))
	fmt.Fprintf(w, "| filters | events matched (min, median, max) | -o jsonl median | -o jsonl worst | --count median | --count worst |\n|---|---|---|---|---|---|\n")
	fmt.Fprintf(w, "| %d | %d, %d, %d | %s | %s: %s | %s | %s: %s |\n\n", len(filters), sorted[0], sorted[len(sorted)/2], sorted[len(sorted)-1],
		dur(median(prints)), dur(wp), wpf, dur(median(countTimes)), dur(wc), wcf)
	fmt.Fprintf(w, "<details><summary>The %d filters</summary>\n\n| filter | events | -o jsonl | --count |\n|---|---|---|---|\n", len(filters))
	for i, f := range filters {
		fmt.Fprintf(w, "| %s | %d | %s | %s |\n", code(f.String()), counts[i], dur(prints[i]), dur(countTimes[i]))
	}
	fmt.Fprintf(w, "\n</details>\n\n")
	s.fig.add("random selective filters: median", ci, fig{kt: median(countTimes), ktPrint: median(prints)})
	s.fig.add("random selective filters: worst", ci, fig{kt: wc, ktPrint: wp})
	return nil
}

// jqAllFilters runs one jq pass printing, for each event, "I<TAB>auditID
// stage stageTimestamp" for every filter I it matches, and returns each
// filter's sorted keys and the pass's time.
func (s *suite) jqAllFilters(c corpus, filters []randFilter) ([][]string, time.Duration, error) {
	prog := jqAllProgram(filters)
	cmd := exec.Command("jq", "-r", prog, c.path)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	t0 := time.Now()
	if err := cmd.Run(); err != nil {
		return nil, 0, fmt.Errorf("jq (random filters): %v: %s", err, errb.String())
	}
	d := time.Since(t0)
	keys, err := splitByFilter(out.String(), len(filters))
	return keys, d, err
}

// jqAllProgram is the one jq program that tags each event with the
// filters it matches.
func jqAllProgram(filters []randFilter) string {
	parts := make([]string, len(filters))
	for i, f := range filters {
		parts[i] = fmt.Sprintf(`(if %s then "%d\t\($k)" else empty end)`, f.jq(), i)
	}
	return `"\(.auditID) \(.stage) \(.stageTimestamp)" as $k | ` + strings.Join(parts, ", ")
}

// splitByFilter turns jqAllProgram's output into each filter's sorted keys.
func splitByFilter(out string, n int) ([][]string, error) {
	keys := make([][]string, n)
	for _, l := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		if l == "" {
			continue
		}
		is, k, ok := strings.Cut(l, "\t")
		i, err := strconv.Atoi(is)
		if !ok || err != nil || i < 0 || i >= n {
			return nil, fmt.Errorf("jq printed %q, want FILTER<TAB>KEY", l)
		}
		keys[i] = append(keys[i], k)
	}
	for _, k := range keys {
		sort.Strings(k)
	}
	return keys, nil
}
