package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// syslogConns is how many TCP connections send the corpus to the syslog
// listener, as many as the webhook rows' clients.
const syslogConns = 4

// syslogPrefix is what comes before each event in a frame: RFC 5424 with
// no structured data, as rsyslog's imfile + omfwd send it with the
// template of docs/ingest.md (without the cluster element).
const syslogPrefix = "<110>1 2026-12-05T00:00:00Z node-1 kube-audit - - - "

// syslogIngest measures `serve --detect=false --syslog-listen tcp://`
// taking the corpus as octet-counted RFC 5424 frames over syslogConns
// connections, each a contiguous part of the file: from the first frame
// written to the moment serve's /metrics counts every event stored
// (syslog has no acknowledgement; serve stores what it read before it
// reads more). Each run must store every event once and export exactly
// the corpus's lines (in another order), and serve must exit 0 after
// SIGTERM.
func (s *suite) syslogIngest(kt string, c corpus) (row, error) {
	want, err := lineSum(c.path)
	if err != nil {
		return row{}, err
	}
	var times []time.Duration
	r := row{runs: s.runs, what: fmt.Sprintf("kubetrail serve --detect=false syslog TCP, first frame to last event stored (RFC 5424, octet counting, %d connections; each read stored, fsync'd, before more is read)", syslogConns),
		cmd: "kubetrail serve --syslog-listen tcp://ADDR"}
	for i := 0; i < s.runs; i++ {
		d, rss, err := s.syslogRun(kt, c, want)
		if err != nil {
			return row{}, err
		}
		times = append(times, d)
		r.rss = max(r.rss, rss)
	}
	r.median = median(times)
	return r, nil
}

// syslogRun is one run of syslogIngest on a new data folder.
func (s *suite) syslogRun(kt string, c corpus, want sum) (time.Duration, int64, error) {
	dir := filepath.Join(s.work, "data-syslog")
	os.RemoveAll(dir)
	defer os.RemoveAll(dir)
	addr, slAddr := freeAddr(), freeAddr()
	srv, peakFile := s.peak(exec.Command(kt, "serve", "--listen", addr, "--data", dir, "--detect=false", "--syslog-listen", "tcp://"+slAddr))
	var slog bytes.Buffer
	srv.Stdout, srv.Stderr = &slog, &slog
	if err := srv.Start(); err != nil {
		return 0, 0, err
	}
	stop := func() error {
		srv.Process.Signal(syscall.SIGTERM) // peakrss passes it on
		if err := srv.Wait(); err != nil {
			return fmt.Errorf("serve did not exit 0 after SIGTERM: %v: %s", err, slog.String())
		}
		return nil
	}
	if err := waitReady(addr); err != nil {
		stop()
		return 0, 0, fmt.Errorf("serve: %v: %s", err, slog.String())
	}
	t0 := time.Now()
	var sendErr error
	sent := make(chan struct{})
	go func() {
		sendErr = sendSyslog(slAddr, c.path, syslogConns)
		close(sent)
	}()
	failed := func() error {
		select {
		case <-sent:
			return sendErr
		default:
			return nil
		}
	}
	stored, err := waitSyslogStored(addr, c.events, failed, 10*time.Minute)
	took := time.Since(t0)
	<-sent
	if err == nil && sendErr != nil {
		err = fmt.Errorf("sender: %w", sendErr)
	}
	if err != nil {
		stop()
		return 0, 0, fmt.Errorf("syslog ingest: %w: %s", err, slog.String())
	}
	// Anything stored twice or refused is counted by now.
	time.Sleep(200 * time.Millisecond)
	m, err := getText("http://" + addr + "/metrics")
	if err != nil {
		stop()
		return 0, 0, err
	}
	if err := stop(); err != nil {
		return 0, 0, err
	}
	for _, result := range []string{"duplicate", "invalid", "skipped", "refused", "unstored"} {
		if v := syslogMetric(m, result); v > 0 {
			return 0, 0, fmt.Errorf("syslog ingest: %d stored and %d %s, want %d stored and nothing else", stored, v, result, c.events)
		}
	}
	got, err := exportSum(kt, dir)
	if err != nil {
		return 0, 0, err
	}
	if got != want {
		return 0, 0, fmt.Errorf("syslog ingest: export holds %d lines, not the corpus's %d lines byte for byte (%x beside %x)", got.lines, want.lines, got.hash, want.hash)
	}
	_, rss, err := readPeak(peakFile)
	return took, rss, err
}

