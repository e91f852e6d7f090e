// Package server is kubetrail's HTTP face: the webhook receiver, health and
// readiness, Prometheus metrics, and (later) the query API and web UI, with
// TLS, bearer-token and client-certificate authentication.
package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/kubetrail/kubetrail/internal/alert"
	"github.com/kubetrail/kubetrail/internal/detector"
	"github.com/kubetrail/kubetrail/internal/forward"
	"github.com/kubetrail/kubetrail/internal/ingest"
	"github.com/kubetrail/kubetrail/internal/metrics"
	"github.com/kubetrail/kubetrail/internal/pipeline"
	"github.com/kubetrail/kubetrail/internal/store"
	"github.com/kubetrail/kubetrail/internal/store/local"
)

// Config configures the server. Flags of `kubetrail serve` map onto it.
type Config struct {
	// Listen is the address to listen on, host:port.
	Listen string
	// TLSCert and TLSKey are PEM files; with them the server speaks HTTPS.
	TLSCert, TLSKey string
	// ClientCA is a PEM bundle; with it, clients may authenticate with a
	// certificate it signed (mTLS).
	ClientCA string
	// Tokens are bearer tokens accepted with no name and no role (see
	// Access). No token and no ClientCA means no authentication.
	Tokens []string
	// Access gives tokens and client certificates their roles and scopes
	// (auth.go).
	Access Access
	// AccessLog, when set, gets a line for every read of the API and
	// every refused request (accesslog.go); Run syncs it.
	AccessLog *AccessLog
	// Insecure allows a non-loopback address without TLS and authentication.
	Insecure bool
	// Webhook configures the webhook receiver.
	Webhook ingest.WebhookConfig
	// Ingest is where webhook batches go: the store behind the ingest
	// decorators (redaction). Nil means the store itself.
	Ingest pipeline.Sink
	// Redacted, when set, counts the events redaction changed, for
	// /metrics.
	Redacted func() int64
	// PolicyEvents, when set, gives the ingest policy's event counts by
	// result (kept, dropped_level_none, ...), for /metrics.
	PolicyEvents func() map[string]int64
	// AuthHealth, when set, requires authentication for /healthz, /readyz
	// and /metrics as well; by default they are open so probes need no token.
	AuthHealth bool
	// Alerts is the alert store the rules write to, which
	// GET /api/v1/alerts lists and /metrics counts; nil when detection is
	// off (the endpoint answers 404 saying so).
	Alerts *alert.Store
	// AlertsDir is the data folder whose alert store GET /api/v1/alerts
	// reads when the server has no embedded store (ClickHouse: detect
	// --follow --store URL --data DIR keeps alerts there; alertsdir.go).
	AlertsDir string
	// Dispatchers deliver Alerts to the outputs; /metrics reads their
	// counters at each scrape.
	Dispatchers []*alert.Dispatcher
	// Detection, when set, gives the live detector's counters for
	// /metrics.
	Detection func() detector.Stats
	// Syslog configures the syslog listeners (none when Listen is empty);
	// they store into the same sink as the webhook.
	Syslog ingest.SyslogConfig
	// Forwarders send events to the --forward destinations; /metrics
	// reads their counters at each scrape.
	Forwarders []*forward.Forwarder
	// Collector is set when New is given no embedded store: events go
	// to Ingest (a ClickHouse collector) and the read API answers from
	// Store, or 404 without it (collector.go).
	Collector *CollectorMode
	// Store is what the read API (events, stats, investigations, policy
	// simulation) and the UI's data answer from when New is given no
	// embedded store: ClickHouse. Its owner closes it after Run.
	Store store.Reader
}

// Server serves HTTP until its context ends.
type Server struct {
	cfg     Config
	db      *local.DB
	log     *slog.Logger
	handler http.Handler
	reg     *metrics.Registry
	// stopping is closed when shutdown begins: follow streams end at
	// once, saying so, instead of holding the shutdown for its timeout.
	stopping chan struct{}
	stopOnce sync.Once
	syslog   *ingest.Syslog // nil without --syslog-listen
	tokens   []Token        // Config.Tokens and Config.Access.Tokens
	routes   []route        // every registered route, which TestRolesTable walks
}

