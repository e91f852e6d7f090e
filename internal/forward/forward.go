// Package forward passes stored events on to the systems a security team
// already runs: syslog servers, webhooks, Splunk HEC, Elasticsearch,
// OTLP/HTTP collectors and Kafka topics (docs/forwarding.md). Each
// destination is a URL of the same syntax as alert outputs
// (alert.ParseTarget: transport after '+', kubetrail's settings in the
// fragment) and uses the same syslog client (internal/syslog).
//
// A Forwarder reads events from the store from a durable cursor (a store
// position, local.Pos, as the detector does: docs/adr/0010), sends them in
// batches, and moves the cursor only once the destination acknowledged
// them: delivery is at least once, resumes after a restart, and the
// backlog is the store itself (docs/adr/0012-event-forwarding.md).
package forward

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/kubetrail/kubetrail/internal/alert"
	"github.com/kubetrail/kubetrail/internal/audit"
	"github.com/kubetrail/kubetrail/internal/query"
	"github.com/kubetrail/kubetrail/internal/store/local"
)

// Event is one stored event on its way to a destination.
type Event struct {
	// Raw is the event as stored (redacted at ingest): one line of JSON,
	// a complete audit.k8s.io/v1 Event. It must not be modified.
	Raw []byte
	// Ev is Raw decoded; it must not be modified.
	Ev *audit.Event
	// Cluster is the cluster the event came from.
	Cluster string
	// Pos is the event's place in the store.
	Pos local.Pos
	// Received is when kubetrail received it, unix microseconds.
	Received int64
}

// Time is the event's stageTimestamp, the time destinations index it by,
// or its requestReceivedTimestamp when it has none (as the store, query
// and the detectors take it): the zero time would file the event in year
// 1, where a Kafka topic's retention deletes it at once.
func (e *Event) Time() time.Time { return e.Ev.Time() }

// Key is the store's de-duplication key of the event (local.KeyOf) in
// hex: the same for every delivery of the same event, so a destination
// that indexes by it (Elasticsearch's _id) never stores it twice.
func (e *Event) Key() string {
	k := local.KeyOf(e.Cluster, e.Raw)
	return fmt.Sprintf("%x", k[:])
}

// Sender delivers events to one destination. A Forwarder calls Send from
// one goroutine, never concurrently, with batches in store order.
type Sender interface {
	// Send delivers events and returns nil only once the destination has
	// acknowledged all of them, as far as its protocol can tell (an HTTP
	// 2xx and, where the protocol has one, a per-item or indexer
	// acknowledgement; bytes written to a TCP connection for syslog). On
	// an error some may have arrived: the Forwarder sends the whole batch
	// again. Send must return soon after ctx is done, and must not keep
	// evs after it returns.
	Send(ctx context.Context, evs []Event) error
	// Close releases connections.
	Close() error
}

// Counter is implemented by senders that learn more than success: the
// events the destination said it had already (Elasticsearch's 409 on
// create) and the ones it accepted but dropped (OTLP partial success).
type Counter interface {
	Counts() (existing, rejected uint64)
}

// RetryAfter is implemented by errors that carry the destination's own
// wait (an HTTP Retry-After header): the Forwarder waits at least that
// long, bounded by its maximum backoff.
type RetryAfter interface {
	RetryAfter() time.Duration
}

// Factory makes a Sender from a target. It must not connect: a
// destination that is down at start is retried like any failure.
type Factory func(t *alert.Target) (Sender, error)

// Registry maps URL schemes to destination factories. It reads URLs with
// alert.ParseTarget, so forwarding and alert outputs share one syntax.
type Registry struct {
	alert.SchemeTable[Factory]
}

// NewRegistry returns a registry with every destination of this package.
func NewRegistry(env Env) *Registry {
	r := &Registry{alert.NewSchemeTable[Factory]("forward destination")}
	register(r, env.withDefaults())
	return r
}

// Dest is an opened destination with its settings.
type Dest struct {
	Sender Sender
	// Name is safe to print, log and use as a metric label: scheme and
	// host, never a path, query or user info that may hold a token.
	Name string
	// ID is stable for the URL (fragment excluded): the name of the
	// destination's cursor file in serve.
	ID string
	// Config holds the fragment's forwarding settings.
	Config Config
}

// Config is how a Forwarder batches and selects events.
type Config struct {
	// Batch is the most events one Send carries.
	Batch int
	// BatchBytes bounds the stored bytes one Send carries (a batch holds
	// at least one event whatever its size).
	BatchBytes int
	// Filter, when set, keeps only the events it matches.
	Filter *query.Filter
	// MinBackoff and MaxBackoff bound the wait between failed sends: it
	// doubles from MinBackoff up to MaxBackoff, each wait drawn at random
	// between half and all of it, so destinations that failed together do
	// not retry together.
	MinBackoff, MaxBackoff time.Duration
}

// Defaults.
const (
	DefaultBatch      = 500
	DefaultBatchBytes = 4 << 20
)

// Open parses a destination URL and makes its sender. Settings in the
// fragment: batch (events per send), filter (the filter language; it
// replaces defaultFilter), and the scheme's own (docs/forwarding.md).
func (r *Registry) Open(raw, defaultFilter string, now time.Time) (*Dest, error) {
	t, err := alert.ParseTarget(raw)
	if err != nil {
		return nil, fmt.Errorf("forward %w", err)
	}
	f, ok := r.Lookup(t.URL.Scheme)
	if !ok {
		return nil, fmt.Errorf("forward URL %s: unknown scheme %q; want one of %s", t.Name(), t.URL.Scheme, strings.Join(r.Schemes(), ", "))
	}
	cfg := Config{Batch: DefaultBatch, BatchBytes: DefaultBatchBytes, MinBackoff: alert.DefaultMinBackoff, MaxBackoff: alert.DefaultMaxBackoff}
	if err := cfg.parse(t, defaultFilter, now); err != nil {
		return nil, fmt.Errorf("forward URL %s: %w", t.Name(), err)
	}
	s, err := f(t)
	if err != nil {
		return nil, fmt.Errorf("forward URL %s: %w", t.Name(), err)
	}
	if err := t.CheckUsed(); err != nil {
		s.Close()
		return nil, fmt.Errorf("forward URL %s: %w", t.Name(), err)
	}
	return &Dest{Sender: s, Name: t.Name(), ID: t.ID(), Config: cfg}, nil
}

func (c *Config) parse(t *alert.Target, defaultFilter string, now time.Time) error {
	if v := t.Param("batch"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100000 {
			return fmt.Errorf("batch=%q: want a number of events from 1 to 100000", v)
		}
		c.Batch = n
	}
	src := defaultFilter
	if v := t.Param("filter"); v != "" {
		src = v
	}
	if strings.TrimSpace(src) != "" {
		f, err := query.CompileAt(src, now)
		if err != nil {
			return fmt.Errorf("filter %q: %w", src, err)
		}
		c.Filter = f
	}
	return nil
}