// sendSyslog sends the lines of path to addr as octet-counted RFC 5424
// frames over conns connections, each a contiguous part of the file.
func sendSyslog(addr, path string, conns int) error {
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	starts, err := lineStarts(path, st.Size(), conns)
	if err != nil {
		return err
	}
	errs := make(chan error, conns)
	for i := range conns {
		go func() { errs <- sendPart(addr, path, starts[i], starts[i+1]) }()
	}
	var first error
	for range conns {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// lineStarts splits a file of size bytes into n parts that each begin at
// a line's start; it returns n+1 offsets, the last the size.
func lineStarts(path string, size int64, n int) ([]int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	starts := []int64{0}
	for i := 1; i < n; i++ {
		off := max(size*int64(i)/int64(n), starts[len(starts)-1])
		br := bufio.NewReader(io.NewSectionReader(f, off, size-off))
		skip, err := br.ReadSlice('\n')
		for err == bufio.ErrBufferFull {
			var more []byte
			more, err = br.ReadSlice('\n')
			skip = append(skip, more...)
		}
		if err != nil && err != io.EOF {
			return nil, err
		}
		starts = append(starts, off+int64(len(skip)))
	}
	return append(starts, size), nil
}

// sendPart sends the lines between two offsets of path on one connection.
func sendPart(addr, path string, from, to int64) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	br := bufio.NewReaderSize(io.NewSectionReader(f, from, to-from), 1<<20)
	bw := bufio.NewWriterSize(conn, 256<<10)
	for {
		line, err := br.ReadBytes('\n')
		if line = bytes.TrimSuffix(line, []byte("\n")); len(line) > 0 {
			bw.WriteString(strconv.Itoa(len(syslogPrefix) + len(line)))
			bw.WriteByte(' ')
			bw.WriteString(syslogPrefix)
			bw.Write(line)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
	}
	return bw.Flush()
}

// waitSyslogStored polls serve's /metrics until it counts want syslog
// events stored, and returns the count; an error from failed (the
// sender's) or the timeout ends the wait.
func waitSyslogStored(addr string, want int, failed func() error, timeout time.Duration) (int, error) {
	deadline := time.Now().Add(timeout)
	stored := 0
	for time.Now().Before(deadline) {
		m, err := getText("http://" + addr + "/metrics")
		if err != nil {
			return stored, err
		}
		if stored = syslogMetric(m, "stored"); stored >= want {
			return stored, nil
		}
		if err := failed(); err != nil {
			return stored, fmt.Errorf("sender: %w", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return stored, fmt.Errorf("%d of %d events stored after %s", stored, want, timeout)
}

// syslogMetric is kubetrail_syslog_messages_total of TCP for one result,
// 0 when absent.
func syslogMetric(metrics, result string) int {
	return int(metricValue(metrics, `kubetrail_syslog_messages_total{result="`+result+`",transport="tcp"}`))
}

// metricValue returns one series' value from Prometheus text, 0 when
// absent.
func metricValue(metrics, series string) float64 {
	for _, l := range strings.Split(metrics, "\n") {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return 0
}

func getText(url string) (string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return string(b), err
}

// sum identifies a multiset of lines: their count and the sum of each
// line's SHA-256 (its first 8 bytes), so the order does not matter.
type sum struct {
	lines int
	hash  uint64
}

func (s *sum) add(line []byte) {
	h := sha256.Sum256(line)
	s.lines++
	s.hash += binary.LittleEndian.Uint64(h[:8])
}

func sumLines(r io.Reader) (sum, error) {
	var s sum
	br := bufio.NewReaderSize(r, 1<<20)
	for {
		line, err := br.ReadBytes('\n')
		if line = bytes.TrimSuffix(line, []byte("\n")); len(line) > 0 {
			s.add(line)
		}
		if err == io.EOF {
			return s, nil
		}
		if err != nil {
			return s, err
		}
	}
}

func lineSum(path string) (sum, error) {
	f, err := os.Open(path)
	if err != nil {
		return sum{}, err
	}
	defer f.Close()
	return sumLines(f)
}

// exportSum is the sum of `kubetrail export --data dir`'s lines.
func exportSum(kt, dir string) (sum, error) {
	cmd := exec.Command(kt, "export", "--data", dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return sum{}, err
	}
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		return sum{}, err
	}
	s, serr := sumLines(out)
	if err := cmd.Wait(); err != nil {
		return sum{}, fmt.Errorf("kubetrail export --data %s: %v: %s", dir, err, errb.String())
	}
	return s, serr
}

// syslogNote follows the ingest table.
const syslogNote = "The syslog row sends the corpus as rsyslog's `omfwd` would (octet-counted RFC 5424 frames, the event as the message) over 4 TCP connections, each a quarter of the file, " +
	"to `serve --detect=false --syslog-listen tcp://`, timed from the first frame to the moment serve's /metrics counts every event stored; syslog has no acknowledgement, " +
	"but serve stores (fsync'd) what it read from a connection before it reads more. Every run stored each event once (no duplicate, invalid or skipped frame) and exported the corpus's lines byte for byte, in another order.\n\n"

// forwardBench is the `go test` benchmark of each destination type.
const forwardBench = "go test -run '^$' -bench '^BenchmarkForward$' -benchtime 1x -count 3 ./internal/forward/"

// backlogBench stores events for a minute with no forwarder and with one
// whose destination is down.
const backlogBench = "go test -run '^$' -bench '^BenchmarkBacklogMemory$' -benchtime 60s -count 1 -timeout 30m ./internal/forward/"

// forwarding writes the forwarding section: events/s per destination type
// over loopback, and the memory the backlog costs while a destination is
// down for a minute under load. Both come from internal/forward's
// benchmarks, which run the forwarder's own code (kubetrail forward's and
// serve --forward's) against loopback receivers.
func (s *suite) forwarding() error {
	fwd, err := benchMetrics(forwardBench)
	if err != nil {
		return err
	}
	backlog, err := benchMetrics(backlogBench)
	if err != nil {
		return err
	}
	w := &s.out
	fmt.Fprintf(w, "## Forwarding\n\n`%s`: a one-shot forward (the code of `kubetrail forward` and `serve --forward`) of 50,000 stored events "+
		"(about 600 bytes each, batches of 500) to a loopback receiver that reads each request whole and answers at once; median of 3 runs, the other two beside it. "+
		"Kafka runs against franz-go's in-process broker (kfake) keeping no record bytes, so it measures the client and the protocol, not a broker's disk.\n\n", forwardBench)
	fmt.Fprintf(w, "| destination | events/s | other runs |\n|---|---|---|\n")
	for _, d := range []struct{ sub, what string }{
		{"syslog+tcp", "`syslog+tcp` (RFC 5424, octet counting)"},
		{"webhook_eventlist", "`webhook+http`, EventList"},
		{"webhook_jsonl", "`webhook+http`, `#format=jsonl`"},
		{"splunk", "`splunk+http` (HEC, no ack)"},
		{"elasticsearch", "`elasticsearch+http` (bulk create, `_id` the event key)"},
		{"otlp", "`otlp+http` (JSON)"},
		{"kafka", "`kafka` (idempotent, `acks=all`, 3 partitions)"},
	} {
		v := fwd["BenchmarkForward/"+d.sub]["events/s"]
		if len(v) == 0 {
			return fmt.Errorf("%s printed no events/s for %s", forwardBench, d.sub)
		}
		med, others := medianRest(v)
		fmt.Fprintf(w, "| %s | %s | %s |\n", d.what, commas(med), others)
	}
	fmt.Fprintf(w, "\n**The backlog while a destination is down for a minute under load.** `%s` stores events as fast as it can for a minute (plus the benchmark's ramp-up), "+
		"once with no forwarder and once with a forwarder whose every send fails, and reads the live Go heap after a GC once a second. "+
		"The backlog stays in the store: the forwarder drops its live subscription on a failed send and reads the store from its cursor once the destination is back, "+
		"so the two heaps must be alike however large the backlog.\n\n", backlogBench)
	fmt.Fprintf(w, "| | stored events/s | backlog at the end | live heap after 1 s | live heap, middle | live heap, end | live heap, max |\n|---|---|---|---|---|---|---|\n")
	for _, b := range []struct{ sub, what string }{{"no_forwarder", "no forwarder"}, {"destination_down", "destination down"}} {
		m := backlog["BenchmarkBacklogMemory/"+b.sub]
		if len(m["stored-events/s"]) == 0 || len(m["live-heap-max-MiB"]) == 0 {
			return fmt.Errorf("%s printed no figures for %s", backlogBench, b.sub)
		}
		first := func(k string) float64 {
			if len(m[k]) == 0 {
				return 0
			}
			return m[k][0]
		}
		bl := "-"
		if v := m["backlog-events"]; len(v) > 0 {
			bl = commas(v[0]) + " events"
		}
		fmt.Fprintf(w, "| %s | %s | %s | %.1f MiB | %.1f MiB | %.1f MiB | %.1f MiB |\n", b.what, commas(first("stored-events/s")), bl,
			first("live-heap-first-s-MiB"), first("live-heap-mid-MiB"), first("live-heap-last-MiB"), first("live-heap-max-MiB"))
	}
	fmt.Fprintf(w, "\nThe heap grows alike in both runs: that is the store's own in-memory head while the write-ahead log is not yet sealed, not the backlog.\n\n")
	return nil
}

// benchMetrics runs a `go test -bench` command line and returns each
// benchmark's metrics (unit -> values, one per run), the "-N" GOMAXPROCS
// suffix taken off the name.
func benchMetrics(cmdline string) (map[string]map[string][]float64, error) {
	out, err := shell(cmdline).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("%s: %v\n%s", cmdline, err, out)
	}
	return parseBench(string(out)), nil
}

// parseBench reads `go test -bench` output: NAME-P ITERATIONS (VALUE
// UNIT)...
func parseBench(out string) map[string]map[string][]float64 {
	res := map[string]map[string][]float64{}
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		name := f[0]
		if i := strings.LastIndexByte(name, '-'); i > 0 {
			if _, err := strconv.Atoi(name[i+1:]); err == nil {
				name = name[:i]
			}
		}
		if res[name] == nil {
			res[name] = map[string][]float64{}
		}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				break
			}
			res[name][f[i+1]] = append(res[name][f[i+1]], v)
		}
	}
	return res
}

// medianRest returns the median of v and the other values, comma-separated
// in run order.
func medianRest(v []float64) (float64, string) {
	sorted := append([]float64(nil), v...)
	sort.Float64s(sorted)
	med := sorted[len(sorted)/2]
	var rest []string
	skipped := false
	for _, x := range v {
		if x == med && !skipped {
			skipped = true
			continue
		}
		rest = append(rest, commas(x))
	}
	return med, strings.Join(rest, ", ")
}
