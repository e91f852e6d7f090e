package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kubetrail/kubetrail/internal/store/local"
)

const body = `{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[{"level":"Metadata","auditID":"a","stage":"ResponseComplete","requestURI":"/api","verb":"get","user":{"username":"u"},"requestReceivedTimestamp":"2026-11-23T10:00:00.000001Z","stageTimestamp":"2026-11-23T10:00:00.000002Z"}]}`

func openDB(t *testing.T) *local.DB {
	t.Helper()
	db, err := local.Open(t.TempDir(), local.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestRefusesExposureWithoutTLSAndAuth(t *testing.T) {
	f := func(cfg Config, wantErr string) {
		t.Helper()
		err := checkExposure(cfg)
		if wantErr == "" && err != nil || wantErr != "" && (err == nil || !strings.Contains(err.Error(), wantErr)) {
			t.Errorf("%+v: error %v, want %q", cfg, err, wantErr)
		}
	}
	f(Config{Listen: "127.0.0.1:8443"}, "")
	f(Config{Listen: "localhost:8443"}, "")
	f(Config{Listen: "[::1]:8443"}, "")
	f(Config{Listen: "0.0.0.0:8443"}, "refusing to listen on 0.0.0.0:8443 without TLS and authentication")
	f(Config{Listen: ":8443"}, "refusing")
	f(Config{Listen: "10.1.2.3:8443", TLSCert: "c", TLSKey: "k"}, "refusing")
	f(Config{Listen: "10.1.2.3:8443", Tokens: []string{"t"}}, "refusing")
	f(Config{Listen: "10.1.2.3:8443", TLSCert: "c", TLSKey: "k", Tokens: []string{"t"}}, "")
	f(Config{Listen: "10.1.2.3:8443", TLSCert: "c", TLSKey: "k", ClientCA: "ca"}, "")
	f(Config{Listen: "0.0.0.0:8443", Insecure: true}, "")
	f(Config{Listen: "127.0.0.1:8443", ClientCA: "ca"}, "--client-ca needs --tls-cert")
	f(Config{Listen: "127.0.0.1:8443", TLSCert: "c"}, "go together")
	f(Config{Listen: "nonsense"}, "--listen")
}

func TestBearerToken(t *testing.T) {
	s, err := New(Config{Listen: "127.0.0.1:0", Tokens: []string{"s3cret"}}, openDB(t), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()
	f := func(token string, want int) {
		t.Helper()
		req, _ := http.NewRequest("POST", ts.URL+"/ingest/webhook", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("token %q: %d, want %d", token, resp.StatusCode, want)
		}
	}
	f("", 401)
	f("wrong", 401)
	f("s3cret", 200)
	// Probes stay open by default.
	resp, err := http.Get(ts.URL + "/readyz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("readyz: %v %v", resp, err)
	}
	resp.Body.Close()
	resp, err = http.Get(ts.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	m, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`kubetrail_webhook_requests_total{code="200"} 1`, "kubetrail_events_stored_total 1", "kubetrail_wal_fsync_seconds_count 1", "kubetrail_webhook_received_bytes_total", "kubetrail_quarantined_total 0", "kubetrail_quarantine_files 0"} {
		if !strings.Contains(string(m), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
}

// TestMutualTLS serves HTTPS and accepts a client certificate signed by
// --client-ca in place of a token.
func TestMutualTLS(t *testing.T) {
	dir := t.TempDir()
	ca, caKey := newCA(t)
	writePEM(t, filepath.Join(dir, "ca.crt"), "CERTIFICATE", ca.Raw)
	srvCert, srvKey := issue(t, ca, caKey, "kubetrail", true)
	writePEM(t, filepath.Join(dir, "tls.crt"), "CERTIFICATE", srvCert)
	writeKey(t, filepath.Join(dir, "tls.key"), srvKey)
	cliCert, cliKey := issue(t, ca, caKey, "kube-apiserver", false)

	s, err := New(Config{Listen: "127.0.0.1:0", TLSCert: filepath.Join(dir, "tls.crt"), TLSKey: filepath.Join(dir, "tls.key"),
		ClientCA: filepath.Join(dir, "ca.crt"), Tokens: []string{"tok"}}, openDB(t), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addrc := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, func(a string) { addrc <- a }) }()
	addr := <-addrc

	pool := x509.NewCertPool()
	pool.AddCert(ca)
	client := func(withCert bool) *http.Client {
		tc := &tls.Config{RootCAs: pool, ServerName: "kubetrail"}
		if withCert {
			tc.Certificates = []tls.Certificate{{Certificate: [][]byte{cliCert}, PrivateKey: cliKey}}
		}
		return &http.Client{Transport: &http.Transport{TLSClientConfig: tc}, Timeout: 5 * time.Second}
	}
	f := func(c *http.Client, want int) {
		t.Helper()
		resp, err := c.Post("https://"+addr+"/ingest/webhook", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("status %d, want %d", resp.StatusCode, want)
		}
	}
	f(client(true), 200)
	f(client(false), 401)
	// Plain HTTP to the TLS port gets nowhere.
	if resp, err := http.Post("http://"+addr+"/ingest/webhook", "application/json", strings.NewReader(body)); err == nil {
		if resp.StatusCode == 200 {
			t.Error("plain HTTP accepted on the TLS port")
		}
		resp.Body.Close()
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func newCA(t *testing.T) (*x509.Certificate, *ecdsa.PrivateKey) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	return ca, key
}

func issue(t *testing.T, ca *x509.Certificate, caKey *ecdsa.PrivateKey, cn string, server bool) ([]byte, *ecdsa.PrivateKey) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.DNSNames = []string{cn}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return der, key
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

func writeKey(t *testing.T, path string, key *ecdsa.PrivateKey) {
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, path, "EC PRIVATE KEY", der)
}
