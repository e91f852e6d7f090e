package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"github.com/kubetrail/kubetrail/internal/pipeline"
	"io"
	"log/slog"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kubetrail/kubetrail/internal/ingest"
	"github.com/kubetrail/kubetrail/internal/syslog"
)

// TestSyslogExposure: a syslog listener beyond loopback must
// authenticate its senders (TLS with client certificates) unless
// --insecure says so, as the HTTP listener must.
func TestSyslogExposure(t *testing.T) {
	f := func(cfg Config, wantErr string) {
		t.Helper()
		err := checkSyslogExposure(cfg)
		if wantErr == "" && err != nil || wantErr != "" && (err == nil || !strings.Contains(err.Error(), wantErr)) {
			t.Errorf("%v: error %v, want %q", cfg.Syslog.Listen, err, wantErr)
		}
	}
	sl := func(l ...string) ingest.SyslogConfig { return ingest.SyslogConfig{Listen: l} }
	f(Config{Syslog: sl("tcp://127.0.0.1:514", "udp://[::1]:514", "tcp://localhost:514")}, "")
	f(Config{Syslog: sl("tcp://0.0.0.0:514")}, "refusing to take syslog on tcp://0.0.0.0:514 without TLS")
	f(Config{Syslog: sl("udp://:514")}, "refusing to take syslog on udp://:514 without TLS")
	f(Config{Syslog: sl("tcp://10.0.0.1:514"), TLSCert: "c", TLSKey: "k", ClientCA: "ca"}, "without TLS")
	f(Config{Syslog: sl("tcp://0.0.0.0:514", "udp://0.0.0.0:514"), Insecure: true}, "")
	f(Config{Syslog: sl("tls://127.0.0.1:6514")}, "needs --tls-cert and --tls-key")
	f(Config{Syslog: sl("tls://127.0.0.1:6514"), TLSCert: "c", TLSKey: "k"}, "")
	f(Config{Syslog: sl("tls://0.0.0.0:6514"), TLSCert: "c", TLSKey: "k", Tokens: []string{"t"}}, "without client certificates")
	f(Config{Syslog: sl("tls://0.0.0.0:6514"), TLSCert: "c", TLSKey: "k", ClientCA: "ca"}, "")
	f(Config{Syslog: sl("tls://0.0.0.0:6514"), TLSCert: "c", TLSKey: "k", Insecure: true}, "")
	f(Config{Syslog: sl("http://x:1")}, "unknown transport")
	// New refuses as well, before anything listens.
	if _, err := New(Config{Listen: "127.0.0.1:0", Syslog: sl("tcp://0.0.0.0:0")}, openDB(t), slog.New(slog.DiscardHandler)); err == nil {
		t.Error("New accepted plain TCP syslog on every interface")
	}
}

