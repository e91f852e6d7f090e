package cli

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	neturl "net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// chURL returns a ClickHouse store URL for database db on the package's
// server, set up with kubetrail setup clickhouse.
func chURL(t *testing.T, db string) string {
	t.Helper()
	url := strings.Replace(ch.URL(t), "http://", "clickhouse://", 1) + "/" + db
	if code, out, errOut := run("setup", "clickhouse", "--store", url); code != 0 {
		t.Fatalf("setup clickhouse: exit %d, %s%s", code, out, errOut)
	}
	return url
}

// exportedIDs returns the auditIDs export --store prints, in order.
func exportedIDs(t *testing.T, url string) []string {
	t.Helper()
	code, out, errOut := run("export", "--store", url)
	if code != 0 {
		t.Fatalf("export --store: exit %d: %s", code, errOut)
	}
	var ids []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if m := auditIDRe.FindStringSubmatch(l); m != nil {
			ids = append(ids, m[1])
		}
	}
	return ids
}

// TestServeCollectorSurvivesSIGKILL: kubetrail serve --store
// clickhouse:// takes webhook batches from four senders that retry until
// a 200, as the API server does, and is SIGKILLed while it ships, then
// started again: query --store counts every event once, and export
// --store gives each once. /readyz and /metrics speak of the collector;
// the read API answers from ClickHouse, the same count.
func TestServeCollectorSurvivesSIGKILL(t *testing.T) {
	url := chURL(t, "kt_serve_kill")
	data := t.TempDir()
	addr := freeAddr(t)
	args := []string{"serve", "--data", data, "--listen", addr, "--store", url}
	var log syncBuf
	start := func() *exec.Cmd {
		cmd := kubetrailProc(t, &log, args...)
		waitUntil(t, "serve ready", 20*time.Second, func() bool {
			resp, err := http.Get("http://" + addr + "/readyz")
			if err == nil {
				resp.Body.Close()
			}
			return err == nil && resp.StatusCode == 200
		})
		return cmd
	}
	cmd := start()
	const batches, per = 200, 25
	post := func(b int) bool {
		var items []string
		for i := b * per; i < (b+1)*per; i++ {
			items = append(items, fwdEvent(i, "update"))
		}
		body := `{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[` + strings.Join(items, ",") + `]}`
		resp, err := http.Post("http://"+addr+"/ingest/webhook?cluster=prod", "application/json", strings.NewReader(body))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}
	// Four senders; each batch is sent until a 200.
	var acked sync.WaitGroup
	var mu sync.Mutex
	done := 0
	next := make(chan int)
	for range 4 {
		acked.Go(func() {
			for b := range next {
				for !post(b) {
					time.Sleep(20 * time.Millisecond)
				}
				mu.Lock()
				done++
				mu.Unlock()
			}
		})
	}
	go func() {
		for b := range batches {
			next <- b
		}
		close(next)
	}()
	waitUntil(t, "a third acknowledged", 60*time.Second, func() bool { mu.Lock(); defer mu.Unlock(); return done >= batches/3 })
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	cmd = start()
	acked.Wait()

	// The restarted collector's counters: what it took after the restart
	// (the senders' remaining batches), all shipped once the spool is empty.
	waitUntil(t, "the spool shipped", 20*time.Second, func() bool {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			return false
		}
		m, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		accepted := metricValue(string(m), "kubetrail_clickhouse_events_accepted_total")
		return accepted > 0 && metricValue(string(m), "kubetrail_clickhouse_events_shipped_total") >= accepted &&
			metricValue(string(m), "kubetrail_clickhouse_inserts_total") > 0 && metricValue(string(m), "kubetrail_clickhouse_batches_refused_total") == 0
	})
	// The read API answers from ClickHouse: every event once, counted
	// there, and alerts are where detect --follow keeps them.
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		msg, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(msg)
	}
	if code, msg := get("/api/v1/stats"); code != 200 || !strings.Contains(msg, fmt.Sprintf(`"total":%d,`, batches*per)) {
		t.Errorf("the stats API of a collector: %d %s; want a total of %d", code, msg, batches*per)
	}
	if code, msg := get("/api/v1/alerts"); code != 404 || !strings.Contains(msg, "detect --follow --store") {
		t.Errorf("the alerts API of a collector without an alert store: %d %s", code, msg)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("serve after SIGTERM: %v\n%s", err, log.String())
	}
	code, out, errOut := run("query", "--count", "--store", url)
	if code != 0 || strings.TrimSpace(out) != strconv.Itoa(batches*per) {
		t.Fatalf("query --count --store: exit %d, %q %s; want %d\n%s", code, out, errOut, batches*per, log.String())
	}
	got := exportedIDs(t, url)
	slices.Sort(got)
	if want := fwIDs(0, batches*per, 1); !slices.Equal(got, want) {
		t.Fatalf("export --store gave %d events, want each of %d once", len(got), len(want))
	}
	if entries, _ := os.ReadDir(filepath.Join(data, "clickhouse-spool", "wal")); len(entries) != 1 {
		t.Errorf("after SIGTERM the spool holds %d files, want the open segment only", len(entries))
	}
}

