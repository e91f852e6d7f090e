// Command run is kubetrail's benchmark suite: it builds a corpus, runs
// kubetrail beside the tools people use today (jq, gojq, gzip, zstd,
// DuckDB, the upstream policy evaluator) on the same data in the same run,
// checks that both sides agree before it reports a time, and writes
// docs/BENCHMARKS.md. `make bench-quick` and `make bench` call it through
// bench/run.sh.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"
)

// slowPassesAbove is the corpus size from which jq and gojq, which take a
// minute or more per pass over the file, get a single pass instead of
// s.runs, so that `make bench` stays within its 45 minutes.
const slowPassesAbove = 500_000

type suite struct {
	work    string
	bin     string // folder with kubetrail, gen, webhookload, peakrss, duckbench
	runs    int
	sizes   []int // corpus sizes when --sizes overrides the mode's
	out     strings.Builder
	corpora []corpus
	// fig holds the figures the growth table compares across corpora.
	fig figures
	// took is each section's wall time, for the run-time table.
	took []section
	// commit is the source the run measured, taken before the build.
	commit string
}

type section struct {
	name string
	d    time.Duration
}

type corpus struct {
	name   string
	path   string
	events int
	bytes  int64
	stats  string
}

func main() {
	mode := flag.String("mode", "quick", "quick (200k events), full (200k and 2M events, ~2.5 GiB) or policy (the policy evaluator only, printed)")
	work := flag.String("work", filepath.Join(os.TempDir(), "kubetrail-bench"), "scratch folder (corpora are cached here)")
	out := flag.String("out", "docs/BENCHMARKS.md", "report to write")
	runs := flag.Int("runs", 3, "runs per measurement; the median is reported")
	sizes := flag.String("sizes", "", "comma-separated corpus sizes in events, instead of the mode's (for trying the suite on small corpora)")
	flag.Parse()
	s := &suite{work: *work, bin: filepath.Join(*work, "bin"), runs: *runs}
	if *sizes != "" {
		for _, f := range strings.Split(*sizes, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 1000 {
				fmt.Fprintf(os.Stderr, "bench: --sizes %q: want event counts of at least 1000\n", *sizes)
				os.Exit(2)
			}
			s.sizes = append(s.sizes, n)
		}
	}
	if err := s.main(*mode, *out); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func (s *suite) main(mode, out string) error {
	start := time.Now()
	var sizes []int
	switch mode {
	case "quick":
		sizes = []int{200_000}
	case "full":
		sizes = []int{200_000, 2_000_000}
	case "policy":
	default:
		return fmt.Errorf("--mode %q: want quick, full or policy", mode)
	}
	if s.sizes != nil && mode != "policy" {
		sizes = s.sizes
	}
	if err := os.MkdirAll(s.bin, 0o755); err != nil {
		return err
	}
	s.commit = gitCommit("", out)
	if err := s.section("build", func() error { return s.build(mode != "policy") }); err != nil {
		return err
	}
	for _, n := range sizes {
		if err := s.section("corpus "+sizeName(n), func() error {
			c, err := s.corpus(n)
			s.corpora = append(s.corpora, c)
			return err
		}); err != nil {
			return err
		}
	}
	if mode == "policy" {
		if err := s.policy(); err != nil {
			return err
		}
		fmt.Print(s.out.String())
		return nil
	}
	s.header(mode)
	if err := s.section("policy evaluation", s.policy); err != nil {
		return err
	}
	for i, c := range s.corpora {
		if err := s.section("ingest and storage "+c.name, func() error { return s.ingest(i, c) }); err != nil {
			return err
		}
		if err := s.section("questions and statistics "+c.name, func() error { return s.queries(i, c) }); err != nil {
			return err
		}
		if err := s.section("investigations "+c.name, func() error { return s.investigate(i, c) }); err != nil {
			return err
		}
		if err := s.section("random selective filters "+c.name, func() error { return s.randomFilters(i, c) }); err != nil {
			return err
		}
		if err := s.section("ClickHouse "+c.name, func() error { return s.clickhouse(i, c) }); err != nil {
			return err
		}
		if err := s.section("web UI "+c.name, func() error { return s.webUI(i, c) }); err != nil {
			return err
		}
		if err := s.section("process start "+c.name, func() error { return s.processStart(i, c) }); err != nil {
			return err
		}
		if err := s.section("warm API "+c.name, func() error { return s.apiWarm(i, c) }); err != nil {
			return err
		}
		if err := s.section("detection "+c.name, func() error { return s.detection(i, c) }); err != nil {
			return err
		}
		if err := s.section("verify "+c.name, func() error { return s.verify(i, c) }); err != nil {
			return err
		}
	}
	if err := s.section("forwarding", s.forwarding); err != nil {
		return err
	}
	s.growth()
	s.runTime(time.Since(start))
	if err := os.WriteFile(out, []byte(s.out.String()), 0o644); err != nil {
		return err
	}
	fmt.Printf("wrote %s in %s\n", out, time.Since(start).Round(time.Second))
	return nil
}

// section runs one part of the suite and records its wall time.
func (s *suite) section(name string, fn func() error) error {
	fmt.Fprintf(os.Stderr, "bench: %s...\n", name)
	t0 := time.Now()
	err := fn()
	d := time.Since(t0)
	s.took = append(s.took, section{name, d})
	fmt.Fprintf(os.Stderr, "bench: %s took %s\n", name, d.Round(100*time.Millisecond))
	return err
}

// build compiles kubetrail and the helpers into s.bin, installs gojq if
// it is missing, and, for the comparisons, the DuckDB side (its own module,
// cgo).
func (s *suite) build(duck bool) error {
	for _, p := range []string{"cmd/kubetrail", "bench/gen", "bench/webhookload", "bench/peakrss"} {
		// CGO_ENABLED=0, as make build: a static binary (ADR 0026).
		if err := run("", []string{"CGO_ENABLED=0"}, "go", "build", "-o", filepath.Join(s.bin, filepath.Base(p)), "./"+p); err != nil {
			return fmt.Errorf("go build ./%s: %w", p, err)
		}
	}
	if duck {
		if err := run("bench/duckdb", []string{"CGO_ENABLED=1"}, "go", "build", "-o", filepath.Join(s.bin, "duckbench"), "."); err != nil {
			return fmt.Errorf("build bench/duckdb (needs gcc; bench/run.sh installs it): %w", err)
		}
	}
	if _, err := exec.LookPath("gojq"); err != nil {
		if err := run("", nil, "go", "install", "github.com/itchyny/gojq/cmd/gojq@v0.12.17"); err != nil {
			return fmt.Errorf("install gojq: %w", err)
		}
	}
	for _, tool := range []string{"jq", "gojq", "zstd", "gzip"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s is not installed (bench/run.sh installs it)", tool)
		}
	}
	return nil
}

