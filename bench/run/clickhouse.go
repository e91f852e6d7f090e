package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/kubetrail/kubetrail/internal/store/clickhouse/chtest"
)

// The ClickHouse section loads the corpus through kubetrail collectors
// (`kubetrail import --store`) into Debian's clickhouse-server, one server
// and two shards on loopback (a Distributed table), and asks the seed
// questions, the statistics and the investigations with --store, beside
// the embedded store's and DuckDB's figures from the same run. As
// everywhere in the suite, no time is written before the answers agree
// with the embedded store's.

// chLayout is one ClickHouse deployment the section runs against.
type chLayout struct {
	name    string
	nodes   []*chtest.Node
	cluster string // the remote_servers cluster, "" for one server
}

// url is collector i's store URL for database db: collectors take the
// layout's servers in turn, as a fleet's collectors spread over shards.
func (l *chLayout) url(i int, db string) string {
	u := strings.Replace(l.nodes[i%len(l.nodes)].URL(), "http://", "clickhouse://", 1) + "/" + db
	if l.cluster != "" {
		u += "?cluster=" + l.cluster
	}
	return u
}

// table is the table that holds the rows on each server.
func (l *chLayout) table() string {
	if l.cluster != "" {
		return "events_local"
	}
	return "events"
}

// cpuTicks is the servers' CPU time so far (user + system), from /proc.
func (l *chLayout) cpuTicks() (time.Duration, error) {
	var total time.Duration
	for _, n := range l.nodes {
		d, err := procCPU(n.PID())
		if err != nil {
			return 0, err
		}
		total += d
	}
	return total, nil
}

