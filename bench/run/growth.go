package main

import (
	"fmt"
	"time"
)

// fig is one measured figure at one corpus size: kubetrail's median time
// and peak RSS, and the same work's time in jq and DuckDB (zero when the
// tool has no counterpart).
type fig struct {
	kt       time.Duration // for a question, kubetrail query --count
	rss      int64
	ktPrint  time.Duration // for a question, kubetrail query -o jsonl printing the events
	ktjq     time.Duration // the same question through kubetrail query --jq
	jq, duck time.Duration
}

// figures keeps what the growth table compares, by row and corpus index.
type figures struct {
	order []string
	by    map[string]map[int]fig
}

func (f *figures) add(what string, ci int, v fig) {
	if f.by == nil {
		f.by = map[string]map[int]fig{}
	}
	if f.by[what] == nil {
		f.by[what] = map[int]fig{}
		f.order = append(f.order, what)
	}
	f.by[what][ci] = v
}

// growth writes how each figure grows from the smallest corpus to the
// largest; nothing when the run had one corpus.
func (s *suite) growth() {
	if len(s.corpora) < 2 {
		return
	}
	last := len(s.corpora) - 1
	a, b := s.corpora[0], s.corpora[last]
	w := &s.out
	fmt.Fprintf(w, "## Growth, %s to %s events (%.0fx the events)\n\n", a.name, b.name, float64(b.events)/float64(a.events))
	fmt.Fprintf(w, "Each cell: time at %s → time at %s (growth factor). Linear growth would be %.0fx; a selective question answered from postings should grow far less. "+
		"Times are the ones in the tables above: kubetrail and DuckDB as a new process per question (medians; for a question, kubetrail is --count and DuckDB count(*), while -o jsonl, --jq and jq print the events), jq one pass per question; "+
		"for an investigation, kubetrail is the command printing its rows (-o jsonl), jq one pass and DuckDB a new process returning the same rows; "+
		"for the random selective filters, the median and the worst over the filters drawn at each size (different filters at each size: their values are sampled from that corpus) of --count and of -o jsonl; "+
		"peak RSS is \"-\" where kubetrail's was not measured (the Web UI row times a browser, the random filters report times only); "+
		"for ingest, `jq -c .` is the median of %d pass(es) at %s and of %d at %s.\n\n",
		a.name, b.name, float64(b.events)/float64(a.events), s.slowRuns(a), a.name, s.slowRuns(b), b.name)
	fmt.Fprintf(w, "| what | kubetrail (--count for a question and the random filters, the command for an investigation) | kubetrail peak RSS | kubetrail -o jsonl | kubetrail --jq | jq | DuckDB |\n|---|---|---|---|---|---|---|\n")
	for _, what := range s.fig.order {
		x, okA := s.fig.by[what][0]
		y, okB := s.fig.by[what][last]
		if !okA || !okB {
			continue
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s |\n", what, grow(x.kt, y.kt), growRSS(x.rss, y.rss), grow(x.ktPrint, y.ktPrint), grow(x.ktjq, y.ktjq), grow(x.jq, y.jq), grow(x.duck, y.duck))
	}
	fmt.Fprintln(w)
}

func grow(a, b time.Duration) string {
	if a <= 0 || b <= 0 {
		return "-"
	}
	return fmt.Sprintf("%s → %s (%.1fx)", dur(a), dur(b), b.Seconds()/a.Seconds())
}

// growRSS is the peak RSS at both sizes, or "-" when a row has none: the
// Web UI's time is the browser's, whose memory is not kubetrail's.
func growRSS(a, b int64) string {
	if a <= 0 || b <= 0 {
		return "-"
	}
	return human(a) + " → " + human(b)
}
