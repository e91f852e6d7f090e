// Package setup writes and checks what the kube-apiserver needs for
// auditing: the webhook kubeconfig and, later, the static-pod manifest.
package setup

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
)

// WebhookConfig describes the kubeconfig the API server reads with
// --audit-webhook-config-file.
type WebhookConfig struct {
	// URL is kubetrail's webhook endpoint, e.g. https://10.0.0.5:8443/ingest/webhook.
	URL string
	// CAFile is a PEM bundle to verify kubetrail's serving certificate.
	CAFile string
	// Token is a bearer token kubetrail accepts.
	Token string
	// ClientCert and ClientKey are PEM files for mTLS.
	ClientCert, ClientKey string
	// Cluster, when set, is added as ?cluster= so events are tagged.
	Cluster string
	// InsecureSkipTLSVerify turns off server verification (tests only).
	InsecureSkipTLSVerify bool
}

// WebhookKubeconfig renders the kubeconfig. Certificates are embedded, so
// the file is self-contained and needs no extra volume in the static pod.
func WebhookKubeconfig(c WebhookConfig) ([]byte, error) {
	u, err := url.Parse(c.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("--url %q: want http(s)://HOST:PORT/ingest/webhook", c.URL)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/ingest/webhook"
	}
	if c.Cluster != "" {
		q := u.Query()
		q.Set("cluster", c.Cluster)
		u.RawQuery = q.Encode()
	}
	if (c.ClientCert == "") != (c.ClientKey == "") {
		return nil, errors.New("--client-cert and --client-key go together")
	}
	if u.Scheme == "http" && (c.Token != "" || c.ClientCert != "") && !isLocal(u.Hostname()) {
		return nil, errors.New("refusing to send a token or client key over plain http to another machine: use https")
	}
	q := func(s string) string { b, _ := json.Marshal(s); return string(b) } // a JSON string is a YAML string
	embed := func(path string) (string, error) {
		b, err := os.ReadFile(path)
		if err != nil {
			return "", err
		}
		return base64.StdEncoding.EncodeToString(b), nil
	}
	var b strings.Builder
	b.WriteString("# kubeconfig for kube-apiserver --audit-webhook-config-file, written by kubetrail setup webhook-config.\n")
	b.WriteString("apiVersion: v1\nkind: Config\nclusters:\n- name: kubetrail\n  cluster:\n")
	fmt.Fprintf(&b, "    server: %s\n", q(u.String()))
	if c.CAFile != "" {
		ca, err := embed(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("--ca: %w", err)
		}
		fmt.Fprintf(&b, "    certificate-authority-data: %s\n", ca)
	}
	if c.InsecureSkipTLSVerify {
		b.WriteString("    insecure-skip-tls-verify: true\n")
	}
	b.WriteString("users:\n- name: kube-apiserver\n  user:\n")
	wrote := false
	if c.Token != "" {
		fmt.Fprintf(&b, "    token: %s\n", q(c.Token))
		wrote = true
	}
	if c.ClientCert != "" {
		cert, err := embed(c.ClientCert)
		if err != nil {
			return nil, fmt.Errorf("--client-cert: %w", err)
		}
		key, err := embed(c.ClientKey)
		if err != nil {
			return nil, fmt.Errorf("--client-key: %w", err)
		}
		fmt.Fprintf(&b, "    client-certificate-data: %s\n    client-key-data: %s\n", cert, key)
		wrote = true
	}
	if !wrote {
		b.WriteString("    {}\n")
	}
	b.WriteString("contexts:\n- name: kubetrail\n  context:\n    cluster: kubetrail\n    user: kube-apiserver\ncurrent-context: kubetrail\n")
	return []byte(b.String()), nil
}

func isLocal(host string) bool {
	return host == "localhost" || strings.HasPrefix(host, "127.") || host == "::1"
}
