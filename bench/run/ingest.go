package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// ingest measures import and webhook ingest beside jq and gojq merely
// parsing the same file and DuckDB loading it, then storage beside gzip,
// zstd and DuckDB's database file. It leaves the imported store in
// data-import and the DuckDB file in audit-N.duckdb for the questions.
func (s *suite) ingest(ci int, c corpus) error {
	w := &s.out
	fmt.Fprintf(w, "## Ingest, %s events (%s)\n\n", c.name, human(c.bytes))
	kt := filepath.Join(s.bin, "kubetrail")
	var rows []row

	// jq and gojq only parse and print: the least a jq-based pipeline does.
	for _, tool := range []string{"jq", "gojq"} {
		m, err := s.measure(s.slowRuns(c), func() *exec.Cmd {
			return shell(fmt.Sprintf("%s -c . %s | wc -l", tool, c.path))
		}, wantOutput(strconv.Itoa(c.events)))
		if err != nil {
			return fmt.Errorf("%s: %w", tool, err)
		}
		m.what, m.cmd = tool+" parse", fmt.Sprintf("%s -c . audit.log >/dev/null", tool)
		rows = append(rows, m)
	}
	dir := filepath.Join(s.work, "data-import")
	imp, err := s.measure(s.runs, func() *exec.Cmd {
		os.RemoveAll(dir)
		return exec.Command(kt, "import", "--progress", "never", "--data", dir, c.path)
	}, nil)
	if err != nil {
		return fmt.Errorf("import: %w", err)
	}
	// Check: the store holds every event, byte for byte what was read.
	if err := s.checkExport(kt, dir, c); err != nil {
		return err
	}
	imp.what, imp.cmd = "kubetrail import (parsed, de-duplicated, compressed, fsync'd)", "kubetrail import audit.log"
	rows = append(rows, imp)
	stored := dirSize(dir)

	hooks, err := s.webhook(kt, c)
	if err != nil {
		return err
	}
	hook, hookWhole := hooks.offRows(s.runs)
	rows = append(rows, hook, hookWhole)
	syslogRow, err := s.syslogIngest(kt, c)
	if err != nil {
		return err
	}
	rows = append(rows, syslogRow)

	// policy simulate replays the file under the recommended policy.
	pol := filepath.Join(s.work, "recommended.yaml")
	out, err := exec.Command(kt, "policy", "init", "--profile", "recommended").Output()
	if err != nil {
		return fmt.Errorf("policy init: %w", err)
	}
	if err := os.WriteFile(pol, out, 0o644); err != nil {
		return err
	}
	sim, err := s.measure(s.runs, func() *exec.Cmd {
		return exec.Command(kt, "policy", "simulate", pol, "--log", c.path)
	}, nil)
	if err != nil {
		return fmt.Errorf("policy simulate: %w", err)
	}
	sim.what, sim.cmd = "kubetrail policy simulate (replay under the recommended policy)", "kubetrail policy simulate recommended.yaml --log audit.log"
	rows = append(rows, sim)

	duck, duckBytes, err := s.duckLoad(c)
	if err != nil {
		return err
	}
	rows = append(rows, duck)

	jqParse := rows[0].median
	fmt.Fprintf(w, "| what | command | runs | median | events/s | MB/s | vs jq | peak RSS |\n|---|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		fmt.Fprintf(w, "| %s | `%s` | %d | %.2f s | %s | %.0f | %s | %s |\n", r.what, r.cmd, r.runs, r.median.Seconds(),
			commas(float64(c.events)/r.median.Seconds()), float64(c.bytes)/1e6/r.median.Seconds(), ratio(jqParse, r.median), human(r.rss))
	}
	fmt.Fprintf(w, "\n\"vs jq\" is how many times faster than `jq -c .` merely parsing the file and printing every event again (into `wc -l`). "+
		"The webhook rows are `kubetrail serve --detect=false` (no rules; the same runs with the built-in pack are in the next table). "+
		"The first is webhookload's time from the first batch sent to the last acknowledged, with serve already up; the second is the whole life of the server: "+
		"from starting `kubetrail serve` to its exit 0 after SIGTERM, which seals the write-ahead log into a segment (start, readiness, ingest, final seal). "+
		"events/s counts the corpus's events only; each run also sends the %d probe events of the detection runs (in %s, and a marker after the last ack), the same in both. "+
		"Every run was checked: jq and gojq print every line, the kubetrail store exports the corpus byte for byte, the webhook acknowledged and stored every event and serve exited 0, the DuckDB table holds every line. DuckDB uses both cores.\n\n", hooks.probes, probeBatches(c.events))
	fmt.Fprint(w, syslogNote)
	fmt.Fprintf(w, "Targets: webhook >= 100,000 events/s with durable acks and import >= 5x faster than jq parsing (issue 2); policy simulate faster than jq parsing (issue 4).\n\n")
	s.fig.add("ingest the file: kubetrail import, `jq -c .`, DuckDB load", ci, fig{kt: imp.median, rss: imp.rss, jq: jqParse, duck: duck.median})
	s.fig.add("webhook ingest --detect=false, durable acks", ci, fig{kt: hook.median, rss: hook.rss})
	s.fig.add("webhook ingest --detect=false, serve start to exit after the final seal", ci, fig{kt: hookWhole.median, rss: hookWhole.rss})
	s.fig.add("syslog TCP ingest --detect=false, first frame to last stored", ci, fig{kt: syslogRow.median, rss: syslogRow.rss})
	s.fig.add("policy simulate", ci, fig{kt: sim.median, rss: sim.rss})

	gz, err := pipeSize(fmt.Sprintf("gzip -6 -c %s", c.path))
	if err != nil {
		return err
	}
	zs, err := pipeSize(fmt.Sprintf("zstd -3 -T1 -c %s", c.path))
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "### Storage, %s events\n\n| what | bytes | bytes/event | vs raw | vs kubetrail |\n|---|---|---|---|---|\n", c.name)
	for _, r := range []struct {
		what string
		n    int64
	}{
		{"raw JSON lines", c.bytes},
		{"gzip -6", gz},
		{"zstd -3", zs},
		{"kubetrail data folder (exact original bytes kept)", stored},
		{"DuckDB database file (typed columns + raw line, zstd)", duckBytes},
	} {
		fmt.Fprintf(w, "| %s | %s | %.0f | %.3f | %.2f |\n", r.what, human(r.n), float64(r.n)/float64(c.events), float64(r.n)/float64(c.bytes), float64(r.n)/float64(stored))
	}
	fmt.Fprintln(w)
	s.webhookDetection(ci, c, hooks)
	return nil
}