// sql runs a statement on every server and returns the answers.
func (l *chLayout) sql(stmt string) ([]string, error) {
	var out []string
	for _, n := range l.nodes {
		a, err := chSQL(n.URL(), stmt)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, nil
}

// startLayouts starts one server and a two-shard cluster (on 127.0.0.1
// and 127.0.0.2, one HTTP port number, as kubetrail setup expects of a
// cluster).
func startLayouts() ([]*chLayout, error) {
	one, err := chtest.StartNode(chtest.Options{})
	if err != nil {
		return nil, err
	}
	hosts := []string{"127.0.0.1", "127.0.0.2"}
	httpPort, err := chtest.SharedPort(hosts...)
	if err != nil {
		return nil, errors.Join(err, one.Stop())
	}
	tcp := make([]int, len(hosts))
	for i := range tcp {
		if tcp[i], err = chtest.SharedPort(hosts...); err != nil {
			return nil, errors.Join(err, one.Stop())
		}
	}
	var remote strings.Builder
	remote.WriteString("<kt2>")
	for i, h := range hosts {
		fmt.Fprintf(&remote, "<shard><replica><host>%s</host><port>%d</port></replica></shard>", h, tcp[i])
	}
	remote.WriteString("</kt2>")
	var opts []chtest.Options
	for i, h := range hosts {
		opts = append(opts, chtest.Options{Host: h, HTTPPort: httpPort, TCPPort: tcp[i], RemoteServers: remote.String()})
	}
	shards, err := chtest.StartNodes(opts...)
	if err != nil {
		return nil, errors.Join(err, one.Stop())
	}
	return []*chLayout{{name: "one server", nodes: []*chtest.Node{one}}, {name: "two shards", nodes: shards, cluster: "kt2"}}, nil
}

// chLoad is one load of the corpus through n collectors.
type chLoad struct {
	layout     *chLayout
	collectors int
	wall       []time.Duration
	ktCPU      []time.Duration
	chCPU      []time.Duration
	load       string // load average after the last run
}

// clickhouse is the section.
func (s *suite) clickhouse(ci int, c corpus) error {
	w := &s.out
	kt := filepath.Join(s.bin, "kubetrail")
	data := filepath.Join(s.work, "data-import")
	layouts, err := startLayouts()
	if err != nil {
		return fmt.Errorf("start clickhouse-server (bench/run.sh installs it): %w", err)
	}
	defer func() {
		for _, l := range layouts {
			chtest.StopNodes(l.nodes)
		}
	}()
	version, err := chSQL(layouts[0].nodes[0].URL(), "SELECT version()")
	if err != nil {
		return err
	}
	halves, err := s.splitCorpus(c, 2)
	if err != nil {
		return err
	}
	total, err := exec.Command(kt, "query", "--data", data, "--count").Output()
	if err != nil {
		return fmt.Errorf("kubetrail query --count --data: %w", err)
	}
	want := strings.TrimSpace(string(total))

	runs := s.runs
	if c.events > slowPassesAbove {
		runs = 1
	}
	var loads []*chLoad
	dbs := map[*chLayout]string{} // the database each layout's questions read
	for li, l := range layouts {
		for _, n := range []int{1, 2} {
			ld := &chLoad{layout: l, collectors: n}
			for r := range runs {
				db := fmt.Sprintf("kt_bench_%d_%d_%d", li, n, r)
				files := []string{c.path}
				if n == 2 {
					files = halves
				}
				if err := s.chLoadOnce(ld, db, files, want); err != nil {
					return fmt.Errorf("ClickHouse %s, %d collectors: %w", l.name, n, err)
				}
				if old, ok := dbs[l]; ok {
					if _, err := l.sql("DROP DATABASE IF EXISTS " + old); err != nil {
						return err
					}
				}
				dbs[l] = db
			}
			ld.load = loadAvg()
			loads = append(loads, ld)
		}
	}

	fmt.Fprintf(w, "## ClickHouse, %s events\n\n", c.name)
	fmt.Fprintf(w, "kubetrail's ClickHouse store (docs/clickhouse.md) on Debian's clickhouse-server %s started by the suite on loopback: **one server**, and **two shards** "+
		"(two servers on 127.0.0.1 and 127.0.0.2, a `Distributed` table over each one's `events_local`, rows sharded by the event key), both on this same %d-core machine. "+
		"ClickHouse's figures are thus shared with the collectors' on the same cores: a real cluster gives each shard its own machine.\n\n", version, len(layouts[0].nodes)+1)
	s.writeLoads(loads, runs, c)
	if err := s.chStorage(layouts, dbs, data, c); err != nil {
		return err
	}
	floor, err := httpFloor(layouts[0].nodes[0].URL())
	if err != nil {
		return err
	}
	if err := s.chQuestions(ci, c, layouts, dbs, floor); err != nil {
		return err
	}
	return nil
}

// splitCorpus writes the corpus's lines into n files of consecutive lines
// (cached next to the corpus), one per collector.
func (s *suite) splitCorpus(c corpus, n int) ([]string, error) {
	var paths []string
	for i := range n {
		paths = append(paths, fmt.Sprintf("%s.part%dof%d", c.path, i+1, n))
	}
	if _, err := os.Stat(paths[n-1]); err == nil {
		return paths, nil
	}
	in, err := os.Open(c.path)
	if err != nil {
		return nil, err
	}
	defer in.Close()
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	per := (c.events + n - 1) / n
	for i, p := range paths {
		// Written under a temporary name: a cut-short run leaves no part
		// that looks whole.
		f, err := os.Create(p + ".tmp")
		if err != nil {
			return nil, err
		}
		bw := bufio.NewWriterSize(f, 1<<20)
		for j := 0; j < per && sc.Scan(); j++ {
			bw.Write(sc.Bytes())
			bw.WriteByte('\n')
		}
		err = errors.Join(bw.Flush(), f.Close())
		if err == nil && i == n-1 && sc.Scan() {
			err = fmt.Errorf("split %s: lines left over", c.path)
		}
		if err != nil {
			return nil, err
		}
	}
	for _, p := range paths {
		if err := os.Rename(p+".tmp", p); err != nil {
			return nil, err
		}
	}
	return paths, sc.Err()
}

// chLoadOnce creates database db and loads files into it, one `kubetrail
// import --store` collector per file, all at once; each import ends once
// ClickHouse took every event. The store must then count want events.
func (s *suite) chLoadOnce(ld *chLoad, db string, files []string, want string) error {
	kt := filepath.Join(s.bin, "kubetrail")
	l := ld.layout
	if out, err := exec.Command(kt, "setup", "clickhouse", "--store", l.url(0, db)).CombinedOutput(); err != nil {
		return fmt.Errorf("kubetrail setup clickhouse: %v: %s", err, out)
	}
	before, err := l.cpuTicks()
	if err != nil {
		return err
	}
	var cmds []*exec.Cmd
	var errs []*bytes.Buffer
	t0 := time.Now()
	for i, f := range files {
		spool := filepath.Join(s.work, fmt.Sprintf("ch-collector-%d", i))
		os.RemoveAll(spool)
		cmd := exec.Command(kt, "import", "--progress", "never", "--data", spool, "--store", l.url(i, db), f)
		var eb bytes.Buffer
		cmd.Stderr = &eb
		if err := cmd.Start(); err != nil {
			return err
		}
		cmds, errs = append(cmds, cmd), append(errs, &eb)
	}
	var cpu time.Duration
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			return fmt.Errorf("kubetrail import --store: %v: %s", err, errs[i].String())
		}
		cpu += cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	}
	wall := time.Since(t0)
	after, err := l.cpuTicks()
	if err != nil {
		return err
	}
	got, err := exec.Command(kt, "query", "--store", l.url(0, db), "--count").Output()
	if err != nil {
		return fmt.Errorf("kubetrail query --count --store: %w", err)
	}
	if g := strings.TrimSpace(string(got)); g != want {
		return fmt.Errorf("ClickHouse counts %s events after the load, the embedded store %s", g, want)
	}
	ld.wall, ld.ktCPU, ld.chCPU = append(ld.wall, wall), append(ld.ktCPU, cpu), append(ld.chCPU, after-before)
	return nil
}

