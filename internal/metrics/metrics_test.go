package metrics

import (
	"compress/gzip"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// These tests are differential: client_golang (a test-only dependency
// since docs/adr/0026) is the oracle. The same metrics registered in both
// must scrape to the same bytes and headers.

// scrape GETs /metrics from h with these request headers.
func scrape(t *testing.T, h http.Handler, header ...string) (http.Header, string) {
	t.Helper()
	req := httptest.NewRequest("GET", "/metrics", nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 200 {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	body := io.Reader(rec.Body)
	if rec.Header().Get("Content-Encoding") == "gzip" {
		gz, err := gzip.NewReader(rec.Body)
		if err != nil {
			t.Fatal(err)
		}
		body = gz
	}
	b, err := io.ReadAll(body)
	if err != nil {
		t.Fatal(err)
	}
	return rec.Header(), string(b)
}

// pair builds kubetrail's kinds of metrics in both registries, as serve
// uses them, and updates them alike.
func pair() (*Registry, *prometheus.Registry) {
	ours, theirs := NewRegistry(), prometheus.NewRegistry()

	c := NewCounter("kubetrail_webhook_received_bytes_total", "Bytes of webhook request bodies received.")
	pc := prometheus.NewCounter(prometheus.CounterOpts{Name: "kubetrail_webhook_received_bytes_total", Help: "Bytes of webhook request bodies received."})
	c.Add(1234567)
	pc.Add(1234567)
	c.Add(0.5)
	pc.Add(0.5)

	// A vector: series by label values, label names out of order, values
	// that need escaping; sorted by values.
	help := "Syslog messages by transport and result: \"stored\", a back\\slash,\na new line."
	v := NewCounterVec("kubetrail_syslog_messages_total", help, "transport", "result")
	pv := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kubetrail_syslog_messages_total", Help: help}, []string{"transport", "result"})
	for _, s := range [][2]string{{"tls", "stored"}, {"tcp", "invalid"}, {"tcp", "stored"}, {"udp", `a "quoted" \ value` + "\nline"}, {"tls", "stored"}} {
		v.Add(3, s[0], s[1])
		pv.WithLabelValues(s[0], s[1]).Add(3)
	}
	g := NewGaugeVec("kubetrail_syslog_connections", "Open syslog connections by transport.", "transport")
	pg := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "kubetrail_syslog_connections", Help: "Open syslog connections by transport."}, []string{"transport"})
	for _, d := range []struct {
		tr string
		n  float64
	}{{"tls", 1}, {"tcp", 2}, {"tls", -1}, {"tcp", 1}} {
		g.Add(d.n, d.tr)
		pg.WithLabelValues(d.tr).Add(d.n)
	}
	// A vector never used: no family at all.
	empty := NewCounterVec("kubetrail_webhook_requests_total", "Webhook requests by HTTP status code.", "code")
	pempty := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "kubetrail_webhook_requests_total", Help: "Webhook requests by HTTP status code."}, []string{"code"})

	ours.Register(c, v, g, empty)
	theirs.MustRegister(pc, pv, pg, pempty)

	// Functions, one family given by several with a constant label each.
	for i, res := range []string{"relevelled", "dropped", "kept"} {
		val := float64(10 * (i + 1))
		ours.Register(NewCounterFunc("kubetrail_policy_events_total", "Events by what the ingest policy did with them.", func() float64 { return val }, Label{"result", res}))
		theirs.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "kubetrail_policy_events_total",
			Help: "Events by what the ingest policy did with them.", ConstLabels: prometheus.Labels{"result": res}}, func() float64 { return val }))
	}
	for _, val := range []float64{0, 1.7964632755671659e+09, math.Inf(1), 1e21, -2.5, 123456789} {
		name := "kubetrail_gauge_" + strings.NewReplacer(".", "_", "+", "p", "-", "m").Replace(formatFloat(val))
		ours.Register(NewGaugeFunc(name, "A gauge.", func() float64 { return val }))
		theirs.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: "A gauge."}, func() float64 { return val }))
	}

	// The histogram, with observations on, below and above its bounds.
	h := NewHistogram("kubetrail_wal_fsync_seconds", "Duration of WAL group-commit syncs.", ExponentialBuckets(0.0001, 2, 16))
	ph := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "kubetrail_wal_fsync_seconds", Help: "Duration of WAL group-commit syncs.",
		Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16)})
	for _, o := range []float64{0.00005, 0.0001, 0.00015, 0.0032, 0.01, 0.5, 3, 7, 0.0004} {
		h.Observe(o)
		ph.Observe(o)
	}
	ours.Register(h)
	theirs.MustRegister(ph)

	// A collector giving several families, one series per label value, as
	// the alert and forward collectors do.
	d := prometheus.NewDesc("kubetrail_alert_output_cursor", "The seq of the last stored alert handed to the output.", []string{"output"}, nil)
	ds := prometheus.NewDesc("kubetrail_alerts_stored_total", "Alerts stored, by rule, severity and source.", []string{"rule", "severity", "source"}, nil)
	theirs.MustRegister(constCollector{func(ch chan<- prometheus.Metric) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, 7, "webhook://b")
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, 3, "file:///a")
		ch <- prometheus.MustNewConstMetric(ds, prometheus.CounterValue, 2, "exec", "high", "builtin")
		ch <- prometheus.MustNewConstMetric(ds, prometheus.CounterValue, 5, "delete", "high", "rules.yaml")
	}, []*prometheus.Desc{d, ds}})
	ours.Register(CollectorFunc(func() []Family {
		return []Family{
			{Name: "kubetrail_alert_output_cursor", Help: "The seq of the last stored alert handed to the output.", Type: GaugeType,
				Metrics: []Metric{{Labels: []Label{{"output", "webhook://b"}}, Value: 7}, {Labels: []Label{{"output", "file:///a"}}, Value: 3}}},
			{Name: "kubetrail_alerts_stored_total", Help: "Alerts stored, by rule, severity and source.", Type: CounterType,
				Metrics: []Metric{
					{Labels: []Label{{"rule", "exec"}, {"severity", "high"}, {"source", "builtin"}}, Value: 2},
					{Labels: []Label{{"rule", "delete"}, {"severity", "high"}, {"source", "rules.yaml"}}, Value: 5}}},
		}
	}))
	return ours, theirs
}