// TestSyslogTLSAndMetrics: a tls:// listener with --client-ca takes
// events from a sender with a certificate the CA signed, refuses one
// without (logged with its address), stores into the webhook's store and
// counts in /metrics.
func TestSyslogTLSAndMetrics(t *testing.T) {
	dir := t.TempDir()
	ca, caKey := newCA(t)
	writePEM(t, filepath.Join(dir, "ca.crt"), "CERTIFICATE", ca.Raw)
	srvCert, srvKey := issue(t, ca, caKey, "kubetrail", true)
	writePEM(t, filepath.Join(dir, "tls.crt"), "CERTIFICATE", srvCert)
	writeKey(t, filepath.Join(dir, "tls.key"), srvKey)
	cliCert, cliKey := issue(t, ca, caKey, "rsyslog", false)

	logs := &lockedLog{}
	db := openDB(t)
	s, err := New(Config{Listen: "127.0.0.1:0", TLSCert: filepath.Join(dir, "tls.crt"), TLSKey: filepath.Join(dir, "tls.key"),
		ClientCA: filepath.Join(dir, "ca.crt"), Syslog: ingest.SyslogConfig{Listen: []string{"tls://127.0.0.1:0"}, Logger: slog.New(slog.NewTextHandler(logs, nil))}},
		db, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan []string, 1)
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, func(string) { ready <- s.SyslogAddrs() }) }()
	_, addr, _ := ingest.ParseSyslogListen((<-ready)[0])

	pool := x509.NewCertPool()
	pool.AddCert(ca)
	msg := []byte(`<110>1 - node1 kube-audit - - [kubetrail@32473 cluster="prod"] {"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"s1","stage":"ResponseComplete","requestURI":"/api","verb":"get","user":{"username":"u"},"requestReceivedTimestamp":"2026-11-23T10:00:00.000001Z","stageTimestamp":"2026-11-23T10:00:00.000002Z"}`)
	anon := &syslog.Client{Addr: addr, TLS: &tls.Config{RootCAs: pool, ServerName: "kubetrail"}}
	anon.Send(context.Background(), []byte(strings.Replace(string(msg), `"s1"`, `"anon"`, 1)))
	anon.Close()
	signed := &syslog.Client{Addr: addr, TLS: &tls.Config{RootCAs: pool, ServerName: "kubetrail",
		Certificates: []tls.Certificate{{Certificate: [][]byte{cliCert}, PrivateKey: cliKey}}}}
	if err := signed.Send(context.Background(), msg); err != nil {
		t.Fatal(err)
	}
	defer signed.Close()
	for i := 0; db.Stats().Stored.Load() < 1 && i < 500; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // anything the anonymous sender got in would be stored by now
	if n := db.Stats().Stored.Load(); n != 1 {
		t.Fatalf("stored %d events, want 1 (from the sender with a certificate)", n)
	}
	if !strings.Contains(logs.String(), "TLS handshake failed") || !strings.Contains(logs.String(), "peer=127.0.0.1:") {
		t.Errorf("the refused sender is not logged with its address:\n%s", logs.String())
	}
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	for _, want := range []string{`kubetrail_syslog_messages_total{result="stored",transport="tls"} 1`, `kubetrail_syslog_connections{transport="tls"} 1`} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// lockedLog is a log destination safe for concurrent use.
type lockedLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// countingSink stands for the ingest pipeline in front of the store
// (redaction): it counts what passes, then stores it.
type countingSink struct {
	pipeline.Sink
	n atomic.Int64
}

func (c *countingSink) Append(ctx context.Context, b *pipeline.Batch) (pipeline.Result, error) {
	c.n.Add(int64(len(b.Records)))
	return c.Sink.Append(ctx, b)
}

// TestSyslogGoesThroughTheIngestPipeline: events from syslog pass the same
// ingest pipeline as the webhook's (Config.Ingest: redaction), never
// straight into the store.
// Mutation it catches: the syslog listener given db instead of the sink.
func TestSyslogGoesThroughTheIngestPipeline(t *testing.T) {
	db := openDB(t)
	pipe := &countingSink{Sink: db}
	s, err := New(Config{Listen: "127.0.0.1:0", Ingest: pipe, Syslog: ingest.SyslogConfig{Listen: []string{"tcp://127.0.0.1:0"}}}, db, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan []string, 1)
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx, func(string) { ready <- s.SyslogAddrs() }) }()
	_, addr, _ := ingest.ParseSyslogListen((<-ready)[0])
	c := &syslog.Client{Addr: addr}
	msg := `<110>1 - node1 kube-audit - - - {"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"p1","stage":"ResponseComplete","requestURI":"/api","verb":"get","user":{"username":"u"},"requestReceivedTimestamp":"2026-11-23T10:00:00.000001Z","stageTimestamp":"2026-11-23T10:00:00.000002Z"}`
	if err := c.Send(context.Background(), []byte(msg)); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := 0; db.Stats().Stored.Load() < 1 && i < 500; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if n := pipe.n.Load(); n != 1 || db.Stats().Stored.Load() != 1 {
		t.Fatalf("%d events passed the ingest pipeline and %d were stored; want 1 and 1", n, db.Stats().Stored.Load())
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
