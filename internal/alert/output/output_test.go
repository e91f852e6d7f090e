package output

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kubetrail/kubetrail/internal/alert"
	"github.com/kubetrail/kubetrail/internal/rules"
	"github.com/kubetrail/kubetrail/internal/vfs"
)

var t0 = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

func mkAlert(i int, user string) rules.Alert {
	return rules.Alert{Rule: "exec into pod", Severity: rules.High, Source: rules.SourceKubetrail,
		AuditIDs: []string{fmt.Sprintf("id-%d", i)}, User: user, Message: fmt.Sprintf("%s ran a shell %d", user, i),
		Time: t0.Add(time.Duration(i) * time.Second), Cluster: "prod", Namespace: "payments"}
}

// pipeline is a store and a dispatcher for one output URL.
type pipeline struct {
	store *alert.Store
	disp  *alert.Dispatcher
	dir   string
	spec  *alert.Spec
}

func newPipeline(t *testing.T, reg *alert.Registry, raw string) *pipeline {
	t.Helper()
	dir := t.TempDir()
	s, _, err := alert.OpenStore(dir, alert.StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	p := &pipeline{store: s, dir: dir}
	p.open(t, reg, raw)
	return p
}

func (p *pipeline) open(t *testing.T, reg *alert.Registry, raw string) {
	t.Helper()
	spec, err := reg.Open(raw)
	if err != nil {
		t.Fatal(err)
	}
	cfg := spec.Dispatch
	cfg.MinBackoff, cfg.MaxBackoff = time.Millisecond, 5*time.Millisecond
	d, err := alert.OpenDispatcher(p.store, spec.Output, nil, p.dir+"/cursors", spec.ID, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { spec.Output.Close() })
	p.spec, p.disp = spec, d
}

func (p *pipeline) add(t *testing.T, from, n int, user string) {
	t.Helper()
	var in []rules.Alert
	for i := from; i < from+n; i++ {
		in = append(in, mkAlert(i, user))
	}
	if _, err := p.store.Append(in); err != nil {
		t.Fatal(err)
	}
}

func (p *pipeline) run(t *testing.T) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.disp.Run(ctx) }()
	return func() error { cancel(); return <-done }
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// recorder is an HTTP peer that keeps each request body; fail decides the
// status of each call (0: 200).
type recorder struct {
	mu     sync.Mutex
	bodies [][]byte
	calls  int
	fail   func(call int, r *http.Request) int
	// keepAll keeps the bodies of failed calls too (the peer read them).
	keepAll bool
}

func (rec *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	rec.mu.Lock()
	rec.calls++
	call := rec.calls
	if rec.keepAll {
		rec.bodies = append(rec.bodies, b)
	}
	rec.mu.Unlock()
	if rec.fail != nil {
		if code := rec.fail(call, r); code != 0 {
			http.Error(w, "not now", code)
			return
		}
	}
	if r.Header.Get("Content-Type") != "application/json" || r.Method != http.MethodPost {
		http.Error(w, "want a JSON POST", http.StatusBadRequest)
		return
	}
	if !rec.keepAll {
		rec.mu.Lock()
		rec.bodies = append(rec.bodies, b)
		rec.mu.Unlock()
	}
}

// webhookSeqs decodes the webhook bodies received, in order.
func (rec *recorder) webhookSeqs(t *testing.T) []uint64 {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	var out []uint64
	for _, b := range rec.bodies {
		var body struct {
			Alerts []map[string]any `json:"alerts"`
		}
		if err := json.Unmarshal(b, &body); err != nil {
			t.Fatalf("webhook body %s: %v", b, err)
		}
		for _, a := range body.Alerts {
			out = append(out, uint64(a["seq"].(float64)))
		}
	}
	return out
}

func TestWebhookPayload(t *testing.T) {
	rec := &recorder{}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	p := newPipeline(t, NewRegistry(Env{}), "webhook+"+srv.URL+"/hook?token=abc")
	stop := p.run(t)
	p.add(t, 0, 2, "alice")
	waitFor(t, "a batch", func() bool { return len(rec.webhookSeqs(t)) == 2 })
	stop()
	var body struct {
		Alerts []map[string]any `json:"alerts"`
	}
	json.Unmarshal(rec.bodies[0], &body)
	a := body.Alerts[0]
	// The jsonl contract's fields, and seq.
	for k, v := range map[string]any{"rule": "exec into pod", "severity": "high", "source": "kubetrail", "user": "alice",
		"message": "alice ran a shell 0", "time": "2026-05-01T12:00:00Z", "cluster": "prod", "namespace": "payments", "seq": 1.0} {
		if a[k] != v {
			t.Errorf("%s = %v, want %v (body %s)", k, a[k], v, rec.bodies[0])
		}
	}
	if ids, _ := a["auditIDs"].([]any); len(ids) != 1 || ids[0] != "id-0" {
		t.Errorf("auditIDs %v", a["auditIDs"])
	}
	if _, ok := a["stored"]; ok {
		t.Errorf("the store's own fields leak into the payload: %v", a)
	}
}

