package store_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kubetrail/kubetrail/internal/audit"
	"github.com/kubetrail/kubetrail/internal/pipeline"
	"github.com/kubetrail/kubetrail/internal/store"
	"github.com/kubetrail/kubetrail/internal/store/clickhouse"
	"github.com/kubetrail/kubetrail/internal/store/clickhouse/chtest"
	"github.com/kubetrail/kubetrail/internal/store/local"
	"github.com/kubetrail/kubetrail/internal/testenv"
)

// twoShards is a cluster of two clickhouse-servers, one shard each, on
// 127.0.0.1 and 127.0.0.2 with one HTTP and one HTTPS port number (as a
// real cluster's servers share theirs) and native ports of their own
// (a server takes a remote_servers entry with its own address and native
// port for itself). Both know the clusters "kt2" (the two shards) and
// "kt_weighted" (the two shards, weighing 1 and 3) and
// "kt_replicas" (one shard of two replicas, which setup refuses: the
// servers have no ZooKeeper); the user "kt" has a password. Started by the first test that needs it,
// stopped by TestMain.
type twoShards struct {
	once  sync.Once
	err   error
	nodes []*chtest.Node
	certs chtest.Certs
	dir   string
}

var cluster twoShards

// ktPassword is the password of user kt on the cluster's servers.
const ktPassword = `pa55'w"ord\; DROP`

func (c *twoShards) start(t *testing.T) []*chtest.Node {
	t.Helper()
	c.once.Do(func() { c.err = c.startNodes() })
	if c.err != nil {
		testenv.Unavailable(t, "two-shard ClickHouse cluster: %v", c.err)
	}
	return c.nodes
}

func (c *twoShards) startNodes() error {
	hosts := []string{"127.0.0.1", "127.0.0.2"}
	httpPort, err := chtest.SharedPort(hosts...)
	if err != nil {
		return err
	}
	httpsPort, err := chtest.SharedPort(hosts...)
	if err != nil {
		return err
	}
	tcp := make([]int, len(hosts))
	for i := range tcp {
		if tcp[i], err = chtest.SharedPort(hosts...); err != nil {
			return err
		}
	}
	if c.dir, err = os.MkdirTemp("", "kubetrail-cluster-"); err != nil {
		return err
	}
	if c.certs, err = chtest.WriteCerts(c.dir); err != nil {
		return err
	}
	replica := func(i int) string {
		return fmt.Sprintf("<replica><host>%s</host><port>%d</port></replica>", hosts[i], tcp[i])
	}
	remote := "<kt2><shard>" + replica(0) + "</shard><shard>" + replica(1) + "</shard></kt2>" +
		"<kt_replicas><shard>" + replica(0) + replica(1) + "</shard></kt_replicas>" +
		"<kt_weighted><shard><weight>1</weight>" + replica(0) + "</shard><shard><weight>3</weight>" + replica(1) + "</shard></kt_weighted>"
	var opts []chtest.Options
	for i, h := range hosts {
		opts = append(opts, chtest.Options{Host: h, HTTPPort: httpPort, TCPPort: tcp[i], HTTPSPort: httpsPort,
			CertFile: c.certs.Cert, KeyFile: c.certs.Key, Users: map[string]string{"kt": ktPassword}, RemoteServers: remote})
	}
	c.nodes, err = chtest.StartNodes(opts...)
	return err
}

func (c *twoShards) stop() error {
	return errors.Join(chtest.StopNodes(c.nodes), os.RemoveAll(c.dir))
}

// newClusterURL returns a store URL for a new database on the cluster
// kt2, through the first shard.
func newClusterURL(t *testing.T) string {
	nodes := cluster.start(t)
	var b [6]byte
	rand.Read(b[:])
	return strings.Replace(nodes[0].URL(), "http://", "clickhouse://", 1) + "/kt_" + hex.EncodeToString(b[:]) + "?cluster=kt2"
}

