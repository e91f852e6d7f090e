package forward

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/kubetrail/kubetrail/internal/store/local"
)

// BenchmarkForward measures forwarding over loopback per destination
// type: a one-shot forward of the stored events to a receiver that reads
// and answers as fast as it can (make bench runs it: bench/run/fleet.go).
// Run with -benchtime=1x.
func BenchmarkForward(b *testing.B) {
	const n = 50000
	db, err := local.Open(b.TempDir(), local.Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	for i := 0; i < n; i += 1000 {
		appendEvents(b, db, i, 1000)
	}
	db.Close()
	ok := func(body string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			io.WriteString(w, body)
		}
	}
	elastic := func(w http.ResponseWriter, r *http.Request) {
		// One 201 item per action line.
		sc := bufio.NewScanner(r.Body)
		sc.Buffer(nil, 8<<20)
		var items []string
		for i := 0; sc.Scan(); i++ {
			if i%2 == 0 {
				items = append(items, `{"create":{"status":201}}`)
			}
		}
		fmt.Fprintf(w, `{"errors":false,"items":[%s]}`, strings.Join(items, ","))
	}
	syslogAddr := tcpSink(b)
	// franz-go's in-process broker, keeping no record bytes: the client
	// and the protocol are measured, not the fake's storage.
	kc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, "k8s"), kfake.BlackholeProduce())
	if err != nil {
		b.Fatal(err)
	}
	defer kc.Close()
	for _, c := range []struct {
		name, url string
		h         http.HandlerFunc
	}{
		{"syslog+tcp", "syslog+tcp://" + syslogAddr, nil},
		{"webhook eventlist", "webhook+%s", ok("")},
		{"webhook jsonl", "webhook+%s#format=jsonl", ok("")},
		{"splunk", "splunk+%s#token_file=", ok(`{"text":"Success","code":0}`)},
		{"elasticsearch", "elasticsearch+%s/k8s", elastic},
		{"otlp", "otlp+%s", ok("{}")},
		{"kafka", "kafka://" + kc.ListenAddrs()[0] + "/k8s", nil},
	} {
		b.Run(c.name, func(b *testing.B) {
			u := c.url
			if c.h != nil {
				srv := httptest.NewServer(c.h)
				defer srv.Close()
				u = fmt.Sprintf(c.url, srv.URL)
				if c.name == "splunk" {
					u = strings.Replace(fmt.Sprintf("splunk+%s", srv.URL), "://", "://tok@", 1)
				}
			}
			for b.Loop() {
				d, err := NewRegistry(Env{}).Open(u, "", time.Now())
				if err != nil {
					b.Fatal(err)
				}
				f, err := New(db.Dir(), d, local.Pos{}, Options{RetryFor: time.Second})
				if err != nil {
					b.Fatal(err)
				}
				began := time.Now()
				if err := f.Once(context.Background(), local.ScanOptions{}); err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(n)/time.Since(began).Seconds(), "events/s")
				d.Sender.Close()
			}
		})
	}
}

// tcpSink accepts connections and discards what they send.
func tcpSink(b *testing.B) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go io.Copy(io.Discard, c)
		}
	}()
	return ln.Addr().String()
}

// BenchmarkBacklogMemory stores events as fast as it can for the
// benchmark's duration, with no forwarder ("no forwarder"), and with one
// whose destination is down, every Send failing ("destination down"), and
// reports the live Go heap (after a GC, once a second): the backlog stays
// in the store, so the two must be alike and must not grow with the
// backlog. -benchtime=60s gives the minute that make bench reports.
func BenchmarkBacklogMemory(b *testing.B) {
	for _, down := range []bool{false, true} {
		name := "no forwarder"
		if down {
			name = "destination down"
		}
		b.Run(name, func(b *testing.B) { backlogMemory(b, down) })
	}
}

func backlogMemory(b *testing.B, withForwarder bool) {
	db, err := local.Open(b.TempDir(), local.Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	var r *running
	if withForwarder {
		rcv := &receiver{fail: func(int) error { return fmt.Errorf("503") }}
		d := testDest(rcv)
		d.Config.Batch, d.Config.MinBackoff, d.Config.MaxBackoff = DefaultBatch, 100*time.Millisecond, time.Second
		r = runForwarder(b, db, d, Options{})
	}
	var ms runtime.MemStats
	var samples []uint64
	began, next := time.Now(), time.Now().Add(time.Second)
	stored := 0
	for b.Loop() {
		appendEvents(b, db, stored, 500)
		stored += 500
		if time.Now().After(next) {
			runtime.GC()
			runtime.ReadMemStats(&ms)
			samples = append(samples, ms.HeapAlloc)
			next = time.Now().Add(time.Second)
		}
	}
	took := time.Since(began)
	if r != nil {
		b.ReportMetric(float64(r.f.Stats().Backlog), "backlog-events")
		r.stop(b)
	}
	b.ReportMetric(float64(stored)/took.Seconds(), "stored-events/s")
	if len(samples) > 0 {
		b.ReportMetric(float64(samples[0])/(1<<20), "live-heap-first-s-MiB")
		b.ReportMetric(float64(samples[len(samples)/2])/(1<<20), "live-heap-mid-MiB")
		b.ReportMetric(float64(samples[len(samples)-1])/(1<<20), "live-heap-last-MiB")
		b.ReportMetric(float64(slices.Max(samples))/(1<<20), "live-heap-max-MiB")
	}
}
