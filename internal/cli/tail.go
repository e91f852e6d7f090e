package cli

import (
	"time"

	"github.com/spf13/cobra"

	"github.com/kubetrail/kubetrail/internal/audit"
	"github.com/kubetrail/kubetrail/internal/ingest"
)

func tailCmd(e *env) *cobra.Command {
	var (
		sf       sinkFlags
		cfg      ingest.TailConfig
		stateDir string
		maxEvent int
	)
	cmd := &cobra.Command{
		Use:   "tail FILE",
		Short: "Follow a live audit.log across rotation and store or forward its events",
		Long: `tail follows the API server's audit log as it grows. It survives rotation by
rename (the API server's own --audit-log-maxsize rotation) and by copytruncate,
and keeps a checkpoint (file identity and offset) that moves only after a batch
is durable, so a restart resumes without gaps or duplicates. With --server it
ships to a central kubetrail serve instead of the local folder: run one per
control-plane node. Secret values, tokens and credentials are replaced by
keyed markers before anything is stored, unless --no-redact (with --server,
the server does it). --policy applies the team's audit policy to each event
first, as the API server would have (docs/ingest.md, "Policy at ingest").
With --store clickhouse://HOST:8123/DB it ships to ClickHouse through a
collector (DATA/clickhouse-spool, docs/clickhouse.md); the checkpoint
moves once a batch is durable there.`,
		Example: `  kubetrail tail /var/log/kubernetes/audit/audit.log
  kubetrail tail /var/log/kubernetes/audit/audit.log --server https://kubetrail.example:8443 --token-file /etc/kubetrail/token --ca ca.crt`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			// After ^C or SIGTERM; the rest ships at the next start.
			sf.drain, sf.drainAfterStop = 10*time.Second, true
			sf.store.startDown = true
			sink, closeSink, err := sf.open(cmd.Context(), e)
			if err != nil {
				return err
			}
			cfg.Path = args[0]
			cfg.StateDir = stateDir
			if cfg.StateDir == "" {
				cfg.StateDir = sf.dir
			}
			cfg.Logger = e.logger()
			cfg.Limits = audit.Limits{MaxEventBytes: maxEvent}
			err = ingest.Tail(cmd.Context(), sink, cfg)
			if cerr := closeSink(); err == nil {
				err = cerr
			}
			return err
		},
	}
	sf.add(cmd)
	cmd.Flags().StringVar(&cfg.Cluster, "cluster", "default", "cluster name to tag the events with")
	cmd.Flags().StringVar(&stateDir, "state", "", "folder for the checkpoint (default: the --data folder)")
	cmd.Flags().DurationVar(&cfg.Poll, "poll", 0, "how often to look for new lines and rotation (default 200ms)")
	cmd.Flags().IntVar(&maxEvent, "max-event-bytes", audit.DefaultMaxEventBytes, "largest single event accepted")
	return cmd
}