// writeEvents writes events first..first+n-1 as JSON lines to path
// (appending).
func writeEvents(t *testing.T, path string, first, n int) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for i := first; i < first+n; i++ {
		if _, err := f.WriteString(fwdEvent(i, "update") + "\n"); err != nil {
			t.Fatal(err)
		}
	}
}

// TestImportAndTailThroughACollector: import --store and tail --store
// write to ClickHouse through a collector in their --data folder: import
// ends once ClickHouse has every event, importing again adds nothing, and
// tail ships lines as they are written; every event is counted once.
func TestImportAndTailThroughACollector(t *testing.T) {
	url := chURL(t, "kt_import_tail")
	count := func() string {
		_, out, _ := run("query", "--count", "--store", url)
		return strings.TrimSpace(out)
	}
	logFile := filepath.Join(t.TempDir(), "audit.log")
	writeEvents(t, logFile, 0, 300)
	data := t.TempDir()
	for range 2 {
		if code, _, errOut := run("import", "--store", url, "--data", data, "--progress", "never", logFile); code != 0 {
			t.Fatalf("import --store: exit %d: %s", code, errOut)
		}
		if n := count(); n != "300" {
			t.Fatalf("after import --store, query --count --store says %s, want 300", n)
		}
	}
	if code, _, errOut := run("import", "--store", url, "--server", "http://127.0.0.1:1", logFile); code == 0 || !strings.Contains(errOut, "give one") {
		t.Errorf("import --store --server: exit %d, %s", code, errOut)
	}

	tailed := filepath.Join(t.TempDir(), "audit.log")
	writeEvents(t, tailed, 300, 200)
	var log syncBuf
	cmd := kubetrailProc(t, &log, "tail", tailed, "--store", url, "--data", t.TempDir(), "--poll", "20ms")
	waitUntil(t, "the tailed file in ClickHouse", 30*time.Second, func() bool { return count() == "500" })
	writeEvents(t, tailed, 500, 100)
	waitUntil(t, "the new lines in ClickHouse", 30*time.Second, func() bool { return count() == "600" })
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("tail after SIGTERM: %v\n%s", err, log.String())
	}
	got := exportedIDs(t, url)
	slices.Sort(got)
	if want := fwIDs(0, 600, 1); !slices.Equal(got, want) {
		t.Fatalf("export --store gave %d events, want each of %d once", len(got), len(want))
	}
}

// TestQueryFollowStore: query --follow --store prints the events already
// stored, then those imported later, each once, though the later import
// sends the first events again.
func TestQueryFollowStore(t *testing.T) {
	url := chURL(t, "kt_follow_cli")
	logFile := filepath.Join(t.TempDir(), "audit.log")
	writeEvents(t, logFile, 0, 50)
	data := t.TempDir()
	if code, _, errOut := run("import", "--store", url, "--data", data, "--progress", "never", logFile); code != 0 {
		t.Fatalf("import --store: exit %d: %s", code, errOut)
	}
	var out syncBuf
	cmd := kubetrailProc(t, &out, "query", "--follow", "--store", url, "-o", "jsonl", "user=alice")
	printed := func() []string {
		var ids []string
		for _, l := range strings.Split(out.String(), "\n") {
			if m := auditIDRe.FindStringSubmatch(l); m != nil {
				ids = append(ids, m[1])
			}
		}
		return ids
	}
	waitUntil(t, "the stored events printed", 20*time.Second, func() bool { return len(printed()) >= 50 })
	writeEvents(t, logFile, 50, 30) // the file now holds 0..79
	if code, _, errOut := run("import", "--store", url, "--data", data, "--progress", "never", logFile); code != 0 {
		t.Fatalf("import --store: exit %d: %s", code, errOut)
	}
	waitUntil(t, "the new events printed", 20*time.Second, func() bool { return len(printed()) >= 80 })
	time.Sleep(1500 * time.Millisecond) // another poll: nothing more
	cmd.Process.Signal(syscall.SIGTERM)
	cmd.Wait()
	if got, want := printed(), fwIDs(0, 80, 1); !slices.Equal(got, want) {
		t.Fatalf("query --follow --store printed %d events, want each of %d once, in order:\n%s", len(got), len(want), out.String())
	}
}

