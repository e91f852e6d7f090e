// Package output holds the alert outputs, one per URL scheme: file://,
// webhook+http(s)://, slack+https://, alertmanager+http(s)://,
// syslog+tcp:// and syslog+tls:// (docs/detection.md, "Alerts: storage
// and outputs"). Register adds them to an alert.Registry.
package output

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kubetrail/kubetrail/internal/alert"
	"github.com/kubetrail/kubetrail/internal/rules"
	"github.com/kubetrail/kubetrail/internal/syslog"
	"github.com/kubetrail/kubetrail/internal/vfs"
)

// Env is what outputs share with the process that runs them.
type Env struct {
	// FS is where file outputs write; nil means the real file system.
	FS vfs.FS
	// HTTP is the client of the HTTP outputs; nil means one with a 30 s
	// timeout.
	HTTP *http.Client
	// TLS is the base TLS configuration of syslog+tls (its RootCAs); nil
	// means the system's roots.
	TLS *tls.Config
	// Hostname is the syslog HOSTNAME; "" means os.Hostname().
	Hostname string
	// GeneratorURL is where an Alertmanager alert links to (kubetrail's
	// API or UI); the alert's seq is added as ?seq=N. "" leaves it out.
	GeneratorURL string
}

// Register adds every output scheme of this package to r.
func Register(r *alert.Registry, env Env) {
	if env.FS == nil {
		env.FS = vfs.OS
	}
	if env.HTTP == nil {
		env.HTTP = &http.Client{Timeout: 30 * time.Second}
	}
	if env.Hostname == "" {
		env.Hostname, _ = os.Hostname()
	}
	r.Register("file", func(t *alert.Target) (alert.Output, error) { return newFile(t, env) })
	for _, s := range []string{"webhook+http", "webhook+https"} {
		r.Register(s, func(t *alert.Target) (alert.Output, error) { return newHTTP(t, env, webhookBody) })
	}
	r.Register("slack+https", func(t *alert.Target) (alert.Output, error) { return newHTTP(t, env, slackBody) })
	for _, s := range []string{"alertmanager+http", "alertmanager+https"} {
		r.Register(s, func(t *alert.Target) (alert.Output, error) { return newAlertmanager(t, env) })
	}
	for _, s := range []string{"syslog+tcp", "syslog+tls"} {
		r.Register(s, func(t *alert.Target) (alert.Output, error) { return newSyslog(t, env) })
	}
}

// NewRegistry returns a registry with every scheme of this package.
func NewRegistry(env Env) *alert.Registry {
	r := alert.NewRegistry()
	Register(r, env)
	return r
}

// file appends the jsonl contract to a file, synced before Send returns.
type file struct {
	fs   vfs.FS
	path string
	mu   sync.Mutex
	f    vfs.File
	buf  []byte
	// failedAt is where the last failed Send began writing (-1: none).
	// The dispatcher sends that batch again, so what the failure left of
	// it (whole lines before a short write, the whole batch when the
	// fsync failed) is cut first, and each alert is written once.
	failedAt int64
}

func newFile(t *alert.Target, env Env) (alert.Output, error) {
	if t.URL.Host != "" && t.URL.Host != "localhost" {
		return nil, fmt.Errorf("file URL names host %q: want file:///absolute/path", t.URL.Host)
	}
	if !filepath.IsAbs(t.URL.Path) || strings.HasSuffix(t.URL.Path, "/") {
		return nil, fmt.Errorf("file URL path %q: want an absolute file path, such as file:///var/log/kubetrail/alerts.jsonl", t.URL.Path)
	}
	return &file{fs: env.FS, path: filepath.Clean(t.URL.Path), failedAt: -1}, nil
}

