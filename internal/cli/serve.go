package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/kubetrail/kubetrail/internal/audit"
	"github.com/kubetrail/kubetrail/internal/ingest"
	"github.com/kubetrail/kubetrail/internal/server"
	"github.com/kubetrail/kubetrail/internal/store/local"
	"github.com/kubetrail/kubetrail/internal/timespec"
	"github.com/kubetrail/kubetrail/internal/trust"
)

func serveCmd(e *env) *cobra.Command {
	var (
		dir       string
		cfg       server.Config
		access    accessFlags
		sealAfter time.Duration
		// signingKey and checkpointEvery sign checkpoints of the hash
		// chain (docs/security.md, "Tamper evidence").
		signingKey      string
		checkpointEvery time.Duration
		maxEvent        int
		walBytes        int64
		segmentFormat   int
		retention       string
		maxSize         string
		compact         string
		detect          bool
		rf              ruleFlags
		outputs         []string
		redact          redactFlags
		pol             policyFlags
		forwards        []string
		fwdFilter       string
		coll            collectorFlags
	)
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Receive audit events from the API server's webhook and store them",
		Long: `serve runs kubetrail's HTTP server on the local store.

Endpoints:
  POST /ingest/webhook[?cluster=NAME]  an EventList (as the API server's webhook
                                       backend sends), an Event, a JSON array or
                                       JSON lines, plain or gzip-encoded. Answered
                                       200 only once every event is durable on disk;
                                       429 or 503 with Retry-After when it cannot be
                                       (the API server keeps the batch and retries).
                                       Retried batches add nothing. A bad item costs
                                       only itself: it is named (the first 20 are
                                       listed, all are counted) and the rest stored.
                                       Role ingest or admin.
  GET  /api/v1/events, /api/v1/stats,  the query API (docs/query.md, docs/investigations.md);
       /api/v1/investigate/NAME,       role viewer or admin, a scoped viewer seeing only
       /api/v1/alerts                  its clusters and namespaces (the alerts endpoint
                                       answers 404 with --detect=false; with
                                       --store, see ClickHouse below)
  GET  /, /search, /event/ID,          the web UI (docs/ui.md): pages drawn in the browser
       /user/NAME, /alerts, /login     from the API above, with a login page for tokens
  GET  /healthz, /readyz               liveness and readiness
  GET  /metrics                        Prometheus metrics (open unless --auth-health)

Syslog (--syslog-listen tcp://ADDR, tls://ADDR, udp://ADDR; docs/ingest.md):
RFC 5424 or RFC 3164 messages, octet-counted or newline-framed (told apart
per frame), each carrying one audit event's JSON (also behind rsyslog's
@cee: or in a JSON envelope's MESSAGE, message, msg or log string), as
rsyslog's imfile + omfwd send them. The cluster is --syslog-cluster unless
the message's structured data names one: [kubetrail@32473 cluster="prod"].
Over TCP and TLS the events read are stored before more is read from the
connection; a store that fails is retried and the sender waits. UDP is
lossy. A bad frame (over --syslog-max-message-bytes, garbage, a wrong
count) is skipped and logged with the sender's address; the rest is kept.

Storage: events go to a write-ahead log, then into compressed segments.
--retention and --max-size delete whole segments, oldest first. Segments
smaller than --compact-below (sealed by --seal-after on a quiet cluster, or
at each restart) are merged in the background into larger ones, so queries
open fewer files; a crash during a merge loses and duplicates nothing.

Redaction: before anything is written, Secret data and stringData, service
account and TokenReview tokens, tokens in query strings and
authorization-like annotations are replaced by markers keyed with
DATA/redact.key (or --redact-key-file); --no-redact stores events exactly as
received (docs/ingest.md, "Redaction").

Policy: --policy FILE applies the team's audit policy to every event before
redaction, exactly as the API server would have: requests at level None and
omitted stages are dropped, bodies above the level removed, managedFields
removed when the policy says so; an event logged below the policy's level is
kept as it is. A policy that does not load refuses to start.
/metrics counts kubetrail_policy_events_total{result=...} (docs/ingest.md,
"Policy at ingest").

Detection: every event is evaluated once it is durable, by the built-in
pack or the --rules given (a rule file with an error stops serve), from a
durable cursor: after a crash each stored event is still evaluated once.
Alerts are kept in DATA/alerts before any --alert-output sees them, and
each output gets them at least once (docs/detection.md).

Forwarding: each --forward URL (syslog+tcp://, syslog+tls://,
webhook+https://, splunk+https://, elasticsearch+https://, otlp+http://,
kafka://, kafkas://) gets every stored event that its filter (#filter=...
in the URL, else --forward-filter) selects, at least once, from a durable
cursor in DATA/forward: a destination that is down is retried with backoff
while the backlog stays in the store, and /metrics reports it
(kubetrail_forward_*{dest}). A new destination starts with the events
stored from then on; kubetrail forward sends the history
(docs/forwarding.md).

ClickHouse (--store clickhouse://HOST:8123/DB, docs/clickhouse.md): serve
is a collector. A batch is answered 200 once it is fsync'd in the
collector's own WAL (DATA/clickhouse-spool), and shipped to ClickHouse from
there with retries; copies (a retried batch, another collector) count once.
While ClickHouse is down the WAL grows up to --spool-max-bytes, then
batches get 503. --retention drops ClickHouse's days (partitions) once all
their events are older. The query API and the web UI answer from ClickHouse
(every collector's events, as over --data; follow=1 polls every second).
No detection and no forwarding: rules run in one kubetrail detect --follow
--store URL --data DIR, and /api/v1/alerts lists its alerts when serve has
the same --data DIR (404 saying so otherwise).

Memory: a body is at most --max-body-bytes (after decompression) and all
requests together hold at most --max-inflight-bytes (bodies and decoded
events; the Go heap stays within about twice this plus the store's needs).

Listening beyond loopback needs TLS (--tls-cert, --tls-key) and authentication
(--token-file and/or --client-ca), or --insecure.

Roles (docs/security.md): a --token-file line is TOKEN,NAME,role=ROLE with
optional clusters=A|B and namespaces=X|Y; ROLE is ingest (webhook, syslog),
viewer (the read API) or admin (everything). A client certificate takes its
role from --client-role CN=ROLE[,clusters=..][,namespaces=..], else from its
O=kubetrail:ROLE. A token or certificate without a role may ingest and read,
as before roles existed; --require-roles refuses it everything. An ingest
scope bounds the clusters written (?cluster=, syslog's cluster); a viewer
scope bounds every answer, counts included. Every read of the API, and every
refused request, is a JSON line in DATA/access.log (who, role, endpoint,
parameters, status, results, duration, a hash chain link; never a token), fsync'd every second
and at shutdown; reads are refused (503) while it cannot be written.`,
		Example: `  kubetrail serve
  kubetrail serve --listen 0.0.0.0:8443 --tls-cert tls.crt --tls-key tls.key --token-file tokens
  kubetrail serve --listen 0.0.0.0:8443 --tls-cert tls.crt --tls-key tls.key --client-ca ca.crt \
      --client-role kube-apiserver=ingest,clusters=prod --require-roles
  kubetrail serve --alert-output alertmanager+http://alertmanager:9093 --rules my-rules/ --builtin
  kubetrail serve --syslog-listen tcp://127.0.0.1:6514 --syslog-cluster prod
  kubetrail serve --store clickhouse://ch:8123/kubetrail --data /var/lib/kubetrail`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log := e.logger()
			if cfg.TLSKey != "" {
				if err := checkSecretFile("--tls-key", cfg.TLSKey); err != nil {
					return err
				}
			}
			if err := access.load(&cfg, log); err != nil {
				return err
			}
			cfg.Webhook.Limits = audit.Limits{MaxEventBytes: maxEvent}
			cfg.Syslog.Limits, cfg.Syslog.Logger = cfg.Webhook.Limits, log
			var ret local.Retention
			if retention != "" {
				d, err := timespec.ParseDuration(retention)
				if err != nil {
					return fmt.Errorf("--retention %q: %w", retention, err)
				}
				if d <= 0 {
					return fmt.Errorf("--retention %q: want a duration such as 90d or 720h", retention)
				}
				ret.MaxAge = d
			}
			if maxSize != "" {
				n, err := parseSize(maxSize)
				if err != nil {
					return fmt.Errorf("--max-size: %w", err)
				}
				ret.MaxBytes = n
			}
			var comp local.Compaction
			if compact != "0" && compact != "off" {
				n, err := parseSize(compact)
				if err != nil {
					return fmt.Errorf("--compact-below: %w (0 turns compaction off)", err)
				}
				comp.Below = n
			}
			if err := pol.load(log); err != nil {
				return err
			}
			if coll.url != "" {
				return serveCollector(cmd, e, cfg, &coll, dir, &redact, &pol, ret.MaxAge)
			}
			db, err := local.Open(dir, local.Options{Logger: log, SealAfter: sealAfter, WALSegmentBytes: walBytes, SegmentFormat: segmentFormat})
			if err != nil {
				return err
			}
			signer, err := newSigner(dir, signingKey, db, log)
			if err != nil {
				db.Close()
				return err
			}
			ret.Sign = func(rec string) string { return trust.SignRetired(signer.Key, rec) }
			if cfg.AccessLog, err = openAccessLog(dir, signer, log); err != nil {
				db.Close()
				return err
			}
			defer cfg.AccessLog.Close() // after Run, which answered (and logged) every request
			ingestSink, red, err := redact.wrap(db, dir, log)
			if err != nil {
				db.Close()
				return err
			}
			ingestSink, rel := pol.wrap(ingestSink)
			cfg.Ingest = ingestSink
			ingestMetrics(&cfg, red, rel)
			var det *detection
			if detect {
				if det, err = openDetection(e, db, &rf, outputs, log); err != nil {
					db.Close()
					return err
				}
			} else if len(outputs) > 0 || len(rf.paths) > 0 {
				db.Close()
				return errors.New("--detect=false runs no rules: --rules and --alert-output need detection on")
			}
			if det != nil {
				cfg.Alerts, cfg.Dispatchers, cfg.Detection = det.store, det.disps, det.det.Stats
			}
			fwd, err := openForwarding(db, forwards, fwdFilter, log)
			if err == nil {
				cfg.Forwarders = fwd.fwds
			}
			srv, serr := server.New(cfg, db, log)
			if err != nil || serr != nil {
				if fwd != nil {
					fwd.close()
				}
				if det != nil {
					det.closeStore()
				}
				db.Close()
				return errors.Join(err, serr)
			}
			ctx, failed := context.WithCancel(cmd.Context())
			defer failed()
			if det != nil {
				det.start(failed)
				log.Info("detection on", "rules", det.rules, "outputs", len(det.disps))
			}
			fwd.start(db, failed)
			// Retention and compaction run beside the server; the store
			// runs them one at a time.
			maintCtx, stopMaint := context.WithCancel(cmd.Context())
			var maint sync.WaitGroup
			maint.Go(func() { db.RunRetention(maintCtx, ret, 5*time.Minute) })
			maint.Go(func() { db.RunCompaction(maintCtx, comp, time.Minute) })
			maint.Go(func() { signer.Run(maintCtx, checkpointEvery) })
			err = srv.Run(ctx, func(addr string) {
				log.Info("kubetrail serving", "addr", addr, "data", dir, "tls", cfg.TLSCert != "")
				if !e.logJSON {
					n := 0
					if det != nil {
						n = det.rules
					}
					fmt.Fprint(e.stderr, firstSteps(addr, dir, cfg.TLSCert != "", n))
				}
			})
			// The HTTP server has answered every request in flight; now make
			// sure everything acknowledged is sealed before exiting.
			stopMaint()
			maint.Wait()
			// Closing seals every event; the last checkpoint covers them.
			if cerr := closeAndSign(db, signer); err == nil {
				err = cerr
			}
			if det != nil {
				if derr := det.stop(); err == nil {
					err = derr
				}
			}
			if ferr := fwd.stop(); err == nil {
				err = ferr
			}
			log.Info("kubetrail stopped", "stored", db.Stats().Stored.Load())
			return err
		},
	}
	addDataFlag(cmd, &dir)
	f := cmd.Flags()
	f.StringVar(&cfg.Listen, "listen", "127.0.0.1:8443", "address to listen on")
	f.StringVar(&cfg.TLSCert, "tls-cert", "", "serving certificate (PEM); enables HTTPS")
	f.StringVar(&cfg.TLSKey, "tls-key", "", "serving key (PEM); refused unless only its owner may read it (chmod 600)")
	f.StringVar(&cfg.ClientCA, "client-ca", "", "CA bundle (PEM) for client certificates (mTLS)")
	access.add(f)
	f.BoolVar(&cfg.Insecure, "insecure", false, "allow a non-loopback address without TLS and authentication")
	f.BoolVar(&cfg.AuthHealth, "auth-health", false, "require authentication for /healthz, /readyz and /metrics too")
	f.Int64Var(&cfg.Webhook.MaxBodyBytes, "max-body-bytes", ingest.DefaultMaxBodyBytes, "largest webhook request body accepted, after gzip decompression (413 beyond)")
	f.Int64Var(&cfg.Webhook.MaxInflightBytes, "max-inflight-bytes", 0, "memory all webhook requests may hold at once, bodies and decoded events; beyond it 429 + Retry-After (413 for one batch that alone needs more); at least 4x --max-body-bytes (default: 256 MiB or 8x --max-body-bytes, the larger)")
	f.IntVar(&maxEvent, "max-event-bytes", audit.DefaultMaxEventBytes, "largest single event accepted")
	f.DurationVar(&sealAfter, "seal-after", 5*time.Minute, "seal the write-ahead log into a segment at least this often")
	f.StringVar(&signingKey, "signing-key", "", signingKeyUsage)
	f.DurationVar(&checkpointEvery, "checkpoint-every", 5*time.Minute, "sign a checkpoint of the hash chain into DATA/checkpoints this often, and on shutdown (0: on shutdown only); events are covered once sealed (--seal-after)")
	f.Int64Var(&walBytes, "wal-segment-bytes", 64<<20, "seal the write-ahead log into a segment when it reaches this size")
	addSegmentFormatFlag(f, &segmentFormat)
	f.StringVar(&retention, "retention", "", "delete stored events older than this (90d, 720h); default: keep all")
	f.StringVar(&maxSize, "max-size", "", "delete the oldest stored events while the store is larger than this (50GiB, 500MB); default: no limit")
	f.BoolVar(&detect, "detect", true, "evaluate the rules (the built-in pack, or --rules) on every event once it is stored, keeping alerts in DATA/alerts; --detect=false only stores events")
	rf.add(cmd)
	redact.add(cmd)
	pol.add(cmd)
	f.StringArrayVar(&outputs, "alert-output", nil, "send alerts to this URL, at least once (repeatable): file:///PATH, webhook+https://..., slack+https://..., alertmanager+http://HOST:9093, syslog+tcp://HOST:514, syslog+tls://...; settings after # (docs/detection.md)")
	addSyslogFlags(f, &cfg.Syslog)
	f.StringArrayVar(&forwards, "forward", nil, "send every stored event to this URL, at least once, from a durable cursor (repeatable): syslog+tcp://HOST:514, syslog+tls://..., webhook+https://..., splunk+https://TOKEN@HOST:8088, elasticsearch+https://HOST:9200/INDEX, otlp+http://HOST:4318, kafka://BROKER[,BROKER...]/TOPIC; settings after #, #filter=FILTER for one destination (docs/forwarding.md)")
	f.StringVar(&fwdFilter, "forward-filter", "", "only forward the events this filter selects (the query language), for each --forward without a #filter= of its own")
	f.StringVar(&compact, "compact-below", "4MiB", "merge adjacent segments smaller than this into segments of up to this size, in the background (0: never)")
	coll.add(cmd)
	return cmd
}

