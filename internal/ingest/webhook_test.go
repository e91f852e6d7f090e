package ingest

import (
	"encoding/json"

	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/kubetrail/kubetrail/internal/store/local"
)

func item(id string) string {
	return `{"level":"Metadata","auditID":"` + id + `","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/production/secrets/important","verb":"delete","user":{"username":"alice","groups":["system:authenticated"]},"sourceIPs":["10.0.0.1"],"objectRef":{"resource":"secrets","namespace":"production","name":"important","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"2026-11-23T10:00:00.000001Z","stageTimestamp":"2026-11-23T10:00:00.000200Z"}`
}

func line(id string) string {
	return `{"kind":"Event","apiVersion":"audit.k8s.io/v1",` + item(id)[1:]
}

func eventList(items ...string) string {
	return `{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":[` + strings.Join(items, ",") + `]}`
}

func newTestWebhook(t *testing.T, cfg WebhookConfig) (*httptest.Server, string) {
	t.Helper()
	dir := t.TempDir()
	db, err := local.Open(dir, local.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	srv := httptest.NewServer(NewWebhook(db, cfg))
	t.Cleanup(srv.Close)
	return srv, dir
}

func newWebhookServer(t *testing.T, db *local.DB) *httptest.Server {
	srv := httptest.NewServer(NewWebhook(db, WebhookConfig{}))
	t.Cleanup(srv.Close)
	return srv
}

func post(t *testing.T, url, contentType string, body io.Reader) (int, WebhookResponse) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, body)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var wr WebhookResponse
	if err := json.NewDecoder(resp.Body).Decode(&wr); err != nil {
		t.Fatalf("answer is not JSON: %v", err)
	}
	return resp.StatusCode, wr
}