func (o *file) Send(_ context.Context, alerts []alert.Alert) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.f == nil {
		if err := vfs.MkdirAllSynced(o.fs, filepath.Dir(o.path), 0o755); err != nil {
			return fmt.Errorf("create folder of %s: %w", o.path, err)
		}
		_, statErr := o.fs.Stat(o.path)
		f, err := o.fs.OpenFile(o.path, os.O_CREATE|os.O_RDWR|os.O_APPEND, 0o600)
		if err != nil {
			return err
		}
		if statErr != nil {
			// A new file's name must be durable before its lines are.
			if err := o.fs.SyncDir(filepath.Dir(o.path)); err != nil {
				f.Close()
				return fmt.Errorf("sync folder of %s: %w", o.path, err)
			}
		} else if err := cutTornLine(f); err != nil {
			f.Close()
			return fmt.Errorf("cut the torn last line of %s: %w", o.path, err)
		}
		o.f = f
	}
	st, err := o.f.Stat()
	if err != nil {
		o.closeLocked()
		return fmt.Errorf("stat %s: %w", o.path, err)
	}
	start := st.Size()
	if o.failedAt >= 0 && o.failedAt < start {
		if err := truncateSynced(o.f, o.failedAt); err != nil {
			o.closeLocked()
			return fmt.Errorf("cut what a failed write left in %s: %w", o.path, err)
		}
		start = o.failedAt
	}
	o.failedAt = -1
	o.buf = o.buf[:0]
	for i := range alerts {
		var err error
		if o.buf, err = alert.AppendJSONLine(o.buf, &alerts[i]); err != nil {
			return err
		}
	}
	if _, err := o.f.Write(o.buf); err != nil {
		o.failedAt = start
		o.closeLocked()
		return fmt.Errorf("write %s: %w", o.path, err)
	}
	if err := o.f.Sync(); err != nil {
		o.failedAt = start
		o.closeLocked()
		return fmt.Errorf("sync %s: %w", o.path, err)
	}
	return nil
}

// cutTornLine removes a last line that has no newline: what a process
// killed in the middle of a write (or a failed write, or a power loss
// before the sync) leaves. Its batch was never acknowledged and is sent
// again whole, so cutting it loses nothing, and the next line is not
// glued to it.
func cutTornLine(f vfs.File) error {
	st, err := f.Stat()
	if err != nil {
		return err
	}
	end := st.Size()
	if end == 0 {
		return nil
	}
	buf := make([]byte, 4096)
	for keep := end; keep > 0; {
		n := min(int64(len(buf)), keep)
		if _, err := f.ReadAt(buf[:n], keep-n); err != nil && err != io.EOF {
			return err
		}
		i := bytes.LastIndexByte(buf[:n], '\n')
		switch {
		case i == int(n)-1 && keep == end:
			return nil // whole lines only
		case i >= 0:
			end = keep - n + int64(i) + 1
			return truncateSynced(f, end)
		}
		keep -= n
	}
	return truncateSynced(f, 0)
}

func truncateSynced(f vfs.File, size int64) error {
	if err := f.Truncate(size); err != nil {
		return err
	}
	return f.Sync()
}

func (o *file) closeLocked() error {
	if o.f == nil {
		return nil
	}
	err := o.f.Close()
	o.f = nil
	return err
}

func (o *file) Close() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.closeLocked()
}

// httpOut POSTs a JSON body made from each batch.
type httpOut struct {
	client *http.Client
	url    string
	name   string
	body   func([]alert.Alert) ([]byte, error)
}

func newHTTP(t *alert.Target, env Env, body func([]alert.Alert) ([]byte, error)) (*httpOut, error) {
	u := *t.URL
	u.Scheme = u.Scheme[strings.Index(u.Scheme, "+")+1:]
	if u.Host == "" {
		return nil, fmt.Errorf("no host")
	}
	return &httpOut{client: env.HTTP, url: u.String(), name: alert.Redact(t.URL), body: body}, nil
}

func (o *httpOut) Send(ctx context.Context, alerts []alert.Alert) error {
	b, err := o.body(alerts)
	if err != nil {
		return err
	}
	return post(ctx, o.client, o.url, o.name, b)
}

func (o *httpOut) Close() error { return nil }

// post sends a JSON body; only a 2xx answer is success.
func post(ctx context.Context, c *http.Client, u, name string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "kubetrail")
	resp, err := c.Do(req)
	if err != nil {
		// The URL may hold a token: name the output, not the URL.
		if ue, ok := err.(*url.Error); ok {
			err = ue.Err
		}
		return fmt.Errorf("POST %s: %w", name, err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("POST %s: %s: %s", name, resp.Status, strings.TrimSpace(string(msg)))
	}
	return nil
}

// webhookBody is {"alerts": [...]}, each alert in the jsonl contract's
// shape with its seq (and count when grouped).
func webhookBody(alerts []alert.Alert) ([]byte, error) {
	return json.Marshal(struct {
		Alerts []alert.Alert `json:"alerts"`
	}{alerts})
}