// TestWebhookFailsThenSucceeds: a peer that answers 503 five times, then
// 200, gets every alert at least once and in order. Planted bug: treating
// a non-2xx answer as delivered (post returning nil) loses the first
// batches here.
func TestWebhookFailsThenSucceeds(t *testing.T) {
	rec := &recorder{fail: func(call int, _ *http.Request) int {
		if call <= 5 {
			return http.StatusServiceUnavailable
		}
		return 0
	}}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	p := newPipeline(t, NewRegistry(Env{}), "webhook+"+srv.URL+"#batch=3")
	stop := p.run(t)
	for i := 0; i < 12; i += 4 {
		p.add(t, i, 4, "alice")
	}
	waitFor(t, "12 alerts", func() bool { return len(rec.webhookSeqs(t)) >= 12 })
	stop()
	got := rec.webhookSeqs(t)
	want := []uint64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}
	if !slices.Equal(got, want) {
		t.Errorf("peer got %v, want %v", got, want)
	}
	if st := p.disp.Stats(); st.Failures != 5 {
		t.Errorf("stats %+v, want 5 failures", st)
	}
}

// TestWebhookKilledMidSend: the dispatcher is stopped while the peer holds
// a request it already read; after a restart the peer gets that batch
// again, the dispatcher counts it as redelivered, and nothing is lost.
func TestWebhookKilledMidSend(t *testing.T) {
	inSend := make(chan struct{})
	rec := &recorder{keepAll: true}
	rec.fail = func(call int, r *http.Request) int {
		if call == 1 {
			close(inSend)
			<-r.Context().Done() // the client gave up
		}
		return 0
	}
	srv := httptest.NewServer(rec)
	defer srv.Close()
	reg := NewRegistry(Env{})
	raw := "webhook+" + srv.URL
	p := newPipeline(t, reg, raw)
	p.add(t, 0, 3, "alice")
	stop := p.run(t)
	<-inSend
	if err := stop(); err != context.Canceled {
		t.Fatalf("Run returned %v", err)
	}
	p.open(t, reg, raw)
	p.add(t, 3, 2, "alice")
	stop = p.run(t)
	waitFor(t, "alert 5 after the restart", func() bool { return slices.Contains(rec.webhookSeqs(t), 5) })
	stop()
	if got := fmt.Sprint(rec.webhookSeqs(t)); got != "[1 2 3 1 2 3 4 5]" {
		t.Errorf("peer got %s, want 1..3 twice (in flight at the stop), then 4 and 5", got)
	}
	if st := p.disp.Stats(); st.Redelivered != 3 {
		t.Errorf("stats %+v, want the 3 alerts in flight counted as redelivered", st)
	}
}

func TestSlackPayload(t *testing.T) {
	rec := &recorder{}
	srv := httptest.NewTLSServer(rec)
	defer srv.Close()
	p := newPipeline(t, NewRegistry(Env{HTTP: srv.Client()}), "slack+"+srv.URL+"/services/T/B/secret#throttle=1h")
	in := []rules.Alert{mkAlert(0, "<!channel> & co"), mkAlert(1, "<!channel> & co"), mkAlert(2, "<!channel> & co")}
	in[0].ImpersonatedUser = "system:admin"
	if _, err := p.store.Append(in); err != nil {
		t.Fatal(err)
	}
	stop := p.run(t)
	waitFor(t, "a slack message", func() bool { rec.mu.Lock(); defer rec.mu.Unlock(); return len(rec.bodies) == 1 })
	// The dispatcher counts a notification once the peer has answered,
	// after the peer has the body: wait for the count, not the body alone
	// (stopping in between made this test fail once under -race).
	waitFor(t, "the notification counted", func() bool { st := p.disp.Stats(); return st.Notifications == 1 && st.Throttled == 2 })
	stop()
	var body map[string]string
	if err := json.Unmarshal(rec.bodies[0], &body); err != nil {
		t.Fatal(err)
	}
	want := "*[HIGH]* exec into pod by `&lt;!channel&gt; &amp; co as system:admin`: &lt;!channel&gt; &amp; co ran a shell 0"
	if body["text"] != want {
		t.Errorf("text %q\nwant %q", body["text"], want)
	}
	// The two others are grouped (throttle=1h): counted, not sent yet.
	if st := p.disp.Stats(); st.Throttled != 2 || st.Notifications != 1 {
		t.Errorf("stats %+v, want 1 notification and 2 throttled", st)
	}
	b, _ := slackBody([]alert.Alert{{Alert: mkAlert(5, "bob"), Seq: 9, Count: 12}})
	if !strings.Contains(string(b), "(12 alerts like it)") {
		t.Errorf("a grouped notification must say its count: %s", b)
	}
}

