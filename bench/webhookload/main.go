// Command webhookload replays an audit log against a kubetrail webhook the
// way the API server's batching webhook backend does: EventList bodies of
// --batch events (items without kind/apiVersion) from --clients concurrent
// senders, each waiting for its answer before sending the next batch. It
// reports events per second acknowledged, and fails if any batch was not
// acknowledged 200 or if the server stored a different number of events.
//
// With --probes N it also adds, to N batches spread evenly over the load,
// one probe event each: an allowed selfsubjectrulesreviews create by the
// user bench-probe, which the built-in pack's "Permission enumeration"
// rule alerts on, with the audit ID bench-probe-K. After the last batch is
// acknowledged it sends one more batch holding the marker probe
// (bench-probe-marker). With --alerts FILE (serve's file:// alert output)
// it watches that file and reports, for each probe, the time from the
// start of its batch's POST to its alert line appearing in the file, and
// when the marker's alert appeared: serve evaluates events in the order
// they were stored, so by then every event before the marker was
// evaluated.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// probePrefix starts every probe's audit ID.
const probePrefix = "bench-probe-"

// markerID is the audit ID of the probe sent after the load.
const markerID = probePrefix + "marker"

func main() {
	var (
		url     = flag.String("url", "http://127.0.0.1:8443/ingest/webhook", "webhook URL")
		file    = flag.String("file", "", "audit log (JSON lines) to replay")
		batch   = flag.Int("batch", 400, "events per batch (the API server's default --audit-webhook-batch-max-size)")
		clients = flag.Int("clients", 4, "concurrent senders")
		limit   = flag.Int("events", 0, "replay at most this many events (0: all)")
		probes  = flag.Int("probes", 0, "add an alerting probe event to this many batches, spread evenly, and send a marker probe after the last ack")
		alerts  = flag.String("alerts", "", "with --probes: the alert file serve writes (--alert-output file://); report each probe's latency and wait for the marker's alert")
		wait    = flag.Duration("wait", 2*time.Minute, "with --alerts: how long to wait for the marker's alert after the last ack")
		asJSON  = flag.Bool("json", false, "print the result as JSON")
	)
	flag.Parse()
	if err := run(*url, *file, *batch, *clients, *limit, *probes, *alerts, *wait, *asJSON); err != nil {
		fmt.Fprintln(os.Stderr, "webhookload:", err)
		os.Exit(1)
	}
}

// result is what a run prints.
type result struct {
	Events          int     `json:"events"`
	Batches         int     `json:"batches"`
	Clients         int     `json:"clients"`
	Batch           int     `json:"batch"`
	Seconds         float64 `json:"seconds"`
	EventsPerSecond float64 `json:"events_per_second"`
	Stored          int64   `json:"stored"`
	FailedBatches   int64   `json:"failed_batches"`
	P50ms           float64 `json:"p50_ms"`
	P99ms           float64 `json:"p99_ms"`
	// Probes counts the probe events sent, the marker included.
	Probes int `json:"probes"`
	// CaughtUpSeconds is from the first batch to the marker's alert in
	// the alert file (0 without --alerts).
	CaughtUpSeconds float64 `json:"caught_up_seconds,omitempty"`
	// ProbeLatencyMs is, per probe (marker excluded), the time from the
	// start of its batch's POST to its alert line in the alert file.
	ProbeLatencyMs []float64 `json:"probe_latency_ms,omitempty"`
}

