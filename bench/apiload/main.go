// Command apiload measures `kubetrail serve`'s read API warm, the way a
// dashboard or a script polling it uses it: for each question (an API path
// with its query string) and each number of concurrent clients, the clients
// send the request over keep-alive connections, each waiting for the whole
// answer before sending the next, for --duration; it reports requests per
// second and the p50 and p99 latency of a request (from sending it to
// reading the last byte of the answer). Every answer must be 200, and the
// first of each level must carry the question's expected body fragment.
//
// With --ingest FILE it also sends the events of FILE to serve's webhook
// at --ingest-rate events per second during the whole measurement, from
// --ingest-senders concurrent senders (EventList batches of 400, each
// audit ID made new so the store keeps every event), and reports the rate
// it reached: reads are measured while the store is being written, as in
// production. One sender waiting for each fsynced answer reached only a
// few thousand events per second.
//
// Questions come as JSON on stdin: [{"name": ..., "path": ..., "want": ...}].
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// question is one API request to measure.
type question struct {
	Name string `json:"name"`
	// Path is the request's path and query string, e.g.
	// /api/v1/stats?filter=verb%3Ddelete.
	Path string `json:"path"`
	// Want, when set, must appear in the first answer of every level.
	Want string `json:"want,omitempty"`
}

// level is the result of one question at one number of clients.
type level struct {
	Name              string  `json:"name"`
	Clients           int     `json:"clients"`
	Requests          int     `json:"requests"`
	RequestsPerSecond float64 `json:"requests_per_second"`
	P50ms             float64 `json:"p50_ms"`
	P99ms             float64 `json:"p99_ms"`
}

// result is what a run prints.
type result struct {
	Levels []level `json:"levels"`
	// IngestEventsPerSecond is the rate the ingest reached over the whole
	// measurement (0 without --ingest); IngestRateAsked the one asked.
	IngestEventsPerSecond float64 `json:"ingest_events_per_second"`
	IngestRateAsked       int     `json:"ingest_rate_asked,omitempty"`
	IngestEvents          int64   `json:"ingest_events"`
}

func main() {
	var (
		base       = flag.String("url", "http://127.0.0.1:8443", "serve's address")
		clientList = flag.String("clients", "1,8,64", "comma-separated numbers of concurrent clients")
		duration   = flag.Duration("duration", 2*time.Second, "how long each question is asked at each level")
		warmup     = flag.Int("warmup", 20, "requests of each question sent, untimed, before its first level")
		ingestFile = flag.String("ingest", "", "audit log (JSON lines) to send to the webhook during the measurement")
		ingestRate = flag.Int("ingest-rate", 50000, "with --ingest: events per second, all senders together")
		senders    = flag.Int("ingest-senders", 4, "with --ingest: concurrent senders, each waiting for its answer")
	)
	flag.Parse()
	var qs []question
	if err := json.NewDecoder(os.Stdin).Decode(&qs); err != nil {
		fmt.Fprintln(os.Stderr, "apiload: questions on stdin:", err)
		os.Exit(2)
	}
	var clients []int
	for _, f := range strings.Split(*clientList, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			fmt.Fprintf(os.Stderr, "apiload: --clients %q: want positive numbers\n", *clientList)
			os.Exit(2)
		}
		clients = append(clients, n)
	}
	if *senders < 1 || *ingestRate < 1 {
		fmt.Fprintln(os.Stderr, "apiload: --ingest-senders and --ingest-rate must be positive")
		os.Exit(2)
	}
	res, err := run(*base, qs, clients, *duration, *warmup, *ingestFile, *ingestRate, *senders)
	if err != nil {
		fmt.Fprintln(os.Stderr, "apiload:", err)
		os.Exit(1)
	}
	json.NewEncoder(os.Stdout).Encode(res)
}

