package ingest

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/kubetrail/kubetrail/internal/audit"
	"github.com/kubetrail/kubetrail/internal/pipeline"
)

// RemoteConfig configures a Remote sink.
type RemoteConfig struct {
	// URL is the base URL of a kubetrail server, e.g. https://kubetrail:8443.
	URL string
	// Token is a bearer token, if the server wants one.
	Token string
	// CA is a PEM file to verify the server with; empty means system roots.
	CA string
	// ClientCert and ClientKey authenticate with a certificate (mTLS).
	ClientCert, ClientKey string
	// InsecureSkipVerify disables server certificate checks (tests only).
	InsecureSkipVerify bool
}

// Remote is a pipeline.Sink that sends batches to a kubetrail server's
// webhook endpoint, so one kubetrail per control-plane node can ship to a
// central one. Append returns nil only after the server answered 2xx, which
// it does only once the batch is durable there.
type Remote struct {
	endpoint string
	token    string
	client   *http.Client
}

var _ pipeline.Sink = (*Remote)(nil)

// NewRemote returns a sink posting to cfg.URL.
func NewRemote(cfg RemoteConfig) (*Remote, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("--server %q: want http(s)://HOST:PORT", cfg.URL)
	}
	tr, err := cfg.Transport()
	if err != nil {
		return nil, err
	}
	return &Remote{
		endpoint: u.JoinPath("/ingest/webhook").String(),
		token:    cfg.Token,
		client:   &http.Client{Transport: tr, Timeout: 2 * time.Minute},
	}, nil
}

// Transport returns an HTTP transport that verifies the server with CA
// (system roots when empty) and presents the client certificate if any.
func (cfg RemoteConfig) Transport() (*http.Transport, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: cfg.InsecureSkipVerify}
	if cfg.CA != "" {
		pem, err := os.ReadFile(cfg.CA)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s: no PEM certificate", cfg.CA)
		}
		tc.RootCAs = pool
	}
	if cfg.ClientCert != "" {
		c, err := tls.LoadX509KeyPair(cfg.ClientCert, cfg.ClientKey)
		if err != nil {
			return nil, err
		}
		tc.Certificates = []tls.Certificate{c}
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tc
	return tr, nil
}

// Append sends the batch as JSON lines of stored-form events. A batch the
// server answers 413 (over its --max-body-bytes or its memory budget) or
// 400 is split in halves and sent again, down to single events: otherwise
// one event the server can never take would block tail forever. A single
// event the server still refuses is returned in Result.Rejected, for the
// caller to report, and the rest of the batch goes on. A retry after a half
// was stored is harmless: the server drops what it already has.
func (r *Remote) Append(ctx context.Context, b *pipeline.Batch) (pipeline.Result, error) {
	return r.send(ctx, b.Cluster, b.Records, 0)
}

// errRefused is the server's 413 or 400: these events, as sent, will never
// be stored.
var errRefused = errors.New("refused")

func (r *Remote) send(ctx context.Context, cluster string, recs []audit.Record, first int) (pipeline.Result, error) {
	res, err := r.post(ctx, cluster, recs)
	if !errors.Is(err, errRefused) {
		return res, err
	}
	if len(recs) == 1 {
		return pipeline.Result{Rejected: []pipeline.Rejection{{Index: first, Reason: err.Error()}}}, nil
	}
	half := len(recs) / 2
	a, err := r.send(ctx, cluster, recs[:half], first)
	if err != nil {
		return pipeline.Result{}, err
	}
	b, err := r.send(ctx, cluster, recs[half:], first+half)
	if err != nil {
		return pipeline.Result{}, err
	}
	return pipeline.Result{Stored: a.Stored + b.Stored, Duplicates: a.Duplicates + b.Duplicates, Rejected: append(a.Rejected, b.Rejected...)}, nil
}

func (r *Remote) post(ctx context.Context, cluster string, recs []audit.Record) (pipeline.Result, error) {
	var body bytes.Buffer
	for _, rec := range recs {
		body.Write(rec.Raw)
		body.WriteByte('\n')
	}
	endpoint := r.endpoint + "?cluster=" + url.QueryEscape(cluster)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, &body)
	if err != nil {
		return pipeline.Result{}, err
	}
	req.Header.Set("Content-Type", "application/x-ndjson")
	if r.token != "" {
		req.Header.Set("Authorization", "Bearer "+r.token)
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return pipeline.Result{}, fmt.Errorf("%w: %v", pipeline.ErrUnavailable, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var wr WebhookResponse
	json.Unmarshal(data, &wr)
	switch {
	case resp.StatusCode/100 == 2:
		return pipeline.Result{Stored: wr.Stored, Duplicates: wr.Duplicates}, nil
	case resp.StatusCode == http.StatusTooManyRequests:
		return pipeline.Result{}, pipeline.ErrOverloaded
	case resp.StatusCode == http.StatusRequestEntityTooLarge || resp.StatusCode == http.StatusBadRequest:
		return pipeline.Result{}, fmt.Errorf("%w: server answered %s for %d events: %s", errRefused, resp.Status, len(recs), wr.Error)
	case resp.StatusCode >= 500:
		return pipeline.Result{}, fmt.Errorf("%w: server answered %s: %s", pipeline.ErrUnavailable, resp.Status, wr.Error)
	default:
		return pipeline.Result{}, fmt.Errorf("server answered %s: %s", resp.Status, bytes.TrimSpace(data))
	}
}
