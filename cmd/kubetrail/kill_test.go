package main

import (
	"github.com/kubetrail/kubetrail/internal/wal"

	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// buildBinary builds kubetrail once per test binary run.
var buildOnce = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "kubetrail-bin-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "kubetrail")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
})

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

type serveProc struct {
	cmd *exec.Cmd
	log *syncBuffer
}

// syncBuffer is a bytes.Buffer the child's output goroutine and the test
// can use at once.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func startServe(t *testing.T, bin, addr, data string) *serveProc {
	t.Helper()
	log := &syncBuffer{}
	cmd := exec.Command(bin, "serve", "--listen", addr, "--data", data, "--wal-segment-bytes", "262144")
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return &serveProc{cmd: cmd, log: log}
			}
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("serve did not become ready: %s", log.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func batchBody(client, seq, n int) []byte {
	var items []string
	ts := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC).Add(time.Duration(client*100000+seq*100) * time.Millisecond)
	for i := 0; i < n; i++ {
		t := ts.Add(time.Duration(i) * time.Microsecond).Format("2006-01-02T15:04:05.000000Z07:00")
		items = append(items, fmt.Sprintf(`{"level":"Metadata","auditID":"c%d-b%d-e%d","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/default/pods","verb":"list","user":{"username":"system:node:n%d","groups":["system:nodes"]},"sourceIPs":["10.0.0.%d"],"objectRef":{"resource":"pods","namespace":"default","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"%s","stageTimestamp":"%s","annotations":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":"%s"}}`,
			client, seq, i, client, client, t, t, strings.Repeat("r", 400)))
	}
	return []byte(`{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":[` + strings.Join(items, ",") + `]}`)
}

// TestKill9LosesNothingAcknowledged sends batches from concurrent clients
// while kubetrail serve is killed with SIGKILL at random moments, restarted
// each time. Every batch that got a 2xx must be stored exactly once; batches
// retried after a kill (acknowledged or not) must produce no duplicate.
func TestKill9LosesNothingAcknowledged(t *testing.T) {
	if testing.Short() {
		t.Skip("kills a server 20 times")
	}
	bin, err := buildOnce()
	if err != nil {
		t.Fatal(err)
	}
	data := t.TempDir()
	addr := freePort(t)
	proc := startServe(t, bin, addr, data)

	const clients, perBatch = 4, 40
	var (
		mu       sync.Mutex
		acked    = map[string]bool{} // batch id -> acknowledged
		sent     atomic.Int64
		retries  atomic.Int64
		stopping atomic.Bool
	)
	httpc := &http.Client{Timeout: 5 * time.Second}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(c), 7))
			for seq := 0; ctx.Err() == nil; seq++ {
				body := batchBody(c, seq, perBatch)
				id := fmt.Sprintf("c%d-b%d", c, seq)
				// Like the API server: retry the same batch until it is
				// acknowledged, and now and then re-send an acknowledged
				// one as if the answer had been lost.
				resends := 0
				if rng.IntN(5) == 0 {
					resends = 1
				}
				for ctx.Err() == nil {
					sent.Add(1)
					resp, err := httpc.Post("http://"+addr+"/ingest/webhook", "application/json", bytes.NewReader(body))
					if err == nil {
						resp.Body.Close()
						if resp.StatusCode == 200 {
							mu.Lock()
							acked[id] = true
							mu.Unlock()
							if resends == 0 {
								break
							}
							resends--
							continue
						}
					}
					retries.Add(1)
					time.Sleep(time.Duration(5+rng.IntN(20)) * time.Millisecond)
				}
			}
		}(c)
	}

	rng := rand.New(rand.NewPCG(42, 42))
	kills, torn, replayed := 0, 0, 0
	for ; kills < 22; kills++ {
		time.Sleep(time.Duration(30+rng.IntN(250)) * time.Millisecond)
		if err := proc.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		proc.cmd.Wait()
		if kills%4 == 3 {
			// A kill rarely tears a write by itself (the page cache keeps
			// what write() was given); power loss does. Leave what it
			// would: part of an unacknowledged record at the WAL's end.
			tearWAL(t, filepath.Join(data, "wal"), rng)
		}
		proc = startServe(t, bin, addr, data)
		time.Sleep(20 * time.Millisecond)
		torn += strings.Count(proc.log.String(), "cut torn WAL tail")
		replayed += strings.Count(proc.log.String(), "replayed WAL segment")
	}
	// Let the clients finish what they are sending against a live server.
	time.Sleep(300 * time.Millisecond)
	stopping.Store(true)
	cancel()
	wg.Wait()
	proc.cmd.Process.Signal(syscall.SIGTERM)
	if err := proc.cmd.Wait(); err != nil {
		t.Fatalf("serve exit: %v\n%s", err, proc.log.String())
	}

	out, err := exec.Command(bin, "export", "--data", data).Output()
	if err != nil {
		t.Fatal(err)
	}
	count := map[string]int{}   // event auditID -> times stored
	batches := map[string]int{} // batch id -> events stored
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var ev struct {
			Kind    string `json:"kind"`
			AuditID string `json:"auditID"`
		}
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil || ev.Kind != "Event" {
			t.Fatalf("exported line is not a complete Event: %v %.200s", err, sc.Bytes())
		}
		count[ev.AuditID]++
		batches[ev.AuditID[:strings.LastIndex(ev.AuditID, "-")]]++
	}
	dups := 0
	for id, n := range count {
		if n != 1 {
			dups++
			if dups < 5 {
				t.Errorf("event %s stored %d times", id, n)
			}
		}
	}
	lost := 0
	for id := range acked {
		if batches[id] != perBatch {
			lost++
			if lost < 5 {
				t.Errorf("acknowledged batch %s has %d of %d events stored", id, batches[id], perBatch)
			}
		}
	}
	for id, n := range batches {
		if n != perBatch {
			t.Errorf("batch %s stored partly: %d of %d events (a batch is one WAL record)", id, n, perBatch)
		}
	}
	t.Logf("%d kills (%d restarts cut a torn WAL tail, %d WAL segments replayed); %d requests, %d retried; %d batches acknowledged, %d stored, %d events; %d duplicates, %d acknowledged batches lost",
		kills, torn, replayed, sent.Load(), retries.Load(), len(acked), len(batches), len(count), dups, lost)
	if torn == 0 {
		t.Error("no restart reported cutting a torn WAL tail")
	}
	if len(acked) < 50 {
		t.Fatalf("only %d batches acknowledged: the test did not exercise much", len(acked))
	}
}

// tearWAL appends the first part of a record (a header promising more bytes
// than follow) to the newest WAL segment.
func tearWAL(t *testing.T, dir string, rng *rand.Rand) {
	t.Helper()
	segs, _ := filepath.Glob(filepath.Join(dir, "*.wal"))
	if len(segs) == 0 {
		return
	}
	f, err := os.OpenFile(segs[len(segs)-1], os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// What a crash leaves: a prefix of a record the writer was appending
	// (its header says 4096 bytes; fewer reached the disk).
	payload := make([]byte, 4096)
	for i := range payload {
		payload[i] = byte(rng.IntN(256))
	}
	rec := wal.AppendRecord(nil, payload)
	f.Write(rec[:1+rng.IntN(len(rec)-1)])
}
