package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/kubetrail/kubetrail/internal/metrics"
	"github.com/kubetrail/kubetrail/internal/pipeline"
	"github.com/kubetrail/kubetrail/internal/server"
	"github.com/kubetrail/kubetrail/internal/store"
	"github.com/kubetrail/kubetrail/internal/store/clickhouse"
	"github.com/kubetrail/kubetrail/internal/store/local"
)

// collectorFlags are --store and the spool bound of the commands that
// write events (serve, import, tail): with a ClickHouse URL they write
// through a collector (docs/clickhouse.md, ADR 0019) whose WAL lives in
// DATA/clickhouse-spool.
type collectorFlags struct {
	url      string
	spoolMax string
	// startDown lets the collector start while ClickHouse is down (serve,
	// tail); import needs it up, or its end would wait for it.
	startDown bool
}

func (f *collectorFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.url, "store", "", "store into ClickHouse at this URL instead of --data: "+store.URLForms+
		" (after kubetrail setup clickhouse); events are acknowledged once in the collector's WAL in DATA/clickhouse-spool and shipped from there")
	cmd.Flags().StringVar(&f.spoolMax, "spool-max-bytes", "1GiB", "with --store: events the WAL may hold that ClickHouse has not taken yet; beyond it serve answers 503, and tail and import wait")
}

// spoolDir is the collector's folder inside the data folder.
func spoolDir(data string) string { return filepath.Join(data, "clickhouse-spool") }

// collector is an open collector and its shipper.
type collector struct {
	st   *clickhouse.Store
	c    *clickhouse.Collector
	stop context.CancelFunc
	done chan error
	cfg  clickhouse.Config
	log  *slog.Logger
}

// open connects to ClickHouse, opens the collector in data and starts
// shipping.
func (f *collectorFlags) open(ctx context.Context, data string, log *slog.Logger) (*collector, error) {
	max, err := parseSize(f.spoolMax)
	if err != nil {
		return nil, fmt.Errorf("--spool-max-bytes: %w", err)
	}
	if !store.IsClickHouse(f.url) {
		return nil, fmt.Errorf("--store %q: want %s", clickhouse.Redact(f.url), store.URLForms)
	}
	cfg, err := clickhouse.ParseURL(f.url)
	if err != nil {
		return nil, fmt.Errorf("--store: %w", err)
	}
	st, err := clickhouse.Open(ctx, cfg)
	if errors.Is(err, clickhouse.ErrUnreachable) && f.startDown {
		// A collector takes events while ClickHouse is down; it checks
		// the schema before its first insert.
		log.Warn("ClickHouse is not reachable; collecting into the WAL until it is", "err", err)
		st = clickhouse.Dial(cfg)
	} else if err != nil {
		return nil, fmt.Errorf("--store: %w", err)
	}
	c, err := clickhouse.NewCollector(st, clickhouse.CollectorOptions{Dir: spoolDir(data), MaxSpoolBytes: max, Logger: log})
	if err != nil {
		st.Close()
		return nil, err
	}
	runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	col := &collector{st: st, c: c, stop: stop, done: make(chan error, 1), cfg: cfg, log: log}
	go func() { col.done <- c.Run(runCtx) }()
	return col, nil
}

// close stops shipping, ships what is left (until ctx ends or drain
// passes; the rest ships at the next start) and closes the collector.
// Unless mustShip (import, which is done only once ClickHouse has every
// event), rows left in the WAL are logged, not an error: they are safe
// there and ship at the next start.
func (col *collector) close(ctx context.Context, drain time.Duration, mustShip bool) error {
	col.stop()
	err := <-col.done
	dctx, cancel := context.WithTimeout(ctx, drain)
	defer cancel()
	derr := col.c.Drain(dctx)
	if derr != nil && !mustShip {
		col.log.Warn("stopping with rows not yet in ClickHouse", "err", derr)
		derr = nil
	}
	return errors.Join(err, derr, col.c.Close(), col.st.Close())
}

// where names the store without its credentials.
func (col *collector) where() string {
	if rest, ok := strings.CutPrefix(col.cfg.Endpoint, "https://"); ok {
		return "clickhouses://" + rest + "/" + col.cfg.Database
	}
	return "clickhouse://" + strings.TrimPrefix(col.cfg.Endpoint, "http://") + "/" + col.cfg.Database
}

