package forward

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kubetrail/kubetrail/internal/audit"
	"github.com/kubetrail/kubetrail/internal/store/local"
)

// clientTimeout is the HTTP timeout of these tests: a receiver that
// "times out" holds its answer longer. A second, not less: under -race
// on a loaded machine an ordinary answer took over 300 ms and counted
// as one more failure.
const clientTimeout = time.Second

// flaky answers the requests of a script, in order: "429" and "503" fail
// without reading the body (Retry-After: 0), "timeout" lets the receiver
// take the body (it arrived) and then holds the answer past the client's
// timeout (the answer is lost), "ok" or an exhausted script serve
// normally.
type flaky struct {
	t      *testing.T
	mu     sync.Mutex
	script []string
	n      int
	serve  http.HandlerFunc
}

func (f *flaky) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	step := "ok"
	if f.n < len(f.script) {
		step = f.script[f.n]
	}
	f.n++
	f.mu.Unlock()
	switch step {
	case "429", "503":
		code, _ := strconv.Atoi(step)
		w.Header().Set("Retry-After", "0")
		http.Error(w, "busy", code)
	case "timeout":
		f.serve(httptest.NewRecorder(), r)
		time.Sleep(2 * clientTimeout)
	default:
		f.serve(w, r)
	}
}

func (f *flaky) requests() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.n
}

