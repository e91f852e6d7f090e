package clickhouse

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kubetrail/kubetrail/internal/store/clickhouse/chtest"
	"github.com/kubetrail/kubetrail/internal/testenv"
)

// replicaCluster is one ZooKeeper and three clickhouse-servers on
// 127.0.0.1-3: shard 1 of two replicas (nodes 0 and 1) and shard 2 of one
// (node 2), the cluster "ktr"; each node's macros name its shard and
// replica. Its other clusters are mistakes setup must refuse. Started by
// the first test that needs it, stopped by TestMain.
type replicaCluster struct {
	once  sync.Once
	err   error
	zk    *chtest.ZooKeeper
	nodes []*chtest.Node
}

var replicas replicaCluster

func (c *replicaCluster) start(t *testing.T) []*chtest.Node {
	t.Helper()
	c.once.Do(func() { c.err = c.startAll() })
	if c.err != nil {
		testenv.Unavailable(t, "replicated ClickHouse cluster: %v", c.err)
	}
	return c.nodes
}

func (c *replicaCluster) startAll() error {
	// ZooKeeper first: without it there is nothing to test, and its
	// message says how to install it.
	var err error
	if c.zk, err = chtest.StartZooKeeper(); err != nil {
		return err
	}
	hosts := []string{"127.0.0.1", "127.0.0.2", "127.0.0.3"}
	httpPort, err := chtest.SharedPort(hosts...)
	if err != nil {
		return err
	}
	interserver, err := chtest.SharedPort(hosts...)
	if err != nil {
		return err
	}
	tcp := make([]int, len(hosts))
	for i := range tcp {
		if tcp[i], err = chtest.SharedPort(hosts...); err != nil {
			return err
		}
	}
	rep := func(i int) string {
		return fmt.Sprintf("<replica><host>%s</host><port>%d</port></replica>", hosts[i], tcp[i])
	}
	shard := func(nodes ...int) string {
		s := "<shard><internal_replication>true</internal_replication>"
		for _, i := range nodes {
			s += rep(i)
		}
		return s + "</shard>"
	}
	remote := "<ktr>" + shard(0, 1) + shard(2) + "</ktr>" +
		"<ktr_plain>" + shard(0) + shard(2) + "</ktr_plain>" + // no replicas
		"<ktr_one>" + shard(0, 1) + "</ktr_one>" + // without node 2
		"<ktr_mixed>" + shard(0, 2) + "</ktr_mixed>" // replicas with two {shard}s
	macros := []map[string]string{{"shard": "s1", "replica": "r1"}, {"shard": "s1", "replica": "r2"}, {"shard": "s2", "replica": "r1"}}
	var opts []chtest.Options
	for i, h := range hosts {
		opts = append(opts, chtest.Options{Host: h, HTTPPort: httpPort, TCPPort: tcp[i], InterserverPort: interserver,
			ZooKeeper: c.zk.Addr, Macros: macros[i], RemoteServers: remote})
	}
	c.nodes, err = chtest.StartNodes(opts...)
	return err
}

func (c *replicaCluster) stop() error {
	return errors.Join(chtest.StopNodes(c.nodes), c.zk.Stop())
}

// sqlOn runs sql on one node (not through kubetrail) and returns its
// answer, trimmed.
func sqlOn(t *testing.T, n *chtest.Node, sql string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, n.URL()+"/", strings.NewReader(sql))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s on %s: %v", sql, n.URL(), err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s on %s: %s", sql, n.URL(), b)
	}
	return strings.TrimSpace(string(b))
}