// clusterBackend is the conformance suite's third store: the two-shard
// cluster, read and written through its Distributed table.
func clusterBackend() backend {
	return backend{"clickhouse-cluster", func(t *testing.T) (store.Store, func() store.Store) {
		cfg, err := clickhouse.ParseURL(newClusterURL(t))
		if err != nil {
			t.Fatal(err)
		}
		if err := clickhouse.Setup(context.Background(), cfg); err != nil {
			t.Fatalf("setup: %v\n%s", err, cluster.nodes[0].Log())
		}
		open := func() store.Store {
			s, err := clickhouse.Open(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { s.Close() })
			return s
		}
		return open(), open
	}}
}

// shardCounts asks each shard how many rows its events_local holds, and
// how many distinct events.
func shardCounts(t *testing.T, db string) (rows, events []int) {
	t.Helper()
	for _, n := range cluster.nodes {
		var r, e int
		for _, q := range []struct {
			sql string
			out *int
		}{{"SELECT count() FROM " + db + ".events_local", &r}, {"SELECT count() FROM " + db + ".events_local FINAL", &e}} {
			resp, err := http.Post(n.URL()+"/", "text/plain", strings.NewReader(q.sql))
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("%s on %s: %s", q.sql, n.URL(), b)
			}
			if *q.out, err = strconv.Atoi(strings.TrimSpace(string(b))); err != nil {
				t.Fatal(err)
			}
		}
		rows, events = append(rows, r), append(events, e)
	}
	return rows, events
}

