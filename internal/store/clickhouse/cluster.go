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
// where ReplacingMergeTree merges them (answers count keys meanwhile).
//
// 18.16 runs ON CLUSTER DDL only through ZooKeeper, so Setup connects to
// each server itself, at the host system.clusters names and the port of
// the store URL (every server's HTTP interface on the same port, as a
// cluster's servers usually are).

// shardingKey routes an event's copies to one shard.
const shardingKey = "cityHash64(key)"

// replicatedEngine is events_local's engine when the cluster's shards have
// replicas (18.16's syntax, current releases take it too): the replicas of
// a shard share one ZooKeeper path, /clickhouse/tables/{shard}/DB/
// events_local, and each names itself by its {replica} macro. Its last
// argument is ReplacingMergeTree's version column, so the de-duplication
// key (the sorting key) and the copy kept (the largest ver, the first
// arrival) are the same as on one server.
func replicatedEngine(db string) string {
	return "ReplicatedReplacingMergeTree(" + quote("/clickhouse/tables/{shard}/"+db+"/events_local") + ", '{replica}', ver)"
}

// clusterDDL returns the statements that create the store on one server
// of cluster; replicated says whether events_local is replicated.
func clusterDDL(db, cluster string, replicated bool) ([]string, error) {
	stmts := ddl(db)
	const plain = ".events (\n"
	i := slices.IndexFunc(stmts, func(s string) bool { return strings.Contains(s, plain) })
	if i < 0 {
		return nil, fmt.Errorf("BUG: no CREATE TABLE %s.events in the schema", db)
	}
	stmts[i] = strings.Replace(stmts[i], plain, ".events_local (\n", 1)
	if replicated {
		const engine = "ENGINE = ReplacingMergeTree(ver)"
		if !strings.Contains(stmts[i], engine) {
			return nil, fmt.Errorf("BUG: no %s in the schema of %s.events", engine, db)
		}
		stmts[i] = strings.Replace(stmts[i], engine, "ENGINE = "+replicatedEngine(db), 1)
	}
	dist := fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s.events AS %s.events_local ENGINE = Distributed(%s, %s, events_local, %s)",
		db, db, quote(cluster), quote(db), shardingKey)
	return append(stmts, dist), nil
}

// replica is one server of a cluster, as system.clusters lists it.
type replica struct {
	shard, replica int
	host           string
	// local is system.clusters' is_local on the server asked: the
	// server itself.
	local bool
	// endpoint is where setup reaches it (host and the store URL's port).
	endpoint string
}