func run(base string, qs []question, clients []int, d time.Duration, warmup int, ingestFile string, rate, senders int) (result, error) {
	maxClients := 0
	for _, c := range clients {
		maxClients = max(maxClients, c)
	}
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: maxClients + 1, MaxConnsPerHost: maxClients + 1}, Timeout: time.Minute}
	var res result
	ctx, stop := context.WithCancel(context.Background())
	ingestDone := make(chan error, 1)
	var sent atomic.Int64
	t0 := time.Now()
	if ingestFile != "" {
		go func() { ingestDone <- ingest(ctx, base+"/ingest/webhook", ingestFile, rate, senders, &sent) }()
	} else {
		ingestDone <- nil
	}
	for _, q := range qs {
		for range warmup {
			if _, _, err := get(hc, base+q.Path); err != nil {
				stop()
				return res, fmt.Errorf("%s: %w", q.Name, err)
			}
		}
		for _, c := range clients {
			l, err := measure(hc, base, q, c, d)
			if err != nil {
				stop()
				return res, err
			}
			res.Levels = append(res.Levels, l)
		}
	}
	stop()
	if err := <-ingestDone; err != nil {
		return res, fmt.Errorf("ingest: %w", err)
	}
	res.IngestEvents = sent.Load()
	if ingestFile != "" {
		res.IngestRateAsked = rate
	}
	res.IngestEventsPerSecond = float64(res.IngestEvents) / time.Since(t0).Seconds()
	return res, nil
}

// measure asks q from c clients for d.
func measure(hc *http.Client, base string, q question, c int, d time.Duration) (level, error) {
	var mu sync.Mutex
	var lat []time.Duration
	var firstErr error
	var wg sync.WaitGroup
	start := time.Now()
	end := start.Add(d)
	for i := range c {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			for time.Now().Before(end) {
				t := time.Now()
				_, body, err := get(hc, base+q.Path)
				el := time.Since(t)
				if err == nil && i == 0 && len(mine) == 0 && q.Want != "" && !bytes.Contains(body, []byte(q.Want)) {
					err = fmt.Errorf("answered %.200q, want it to hold %q", body, q.Want)
				}
				if err != nil {
					mu.Lock()
					firstErr = cmpErr(firstErr, fmt.Errorf("%s, %d clients: %w", q.Name, c, err))
					mu.Unlock()
					return
				}
				mine = append(mine, el)
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return level{}, firstErr
	}
	took := time.Since(start)
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	return level{Name: q.Name, Clients: c, Requests: len(lat), RequestsPerSecond: float64(len(lat)) / took.Seconds(),
		P50ms: ms(pct(lat, 0.50)), P99ms: ms(pct(lat, 0.99))}, nil
}

func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// get sends one GET and reads the whole answer, which must be 200.
func get(hc *http.Client, url string) (int, []byte, error) {
	resp, err := hc.Get(url)
	if err != nil {
		return 0, nil, err
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return resp.StatusCode, nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, body, fmt.Errorf("%s: %s: %.300s", url, resp.Status, body)
	}
	return resp.StatusCode, body, nil
}

func pct(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(p*float64(len(sorted))))]
}

func ms(d time.Duration) float64 { return d.Seconds() * 1000 }

// ingestBatch is the API server's default --audit-webhook-batch-max-size.
const ingestBatch = 400

// ingest posts the lines of file as EventList batches at rate events per
// second until ctx ends, going round the file again at its end, from
// senders concurrent senders, each waiting for its answer (the fsynced
// 200) before sending its next batch, as an API server's webhook backends
// do. The senders pace jointly: batch k may leave at k*400/rate seconds,
// late ones at once. Each event gets a new audit ID (its old one with a
// round number appended), so that the store's de-duplication keeps it
// (the write path does its full work), and live times (freshEvent).
func ingest(parent context.Context, url, file string, rate, senders int, sent *atomic.Int64) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	// A failing sender ends the others and the reading.
	ctx, stop := context.WithCancel(parent)
	defer stop()
	batches := make(chan ingestBody, 2*senders)
	p := &pacer{next: time.Now(), every: time.Duration(float64(time.Second) * ingestBatch / float64(rate))}
	errs := make(chan error, senders)
	for range senders {
		go func() {
			err := send(ctx, url, batches, p, sent)
			if err != nil {
				stop()
			}
			errs <- err
		}()
	}
	rerr := readBatches(ctx, f, batches)
	close(batches)
	first := rerr
	for range senders {
		if err := <-errs; err != nil && (first == nil || errors.Is(first, context.Canceled)) {
			first = err
		}
	}
	if parent.Err() != nil {
		// The reads ended: a batch still unanswered then was abandoned.
		return nil
	}
	return first
}