func (s *suite) writeLoads(loads []*chLoad, runs int, c corpus) {
	w := &s.out
	fmt.Fprintf(w, "### Loading through collectors, %s events\n\n", c.name)
	fmt.Fprintf(w, "Each collector is a `kubetrail import --store clickhouse://... --data SPOOL FILE` process: it decodes and de-duplicates the lines, encodes RowBinary rows, "+
		"makes them durable in its own WAL (fsync) and ships them in inserts of up to 64 MiB; it exits once ClickHouse took every event, so the wall time is to the last event in ClickHouse. "+
		"With two collectors, each takes half the corpus (consecutive lines), both started at once; on two shards, each talks to its own shard's server, whose Distributed table sends "+
		"each row to the shard its key picks (`insert_distributed_sync=1`). The store counted every event once after each load (`query --count --store`). "+
		"Median of %d; CPU is user + system time, of the import processes (rusage) and of the clickhouse-server processes (/proc/PID/stat) over the load, medians. "+
		"The load average is read after the row's runs (other work on this machine slows every figure here; CPU time is the steadier measure). "+
		"Target (issue 13): at least 200,000 events/s into ClickHouse with two collectors.\n\n", runs)
	fmt.Fprintf(w, "| ClickHouse | collectors | events/s | wall | kubetrail CPU | ClickHouse CPU | CPU per 100k events | load average |\n|---|---|---|---|---|---|---|---|\n")
	for _, ld := range loads {
		wall, kcpu, ccpu := median(ld.wall), median(ld.ktCPU), median(ld.chCPU)
		per := (kcpu + ccpu).Seconds() * 100_000 / float64(c.events)
		fmt.Fprintf(w, "| %s | %d | %s | %s | %.2f s | %.2f s | %.2f s | %s |\n", ld.layout.name, ld.collectors,
			commas(float64(c.events)/wall.Seconds()), dur(wall), kcpu.Seconds(), ccpu.Seconds(), per, ld.load)
	}
	fmt.Fprintln(w)
}