// forwardAll stores n events (batches of 4 when forwarded) and forwards
// them once to rawURL, as `kubetrail forward` does.
func forwardAll(t *testing.T, rawURL string, n int) (*Forwarder, []audit.Record, error) {
	t.Helper()
	db, err := local.Open(t.TempDir(), local.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	appendEvents(t, db, 0, n)
	var recs []audit.Record
	for i := 0; i < n; i++ {
		recs = append(recs, ev(i, map[bool]string{true: "delete", false: "create"}[i%3 == 2]))
	}
	d, err := NewRegistry(Env{HTTP: &http.Client{Timeout: clientTimeout}, Hostname: "kt-node"}).Open(rawURL, "", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	d.Config.Batch, d.Config.MinBackoff, d.Config.MaxBackoff = 4, time.Millisecond, 10*time.Millisecond
	f, err := New(db.Dir(), d, local.Pos{}, Options{RetryFor: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return f, recs, f.Once(context.Background(), local.ScanOptions{})
}

// failures is the script every HTTP destination is put through: refused
// twice, then an answer lost after the body arrived.
var failures = []string{"429", "503", "timeout"}

func checkFailures(t *testing.T, f *Forwarder, fl *flaky, n int) {
	t.Helper()
	st := f.Stats()
	batches := (n + 3) / 4
	if st.Failures != 3 || st.Events != uint64(n) || st.Batches != uint64(batches) || fl.requests() < batches+3 {
		t.Errorf("stats %+v after %d requests; want 3 failures, %d events in %d batches", st, fl.requests(), n, batches)
	}
}

// TestWebhookWireFormat: an EventList the API server's webhook backend
// would send (kind, apiVersion, the stored events as items, byte for
// byte), a bearer token from token_file; JSON lines with format=jsonl.
// 429, 503 and a lost answer are retried: every event arrives, and only
// the batch whose answer was lost arrives twice.
func TestWebhookWireFormat(t *testing.T) {
	for _, format := range []string{"eventlist", "jsonl"} {
		t.Run(format, func(t *testing.T) {
			var mu sync.Mutex
			got := map[string]int{}
			var problems []string
			fl := &flaky{t: t, script: failures, serve: func(w http.ResponseWriter, r *http.Request) {
				body, _ := io.ReadAll(r.Body)
				mu.Lock()
				defer mu.Unlock()
				if r.Header.Get("Authorization") != "Bearer tok-1" || r.URL.Path != "/in" || r.URL.RawQuery != "cluster=prod" {
					problems = append(problems, fmt.Sprintf("request %s %s auth %q", r.Method, r.URL, r.Header.Get("Authorization")))
				}
				var items []json.RawMessage
				if format == "jsonl" {
					if r.Header.Get("Content-Type") != "application/x-ndjson" {
						problems = append(problems, "content type "+r.Header.Get("Content-Type"))
					}
					for _, l := range bytes.Split(bytes.TrimSuffix(body, []byte("\n")), []byte("\n")) {
						items = append(items, l)
					}
				} else {
					var list struct {
						Kind, APIVersion string
						Items            []json.RawMessage
					}
					if err := json.Unmarshal(body, &list); err != nil || list.Kind != "EventList" || list.APIVersion != "audit.k8s.io/v1" {
						problems = append(problems, fmt.Sprintf("not an EventList (%v): %.200s", err, body))
					}
					items = list.Items
				}
				for _, it := range items {
					var e audit.Event
					if err := json.Unmarshal(it, &e); err != nil || e.Kind != "Event" {
						problems = append(problems, fmt.Sprintf("item %.100s: %v", it, err))
					}
					got[string(it)]++
				}
			}}
			srv := httptest.NewServer(fl)
			defer srv.Close()
			tok := filepath.Join(t.TempDir(), "tok")
			os.WriteFile(tok, []byte("tok-1\n"), 0o600)
			f, recs, err := forwardAll(t, "webhook+"+srv.URL+"/in?cluster=prod#format="+format+"&token_file="+tok, 10)
			if err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			defer mu.Unlock()
			for _, p := range problems {
				t.Error(p)
			}
			dups := 0
			for i, r := range recs {
				switch n := got[string(r.Raw)]; {
				case n == 0:
					t.Errorf("event %d never arrived (byte for byte)", i)
				case n > 1:
					dups += n - 1
				}
			}
			// The timed-out request was the first batch's third try.
			if dups != 4 {
				t.Errorf("%d duplicates; want 4 (one batch whose answer was lost)", dups)
			}
			checkFailures(t, f, fl, 10)
		})
	}
}

// TestSplunkHECWireFormat: HEC event objects with the stored event as
// "event", "time" its stageTimestamp in epoch seconds with microseconds,
// sourcetype kube:apiserver:audit, the index and the cluster as an
// indexed field, the token as "Authorization: Splunk"; with ack=true a
// channel on every request and the batch acknowledged only once the ack
// endpoint says it is indexed.
func TestSplunkHECWireFormat(t *testing.T) {
	var mu sync.Mutex
	got := map[string]int{}
	var problems []string
	var channel string
	acks := map[int]int{} // ackId -> polls before true
	nextAck := 0
	ackPolls := 0
	fl := &flaky{t: t, script: failures, serve: func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		if r.Header.Get("Authorization") != "Splunk hec-token" {
			problems = append(problems, "auth "+r.Header.Get("Authorization"))
		}
		ch := r.Header.Get("X-Splunk-Request-Channel")
		if !regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`).MatchString(ch) || channel != "" && ch != channel {
			problems = append(problems, "channel "+ch)
		}
		channel = ch
		switch r.URL.Path {
		case "/services/collector/event":
			dec := json.NewDecoder(bytes.NewReader(body))
			for dec.More() {
				var e struct {
					Time       json.Number
					Host       string
					Source     string
					Sourcetype string
					Index      string
					Fields     map[string]string
					Event      json.RawMessage
				}
				if err := dec.Decode(&e); err != nil {
					problems = append(problems, err.Error())
					break
				}
				var ae audit.Event
				json.Unmarshal(e.Event, &ae)
				want := fmt.Sprintf("%d.%06d", ae.StageTimestamp.Unix(), ae.StageTimestamp.Nanosecond()/1000)
				if string(e.Time) != want || e.Sourcetype != "kube:apiserver:audit" || e.Source != "kubetrail" || e.Index != "k8s" ||
					e.Host != "kt-node" || e.Fields["cluster"] != "prod" {
					problems = append(problems, fmt.Sprintf("event fields %+v; want time %s", e, want))
				}
				got[string(e.Event)]++
			}
			id := nextAck
			nextAck++
			acks[id] = 1
			fmt.Fprintf(w, `{"text":"Success","code":0,"ackId":%d}`, id)
		case "/services/collector/ack":
			ackPolls++
			var req struct{ Acks []int }
			json.Unmarshal(body, &req)
			ans := map[string]bool{}
			for _, id := range req.Acks {
				ans[strconv.Itoa(id)] = acks[id] == 0
				acks[id]--
			}
			json.NewEncoder(w).Encode(map[string]any{"acks": ans})
		default:
			http.NotFound(w, r)
		}
	}}
	srv := httptest.NewServer(fl)
	defer srv.Close()
	u := strings.Replace(srv.URL, "http://", "splunk+http://hec-token@", 1) + "#ack=true&index=k8s"
	f, recs, err := forwardAll(t, u, 10)
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, p := range problems {
		t.Error(p)
	}
	for i, r := range recs {
		if got[string(r.Raw)] == 0 {
			t.Errorf("event %d never arrived (byte for byte)", i)
		}
	}
	// Every batch waited for one "not yet" before its ack.
	if ackPolls < 2*3 {
		t.Errorf("%d ack polls; want two per batch (one not yet indexed)", ackPolls)
	}
	st := f.Stats()
	if st.Failures != 3 || st.Events != 10 {
		t.Errorf("stats %+v", st)
	}
}

// esIndex is an Elasticsearch that keeps documents by _id and answers
// create as Elasticsearch does: 201, or 409 when the _id exists.
type esIndex struct {
	mu       sync.Mutex
	docs     map[string]json.RawMessage
	creates  int
	problems []string
	// itemFail, when > 0, fails that many items of the next request with
	// a per-item 429.
	itemFail int
}

func (x *esIndex) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if r.URL.Path != "/_bulk" || r.Header.Get("Content-Type") != "application/x-ndjson" || r.Header.Get("Authorization") != "Basic ZWxhc3RpYzpwdw==" {
		x.problems = append(x.problems, fmt.Sprintf("%s %s %q %q", r.Method, r.URL.Path, r.Header.Get("Content-Type"), r.Header.Get("Authorization")))
	}
	sc := bufio.NewScanner(r.Body)
	sc.Buffer(nil, 1<<20)
	var items []map[string]any
	errs := false
	for sc.Scan() {
		var action map[string]struct {
			Index string `json:"_index"`
			ID    string `json:"_id"`
		}
		if err := json.Unmarshal(sc.Bytes(), &action); err != nil || len(action) != 1 {
			x.problems = append(x.problems, fmt.Sprintf("action line %s: %v", sc.Bytes(), err))
			return
		}
		a, ok := action["create"]
		if !ok || a.Index != "k8s-audit" || len(a.ID) != 32 {
			x.problems = append(x.problems, fmt.Sprintf("action %s", sc.Bytes()))
		}
		if !sc.Scan() {
			x.problems = append(x.problems, "an action without its document")
			return
		}
		doc := json.RawMessage(bytes.Clone(sc.Bytes()))
		status := 201
		switch {
		case x.itemFail > 0:
			x.itemFail--
			status = 429
		case x.docs[a.ID] != nil:
			status = 409
		default:
			x.docs[a.ID] = doc
			x.creates++
		}
		item := map[string]any{"_index": a.Index, "_id": a.ID, "status": status}
		if status != 201 {
			errs = true
			item["error"] = map[string]string{"type": map[int]string{429: "es_rejected_execution_exception", 409: "version_conflict_engine_exception"}[status], "reason": "test"}
		}
		items = append(items, map[string]any{"create": item})
	}
	json.NewEncoder(w).Encode(map[string]any{"took": 1, "errors": errs, "items": items})
}

// TestElasticsearchBulkWireFormat: bulk NDJSON with a create action per
// event, its _id the store key (the same on every send), the document in
// the shape of Elastic's Kubernetes audit integration. Per-item 429s are
// retried item by item, 429/503 answers and a lost answer whole; the
// lost answer's batch comes back as 409s, counted as already there, so
// the index holds every event exactly once.
// Mutation it catches: an _id drawn per send (random or from the
// position within the batch) stores the lost batch twice.
func TestElasticsearchBulkWireFormat(t *testing.T) {
	x := &esIndex{docs: map[string]json.RawMessage{}, itemFail: 2}
	fl := &flaky{t: t, script: []string{"ok", "429", "503", "timeout"}, serve: x.ServeHTTP}
	srv := httptest.NewServer(fl)
	defer srv.Close()
	u := strings.Replace(srv.URL, "http://", "elasticsearch+http://elastic:pw@", 1) + "/k8s-audit"
	f, recs, err := forwardAll(t, u, 10)
	if err != nil {
		t.Fatal(err)
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, p := range x.problems {
		t.Error(p)
	}
	if x.creates != 10 || len(x.docs) != 10 {
		t.Errorf("%d creates, %d documents; want each of the 10 events once", x.creates, len(x.docs))
	}
	for i, r := range recs {
		k := local.KeyOf("prod", r.Raw)
		doc := x.docs[fmt.Sprintf("%x", k[:])]
		if doc == nil {
			t.Errorf("event %d: no document with its key as _id", i)
			continue
		}
		var d struct {
			Timestamp    string `json:"@timestamp"`
			Orchestrator struct{ Cluster struct{ Name string } }
			Kubernetes   struct {
				Audit struct {
					AuditID     string            `json:"auditID"`
					Verb        string            `json:"verb"`
					Annotations map[string]string `json:"annotations"`
				}
			}
		}
		if err := json.Unmarshal(doc, &d); err != nil {
			t.Fatal(err)
		}
		if d.Timestamp != r.Event.StageTimestamp.UTC().Format("2006-01-02T15:04:05.000000Z") || d.Orchestrator.Cluster.Name != "prod" ||
			d.Kubernetes.Audit.AuditID != r.Event.AuditID || d.Kubernetes.Audit.Verb != r.Event.Verb ||
			d.Kubernetes.Audit.Annotations["authorization_k8s_io/decision"] != "allow" {
			t.Errorf("event %d: document %s", i, doc)
		}
	}
	st := f.Stats()
	// The first batch: 2 items failed, sent again alone; the third batch
	// was created and its answer lost: 2 or 4 items answer 409.
	if st.Existing == 0 || st.Failures != 4 || st.Events != 10 {
		t.Errorf("stats %+v; want 4 failures (items, 429, 503, timeout), 409s counted as existing", st)
	}
}

// TestOTLPLogsWireFormat: an ExportLogsServiceRequest in OTLP's JSON
// encoding: lowerCamelCase, 64-bit times as decimal strings, the
// severity as a number, one resource per cluster with service.name and
// k8s.cluster.name, the stored event as the body's stringValue. A
// partial success is counted as rejected and not sent again (the spec).
func TestOTLPLogsWireFormat(t *testing.T) {
	var mu sync.Mutex
	got := map[string]int{}
	var problems []string
	served := 0
	fl := &flaky{t: t, script: failures, serve: func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		if r.URL.Path != "/v1/logs" || r.Header.Get("Content-Type") != "application/json" {
			problems = append(problems, r.URL.Path+" "+r.Header.Get("Content-Type"))
		}
		// Decoded loosely, as a collector's JSON unmarshaler reads it.
		var req map[string]any
		if err := json.Unmarshal(body, &req); err != nil {
			problems = append(problems, err.Error())
			return
		}
		for _, rl := range req["resourceLogs"].([]any) {
			rl := rl.(map[string]any)
			attrs := map[string]string{}
			for _, a := range rl["resource"].(map[string]any)["attributes"].([]any) {
				a := a.(map[string]any)
				attrs[a["key"].(string)] = a["value"].(map[string]any)["stringValue"].(string)
			}
			if attrs["service.name"] != "kube-apiserver" || attrs["k8s.cluster.name"] != "prod" {
				problems = append(problems, fmt.Sprintf("resource %v", attrs))
			}
			for _, sl := range rl["scopeLogs"].([]any) {
				sl := sl.(map[string]any)
				if sl["scope"].(map[string]any)["name"] != "kubetrail" {
					problems = append(problems, fmt.Sprintf("scope %v", sl["scope"]))
				}
				for _, lr := range sl["logRecords"].([]any) {
					lr := lr.(map[string]any)
					raw := lr["body"].(map[string]any)["stringValue"].(string)
					var e audit.Event
					json.Unmarshal([]byte(raw), &e)
					tn, ok := lr["timeUnixNano"].(string)
					if !ok || tn != strconv.FormatInt(e.StageTimestamp.UnixNano(), 10) || lr["severityNumber"] != 9.0 || lr["severityText"] != "INFO" {
						problems = append(problems, fmt.Sprintf("record %v", lr))
					}
					if _, ok := lr["observedTimeUnixNano"].(string); !ok {
						problems = append(problems, "observedTimeUnixNano is not a string")
					}
					ra := map[string]string{}
					for _, a := range lr["attributes"].([]any) {
						a := a.(map[string]any)
						ra[a["key"].(string)] = a["value"].(map[string]any)["stringValue"].(string)
					}
					if ra["k8s.audit.id"] != e.AuditID || ra["k8s.audit.verb"] != e.Verb || ra["user.name"] != "alice" || ra["k8s.namespace.name"] != "ns" {
						problems = append(problems, fmt.Sprintf("record attributes %v", ra))
					}
					got[raw]++
				}
			}
		}
		// The first answer that reaches the client (the first serve was
		// the lost one).
		if served++; served == 2 {
			fmt.Fprint(w, `{"partialSuccess":{"rejectedLogRecords":"1","errorMessage":"one too old"}}`)
			return
		}
		fmt.Fprint(w, `{}`)
	}}
	srv := httptest.NewServer(fl)
	defer srv.Close()
	f, recs, err := forwardAll(t, "otlp+"+srv.URL, 10)
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, p := range problems {
		t.Error(p)
	}
	for i, r := range recs {
		if got[string(r.Raw)] == 0 {
			t.Errorf("event %d never arrived", i)
		}
	}
	checkFailures(t, f, fl, 10)
	if st := f.Stats(); st.Rejected != 1 {
		t.Errorf("rejected %d; want the partial success's 1", st.Rejected)
	}
}

// TestRetryForEnds: a destination that keeps failing ends a one-shot
// forward after RetryFor with its error; nothing is counted delivered.
func TestRetryForEnds(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "down for maintenance", 503)
	}))
	defer srv.Close()
	db, err := local.Open(t.TempDir(), local.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	appendEvents(t, db, 0, 3)
	d, err := NewRegistry(Env{}).Open("webhook+"+srv.URL, "", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	d.Config.MinBackoff, d.Config.MaxBackoff = 10*time.Millisecond, 50*time.Millisecond
	f, err := New(db.Dir(), d, local.Pos{}, Options{RetryFor: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	err = f.Once(context.Background(), local.ScanOptions{})
	if err == nil || !strings.Contains(err.Error(), "down for maintenance") || !strings.Contains(err.Error(), "failing for 300ms") {
		t.Fatalf("Once = %v; want the destination's error after 300ms", err)
	}
	if took := time.Since(began); took > 3*time.Second {
		t.Errorf("took %v", took)
	}
	if st := f.Stats(); st.Events != 0 || st.Failures < 2 {
		t.Errorf("stats %+v", st)
	}
}