// TestClusterShardsAndDeduplicates: setup on a two-shard cluster creates
// the local tables on both servers; the corpus appended through the
// Distributed table lands on both shards, every copy of an event on the
// shard of its first arrival, so each shard de-duplicates its own and
// the answers through either server count every event once.
func TestClusterShardsAndDeduplicates(t *testing.T) {
	u := newClusterURL(t)
	for range 2 { // idempotent
		cfg, err := clickhouse.ParseURL(u)
		if err != nil {
			t.Fatal(err)
		}
		if err := clickhouse.Setup(context.Background(), cfg); err != nil {
			t.Fatalf("setup: %v\n%s", err, cluster.nodes[0].Log())
		}
	}
	cfg, _ := clickhouse.ParseURL(u)
	s, err := clickhouse.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	c := loadCorpus(t)
	// An insert returns once every shard holds its rows: a count at once
	// after each sees them all (Distributed's default queues them for a
	// sender that runs every 100 ms).
	stored := 0
	for _, b := range c.batches[:6] {
		appendAll(t, s, []*pipeline.Batch{b})
		stored += len(b.Records)
		if n, err := s.Count(context.Background(), local.Selection{}); err != nil || n != int64(stored) {
			t.Fatalf("count at once after an insert: %d, %v; want %d", n, err, stored)
		}
	}
	appendAll(t, s, c.batches[6:])
	appendAll(t, s, c.batches[:3]) // copies
	rows, events := shardCounts(t, cfg.Database)
	if events[0] == 0 || events[1] == 0 || events[0]+events[1] != len(c.records) {
		t.Errorf("shards hold %v distinct events, want both some and %d in all", events, len(c.records))
	}
	if rows[0]+rows[1] <= len(c.records) {
		t.Errorf("shards hold %v rows: the copies were not inserted, so this test shows nothing of de-duplication", rows)
	}
	// ScanFrom (what migrate reads) gives what Export gives: copies, on
	// their shard, left out.
	var exported, scanned []string
	if err := s.Export(context.Background(), local.ScanOptions{}, func(st local.Stored) error {
		exported = append(exported, string(st.Raw))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.ScanFrom(context.Background(), clickhouse.Position{}, func(st local.Stored, _ clickhouse.Position) error {
		scanned = append(scanned, string(st.Raw))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(exported) != len(c.records) || !slices.Equal(scanned, exported) {
		t.Errorf("ScanFrom on the cluster: %d events; Export: %d; want the same %d in the same order", len(scanned), len(exported), len(c.records))
	}
	// Through the second server as much as the first.
	other := cfg
	other.Endpoint = cluster.nodes[1].URL()
	for _, cf := range []clickhouse.Config{cfg, other} {
		r, err := clickhouse.Open(context.Background(), cf)
		if err != nil {
			t.Fatal(err)
		}
		n, err := r.Count(context.Background(), local.Selection{})
		r.Close()
		if err != nil || n != int64(len(c.records)) {
			t.Errorf("count through %s: %d, %v; want %d", cf.Endpoint, n, err, len(c.records))
		}
	}
}

// TestClusterSetupRefuses: a cluster the servers do not know, a cluster
// with replicas on servers without ZooKeeper, and a database already holding a store made without
// ?cluster= are each refused with a message saying why.
func TestClusterSetupRefuses(t *testing.T) {
	u := newClusterURL(t)
	f := func(url, want string) {
		t.Helper()
		cfg, err := clickhouse.ParseURL(url)
		if err != nil {
			t.Fatal(err)
		}
		if err := clickhouse.Setup(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("setup %s: %v; want an error with %q", url, err, want)
		}
	}
	f(strings.Replace(u, "cluster=kt2", "cluster=nowhere", 1), `no cluster "nowhere"`)
	f(strings.Replace(u, "cluster=kt2", "cluster=kt_replicas", 1), "has no ZooKeeper: replicated tables need <zookeeper>")
	plain, _, _ := strings.Cut(u, "?")
	cfg, _ := clickhouse.ParseURL(plain)
	if err := clickhouse.Setup(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	f(u, "made without ?cluster=")
}

// TestTLSAndPasswordFile: clickhouses:// with ca= and a password file
// sets up, writes and reads a store over HTTPS as user kt; without the CA
// the server's certificate is refused; a wrong password is refused; and
// no message, of these or of a server that cannot be reached, holds a
// password.
func TestTLSAndPasswordFile(t *testing.T) {
	nodes := cluster.start(t)
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "pw")
	if err := os.WriteFile(pwFile, []byte(ktPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	wrongFile := filepath.Join(dir, "wrong")
	const wrong = "not-the-Secret-42"
	if err := os.WriteFile(wrongFile, []byte(wrong), 0o600); err != nil {
		t.Fatal(err)
	}
	host := "127.0.0.1:" + strconv.Itoa(nodes[0].HTTPSPort)
	u := "clickhouses://kt@" + host + "/kt_tls?password_file=" + pwFile + "&ca=" + cluster.certs.CA
	cfg, err := clickhouse.ParseURL(u)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Password != ktPassword || !strings.HasPrefix(cfg.Endpoint, "https://") {
		t.Fatalf("parsed %s as endpoint %s with password %q", u, cfg.Endpoint, cfg.Password)
	}
	if err := clickhouse.Setup(context.Background(), cfg); err != nil {
		t.Fatalf("setup over HTTPS: %v\n%s", err, nodes[0].Log())
	}
	c := loadCorpus(t)
	s, err := clickhouse.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	appendAll(t, s, c.batches[:2])
	s.Close()
	r, err := store.OpenReader(context.Background(), u, "")
	if err != nil {
		t.Fatal(err)
	}
	n, err := r.Count(context.Background(), local.Selection{})
	r.Close()
	if want := len(c.batches[0].Records) + len(c.batches[1].Records); err != nil || n != int64(want) {
		t.Errorf("count over HTTPS: %d, %v; want %d", n, err, want)
	}

	fails := func(url, want string) {
		t.Helper()
		_, err := store.OpenReader(context.Background(), url, "")
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("open %s: %v; want an error with %q", clickhouse.Redact(url), err, want)
			return
		}
		for _, secret := range []string{ktPassword, wrong, "inURL-S3cret"} {
			if strings.Contains(err.Error(), secret) {
				t.Errorf("the error names a password: %v", err)
			}
		}
	}
	fails("clickhouses://kt@"+host+"/kt_tls?password_file="+pwFile, "certificate")
	fails("clickhouses://kt@"+host+"/kt_tls?password_file="+wrongFile+"&ca="+cluster.certs.CA, "password")
	fails("clickhouses://kt:inURL-S3cret@"+host+"/kt_tls?ca="+cluster.certs.CA, "password")
	fails("clickhouse://kt:inURL-S3cret@127.0.0.1:1/kt_tls", "not reachable")
	fails("clickhouse://kt:inURL-S3cret@127.0.0.1:1/kt;tls", "database")
	fails("clickhouse://kt:inURL-S3cret@127.0.0.1:1/kt_tls?password_file=x", "a password in the URL and password_file")
	fails("clickhouse://kt:inURL-S3cret@127.0.0.1:bad/kt_tls", "does not parse")
	fails("clickhouse://kt:inURL-S3cret%zz@127.0.0.1/kt_tls", "does not parse")
	fails("mysql://kt:inURL-S3cret@127.0.0.1/kt_tls", "want clickhouse://")
}

// TestClusterRetentionDropsEveryShardsDays: retention on a cluster drops
// the old days from every shard's events_local (the Distributed table has
// no parts of its own), so no shard keeps a day past its age; a store URL
// without ?cluster= over the Distributed table is refused, not a silent
// no-op.
func TestClusterRetentionDropsEveryShardsDays(t *testing.T) {
	u := newClusterURL(t)
	cfg, err := clickhouse.ParseURL(u)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := clickhouse.Setup(ctx, cfg); err != nil {
		t.Fatalf("setup: %v\n%s", err, cluster.nodes[0].Log())
	}
	s, err := clickhouse.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	days := []string{"2026-11-01", "2026-11-02", "2026-11-03", "2026-11-04"}
	for _, d := range days {
		appendAll(t, s, []*pipeline.Batch{dayEvents(t, d, 40)})
	}
	if rows, _ := shardCounts(t, cfg.Database); rows[0] == 0 || rows[1] == 0 {
		t.Fatalf("shards hold %v rows: both must hold some for this test to show anything", rows)
	}
	now := time.Date(2026, 11, 5, 12, 0, 0, 0, time.UTC)

	bare := cfg
	bare.Cluster = ""
	b, err := clickhouse.Open(ctx, bare)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if dropped, err := b.Enforce(ctx, 48*time.Hour, now); err == nil || !strings.Contains(err.Error(), "?cluster=") {
		t.Errorf("retention without ?cluster= on a Distributed table: dropped %v, %v; want a refusal naming ?cluster=", dropped, err)
	}

	dropped, err := s.Enforce(ctx, 48*time.Hour, now)
	if err != nil || !slices.Equal(dropped, days[:2]) {
		t.Fatalf("dropped %v, %v; want %v", dropped, err, days[:2])
	}
	n, err := s.Count(ctx, local.Selection{})
	if err != nil || n != 80 {
		t.Errorf("after retention: %d events, %v; want the 80 of the last two days", n, err)
	}
	if rows, _ := shardCounts(t, cfg.Database); rows[0]+rows[1] != 80 {
		t.Errorf("after retention the shards hold %v rows, want 80 in all", rows)
	}
}

// dayEvents is n events at 12:00 UTC on day, each its own audit ID.
func dayEvents(t *testing.T, day string, n int) *pipeline.Batch {
	t.Helper()
	var lines []byte
	for i := range n {
		ts := fmt.Sprintf("%sT12:00:00.%06dZ", day, i)
		lines = append(lines, fmt.Sprintf(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"%s-%d","stage":"ResponseComplete","requestURI":"/api","verb":"get","user":{"username":"u"},"requestReceivedTimestamp":%q,"stageTimestamp":%q}`+"\n", day, i, ts, ts)...)
	}
	var recs []audit.Record
	audit.NewDecoder(audit.Limits{}).DecodeLines("day", lines, func(r audit.Record) { recs = append(recs, r) },
		func(p audit.Problem) { t.Fatalf("%v", p) })
	return &pipeline.Batch{Cluster: "c", Received: time.Now(), Records: recs}
}

// TestCollectorInsertsIntoShards: a collector whose store URL names the
// cluster inserts each row into its shard's events_local itself (the
// Distributed table is dropped on the server it talks to while it ships,
// so a Distributed insert would fail), into the shard the Distributed
// table picks: the same events inserted again through the Distributed
// table of the other server land beside them, so each shard holds both
// copies of its events (merges stopped) and every answer counts each
// once. Planted: routing by keyHash+1 (the wrong shard for half the
// keys) puts copies on both shards (distinct events over the shards
// above the corpus's); a collector inserting through the Distributed
// table fails to ship.
func TestCollectorInsertsIntoShards(t *testing.T) {
	u := newClusterURL(t)
	cfg, err := clickhouse.ParseURL(u)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := clickhouse.Setup(ctx, cfg); err != nil {
		t.Fatalf("setup: %v\n%s", err, cluster.nodes[0].Log())
	}
	sql := func(n *chtest.Node, q string) {
		t.Helper()
		resp, err := http.Post(n.URL()+"/", "text/plain", strings.NewReader(q))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s on %s: %s", q, n.URL(), b)
		}
	}
	for _, n := range cluster.nodes {
		sql(n, "SYSTEM STOP MERGES "+cfg.Database+".events_local")
	}
	s, err := clickhouse.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	sql(cluster.nodes[0], "DROP TABLE "+cfg.Database+".events")
	col, err := clickhouse.NewCollector(s, clickhouse.CollectorOptions{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer col.Close()
	c := loadCorpus(t)
	for _, b := range c.batches {
		if _, err := col.Append(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := col.Drain(dctx); err != nil {
		t.Fatalf("shipping without the Distributed table: %v", err)
	}
	if err := clickhouse.Setup(ctx, cfg); err != nil { // the Distributed table again
		t.Fatal(err)
	}
	other := cfg
	other.Cluster, other.Endpoint = "", cluster.nodes[1].URL()
	s2, err := clickhouse.Open(ctx, other)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	appendAll(t, s2, c.batches)
	rows, events := shardCounts(t, cfg.Database)
	if events[0] == 0 || events[1] == 0 || events[0]+events[1] != len(c.records) || rows[0]+rows[1] != 2*len(c.records) {
		t.Errorf("shards hold %v distinct events in %v rows; want both some, %d in all, each twice", events, rows, len(c.records))
	}
	if n, err := s.Count(ctx, local.Selection{}); err != nil || n != int64(len(c.records)) {
		t.Errorf("count: %d, %v; want %d", n, err, len(c.records))
	}
}

// TestClusterCopiesOnTwoShardsCountOnce: copies of one event on two
// shards (two collectors whose servers list the shards differently, or
// a shard added between a batch and its retry) are never merged by
// ClickHouse; every answer must still count each event once, its bytes
// included.
func TestClusterCopiesOnTwoShardsCountOnce(t *testing.T) {
	u := newClusterURL(t)
	cfg, err := clickhouse.ParseURL(u)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := clickhouse.Setup(ctx, cfg); err != nil {
		t.Fatalf("setup: %v\n%s", err, cluster.nodes[0].Log())
	}
	sql := func(n *chtest.Node, q string) {
		t.Helper()
		resp, err := http.Post(n.URL()+"/", "text/plain", strings.NewReader(q))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s on %s: %s", q, n.URL(), b)
		}
	}
	s, err := clickhouse.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	b := dayEvents(t, "2026-03-01", 40)
	appendAll(t, s, []*pipeline.Batch{b})
	var bytes int64
	for _, r := range b.Records {
		bytes += int64(len(r.Raw))
	}
	// Each shard gets a copy of the other's events: every event on both.
	for i, n := range cluster.nodes {
		sql(n, "INSERT INTO "+cfg.Database+".events_local SELECT * FROM "+cfg.Database+".events WHERE cityHash64(key) % 2 != "+strconv.Itoa(i))
	}
	if rows, _ := shardCounts(t, cfg.Database); rows[0] != 40 || rows[1] != 40 {
		t.Fatalf("shards hold %v rows, want every event on both", rows)
	}
	if n, err := s.Count(ctx, local.Selection{}); err != nil || n != 40 {
		t.Errorf("count: %d, %v; want 40", n, err)
	}
	for _, o := range []local.StatsOptions{{}, {Bytes: true}, {By: []local.Column{local.ColUser}, Bytes: true}, {ByBytes: true, By: []local.Column{local.ColVerb}}, {Interval: time.Hour.Microseconds(), Bytes: true, By: []local.Column{local.ColCode}}} {
		_, tot, err := s.Stats(ctx, local.Selection{}, o)
		want := local.Totals{Count: 40}
		if o.Bytes || o.ByBytes {
			want.Bytes = bytes
		}
		if err != nil || tot != want {
			t.Errorf("stats %+v: %+v, %v; want %+v", o, tot, err, want)
		}
	}
	if n, _, _, err := s.Span(ctx); err != nil || n != 40 {
		t.Errorf("span: %d, %v; want 40", n, err)
	}
	var sel, exp int
	if err := s.Select(ctx, local.Selection{}, func(*local.Hit) error { sel++; return nil }); err != nil || sel != 40 {
		t.Errorf("select: %d, %v; want 40", sel, err)
	}
	if err := s.Export(ctx, local.ScanOptions{}, func(local.Stored) error { exp++; return nil }); err != nil || exp != 40 {
		t.Errorf("export: %d, %v; want 40", exp, err)
	}
	// After a cursor, as detect --follow reads (the copies carry their
	// original's stamp).
	arr := 0
	none := func(local.Key) bool { return false }
	if err := s.Arrivals(ctx, local.Selection{}, 1, none, func(*local.Hit, uint64) error { arr++; return nil }); err != nil || arr != 40 {
		t.Errorf("arrivals after a cursor: %d, %v; want 40", arr, err)
	}
}

// TestCollectorRoutesByWeight: on a cluster whose shards weigh 1 and 3, a
// collector routing rows itself puts each event on the shard the
// Distributed table puts it on: the same events inserted again through
// the Distributed table land beside their first copies (merges
// stopped), every shard holding each of its events twice.
func TestCollectorRoutesByWeight(t *testing.T) {
	u := strings.Replace(newClusterURL(t), "cluster=kt2", "cluster=kt_weighted", 1)
	cfg, err := clickhouse.ParseURL(u)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := clickhouse.Setup(ctx, cfg); err != nil {
		t.Fatalf("setup: %v\n%s", err, cluster.nodes[0].Log())
	}
	for _, n := range cluster.nodes {
		resp, err := http.Post(n.URL()+"/", "text/plain", strings.NewReader("SYSTEM STOP MERGES "+cfg.Database+".events_local"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	s, err := clickhouse.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	col, err := clickhouse.NewCollector(s, clickhouse.CollectorOptions{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer col.Close()
	c := loadCorpus(t)
	for _, b := range c.batches {
		if _, err := col.Append(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := col.Drain(dctx); err != nil {
		t.Fatal(err)
	}
	other := cfg
	other.Cluster, other.Endpoint = "", cluster.nodes[1].URL()
	s2, err := clickhouse.Open(ctx, other)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	appendAll(t, s2, c.batches)
	rows, events := shardCounts(t, cfg.Database)
	if events[0]+events[1] != len(c.records) || rows[0] != 2*events[0] || rows[1] != 2*events[1] || events[1] < 2*events[0] {
		t.Errorf("shards hold %v distinct events in %v rows; want %d in all, each twice on its shard, the second shard about 3 times the first's", events, rows, len(c.records))
	}
}