func run(url, file string, batch, clients, limit, probes int, alertFile string, wait time.Duration, asJSON bool) error {
	if alertFile != "" && probes <= 0 {
		return errors.New("--alerts needs --probes")
	}
	bodies, events, err := buildBodies(file, batch, limit)
	if err != nil {
		return err
	}
	every := probeEvery(len(bodies), probes)
	var w *watcher
	if alertFile != "" {
		w = newWatcher(alertFile)
		defer w.stop()
	}
	var (
		next    atomic.Int64
		stored  atomic.Int64
		failed  atomic.Int64
		latMu   sync.Mutex
		latency []time.Duration
		sent    = map[string]time.Time{} // probe ID -> its POST's start
		sentN   atomic.Int64
	)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients + 1}, Timeout: time.Minute}
	post := func(body []byte) bool {
		resp, err := client.Post(url, "application/json", bytes.NewReader(body))
		if err != nil {
			failed.Add(1)
			return false
		}
		var wr struct{ Stored, Duplicates int }
		json.NewDecoder(resp.Body).Decode(&wr)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			failed.Add(1)
			return false
		}
		stored.Add(int64(wr.Stored))
		return true
	}
	start := time.Now()
	var wg sync.WaitGroup
	for c := 0; c < clients; c++ {
		wg.Go(func() {
			var lats []time.Duration
			for {
				i := int(next.Add(1)) - 1
				if i >= len(bodies) {
					break
				}
				body := bodies[i]
				var id string
				if every > 0 && i%every == 0 {
					id = fmt.Sprintf("%s%06d", probePrefix, i/every)
					body = withProbe(body, probeEvent(id, time.Now()))
				}
				t0 := time.Now()
				if id != "" {
					latMu.Lock()
					sent[id] = t0
					latMu.Unlock()
					sentN.Add(1)
				}
				if post(body) {
					lats = append(lats, time.Since(t0))
				}
			}
			latMu.Lock()
			latency = append(latency, lats...)
			latMu.Unlock()
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	res := result{Events: events, Batches: len(bodies), Clients: clients, Batch: batch,
		Seconds: elapsed.Seconds(), EventsPerSecond: float64(events) / elapsed.Seconds()}
	wantStored := int64(events)
	if every > 0 {
		marker := fmt.Sprintf(`{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":[%s]}`, probeEvent(markerID, time.Now()))
		sentN.Add(1)
		post([]byte(marker))
		res.Probes = int(sentN.Load())
		wantStored += int64(res.Probes)
		if w != nil {
			seen, err := w.waitFor(markerID, wait)
			if err != nil {
				return err
			}
			res.CaughtUpSeconds = seen.Sub(start).Seconds()
			lat, err := probeLatencies(sent, w.snapshot())
			if err != nil {
				return fmt.Errorf("%w (the marker's alert came, so the server skipped those events)", err)
			}
			res.ProbeLatencyMs = lat
		}
	}
	sort.Slice(latency, func(i, j int) bool { return latency[i] < latency[j] })
	pct := func(p float64) time.Duration {
		if len(latency) == 0 {
			return 0
		}
		return latency[int(p*float64(len(latency)-1))]
	}
	res.Stored, res.FailedBatches = stored.Load(), failed.Load()
	res.P50ms, res.P99ms = pct(0.5).Seconds()*1000, pct(0.99).Seconds()*1000
	if asJSON {
		json.NewEncoder(os.Stdout).Encode(res)
	} else {
		fmt.Printf("%d events in %d batches of %d from %d clients: %.2fs, %.0f events/s acknowledged durable; p50 %.1fms p99 %.1fms\n",
			events, len(bodies), batch, clients, elapsed.Seconds(), res.EventsPerSecond, res.P50ms, res.P99ms)
		if w != nil {
			fmt.Printf("%d probes; the marker's alert appeared %.2fs after the first batch\n", res.Probes, res.CaughtUpSeconds)
		}
	}
	if res.FailedBatches > 0 || res.Stored != wantStored {
		return fmt.Errorf("%d batches failed; server stored %d of %d events", res.FailedBatches, res.Stored, wantStored)
	}
	return nil
}

// probeEvery returns k such that batches 0, k, 2k, ... carry a probe:
// about probes of them, evenly spread; 0 when there are no probes.
func probeEvery(batches, probes int) int {
	if probes <= 0 || batches == 0 {
		return 0
	}
	return max(1, batches/probes)
}

// probeEvent is an event the built-in pack's "Permission enumeration" rule
// alerts on (an allowed selfsubjectrulesreviews create by a person), at t.
func probeEvent(id string, t time.Time) string {
	ts := t.UTC().Format("2006-01-02T15:04:05.000000Z")
	return `{"level":"Metadata","auditID":"` + id + `","stage":"ResponseComplete",` +
		`"requestURI":"/apis/authorization.k8s.io/v1/selfsubjectrulesreviews","verb":"create",` +
		`"user":{"username":"bench-probe","groups":["system:authenticated"]},"sourceIPs":["10.0.0.9"],` +
		`"userAgent":"kubectl/v1.32.4 (linux/amd64) kubernetes/59526cd",` +
		`"objectRef":{"resource":"selfsubjectrulesreviews","apiGroup":"authorization.k8s.io","apiVersion":"v1"},` +
		`"responseStatus":{"metadata":{},"code":201},` +
		`"requestReceivedTimestamp":"` + ts + `","stageTimestamp":"` + ts + `",` +
		`"annotations":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":""}}`
}

// withProbe returns body (an EventList ending in "]}") with ev appended
// to its items.
func withProbe(body []byte, ev string) []byte {
	out := make([]byte, 0, len(body)+len(ev)+1)
	out = append(out, body[:len(body)-2]...)
	out = append(out, ',')
	out = append(out, ev...)
	return append(out, "]}"...)
}

// probeLatencies returns, for each probe sent, the time from its POST to
// its alert, in milliseconds; an error names the probes without an alert.
func probeLatencies(sent, seen map[string]time.Time) ([]float64, error) {
	var out []float64
	var missing []string
	for id, t0 := range sent {
		t1, ok := seen[id]
		if !ok {
			missing = append(missing, id)
			continue
		}
		out = append(out, float64(t1.Sub(t0).Microseconds())/1000)
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return nil, fmt.Errorf("%d of %d probes have no alert in the alert file, e.g. %s", len(missing), len(sent), missing[0])
	}
	sort.Float64s(out)
	return out, nil
}

// watcher reads the alert file as serve appends to it, every millisecond,
// and notes when each probe's alert line first appeared.
type watcher struct {
	path string
	mu   sync.Mutex
	seen map[string]time.Time
	err  error
	done chan struct{}
	wg   sync.WaitGroup
}

func newWatcher(path string) *watcher {
	w := &watcher{path: path, seen: map[string]time.Time{}, done: make(chan struct{})}
	w.wg.Go(w.loop)
	return w
}

func (w *watcher) stop() { close(w.done); w.wg.Wait() }

func (w *watcher) loop() {
	var f *os.File
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	var pending []byte
	buf := make([]byte, 1<<20)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-w.done:
			return
		case <-tick.C:
		}
		if f == nil {
			var err error
			if f, err = os.Open(w.path); err != nil {
				continue // serve creates it with the first alert
			}
		}
		for {
			n, err := f.Read(buf)
			now := time.Now()
			pending = append(pending, buf[:n]...)
			for {
				nl := bytes.IndexByte(pending, '\n')
				if nl < 0 {
					break
				}
				w.line(pending[:nl], now)
				pending = pending[nl+1:]
			}
			if err == io.EOF || n == 0 {
				break
			}
			if err != nil {
				w.fail(err)
				return
			}
		}
	}
}

