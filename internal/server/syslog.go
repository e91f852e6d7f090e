package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"

	"github.com/kubetrail/kubetrail/internal/ingest"
	"github.com/kubetrail/kubetrail/internal/metrics"
	"github.com/kubetrail/kubetrail/internal/pipeline"
)

// newSyslog builds the syslog listeners of cfg.Syslog, storing into sink
// (the webhook's), and registers their metrics; nil when there are none.
func newSyslog(cfg Config, sink pipeline.Sink, reg *metrics.Registry, rejected *metrics.Counter) (*ingest.Syslog, error) {
	sc := cfg.Syslog
	if len(sc.Listen) == 0 {
		return nil, nil
	}
	if err := checkSyslogExposure(cfg); err != nil {
		return nil, err
	}
	if cfg.TLSCert != "" {
		tc, err := syslogTLS(cfg)
		if err != nil {
			return nil, err
		}
		sc.TLS = tc
	}
	msgs := metrics.NewCounterVec("kubetrail_syslog_messages_total",
		"Syslog messages by transport and result: stored, duplicate (events); invalid (not syslog, or no usable audit event); skipped (a frame over --syslog-max-message-bytes, or bytes that are no frame); refused (by the store for good); forbidden (TLS: the sender's certificate may not write the cluster, or may not send); unstored (read but not stored before shutdown); dropped (UDP queue full).",
		"transport", "result")
	conns := metrics.NewGaugeVec("kubetrail_syslog_connections", "Open syslog connections by transport.", "transport")
	reg.Register(msgs, conns)
	sc.Count = func(transport, result string, n int) {
		if n == 0 {
			return
		}
		msgs.Add(float64(n), transport, result)
		if result == ingest.SyslogInvalid {
			rejected.Add(float64(n))
		}
	}
	sc.Connections = func(transport string, d int) { conns.Add(float64(d), transport) }
	return ingest.NewSyslog(sink, sc)
}

// checkSyslogExposure applies the HTTP listener's rule to syslog: beyond
// loopback, a listener must authenticate its senders (TLS with client
// certificates signed by --client-ca), or --insecure must say that
// something else does. Plain TCP and UDP cannot authenticate anyone.
func checkSyslogExposure(cfg Config) error {
	for _, l := range cfg.Syslog.Listen {
		tr, addr, err := ingest.ParseSyslogListen(l)
		if err != nil {
			return err
		}
		if tr == "tls" && cfg.TLSCert == "" {
			return fmt.Errorf("--syslog-listen %s needs --tls-cert and --tls-key", l)
		}
		host, _, _ := net.SplitHostPort(addr)
		if isLoopback(host) || cfg.Insecure {
			continue
		}
		if tr != "tls" {
			return fmt.Errorf("refusing to take syslog on %s without TLS beyond loopback: anyone could forge audit events; "+
				"use tls:// with --client-ca, listen on 127.0.0.1, or pass --insecure if the network is trusted", l)
		}
		if cfg.ClientCA == "" {
			return fmt.Errorf("refusing to take syslog on %s without client certificates: anyone could forge audit events; "+
				"give --client-ca (senders then need a certificate it signed), or pass --insecure", l)
		}
	}
	return nil
}

// syslogTLS is the TLS configuration of tls:// syslog listeners: serve's
// certificate, and, with --client-ca, a client certificate it signed is
// required (syslog has no other way to authenticate a sender).
func syslogTLS(cfg Config) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
	if err != nil {
		return nil, fmt.Errorf("--tls-cert/--tls-key: %w", err)
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	if cfg.ClientCA != "" {
		pem, err := os.ReadFile(cfg.ClientCA)
		if err != nil {
			return nil, fmt.Errorf("--client-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, errors.New("--client-ca " + cfg.ClientCA + ": no PEM certificate in it")
		}
		tc.ClientCAs, tc.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return tc, nil
}

// runSyslog binds the syslog listeners and serves them until ctx ends or
// the returned stop is called; stop returns once every connection has
// stored what it read, so the store may close after it.
func (s *Server) runSyslog(ctx context.Context) (stop func(), err error) {
	if s.syslog == nil {
		return func() {}, nil
	}
	if err := s.syslog.Listen(); err != nil {
		return nil, err
	}
	for _, a := range s.syslog.Addrs() {
		s.log.Info("kubetrail taking syslog", "addr", a)
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		s.syslog.Run(ctx)
		close(done)
	}()
	return func() { cancel(); <-done }, nil
}

// SyslogAddrs returns the bound syslog listeners as URLs once Run has
// called its ready function, for tests that listen on port 0.
func (s *Server) SyslogAddrs() []string {
	if s.syslog == nil {
		return nil
	}
	return s.syslog.Addrs()
}