func sizeName(n int) string {
	if n%1_000_000 == 0 {
		return fmt.Sprintf("%dM", n/1_000_000)
	}
	return fmt.Sprintf("%dk", n/1000)
}

// corpus generates audit-N.log in the work folder unless it is there
// already (with its .stats, written last).
func (s *suite) corpus(n int) (corpus, error) {
	c := corpus{name: sizeName(n), path: filepath.Join(s.work, fmt.Sprintf("audit-%d.log", n)), events: n}
	statsPath := c.path + ".stats"
	if _, err := os.Stat(statsPath); err != nil {
		fmt.Fprintf(os.Stderr, "bench: generating %d events\n", n)
		f, err := os.Create(c.path)
		if err != nil {
			return c, err
		}
		var stats bytes.Buffer
		cmd := exec.Command(filepath.Join(s.bin, "gen"), "--events", strconv.Itoa(n), "--seed", "1", "--stats")
		cmd.Stdout, cmd.Stderr = f, &stats
		err = cmd.Run()
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return c, fmt.Errorf("gen: %w: %s", err, stats.String())
		}
		if err := os.WriteFile(statsPath, stats.Bytes(), 0o644); err != nil {
			return c, err
		}
	}
	st, err := os.Stat(c.path)
	if err != nil {
		return c, err
	}
	c.bytes = st.Size()
	b, err := os.ReadFile(statsPath)
	c.stats = string(b)
	return c, err
}

