package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// startRuns is how many times each process-start row runs: a start takes
// milliseconds, and the 2-core machine is shared, so only the median of
// many interleaved runs is steady.
const startRuns = 200

// startRow is one command whose whole process life the start section
// times: what the report calls it, what it measures, and the command.
type startRow struct {
	what, measures string
	cmd            func() *exec.Cmd
	want           string // trimmed output every run must print; "" accepts any
}

// helloSource is the floor: the smallest Go program, built like kubetrail.
const helloSource = "package main\n\nimport \"os\"\n\nfunc main() { os.Stdout.WriteString(\"hello\\n\") }\n"

// processStart times new processes that do (almost) nothing but start:
// kubetrail's --version and a count of an empty store and of this corpus's
// store, beside a hello-world Go binary (the runtime's own start on this
// machine), jq, gojq and DuckDB (issue 12: --version and an empty count
// under 2 ms). The rows run interleaved, startRuns rounds of each, so a
// busy moment of the machine spreads over all of them.
func (s *suite) processStart(ci int, c corpus) error {
	kt := filepath.Join(s.bin, "kubetrail")
	static := filepath.Join(s.bin, "kubetrail-static")
	hello := filepath.Join(s.bin, "hello")
	if ci == 0 {
		if err := run("", []string{"CGO_ENABLED=0"}, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", static, "./cmd/kubetrail"); err != nil {
			return fmt.Errorf("go build CGO_ENABLED=0 -trimpath -ldflags='-s -w' ./cmd/kubetrail: %w", err)
		}
		src := filepath.Join(s.work, "hello")
		if err := os.MkdirAll(src, 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(src, "main.go"), []byte(helloSource), 0o644); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(src, "go.mod"), []byte("module hello\n\ngo 1.22\n"), 0o644); err != nil {
			return err
		}
		if err := run(src, []string{"CGO_ENABLED=0"}, "go", "build", "-o", hello, "."); err != nil {
			return fmt.Errorf("go build hello: %w", err)
		}
	}
	empty := filepath.Join(s.work, "data-empty")
	if err := os.MkdirAll(empty, 0o700); err != nil {
		return err
	}
	store := filepath.Join(s.work, "data-import")
	q := questions[0]
	storeCount, err := exec.Command(kt, "query", "--data", store, "--count", q.filter).Output()
	if err != nil {
		return fmt.Errorf("kubetrail query --count %q: %w", q.filter, err)
	}
	version := strings.TrimSpace(output(kt, "--version"))
	rows := []startRow{
		{"Go hello world (the floor)", "a CGO_ENABLED=0 Go binary that writes one line: the runtime's own start on this machine",
			func() *exec.Cmd { return exec.Command(hello) }, "hello"},
		{"kubetrail --version", "the binary `bench/run` built (`go build`, CGO_ENABLED=0: statically linked, as `make build`) printing its version",
			func() *exec.Cmd { return exec.Command(kt, "--version") }, version},
		{"kubetrail --version, stripped", "the same source built as `make static` and the container image (also -trimpath and -ldflags '-s -w': no symbol table, no DWARF)",
			func() *exec.Cmd { return exec.Command(static, "--version") }, version},
		{"kubetrail query --count, empty store", "count of an empty data folder: start, open the folder, find no segment, print 0",
			func() *exec.Cmd { return exec.Command(kt, "query", "--data", empty, "--count") }, "0"},
		{"kubetrail query --count, " + c.name + " store", "`query --count` with the first question's filter (" + q.what + ") over the store import wrote: start, open, plan, count from postings",
			func() *exec.Cmd { return exec.Command(kt, "query", "--data", store, "--count", q.filter) }, strings.TrimSpace(string(storeCount))},
		{"jq -n 1", "jq 1.x starting, evaluating `1` with no input, exiting",
			func() *exec.Cmd { return exec.Command("jq", "-n", "1") }, "1"},
		{"gojq -n 1", "the same in gojq (Go, like kubetrail)",
			func() *exec.Cmd { return exec.Command("gojq", "-n", "1") }, "1"},
		{"duckbench version", "DuckDB's Go bindings (cgo) opening an in-memory database and answering `SELECT version()`",
			func() *exec.Cmd { return exec.Command(filepath.Join(s.bin, "duckbench"), "version") }, ""},
	}
	storeRow := 4
	if ci > 0 {
		// The rows that do not depend on the corpus were measured at the
		// first one.
		rows, storeRow = rows[storeRow:storeRow+1], 0
	}
	wall := make([][]time.Duration, len(rows))
	cpu := make([][]time.Duration, len(rows))
	for range startRuns {
		for i, r := range rows {
			w, u, err := startOnce(r)
			if err != nil {
				return err
			}
			wall[i] = append(wall[i], w)
			cpu[i] = append(cpu[i], u)
		}
	}

	w := &s.out
	fmt.Fprintf(w, "## Process start, %s events\n\n", c.name)
	fmt.Fprintf(w, "Every CLI question pays a process start. At the second corpus on, only the row that depends on the store is measured again. Each row is a new process run %d times, the rows interleaved round by round; "+
		"wall: median time from fork to exit as `bench/run` sees it (exec and wait included, alike for every row); p90 beside it; "+
		"CPU: median user+system time of the process (rusage), which the other work on the machine disturbs less. "+
		"Load average at the end: %s. Target (issue 12): `kubetrail --version` and a count of an empty store under 2 ms.\n\n", startRuns, loadAvg())
	fmt.Fprintf(w, "| process | wall (median) | wall p90 | CPU (median) | what it measures |\n|---|---|---|---|---|\n")
	for i, r := range rows {
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s |\n", r.what, durMicro(median(wall[i])), durMicro(quantile(wall[i], 0.9)), durMicro(median(cpu[i])), r.measures)
	}
	for _, p := range []string{kt, static} {
		if st, err := os.Stat(p); err == nil {
			fmt.Fprintf(w, "\n%s: %s.", filepath.Base(p), human(st.Size()))
		}
	}
	fmt.Fprintf(w, "\n\n")
	s.fig.add("process start: query --count", ci, fig{kt: median(wall[storeRow])})
	return nil
}

// startOnce runs r once and returns its wall and CPU time; its output
// must be r.want.
func startOnce(r startRow) (wall, cpu time.Duration, err error) {
	cmd := r.cmd()
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	t0 := time.Now()
	if err := cmd.Run(); err != nil {
		return 0, 0, fmt.Errorf("%s: %v: %s", cmd.String(), err, errb.String())
	}
	wall = time.Since(t0)
	if got := strings.TrimSpace(out.String()); r.want != "" && got != r.want {
		return 0, 0, fmt.Errorf("%s printed %q, want %q", cmd.String(), got, r.want)
	}
	return wall, cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime(), nil
}

// quantile is the q-quantile of times (nearest rank).
func quantile(times []time.Duration, q float64) time.Duration {
	s := append([]time.Duration(nil), times...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

// durMicro writes a sub-10 ms time in ms with two decimals.
func durMicro(d time.Duration) string {
	if d < 10*time.Millisecond {
		return fmt.Sprintf("%.2f ms", d.Seconds()*1000)
	}
	return dur(d)
}