// line notes the probes an alert line is about.
func (w *watcher) line(l []byte, now time.Time) {
	if !bytes.Contains(l, []byte(probePrefix)) {
		return
	}
	var a struct {
		AuditIDs []string `json:"auditIDs"`
	}
	if err := json.Unmarshal(l, &a); err != nil {
		w.fail(fmt.Errorf("alert file %s: a line that is not JSON: %w", w.path, err))
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, id := range a.AuditIDs {
		if _, ok := w.seen[id]; !ok && strings.HasPrefix(id, probePrefix) {
			w.seen[id] = now
		}
	}
}

func (w *watcher) fail(err error) {
	w.mu.Lock()
	if w.err == nil {
		w.err = err
	}
	w.mu.Unlock()
}

// waitFor waits until id's alert appeared and returns when it did.
func (w *watcher) waitFor(id string, limit time.Duration) (time.Time, error) {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		w.mu.Lock()
		t, ok := w.seen[id]
		err := w.err
		w.mu.Unlock()
		if err != nil {
			return time.Time{}, err
		}
		if ok {
			return t, nil
		}
		time.Sleep(time.Millisecond)
	}
	return time.Time{}, fmt.Errorf("no alert for %s in %s within %s of the last ack", id, w.path, limit)
}

func (w *watcher) snapshot() map[string]time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(map[string]time.Time, len(w.seen))
	for k, v := range w.seen {
		out[k] = v
	}
	return out
}

// buildBodies turns log lines into webhook EventList bodies, with each
// item's kind and apiVersion removed as the API server's webhook does.
func buildBodies(path string, batch, limit int) ([][]byte, int, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	prefix := []byte(`{"kind":"Event","apiVersion":"audit.k8s.io/v1",`)
	var bodies [][]byte
	var cur bytes.Buffer
	n, inBatch := 0, 0
	flush := func() {
		if inBatch == 0 {
			return
		}
		cur.WriteString("]}")
		bodies = append(bodies, append([]byte(nil), cur.Bytes()...))
		cur.Reset()
		inBatch = 0
	}
	for sc.Scan() {
		if limit > 0 && n >= limit {
			break
		}
		line := sc.Bytes()
		if inBatch == 0 {
			cur.WriteString(`{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":[`)
		} else {
			cur.WriteByte(',')
		}
		if bytes.HasPrefix(line, prefix) {
			cur.WriteByte('{')
			cur.Write(line[len(prefix):])
		} else {
			cur.Write(line)
		}
		n++
		inBatch++
		if inBatch == batch {
			flush()
		}
	}
	flush()
	return bodies, n, sc.Err()
}