// chStorage writes the bytes each store takes, ClickHouse's from
// system.parts (active parts), as loaded and after OPTIMIZE ... FINAL
// has merged the parts (which the questions then read).
func (s *suite) chStorage(layouts []*chLayout, dbs map[*chLayout]string, data string, c corpus) error {
	w := &s.out
	embedded := dirSize(data)
	fmt.Fprintf(w, "### Storage, %s events\n\n", c.name)
	fmt.Fprintf(w, "ClickHouse: `sum(bytes_on_disk)` of the events table's active parts in `system.parts` (every shard's `events_local` added up), as the two-collector load left them, "+
		"then after `OPTIMIZE TABLE ... FINAL` merged each partition into one part (which the questions below read). "+
		"18.16 compresses every column with LZ4 and has no per-column CODEC; the raw line is kept whole, beside a column per filter field. "+
		"The embedded store: its data folder after `kubetrail import`.\n\n")
	fmt.Fprintf(w, "| store | bytes | per event | vs embedded |\n|---|---|---|---|\n")
	fmt.Fprintf(w, "| embedded store (data folder) | %s | %.0f B | 1x |\n", human(embedded), float64(embedded)/float64(c.events))
	for _, l := range layouts {
		db := dbs[l]
		loaded, err := partBytes(l, db)
		if err != nil {
			return err
		}
		if _, err := l.sql("OPTIMIZE TABLE " + db + "." + l.table() + " FINAL"); err != nil {
			return err
		}
		merged, err := partBytes(l, db)
		if err != nil {
			return err
		}
		for _, r := range []struct {
			what string
			n    int64
		}{{"as loaded", loaded}, {"after OPTIMIZE FINAL", merged}} {
			fmt.Fprintf(w, "| ClickHouse, %s, %s | %s | %.0f B | %.1fx |\n", l.name, r.what, human(r.n), float64(r.n)/float64(c.events), float64(r.n)/float64(embedded))
		}
	}
	fmt.Fprintln(w)
	return nil
}

// partBytes is the bytes on disk of db's rows on every server of l.
func partBytes(l *chLayout, db string) (int64, error) {
	answers, err := l.sql("SELECT sum(bytes_on_disk) FROM system.parts WHERE active AND database = '" + db + "' AND table = '" + l.table() + "'")
	if err != nil {
		return 0, err
	}
	var n int64
	for _, a := range answers {
		v, err := strconv.ParseInt(strings.TrimSpace(a), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("system.parts answered %q: %w", a, err)
		}
		n += v
	}
	return n, nil
}