// ingestBody is one EventList batch of n events.
type ingestBody struct {
	body []byte
	n    int
}

// pacer hands the senders the times their batches may leave.
type pacer struct {
	mu    sync.Mutex
	next  time.Time
	every time.Duration
}

// wait returns when the next batch may leave, or ctx's error.
func (p *pacer) wait(ctx context.Context) error {
	p.mu.Lock()
	at := p.next
	p.next = p.next.Add(p.every)
	p.mu.Unlock()
	d := time.Until(at)
	if d <= 0 {
		return ctx.Err()
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// send posts batches as the pacer lets them go until batches is closed or
// a post fails; it ends the ingest (cancel) when it fails.
func send(ctx context.Context, url string, batches <-chan ingestBody, p *pacer, sent *atomic.Int64) error {
	hc := &http.Client{Timeout: time.Minute}
	for b := range batches {
		if err := p.wait(ctx); err != nil {
			return err
		}
		// With ctx: a batch still unanswered when the reads end is
		// abandoned, not waited for.
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(b.body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := hc.Do(req)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("webhook answered %s", resp.Status)
		}
		sent.Add(int64(b.n))
	}
	return nil
}

// readBatches makes EventList batches of the lines of f, round after
// round, until ctx ends.
func readBatches(ctx context.Context, f *os.File, batches chan<- ingestBody) error {
	for round := 0; ; round++ {
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return err
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 64<<20)
		var body bytes.Buffer
		n := 0
		flush := func() error {
			body.WriteString("]}")
			b := ingestBody{body: bytes.Clone(body.Bytes()), n: n}
			body.Reset()
			n = 0
			select {
			case <-ctx.Done():
				return ctx.Err()
			case batches <- b:
				return nil
			}
		}
		suffix := fmt.Sprintf("-r%d", round)
		for sc.Scan() {
			line := sc.Bytes()
			if n == 0 {
				body.WriteString(`{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":[`)
			} else {
				body.WriteByte(',')
			}
			body.Write(freshEvent(line, suffix))
			n++
			if n == ingestBatch {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		if err := sc.Err(); err != nil {
			return err
		}
		if n > 0 {
			if err := flush(); err != nil {
				return err
			}
		}
	}
}

// freshEvent makes a line of the corpus a live event: a new audit ID
// (newAuditID) and its times a century later ("2026-..." becomes
// "2126-...", same width), after every event of the store, as a live
// cluster's are. With its old times, an event would fall inside the
// stored segments' time ranges, and the de-duplication would hash every
// stored event to look for it: the cost of backfilling old days into a
// large store, which this load is not about.
func freshEvent(line []byte, suffix string) []byte {
	return bytes.ReplaceAll(newAuditID(line, suffix), []byte(`Timestamp":"20`), []byte(`Timestamp":"21`))
}

// newAuditID appends suffix to the event's audit ID (the line unchanged
// when it has none).
func newAuditID(line []byte, suffix string) []byte {
	const key = `"auditID":"`
	i := bytes.Index(line, []byte(key))
	if i < 0 {
		return line
	}
	j := bytes.IndexByte(line[i+len(key):], '"')
	if j < 0 {
		return line
	}
	at := i + len(key) + j
	out := make([]byte, 0, len(line)+len(suffix))
	out = append(out, line[:at]...)
	out = append(out, suffix...)
	return append(out, line[at:]...)
}