// slackEscape escapes what Slack's mrkdwn gives a meaning to, so that a
// user name such as "<!channel>" in an audit event pings nobody.
var slackEscape = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")

// slackBody is an incoming-webhook payload: one message, one line per
// notification.
func slackBody(alerts []alert.Alert) ([]byte, error) {
	var b strings.Builder
	for i := range alerts {
		a := &alerts[i]
		if i > 0 {
			b.WriteByte('\n')
		}
		fmt.Fprintf(&b, "*[%s]* %s", strings.ToUpper(a.Severity.String()), slackEscape.Replace(a.Rule))
		if u := who(a); u != "" {
			fmt.Fprintf(&b, " by `%s`", slackEscape.Replace(strings.ReplaceAll(u, "`", "'")))
		}
		fmt.Fprintf(&b, ": %s", slackEscape.Replace(cut(a.Message, 500)))
		if a.Count > 1 {
			fmt.Fprintf(&b, " (%d alerts like it)", a.Count)
		}
	}
	return json.Marshal(map[string]string{"text": b.String()})
}

func who(a *alert.Alert) string {
	if a.ImpersonatedUser != "" {
		return a.User + " as " + a.ImpersonatedUser
	}
	return a.User
}

func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}

// alertmanager POSTs to Alertmanager's v2 API.
type alertmanager struct {
	*httpOut
	generator string
}

func newAlertmanager(t *alert.Target, env Env) (alert.Output, error) {
	h, err := newHTTP(t, env, nil)
	if err != nil {
		return nil, err
	}
	h.url = strings.TrimSuffix(h.url, "/") + "/api/v2/alerts"
	am := &alertmanager{httpOut: h, generator: env.GeneratorURL}
	if g := t.Param("generator_url"); g != "" {
		am.generator = g
	}
	if am.generator != "" {
		if _, err := url.Parse(am.generator); err != nil {
			return nil, fmt.Errorf("generator_url: %w", err)
		}
	}
	h.body = am.body
	return am, nil
}

// amAlert is Alertmanager's postableAlert.
type amAlert struct {
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations"`
	StartsAt     time.Time         `json:"startsAt"`
	GeneratorURL string            `json:"generatorURL,omitempty"`
}

func (am *alertmanager) body(alerts []alert.Alert) ([]byte, error) {
	out := make([]amAlert, len(alerts))
	for i := range alerts {
		a := &alerts[i]
		labels := map[string]string{"alertname": a.Rule, "severity": a.Severity.String(), "source": a.Source}
		for k, v := range map[string]string{"cluster": a.Cluster, "user": a.User, "namespace": a.Namespace, "impersonated_user": a.ImpersonatedUser} {
			if v != "" {
				labels[k] = v
			}
		}
		summary := fmt.Sprintf("%s (%s)", a.Rule, a.Severity)
		if u := who(a); u != "" {
			summary += " by " + u
		}
		desc := a.Message
		if a.Count > 1 {
			desc += fmt.Sprintf("\n(%d alerts like it since the last notification; this is the last)", a.Count)
		}
		ann := map[string]string{"summary": summary, "description": desc, "auditIDs": strings.Join(a.AuditIDs, ","),
			"seq": strconv.FormatUint(a.Seq, 10)}
		if a.Count > 1 {
			ann["count"] = strconv.Itoa(a.Count)
		}
		out[i] = amAlert{Labels: labels, Annotations: ann, StartsAt: a.Time.UTC()}
		if am.generator != "" {
			sep := "?"
			if strings.Contains(am.generator, "?") {
				sep = "&"
			}
			out[i].GeneratorURL = am.generator + sep + "seq=" + strconv.FormatUint(a.Seq, 10)
		}
	}
	return json.Marshal(out)
}

// syslogOut sends one RFC 5424 message per alert.
type syslogOut struct {
	client   *syslog.Client
	facility int
	host     string
	app      string
	pid      string
	msgs     [][]byte
}

// SDID is the structured-data ID of alerts: 32473 is the private
// enterprise number RFC 5612 sets aside for documentation and examples.
const SDID = "alert@32473"

