package server

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/kubetrail/kubetrail/internal/alert"
	"github.com/kubetrail/kubetrail/internal/metrics"
	"github.com/kubetrail/kubetrail/internal/rules"
	"github.com/kubetrail/kubetrail/internal/timespec"
)

// The alerts API.
//
//	GET /api/v1/alerts?since=S&until=U&rule=R&source=SRC&severity=MIN&after=SEQ&limit=N&follow=1
//	    JSON lines: each stored alert in the jsonl contract's shape with
//	    seq and stored (alert.AppendStoredJSONLine), oldest first.
//	    since and until bound the alert's time (its last event's); rule
//	    and source are repeatable; severity is the least severe kept.
//	    Without after, the newest limit matches (default 1000); with
//	    after, the first limit matches numbered above it: page on with the
//	    last seq received until a page is short. follow=1 goes on with
//	    alerts as they are stored. 404 when serve runs no detection.

// MaxAlertLimit is the most alerts one answer of /api/v1/alerts holds.
const MaxAlertLimit = 100000

// errDetectionOff answers /api/v1/alerts on a server without an alert store.
var errDetectionOff = errors.New("detection is off on this server (serve --detect=false): it stores no alert")

// ParseAlertQuery reads the alerts API's parameters (all but follow).
// `kubetrail alerts --data` reads its flags with it too, so that a flag
// means the same with --data and with --server.
func ParseAlertQuery(v url.Values, now time.Time) (alert.Query, error) {
	q := alert.Query{Limit: alert.DefaultListLimit, Rules: v["rule"], Sources: v["source"], Namespace: v.Get("namespace")}
	lo, hi, err := timespec.Range("since", v.Get("since"), "until", v.Get("until"), now)
	if err != nil {
		return q, err
	}
	if lo != 0 {
		q.Since = time.UnixMicro(lo)
	}
	if hi != 0 {
		q.Until = time.UnixMicro(hi) // exclusive: Range makes the given until inclusive
	}
	for _, src := range q.Sources {
		if !slices.Contains([]string{rules.SourceKubetrail, rules.SourceSigma, rules.SourceFalco}, src) {
			return q, fmt.Errorf("source %q: want kubetrail, sigma or falco", src)
		}
	}
	if s := v.Get("severity"); s != "" {
		sev, err := rules.ParseSeverity(s)
		if err != nil {
			return q, err
		}
		q.MinSeverity = sev
	}
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxAlertLimit {
			return q, fmt.Errorf("limit %q: want a number from 1 to %d", s, MaxAlertLimit)
		}
		q.Limit = n
	}
	if v.Has("after") {
		n, err := strconv.ParseUint(v.Get("after"), 10, 64)
		if err != nil {
			return q, fmt.Errorf("after %q: want an alert's seq (0 for the oldest)", v.Get("after"))
		}
		q.After, q.Oldest = n, true
	}
	return q, nil
}

// alertRequest is an alerts request's query, narrowed to the caller's
// scope, and whether it asks to follow.
func alertRequest(r *http.Request) (alert.Query, bool, error) {
	p := r.URL.Query()
	q, err := ParseAlertQuery(p, time.Now())
	if err != nil {
		return q, false, err
	}
	sc := scopeOf(r)
	q.Clusters, q.Namespaces = sc.Clusters, sc.Namespaces
	return q, p.Get("follow") == "1" || p.Get("follow") == "true", nil
}

