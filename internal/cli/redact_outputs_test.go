package cli

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestRedactionReachesAlertsAndForwards: serve stores a Secret's create at
// RequestResponse, a Falco rule whose output prints the secret's fields
// fires on it into a file, and a forwarder sends every event to a webhook.
// The secret's value is in neither the alert nor anything the webhook
// received; the markers are, so both read what the store holds.
// Mutation it catches: serve run with --no-redact (the value then reaches
// both), which stands for any path from ingest to an output that does not
// go through the redacting store.
func TestRedactionReachesAlertsAndForwards(t *testing.T) {
	work := t.TempDir()
	rules := filepath.Join(work, "secret.yaml")
	os.WriteFile(rules, []byte(`- rule: Secret created with data
  desc: prints the secret's fields, as a careless rule would
  condition: ka.target.resource=secrets and ka.verb=create
  output: secret %ka.target.name password=%jevt.value[/requestObject/data/password] again=%jevt.value[/requestObject/stringData/again] stored=%jevt.value[/responseObject/data/password]
  priority: WARNING
  source: k8s_audit
`), 0o600)
	var mu sync.Mutex
	var forwarded strings.Builder
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		forwarded.Write(b)
		mu.Unlock()
	}))
	defer sink.Close()
	alerts := filepath.Join(work, "alerts.jsonl")
	dir, addr := filepath.Join(work, "data"), freeAddr(t)
	e := &env{stdin: strings.NewReader(""), stdout: io.Discard, stderr: io.Discard, logLevel: "error"}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := serveCmd(e)
	cmd.SetArgs([]string{"--data", dir, "--listen", addr, "--rules", rules, "--alert-output", "file://" + alerts,
		"--forward", "webhook+" + sink.URL + "/in#format=jsonl"})
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	}()
	secretLine, plainLine := secretEvents("out")
	var items []string
	for _, l := range []string{secretLine, plainLine} {
		items = append(items, strings.Replace(l, `"kind":"Event","apiVersion":"audit.k8s.io/v1",`, "", 1))
	}
	body := `{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":[` + strings.Join(items, ",") + `]}`
	waitUntil(t, "the webhook's 200", 10*time.Second, func() bool {
		resp, err := http.Post("http://"+addr+"/ingest/webhook", "application/json", strings.NewReader(body))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	waitUntil(t, "the alert in its file", 10*time.Second, func() bool {
		b, _ := os.ReadFile(alerts)
		return strings.Contains(string(b), "Secret created with data")
	})
	waitUntil(t, "both events forwarded", 10*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return strings.Contains(forwarded.String(), `"out-1"`) && strings.Contains(forwarded.String(), `"out-2"`)
	})
	a, _ := os.ReadFile(alerts)
	mu.Lock()
	f := forwarded.String()
	mu.Unlock()
	for what, got := range map[string]string{"alert": string(a), "forward": f} {
		for _, secret := range []string{e2eSecret, e2eSecretB64} {
			if strings.Contains(got, secret) {
				t.Errorf("the secret %q is in the %s: %s", secret, what, got)
			}
		}
	}
	// The file output writes JSON, which escapes < and >.
	if !strings.Contains(string(a), `password=\u003credacted:hmac-sha256:`) || !strings.Contains(string(a), `again=\u003credacted:hmac-sha256:`) {
		t.Errorf("the alert does not print the markers: %s", a)
	}
	if !strings.Contains(f, `"password":"<redacted:hmac-sha256:`) || !strings.Contains(f, `kubetrail.io/redacted`) {
		t.Errorf("the forwarded events do not hold the markers: %s", f)
	}
}