// TestWebhookHostileInput sends broken and hostile bodies. Each must get a
// clear answer, the server must stay up, and every good event beside a bad
// one must be stored.
func TestWebhookHostileInput(t *testing.T) {
	srv, dir := newTestWebhook(t, WebhookConfig{MaxBodyBytes: 8 << 20})
	url := srv.URL + "/ingest/webhook"
	deep := `{"level":"Request","auditID":"deep","stage":"ResponseComplete","stageTimestamp":"2026-11-23T10:00:00.000000Z","requestObject":` + strings.Repeat(`{"a":`, 200) + "1" + strings.Repeat("}", 200) + "}"
	cut16k := line("cut") // padded below to be cut at exactly 16 KiB
	cut16k = cut16k[:len(cut16k)-1] + `,"annotations":{"pad":"` + strings.Repeat("p", 20000) + `"}}`
	cut16k = cut16k[:16384]
	type tc struct {
		name        string
		contentType string
		body        func() io.Reader
		wantCode    int
		wantStored  int
		wantInError []string // substrings of the error or of a rejection reason
	}
	str := func(s string) func() io.Reader { return func() io.Reader { return strings.NewReader(s) } }
	cases := []tc{
		{"empty body", "application/json", str(""), 400, 0, []string{"empty body"}},
		{"wrong content type", "text/html", str(eventList(item("a"))), 415, 0, []string{`Content-Type "text/html" is not JSON`}},
		{"truncated", "application/json", str(eventList(item("t1"), item("t2"))[:300]), 400, 0, []string{"truncated JSON"}},
		{"line cut at 16 KiB among good lines", "application/x-ndjson", str(line("g1") + "\n" + cut16k + "\n" + line("g2") + "\n"), 200, 2, []string{"exactly 16 KiB"}},
		{"invalid UTF-8 item", "application/json", str(eventList(item("u1"), strings.Replace(item("u2"), "alice", "al\xff\xfece", 1), item("u3"))), 200, 2, []string{"invalid UTF-8"}},
		{"200-deep nesting", "application/json", str(eventList(item("d1"), deep)), 200, 1, []string{"nested deeper than 100 levels"}},
		{"one bad item", "application/json", str(eventList(item("b1"), `{"level":"Metadata","auditID":"b2"}`, item("b3"))), 200, 2, []string{"missing stage"}},
		{"item not an object", "application/json", str(eventList(item("n1"), `"hello"`)), 200, 1, []string{"expected a JSON object"}},
		{"wrong field type", "application/json", str(eventList(strings.Replace(item("w1"), `"verb":"delete"`, `"verb":["delete"]`, 1))), 400, 0, []string{`field "verb": expected a string`}},
		{"not JSON at all", "application/json", str("<html>hello</html>"), 400, 0, []string{"not JSON"}},
		{"100 MiB body", "application/json", func() io.Reader {
			return io.MultiReader(strings.NewReader(`{"kind":"EventList","items":[`), &repeatReader{b: []byte(item("big") + ","), left: 100 << 20})
		}, 413, 0, []string{"over the 8388608-byte limit"}},
		{"raw NUL inside one item", "application/json", str(eventList(item("z1"), strings.Replace(item("z2"), "alice", "al\x00ice", 1), item("z3"))), 200, 2, []string{`invalid character '\x00' in string literal`}},
		{"syntax error inside one item", "application/json", str(eventList(item("x1"), strings.Replace(item("x2"), `"verb":"delete",`, `"verb":"delete",,`, 1), item("x3"))), 200, 2, []string{"invalid JSON"}},
		{"unterminated string: boundaries lost", "application/json", str(eventList(item("l1"), `{"auditID":"l2}`, item("l3"))), 400, 0, []string{"no usable audit event"}},
		{"good EventList", "application/json", str(eventList(item("ok1"), item("ok2"))), 200, 2, nil},
		{"retried EventList", "application/json", str(eventList(item("ok1"), item("ok2"))), 200, 0, nil},
	}
	total := 0
	for _, c := range cases {
		code, wr := post(t, url, c.contentType, c.body())
		if code != c.wantCode {
			t.Errorf("%s: code %d, want %d (%+v)", c.name, code, c.wantCode, wr)
		}
		if wr.Stored != c.wantStored {
			t.Errorf("%s: stored %d, want %d (%+v)", c.name, wr.Stored, c.wantStored, wr)
		}
		all := wr.Error
		for _, r := range wr.Rejected {
			all += " | " + r.Reason
		}
		for _, w := range c.wantInError {
			if !strings.Contains(all, w) {
				t.Errorf("%s: answer %q does not say %q", c.name, all, w)
			}
		}
		if code >= 400 && wr.Error == "" {
			t.Errorf("%s: error answer without a message", c.name)
		}
		total += wr.Stored
	}
	// Still up, still storing.
	if code, wr := post(t, url, "application/json", strings.NewReader(eventList(item("after")))); code != 200 || wr.Stored != 1 {
		t.Fatalf("server unusable after hostile input: %d %+v", code, wr)
	}
	total++
	var ids []string
	if err := local.Scan(dir, local.ScanOptions{}, func(s local.Stored) error {
		var ev struct{ AuditID string }
		json.Unmarshal(s.Raw, &ev)
		ids = append(ids, ev.AuditID)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	want := "g1 g2 u1 u3 d1 b1 b3 n1 z1 z3 x1 x3 ok1 ok2 after"
	if got := strings.Join(ids, " "); got != want || len(ids) != total {
		t.Errorf("stored %q (%d), want %q", got, total, want)
	}
}

// TestWebhookListsFirstRejections: an answer lists the first
// MaxListedRejections bad items by index and counts them all, so that its
// size does not grow with the body. Planted bug: no cap (listed 30).
func TestWebhookListsFirstRejections(t *testing.T) {
	srv, dir := newTestWebhook(t, WebhookConfig{})
	items := []string{item("first")}
	for range 30 {
		items = append(items, `{}`)
	}
	items = append(items, item("last"))
	code, wr := post(t, srv.URL, "application/json", strings.NewReader(eventList(items...)))
	if code != 200 || wr.Stored != 2 || wr.RejectedCount != 30 || wr.RejectedNotListed != 10 || len(wr.Rejected) != MaxListedRejections {
		t.Fatalf("%d stored %d, rejected %d listed %d not listed %d; want 200, 2, 30, 20, 10", code, wr.Stored, wr.RejectedCount, len(wr.Rejected), wr.RejectedNotListed)
	}
	for i, r := range wr.Rejected {
		if r.Item == nil || *r.Item != i+1 || !strings.Contains(r.Reason, "missing auditID") {
			t.Errorf("rejection %d: %+v", i, r)
		}
	}
	if got := strings.Join(storedIDs(t, dir), " "); got != "first last" {
		t.Errorf("stored %q", got)
	}
}

func TestWebhookRejectsGetAndBadCluster(t *testing.T) {
	srv, _ := newTestWebhook(t, WebhookConfig{})
	resp, err := http.Get(srv.URL + "/ingest/webhook")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 405 {
		t.Errorf("GET: %d", resp.StatusCode)
	}
	code, wr := post(t, srv.URL+"/ingest/webhook?cluster=bad%20name", "application/json", strings.NewReader(eventList(item("x"))))
	if code != 400 || !strings.Contains(wr.Error, "not a valid name") {
		t.Errorf("bad cluster: %d %+v", code, wr)
	}
}

// repeatReader yields b again and again, left bytes in all.
type repeatReader struct {
	b    []byte
	left int
	off  int
}

func (r *repeatReader) Read(p []byte) (int, error) {
	if r.left <= 0 {
		return 0, io.EOF
	}
	n := 0
	for n < len(p) && r.left > 0 {
		c := copy(p[n:min(len(p), n+r.left)], r.b[r.off:])
		r.off = (r.off + c) % len(r.b)
		n += c
		r.left -= c
	}
	return n, nil
}
