package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestClickHouseClusterFromRealAPIServer runs issue 13's "real cluster":
// two clickhouse-server shards on 127.0.0.1 and 127.0.0.2 (cluster kt2 in a
// remote_servers config the test writes), set up with `kubetrail setup
// clickhouse ?cluster=kt2`, fed by two collectors from one real API server
// that logs every event both to its webhook and to its log file: collector
// A is `serve --store` behind the webhook (through a proxy in the test that
// records which batches A answered 200), collector B is `tail --store` of
// the log file.
//
// Phase 1, A alone, while kubectl traffic runs: A is SIGKILLed right after
// it acknowledged a batch and restarted on the same --data (its WAL), then
// shard 2 is SIGKILLed, A is SIGKILLed and restarted again while the
// shard is down, and the shard is restarted on its data. Every event A
// acknowledged must then be in the store exactly once (B is not running
// yet, so nothing else could have put it there).
//
// Phase 2: B tails the log from its first line while traffic goes on, so
// both collectors send the same events. After the API server stops, the
// store holds every event of the log file once (query: one per auditID and
// stage, and as many as the log's lines), and export gives the log's lines
// byte for byte (in any order: the order is the collectors' inserts).
func TestClickHouseClusterFromRealAPIServer(t *testing.T) {
	requireClusterDeps(t)
	chBin := clickhouseBinary(t)
	bin := kubetrailBinary(t)
	start := time.Now()

	ch := startTwoShards(t, chBin)
	store := ch.storeURL(0)
	runKubetrail(t, bin, "setup", "clickhouse", "--store", store)
	// No background merge may remove a copy before the test reads: every
	// answer must count each event once whatever the merges did, and the
	// worst case is that none ran yet (as on a busy server).
	ch.stopMerges(t, 0)
	ch.stopMerges(t, 1)

	// Both collectors redact with one key, so that an event either of them
	// redacts gets the same bytes, hence the same key in the store.
	redactKey := filepath.Join(t.TempDir(), "redact.key")
	writeFile(t, redactKey, randomToken(t)+randomToken(t))

	addrA := "127.0.0.1:" + strconv.Itoa(freePort(t))
	dataA := filepath.Join(t.ArtifactDir(), "collector-a")
	argsA := []string{"serve", "--listen", addrA, "--data", dataA, "--store", store,
		"--redact-key-file", redactKey}
	a := startCollector(t, bin, "collector-a", addrA, argsA)
	proxy := newAckProxy(t, "http://"+addrA)
	hook := filepath.Join(t.ArtifactDir(), "audit-webhook.kubeconfig")
	writeWebhookConfig(t, bin, proxy.url+"/ingest/webhook", hook)

	logPath := filepath.Join(t.ArtifactDir(), "audit", "audit.log")
	if err := os.MkdirAll(filepath.Dir(logPath), 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, logPath, "")
	c := startCluster(t, clusterConfig{webhookConfig: hook, auditLogPath: logPath,
		// A batch the API server retries waits this long first (10s by
		// default), which would only slow the test down.
		extraArgs: []string{"--audit-webhook-initial-backoff=100ms"}})
	runScenario(t, c)

	// Phase 1: collector A killed mid-stream, then a shard.
	traffic := startTraffic(t, c, "phase1")
	proxy.waitAck(t, 10*time.Second)
	a.kill()
	t.Logf("collector A SIGKILLed right after acknowledging a batch (%d events acknowledged so far)", proxy.ackedCount())
	time.Sleep(time.Second)
	a = startCollector(t, bin, "collector-a-restarted", addrA, argsA)
	proxy.waitAck(t, 20*time.Second)
	ch.nodes[1].kill()
	t.Logf("shard 2 SIGKILLed")
	time.Sleep(2 * time.Second)
	proxy.waitAck(t, 10*time.Second) // acknowledged while the shard is down
	if f := metricValue(getMetrics(t, http.DefaultClient, "http://"+addrA), "kubetrail_clickhouse_insert_failures_total"); f <= 0 {
		t.Errorf("collector A counted no failed insert while shard 2 was down: the outage was not exercised")
	}
	// Killed again while its WAL holds what the shard's outage kept back,
	// and started while the shard is still down.
	a.kill()
	t.Logf("collector A SIGKILLed again while shard 2 is down (%d events acknowledged so far)", proxy.ackedCount())
	a = startCollector(t, bin, "collector-a-restarted-2", addrA, argsA)
	proxy.waitAck(t, 10*time.Second)
	ch.nodes[1] = ch.restart(t, 1)
	ch.stopMerges(t, 1)
	t.Logf("shard 2 restarted on its data")
	time.Sleep(time.Second)
	traffic.stop(t)

	acked := proxy.acked()
	deadline := time.Now().Add(30 * time.Second)
	var counts map[string]int
	for {
		counts = queryKeyCounts(t, bin, store)
		if missing := missingKeys(acked, counts); len(missing) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if missing := missingKeys(acked, counts); len(missing) > 0 {
		t.Errorf("after collector A's restart and shard 2's, %d of the %d events A acknowledged are not in the store, e.g. %v",
			len(missing), len(acked), missing[:min(5, len(missing))])
	}
	assertOncePerKey(t, "query after phase 1", counts)
	t.Logf("phase 1: %d events acknowledged by collector A, %d events in the store, %v rows on the shards",
		len(acked), len(counts), ch.rowCounts(t))

	// Phase 2: collector B tails the log from its first line, through the
	// other shard, while both collectors receive the same new events.
	dataB := filepath.Join(t.ArtifactDir(), "collector-b")
	tail := startProc(t, "collector-b", bin, "tail", logPath, "--data", dataB, "--store", ch.storeURL(1),
		"--redact-key-file", redactKey)
	traffic = startTraffic(t, c, "phase2")
	time.Sleep(2 * time.Second)
	traffic.stop(t)
	c.stop(t)

	want, files := readAuditLog(t, c.auditLogPath)
	logCounts(t, "audit log", want, files)
	wantKeys := map[string]int{}
	for _, e := range want {
		wantKeys[e.key()]++
	}
	assertOncePerKey(t, "the audit log (the harness: a key twice would make the counts below meaningless)", wantKeys)

	deadline = time.Now().Add(60 * time.Second)
	for queryCount(t, bin, store) < len(want) && time.Now().Before(deadline) {
		time.Sleep(500 * time.Millisecond)
	}
	// Anything stored twice would be in by now.
	time.Sleep(1500 * time.Millisecond)
	counts = queryKeyCounts(t, bin, store)
	assertOncePerKey(t, "query", counts)
	if missing := missingKeys(keysOf(want), counts); len(missing) > 0 {
		t.Errorf("%d of the audit log's %d events are not in query's answer, e.g. %v", len(missing), len(want), missing[:min(5, len(missing))])
	}
	if n := queryCount(t, bin, store); n != len(want) {
		t.Errorf("query --count says %d events; the audit log has %d", n, len(want))
	}
	got := exportStore(t, bin, store)
	assertSameEvents(t, "kubetrail export --store (two shards, two collectors)", got, "audit log", want)
	// The events A never acknowledged (sent while it was down, or left in
	// the API server's webhook buffer at shutdown) came through B alone.
	onlyB := len(missingKeys(wantKeys, proxy.acked()))
	t.Logf("%d of the log's events reached the store through collector B alone", onlyB)

	if err := tail.stop(30 * time.Second); err != nil {
		t.Errorf("kubetrail tail --store must exit 0 on SIGTERM: %v", err)
	}
	if err := a.stop(30 * time.Second); err != nil {
		t.Errorf("kubetrail serve --store must exit 0 on SIGTERM: %v", err)
	}
	rows := ch.rowCounts(t)
	if rows[0]+rows[1] <= len(want) {
		t.Errorf("the shards hold %v rows for %d events: no copy to count once, so de-duplication was not exercised", rows, len(want))
	}
	t.Logf("shards hold %v rows (copies included: merges are stopped) for %d events; %d events acknowledged by A; whole test %s",
		rows, len(want), proxy.ackedCount(), time.Since(start).Round(time.Millisecond))
}

// clickhouseBinary returns Debian's clickhouse-server (in /usr/sbin, which
// a user's PATH may lack).
func clickhouseBinary(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"clickhouse-server", "/usr/sbin/clickhouse-server"} {
		if path, err := exec.LookPath(p); err == nil {
			return path
		}
	}
	unavailable(t, "clickhouse-server is not on PATH; the ClickHouse cluster test needs Debian's (apt-get install clickhouse-server), as .ci/run installs it")
	return ""
}

