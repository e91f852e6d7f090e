package store_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/kubetrail/kubetrail/internal/audit"
	"github.com/kubetrail/kubetrail/internal/investigate/investigatetest"
	"github.com/kubetrail/kubetrail/internal/pipeline"
	"github.com/kubetrail/kubetrail/internal/query"
	"github.com/kubetrail/kubetrail/internal/store"
	"github.com/kubetrail/kubetrail/internal/store/clickhouse"
	"github.com/kubetrail/kubetrail/internal/store/clickhouse/chtest"
	"github.com/kubetrail/kubetrail/internal/store/local"
)

// ch is the package's ClickHouse server, started by the first test that
// needs it and stopped by TestMain.
var ch chtest.Server

func TestMain(m *testing.M) {
	code := chtest.Run(m, &ch)
	if err := cluster.stop(); err != nil && code == 0 {
		code = 1
	}
	os.Exit(code)
}

// backend opens an empty store of one kind. reopen closes it and opens it
// again on the same data (for the embedded store, this seals its WAL into
// segments, so answers come from both).
type backend struct {
	name string
	open func(t *testing.T) (s store.Store, reopen func() store.Store)
}

func backends() []backend {
	return []backend{
		{"embedded", func(t *testing.T) (store.Store, func() store.Store) {
			dir := t.TempDir()
			open := func() store.Store {
				s, err := store.OpenLocal(dir, local.Options{})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { s.Close() })
				return s
			}
			s := open()
			return s, func() store.Store { s.Close(); s = open(); return s }
		}},
		{"clickhouse", func(t *testing.T) (store.Store, func() store.Store) {
			cfg := NewClickHouseDB(t)
			open := func() store.Store {
				s, err := clickhouse.Open(context.Background(), cfg)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { s.Close() })
				return s
			}
			return open(), open
		}},
		// Through collectors: reopening starts a second collector with a
		// folder of its own, so the second half of the batches, and all of
		// them again, come from another collector than the first half.
		{"clickhouse-collectors", func(t *testing.T) (store.Store, func() store.Store) {
			cfg := NewClickHouseDB(t)
			open := func() store.Store {
				s, err := clickhouse.Open(context.Background(), cfg)
				if err != nil {
					t.Fatal(err)
				}
				c, err := clickhouse.NewCollector(s, clickhouse.CollectorOptions{Dir: t.TempDir()})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { c.Close(); s.Close() })
				return collected{s, c}
			}
			return open(), open
		}},
		clusterBackend(),
	}
}

// collected is a ClickHouse store written through a collector; Append
// returns once the batch is in ClickHouse, so that a read right after it
// sees it.
type collected struct {
	*clickhouse.Store
	c *clickhouse.Collector
}

func (s collected) Append(ctx context.Context, b *pipeline.Batch) (pipeline.Result, error) {
	res, err := s.c.Append(ctx, b)
	if err != nil {
		return res, err
	}
	return res, s.c.Drain(ctx)
}

// NewClickHouseDB creates a fresh kubetrail database on the package's
// server and returns where it is.
func NewClickHouseDB(t *testing.T) clickhouse.Config {
	t.Helper()
	u := ch.URL(t)
	var b [6]byte
	rand.Read(b[:])
	cfg, err := clickhouse.ParseURL(strings.Replace(u, "http://", "clickhouse://", 1) + "/kt_" + hex.EncodeToString(b[:]))
	if err != nil {
		t.Fatal(err)
	}
	if err := clickhouse.Setup(context.Background(), cfg); err != nil {
		t.Fatalf("setup: %v\n%s", err, ch.Log())
	}
	return cfg
}

// corpus is the events the suite stores, as the batches they arrive in.
type corpus struct {
	batches []*pipeline.Batch
	records []audit.Record // every record once, with its cluster in clusters
	cluster []string
}

