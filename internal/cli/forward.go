package cli

import (
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/kubetrail/kubetrail/internal/escape"
	"github.com/kubetrail/kubetrail/internal/forward"
	"github.com/kubetrail/kubetrail/internal/query"
	"github.com/kubetrail/kubetrail/internal/store/local"
)

var cursorName = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$`) })

func forwardCmd(e *env) *cobra.Command {
	var (
		dir      string
		to       string
		tf       timeFlags
		cluster  string
		cursor   string
		retryFor time.Duration
	)
	cmd := &cobra.Command{
		Use:   "forward --to URL [FILTER]",
		Short: "Send stored events to a SIEM: syslog, webhook, Splunk HEC, Elasticsearch, OTLP, Kafka",
		Long: `forward sends the stored events that FILTER (the query language, docs/query.md)
and --since/--until select, in arrival order, to the destination --to, and
exits 0 once the destination has acknowledged every one of them: an HTTP 2xx
(and, where the protocol has one, Elasticsearch's per-item result or Splunk's
indexer acknowledgement), every record acknowledged by Kafka with acks=all,
bytes written for syslog. A failing destination is retried with backoff;
after --retry-for of failures in a row forward exits 1 with the
destination's last error.

Destinations (settings after #, docs/forwarding.md):
  syslog+tcp://HOST:514, syslog+tls://HOST:6514   RFC 5424, octet counting, the event JSON as MSG
  webhook+https://HOST/PATH                       an EventList per batch, or #format=jsonl
  splunk+https://TOKEN@HOST:8088                  HEC event endpoint, sourcetype kube:apiserver:audit, #ack=true
  elasticsearch+https://USER:PASS@HOST:9200/INDEX bulk create, _id from the event key (no duplicates)
  otlp+http://HOST:4318                           OTLP/HTTP logs, JSON encoding
  kafka://BROKER[,BROKER...]/TOPIC, kafkas://...  a record per event, key the event key, idempotent, acks=all

Without --cursor, every run sends every match again. With --cursor NAME the
position reached is kept in DATA/forward/NAME.cursor, and the next run with
the same NAME goes on from there: a cron job that runs forward --cursor
sends each event at least once. Events are sent as stored: redacted at
ingest. It can run while serve writes to the same folder.`,
		Example: `  kubetrail forward --to syslog+tcp://siem.example:514 --since 24h
  kubetrail forward --to 'splunk+https://siem.example:8088#token_file=/etc/kubetrail/hec&ack=true' 'resource=secrets'
  kubetrail forward --to elasticsearch+https://elastic:pw@es.example:9200/k8s-audit --cursor es`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if to == "" {
				return errors.New("--to URL is required: the destination (see kubetrail forward --help)")
			}
			now := time.Now()
			src := ""
			if len(args) == 1 && strings.TrimSpace(args[0]) != "" {
				src = args[0]
				if _, err := query.CompileAt(src, now); err != nil {
					var qe *query.Error
					if asQueryError(err, &qe) {
						fmt.Fprintln(e.stderr, qe.Format(src))
						return exitCode(2)
					}
					return err
				}
			}
			sel := local.ScanOptions{Cluster: cluster}
			var err error
			if sel.Since, sel.Until, err = tf.bounds(now); err != nil {
				return err
			}
			if retryFor <= 0 {
				return fmt.Errorf("--retry-for %s: want a positive duration such as 1m", retryFor)
			}
			opts := forward.Options{Log: e.logger(), RetryFor: retryFor}
			if cursor != "" {
				if !cursorName().MatchString(cursor) {
					return fmt.Errorf("--cursor %q: want a name of letters, digits, '.', '_' and '-'", cursor)
				}
				opts.Cursor = filepath.Join(dir, forward.Dir, cursor+".cursor")
			}
			d, err := forward.NewRegistry(forward.Env{}).Open(to, src, now)
			if err != nil {
				return fmt.Errorf("--to: %w", err)
			}
			defer d.Sender.Close()
			f, err := forward.New(dir, d, local.Pos{}, opts)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			err = f.Once(ctx, sel)
			st := f.Stats()
			fmt.Fprintf(e.stderr, "kubetrail: forwarded %d events to %s in %d batches", st.Events, escape.Text(d.Name), st.Batches)
			if st.Filtered > 0 {
				fmt.Fprintf(e.stderr, ", %d left out by the filter", st.Filtered)
			}
			if st.Failures > 0 {
				fmt.Fprintf(e.stderr, ", %d failed sends retried", st.Failures)
			}
			if st.Redelivered > 0 {
				fmt.Fprintf(e.stderr, ", %d sent again (in flight when the last run stopped)", st.Redelivered)
			}
			if st.Existing > 0 {
				fmt.Fprintf(e.stderr, ", %d already there", st.Existing)
			}
			if st.Rejected > 0 {
				fmt.Fprintf(e.stderr, ", %d rejected by the destination", st.Rejected)
			}
			fmt.Fprintln(e.stderr)
			if err == nil && ctx.Err() != nil {
				err = fmt.Errorf("interrupted: %w", ctx.Err())
			}
			return err
		},
	}
	addDataFlag(cmd, &dir)
	tf.add(cmd)
	f := cmd.Flags()
	f.StringVar(&to, "to", "", "destination URL: syslog+tcp://, syslog+tls://, webhook+https://, splunk+https://, elasticsearch+https://, otlp+http://, kafka://, kafkas://; settings after # (docs/forwarding.md)")
	f.StringVar(&cluster, "cluster", "", "only events of this cluster")
	f.StringVar(&cursor, "cursor", "", "keep the position reached in DATA/forward/NAME.cursor and go on from it at the next run with the same NAME")
	f.DurationVar(&retryFor, "retry-for", time.Minute, "give up, exit 1, after the destination has failed for this long in a row")
	return cmd
}