// chQuestions asks the questions, statistics and investigations of each
// layout's store and of the embedded store, checking the answers agree.
func (s *suite) chQuestions(ci int, c corpus, layouts []*chLayout, dbs map[*chLayout]string, floor time.Duration) error {
	w := &s.out
	kt := filepath.Join(s.bin, "kubetrail")
	data := filepath.Join(s.work, "data-import")
	qruns := max(5, s.runs)
	jqRuns := qruns
	if c.events > slowPassesAbove {
		jqRuns = s.runs
	}
	storeArgs := func(l *chLayout) []string { return []string{"--store", l.url(0, dbs[l])} }

	fmt.Fprintf(w, "### Questions on ClickHouse, %s events\n\n", c.name)
	fmt.Fprintf(w, "The questions of the tables above, as a new process each time: `kubetrail query --count --store URL FILTER` (median of %d) and `kubetrail query -o jsonl --store URL FILTER > out` (median of %d), "+
		"beside the embedded store's and DuckDB's figures from the same run (the questions table above). Before a time is written, the events each store printed are compared as sorted "+
		"(auditID, stage, stageTimestamp) lists and the counts must agree. "+
		"No answer on ClickHouse reads the table `FINAL`: copies of an event count once by their key (docs/clickhouse.md, Speed). "+
		"The floor: one HTTP request `SELECT 1` to the server from a warm Go client takes %s (median of 50), and a `kubetrail query --count --store` of a question that matches nothing takes the time in the last row.\n\n",
		qruns, jqRuns, dur(floor))
	fmt.Fprintf(w, "| question | events | embedded --count | %s --count | DuckDB count | embedded -o jsonl | %s -o jsonl |\n|---|---|---|%s---|---|%s\n",
		strings.Join(names(layouts), " --count | "), strings.Join(names(layouts), " -o jsonl | "), strings.Repeat("---|", len(layouts)), strings.Repeat("---|", len(layouts)))
	for _, q := range questions {
		list, err := exec.Command(kt, "query", "--data", data, "-o", "jsonl", q.filter).Output()
		if err != nil {
			return fmt.Errorf("kubetrail query -o jsonl %q: %w", q.filter, err)
		}
		want, err := eventKeys(bytes.NewReader(list))
		if err != nil {
			return err
		}
		count := strconv.Itoa(len(want))
		var counts, prints []string
		for _, l := range layouts {
			args := append(storeArgs(l), "-o", "jsonl", q.filter)
			pr, err := s.measure(jqRuns, func() *exec.Cmd { return exec.Command(kt, append([]string{"query"}, args...)...) }, func(out string) error {
				got, err := eventKeys(strings.NewReader(out))
				if err != nil {
					return err
				}
				return sameKeys(want, got)
			})
			if err != nil {
				return fmt.Errorf("%q on ClickHouse %s: %w", q.what, l.name, err)
			}
			cq, err := s.measure(qruns, func() *exec.Cmd {
				return exec.Command(kt, append([]string{"query", "--count"}, append(storeArgs(l), q.filter)...)...)
			}, wantOutput(count))
			if err != nil {
				return fmt.Errorf("%q on ClickHouse %s: %w", q.what, l.name, err)
			}
			counts, prints = append(counts, dur(cq.median)), append(prints, dur(pr.median))
		}
		e := s.fig.by[q.what][ci]
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s |\n", q.what, count, dur(e.kt), strings.Join(counts, " | "), dur(e.duck), dur(e.ktPrint), strings.Join(prints, " | "))
	}
	// The floor: a question nothing matches.
	var floors []string
	for _, l := range layouts {
		f, err := s.measure(qruns, func() *exec.Cmd {
			return exec.Command(kt, append([]string{"query", "--count"}, append(storeArgs(l), "user=nobody-at-all")...)...)
		}, wantOutput("0"))
		if err != nil {
			return err
		}
		floors = append(floors, dur(f.median))
	}
	ef, err := s.measure(qruns, func() *exec.Cmd { return exec.Command(kt, "query", "--count", "--data", data, "user=nobody-at-all") }, wantOutput("0"))
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "| (nothing matches: `user=nobody-at-all`) | 0 | %s | %s | - | - |%s\n\n", dur(ef.median), strings.Join(floors, " | "), strings.Repeat(" - |", len(layouts)))

	fmt.Fprintf(w, "### Statistics and investigations on ClickHouse, %s events\n\n", c.name)
	fmt.Fprintf(w, "The statistics of the table above and each investigation (`-o json`), over the embedded store (`--data`) and each ClickHouse layout (`--store`), as a new process each time, median of %d; "+
		"the whole answer must be the same, byte for byte (statistics: every group and its count, in order), before a time is written. "+
		"DuckDB's statistics figure is from the statistics table above; the same investigations beside jq and DuckDB are in the investigations table above.\n\n", qruns)
	fmt.Fprintf(w, "| command | answer | embedded | %s | DuckDB |\n|---|---|---|%s---|\n", strings.Join(names(layouts), " | "), strings.Repeat("---|", len(layouts)))
	for _, st := range statistics {
		var embeddedOut string
		e, err := s.measure(qruns, func() *exec.Cmd { return exec.Command(kt, append(st.args, "--data", data)...) }, func(out string) error {
			embeddedOut = out
			return nil
		})
		if err != nil {
			return err
		}
		want, err := statRows(embeddedOut, st.keyLen)
		if err != nil {
			return err
		}
		var cells []string
		for _, l := range layouts {
			r, err := s.measure(qruns, func() *exec.Cmd { return exec.Command(kt, append(st.args, storeArgs(l)...)...) }, func(out string) error {
				got, err := statRows(out, st.keyLen)
				if err != nil {
					return err
				}
				return sameKeys(want, got)
			})
			if err != nil {
				return fmt.Errorf("%q on ClickHouse %s: %w", st.what, l.name, err)
			}
			cells = append(cells, dur(r.median))
		}
		fmt.Fprintf(w, "| `kubetrail %s` | %d groups | %s | %s | %s |\n", strings.Join(st.args, " "), len(want), dur(e.median), strings.Join(cells, " | "), dur(s.fig.by[st.what][ci].duck))
	}
	for _, inv := range investigations {
		var want string
		e, err := s.measure(qruns, func() *exec.Cmd {
			return exec.Command(kt, append(append([]string{}, inv.args...), "-o", "json", "--data", data)...)
		}, func(out string) error { want = out; return nil })
		if err != nil {
			return err
		}
		var cells []string
		for _, l := range layouts {
			r, err := s.measure(qruns, func() *exec.Cmd {
				return exec.Command(kt, append(append(append([]string{}, inv.args...), "-o", "json"), storeArgs(l)...)...)
			}, func(out string) error {
				if out != want {
					return fmt.Errorf("answered %d bytes, the embedded store %d bytes, not the same: %s", len(out), len(want), firstDiff(out, want))
				}
				return nil
			})
			if err != nil {
				return fmt.Errorf("kubetrail %s on ClickHouse %s: %w", strings.Join(inv.args, " "), l.name, err)
			}
			cells = append(cells, dur(r.median))
		}
		fmt.Fprintf(w, "| `kubetrail %s` | %s | %s | %s | - |\n", strings.Join(inv.args, " "), jsonSize(want), dur(e.median), strings.Join(cells, " | "))
	}
	fmt.Fprintln(w)
	return nil
}