// TestFileOutputIsDurable: what Send wrote is in the file after a crash,
// in the jsonl contract's shape. Planted bug: no fsync (drop the site).
func TestFileOutputIsDurable(t *testing.T) {
	for _, drop := range []string{"", "sync output.(*file).Send", "syncdir output.(*file).Send"} {
		mem := vfs.NewStrictMem()
		mem.MkdirAll("/var/log/kt", 0o755)
		mem.SyncDir("/var/log")
		mem.SyncDir("/var")
		mem.SyncDir("/")
		ff := vfs.NewFaults(mem)
		ff.Drop(drop)
		spec, err := NewRegistry(Env{FS: ff}).Open("file:///var/log/kt/alerts.jsonl")
		if err != nil {
			t.Fatal(err)
		}
		a := alert.Alert{Alert: mkAlert(0, "alice"), Seq: 7}
		if err := spec.Output.Send(context.Background(), []alert.Alert{a}); err != nil {
			t.Fatal(err)
		}
		after := mem.Crash()
		f, err := after.Open("/var/log/kt/alerts.jsonl")
		var b []byte
		if err == nil {
			b, _ = io.ReadAll(f)
		}
		want := `{"rule":"exec into pod","severity":"high","source":"kubetrail","auditIDs":["id-0"],"user":"alice","message":"alice ran a shell 0","time":"2026-05-01T12:00:00Z","cluster":"prod","namespace":"payments","seq":7}` + "\n"
		switch {
		case drop == "" && string(b) != want:
			t.Errorf("after a crash the file holds %q (%v), want %q", b, err, want)
		case drop != "" && string(b) == want:
			t.Errorf("with %q dropped the line still survived: the test does not check it", drop)
		}
	}
}

func TestOpenErrors(t *testing.T) {
	reg := NewRegistry(Env{})
	for raw, want := range map[string]string{
		"file://host/x":                 `names host "host"`,
		"file:///var/log/":              "want an absolute file path",
		"syslog+tcp://h":                "no port",
		"syslog+tcp://h:514#facility=x": `facility="x"`,
		"syslog+tls://h:514#ca=/nope":   "ca: open /nope",
		"slack+http://hooks/x":          `unknown scheme "slack+http"`,
		"webhook+https://h/x#secret=1":  `unknown setting "secret"`,
	} {
		if _, err := reg.Open(raw); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Open(%q) = %v, want %q", raw, err, want)
		}
	}
	if got := strings.Join(reg.Schemes(), " "); got != "alertmanager+http alertmanager+https file slack+https syslog+tcp syslog+tls webhook+http webhook+https" {
		t.Errorf("schemes %s", got)
	}
}

// TestErrorsHideTheURL: a failing webhook's error names the host, never
// the token in its path or query.
func TestErrorsHideTheURL(t *testing.T) {
	spec, err := NewRegistry(Env{}).Open("webhook+http://127.0.0.1:1/hook/SECRET?key=SECRET")
	if err != nil {
		t.Fatal(err)
	}
	err = spec.Output.Send(context.Background(), []alert.Alert{{Alert: mkAlert(0, "a"), Seq: 1}})
	if err == nil || strings.Contains(err.Error(), "SECRET") {
		t.Errorf("error %v", err)
	}
}