// chShards is two clickhouse-servers, one shard each of cluster kt2, on
// 127.0.0.1 and 127.0.0.2 with one HTTP port number (setup reaches every
// server at the URL's port) and native ports of their own.
type chShards struct {
	bin      string
	hosts    []string
	httpPort int
	dirs     []string
	nodes    []*chNode
}

// chNode is one running clickhouse-server.
type chNode struct{ p *proc }

// kill stops the server with SIGKILL, as a crash would: what it answered
// for is in its files already (an insert is written, not fsync'd, before
// it answers; a killed process loses no page cache). A clean stop takes
// 18.16 about ten seconds.
func (n *chNode) kill() {
	n.p.stopped = true
	_ = n.p.cmd.Process.Kill()
	<-n.p.done
}

func startTwoShards(t *testing.T, bin string) *chShards {
	t.Helper()
	s := &chShards{bin: bin, hosts: []string{"127.0.0.1", "127.0.0.2"}}
	s.httpPort = sharedPort(t, s.hosts...)
	tcp := []int{sharedPort(t, s.hosts...), sharedPort(t, s.hosts...)}
	var remote strings.Builder
	remote.WriteString("<kt2>")
	for i, h := range s.hosts {
		fmt.Fprintf(&remote, "<shard><replica><host>%s</host><port>%d</port></replica></shard>", h, tcp[i])
	}
	remote.WriteString("</kt2>")
	for i, h := range s.hosts {
		dir := filepath.Join(t.TempDir(), "clickhouse")
		writeClickHouseConfig(t, dir, h, s.httpPort, tcp[i], remote.String())
		s.dirs = append(s.dirs, dir)
	}
	for i := range s.hosts {
		s.nodes = append(s.nodes, s.startNode(t, i, "clickhouse-"+strconv.Itoa(i+1)))
	}
	return s
}

