package server

import (
	"strconv"

	"github.com/kubetrail/kubetrail/internal/forward"
	"github.com/kubetrail/kubetrail/internal/metrics"
)

// forwardCollector reads the forwarders' counters at scrape time. The
// dest label is the destination's printable name (scheme and host, never
// a token), #2, #3... for a second destination on one host.
type forwardCollector struct {
	fwds  []*forward.Forwarder
	names []string
}

func newForwardCollector(fwds []*forward.Forwarder) *forwardCollector {
	c := &forwardCollector{fwds: fwds}
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

// Collect gives a series per destination in each family; the backlog
// only while it is known, the last received time once there is one.
func (c *forwardCollector) Collect() []metrics.Family {
	fam := func(name, help string, typ metrics.Type) metrics.Family {
		return metrics.Family{Name: name, Help: help, Type: typ}
	}
	events := fam("kubetrail_forward_events_total", "Events the destination acknowledged.", metrics.CounterType)
	batches := fam("kubetrail_forward_batches_total", "Sends the destination acknowledged.", metrics.CounterType)
	filtered := fam("kubetrail_forward_filtered_total", "Events the destination's filter kept out.", metrics.CounterType)
	failures := fam("kubetrail_forward_send_failures_total", "Failed sends (each is retried with backoff).", metrics.CounterType)
	redelivered := fam("kubetrail_forward_redelivered_total", "Events sent again after a restart because their batch was in flight: the only duplicates a crash makes.", metrics.CounterType)
	existing := fam("kubetrail_forward_existing_total", "Events the destination said it had already (Elasticsearch: 409 on create), counted as delivered.", metrics.CounterType)
	rejected := fam("kubetrail_forward_rejected_total", "Events the destination accepted but dropped (OTLP partial success); not sent again, as OTLP requires.", metrics.CounterType)
	catchUps := fam("kubetrail_forward_catchups_total", "Reads of the store from the cursor: at start, and after the live stream fell behind.", metrics.CounterType)
	backlog := fam("kubetrail_forward_backlog_events", "Stored events not yet forwarded (or filtered out); they wait in the store, not in memory.", metrics.GaugeType)
	failing := fam("kubetrail_forward_failing", "1 while the destination's last send failed (the error is in the log), else 0.", metrics.GaugeType)
	lastRecv := fam("kubetrail_forward_last_received_timestamp_seconds", "When the newest forwarded event was received by kubetrail (unix seconds).", metrics.GaugeType)
	for i, f := range c.fwds {
		st, name := f.Stats(), c.names[i]
		add := func(f *metrics.Family, v float64) {
			f.Metrics = append(f.Metrics, metrics.Metric{Labels: []metrics.Label{{Name: "dest", Value: name}}, Value: v})
		}
		add(&events, float64(st.Events))
		add(&batches, float64(st.Batches))
		add(&filtered, float64(st.Filtered))
		add(&failures, float64(st.Failures))
		add(&redelivered, float64(st.Redelivered))
		add(&existing, float64(st.Existing))
		add(&rejected, float64(st.Rejected))
		add(&catchUps, float64(st.CatchUps))
		if st.Backlog >= 0 {
			add(&backlog, float64(st.Backlog))
		}
		add(&failing, boolValue(st.LastError != ""))
		if st.LastReceived > 0 {
			add(&lastRecv, float64(st.LastReceived)/1e6)
		}
	}
	return []metrics.Family{events, batches, filtered, failures, redelivered, existing, rejected, catchUps, backlog, failing, lastRecv}
}