// New builds a server over an open store, or with a nil db and
// cfg.Collector over a ClickHouse collector.
func New(cfg Config, db *local.DB, log *slog.Logger) (*Server, error) {
	if err := checkExposure(cfg); err != nil {
		return nil, err
	}
	if err := cfg.Webhook.Check(); err != nil {
		return nil, err
	}
	if err := checkAccess(cfg); err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, db: db, log: log, reg: metrics.NewRegistry(), stopping: make(chan struct{})}
	for i, t := range cfg.Tokens {
		s.tokens = append(s.tokens, Token{Value: t, Name: fmt.Sprintf("token %d", i+1)})
	}
	s.tokens = append(s.tokens, cfg.Access.Tokens...)
	if db == nil && (cfg.Collector == nil || cfg.Ingest == nil) {
		return nil, errors.New("BUG: server without a store or a collector")
	}
	m := newServeMetrics(s.reg, db)
	if cfg.Collector != nil {
		s.reg.Register(cfg.Collector.Metrics...)
	}
	if cfg.Alerts != nil || len(cfg.Dispatchers) > 0 {
		s.reg.Register(newAlertCollector(cfg.Alerts, cfg.Dispatchers))
	}
	if cfg.Detection != nil {
		registerDetection(s.reg, cfg.Detection)
	}
	if len(cfg.Forwarders) > 0 {
		s.reg.Register(newForwardCollector(cfg.Forwarders))
	}
	cfg.Webhook.Observe = m.observe
	cfg.Syslog.Authorize = s.syslogAuthorizer()
	s.cfg = cfg
	// Every ingest path (webhook, syslog) stores through this one sink:
	// the store, or the ingest pipeline in front of it (redaction).
	var sink pipeline.Sink = db
	if cfg.Ingest != nil {
		sink = cfg.Ingest
	}
	if cfg.Redacted != nil {
		s.reg.Register(metrics.NewCounterFunc("kubetrail_redacted_events_total",
			"Events whose secret values were replaced by markers before they were stored.", func() float64 { return float64(cfg.Redacted()) }))
	}
	if cfg.PolicyEvents != nil {
		for res := range cfg.PolicyEvents() {
			s.reg.Register(metrics.NewCounterFunc("kubetrail_policy_events_total",
				"Events by what the ingest policy (serve --policy) did with them.",
				func() float64 { return float64(cfg.PolicyEvents()[res]) }, metrics.Label{Name: "result", Value: res}))
		}
	}
	var err error
	if s.syslog, err = newSyslog(cfg, sink, s.reg, m.rejected); err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	s.handle(mux, "/ingest/webhook", permIngest, ingest.NewWebhook(sink, cfg.Webhook))
	s.handle(mux, "GET /api/v1/events", permRead, s.reads(s.events))
	s.handle(mux, "GET /api/v1/stats", permRead, s.reads(s.stats))
	s.handle(mux, "GET /api/v1/investigate", permRead, s.reads(s.investigations))
	s.handle(mux, "GET /api/v1/investigate/{name}", permRead, s.reads(s.runInvestigation))
	s.handle(mux, "GET /api/v1/alerts", permRead, http.HandlerFunc(s.alerts))
	s.handle(mux, "POST /api/v1/policy/check", permRead, http.HandlerFunc(s.policyCheck))
	s.handle(mux, "POST /api/v1/policy/explain", permRead, http.HandlerFunc(s.policyExplain))
	s.handle(mux, "POST /api/v1/policy/simulate", permRead, s.reads(s.policySimulate))
	s.handle(mux, "GET /healthz", permHealth, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok\n"))
	}))
	s.handle(mux, "GET /readyz", permHealth, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := s.ready(); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok\n"))
	}))
	s.handle(mux, "GET /metrics", permHealth, metrics.Handler(s.reg))
	s.mountUI(mux) // the web UI (ui.go): static pages; their data comes from the API above
	s.handler = mux
	return s, nil
}

// Handler returns the server's root handler, for tests.
func (s *Server) Handler() http.Handler { return s.handler }

