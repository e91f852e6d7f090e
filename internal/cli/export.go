package cli

import (
	"bufio"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/kubetrail/kubetrail/internal/store/local"
)

func exportCmd(e *env) *cobra.Command {
	var (
		dir          string
		since, until string
		cluster      string
	)
	cmd := &cobra.Command{
		Use:   "export",
		Short: "Write stored events as JSON lines, exactly as received",
		Long: `export writes every stored event, in arrival order, as one JSON line each:
a complete audit.k8s.io Event, byte for byte the line the API server's own log
backend writes for it (events that arrived through the webhook get the
"kind":"Event","apiVersion":... the webhook leaves out). An event in which
redaction replaced secret values is written as stored: the same bytes with
only those values (and the kubetrail.io/redacted mark) changed. It can run
while serve or tail is writing to the same folder.`,
		Example: `  kubetrail export > audit.jsonl
  kubetrail export --since 24h --cluster prod | jq 'select(.verb=="delete")'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts := local.ScanOptions{Cluster: cluster}
			var err error
			if opts.Since, err = parseTimeFlag("--since", since); err != nil {
				return err
			}
			if opts.Until, err = parseTimeFlag("--until", until); err != nil {
				return err
			}
			w := bufio.NewWriterSize(e.stdout, 1<<20)
			ctx := cmd.Context()
			err = local.Scan(dir, opts, func(s local.Stored) error {
				if err := stopped(ctx); err != nil {
					return err
				}
				w.Write(s.Raw)
				return w.WriteByte('\n')
			})
			if ferr := w.Flush(); err == nil {
				err = ferr
			}
			return err
		},
	}
	addDataFlag(cmd, &dir)
	cmd.Flags().StringVar(&since, "since", "", "only events at or after this time: RFC 3339, or a duration ago such as 2h or 7d")
	cmd.Flags().StringVar(&until, "until", "", "only events before this time: RFC 3339, or a duration ago")
	cmd.Flags().StringVar(&cluster, "cluster", "", "only events of this cluster")
	return cmd
}

// parseTimeFlag reads RFC 3339 or a duration before now (30m, 2h, 7d) as
// unix microseconds; empty is 0 (unbounded).
func parseTimeFlag(name, v string) (int64, error) {
	if v == "" {
		return 0, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return t.UnixMicro(), nil
	}
	d, err := parseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("%s %q: want RFC 3339 (2026-01-02T15:04:05Z) or a duration such as 90m, 2h, 7d", name, v)
	}
	return time.Now().Add(-d).UnixMicro(), nil
}

// parseDuration is time.ParseDuration plus days (d) and weeks (w).
func parseDuration(v string) (time.Duration, error) {
	if n := len(v); n > 1 && (v[n-1] == 'd' || v[n-1] == 'w') {
		var k float64
		if _, err := fmt.Sscanf(v[:n-1], "%g", &k); err != nil {
			return 0, err
		}
		unit := 24 * time.Hour
		if v[n-1] == 'w' {
			unit *= 7
		}
		return time.Duration(k * float64(unit)), nil
	}
	return time.ParseDuration(v)
}
