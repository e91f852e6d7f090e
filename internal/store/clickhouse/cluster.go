package clickhouse

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/url"
	"slices"
	"strings"
)

// A store on a cluster (Config.Cluster) is, on every server: events_local,
// the events table as one server has it (ReplacingMergeTree), holding that
// shard's part; events, a Distributed table over the events_local of every
// shard, which every read and insert names, so that the rest of the
// package does not know it is on a cluster; and kubetrail_meta, so that
// Open works against any server. Rows go to the shard cityHash64(key)
// picks: every copy of an event has one key, so copies meet on one shard,
// where ReplacingMergeTree and FINAL count them once.
//
// 18.16 runs ON CLUSTER DDL only through ZooKeeper, so Setup connects to
// each server itself, at the host system.clusters names and the port of
// the store URL (every server's HTTP interface on the same port, as a
// cluster's servers usually are).

// shardingKey routes an event's copies to one shard.
const shardingKey = "cityHash64(key)"

// clusterDDL returns the statements that create the store on one server
// of cluster.
func clusterDDL(db, cluster string) ([]string, error) {
	stmts := ddl(db)
	const plain = ".events (\n"
	i := slices.IndexFunc(stmts, func(s string) bool { return strings.Contains(s, plain) })
	if i < 0 {
		return nil, fmt.Errorf("BUG: no CREATE TABLE %s.events in the schema", db)
	}
	stmts[i] = strings.Replace(stmts[i], plain, ".events_local (\n", 1)
	dist := fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s.events AS %s.events_local ENGINE = Distributed(%s, %s, events_local, %s)",
		db, db, quote(cluster), quote(db), shardingKey)
	return append(stmts, dist), nil
}

// replica is one server of a cluster, as system.clusters lists it.
type replica struct {
	shard, replica int
	host           string
}

// clusterReplicas reads the servers of cluster from the server c speaks to.
func clusterReplicas(ctx context.Context, c *client, cluster string) ([]replica, error) {
	var out []replica
	sql := "SELECT toUInt64(shard_num), toUInt64(replica_num), host_name FROM system.clusters WHERE cluster = " + quote(cluster) + " ORDER BY shard_num, replica_num FORMAT RowBinary"
	err := c.query(ctx, sql, func(body io.Reader) error {
		r := newRowReader(body)
		for r.more() {
			rp := replica{shard: int(r.u64()), replica: int(r.u64()), host: r.string()}
			if r.err != nil {
				break
			}
			out = append(out, rp)
		}
		return r.err
	})
	if err != nil {
		return nil, fmt.Errorf("read cluster %s from system.clusters at %s: %w", cluster, c.cfg.Endpoint, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("ClickHouse at %s has no cluster %q in its remote_servers (see SELECT cluster FROM system.clusters)", c.cfg.Endpoint, cluster)
	}
	return out, nil
}

// setupCluster creates the store on the server of cfg's URL and on every
// server of cfg.Cluster. A cluster whose shards have replicas is refused:
// they need ReplicatedReplacingMergeTree, hence ZooKeeper, which this
// version does not set up.
func setupCluster(ctx context.Context, cfg Config) error {
	entry := newClient(cfg)
	reps, err := clusterReplicas(ctx, entry, cfg.Cluster)
	if err != nil {
		return err
	}
	for _, r := range reps {
		if r.replica > 1 {
			return fmt.Errorf("cluster %s: shard %d has %d or more replicas; kubetrail setup clickhouse makes one ReplacingMergeTree per shard and no replicated tables yet (they need ZooKeeper): use a cluster of one replica per shard", cfg.Cluster, r.shard, r.replica)
		}
	}
	stmts, err := clusterDDL(cfg.Database, cfg.Cluster)
	if err != nil {
		return err
	}
	u, err := url.Parse(cfg.Endpoint)
	if err != nil {
		return fmt.Errorf("BUG: endpoint %q: %w", cfg.Endpoint, err)
	}
	endpoints := []string{cfg.Endpoint}
	for _, r := range reps {
		e := u.Scheme + "://" + net.JoinHostPort(r.host, u.Port())
		if !slices.Contains(endpoints, e) {
			endpoints = append(endpoints, e)
		}
	}
	for _, e := range endpoints {
		sc := cfg
		sc.Endpoint = e
		c := newClient(sc)
		if err := setupServer(ctx, c, cfg.Database, stmts); err != nil {
			return err
		}
		if err := checkClusterTables(ctx, c, cfg.Database); err != nil {
			return err
		}
	}
	return nil
}

// checkClusterTables refuses a server whose events table is not
// Distributed: a store set up there without ?cluster=, which CREATE ...
// IF NOT EXISTS would leave as it is.
func checkClusterTables(ctx context.Context, c *client, db string) error {
	var engine string
	sql := "SELECT engine FROM system.tables WHERE database = " + quote(db) + " AND name = 'events' FORMAT RowBinary"
	err := c.query(ctx, sql, func(body io.Reader) error {
		r := newRowReader(body)
		if r.more() {
			engine = r.string()
		}
		return r.err
	})
	if err != nil {
		return fmt.Errorf("read the engine of %s.events at %s: %w", db, c.cfg.Endpoint, err)
	}
	if engine != "Distributed" {
		return fmt.Errorf("ClickHouse database %s at %s holds a kubetrail store made without ?cluster= (%s.events is %s, not Distributed); setup does not convert it: use a new database, or kubetrail migrate", db, c.cfg.Endpoint, db, engine)
	}
	return nil
}