// clusterReplicas reads the servers of cluster from the server c speaks to.
func clusterReplicas(ctx context.Context, c *client, cluster string) ([]replica, error) {
	var out []replica
	sql := "SELECT toUInt64(shard_num), toUInt64(replica_num), host_name, toUInt64(is_local) FROM system.clusters WHERE cluster = " + quote(cluster) + " ORDER BY shard_num, replica_num FORMAT RowBinary"
	err := c.query(ctx, sql, func(body io.Reader) error {
		r := newRowReader(body)
		for r.more() {
			rp := replica{shard: int(r.u64()), replica: int(r.u64()), host: r.string(), local: r.u64() != 0}
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

// clusterEndpoints reads the servers of cfg.Cluster from the server of
// cfg, each with the endpoint kubetrail reaches it at.
func clusterEndpoints(ctx context.Context, cfg Config) ([]replica, error) {
	reps, err := clusterReplicas(ctx, newClient(cfg), cfg.Cluster)
	if err != nil {
		return nil, err
	}
	u, err := url.Parse(cfg.Endpoint)
	if err != nil {
		return nil, fmt.Errorf("BUG: endpoint %q: %w", cfg.Endpoint, err)
	}
	for i := range reps {
		reps[i].endpoint = u.Scheme + "://" + net.JoinHostPort(reps[i].host, u.Port())
	}
	return reps, nil
}

// tableEngine returns the engine of db.table on the server c speaks to.
func tableEngine(ctx context.Context, c *client, db, table string) (string, error) {
	var engine string
	sql := "SELECT engine FROM system.tables WHERE database = " + quote(db) + " AND name = " + quote(table) + " FORMAT RowBinary"
	err := c.query(ctx, sql, func(body io.Reader) error {
		r := newRowReader(body)
		for r.more() {
			engine = r.string()
		}
		return r.err
	})
	if err != nil {
		return "", fmt.Errorf("read the engine of %s.%s at %s: %w", db, table, c.cfg.Endpoint, err)
	}
	return engine, nil
}

// hasReplicas reports whether a shard of reps has more than one server.
func hasReplicas(reps []replica) bool {
	return slices.ContainsFunc(reps, func(r replica) bool { return r.replica > 1 })
}

// setupCluster creates the store on the server of cfg's URL and on every
// server of cfg.Cluster. When a shard has replicas, events_local is
// replicated on every server (replicated.go says what is checked first).
func setupCluster(ctx context.Context, cfg Config) error {
	reps, err := clusterEndpoints(ctx, cfg)
	if err != nil {
		return err
	}
	client := func(endpoint string) *client {
		sc := cfg
		sc.Endpoint = endpoint
		return newClient(sc)
	}
	replicated := hasReplicas(reps)
	var endpoints []string
	if replicated {
		// Only the cluster's own servers: a server outside it would get
		// an events_local that is a replica of whatever its macros name.
		if !slices.ContainsFunc(reps, func(r replica) bool { return r.local }) {
			return fmt.Errorf("cluster %s has replicas, and the server of --store (%s) is not one of its servers (none is_local in its system.clusters): name one of them", cfg.Cluster, cfg.Endpoint)
		}
		if err := checkReplicaConfig(ctx, cfg.Cluster, reps, client); err != nil {
			return err
		}
	} else {
		endpoints = append(endpoints, cfg.Endpoint)
	}
	for _, r := range reps {
		if !slices.Contains(endpoints, r.endpoint) {
			endpoints = append(endpoints, r.endpoint)
		}
	}
	stmts, err := clusterDDL(cfg.Database, cfg.Cluster, replicated)
	if err != nil {
		return err
	}
	for _, e := range endpoints {
		c := client(e)
		if err := setupServer(ctx, c, cfg.Database, stmts); err != nil {
			return err
		}
		if err := checkClusterTables(ctx, c, cfg.Database, replicated); err != nil {
			return err
		}
	}
	if replicated {
		return checkReplicaPaths(ctx, cfg.Cluster, cfg.Database, reps, client)
	}
	return nil
}

// checkClusterTables refuses a server whose events table is not
// Distributed (a store set up there without ?cluster=, which CREATE ...
// IF NOT EXISTS would leave as it is), or whose events_local is not the
// engine setup makes: with replicas, a plain ReplacingMergeTree (made when
// the cluster had none) would keep each replica's rows to itself.
func checkClusterTables(ctx context.Context, c *client, db string, replicated bool) error {
	engines := map[string]string{}
	sql := "SELECT name, engine FROM system.tables WHERE database = " + quote(db) + " AND name IN ('events', 'events_local') FORMAT RowBinary"
	err := c.query(ctx, sql, func(body io.Reader) error {
		r := newRowReader(body)
		for r.more() {
			name, engine := r.string(), r.string()
			engines[name] = engine
		}
		return r.err
	})
	if err != nil {
		return fmt.Errorf("read the engines of %s.events and %s.events_local at %s: %w", db, db, c.cfg.Endpoint, err)
	}
	if e := engines["events"]; e != "Distributed" {
		return fmt.Errorf("ClickHouse database %s at %s holds a kubetrail store made without ?cluster= (%s.events is %s, not Distributed); setup does not convert it: use a new database, or kubetrail migrate", db, c.cfg.Endpoint, db, e)
	}
	local, want := engines["events_local"], "ReplacingMergeTree"
	if replicated {
		want = "ReplicatedReplacingMergeTree"
	}
	switch {
	case local == want:
	case local == "ReplicatedReplacingMergeTree" && !replicated:
		// Replicated with one replica per shard works as the plain engine
		// does: kept, so that replicas can be added to the cluster.
	case local == "ReplacingMergeTree" && replicated:
		return fmt.Errorf("ClickHouse database %s at %s holds a kubetrail store made when cluster had no replicas (%s.events_local is ReplacingMergeTree, not ReplicatedReplacingMergeTree): its replicas would not share rows, and setup does not convert it: use a new database, or kubetrail migrate", db, c.cfg.Endpoint, db)
	default:
		return fmt.Errorf("ClickHouse database %s at %s: %s.events_local is %q, not %s: not a table this kubetrail made", db, c.cfg.Endpoint, db, local, want)
	}
	return nil
}