// metrics are the collector's counters for /metrics.
func (col *collector) metrics() []metrics.Collector {
	c := col.c
	counter := func(name, help string, f func(clickhouse.CollectorStats) int64) metrics.Collector {
		return metrics.NewCounterFunc(name, help, func() float64 { return float64(f(c.Stats())) })
	}
	return []metrics.Collector{
		metrics.NewGaugeFunc("kubetrail_clickhouse_spool_bytes", "Bytes in the collector's WAL that ClickHouse has not taken yet.",
			func() float64 { return float64(c.Stats().Spooled) }),
		counter("kubetrail_clickhouse_events_accepted_total", "Events made durable in the collector's WAL.", func(s clickhouse.CollectorStats) int64 { return s.Accepted }),
		counter("kubetrail_clickhouse_events_shipped_total", "Events inserted into ClickHouse (a retried insert counts again).", func(s clickhouse.CollectorStats) int64 { return s.Shipped }),
		counter("kubetrail_clickhouse_inserts_total", "Inserts ClickHouse took.", func(s clickhouse.CollectorStats) int64 { return s.Inserts }),
		counter("kubetrail_clickhouse_insert_failures_total", "Inserts that failed and are retried.", func(s clickhouse.CollectorStats) int64 { return s.Failures }),
		counter("kubetrail_clickhouse_batches_refused_total", "Batches refused (503) because the spool was full.", func(s clickhouse.CollectorStats) int64 { return s.Refused }),
		metrics.NewGaugeFunc("kubetrail_clickhouse_spool_damaged_segments",
			"Segments of the collector's WAL kept as .damaged: records in them could not be read and never reached ClickHouse; look at them, then remove them. -1 when the folder cannot be read.",
			func() float64 {
				paths, err := c.DamagedSegments()
				if err != nil {
					return -1
				}
				return float64(len(paths))
			}),
	}
}

// notForCollectors are serve's flags about its own store, detection and
// forwarding, which a collector does not have.
var notForCollectors = []string{"rules", "builtin", "falco-rule-matching", "alert-output", "forward", "forward-filter",
	"max-size", "compact-below", "seal-after", "wal-segment-bytes", "signing-key", "checkpoint-every"}

// serveCollector is serve --store: the webhook and syslog store through
// the ingest pipeline into a collector, and the read API and the UI
// answer from ClickHouse itself (so they see every collector's events),
// the alerts API from the alert store in DATA, which detect --follow
// --store URL --data DATA keeps.
func serveCollector(cmd *cobra.Command, e *env, cfg server.Config, cf *collectorFlags, dir string, redact *redactFlags, pol *policyFlags, retention time.Duration) error {
	for _, name := range notForCollectors {
		if fl := cmd.Flags().Lookup(name); fl != nil && fl.Changed {
			return fmt.Errorf("--%s does not apply with --store: a collector keeps no store, runs no rules and forwards nothing (docs/clickhouse.md)", name)
		}
	}
	if fl := cmd.Flags().Lookup("detect"); fl != nil && fl.Changed && fl.Value.String() == "true" {
		return errors.New("--detect does not apply with --store: a collector runs no rules; run one detector per store: kubetrail detect --follow --store URL --data DIR (docs/clickhouse.md)")
	}
	log := e.logger()
	cf.startDown = true
	col, err := cf.open(cmd.Context(), dir, log)
	if err != nil {
		return err
	}
	sink, red, err := redact.wrap(col.c, dir, log)
	if err != nil {
		col.close(cmd.Context(), 0, false)
		return err
	}
	sink, rel := pol.wrap(sink)
	cfg.Ingest = sink
	ingestMetrics(&cfg, red, rel)
	cfg.Collector = &server.CollectorMode{Ready: col.c.Ready, Metrics: col.metrics(), Damage: col.c.Damage}
	cfg.Store, cfg.AlertsDir = col.st, dir
	if cfg.AccessLog, err = openAccessLog(dir, nil, log); err != nil {
		col.close(cmd.Context(), 0, false)
		return err
	}
	defer cfg.AccessLog.Close() // after Run, which answered (and logged) every request
	srv, err := server.New(cfg, nil, log)
	if err != nil {
		col.close(cmd.Context(), 0, false)
		return err
	}
	// Retention drops ClickHouse's old days; every collector may run it,
	// dropping a day twice is harmless.
	retCtx, stopRet := context.WithCancel(cmd.Context())
	retDone := make(chan struct{})
	go func() {
		defer close(retDone)
		col.st.RunRetention(retCtx, retention, 5*time.Minute, func(dropped []string, err error) {
			if err != nil {
				log.Error("retention on ClickHouse", "err", err, "dropped", dropped)
				return
			}
			log.Info("retention on ClickHouse: days dropped", "days", dropped)
		})
	}()
	err = srv.Run(cmd.Context(), func(addr string) {
		log.Info("kubetrail collecting", "addr", addr, "store", col.where(), "spool", spoolDir(dir), "tls", cfg.TLSCert != "")
		if !e.logJSON {
			fmt.Fprint(e.stderr, collectorFirstSteps(addr, cfg.TLSCert != "", col.where(), spoolDir(dir)))
		}
	})
	stopRet()
	<-retDone
	// Every acknowledged batch is in the WAL; ship what is left for a
	// while, and leave the rest for the next start.
	if cerr := col.close(context.Background(), 10*time.Second, false); err == nil {
		err = cerr
	}
	log.Info("kubetrail stopped", "accepted", col.c.Stats().Accepted, "shipped", col.c.Stats().Shipped, "spooled_bytes", col.c.Stats().Spooled)
	return err
}

