package cli

import (
	"bufio"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/kubetrail/kubetrail/internal/store/local"
)

func exportCmd(e *env) *cobra.Command {
	var (
		dir     string
		tf      timeFlags
		cluster string
		st      storeFlag
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
while serve or tail is writing to the same folder.

--store clickhouse://HOST:8123/DB exports a ClickHouse store (made by
kubetrail setup clickhouse) instead of --data: the same bytes, in the
order the events arrived there.`,
		Example: `  kubetrail export > audit.jsonl
  kubetrail export --since 24h --cluster prod | jq 'select(.verb=="delete")'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts := local.ScanOptions{Cluster: cluster}
			var err error
			if opts.Since, opts.Until, err = tf.bounds(time.Now()); err != nil {
				return err
			}
			w := bufio.NewWriterSize(e.stdout, 1<<20)
			ctx := cmd.Context()
			write := func(s local.Stored) error {
				if err := stopped(ctx); err != nil {
					return err
				}
				w.Write(s.Raw)
				return w.WriteByte('\n')
			}
			if st.url != "" {
				r, err := st.open(ctx, nil)
				if err != nil {
					return err
				}
				defer r.Close()
				err = r.Export(ctx, opts, write)
				if ferr := w.Flush(); err == nil {
					err = ferr
				}
				return err
			}
			if f, ok := e.stdout.(*os.File); ok {
				// Straight from the store's buffers: no copy.
				var raws [][]byte
				stop := func() error { return stopped(ctx) }
				return local.ScanBatches(dir, opts, func(batch []local.Stored) error {
					raws = raws[:0]
					for _, s := range batch {
						raws = append(raws, s.Raw)
					}
					err := writeLines(f, raws, stop)
					clear(raws)
					return err
				})
			}
			err = local.Scan(dir, opts, write)
			if ferr := w.Flush(); err == nil {
				err = ferr
			}
			return err
		},
	}
	addDataFlag(cmd, &dir)
	tf.add(cmd)
	cmd.Flags().StringVar(&cluster, "cluster", "", "only events of this cluster")
	st.add(cmd)
	return cmd
}