// slowRuns is how many passes jq and gojq make over the corpus.
func (s *suite) slowRuns(c corpus) int {
	if c.events > slowPassesAbove {
		return 1
	}
	return s.runs
}

func (s *suite) duckPath(c corpus) string {
	return filepath.Join(s.work, fmt.Sprintf("audit-%d.duckdb", c.events))
}

// duckLoad loads the corpus into a new DuckDB database file s.runs times
// (bench/duckdb: one INSERT from read_json_objects, then CHECKPOINT) and
// returns the median and the file's size. Each run must load every line.
func (s *suite) duckLoad(c corpus) (row, int64, error) {
	var res struct {
		Rows  int   `json:"rows"`
		Bytes int64 `json:"bytes"`
	}
	r, err := s.measure(s.runs, func() *exec.Cmd {
		return exec.Command(filepath.Join(s.bin, "duckbench"), "load", "--db", s.duckPath(c), "--log", c.path)
	}, func(out string) error {
		if err := json.Unmarshal([]byte(out), &res); err != nil {
			return fmt.Errorf("duckbench load printed %q: %w", out, err)
		}
		if res.Rows != c.events {
			return fmt.Errorf("DuckDB loaded %d rows of %d events", res.Rows, c.events)
		}
		return nil
	})
	if err != nil {
		return row{}, 0, fmt.Errorf("duckdb load: %w", err)
	}
	r.what, r.cmd = "DuckDB load into a table (typed columns + raw line, zstd; checkpointed)", "duckbench load --db audit.duckdb --log audit.log"
	return r, res.Bytes, nil
}

// checkExport verifies the store holds exactly the corpus's lines.
func (s *suite) checkExport(kt, dir string, c corpus) error {
	got, err := shell(fmt.Sprintf("%s export --data %s | cmp - %s", kt, dir, c.path)).CombinedOutput()
	if err != nil {
		return fmt.Errorf("export of the imported corpus differs from the corpus: %v %s", err, got)
	}
	return nil
}

func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "127.0.0.1:18999"
	}
	defer l.Close()
	return l.Addr().String()
}

func waitReady(addr string) error {
	for i := 0; i < 200; i++ {
		if resp, err := http.Get("http://" + addr + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		time.Sleep(25 * time.Millisecond)
	}
	return fmt.Errorf("not ready after 5s")
}

func pipeSize(script string) (int64, error) {
	out, err := shell(script + " | wc -c").Output()
	if err != nil {
		return 0, fmt.Errorf("%s: %w", script, err)
	}
	return strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
}

func dirSize(dir string) int64 {
	var n int64
	filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
		return nil
	})
	return n
}
