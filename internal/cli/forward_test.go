package cli

import (
	"bytes"

	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kubetrail/kubetrail/internal/testenv"
)

// fwdEvent is an audit log line; i makes it unique.
func fwdEvent(i int, verb string) string {
	ts := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Millisecond).Format("2006-01-02T15:04:05.000000Z")
	return fmt.Sprintf(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"fw-%05d","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/ns/configmaps/c%d","verb":%q,"user":{"username":"alice"},"objectRef":{"resource":"configmaps","namespace":"ns","name":"c%d","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":%q,"stageTimestamp":%q}`,
		i, i, verb, i, ts, ts)
}

// importEvents imports events first..first+n-1 (every fourth a delete).
func importEvents(t *testing.T, dir string, first, n int) {
	t.Helper()
	var b strings.Builder
	for i := first; i < first+n; i++ {
		verb := "update"
		if i%4 == 0 {
			verb = "delete"
		}
		b.WriteString(fwdEvent(i, verb) + "\n")
	}
	p := filepath.Join(t.TempDir(), "audit.log")
	os.WriteFile(p, []byte(b.String()), 0o600)
	if code, _, errOut := run("import", p, "--data", dir); code != 0 {
		t.Fatalf("import: %d %s", code, errOut)
	}
}

var auditIDRe = regexp.MustCompile(`"auditID":"(fw-\d+)"`)

// jsonlReceiver records the auditIDs of JSON lines POSTed to it.
type jsonlReceiver struct {
	mu  sync.Mutex
	ids []string
}

func (r *jsonlReceiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	b, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range auditIDRe.FindAllSubmatch(b, -1) {
		r.ids = append(r.ids, string(m[1]))
	}
}

func (r *jsonlReceiver) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	ids := r.ids
	r.ids = nil
	return ids
}

func fwIDs(from, to, step int) []string {
	var out []string
	for i := from; i < to; i += step {
		out = append(out, fmt.Sprintf("fw-%05d", i))
	}
	return out
}

// TestForwardOnceWithCursor: forward sends the matches and exits 0; with
// --cursor the next run sends only what was stored since; without it,
// every match again.
// Mutation it catches: forward ignoring a saved cursor (the second run
// sends the first run's events again).
func TestForwardOnceWithCursor(t *testing.T) {
	dir := t.TempDir()
	importEvents(t, dir, 0, 20)
	rcv := &jsonlReceiver{}
	srv := httptest.NewServer(rcv)
	defer srv.Close()
	to := "webhook+" + srv.URL + "#format=jsonl"
	fwd := func(args ...string) string {
		t.Helper()
		code, _, errOut := run(append([]string{"forward", "--data", dir, "--to", to}, args...)...)
		if code != 0 {
			t.Fatalf("forward %v: exit %d\n%s", args, code, errOut)
		}
		return errOut
	}
	out := fwd("verb=delete", "--cursor", "deletes")
	if got := rcv.take(); !slices.Equal(got, fwIDs(0, 20, 4)) {
		t.Fatalf("first run sent %v", got)
	}
	if !strings.Contains(out, "forwarded 5 events to webhook+http://127.0.0.1:") || !strings.Contains(out, "15 left out by the filter") {
		t.Errorf("summary: %s", out)
	}
	if _, err := os.Stat(filepath.Join(dir, "forward", "deletes.cursor")); err != nil {
		t.Errorf("the cursor file: %v", err)
	}
	importEvents(t, dir, 20, 8)
	fwd("verb=delete", "--cursor", "deletes")
	if got := rcv.take(); !slices.Equal(got, fwIDs(20, 28, 4)) {
		t.Fatalf("second run sent %v; want only the deletes stored since", got)
	}
	fwd("--since", "2026-05-01T12:00:00.026Z")
	if got := rcv.take(); !slices.Equal(got, fwIDs(26, 28, 1)) {
		t.Fatalf("without a cursor, --since: %v", got)
	}
}

// TestForwardRetryFor: a destination that stays down ends forward with
// exit 1 after --retry-for, naming the destination (not its URL path)
// and its error.
func TestForwardRetryFor(t *testing.T) {
	dir := t.TempDir()
	importEvents(t, dir, 0, 3)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { http.Error(w, "busy", 503) }))
	defer srv.Close()
	began := time.Now()
	code, _, errOut := run("forward", "--data", dir, "--to", "webhook+"+srv.URL+"/SECRET-PATH", "--retry-for", "1500ms")
	if code != 1 || !strings.Contains(errOut, "503") || !strings.Contains(errOut, "failing for 1.5s") || strings.Contains(errOut, "SECRET") {
		t.Fatalf("exit %d, stderr:\n%s", code, errOut)
	}
	if took := time.Since(began); took < 1500*time.Millisecond || took > 10*time.Second {
		t.Errorf("took %v", took)
	}
}

// TestHelperKubetrail is the kubetrail process of the tests that kill
// one: run with KUBETRAIL_HELPER=1, it runs the arguments after "--".
func TestHelperKubetrail(t *testing.T) {
	if os.Getenv("KUBETRAIL_HELPER") != "1" {
		return
	}
	args := os.Args[slices.Index(os.Args, "--")+1:]
	os.Exit(Main(args, os.Stdin, os.Stdout, os.Stderr))
}

// kubetrailProc runs `kubetrail ARGS` as a child process.
func kubetrailProc(t *testing.T, log io.Writer, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"-test.run=^TestHelperKubetrail$", "--"}, args...)...)
	cmd.Env = append(os.Environ(), "KUBETRAIL_HELPER=1")
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd
}

func waitUntil(t *testing.T, what string, d time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// syncBuf is a log several goroutines write.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestServeForwardToRsyslogSurvivesSIGKILL: kubetrail serve --forward
// syslog+tcp:// to Debian's rsyslogd (imtcp, octet counting, the message
// written to a file), SIGKILLed while webhook batches stream in and
// started again: every event serve acknowledged is in rsyslog's file,
// byte for byte the stored JSON; duplicates are counted, and no more than
// serve's kubetrail_forward_redelivered_total. /metrics names each
// destination by scheme and host only, and reports the backlog of a
// destination that is down.
func TestServeForwardToRsyslogSurvivesSIGKILL(t *testing.T) {
	bin, err := exec.LookPath("rsyslogd")
	if err != nil {
		testenv.Unavailable(t, "rsyslogd is not on PATH: apt-get install -y rsyslog (Debian 12)")
	}
	work := t.TempDir()
	rsAddr := freeAddr(t)
	_, rsPort, _ := net.SplitHostPort(rsAddr)
	out := filepath.Join(work, "out.log")
	conf := filepath.Join(work, "rsyslog.conf")
	// rsyslog's default 8 KiB would cut large events.
	os.WriteFile(conf, []byte(fmt.Sprintf(`global(workDirectory=%q maxMessageSize="64k")
module(load="imtcp")
input(type="imtcp" port="%s" address="127.0.0.1")
template(name="t" type="string" string="%%structured-data%%|%%msg%%\n")
*.* action(type="omfile" file=%q template="t")
`, work, rsPort, out)), 0o600)
	var rsLog syncBuf
	rs := exec.Command(bin, "-n", "-f", conf, "-i", filepath.Join(work, "rsyslogd.pid"))
	rs.Stdout, rs.Stderr = &rsLog, &rsLog
	if err := rs.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { rs.Process.Kill(); rs.Wait() }()
	waitUntil(t, "rsyslogd listening", 10*time.Second, func() bool {
		c, err := net.Dial("tcp", rsAddr)
		if err == nil {
			c.Close()
		}
		return err == nil
	})

	data := filepath.Join(work, "data")
	addr := freeAddr(t)
	args := []string{"serve", "--data", data, "--listen", addr, "--detect=false",
		"--forward", "syslog+tcp://" + rsAddr + "#batch=7",
		"--forward", "webhook+http://127.0.0.1:1/SECRET-PATH?token=SECRET#filter=user=alice"}
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

	// The API server's part: batches of 20, each sent until a 200.
	const batches, per = 60, 20
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
	received := func() []string {
		b, _ := os.ReadFile(out)
		var ids []string
		for _, l := range strings.Split(string(b), "\n") {
			if m := auditIDRe.FindStringSubmatch(l); m != nil {
				ids = append(ids, m[1])
			}
		}
		return ids
	}
	for b := 0; b < batches/2; b++ {
		for !post(b) {
			time.Sleep(10 * time.Millisecond)
		}
	}
	// Mid-stream: some forwarded, not all.
	waitUntil(t, "rsyslog receiving", 10*time.Second, func() bool { return len(received()) > 0 })
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	before := len(received())
	cmd = start()
	for b := batches / 2; b < batches; b++ {
		for !post(b) {
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitUntil(t, "every event at rsyslog", 30*time.Second, func() bool {
		seen := map[string]bool{}
		for _, id := range received() {
			seen[id] = true
		}
		return len(seen) == batches*per
	})
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	ids := received()
	dups := len(ids) - batches*per
	redelivered := metricValue(string(metrics), `kubetrail_forward_redelivered_total{dest="syslog+tcp://`+rsAddr+`"}`)
	t.Logf("SIGKILL after %d of %d events reached rsyslog; after the restart %d lines, %d duplicates, %v counted redelivered", before, batches*per, len(ids), dups, redelivered)
	if float64(dups) > redelivered {
		t.Errorf("%d duplicates at rsyslog, %v counted as redelivered", dups, redelivered)
	}
	// Byte for byte: the stored event as MSG, with the structured data.
	b, _ := os.ReadFile(out)
	want := `[audit@32473 cluster="prod" auditID="fw-00007" stage="ResponseComplete"]|` + fwdEvent(7, "update")
	if !strings.Contains(string(b), want+"\n") {
		t.Errorf("no line %s", want)
	}
	m := string(metrics)
	if strings.Contains(m, "SECRET") {
		t.Errorf("/metrics shows a destination's path or query:\n%s", m)
	}
	for _, w := range []string{
		`kubetrail_forward_events_total{dest="syslog+tcp://` + rsAddr + `"}`,
		`kubetrail_forward_backlog_events{dest="syslog+tcp://` + rsAddr + `"} 0`,
		`kubetrail_forward_failing{dest="webhook+http://127.0.0.1:1/..."} 1`,
	} {
		if !strings.Contains(m, w) {
			t.Errorf("/metrics has no %s", w)
		}
	}
	// The webhook has been down all along: every event is its backlog,
	// the ones stored before the restart included, waiting in the store.
	if v := metricValue(m, `kubetrail_forward_backlog_events{dest="webhook+http://127.0.0.1:1/..."}`); v != batches*per {
		t.Errorf("the backlog of the destination that is down: %v; want %d", v, batches*per)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Errorf("serve after SIGTERM: %v\n%s", err, log.String())
	}
}

// metricValue reads one sample of a Prometheus text exposition; -1 when
// absent.
func metricValue(metrics, series string) float64 {
	for _, l := range strings.Split(metrics, "\n") {
		if v, ok := strings.CutPrefix(l, series+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return -1
}
