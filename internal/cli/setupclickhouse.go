package cli

import (
	"errors"
	"fmt"

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

clickhouses:// speaks HTTPS (port 8443 by default); ca=FILE names the CAs
to trust instead of the system's. password_file=FILE reads the password
from a file, so that it is in no command line; errors print the URL with
any password as xxxxx.

With ?cluster=NAME (a cluster of the servers' remote_servers) it creates,
on the server of the URL and on every server system.clusters lists for
NAME (reached at the URL's port), a local table events_local and a
Distributed table events over them, sharded by the event key so that
every copy of an event lands on one shard and counts once. ON CLUSTER
needs ZooKeeper on 18.16, so each server is set up directly. When shards
have replicas, events_local is a ReplicatedReplacingMergeTree at
/clickhouse/tables/{shard}/DB/events_local on every server: each needs
<zookeeper> and the macros {shard} and {replica}, which setup checks
against the cluster before it creates anything; docs/clickhouse.md.

query, stats, export and the investigations then read the store with
--store URL.`,
		Example: `  kubetrail setup clickhouse --store clickhouse://127.0.0.1:8123/kubetrail
  kubetrail query 'verb=delete' --store clickhouse://127.0.0.1:8123/kubetrail
  kubetrail setup clickhouse --store 'clickhouses://kubetrail@ch-1:8443/audit?cluster=logs&password_file=/etc/kubetrail/ch-password&ca=/etc/kubetrail/ch-ca.pem'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if url == "" {
				return errors.New("--store is required: " + store.URLForms)
			}
			if !store.IsClickHouse(url) {
				return fmt.Errorf("--store %q: want %s", clickhouse.Redact(url), store.URLForms)
			}
			cfg, err := clickhouse.ParseURL(url)
			if err != nil {
				return fmt.Errorf("--store: %w", err)
			}
			if err := clickhouse.Setup(cmd.Context(), cfg); err != nil {
				return err
			}
			where := cfg.Endpoint
			if cfg.Cluster != "" {
				where = "every server of cluster " + cfg.Cluster + " (through " + cfg.Endpoint + ")"
			}
			fmt.Fprintf(e.stdout, "kubetrail store ready in ClickHouse database %s at %s (schema version %d)\n", cfg.Database, where, clickhouse.SchemaVersion)
			return nil
		},
	}
	cmd.Flags().StringVar(&url, "store", "", "the store to create: "+store.URLForms)
	return cmd
}
