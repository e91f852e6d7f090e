package main

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"time"
)

// stats counts what the generator wrote, for --stats and the tests.
type stats struct {
	lines      int64
	bytes      int64
	class      [numClasses]int64
	verbs      map[string]int64
	levels     map[string]int64
	levelBytes map[string]int64
	stages     map[string]int64
	codes      map[string]int64
}

func newStats() *stats {
	return &stats{
		verbs:      map[string]int64{},
		levels:     map[string]int64{},
		levelBytes: map[string]int64{},
		stages:     map[string]int64{},
		codes:      map[string]int64{},
	}
}

func (s *stats) add(e *event, n int) {
	s.lines++
	s.bytes += int64(n)
	s.class[e.class]++
	s.verbs[e.verb]++
	s.levels[e.level]++
	s.levelBytes[e.level] += int64(n)
	s.stages[e.stage]++
	code := "none"
	if e.responseStatus != nil {
		code = strconv.Itoa(e.responseStatus.code)
	}
	s.codes[code]++
}

// write prints the summary table. elapsed may be zero to leave out the
// (non-deterministic) speed line.
func (s *stats) write(w io.Writer, elapsed time.Duration) {
	avg := func(b, n int64) int64 {
		if n == 0 {
			return 0
		}
		return b / n
	}
	fmt.Fprintf(w, "events %d, bytes %d (%.1f MiB), average %d B/line", s.lines, s.bytes, float64(s.bytes)/(1<<20), avg(s.bytes, s.lines))
	for _, l := range []string{levelMetadata, levelRequest, levelRequestResponse} {
		fmt.Fprintf(w, ", %s %d B", l, avg(s.levelBytes[l], s.levels[l]))
	}
	fmt.Fprintln(w)
	if elapsed > 0 {
		fmt.Fprintf(w, "generated in %s (%.0f events/s, %.1f MiB/s)\n", elapsed.Round(time.Millisecond),
			float64(s.lines)/elapsed.Seconds(), float64(s.bytes)/(1<<20)/elapsed.Seconds())
	}
	classes := map[string]int64{}
	for c := class(0); c < numClasses; c++ {
		classes[c.String()] = s.class[c]
	}
	s.table(w, "user class", classes)
	s.table(w, "verb", s.verbs)
	s.table(w, "level", s.levels)
	s.table(w, "stage", s.stages)
	s.table(w, "code", s.codes)
}

func (s *stats) table(w io.Writer, title string, m map[string]int64) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if m[keys[i]] != m[keys[j]] {
			return m[keys[i]] > m[keys[j]]
		}
		return keys[i] < keys[j]
	})
	fmt.Fprintf(w, "\n%-18s %10s %7s\n", title, "events", "share")
	for _, k := range keys {
		pct := 0.0
		if s.lines > 0 {
			pct = 100 * float64(m[k]) / float64(s.lines)
		}
		fmt.Fprintf(w, "%-18s %10d %6.2f%%\n", k, m[k], pct)
	}
}