func decodeLines(t *testing.T, name string, data []byte) []audit.Record {
	t.Helper()
	var recs []audit.Record
	audit.NewDecoder(audit.Limits{}).DecodeLines(name, data, func(r audit.Record) { recs = append(recs, r) },
		func(p audit.Problem) { t.Fatalf("%s: %v", name, p) })
	return recs
}

// loadCorpus reads the recorded incident (cluster prod, batches of 100)
// and a bench/gen corpus of three days (cluster staging, batches of 500).
func loadCorpus(t *testing.T) *corpus {
	t.Helper()
	incident := investigatetest.RecordedLines(t)
	gen := genCorpus(t)
	c := &corpus{}
	recv := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	add := func(cluster string, recs []audit.Record, size int) {
		for len(recs) > 0 {
			n := min(size, len(recs))
			c.batches = append(c.batches, &pipeline.Batch{Cluster: cluster, Received: recv, Records: recs[:n]})
			for _, r := range recs[:n] {
				c.records = append(c.records, r)
				c.cluster = append(c.cluster, cluster)
			}
			recs = recs[n:]
			recv = recv.Add(time.Second)
		}
	}
	add("prod", decodeLines(t, "incident.log", incident), 100)
	add("staging", decodeLines(t, "gen", gen), 500)
	return c
}

// genCorpus runs bench/gen for 4000 events; the same flags always give
// the same bytes.
func genCorpus(t *testing.T) []byte {
	t.Helper()
	goBin := filepath.Join(runtime.GOROOT(), "bin", "go")
	cmd := exec.Command(goBin, "run", "./bench/gen", "--events", "4000", "--seed", "7")
	cmd.Dir = "../.."
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("bench/gen: %v\n%s", err, stderr.String())
	}
	return out
}

func appendAll(t *testing.T, s store.Store, batches []*pipeline.Batch) pipeline.Result {
	t.Helper()
	var sum pipeline.Result
	for _, b := range batches {
		res, err := s.Append(context.Background(), b)
		if err != nil {
			t.Fatal(err)
		}
		sum.Stored += res.Stored
		sum.Duplicates += res.Duplicates
	}
	return sum
}

// filters cover every operator of the filter language on the fields
// stores answer from columns and on those they do not. nonEmpty marks the
// filters the corpus must satisfy at least once, so that an answer of
// nothing on both backends cannot pass for agreement.
var filters = []struct {
	src      string
	nonEmpty bool
}{
	{"", true},
	{"verb=delete", true},
	{"verb!=get", true},
	{"verb in (create, update, patch)", true},
	{"verb not in (get, list, watch)", true},
	{"user=attacker", true},
	{`user~"^system:node:"`, true},
	{`user!~"^system:"`, true},
	{"user=system:serviceaccount:*", true},
	{"user=*controller*", true},
	{"user=*manager", true},
	{"user=system:*:kube-*-controller", true},
	{"group=system:masters", true},
	{"group!=system:authenticated", true},
	{`group~"nodes$"`, true},
	{"resource=secrets ns=production", true},
	{"resource=pods subresource=binding", true},
	{"subresource in (exec, attach, portforward)", false},
	{"apigroup=rbac.authorization.k8s.io verb in (create, update, patch, delete)", true},
	{"apiversion=v1 resource=leases", false},
	{"code=403", true},
	{"code>=400", true},
	{"code<300 code>200", true},
	{"code<=200", true},
	{"code in (404, 500)", true},
	{"code!=200", true},
	{"code=0", false},
	{"ip=192.168.1.100", true},
	{"ip in 10.0.0.0/8", true},
	{"ip in (192.168.0.0/16, ::1)", true},
	{"ip=::/0", true},
	{"ip=0.0.0.0/0", true},
	{"ip=10.0.1.*", true},
	{`ip~"^10\.0\.1\.1"`, true},
	{"peer=127.0.0.1", true},
	{"not ip in 10.0.0.0/8", true},
	{"level>=Request", true},
	{"level<Metadata", false},
	{"level=RequestResponse", true},
	{"stage=ResponseComplete", true},
	{"ua=kubelet/*", true},
	{`ua~"arm64"`, true},
	{"decision=forbid", true},
	{"reason=Forbidden or status=Failure", true},
	{`annotation[authorization.k8s.io/reason]~"RBAC"`, true},
	{"annotations.pod-security.kubernetes.io/enforce-policy=*", true},
	{"user.extra[authentication.kubernetes.io/node-name]=node-0*", true},
	{"as=*", true},
	{`as!=""`, false},
	{"uri=*/secrets*", true},
	{`auditid~"^0"`, true},
	{"cluster=prod", true},
	{"cluster in (staging) verb=delete", true},
	{"objectRef.uid=* name=*", true},
	{"time>=2026-11-02 time<2026-11-03", true},
	{"time>2026-11-01T12:00:00.5Z time<=2026-11-01T13:00:00Z", true},
	{"received<2026-11-01T06:00:00Z", true},
	{"(user=attacker or ip=192.168.1.100) not verb=get", true},
	{"not (verb=get or verb=list) and code>=200", true},
	{`"secret"`, true},
	{`"kube-system" not user~"^system:"`, true},
	{`requestObject~"replicas"`, true},
	{"responseObject=*Deployment*", true},
	{`not requestObject=""`, true},
	{`message~"forbidden"`, true},
	{"impersonationConstraint=*", true},
}

