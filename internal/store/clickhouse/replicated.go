package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"io"
)

// On a cluster whose shards have replicas, events_local is a
// ReplicatedReplacingMergeTree (cluster.go). Its replicas share rows only
// when every server has ZooKeeper and macros that agree with the
// cluster's remote_servers: the replicas of one shard one {shard}, the
// shards different ones, and each replica of a shard its own {replica}.
// A mistake there does not fail CREATE TABLE: it makes replicas that
// never exchange a row, or shards that replicate into each other. Setup
// checks before it creates anything, and checks the tables' ZooKeeper
// paths afterwards (a table made earlier with other macros).

// checkReplicaConfig checks every server of reps for ZooKeeper and
// macros, and the macros against the cluster's shards.
func checkReplicaConfig(ctx context.Context, cluster string, reps []replica, client func(endpoint string) *client) error {
	idents := make([]ident, len(reps))
	for i, r := range reps {
		c := client(r.endpoint)
		if err := checkZooKeeper(ctx, c, cluster, r); err != nil {
			return err
		}
		m, err := macros(ctx, c)
		if err != nil {
			return err
		}
		if idents[i], err = macroIdent(cluster, r, m); err != nil {
			return err
		}
	}
	return checkIdents(cluster, reps, idents, "macro {shard}", "macro {replica}")
}

// macroIdent returns the shard and replica that r's macros m name.
func macroIdent(cluster string, r replica, m map[string]string) (ident, error) {
	for _, name := range []string{"shard", "replica"} {
		if m[name] == "" {
			return ident{}, fmt.Errorf("cluster %s has replicas, and ClickHouse at %s (shard %d, replica %d) has no macro {%s}: its config needs <macros><shard>…</shard><replica>…</replica></macros>, the shard's name (the same on its replicas) and the replica's (docs/clickhouse.md)", cluster, r.endpoint, r.shard, r.replica, name)
		}
	}
	return ident{group: m["shard"], member: m["replica"]}, nil
}

// checkZooKeeper fails unless the server has a ZooKeeper it can reach.
// Without <zookeeper> in its config, 18.16 has no system.zookeeper table.
func checkZooKeeper(ctx context.Context, c *client, cluster string, r replica) error {
	err := c.exec(ctx, "SELECT count() FROM system.zookeeper WHERE path = '/'")
	var se *ServerError
	if errors.As(err, &se) && se.Code == codeUnknownTable {
		return fmt.Errorf("cluster %s has replicas, and ClickHouse at %s (shard %d, replica %d) has no ZooKeeper: replicated tables need <zookeeper> in every server's config (docs/clickhouse.md)", cluster, c.cfg.Endpoint, r.shard, r.replica)
	}
	if err != nil {
		return fmt.Errorf("cluster %s: ClickHouse at %s (shard %d, replica %d) cannot read its ZooKeeper: %w", cluster, c.cfg.Endpoint, r.shard, r.replica, err)
	}
	return nil
}

// macros reads a server's macros (system.macros).
func macros(ctx context.Context, c *client) (map[string]string, error) {
	m := map[string]string{}
	err := c.query(ctx, "SELECT macro, substitution FROM system.macros FORMAT RowBinary", func(body io.Reader) error {
		r := newRowReader(body)
		for r.more() {
			k, v := r.string(), r.string()
			m[k] = v
		}
		return r.err
	})
	if err != nil {
		return nil, fmt.Errorf("read the macros of ClickHouse at %s: %w", c.cfg.Endpoint, err)
	}
	return m, nil
}

// checkReplicaPaths checks that the replicas of each shard share one
// ZooKeeper path for db.events_local, that shards have different ones,
// and that replica names differ within a shard (system.replicas).
func checkReplicaPaths(ctx context.Context, cluster, db string, reps []replica, client func(endpoint string) *client) error {
	idents := make([]ident, len(reps))
	for i, r := range reps {
		c := client(r.endpoint)
		var rows []ident
		sql := "SELECT zookeeper_path, replica_name FROM system.replicas WHERE database = " + quote(db) + " AND table = 'events_local' FORMAT RowBinary"
		err := c.query(ctx, sql, func(body io.Reader) error {
			rr := newRowReader(body)
			for rr.more() {
				id := ident{group: rr.string(), member: rr.string()}
				rows = append(rows, id)
			}
			return rr.err
		})
		if err != nil {
			return fmt.Errorf("read the replication of %s.events_local at %s: %w", db, r.endpoint, err)
		}
		if len(rows) != 1 {
			return fmt.Errorf("ClickHouse at %s: %s.events_local is not replicated (system.replicas has no row for it)", r.endpoint, db)
		}
		idents[i] = rows[0]
	}
	return checkIdents(cluster, reps, idents, db+".events_local's ZooKeeper path", db+".events_local's replica name")
}

// ident is what a server calls its shard (group) and itself (member).
type ident struct{ group, member string }

// checkIdents checks idents[i], reps[i]'s names, against the cluster's
// shards: one group per shard, a different one for each shard, and a
// different member for each replica of a shard.
func checkIdents(cluster string, reps []replica, idents []ident, group, member string) error {
	shardOf := map[string]int{} // group → shard number
	first := map[int]int{}      // shard number → index of its first replica
	seen := map[[2]string]int{} // group and member → index
	for i, r := range reps {
		id := idents[i]
		if j, ok := first[r.shard]; !ok {
			first[r.shard] = i
		} else if idents[j].group != id.group {
			return fmt.Errorf("cluster %s: %s and %s are replicas of shard %d but have %s %q and %q, so they would not share rows; give the replicas of a shard one", cluster, reps[j].endpoint, r.endpoint, r.shard, group, idents[j].group, id.group)
		}
		if s, ok := shardOf[id.group]; ok && s != r.shard {
			return fmt.Errorf("cluster %s: shards %d and %d both have %s %q (at %s), so they would replicate each other's rows; give each shard its own", cluster, s, r.shard, group, id.group, r.endpoint)
		}
		shardOf[id.group] = r.shard
		k := [2]string{id.group, id.member}
		if j, ok := seen[k]; ok {
			return fmt.Errorf("cluster %s: %s and %s, replicas of shard %d, both have %s %q; give each replica of a shard its own", cluster, reps[j].endpoint, r.endpoint, r.shard, member, id.member)
		}
		seen[k] = i
	}
	return nil
}
