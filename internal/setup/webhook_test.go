package setup

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWebhookKubeconfig(t *testing.T) {
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.crt")
	os.WriteFile(ca, []byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"), 0o600)
	got, err := WebhookKubeconfig(WebhookConfig{URL: "https://10.0.0.5:8443", CAFile: ca, Token: `to"k`, Cluster: "prod"})
	if err != nil {
		t.Fatal(err)
	}
	want := `# kubeconfig for kube-apiserver --audit-webhook-config-file, written by kubetrail setup webhook-config.
apiVersion: v1
kind: Config
clusters:
- name: kubetrail
  cluster:
    server: "https://10.0.0.5:8443/ingest/webhook?cluster=prod"
    certificate-authority-data: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUIKLS0tLS1FTkQgQ0VSVElGSUNBVEUtLS0tLQo=
users:
- name: kube-apiserver
  user:
    token: "to\"k"
contexts:
- name: kubetrail
  context:
    cluster: kubetrail
    user: kube-apiserver
current-context: kubetrail
`
	if string(got) != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
	f := func(c WebhookConfig, wantErr string) {
		t.Helper()
		if _, err := WebhookKubeconfig(c); err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Errorf("%+v: error %v, want %q", c, err, wantErr)
		}
	}
	f(WebhookConfig{URL: "ftp://x"}, "want http(s)://")
	f(WebhookConfig{URL: "http://10.0.0.5:8443", Token: "t"}, "over plain http to another machine")
	f(WebhookConfig{URL: "https://h:1", ClientCert: "c"}, "go together")
	f(WebhookConfig{URL: "https://h:1", CAFile: filepath.Join(dir, "missing")}, "--ca")
}