// ingestMetrics gives /metrics the redaction and ingest policy counters.
func ingestMetrics(cfg *server.Config, red *pipeline.Redactor, rel *pipeline.Releveler) {
	if red != nil {
		cfg.Redacted = red.Redacted
	}
	if rel != nil {
		cfg.PolicyEvents = func() map[string]int64 {
			c := rel.Counts()
			m := make(map[string]int64, len(c))
			for _, res := range pipeline.PolicyResults {
				m[res.String()] = c[res]
			}
			return m
		}
	}
}

func collectorFirstSteps(addr string, tls bool, url, spool string) string {
	scheme := "http"
	if tls {
		scheme = "https"
	}
	base := scheme + "://" + addr
	return fmt.Sprintf(`
kubetrail collects audit events at %[1]s/ingest/webhook into %[2]s
(acknowledged once in its WAL in %[3]s, shipped from there).
  Point the API server at it (docs/setup.md):
    kubetrail setup webhook-config --url %[1]s/ingest/webhook --out /etc/kubernetes/audit-webhook.yaml
  Ask it (it answers from ClickHouse, every collector's events), or ClickHouse:
    kubetrail query --server %[1]s 'verb=delete resource=secrets'   (add --token-file when it needs a token)
    kubetrail query --store %[2]s 'verb=delete resource=secrets'
    the web UI: %[1]s/
  Detection does not run in a collector: run one reader per store,
    kubetrail detect --follow --store %[2]s --data DIR
    (serve with --data DIR lists its alerts at /api/v1/alerts)
`, base, url, spool)
}

// openCollector is sinkFlags.open for --store: the ingest pipeline in
// front of a collector, closed by shipping what it holds (s.drain).
func (s *sinkFlags) openCollector(ctx context.Context, e *env) (pipeline.Sink, func() error, error) {
	if s.remote.URL != "" {
		return nil, nil, errors.New("--store and --server name two places to send to: give one")
	}
	if s.signingKey != "" {
		return nil, nil, errors.New("--signing-key signs the embedded store's hash chain; it does not apply with --store")
	}
	log := e.logger()
	col, err := s.store.open(ctx, s.dir, log)
	if err != nil {
		return nil, nil, err
	}
	sink, _, err := s.redact.wrap(col.c, s.dir, log)
	if err != nil {
		col.close(ctx, 0, false)
		return nil, nil, err
	}
	sink, s.relevel = s.policy.wrap(sink)
	closeCtx := ctx
	if s.drainAfterStop {
		closeCtx = context.WithoutCancel(ctx)
	}
	return sink, func() error { return col.close(closeCtx, s.drain, !s.drainAfterStop) }, nil
}

// followStore is query --follow --store: the selected events, then those
// inserted later, polled every second until interrupted.
func followStore(ctx context.Context, r store.Reader, sel local.Selection, out *printer) error {
	ch, ok := r.(*clickhouse.Store)
	if !ok {
		return errors.New("BUG: --follow on a store that cannot follow")
	}
	f := ch.Follow(local.Selection{Filter: sel.Filter, Since: sel.Since, Until: sel.Until, NeedEvent: true})
	for first := true; ; first = false {
		var rows []row
		err := f.Poll(ctx, func(h *local.Hit) error {
			rw, err := out.row(h)
			rows = append(rows, rw)
			return err
		})
		if ctx.Err() != nil {
			return nil // --follow runs until stopped
		}
		if err != nil {
			return err
		}
		sort.SliceStable(rows, func(i, j int) bool { return rows[i].time < rows[j].time })
		if len(rows) > 0 || first {
			if err := out.printLive(rows, first); err != nil {
				return err
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
}
