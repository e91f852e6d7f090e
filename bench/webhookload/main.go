// Command webhookload replays an audit log against a kubetrail webhook the
// way the API server's batching webhook backend does: EventList bodies of
// --batch events (items without kind/apiVersion) from --clients concurrent
// senders, each waiting for its answer before sending the next batch. It
// reports events per second acknowledged, and fails if any batch was not
// acknowledged 200 or if the server stored a different number of events.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	var (
		url     = flag.String("url", "http://127.0.0.1:8443/ingest/webhook", "webhook URL")
		file    = flag.String("file", "", "audit log (JSON lines) to replay")
		batch   = flag.Int("batch", 400, "events per batch (the API server's default --audit-webhook-batch-max-size)")
		clients = flag.Int("clients", 4, "concurrent senders")
		limit   = flag.Int("events", 0, "replay at most this many events (0: all)")
		asJSON  = flag.Bool("json", false, "print the result as JSON")
	)
	flag.Parse()
	bodies, events, err := buildBodies(*file, *batch, *limit)
	if err != nil {
		fmt.Fprintln(os.Stderr, "webhookload:", err)
		os.Exit(1)
	}
	var (
		next    atomic.Int64
		stored  atomic.Int64
		failed  atomic.Int64
		latMu   sync.Mutex
		latency []time.Duration
	)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: *clients}, Timeout: time.Minute}
	start := time.Now()
	var wg sync.WaitGroup
	for c := 0; c < *clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var lats []time.Duration
			for {
				i := int(next.Add(1)) - 1
				if i >= len(bodies) {
					break
				}
				t0 := time.Now()
				resp, err := client.Post(*url, "application/json", bytes.NewReader(bodies[i]))
				if err != nil {
					failed.Add(1)
					continue
				}
				var wr struct{ Stored, Duplicates int }
				json.NewDecoder(resp.Body).Decode(&wr)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					failed.Add(1)
					continue
				}
				lats = append(lats, time.Since(t0))
				stored.Add(int64(wr.Stored))
			}
			latMu.Lock()
			latency = append(latency, lats...)
			latMu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	sort.Slice(latency, func(i, j int) bool { return latency[i] < latency[j] })
	pct := func(p float64) time.Duration {
		if len(latency) == 0 {
			return 0
		}
		return latency[int(p*float64(len(latency)-1))]
	}
	res := map[string]any{
		"events": events, "batches": len(bodies), "clients": *clients, "batch": *batch,
		"seconds": elapsed.Seconds(), "events_per_second": float64(events) / elapsed.Seconds(),
		"stored": stored.Load(), "failed_batches": failed.Load(),
		"p50_ms": pct(0.5).Seconds() * 1000, "p99_ms": pct(0.99).Seconds() * 1000,
	}
	if *asJSON {
		json.NewEncoder(os.Stdout).Encode(res)
	} else {
		fmt.Printf("%d events in %d batches of %d from %d clients: %.2fs, %.0f events/s acknowledged durable; p50 %.1fms p99 %.1fms\n",
			events, len(bodies), *batch, *clients, elapsed.Seconds(), float64(events)/elapsed.Seconds(), pct(0.5).Seconds()*1000, pct(0.99).Seconds()*1000)
	}
	if failed.Load() > 0 || stored.Load() != int64(events) {
		fmt.Fprintf(os.Stderr, "webhookload: %d batches failed; server stored %d of %d events\n", failed.Load(), stored.Load(), events)
		os.Exit(1)
	}
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