// checkExposure refuses to serve unauthenticated plain HTTP beyond this
// machine: audit events are among a cluster's most sensitive data, and a
// webhook anyone can post to is a way to forge them.
func checkExposure(cfg Config) error {
	host, _, err := net.SplitHostPort(cfg.Listen)
	if err != nil {
		return fmt.Errorf("--listen %q: %w", cfg.Listen, err)
	}
	if (cfg.TLSCert == "") != (cfg.TLSKey == "") {
		return errors.New("--tls-cert and --tls-key go together")
	}
	if cfg.ClientCA != "" && cfg.TLSCert == "" {
		return errors.New("--client-ca needs --tls-cert and --tls-key: client certificates need TLS")
	}
	if isLoopback(host) || cfg.Insecure {
		return nil
	}
	authn := len(cfg.Tokens) > 0 || len(cfg.Access.Tokens) > 0 || cfg.ClientCA != ""
	if cfg.TLSCert == "" || !authn {
		return fmt.Errorf("refusing to listen on %s without TLS and authentication: audit events are sensitive and anyone could forge them; "+
			"give --tls-cert/--tls-key and --token-file or --client-ca, listen on 127.0.0.1, or pass --insecure if a proxy in front does this", cfg.Listen)
	}
	return nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Run listens and serves until ctx ends, then stops taking new requests and
// waits for those in flight: a batch being made durable is answered.
func (s *Server) Run(ctx context.Context, ready func(addr string)) error {
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       2 * time.Minute, // bounds request bodies; answers (a follow stream) have no write timeout
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	if s.cfg.TLSCert != "" {
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if s.cfg.ClientCA != "" {
			pem, err := os.ReadFile(s.cfg.ClientCA)
			if err != nil {
				return fmt.Errorf("--client-ca: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return fmt.Errorf("--client-ca %s: no PEM certificate in it", s.cfg.ClientCA)
			}
			tc.ClientCAs = pool
			tc.ClientAuth = tls.VerifyClientCertIfGiven
		}
		cert, err := tls.LoadX509KeyPair(s.cfg.TLSCert, s.cfg.TLSKey)
		if err != nil {
			return fmt.Errorf("--tls-cert/--tls-key: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
		srv.TLSConfig = tc
		ln = tls.NewListener(ln, tc)
	}
	syslogDone, err := s.runSyslog(ctx)
	if err != nil {
		ln.Close()
		return err
	}
	defer syslogDone()
	if ready != nil {
		ready(ln.Addr().String())
	}
	srv.RegisterOnShutdown(func() { s.stopOnce.Do(func() { close(s.stopping) }) })
	// The access log is synced on a timer, and once more when every
	// request has been answered (and logged).
	alCtx, stopAL := context.WithCancel(context.Background())
	alDone := make(chan struct{})
	go func() { s.cfg.AccessLog.Run(alCtx); close(alDone) }()
	defer func() { stopAL(); <-alDone }()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

type serveMetrics struct {
	requests *metrics.Vec
	bytes    *metrics.Counter
	rejected *metrics.Counter
}

func newServeMetrics(reg *metrics.Registry, db *local.DB) *serveMetrics {
	m := &serveMetrics{
		requests: metrics.NewCounterVec("kubetrail_webhook_requests_total", "Webhook requests by HTTP status code.", "code"),
		bytes:    metrics.NewCounter("kubetrail_webhook_received_bytes_total", "Bytes of webhook request bodies received."),
		rejected: metrics.NewCounter("kubetrail_ingest_rejected_total", "Events or lines rejected as unusable."),
	}
	reg.Register(m.requests, m.bytes, m.rejected, metrics.GoCollector(), metrics.ProcessCollector())
	if db == nil {
		return m
	}
	st := db.Stats()
	counter := func(name, help string, f func() int64) metrics.Collector {
		return metrics.NewCounterFunc(name, help, func() float64 { return float64(f()) })
	}
	syncs := metrics.NewHistogram("kubetrail_wal_fsync_seconds", "Duration of WAL group-commit syncs.", metrics.ExponentialBuckets(0.0001, 2, 16))
	db.SetObserveSync(func(d time.Duration) { syncs.Observe(d.Seconds()) })
	reg.Register(syncs,
		counter("kubetrail_events_stored_total", "Events stored.", st.Stored.Load),
		counter("kubetrail_events_duplicate_total", "Events dropped because they were already stored.", st.Duplicates.Load),
		counter("kubetrail_batches_total", "Batches made durable.", st.Batches.Load),
		counter("kubetrail_batches_overloaded_total", "Batches refused because too many were in flight.", st.Overloaded.Load),
		counter("kubetrail_batches_failed_total", "Batches that could not be made durable.", st.Failed.Load),
		counter("kubetrail_wal_syncs_total", "WAL group commits.", st.Syncs.Load),
		counter("kubetrail_wal_segments_sealed_total", "WAL segments sealed into segments.", st.Sealed.Load),
		counter("kubetrail_quarantined_total", "Damaged stretches of files this process kept aside in the quarantine folder.", st.Quarantined.Load),
		metrics.NewGaugeFunc("kubetrail_quarantine_files", "Files in the quarantine folder: damaged data left out of every answer until an operator removes them.",
			func() float64 { return float64(len(db.Quarantined())) }),
	)
	return m
}

func (m *serveMetrics) observe(o ingest.WebhookOutcome) {
	m.requests.Add(1, strconv.Itoa(o.Code))
	m.bytes.Add(float64(o.Bytes))
	m.rejected.Add(float64(o.Rejected))
}

// registerDetection exports the live detector's counters, read at each
// scrape. Alerts per rule are counted from the alert store
// (kubetrail_alerts_stored_total).
func registerDetection(reg *metrics.Registry, stats func() detector.Stats) {
	counter := func(name, help string, f func(detector.Stats) int64) metrics.Collector {
		return metrics.NewCounterFunc(name, help, func() float64 { return float64(f(stats())) })
	}
	reg.Register(
		counter("kubetrail_detect_events_total", "Stored events the rules evaluated (compare with kubetrail_events_stored_total for the backlog).",
			func(s detector.Stats) int64 { return s.Events }),
		counter("kubetrail_detect_replayed_events_total", "Events evaluated again at start, without alerting, to rebuild threshold and sequence windows.",
			func(s detector.Stats) int64 { return s.Replayed }),
		counter("kubetrail_detect_suppressed_alerts_total", "Alerts raised again after a crash for events evaluated before it, found already stored and not stored twice.",
			func(s detector.Stats) int64 { return s.Suppressed }),
		counter("kubetrail_detect_catchups_total", "Reads of the store from the detection cursor: at start, and when the live stream fell behind or had a gap.",
			func(s detector.Stats) int64 { return s.CatchUps }),
		counter("kubetrail_detect_append_failures_total", "Alert store appends that failed and were retried (the cursor waits).",
			func(s detector.Stats) int64 { return s.Failures }),
		metrics.NewGaugeFunc("kubetrail_detect_last_received_timestamp_seconds",
			"When the newest evaluated event was received (unix seconds); 0 before any.",
			func() float64 { return float64(stats().LastReceived) / 1e6 }),
	)
}