func (s *Server) alerts(w http.ResponseWriter, r *http.Request) {
	store := s.cfg.Alerts
	if store == nil && s.db == nil {
		s.alertsFromDir(w, r, s.cfg.AlertsDir)
		return
	}
	if store == nil {
		writeError(w, http.StatusNotFound, errDetectionOff)
		return
	}
	q, follow, err := alertRequest(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	// Before listing, so that an alert stored meanwhile is either listed
	// or read by the follow loop below.
	last, changed := store.Last()
	list, err := store.List(q)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	for _, d := range store.Damage() {
		w.Header().Add(DamageHeader, url.QueryEscape(d.String()))
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.WriteHeader(http.StatusOK)
	var buf []byte
	for i := range list {
		if buf, err = alert.AppendStoredJSONLine(buf[:0], &list[i]); err != nil {
			return
		}
		if _, err := w.Write(buf); err != nil {
			return
		}
		addResults(r, 1)
	}
	if !follow {
		return
	}
	// Listed alerts above last were stored during List: the loop must not
	// send them twice. A page cut at its limit goes on after its last
	// alert instead (nothing after it was sent).
	cursor, sent := last, map[uint64]bool{}
	if q.Oldest && len(list) == q.Limit {
		cursor = list[len(list)-1].Seq
	} else {
		for _, a := range list {
			if a.Seq > last {
				sent[a.Seq] = true
			}
		}
	}
	flusher, _ := w.(http.Flusher)
	flush := func() {
		if flusher != nil {
			flusher.Flush()
		}
	}
	flush()
	for {
		for {
			batch, err := store.Read(cursor, alert.DefaultListLimit)
			if errors.Is(err, alert.ErrClosed) {
				w.Write([]byte(`{"error":"the server is shutting down; the stream ends here"}` + "\n"))
				flush()
				return
			}
			if err != nil {
				fmt.Fprintf(w, "{\"error\":%q}\n", "reading alerts: "+err.Error())
				flush()
				return
			}
			if len(batch) == 0 {
				break
			}
			for i := range batch {
				if !q.Match(&batch[i]) || sent[batch[i].Seq] {
					continue
				}
				if buf, err = alert.AppendStoredJSONLine(buf[:0], &batch[i]); err != nil {
					return
				}
				if _, err := w.Write(buf); err != nil {
					return
				}
				addResults(r, 1)
			}
			cursor = batch[len(batch)-1].Seq
		}
		flush()
		select {
		case <-r.Context().Done():
			return
		case <-s.stopping:
			w.Write([]byte(`{"error":"the server is shutting down; the stream ends here"}` + "\n"))
			flush()
			return
		case <-changed:
			_, changed = store.Last()
		}
	}
}

// alertCollector reads the alert store's and the dispatchers' counters at
// scrape time, so /metrics never disagrees with them.
type alertCollector struct {
	store *alert.Store // nil: no per-rule counters
	disps []*alert.Dispatcher
	names []string // label values, one per dispatcher, unique
}

func newAlertCollector(store *alert.Store, disps []*alert.Dispatcher) *alertCollector {
	return &alertCollector{store: store, disps: disps, names: outputNames(disps)}
}

// outputNames are the dispatchers' printable names; two outputs of one
// host get #2, #3... so that each has its own series.
func outputNames(disps []*alert.Dispatcher) []string {
	seen := map[string]int{}
	var names []string
	for _, d := range disps {
		n := d.Name()
		seen[n]++
		if k := seen[n]; k > 1 {
			n += "#" + strconv.Itoa(k)
		}
		names = append(names, n)
	}
	return names
}

// Collect gives the store's families (with a store) and the outputs'
// (with outputs), a series per rule or per output.
func (c *alertCollector) Collect() []metrics.Family {
	var fams []metrics.Family
	if c.store != nil {
		stored := metrics.Family{Name: "kubetrail_alerts_stored_total", Help: "Alerts this process stored, by rule, severity and source.", Type: metrics.CounterType}
		for _, n := range c.store.Counts() {
			stored.Metrics = append(stored.Metrics, metrics.Metric{Value: float64(n.Count),
				Labels: []metrics.Label{{Name: "rule", Value: n.Rule}, {Name: "severity", Value: n.Severity.String()}, {Name: "source", Value: n.Source}}})
		}
		last, _ := c.store.Last()
		fams = append(fams, stored, metrics.Family{Name: "kubetrail_alerts_last_seq",
			Help: "The number (seq) of the newest stored alert; an output's backlog is this minus its cursor.", Type: metrics.GaugeType,
			Metrics: []metrics.Metric{{Value: float64(last)}}})
	}
	if len(c.disps) == 0 {
		return fams
	}
	out := func(name, help string, typ metrics.Type) metrics.Family {
		return metrics.Family{Name: name, Help: help, Type: typ}
	}
	notes := out("kubetrail_alert_output_notifications_total", "Notifications the output acknowledged.", metrics.CounterType)
	delivered := out("kubetrail_alert_output_alerts_total", "Stored alerts the output's acknowledged notifications stand for (a grouped burst counts each alert).", metrics.CounterType)
	throttled := out("kubetrail_alert_output_throttled_total", "Alerts folded into a grouped notification instead of being sent one by one.", metrics.CounterType)
	failures := out("kubetrail_alert_output_send_failures_total", "Failed sends to the output (each is retried).", metrics.CounterType)
	redelivered := out("kubetrail_alert_output_redelivered_total", "Notifications sent again after a restart because they were in flight: the only duplicates a crash makes.", metrics.CounterType)
	replayed := out("kubetrail_alert_output_replayed_total", "Alerts sent again from the oldest kept because the output's cursor file was damaged.", metrics.CounterType)
	cursor := out("kubetrail_alert_output_cursor", "The seq of the last stored alert handed to the output.", metrics.GaugeType)
	failing := out("kubetrail_alert_output_failing", "1 while the output's last send failed (the error is in the log), else 0.", metrics.GaugeType)
	for i, d := range c.disps {
		st, name := d.Stats(), c.names[i]
		add := func(f *metrics.Family, v float64) {
			f.Metrics = append(f.Metrics, metrics.Metric{Labels: []metrics.Label{{Name: "output", Value: name}}, Value: v})
		}
		add(&notes, float64(st.Notifications))
		add(&delivered, float64(st.Alerts))
		add(&throttled, float64(st.Throttled))
		add(&failures, float64(st.Failures))
		add(&redelivered, float64(st.Redelivered))
		add(&replayed, float64(st.Replayed))
		add(&cursor, float64(st.Cursor))
		add(&failing, boolValue(st.LastError != ""))
	}
	return append(fams, notes, delivered, throttled, failures, redelivered, replayed, cursor, failing)
}

// boolValue is a 0/1 gauge's value.
func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
