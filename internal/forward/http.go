package forward

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/kubetrail/kubetrail/internal/alert"
	"github.com/kubetrail/kubetrail/internal/alert/output"
)

// Env is what destinations share with the process that runs them.
type Env struct {
	// HTTP is the client of the HTTP destinations without a ca or timeout
	// setting; nil means one with a 30 s timeout.
	HTTP *http.Client
	// TLS is the base TLS configuration (its RootCAs) of syslog+tls and
	// of HTTPS destinations with a ca setting; nil means the system's.
	TLS *tls.Config
	// Hostname is the syslog HOSTNAME and the HEC host; "" means
	// os.Hostname().
	Hostname string
}

func (env Env) withDefaults() Env {
	if env.HTTP == nil {
		env.HTTP = &http.Client{Timeout: 30 * time.Second}
	}
	if env.Hostname == "" {
		env.Hostname, _ = os.Hostname()
	}
	return env
}

func register(r *Registry, env Env) {
	for _, s := range []string{"syslog+tcp", "syslog+tls"} {
		r.Register(s, func(t *alert.Target) (Sender, error) { return newSyslog(t, env) })
	}
	for _, s := range []string{"webhook+http", "webhook+https"} {
		r.Register(s, func(t *alert.Target) (Sender, error) { return newWebhook(t, env) })
	}
	for _, s := range []string{"splunk+http", "splunk+https"} {
		r.Register(s, func(t *alert.Target) (Sender, error) { return newSplunk(t, env) })
	}
	for _, s := range []string{"elasticsearch+http", "elasticsearch+https"} {
		r.Register(s, func(t *alert.Target) (Sender, error) { return newElastic(t, env) })
	}
	for _, s := range []string{"otlp+http", "otlp+https"} {
		r.Register(s, func(t *alert.Target) (Sender, error) { return newOTLP(t, env) })
	}
	for _, s := range []string{"kafka", "kafkas"} {
		r.Register(s, func(t *alert.Target) (Sender, error) { return newKafka(t, env) })
	}
}

// httpDest is the HTTP transport every HTTP destination shares: the URL
// without kubetrail's scheme prefix and without user info, the client
// (with the ca and timeout settings), and the credentials.
type httpDest struct {
	client *http.Client
	base   url.URL
	name   string
	// user and password are the URL's user info, moved out of the URL.
	user, password string
	hasUser        bool
	// token is the content of the token_file setting, "" without one.
	token string
}

func newHTTPDest(t *alert.Target, env Env) (*httpDest, error) {
	u := *t.URL
	u.Scheme = u.Scheme[strings.Index(u.Scheme, "+")+1:]
	if u.Host == "" {
		return nil, errors.New("no host")
	}
	h := &httpDest{client: env.HTTP, name: t.Name()}
	if u.User != nil {
		h.user, h.hasUser = u.User.Username(), true
		h.password, _ = u.User.Password()
		u.User = nil
	}
	h.base = u
	if p := t.Param("token_file"); p != "" {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("token_file: %w", err)
		}
		h.token = strings.TrimSpace(string(b))
		if h.token == "" {
			return nil, fmt.Errorf("token_file %s: empty", p)
		}
	}
	timeout := env.HTTP.Timeout
	if v := t.Param("timeout"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("timeout=%q: want a duration such as 30s", v)
		}
		timeout = d
	}
	caSet := t.Param("ca") != ""
	if caSet && u.Scheme != "https" {
		return nil, errors.New("ca is for https")
	}
	if caSet || timeout != env.HTTP.Timeout {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		if caSet {
			cfg, err := output.TLSConfig(t, env.TLS)
			if err != nil {
				return nil, err
			}
			tr.TLSClientConfig = cfg
		}
		h.client = &http.Client{Timeout: timeout, Transport: tr}
	}
	return h, nil
}

// endpoint is the base URL with path p when the URL has no path of its own.
func (h *httpDest) endpoint(p string) string {
	u := h.base
	if u.Path == "" || u.Path == "/" {
		u.Path = p
	}
	return u.String()
}

// statusError is a non-2xx answer.
type statusError struct {
	name   string
	code   int
	status string
	msg    string
	wait   time.Duration
}

func (e *statusError) Error() string {
	return fmt.Sprintf("POST %s: %s: %s", e.name, e.status, e.msg)
}

// RetryAfter is the answer's Retry-After, 0 without one.
func (e *statusError) RetryAfter() time.Duration { return e.wait }

// post sends body and returns the answer's body (at most 16 MiB); only a
// 2xx is success.
func (h *httpDest) post(ctx context.Context, u, contentType string, header http.Header, body []byte) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("User-Agent", "kubetrail")
	resp, err := h.client.Do(req)
	if err != nil {
		// The URL may hold a token: name the destination, not the URL.
		if ue, ok := err.(*url.Error); ok {
			err = ue.Err
		}
		return nil, fmt.Errorf("POST %s: %w", h.name, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("POST %s: read the answer: %w", h.name, err)
	}
	if resp.StatusCode/100 != 2 {
		msg := strings.TrimSpace(string(b))
		if len(msg) > 512 {
			msg = msg[:512] + "..."
		}
		return nil, &statusError{name: h.name, code: resp.StatusCode, status: resp.Status, msg: msg, wait: retryAfter(resp.Header.Get("Retry-After"))}
	}
	return b, nil
}

// retryAfter reads a Retry-After header: seconds or an HTTP date.
func retryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if n, err := strconv.Atoi(v); err == nil && n >= 0 {
		return time.Duration(n) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0)
	}
	return 0
}

// basicAuth is the Authorization value of the URL's user info.
func (h *httpDest) basicAuth() string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(h.user+":"+h.password))
}

func (h *httpDest) Close() error {
	h.client.CloseIdleConnections()
	return nil
}
