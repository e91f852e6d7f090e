package ingest

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/kubetrail/kubetrail/internal/pipeline"
	"github.com/kubetrail/kubetrail/internal/store/local"
	"github.com/kubetrail/kubetrail/internal/testenv"
)

// benchLog is a log of n ~1 KiB Metadata-level events.
func benchLog(n int) []byte {
	var b bytes.Buffer
	for i := 0; i < n; i++ {
		l := line(fmt.Sprintf("%08x-0000-4000-8000-%012d", i, i))
		l = l[:len(l)-1] + `,"annotations":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":"RBAC: allowed by ClusterRoleBinding \"system:node\" of ClusterRole \"system:node\" to Group \"system:nodes\""},"userAgent":"kubelet/v1.37.2 (linux/amd64) kubernetes/abcdef0"}`
		b.WriteString(l)
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// BenchmarkImport measures file import into the local store, opened as
// the import command opens it (a bulk load: durable when Close returns).
// cpu-ms/op is the process's CPU time (user and system) per import: on a
// shared machine it varies less than the time.
func BenchmarkImport(b *testing.B) {
	data := benchLog(50000)
	path := filepath.Join(b.TempDir(), "audit.log")
	os.WriteFile(path, data, 0o600)
	b.SetBytes(int64(len(data)))
	cpu0 := testenv.CPUTime()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		dir := filepath.Join(b.TempDir(), fmt.Sprint(i))
		db, err := local.Open(dir, local.Options{Bulk: true})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		sum, err := Import(context.Background(), db, []string{path}, nil, ImportConfig{})
		if err != nil || sum.Stored != 50000 {
			b.Fatal(err, sum.Stored)
		}
		if err := db.Close(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(50000*b.N)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64((testenv.CPUTime()-cpu0).Milliseconds())/float64(b.N), "cpu-ms/op")
}

// BenchmarkWebhook measures the webhook receiver as serve runs it: four
// clients each post EventLists of 400 events (items without kind and
// apiVersion, as the API server sends them) to the handler, which
// redacts and stores them durably (200 only after fsync) in a local
// store; an op is 48,000 events, from opening the store to closing it,
// so that sealing them into segments is counted too.
func BenchmarkWebhook(b *testing.B) {
	const clients, events = 4, 48000
	bodies := webhookBodies(events)
	red, err := pipeline.NewRedactor(bytes.Repeat([]byte{7}, 32))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(bytes.Join(bodies, nil))))
	cpu0 := testenv.CPUTime()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		db, err := local.Open(filepath.Join(b.TempDir(), fmt.Sprint(i)), local.Options{})
		if err != nil {
			b.Fatal(err)
		}
		h := NewWebhook(pipeline.NewRedact(db, red), WebhookConfig{})
		next := make(chan []byte, len(bodies))
		for _, body := range bodies {
			next <- body
		}
		close(next)
		b.StartTimer()
		var wg sync.WaitGroup
		for range clients {
			wg.Go(func() {
				for body := range next {
					w := httptest.NewRecorder()
					h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/ingest/webhook", bytes.NewReader(body)))
					if w.Code != http.StatusOK {
						b.Errorf("status %d: %s", w.Code, w.Body)
					}
				}
			})
		}
		wg.Wait()
		if err := db.Close(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(events*b.N)/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(float64((testenv.CPUTime()-cpu0).Milliseconds())/float64(b.N), "cpu-ms/op")
}

// webhookBodies returns the first events of benchLog as EventLists of 400
// items without kind and apiVersion, as the API server sends them.
func webhookBodies(events int) [][]byte {
	const per = 400
	lines := bytes.Split(bytes.TrimSpace(benchLog(events)), []byte("\n"))
	prefix := []byte(`{"kind":"Event","apiVersion":"audit.k8s.io/v1",`)
	var bodies [][]byte
	for i := 0; i < len(lines); i += per {
		var body bytes.Buffer
		body.WriteString(`{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":[`)
		for k, l := range lines[i:min(i+per, len(lines))] {
			if k > 0 {
				body.WriteByte(',')
			}
			body.WriteByte('{')
			body.Write(bytes.TrimPrefix(l, prefix))
		}
		body.WriteString(`]}`)
		bodies = append(bodies, body.Bytes())
	}
	return bodies
}

// countSink stores nothing and says it stored everything.
type countSink struct{}

func (countSink) Append(_ context.Context, b *pipeline.Batch) (pipeline.Result, error) {
	return pipeline.Result{Stored: len(b.Records)}, nil
}

// BenchmarkWebhookHandler is the handler's own work, without a store: it
// reads each of 30 EventLists of 400 events from an HTTP request, decodes
// them and hands them to a sink that keeps nothing. An op is the 12,000
// events.
func BenchmarkWebhookHandler(b *testing.B) {
	bodies := webhookBodies(12000)
	h := NewWebhook(countSink{}, WebhookConfig{})
	b.SetBytes(int64(len(bytes.Join(bodies, nil))))
	b.ReportAllocs()
	cpu0 := testenv.CPUTime()
	for b.Loop() {
		for _, body := range bodies {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/ingest/webhook", bytes.NewReader(body)))
			if w.Code != http.StatusOK {
				b.Fatalf("status %d: %s", w.Code, w.Body)
			}
		}
	}
	b.ReportMetric(float64(testenv.CPUTime()-cpu0)/float64(b.N), "cpu-ns/op")
}
