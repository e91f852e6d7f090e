package ingest

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/kubetrail/kubetrail/internal/store/local"
)

// TestWebhookTakesCloudStreams: a shipper that forwards a managed
// cluster's audit stream to /ingest/webhook as the provider wrote it (an
// EKS CloudWatch Logs subscription payload, an AKS diagnostic settings
// Event Hub body; docs/deploy.md, "Managed clusters") gets its events
// stored as the embedded lines, byte for byte, and a payload sent again
// (overlapping deliveries) stores nothing twice.
func TestWebhookTakesCloudStreams(t *testing.T) {
	srv, dir := newTestWebhook(t, WebhookConfig{})
	url := srv.URL + "/ingest/webhook?cluster=managed"
	quote := func(s string) string {
		b, _ := json.Marshal(s)
		return string(b)
	}
	eks := `{"messageType":"DATA_MESSAGE","owner":"123456789012","logGroup":"/aws/eks/prod/cluster","logStream":"kube-apiserver-audit-1",` +
		`"subscriptionFilters":["kubetrail"],"logEvents":[{"id":"1","timestamp":1,"message":` + quote(line("eks-1")) + `},{"id":"2","timestamp":2,"message":` + quote(line("eks-2")) + `}]}`
	aks := `{"records":[{"time":"2026-11-23T10:00:00Z","category":"kube-audit","properties":{"log":` + quote(line("aks-1")) + `,"stream":"stdout","pod":"kube-apiserver-1"}},` +
		`{"time":"2026-11-23T10:00:01Z","category":"kube-audit","properties":{"log":` + quote(line("aks-2")) + `,"stream":"stdout","pod":"kube-apiserver-1"}}]}`
	for _, c := range []struct {
		name, body string
		stored     int
	}{
		{"EKS subscription payload", eks, 2},
		{"AKS Event Hub body", aks, 2},
		{"EKS payload delivered again", eks, 0},
		{"AKS body delivered again", aks, 0},
	} {
		code, wr := post(t, url, "application/json", strings.NewReader(c.body))
		if code != 200 || wr.Stored != c.stored || wr.RejectedCount != 0 {
			t.Errorf("%s: HTTP %d, %+v; want 200 and %d stored, nothing rejected", c.name, code, wr, c.stored)
		}
	}
	var got []string
	if err := local.Scan(dir, local.ScanOptions{}, func(s local.Stored) error {
		got = append(got, string(s.Raw))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	want := []string{line("eks-1"), line("eks-2"), line("aks-1"), line("aks-2")}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("stored:\n%s\nwant the embedded lines:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