func readTokens(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("--token-file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("--token-file: %w", err)
	}
	if err := checkSecretMode("--token-file", path, fi); err != nil {
		return nil, err
	}
	var toks []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		t := strings.TrimSpace(sc.Text())
		if t == "" || strings.HasPrefix(t, "#") {
			continue
		}
		// Accept the API server's token-file format too: token,user,uid,...
		t, _, _ = strings.Cut(t, ",")
		toks = append(toks, t)
	}
	if len(toks) == 0 {
		return nil, fmt.Errorf("--token-file %s: no token in it", path)
	}
	return toks, sc.Err()
}

// parseSize reads a byte count with an optional unit: 500MB, 50GiB, 1T.
func parseSize(v string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
		{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"T", 1 << 40}, {"B", 1}}
	s := strings.TrimSpace(v)
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseFloat(s, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%q: want a size such as 50GiB or 500MB", v)
	}
	return int64(n * float64(mult)), nil
}

// firstSteps tells a person who just started serve where to point the API
// server, how to ask questions and where alerts go (written to stderr
// unless --log-json).
// rules is how many detection rules run (0: detection is off).
func firstSteps(addr, dir string, tls bool, rules int) string {
	scheme := "http"
	if tls {
		scheme = "https"
	}
	base := scheme + "://" + addr
	detection := fmt.Sprintf("  Detection runs %d rules on every event; see the alerts with\n    kubetrail alerts --data %s   (or --server %s; -f follows)\n", rules, dir, base)
	if rules == 0 {
		detection = "  Detection is off (--detect=false); kubetrail detect --data " + dir + " runs the rules over what is stored.\n"
	}
	return fmt.Sprintf(`
kubetrail receives audit events at %[1]s/ingest/webhook and keeps them in %[2]s.
  Point the API server at it (docs/setup.md):
    kubetrail setup webhook-config --url %[1]s/ingest/webhook --out /etc/kubernetes/audit-webhook.yaml
    then kube-apiserver --audit-webhook-config-file=/etc/kubernetes/audit-webhook.yaml
  Ask it questions:
    kubetrail query --server %[1]s 'verb=delete resource=secrets'   (add --token-file when it needs a token)
    kubetrail who delete secret/NAME -n NAMESPACE --data %[2]s
    kubetrail timeline --since 1h --data %[2]s
%[3]s
`, base, dir, detection)
}
