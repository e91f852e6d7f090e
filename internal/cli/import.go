package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/kubetrail/kubetrail/internal/audit"
	"github.com/kubetrail/kubetrail/internal/escape"
	"github.com/kubetrail/kubetrail/internal/ingest"
	"github.com/kubetrail/kubetrail/internal/pipeline"
	"github.com/kubetrail/kubetrail/internal/store/local"
)

// sinkFlags choose where ingested events go: the local store or a server.
type sinkFlags struct {
	dir    string
	remote ingest.RemoteConfig
	token  string
	redact redactFlags
	policy policyFlags
	// relevel is the ingest policy stage open made; nil without --policy.
	relevel *pipeline.Releveler
	// signingKey is --signing-key: a checkpoint is signed at the end of
	// the run.
	signingKey string
	// store is --store: ClickHouse through a collector (collector.go).
	store collectorFlags
	// drain is how long closing waits for the collector to ship what it
	// holds; the command's context bounds it too, unless drainAfterStop
	// (tail, which closes after its context ended).
	drain          time.Duration
	drainAfterStop bool
	// bulk opens the local store for a bulk load (local.Options.Bulk):
	// import's events go straight into segments, durable at its end.
	bulk bool
	// segmentFormat is --segment-format.
	segmentFormat int
	// db is the local store open made, if any.
	db *local.DB
}

func (s *sinkFlags) add(cmd *cobra.Command) {
	addDataFlag(cmd, &s.dir)
	f := cmd.Flags()
	f.StringVar(&s.remote.URL, "server", "", "send to a running kubetrail serve at this URL instead of the local folder")
	f.StringVar(&s.token, "token-file", "", "with --server: file holding the bearer token")
	f.StringVar(&s.remote.CA, "ca", "", "with --server: CA bundle (PEM) to verify the server")
	f.StringVar(&s.remote.ClientCert, "client-cert", "", "with --server: client certificate (PEM)")
	f.StringVar(&s.remote.ClientKey, "client-key", "", "with --server: client key (PEM)")
	f.StringVar(&s.signingKey, "signing-key", "", signingKeyUsage+"; a checkpoint is signed at the end of the run")
	s.redact.add(cmd)
	s.policy.add(cmd)
	s.store.add(cmd)
	addSegmentFormatFlag(f, &s.segmentFormat)
}

// open returns the sink and a function to close it.
func (s *sinkFlags) open(ctx context.Context, e *env) (pipeline.Sink, func() error, error) {
	if err := s.policy.load(e.logger()); err != nil {
		return nil, nil, err
	}
	if s.store.url != "" {
		return s.openCollector(ctx, e)
	}
	if s.remote.URL != "" {
		if s.remote.ClientKey != "" {
			if err := checkSecretFile("--client-key", s.remote.ClientKey); err != nil {
				return nil, nil, err
			}
		}
		if s.token != "" {
			toks, err := readTokens(s.token)
			if err != nil {
				return nil, nil, err
			}
			s.remote.Token = toks[0]
		}
		r, err := ingest.NewRemote(s.remote)
		if err != nil {
			return nil, nil, err
		}
		sink, _, err := s.redact.wrap(r, "", e.logger())
		if err != nil {
			return nil, nil, err
		}
		sink, s.relevel = s.policy.wrap(sink)
		return sink, func() error { return nil }, nil
	}
	db, err := local.Open(s.dir, local.Options{Logger: e.logger(), Bulk: s.bulk, SegmentFormat: s.segmentFormat})
	if err != nil {
		return nil, nil, err
	}
	s.db = db
	signer, err := newSigner(s.dir, s.signingKey, db, e.logger())
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	sink, _, err := s.redact.wrap(db, s.dir, e.logger())
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	sink, s.relevel = s.policy.wrap(sink)
	return sink, func() error { return closeAndSign(db, signer) }, nil
}

