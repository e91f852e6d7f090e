package server

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kubetrail/kubetrail/internal/forward"
)

// forwardCollector reads the forwarders' counters at scrape time. The
// dest label is the destination's printable name (scheme and host, never
// a token), #2, #3... for a second destination on one host.
type forwardCollector struct {
	fwds  []*forward.Forwarder
	names []string

	events, batches, filtered, failures, redelivered, existing, rejected, catchUps *prometheus.Desc
	backlog, failing, lastRecv                                                     *prometheus.Desc
}

func newForwardCollector(fwds []*forward.Forwarder) *forwardCollector {
	dest := []string{"dest"}
	d := func(name, help string) *prometheus.Desc { return prometheus.NewDesc(name, help, dest, nil) }
	c := &forwardCollector{fwds: fwds,
		events:      d("kubetrail_forward_events_total", "Events the destination acknowledged."),
		batches:     d("kubetrail_forward_batches_total", "Sends the destination acknowledged."),
		filtered:    d("kubetrail_forward_filtered_total", "Events the destination's filter kept out."),
		failures:    d("kubetrail_forward_send_failures_total", "Failed sends (each is retried with backoff)."),
		redelivered: d("kubetrail_forward_redelivered_total", "Events sent again after a restart because their batch was in flight: the only duplicates a crash makes."),
		existing:    d("kubetrail_forward_existing_total", "Events the destination said it had already (Elasticsearch: 409 on create), counted as delivered."),
		rejected:    d("kubetrail_forward_rejected_total", "Events the destination accepted but dropped (OTLP partial success); not sent again, as OTLP requires."),
		catchUps:    d("kubetrail_forward_catchups_total", "Reads of the store from the cursor: at start, and after the live stream fell behind."),
		backlog:     d("kubetrail_forward_backlog_events", "Stored events not yet forwarded (or filtered out); they wait in the store, not in memory."),
		failing:     d("kubetrail_forward_failing", "1 while the destination's last send failed (the error is in the log), else 0."),
		lastRecv:    d("kubetrail_forward_last_received_timestamp_seconds", "When the newest forwarded event was received by kubetrail (unix seconds)."),
	}
	seen := map[string]int{}
	for _, f := range fwds {
		n := f.Name()
		seen[n]++
		if k := seen[n]; k > 1 {
			n += "#" + strconv.Itoa(k)
		}
		c.names = append(c.names, n)
	}
	return c
}

func (c *forwardCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.events, c.batches, c.filtered, c.failures, c.redelivered, c.existing, c.rejected, c.catchUps, c.backlog, c.failing, c.lastRecv} {
		ch <- d
	}
}

func (c *forwardCollector) Collect(ch chan<- prometheus.Metric) {
	for i, f := range c.fwds {
		st, name := f.Stats(), c.names[i]
		counter := func(d *prometheus.Desc, v uint64) {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), name)
		}
		counter(c.events, st.Events)
		counter(c.batches, st.Batches)
		counter(c.filtered, st.Filtered)
		counter(c.failures, st.Failures)
		counter(c.redelivered, st.Redelivered)
		counter(c.existing, st.Existing)
		counter(c.rejected, st.Rejected)
		counter(c.catchUps, st.CatchUps)
		if st.Backlog >= 0 {
			ch <- prometheus.MustNewConstMetric(c.backlog, prometheus.GaugeValue, float64(st.Backlog), name)
		}
		failing := 0.0
		if st.LastError != "" {
			failing = 1
		}
		ch <- prometheus.MustNewConstMetric(c.failing, prometheus.GaugeValue, failing, name)
		if st.LastReceived > 0 {
			ch <- prometheus.MustNewConstMetric(c.lastRecv, prometheus.GaugeValue, float64(st.LastReceived)/1e6, name)
		}
	}
}