// restart starts shard i again on its data and ports.
func (s *chShards) restart(t *testing.T, i int) *chNode {
	t.Helper()
	return s.startNode(t, i, "clickhouse-"+strconv.Itoa(i+1)+"-restarted")
}

func (s *chShards) startNode(t *testing.T, i int, name string) *chNode {
	t.Helper()
	p := startProc(t, name, s.bin, "--config-file="+filepath.Join(s.dirs[i], "config.xml"))
	n := &chNode{p: p}
	// Registered after startProc's cleanup, so it runs first: a kill, not
	// SIGTERM's ten seconds.
	t.Cleanup(func() {
		if !p.stopped {
			n.kill()
		}
	})
	base := s.baseURL(i)
	waitReady(t, p, 30*time.Second, func(ctx context.Context) error {
		return httpGetOK(ctx, http.DefaultClient, base+"/ping", "")
	})
	return n
}

func (s *chShards) baseURL(i int) string {
	return "http://" + net.JoinHostPort(s.hosts[i], strconv.Itoa(s.httpPort))
}

// storeURL is the kubetrail store on cluster kt2, named through shard i.
func (s *chShards) storeURL(i int) string {
	return "clickhouse://" + net.JoinHostPort(s.hosts[i], strconv.Itoa(s.httpPort)) + "/kubetrail?cluster=kt2"
}

// rowCounts returns the rows each shard's events_local holds, copies not
// yet merged included.
func (s *chShards) rowCounts(t *testing.T) []int {
	t.Helper()
	var out []int
	for i := range s.hosts {
		b := s.sql(t, i, "SELECT count() FROM kubetrail.events_local")
		n, err := strconv.Atoi(strings.TrimSpace(b))
		if err != nil {
			t.Fatalf("shard %d row count: %q", i+1, b)
		}
		out = append(out, n)
	}
	return out
}

// stopMerges stops background merges of the events table on shard i until
// it restarts.
func (s *chShards) stopMerges(t *testing.T, i int) {
	t.Helper()
	s.sql(t, i, "SYSTEM STOP MERGES kubetrail.events_local")
}