func importCmd(e *env) *cobra.Command {
	var (
		sf       sinkFlags
		cluster  string
		maxEvent int
		progress string
	)
	cmd := &cobra.Command{
		Use:   "import FILE|DIR|GLOB|- ...",
		Short: "Import audit log files (rotated backups, .gz, cloud exports) into the store",
		Long: `import reads audit events from files and stores them. It takes the API
server's audit.log and its rotated backups (audit-2026-01-15T10-30-00.000.log,
oldest first), gzip-compressed files, stdin ("-"), and every format kubetrail
decodes: Event and EventList JSON lines, v1beta1, AKS (Event Hub records and
Log Analytics rows), EKS (CloudWatch Logs) and GKE (Cloud Audit Logs) exports.

Secret values, tokens and credentials are replaced by keyed markers before
anything is stored, unless --no-redact (docs/ingest.md, "Redaction").

--policy applies the team's audit policy to the events first, exactly as
the API server would have: requests it logs at level None and stages it
omits are left out, bodies above its level are removed (the level field
says the level applied), managedFields are removed when it says so. It
cannot add what was not logged: an event recorded below the policy's level
is kept as recorded. A summary line says how many events each case had
(docs/ingest.md, "Policy at ingest").

With --store clickhouse://HOST:8123/DB the events go to ClickHouse through
a collector, as serve --store sends them (docs/clickhouse.md): durable in
DATA/clickhouse-spool first, then shipped; import ends once ClickHouse has
them all (^C leaves the rest to ship at the next run).

Into the local store (--data), the events go straight into sealed
segments, without the write-ahead log, and are durable when import ends
with status 0; killed before, it keeps the segments it finished, and
running it again stores only what is missing.

Importing the same events twice adds nothing. A line that is not a usable
event is skipped and reported with file:line and why; the lines around it are
kept. The exit status is 0 when every line was used, 3 when some were skipped.`,
		Example: `  kubetrail import /var/log/kubernetes/audit/
  kubetrail import 'audit-*.log.gz' audit.log
  zcat old.log.gz | kubetrail import -
  kubetrail import --policy team-policy.yaml eks-audit-export.json`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			files, err := ingest.ExpandPaths(args)
			if err != nil {
				return err
			}
			sf.drain = 24 * time.Hour // until everything ships or ^C
			sf.bulk = true
			sink, closeSink, err := sf.open(cmd.Context(), e)
			if err != nil {
				return err
			}
			cfg := ingest.ImportConfig{Cluster: cluster, Limits: audit.Limits{MaxEventBytes: maxEvent}}
			showBar := progress == "always" || progress == "auto" && isTerminal(e.stderr)
			if showBar {
				cfg.Progress = func(p ingest.Progress) { drawProgress(e.stderr, p) }
			}
			if sf.store.url != "" {
				// A full spool empties as ClickHouse takes it: wait, as
				// tail does, saying so every few seconds.
				var said time.Time
				cfg.Waiting = func(err error, retryIn time.Duration) {
					if time.Since(said) >= 5*time.Second {
						said = time.Now()
						fmt.Fprintf(e.stderr, "\nimport: waiting for ClickHouse to take the collector's spool before sending more (retrying every %s; ^C stops, keeping what was stored): %v\n", retryIn, err)
					}
				}
			}
			sum, err := ingest.Import(cmd.Context(), sink, files, e.stdin, cfg)
			if cerr := closeSink(); err == nil {
				err = cerr
			}
			if sf.db != nil {
				// Bulk loaded events are durable only once Close wrote
				// their segments: those it could not are not stored.
				sum.Lost = sf.db.BulkLost()
				sum.Stored -= sum.Lost
			}
			if err == nil {
				// Import stops early, keeping what it stored, when the
				// context is cancelled: the import is not complete.
				err = stopped(cmd.Context())
			}
			printSummary(e.stderr, sum)
			if sf.relevel != nil {
				printPolicySummary(e.stderr, sf.policy.file, sf.relevel.Counts())
			}
			if err != nil {
				return err
			}
			if sum.ProblemCount > 0 {
				return exitCode(3)
			}
			return nil
		},
	}
	sf.add(cmd)
	cmd.Flags().StringVar(&cluster, "cluster", "default", "cluster name to tag the events with")
	cmd.Flags().IntVar(&maxEvent, "max-event-bytes", audit.DefaultMaxEventBytes, "largest single event accepted")
	cmd.Flags().StringVar(&progress, "progress", "auto", "progress bar: auto (on a terminal), always, never")
	return cmd
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

func drawProgress(w io.Writer, p ingest.Progress) {
	const width = 30
	frac := 0.0
	if p.TotalBytes > 0 {
		frac = min(float64(p.Bytes)/float64(p.TotalBytes), 1)
	}
	bar := make([]byte, width)
	for i := range bar {
		if float64(i) < frac*width {
			bar[i] = '='
		} else {
			bar[i] = ' '
		}
	}
	fmt.Fprintf(w, "\r[%s] %5.1f%%  %s  %d events  %s", bar, frac*100, humanBytes(p.Bytes), p.Events, escape.Line(p.File))
	if p.Done {
		fmt.Fprintln(w)
	}
}

func printSummary(w io.Writer, s ingest.Summary) {
	rate := 0.0
	if s.Elapsed > 0 {
		rate = float64(s.Stored+s.Duplicates) / s.Elapsed.Seconds()
	}
	lost := ""
	if s.Lost > 0 {
		lost = fmt.Sprintf(", %d lost (not written: see the error)", s.Lost)
	}
	fmt.Fprintf(w, "imported %d files, %d lines (%s) in %s: %d events stored, %d already stored%s, %d lines skipped (%.0f events/s)\n",
		s.Files, s.Lines, humanBytes(s.Bytes), s.Elapsed.Round(time.Millisecond), s.Stored, s.Duplicates, lost, s.ProblemCount, rate)
	for _, p := range s.Problems {
		fmt.Fprintf(w, "  skipped %s\n", escape.Line(p.String()))
	}
	if extra := s.ProblemCount - int64(len(s.Problems)); extra > 0 {
		fmt.Fprintf(w, "  ... and %d more skipped lines\n", extra)
	}
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
