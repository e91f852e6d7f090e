package cli

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kubetrail/kubetrail/internal/store"
	"github.com/kubetrail/kubetrail/internal/store/clickhouse"
)

func setupClickHouseCmd(e *env) *cobra.Command {
	var url string
	cmd := &cobra.Command{
		Use:   "clickhouse --store clickhouse://HOST:8123/DB",
		Short: "Create kubetrail's database and tables in ClickHouse",
		Long: `clickhouse creates, over ClickHouse's HTTP interface, the database DB and
the tables kubetrail stores events in (docs/adr/0013-clickhouse-store-phase-1.md):
events, a ReplacingMergeTree partitioned by day and ordered by cluster,
resource, namespace, name, verb and time, with a column per filter field
and the stored line kept so that export gives back the exact bytes; and
kubetrail_meta, which records the schema version. It runs on ClickHouse
18.16 (Debian 12) and on current releases.

It is idempotent: run again, it changes nothing. A database whose tables
another kubetrail schema version made is refused, not changed.

query, stats and export then read the store with --store URL.`,
		Example: `  kubetrail setup clickhouse --store clickhouse://127.0.0.1:8123/kubetrail
  kubetrail query 'verb=delete' --store clickhouse://127.0.0.1:8123/kubetrail`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if url == "" {
				return errors.New("--store is required: " + store.URLForms)
			}
			if !strings.HasPrefix(url, "clickhouse://") {
				return fmt.Errorf("--store %q: want %s", url, store.URLForms)
			}
			cfg, err := clickhouse.ParseURL(url)
			if err != nil {
				return fmt.Errorf("--store: %w", err)
			}
			if err := clickhouse.Setup(cmd.Context(), cfg); err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "kubetrail store ready in ClickHouse database %s at %s (schema version %d)\n", cfg.Database, cfg.Endpoint, clickhouse.SchemaVersion)
			return nil
		},
	}
	cmd.Flags().StringVar(&url, "store", "", "the store to create: "+store.URLForms)
	return cmd
}