// sql runs a statement on shard i and returns its answer.
func (s *chShards) sql(t *testing.T, i int, sql string) string {
	t.Helper()
	resp, err := http.Post(s.baseURL(i)+"/", "text/plain", strings.NewReader(sql))
	if err != nil {
		t.Fatalf("shard %d: %s: %v", i+1, sql, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("shard %d: %s: %s %s", i+1, sql, resp.Status, b)
	}
	return string(b)
}

// sharedPort returns a port free on every one of hosts.
func sharedPort(t *testing.T, hosts ...string) int {
	t.Helper()
	for range 50 {
		p := freePort(t)
		ok := true
		for _, h := range hosts {
			l, err := net.Listen("tcp", net.JoinHostPort(h, strconv.Itoa(p)))
			if err != nil {
				ok = false
				break
			}
			l.Close()
		}
		if ok {
			return p
		}
	}
	t.Fatalf("no port free on all of %v after 50 tries", hosts)
	return 0
}

// writeClickHouseConfig writes a server config keeping everything in dir,
// listening on host with HTTP and native ports, and knowing cluster kt2.
// The root element is <yandex>, which 18.16 requires and current releases
// still read.
func writeClickHouseConfig(t *testing.T, dir, host string, httpPort, tcpPort int, remote string) {
	t.Helper()
	for _, d := range []string{"data", "tmp", "user_files", "format_schemas", "log"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	p := func(d string) string { return html.EscapeString(filepath.Join(dir, d)) + "/" }
	writeFile(t, filepath.Join(dir, "config.xml"), `<?xml version="1.0"?>
<yandex>
    <logger><level>warning</level><log>`+p("log")+`server.log</log><errorlog>`+p("log")+`err.log</errorlog><console>0</console></logger>
    <http_port>`+strconv.Itoa(httpPort)+`</http_port>
    <tcp_port>`+strconv.Itoa(tcpPort)+`</tcp_port>
    <listen_host>`+host+`</listen_host>
    <path>`+p("data")+`</path>
    <tmp_path>`+p("tmp")+`</tmp_path>
    <user_files_path>`+p("user_files")+`</user_files_path>
    <format_schema_path>`+p("format_schemas")+`</format_schema_path>
    <users_config>users.xml</users_config>
    <default_profile>default</default_profile>
    <default_database>default</default_database>
    <mark_cache_size>67108864</mark_cache_size>
    <uncompressed_cache_size>67108864</uncompressed_cache_size>
    <remote_servers>`+remote+`</remote_servers>
</yandex>
`)
	writeFile(t, filepath.Join(dir, "users.xml"), `<?xml version="1.0"?>
<yandex>
    <profiles><default></default></profiles>
    <users><default><password></password><networks><ip>127.0.0.0/8</ip></networks><profile>default</profile><quota>default</quota></default></users>
    <quotas><default></default></quotas>
</yandex>
`)
}

// collector is a `kubetrail serve --store` process.
type collector struct{ *proc }

// startCollector starts serve with args and waits for its /readyz.
func startCollector(t *testing.T, bin, name, addr string, args []string) collector {
	t.Helper()
	p := startProc(t, name, bin, args...)
	waitReady(t, p, 30*time.Second, func(ctx context.Context) error {
		return httpGetOK(ctx, http.DefaultClient, "http://"+addr+"/readyz", "")
	})
	return collector{p}
}

// kill ends the collector with SIGKILL.
func (c collector) kill() {
	c.stopped = true
	_ = c.cmd.Process.Kill()
	<-c.done
}

// ackProxy stands between the API server's webhook and collector A and
// records the auditID/stage of every event in a batch A answered 200:
// what A acknowledged, and so must never lose.
type ackProxy struct {
	url    string
	target string
	client *http.Client
	mu     sync.Mutex
	keys   map[string]bool
	acks   chan struct{}
}

func newAckProxy(t *testing.T, target string) *ackProxy {
	t.Helper()
	p := &ackProxy{target: target, client: &http.Client{Timeout: 30 * time.Second},
		keys: map[string]bool{}, acks: make(chan struct{}, 1)}
	srv := httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(srv.Close)
	p.url = srv.URL
	return p
}

func (p *ackProxy) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	req, err := http.NewRequestWithContext(r.Context(), r.Method, p.target+r.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	req.Header = r.Header.Clone()
	resp, err := p.client.Do(req)
	if err != nil {
		// What the API server would see without the proxy is a refused
		// connection, which it does not retry either.
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == http.StatusOK {
		var list struct {
			Items []struct{ AuditID, Stage string }
		}
		if err := json.Unmarshal(body, &list); err == nil {
			p.mu.Lock()
			for _, e := range list.Items {
				p.keys[e.AuditID+"/"+e.Stage] = true
			}
			p.mu.Unlock()
			select {
			case p.acks <- struct{}{}:
			default:
			}
		}
	}
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	w.Write(out)
}

// waitAck waits for the next batch acknowledged after the call.
func (p *ackProxy) waitAck(t *testing.T, timeout time.Duration) {
	t.Helper()
	select {
	case <-p.acks: // possibly an older one: drained
	default:
	}
	select {
	case <-p.acks:
	case <-time.After(timeout):
		t.Fatalf("collector A acknowledged no webhook batch within %s", timeout)
	}
}

func (p *ackProxy) acked() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := map[string]int{}
	for k := range p.keys {
		out[k] = 1
	}
	return out
}

func (p *ackProxy) ackedCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.keys)
}