// oracle answers a selection by testing every stored record with the
// filter itself: the naive full scan both stores must agree with.
func (c *corpus) oracle(f *query.Filter, since, until int64) []string {
	var out []string
	for i := range c.records {
		r := &c.records[i]
		t := r.Event.Time().UnixMicro()
		if (since != 0 && t < since) || (until != 0 && t >= until) {
			continue
		}
		if f == nil || f.Match(&r.Event, c.cluster[i]) {
			out = append(out, string(r.Raw))
		}
	}
	slices.Sort(out)
	return out
}

func selectRaw(t *testing.T, s store.Reader, sel local.Selection) []string {
	t.Helper()
	out := []string{}
	err := s.Select(context.Background(), sel, func(h *local.Hit) error {
		if h.Raw == nil {
			t.Fatal("a hit without its stored bytes, although NeedEvent was set")
		}
		out = append(out, string(h.Raw))
		return nil
	})
	if err != nil {
		t.Fatalf("select %v: %v", sel.Filter, err)
	}
	slices.Sort(out)
	return out
}

var now = time.Date(2026, 11, 4, 0, 0, 0, 0, time.UTC)

func TestConformance(t *testing.T) {
	c := loadCorpus(t)
	since := time.Date(2026, 11, 1, 6, 0, 0, 0, time.UTC).UnixMicro()
	until := time.Date(2026, 11, 2, 18, 0, 0, 0, time.UTC).UnixMicro()
	answers := map[string][]byte{} // export per backend
	for _, be := range backends() {
		t.Run(be.name, func(t *testing.T) {
			s, reopen := be.open(t)
			half := len(c.batches) / 2
			res := appendAll(t, s, c.batches[:half])
			s = reopen()
			r2 := appendAll(t, s, c.batches[half:])
			if got := res.Stored + r2.Stored; got != len(c.records) {
				t.Errorf("stored %d events, want %d", got, len(c.records))
			}
			check := func(t *testing.T) {
				for _, fc := range filters {
					var f *query.Filter
					if fc.src != "" {
						var err error
						if f, err = query.CompileAt(fc.src, now); err != nil {
							t.Fatalf("%s: %v", fc.src, err)
						}
					}
					for _, b := range [][2]int64{{0, 0}, {since, until}} {
						want := c.oracle(f, b[0], b[1])
						if fc.nonEmpty && b[0] == 0 && len(want) == 0 {
							t.Errorf("%q: the corpus holds no matching event; the filter proves nothing", fc.src)
						}
						sel := local.Selection{Filter: f, Since: b[0], Until: b[1], NeedEvent: true}
						got := selectRaw(t, s, sel)
						if len(got) != len(want) || !slices.Equal(got, want) {
							t.Errorf("%q since %d until %d: %d events, want %d (%s)", fc.src, b[0], b[1], len(got), len(want), firstDiff(got, want))
						}
						n, err := s.Count(context.Background(), sel)
						if err != nil || n != int64(len(want)) {
							t.Errorf("%q: count %d, %v; want %d", fc.src, n, err, len(want))
						}
					}
				}
			}
			if be.name != "clickhouse-cluster" {
				// The cluster runs the check once, after the duplicates,
				// which is the harder case, to save CI time (ADR 0020).
				t.Run("select", check)
			}
			// The same batches again, and a batch mixing stored events with
			// copies of one another: every answer is unchanged.
			again := appendAll(t, s, c.batches)
			if again.Stored+again.Duplicates != len(c.records) {
				t.Errorf("appending again: stored %d + duplicates %d, want %d in all", again.Stored, again.Duplicates, len(c.records))
			}
			mixed := &pipeline.Batch{Cluster: "prod", Received: time.Now(), Records: append(slices.Clone(c.batches[0].Records[:10]), c.batches[0].Records[:10]...)}
			if res, err := s.Append(context.Background(), mixed); err != nil || res.Stored+res.Duplicates != 20 || res.Duplicates < 10 {
				t.Errorf("a batch holding each event twice: %+v, %v; want at least 10 duplicates of 20", res, err)
			}
			t.Run("select after duplicates", check)
			var exp bytes.Buffer
			err := s.Export(context.Background(), local.ScanOptions{}, func(st local.Stored) error {
				exp.Write(st.Raw)
				exp.WriteByte('\n')
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			answers[be.name] = exp.Bytes()
			var arrival bytes.Buffer
			for _, r := range c.records {
				arrival.Write(r.Raw)
				arrival.WriteByte('\n')
			}
			if !bytes.Equal(exp.Bytes(), arrival.Bytes()) {
				t.Errorf("export is not the events in arrival order, byte for byte: %d bytes, want %d", exp.Len(), arrival.Len())
			}
			checkStats(t, s, c)
			checkExportBounds(t, s, c, since, until)
			n, minT, maxT, err := s.Span(context.Background())
			if err != nil || n != len(c.records) || minT >= maxT {
				t.Errorf("span: %d events from %d to %d, %v; want %d", n, minT, maxT, err, len(c.records))
			}
		})
	}
}

// firstDiff names the first event one answer has and the other lacks.
func firstDiff(got, want []string) string {
	for _, g := range got {
		if _, ok := slices.BinarySearch(want, g); !ok {
			return "extra: " + trunc(g)
		}
	}
	for _, w := range want {
		if _, ok := slices.BinarySearch(got, w); !ok {
			return "missing: " + trunc(w)
		}
	}
	return "same events"
}

func trunc(s string) string {
	if len(s) > 300 {
		return s[:300] + "..."
	}
	return s
}

// statsOracle groups the oracle's events as local.StatsOf documents.
func checkStats(t *testing.T, s store.Store, c *corpus) {
	t.Helper()
	ref, reopen := backends()[0].open(t)
	_ = reopen
	appendAll(t, ref, c.batches)
	opts := []local.StatsOptions{
		{},
		{By: []local.Column{local.ColUser}},
		{By: []local.Column{local.ColVerb, local.ColResource}, Bytes: true},
		{By: []local.Column{local.ColCode, local.ColDecision, local.ColSourceIPs}},
		{By: []local.Column{local.ColGroups}, ByBytes: true},
		{Interval: time.Hour.Microseconds(), By: []local.Column{local.ColCluster}},
		{Interval: 24 * time.Hour.Microseconds(), Bytes: true},
	}
	for _, src := range []string{"", "verb!=get code>=200", `"secret"`, "ip in 10.0.0.0/8 not user~\"^system:node\""} {
		var f *query.Filter
		if src != "" {
			f, _ = query.CompileAt(src, now)
		}
		for _, o := range opts {
			sel := local.Selection{Filter: f}
			want, wantTot, err := ref.Stats(context.Background(), sel, o)
			if err != nil {
				t.Fatal(err)
			}
			if len(want) == 0 {
				t.Fatalf("stats %q %+v: the embedded store found no group", src, o)
			}
			got, tot, err := s.Stats(context.Background(), sel, o)
			if err != nil {
				t.Errorf("stats %q %+v: %v", src, o, err)
				continue
			}
			if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" || tot != wantTot {
				t.Errorf("stats %q %+v: totals %+v, want %+v; groups (-embedded +this):\n%s", src, o, tot, wantTot, diff)
			}
		}
	}
}

// checkExportBounds exports one cluster within time bounds.
func checkExportBounds(t *testing.T, s store.Store, c *corpus, since, until int64) {
	t.Helper()
	var want, got bytes.Buffer
	for i, r := range c.records {
		tm := r.Event.Time().UnixMicro()
		if c.cluster[i] == "staging" && tm >= since && tm < until {
			want.Write(r.Raw)
			want.WriteByte('\n')
		}
	}
	err := s.Export(context.Background(), local.ScanOptions{Cluster: "staging", Since: since, Until: until}, func(st local.Stored) error {
		if st.Cluster != "staging" {
			t.Fatalf("export of cluster staging gave an event of %q", st.Cluster)
		}
		got.Write(st.Raw)
		got.WriteByte('\n')
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if want.Len() == 0 || !bytes.Equal(got.Bytes(), want.Bytes()) {
		t.Errorf("export --cluster staging within bounds: %d bytes, want %d (not empty)", got.Len(), want.Len())
	}
}

// TestCopiesKeepTheirFirstArrival: a batch retried an hour later, whole
// and within another batch, carries another receive time; every backend
// answers with the first one, in Select and in Export, and counts each
// event once, as the embedded store does.
func TestCopiesKeepTheirFirstArrival(t *testing.T) {
	first := dayEvents(t, "2026-04-02", 12)
	first.Received = time.Date(2026, 4, 2, 12, 0, 1, 0, time.UTC)
	later := *first
	later.Received = first.Received.Add(time.Hour)
	mixed := later
	mixed.Records = append(slices.Clone(dayEvents(t, "2026-04-03", 3).Records), first.Records[4:]...)
	for _, be := range backends() {
		t.Run(be.name, func(t *testing.T) {
			s, reopen := be.open(t)
			appendAll(t, s, []*pipeline.Batch{first})
			s = reopen()
			appendAll(t, s, []*pipeline.Batch{&later, &mixed})
			want := first.Received.UnixMicro()
			n := 0
			err := s.Select(context.Background(), local.Selection{Filter: mustFilter(t, "time<2026-04-03T00:00:00Z"), NeedEvent: true}, func(h *local.Hit) error {
				if n++; h.Received != want {
					t.Errorf("select: %s received at %d, want %d (its first arrival)", h.Event.AuditID, h.Received, want)
				}
				return nil
			})
			if err != nil || n != 12 {
				t.Errorf("select: %d events, %v; want 12", n, err)
			}
			n = 0
			err = s.Export(context.Background(), local.ScanOptions{Until: time.Date(2026, 4, 3, 0, 0, 0, 0, time.UTC).UnixMicro()}, func(st local.Stored) error {
				if n++; st.Received != want {
					t.Errorf("export: an event received at %d, want %d (its first arrival)", st.Received, want)
				}
				return nil
			})
			if err != nil || n != 12 {
				t.Errorf("export: %d events, %v; want 12", n, err)
			}
			if c, err := s.Count(context.Background(), local.Selection{}); err != nil || c != 15 {
				t.Errorf("count: %d, %v; want 15", c, err)
			}
		})
	}
}

func mustFilter(t *testing.T, src string) *query.Filter {
	t.Helper()
	f, err := query.CompileAt(src, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return f
}