type constCollector struct {
	collect func(chan<- prometheus.Metric)
	descs   []*prometheus.Desc
}

func (c constCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}
func (c constCollector) Collect(ch chan<- prometheus.Metric) { c.collect(ch) }

// TestScrapeAsPromhttp: the same metrics give the same body and the same
// Content-Type, Content-Encoding and Vary for the Accept headers scrapers
// send. (Mutations tried: series left in registration order; a histogram
// without its +Inf bucket; 'f' in place of 'g' formatting; the escaping
// parameter always "underscores": each fails here.)
func TestScrapeAsPromhttp(t *testing.T) {
	ours, theirs := pair()
	oh, ph := Handler(ours), promhttp.HandlerFor(theirs, promhttp.HandlerOpts{})
	prometheus3 := "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
	prometheus2 := "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
	for _, hdr := range [][]string{
		nil,
		{"Accept", prometheus3},
		{"Accept", prometheus2, "Accept-Encoding", "gzip"},
		{"Accept", "text/plain;version=0.0.4;escaping=values"},
		{"Accept", "text/plain"},
		{"Accept", "*/*", "Accept-Encoding", "gzip, deflate, br"},
		{"Accept-Encoding", "gzip;q=0"},
		{"Accept-Encoding", "identity"},
	} {
		gotH, got := scrape(t, oh, hdr...)
		wantH, want := scrape(t, ph, hdr...)
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("headers %q: body differs from promhttp's (-promhttp +ours):\n%s", hdr, diff)
		}
		for _, k := range []string{"Content-Type", "Content-Encoding", "Vary"} {
			if !cmp.Equal(wantH.Values(k), gotH.Values(k)) {
				t.Errorf("headers %q: %s %q, promhttp's %q", hdr, k, gotH.Values(k), wantH.Values(k))
			}
		}
	}
}

// sampleValue is a sample line's value, which differs from one read of
// the runtime or /proc to the next.
var sampleValue = regexp.MustCompile(`(?m) [^ ]+$`)

// TestRuntimeFamiliesAsClientGolang: the go_* and process_* families have
// client_golang's names, help, types and labels (their values are the
// process's own, read at each scrape). (Mutation tried: leaving out
// process_network_*: fails here.)
func TestRuntimeFamiliesAsClientGolang(t *testing.T) {
	ours, theirs := NewRegistry(), prometheus.NewRegistry()
	ours.Register(GoCollector(), ProcessCollector())
	theirs.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	_, got := scrape(t, Handler(ours))
	_, want := scrape(t, promhttp.HandlerFor(theirs, promhttp.HandlerOpts{}))
	if diff := cmp.Diff(sampleValue.ReplaceAllString(want, " V"), sampleValue.ReplaceAllString(got, " V")); diff != "" {
		t.Errorf("runtime families differ from client_golang's (-client_golang +ours):\n%s", diff)
	}
	for _, name := range []string{"process_resident_memory_bytes", "process_open_fds", "process_start_time_seconds", "go_goroutines", "go_sched_gomaxprocs_threads"} {
		m := regexp.MustCompile(`(?m)^` + name + ` (.+)$`).FindStringSubmatch(got)
		if m == nil || m[1] == "0" {
			t.Errorf("%s is %q, want a value read from the process", name, m)
		}
	}
}