// traffic is kubectl writing and reading configmaps in a loop, with
// direct GETs between, until stopped.
type traffic struct {
	cancel context.CancelFunc
	done   chan struct{}
	n      int
	err    error
}

func startTraffic(t *testing.T, c *cluster, prefix string) *traffic {
	ctx, cancel := context.WithCancel(context.Background())
	// A test that fails before stop ends the traffic too.
	t.Cleanup(cancel)
	tr := &traffic{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(tr.done)
		tr.n, tr.err = runTraffic(ctx, c, prefix)
	}()
	return tr
}

func runTraffic(ctx context.Context, c *cluster, prefix string) (int, error) {
	kubectl := func(args ...string) error {
		full := append([]string{"--kubeconfig=" + c.kubeconfigs[userAdmin], "--request-timeout=30s"}, args...)
		cmd := exec.CommandContext(ctx, c.kubectlBin, full...)
		cmd.Env = append(os.Environ(), "HOME="+c.kubectlHome, "KUBECONFIG=")
		if out, err := cmd.CombinedOutput(); err != nil && ctx.Err() == nil {
			return fmt.Errorf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	n := 0
	for i := 0; ctx.Err() == nil; i++ {
		name := fmt.Sprintf("%s-%d", prefix, i)
		if err := kubectl("create", "configmap", name, "-n", "default", "--from-literal=i="+strconv.Itoa(i)); err != nil {
			return n, err
		}
		if err := kubectl("delete", "configmap", name, "-n", "default"); err != nil {
			return n, err
		}
		n += 2
		for range 10 {
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url+"/api/v1/namespaces/default/configmaps", nil)
			if err != nil {
				return n, err
			}
			req.Header.Set("Authorization", "Bearer "+c.tokens[userAdmin])
			resp, err := c.client.Do(req)
			if err != nil {
				if ctx.Err() != nil {
					break
				}
				return n, err
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			n++
		}
	}
	return n, nil
}

// stop ends the traffic and fails the test if a request failed.
func (tr *traffic) stop(t *testing.T) {
	t.Helper()
	tr.cancel()
	<-tr.done
	if tr.err != nil {
		t.Fatalf("traffic: %v", tr.err)
	}
	t.Logf("traffic: %d requests", tr.n)
}

func runKubetrail(t *testing.T, bin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("kubetrail %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String()
}

// queryKeyCounts counts query's events by auditID/stage.
func queryKeyCounts(t *testing.T, bin, store string) map[string]int {
	t.Helper()
	out := runKubetrail(t, bin, "query", "--store", store, "-o", "jsonl")
	counts := map[string]int{}
	for _, e := range parseEvents(t, strings.NewReader(out), "query") {
		counts[e.key()]++
	}
	return counts
}

func queryCount(t *testing.T, bin, store string) int {
	t.Helper()
	out := runKubetrail(t, bin, "query", "--store", store, "--count")
	n, err := strconv.Atoi(strings.TrimSpace(out))
	if err != nil {
		t.Fatalf("query --count printed %q", out)
	}
	return n
}

func exportStore(t *testing.T, bin, store string) []event {
	t.Helper()
	return parseEvents(t, strings.NewReader(runKubetrail(t, bin, "export", "--store", store)), "export")
}

func keysOf(events []event) map[string]int {
	out := map[string]int{}
	for _, e := range events {
		out[e.key()]++
	}
	return out
}

// missingKeys returns the keys of want that have is lacks, sorted.
func missingKeys(want, have map[string]int) []string {
	var out []string
	for k := range want {
		if have[k] == 0 {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// assertOncePerKey fails the test for every auditID/stage counted more
// than once.
func assertOncePerKey(t *testing.T, name string, counts map[string]int) {
	t.Helper()
	var twice []string
	for k, n := range counts {
		if n != 1 {
			twice = append(twice, fmt.Sprintf("%s x%d", k, n))
		}
	}
	sort.Strings(twice)
	if len(twice) > 0 {
		t.Errorf("%s: %d of %d events are there more than once, e.g. %v", name, len(twice), len(counts), twice[:min(5, len(twice))])
	}
}