func newSyslog(t *alert.Target, env Env) (alert.Output, error) {
	client, err := SyslogClient(t, env.TLS)
	if err != nil {
		return nil, err
	}
	o := &syslogOut{client: client, facility: 10, host: env.Hostname, app: "kubetrail", pid: strconv.Itoa(os.Getpid())}
	if f := t.Param("facility"); f != "" {
		n, ok := syslog.ParseFacility(f)
		if !ok {
			return nil, fmt.Errorf("facility=%q: want a name such as authpriv or local0, or 0 to 23", f)
		}
		o.facility = n
	}
	if a := t.Param("app_name"); a != "" {
		o.app = a
	}
	return o, nil
}

// SyslogClient makes the syslog client of a syslog+tcp or syslog+tls
// target, taking its ca setting: alert outputs and event forwarding
// (internal/forward) send through the same client. base is the TLS
// configuration to start from (its RootCAs); nil means the system's.
func SyslogClient(t *alert.Target, base *tls.Config) (*syslog.Client, error) {
	if t.URL.Port() == "" {
		return nil, fmt.Errorf("no port: want %s://host:514", t.URL.Scheme)
	}
	c := &syslog.Client{Addr: t.URL.Host}
	if t.URL.Scheme != "syslog+tls" {
		return c, nil
	}
	cfg, err := TLSConfig(t, base)
	if err != nil {
		return nil, err
	}
	c.TLS = cfg
	return c, nil
}

// TLSConfig is the client TLS configuration of a target: base (or the
// system's roots) with the CA bundle of the ca setting, if any, and the
// URL's host as the server name.
func TLSConfig(t *alert.Target, base *tls.Config) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if base != nil {
		cfg = base.Clone()
	}
	if ca := t.Param("ca"); ca != "" {
		pem, err := os.ReadFile(ca)
		if err != nil {
			return nil, fmt.Errorf("ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca %s: no PEM certificate", ca)
		}
		cfg.RootCAs = pool
	}
	if cfg.ServerName == "" {
		cfg.ServerName = t.URL.Hostname()
	}
	return cfg, nil
}

// syslogSeverity maps alert severities onto syslog's.
var syslogSeverity = [...]int{rules.Info: syslog.Info, rules.Low: syslog.Notice, rules.Medium: syslog.Warning,
	rules.High: syslog.Err, rules.Critical: syslog.Crit}

func (o *syslogOut) Send(ctx context.Context, alerts []alert.Alert) error {
	o.msgs = o.msgs[:0]
	for i := range alerts {
		o.msgs = append(o.msgs, syslog.Append(nil, Message(&alerts[i], o.facility, o.host, o.app, o.pid)))
	}
	return o.client.Send(ctx, o.msgs...)
}

// Message is the syslog message of an alert: MSGID "alert", the alert's
// fields as structured data, and "[SEVERITY] rule: message" as MSG.
func Message(a *alert.Alert, facility int, host, app, pid string) *syslog.Message {
	p := []syslog.Param{{Name: "rule", Value: a.Rule}, {Name: "severity", Value: a.Severity.String()},
		{Name: "source", Value: a.Source}, {Name: "user", Value: a.User}}
	add := func(name, v string) {
		if v != "" {
			p = append(p, syslog.Param{Name: name, Value: v})
		}
	}
	add("impersonatedUser", a.ImpersonatedUser)
	add("cluster", a.Cluster)
	add("namespace", a.Namespace)
	add("auditIDs", strings.Join(a.AuditIDs, ","))
	add("time", a.Time.UTC().Format(time.RFC3339Nano))
	add("priority", a.Priority)
	add("seq", strconv.FormatUint(a.Seq, 10))
	if a.Count > 1 {
		add("count", strconv.Itoa(a.Count))
	}
	sev := syslog.Info
	if int(a.Severity) >= 0 && int(a.Severity) < len(syslogSeverity) {
		sev = syslogSeverity[a.Severity]
	}
	return &syslog.Message{Facility: facility, Severity: sev, Time: a.Time, Hostname: host, AppName: app, ProcID: pid,
		MsgID: "alert", Data: []syslog.Element{{ID: SDID, Params: p}},
		Msg: fmt.Sprintf("[%s] %s: %s", strings.ToUpper(a.Severity.String()), a.Rule, a.Message)}
}

func (o *syslogOut) Close() error { return o.client.Close() }