// TestFileOutputCutsTornLine: a process killed in the middle of a write
// (or a power loss before the sync) can leave the file ending in part of a
// line. That batch was never acknowledged and is sent again, so the output
// cuts the torn part when it opens the file, and the file stays one whole
// alert per line. Planted bug: append after the torn part (the next line
// would be glued to it).
func TestFileOutputCutsTornLine(t *testing.T) {
	whole := `{"rule":"r","severity":"low","source":"kubetrail","auditIDs":["a"],"user":"u","message":"m","time":"2026-05-01T12:00:00Z","seq":1}` + "\n"
	a := alert.Alert{Alert: mkAlert(0, "alice"), Seq: 2}
	line, err := alert.AppendJSONLine(nil, &a)
	if err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("x", 5000) // longer than one read back from the end
	for name, tc := range map[string]struct{ before, after string }{
		"whole lines are kept":        {whole, whole + string(line)},
		"a torn line is cut":          {whole + `{"rule":"exec in`, whole + string(line)},
		"a long torn line is cut":     {whole + `{"rule":"` + long, whole + string(line)},
		"a file of one torn line":     {`{"rule":"` + long, string(line)},
		"an empty file stays":         {"", string(line)},
		"a torn line after long ones": {whole + `{"rule":"` + long + "\"}\n" + `{"ru`, whole + `{"rule":"` + long + "\"}\n" + string(line)},
	} {
		t.Run(name, func(t *testing.T) {
			mem := vfs.NewStrictMem()
			mem.MkdirAll("/var/log/kt", 0o755)
			f, err := mem.OpenFile("/var/log/kt/alerts.jsonl", os.O_CREATE|os.O_WRONLY, 0o600)
			if err != nil {
				t.Fatal(err)
			}
			f.Write([]byte(tc.before))
			f.Sync()
			f.Close()
			for _, d := range []string{"/var/log/kt", "/var/log", "/var", "/"} {
				mem.SyncDir(d)
			}
			spec, err := NewRegistry(Env{FS: mem}).Open("file:///var/log/kt/alerts.jsonl")
			if err != nil {
				t.Fatal(err)
			}
			defer spec.Output.Close()
			if err := spec.Output.Send(context.Background(), []alert.Alert{a}); err != nil {
				t.Fatal(err)
			}
			// What survives a crash right after Send: the cut is synced too.
			r, err := mem.Crash().Open("/var/log/kt/alerts.jsonl")
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(r)
			if string(got) != tc.after {
				tail := func(s string) string { return s[max(0, len(s)-300):] }
				t.Errorf("file holds %d bytes, ending\n%q\nwant %d bytes, ending\n%q", len(got), tail(string(got)), len(tc.after), tail(tc.after))
			}
		})
	}
}

// failingFS makes the next file Write store only its first `short` bytes
// and fail (a full disk), or the next file Sync fail, once each.
type failingFS struct {
	vfs.FS
	short     int // -1: no write fault
	failSync  bool
	writeErrs int
	syncErrs  int
}

func (f *failingFS) OpenFile(name string, flag int, perm os.FileMode) (vfs.File, error) {
	file, err := f.FS.OpenFile(name, flag, perm)
	if err != nil {
		return nil, err
	}
	return &failingFile{File: file, fs: f}, nil
}

type failingFile struct {
	vfs.File
	fs *failingFS
}

func (f *failingFile) Write(b []byte) (int, error) {
	if f.fs.short >= 0 && f.fs.short < len(b) {
		n, _ := f.File.Write(b[:f.fs.short])
		f.fs.short = -1
		f.fs.writeErrs++
		return n, errors.New("no space left on device")
	}
	return f.File.Write(b)
}

func (f *failingFile) Sync() error {
	if f.fs.failSync {
		f.fs.failSync = false
		f.fs.syncErrs++
		return errors.New("input/output error")
	}
	return f.File.Sync()
}

// TestFileOutputRetryWritesBatchOnce: a Send that fails (a write cut
// short by a full disk after two whole lines, or a failed fsync after
// the whole batch was written) leaves nothing of its batch behind, so the
// dispatcher's retry of the same batch puts each alert in the file once.
// Planted bug: not truncating to the batch's start on failure (the lines
// written before the failure were then in the file twice, uncounted).
func TestFileOutputRetryWritesBatchOnce(t *testing.T) {
	var batch []alert.Alert
	var want []byte
	for i := range 3 {
		a := alert.Alert{Alert: mkAlert(i, "alice"), Seq: uint64(i + 1)}
		batch = append(batch, a)
		want, _ = alert.AppendJSONLine(want, &a)
	}
	first, _ := alert.AppendJSONLine(nil, &batch[0])
	for name, fs := range map[string]*failingFS{
		"a write cut short": {short: 2*len(first) + 10},
		"a failed fsync":    {short: -1, failSync: true},
	} {
		t.Run(name, func(t *testing.T) {
			mem := vfs.NewStrictMem()
			mem.MkdirAll("/var/log/kt", 0o755)
			fs.FS = mem
			spec, err := NewRegistry(Env{FS: fs}).Open("file:///var/log/kt/alerts.jsonl")
			if err != nil {
				t.Fatal(err)
			}
			defer spec.Output.Close()
			if err := spec.Output.Send(context.Background(), batch); err == nil {
				t.Fatal("the faulty send succeeded")
			}
			if fs.writeErrs+fs.syncErrs != 1 {
				t.Fatalf("%d write and %d sync faults, want one", fs.writeErrs, fs.syncErrs)
			}
			if err := spec.Output.Send(context.Background(), batch); err != nil {
				t.Fatalf("the retry: %v", err)
			}
			r, err := mem.Open("/var/log/kt/alerts.jsonl")
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(r)
			if string(got) != string(want) {
				t.Errorf("after a failed send and its retry the file holds\n%s\nwant each alert once:\n%s", got, want)
			}
		})
	}
}