func (s *suite) header(mode string) {
	w := &s.out
	fmt.Fprintf(w, "# kubetrail benchmarks\n\nWritten by `%s` (bench/run); do not edit by hand. Regenerate with `make bench` (or `make bench-quick`).\n\n",
		map[string]string{"quick": "make bench-quick", "full": "make bench"}[mode])
	fmt.Fprintf(w, "## Machine\n\n| | |\n|---|---|\n")
	fmt.Fprintf(w, "| commit | %s |\n", s.commit)
	fmt.Fprintf(w, "| date | %s |\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(w, "| CPU | %s |\n| cores | %d |\n| memory | %s |\n", cpuModel(), runtime.NumCPU(), memTotal())
	fmt.Fprintf(w, "| load average at start | %s (1, 5, 15 min; other work on the machine slows every figure) |\n", loadAvg())
	fmt.Fprintf(w, "| go | %s |\n", strings.TrimSpace(output("go", "version")))
	fmt.Fprintf(w, "| jq | %s |\n| gojq | %s |\n| zstd | %s |\n| gzip | %s |\n", firstLine(output("jq", "--version")), firstLine(output("gojq", "--version")),
		firstLine(output("zstd", "--version")), firstLine(output("gzip", "--version")))
	fmt.Fprintf(w, "| DuckDB | %s (github.com/duckdb/duckdb-go/v2 v2.10506.0, bench/duckdb) |\n", firstLine(output(filepath.Join(s.bin, "duckbench"), "version")))
	fmt.Fprintf(w, "| runs | median of %d unless a table says otherwise; jq and gojq make a single pass over corpora above %s events |\n\n", s.runs, sizeName(slowPassesAbove))
	fmt.Fprintf(w, "## Corpora\n\nGenerated by `go run ./bench/gen --events N --seed 1` (see bench/README.md for the mix).\n\n")
	for _, c := range s.corpora {
		fmt.Fprintf(w, "### %s events: %s, %.0f bytes per event\n\n```\n%s```\n\n", c.name, human(c.bytes), float64(c.bytes)/float64(c.events), c.stats)
	}
}

// runTime writes how long each section of this run took.
func (s *suite) runTime(total time.Duration) {
	w := &s.out
	fmt.Fprintf(w, "## Run time\n\nWall time of each part of this run (building included; a fresh machine also downloads modules and installs packages first, see bench/README.md).\n\n| part | time |\n|---|---|\n")
	for _, t := range s.took {
		fmt.Fprintf(w, "| %s | %s |\n", t.name, t.d.Round(time.Second))
	}
	fmt.Fprintf(w, "| **total** | **%s** |\n\nLoad average at the end: %s.\n", total.Round(time.Second), loadAvg())
}

// row is one measured command.
type row struct {
	what, cmd string
	median    time.Duration
	runs      int
	rss       int64  // largest peak RSS over the runs, bytes
	out       string // the last run's standard output
}

// measure runs the command mk makes runs times, under peakrss, and returns
// the median wall time and the largest peak RSS. check, when set, must
// accept every run's output: no time is reported for a wrong answer.
func (s *suite) measure(runs int, mk func() *exec.Cmd, check func(out string) error) (row, error) {
	var times []time.Duration
	r := row{runs: runs}
	for i := 0; i < runs; i++ {
		cmd, res := s.peak(mk())
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil {
			return row{}, fmt.Errorf("%s: %v: %s", cmd.String(), err, errb.String())
		}
		if check != nil {
			if err := check(out.String()); err != nil {
				return row{}, fmt.Errorf("%s: %w", cmd.String(), err)
			}
		}
		d, rss, err := readPeak(res)
		if err != nil {
			return row{}, err
		}
		r.rss = max(r.rss, rss)
		r.out = out.String()
		times = append(times, d)
	}
	r.median = median(times)
	return r, nil
}

// peak returns cmd wrapped in bench/peakrss and the file where peakrss
// will write the command's wall time and peak RSS. The wrapper is needed
// because a child of this (large) process would report this process's
// peak RSS as its own (see bench/peakrss).
func (s *suite) peak(cmd *exec.Cmd) (*exec.Cmd, string) {
	res := filepath.Join(s.work, "peakrss.json")
	os.Remove(res)
	w := exec.Command(filepath.Join(s.bin, "peakrss"), append([]string{"-o", res, "--", cmd.Path}, cmd.Args[1:]...)...)
	w.Dir, w.Env, w.Stdin, w.Stdout, w.Stderr = cmd.Dir, cmd.Env, cmd.Stdin, cmd.Stdout, cmd.Stderr
	return w, res
}

// readPeak reads what peakrss wrote.
func readPeak(path string) (time.Duration, int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, fmt.Errorf("peakrss result: %w", err)
	}
	var res struct {
		Seconds float64 `json:"seconds"`
		MaxRSS  int64   `json:"maxrss"`
	}
	if err := json.Unmarshal(b, &res); err != nil {
		return 0, 0, fmt.Errorf("peakrss result %q: %w", b, err)
	}
	return time.Duration(res.Seconds * float64(time.Second)), res.MaxRSS, nil
}