// localCount is how many rows (final: distinct events) a node's own
// events_local holds.
func localCount(t *testing.T, n *chtest.Node, db string, final bool) int {
	t.Helper()
	sql := "SELECT count() FROM " + db + ".events_local"
	if final {
		sql += " FINAL"
	}
	v, err := strconv.Atoi(sqlOn(t, n, sql))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// syncReplicas waits until the replicas of shard 1 (nodes 0 and 1) hold
// the same events and every node has read its shard's replication log
// to the end with no part left to fetch, and fails after 20 s. (Not
// SYSTEM SYNC REPLICA: that waits for the merges the leader assigns too,
// which the test stops. And the log alone is not enough: a replica just
// restarted reported it read to the end before it had fetched a part.)
func syncReplicas(t *testing.T, nodes []*chtest.Node, db string) {
	t.Helper()
	sql := "SELECT count() FROM system.replicas WHERE database = '" + db + "' AND table = 'events_local' AND (log_pointer <= log_max_index OR inserts_in_queue > 0 OR is_readonly)"
	deadline := time.Now().Add(20 * time.Second)
	for {
		behind := ""
		for _, n := range nodes {
			if sqlOn(t, n, sql) != "0" {
				behind = n.URL() + " has not read its shard's log or fetched its parts"
			}
		}
		if r1, r2 := localCount(t, nodes[0], db, true), localCount(t, nodes[1], db, true); r1 != r2 {
			behind = fmt.Sprintf("replica 1 holds %d events, replica 2 %d", r1, r2)
		}
		if behind == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the replicas have not caught up in 20s: %s", behind)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func replicaURL(n *chtest.Node, db, cluster string) string {
	return strings.Replace(n.URL(), "http://", "clickhouse://", 1) + "/" + db + "?cluster=" + cluster
}

func setupURL(t *testing.T, url string) error {
	t.Helper()
	cfg, err := ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	return Setup(context.Background(), cfg)
}

func openURL(t *testing.T, url string) *Store {
	t.Helper()
	cfg, err := ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// sortedIDs is auditIDs sorted: the events a store gives, each as often
// as it gives it.
func sortedIDs(t *testing.T, s *Store) []string {
	ids := auditIDs(t, s)
	slices.Sort(ids)
	return ids
}

func checkIDs(t *testing.T, what string, s *Store, from, to, per int) {
	t.Helper()
	got, want := sortedIDs(t, s), wantIDs(from, to, per)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("%s: %d events, want %d once each (first difference at %d)", what, len(got), len(want), firstDiff(got, want))
	}
}

// TestReplicas: setup on a cluster whose shard 1 has two replicas makes
// replicated tables on every server; what is inserted through one
// replica is in the other's own table; a batch inserted again, through
// the same or the other replica, counts once; a replica killed while
// inserts go on (through it's fellow replica and through the other
// shard) catches up after its restart, with nothing lost or doubled.
func TestReplicas(t *testing.T) {
	nodes := replicas.start(t)
	const db, per = "kt_rep", 40
	for range 2 { // idempotent
		if err := setupURL(t, replicaURL(nodes[0], db, "ktr")); err != nil {
			t.Fatalf("setup: %v\n%s", err, nodes[0].Log())
		}
	}
	for _, n := range nodes {
		if e := sqlOn(t, n, "SELECT engine FROM system.tables WHERE database = '"+db+"' AND name = 'events_local'"); e != "ReplicatedReplacingMergeTree" {
			t.Fatalf("%s: events_local is %q", n.URL(), e)
		}
		// Copies stay rows: only FINAL may count them once.
		sqlOn(t, n, "SYSTEM STOP MERGES "+db+".events_local")
	}
	a, b, c := openURL(t, replicaURL(nodes[0], db, "ktr")), openURL(t, replicaURL(nodes[1], db, "ktr")), openURL(t, replicaURL(nodes[2], db, "ktr"))
	ctx := context.Background()
	appendTo := func(s *Store, from, to int) {
		t.Helper()
		for i := from; i < to; i++ {
			if _, err := s.Append(ctx, testBatch(t, i, per)); err != nil {
				t.Fatalf("append batch %d: %v", i, err)
			}
		}
	}

	appendTo(a, 0, 4)
	syncReplicas(t, nodes, db)
	r1, r2, s2 := localCount(t, nodes[0], db, true), localCount(t, nodes[1], db, true), localCount(t, nodes[2], db, true)
	if r1 == 0 || s2 == 0 || r1+s2 != 4*per || r2 != r1 {
		t.Fatalf("events in events_local: replica 1 %d, replica 2 %d, shard 2 %d; want both shards some, %d in all, and replica 2 as many as replica 1", r1, r2, s2, 4*per)
	}
	checkIDs(t, "read through replica 2", b, 0, 4, per)

	appendTo(a, 0, 1) // again, through the same replica
	appendTo(b, 1, 2) // again, through the other
	syncReplicas(t, nodes, db)
	if rows := localCount(t, nodes[1], db, false); rows <= r2 {
		t.Fatalf("replica 2 holds %d rows for %d events: the copies were not inserted, so this shows nothing of de-duplication", rows, r2)
	}
	// FINAL keeps each event's largest ver, its first arrival, as the
	// plain table does: the engine's version column is ver.
	for _, n := range nodes[:2] {
		kept := sqlOn(t, n, "SELECT sum(ver) FROM "+db+".events_local FINAL")
		first := sqlOn(t, n, "SELECT sum(v) FROM (SELECT max(ver) AS v FROM "+db+".events_local GROUP BY key)")
		if kept != first {
			t.Fatalf("%s: FINAL keeps copies whose ver sums to %s, the first arrivals' to %s", n.URL(), kept, first)
		}
	}
	checkIDs(t, "read through replica 1 after copies", a, 0, 4, per)
	checkIDs(t, "read through replica 2 after copies", b, 0, 4, per)

	nodes[1].Kill()
	appendTo(a, 4, 6)
	appendTo(c, 6, 8) // shard 1's rows must go to replica 1
	appendTo(a, 4, 5) // a copy while replica 2 is down
	if err := nodes[1].Restart(); err != nil {
		t.Fatal(err)
	}
	syncReplicas(t, nodes, db) // replica 2 catches up
	checkIDs(t, "read through replica 2 after its restart", b, 0, 8, per)
	checkIDs(t, "read through shard 2", c, 0, 8, per)
}

// TestReplicasSetupRefuses: setup refuses a cluster whose replicas'
// macros would not make them share rows, a server of --store outside the
// cluster, and a store made when the cluster had no replicas.
func TestReplicasSetupRefuses(t *testing.T) {
	nodes := replicas.start(t)
	f := func(url, want string) {
		t.Helper()
		if err := setupURL(t, url); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("setup %s: %v; want an error with %q", url, err, want)
		}
	}
	f(replicaURL(nodes[0], "kt_mixed", "ktr_mixed"), `are replicas of shard 1 but have macro {shard} "s1" and "s2"`)
	f(replicaURL(nodes[2], "kt_outside", "ktr_one"), "is not one of its servers")
	if err := setupURL(t, replicaURL(nodes[0], "kt_was_plain", "ktr_plain")); err != nil {
		t.Fatal(err)
	}
	f(replicaURL(nodes[0], "kt_was_plain", "ktr"), "made when cluster had no replicas")
}

// TestCheckIdents: the checks of replicas' names against the cluster's
// shards, each mistake on its own.
func TestCheckIdents(t *testing.T) {
	reps := []replica{{shard: 1, replica: 1, endpoint: "a"}, {shard: 1, replica: 2, endpoint: "b"}, {shard: 2, replica: 1, endpoint: "c"}}
	for _, tc := range []struct {
		ids  []ident
		want string
	}{
		{[]ident{{"s1", "r1"}, {"s1", "r2"}, {"s2", "r1"}}, ""},
		{[]ident{{"s1", "r1"}, {"s9", "r2"}, {"s2", "r1"}}, "a and b are replicas of shard 1 but have G"},
		{[]ident{{"s1", "r1"}, {"s1", "r2"}, {"s1", "r3"}}, "shards 1 and 2 both have G"},
		{[]ident{{"s1", "r1"}, {"s1", "r1"}, {"s2", "r1"}}, "a and b, replicas of shard 1, both have M"},
	} {
		err := checkIdents("k", reps, tc.ids, "G", "M")
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%v: %v; want %q", tc.ids, err, tc.want)
		}
	}
	for _, m := range []map[string]string{{"replica": "r1"}, {"shard": "s1"}, {"shard": "s1", "replica": ""}} {
		if _, err := macroIdent("k", reps[0], m); err == nil || !strings.Contains(err.Error(), "has no macro") {
			t.Errorf("macros %v: %v; want an error naming the missing macro", m, err)
		}
	}
}