func names(layouts []*chLayout) []string {
	var n []string
	for _, l := range layouts {
		n = append(n, "ClickHouse "+l.name)
	}
	return n
}

// jsonSize describes an investigation's JSON answer: its rows when it is
// an array or an object holding one, else its size.
func jsonSize(out string) string {
	var v any
	if err := json.Unmarshal([]byte(out), &v); err == nil {
		switch x := v.(type) {
		case []any:
			return fmt.Sprintf("%d rows", len(x))
		case map[string]any:
			for _, k := range []string{"rows", "events", "groups", "items"} {
				if a, ok := x[k].([]any); ok {
					return fmt.Sprintf("%d %s", len(a), k)
				}
			}
		}
	}
	return human(int64(len(out)))
}

// firstDiff shows where two answers part.
func firstDiff(a, b string) string {
	i := 0
	for i < len(a) && i < len(b) && a[i] == b[i] {
		i++
	}
	lo := max(0, i-80)
	return fmt.Sprintf("at byte %d: %q vs %q", i, a[lo:min(len(a), i+80)], b[lo:min(len(b), i+80)])
}

// httpFloor is the median time of 50 `SELECT 1` requests from a warm
// client: the least any question costs on ClickHouse's HTTP interface.
func httpFloor(base string) (time.Duration, error) {
	var times []time.Duration
	for range 50 {
		t0 := time.Now()
		if _, err := chSQL(base, "SELECT 1"); err != nil {
			return 0, err
		}
		times = append(times, time.Since(t0))
	}
	return median(times), nil
}

// chSQL runs one statement over ClickHouse's HTTP interface and returns
// its answer (TabSeparated).
func chSQL(base, stmt string) (string, error) {
	resp, err := http.Post(base+"/", "text/plain", strings.NewReader(stmt))
	if err != nil {
		return "", fmt.Errorf("clickhouse %s: %w", base, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("clickhouse %s: %s: %s", base, stmt, strings.TrimSpace(string(b)))
	}
	return strings.TrimSpace(string(b)), nil
}

// procCPU is a process's user + system CPU time so far, from
// /proc/PID/stat (fields 14 and 15, in clock ticks of 1/100 s).
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name, in parentheses, may hold spaces: count fields
	// after its closing parenthesis (field 3 on).
	i := bytes.LastIndexByte(b, ')')
	f := strings.Fields(string(b[i+1:]))
	if i < 0 || len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected %q", pid, b)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return time.Duration(ut+st) * 10 * time.Millisecond, nil
}