// wantOutput is a check that the trimmed output is want.
func wantOutput(want string) func(string) error {
	return func(out string) error {
		if got := strings.TrimSpace(out); got != want {
			return fmt.Errorf("answered %q, want %q", got, want)
		}
		return nil
	}
}

func median(times []time.Duration) time.Duration {
	t := append([]time.Duration(nil), times...)
	sort.Slice(t, func(i, j int) bool { return t[i] < t[j] })
	return t[len(t)/2]
}

// run runs a command in dir (the repository root when empty) with extra
// environment, its output going to stderr.
func run(dir string, env []string, name string, args ...string) error {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	return cmd.Run()
}

// shell runs a bash script whose pipelines fail when any command fails.
func shell(script string) *exec.Cmd { return exec.Command("bash", "-o", "pipefail", "-c", script) }

func output(name string, args ...string) string {
	b, _ := exec.Command(name, args...).CombinedOutput()
	return string(b)
}

// gitCommit names the source being measured in the checkout at dir (the
// current folder when empty): `git rev-parse --short HEAD`,
// and "-dirty" with the changed paths when the work tree differs from it
// (untracked files included: a new .go file changes the build). The report
// itself (report, a path relative to the repository root) does not count: a
// previous run rewrote it.
func gitCommit(dir, report string) string {
	git := func(args ...string) ([]byte, error) {
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		return cmd.Output()
	}
	head, err := git("rev-parse", "--short", "HEAD")
	if err != nil {
		return "unknown (not a git checkout)"
	}
	c := strings.TrimSpace(string(head))
	st, err := git("status", "--porcelain")
	if err != nil {
		return c + " (git status failed: dirty or not unknown)"
	}
	var changed []string
	for _, l := range strings.Split(strings.TrimRight(string(st), "\n"), "\n") {
		if len(l) < 4 {
			continue
		}
		if p := l[3:]; p != filepath.ToSlash(report) {
			changed = append(changed, p)
		}
	}
	if len(changed) == 0 {
		return c
	}
	if len(changed) > 5 {
		changed = append(changed[:5], fmt.Sprintf("and %d more", len(changed)-5))
	}
	return fmt.Sprintf("%s-dirty (uncommitted: %s)", c, strings.Join(changed, ", "))
}

func firstLine(s string) string { l, _, _ := strings.Cut(strings.TrimSpace(s), "\n"); return l }

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return runtime.GOARCH
}

// loadAvg is the 1, 5 and 15 minute load averages.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], ", ")
	}
	return "?"
}

func memTotal() string {
	b, _ := os.ReadFile("/proc/meminfo")
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "MemTotal:") {
			f := strings.Fields(l)
			if len(f) >= 2 {
				kb, _ := strconv.ParseInt(f[1], 10, 64)
				return human(kb * 1024)
			}
		}
	}
	return "?"
}

func human(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// dur prints a duration in ms below a second, in s above.
func dur(d time.Duration) string {
	if d < time.Second {
		return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000)
	}
	return fmt.Sprintf("%.2f s", d.Seconds())
}

// ratio prints how many times slower other is than kt.
func ratio(other, kt time.Duration) string {
	if kt <= 0 || other <= 0 {
		return "-"
	}
	r := other.Seconds() / kt.Seconds()
	switch {
	case r >= 10:
		return fmt.Sprintf("%.0fx", r)
	case r >= 1:
		return fmt.Sprintf("%.1fx", r)
	default:
		return fmt.Sprintf("%.2gx", r)
	}
}

func commas(f float64) string {
	s := strconv.FormatInt(int64(f), 10)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// code formats s as inline code inside a Markdown table cell.
func code(s string) string {
	return "`" + strings.ReplaceAll(s, "|", `\|`) + "`"
}