// TestServeCollectorClickHouseDown: serve --store starts while ClickHouse
// cannot be reached, acknowledges batches into its WAL up to
// --spool-max-bytes, then answers 503 with Retry-After and /readyz 503;
// SIGTERM ends it with exit 0, the rows kept for the next start.
func TestServeCollectorClickHouseDown(t *testing.T) {
	addr := freeAddr(t)
	var log syncBuf
	data := t.TempDir()
	cmd := kubetrailProc(t, &log, "serve", "--data", data, "--listen", addr, "--store", "clickhouse://127.0.0.1:1/kt", "--spool-max-bytes", "40KB")
	status := func(path string) int {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	waitUntil(t, "serve ready", 20*time.Second, func() bool { return status("/readyz") == 200 })
	codes := map[int]int{}
	var refusal string
	for b := range 40 {
		var items []string
		for i := b * 10; i < (b+1)*10; i++ {
			items = append(items, fwdEvent(i, "update"))
		}
		body := `{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[` + strings.Join(items, ",") + `]}`
		resp, err := http.Post("http://"+addr+"/ingest/webhook", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		msg, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		codes[resp.StatusCode]++
		if resp.StatusCode == 503 && refusal == "" {
			refusal = resp.Header.Get("Retry-After") + " " + string(msg)
		}
	}
	// A batch of 10 events is about 8 KB of rows: 4 fit in 40KB.
	if codes[200] < 3 || codes[200] > 6 || codes[503] != 40-codes[200] {
		t.Errorf("answers %v; want about 4 batches acknowledged, then 503", codes)
	}
	if !strings.HasPrefix(refusal, "5 ") || !strings.Contains(refusal, "spool-max-bytes") || !strings.Contains(refusal, "not reachable") {
		t.Errorf("the 503: %s", refusal)
	}
	if c := status("/readyz"); c != 503 {
		t.Errorf("/readyz with a full spool: %d", c)
	}
	// SIGTERM: serve tries to ship for 10 s, then exits 0 leaving the
	// acknowledged rows in its WAL for the next start.
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil || !strings.Contains(log.String(), "not yet in ClickHouse") {
		t.Errorf("serve after SIGTERM with ClickHouse down: %v\n%s", err, log.String())
	}
	if segs, _ := os.ReadDir(filepath.Join(data, "clickhouse-spool", "wal")); len(segs) < 2 {
		t.Errorf("the WAL holds %d files after SIGTERM, want the acknowledged rows kept", len(segs))
	}
}

// TestServeCollectorRetention: serve --store --retention 30d drops the
// days of ClickHouse whose events are all older than 30 days, and keeps
// today's.
func TestServeCollectorRetention(t *testing.T) {
	url := chURL(t, "kt_serve_retention")
	logFile := filepath.Join(t.TempDir(), "audit.log")
	writeEvents(t, logFile, 0, 40) // 2026-05-01
	now := time.Now().UTC().Format("2006-01-02T15:04:05.000000Z")
	f, _ := os.OpenFile(logFile, os.O_APPEND|os.O_WRONLY, 0)
	for i := range 7 {
		f.WriteString(strings.ReplaceAll(fwdEvent(100+i, "create"), "2026-05-01T12:00:00", now[:19]) + "\n")
	}
	f.Close()
	data := t.TempDir()
	if code, _, errOut := run("import", "--store", url, "--data", data, "--progress", "never", logFile); code != 0 {
		t.Fatalf("import --store: exit %d: %s", code, errOut)
	}
	count := func() string {
		_, out, _ := run("query", "--count", "--store", url)
		return strings.TrimSpace(out)
	}
	if n := count(); n != "47" {
		t.Fatalf("before serve: %s events, want 47", n)
	}
	var log syncBuf
	kubetrailProc(t, &log, "serve", "--data", data, "--listen", freeAddr(t), "--store", url, "--retention", "30d")
	waitUntil(t, "the old days dropped", 20*time.Second, func() bool { return count() == "7" })
	if got := exportedIDs(t, url); !slices.Equal(got, fwIDs(100, 107, 1)) {
		t.Errorf("left %v, want today's events", got)
	}
}

// TestServeCollectorRefusesStoreFlags: serve --store is a collector,
// which keeps no store of its own, runs no rules and forwards nothing:
// each flag that would ask for one is refused by name before anything
// starts, rather than ignored.
func TestServeCollectorRefusesStoreFlags(t *testing.T) {
	u := "clickhouse://127.0.0.1:1/kt"
	for _, extra := range [][]string{
		{"--detect"}, {"--detect=true"}, {"--rules", "rules.yaml"}, {"--builtin=false"}, {"--alert-output", "file:///dev/null"},
		{"--forward", "syslog+tcp://127.0.0.1:1"}, {"--max-size", "1GiB"}, {"--signing-key", "k"}, {"--seal-after", "1m"},
	} {
		args := append([]string{"serve", "--data", t.TempDir(), "--listen", "127.0.0.1:0", "--store", u}, extra...)
		code, _, errOut := run(args...)
		name := strings.SplitN(strings.TrimPrefix(extra[0], "--"), "=", 2)[0]
		if code == 0 || !strings.Contains(errOut, "--"+name+" does not apply with --store") {
			t.Errorf("%v: exit %d, %q; want --%s refused", extra, code, errOut, name)
		}
	}
}

// TestImportWaitsForTheSpool: import --store with a spool smaller than
// the file's rows waits while the spool is full (the shipper empties it
// a segment at a time) instead of failing, says so, and stores every
// event once; a spool smaller than one batch is an error at once, not
// a wait for ever.
func TestImportWaitsForTheSpool(t *testing.T) {
	url := chURL(t, "kt_import_wait")
	logFile := filepath.Join(t.TempDir(), "audit.log")
	// Three batches of up to 4096 events, each about 2 MiB of rows: the
	// 5 MiB spool holds two. ClickHouse is reached through a proxy that
	// holds the first insert 3 s, so the third batch surely finds the
	// spool full (on a quiet machine ClickHouse otherwise took each batch
	// before the next was decoded, and import never waited).
	const n = 12000
	writeEvents(t, logFile, 0, n)
	slow := slowFirstInsert(t, ch.URL(t), 3*time.Second)
	code, _, errOut := run("import", "--store", strings.Replace(url, strings.TrimPrefix(ch.URL(t), "http://"), strings.TrimPrefix(slow, "http://"), 1),
		"--data", t.TempDir(), "--spool-max-bytes", "5MiB", "--progress", "never", logFile)
	if code != 0 {
		t.Fatalf("import --store with a small spool: exit %d: %s", code, errOut)
	}
	if !strings.Contains(errOut, "waiting for ClickHouse to take the collector's spool") {
		t.Errorf("import never said it waited for the spool:\n%s", errOut)
	}
	got := exportedIDs(t, url)
	slices.Sort(got)
	if want := fwIDs(0, n, 1); !slices.Equal(got, want) {
		t.Fatalf("export --store gave %d events, want each of %d once", len(got), len(want))
	}

	code, _, errOut = run("import", "--store", url, "--data", t.TempDir(), "--spool-max-bytes", "64KiB", "--progress", "never", logFile)
	if code == 0 || !strings.Contains(errOut, "more than the collector's whole spool") {
		t.Errorf("import with a spool smaller than a batch: exit %d, %s; want an error naming --spool-max-bytes", code, errOut)
	}
}

// slowFirstInsert is a proxy to the ClickHouse server at target that holds
// the first INSERT it forwards for hold; it returns the proxy's URL.
func slowFirstInsert(t *testing.T, target string, hold time.Duration) string {
	t.Helper()
	u, err := neturl.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(u)
	var once sync.Once
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Query().Get("query"), "INSERT") {
			once.Do(func() { time.Sleep(hold) })
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}
