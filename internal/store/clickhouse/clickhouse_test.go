package clickhouse

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kubetrail/kubetrail/internal/audit"
	"github.com/kubetrail/kubetrail/internal/pipeline"
	"github.com/kubetrail/kubetrail/internal/query"
	"github.com/kubetrail/kubetrail/internal/store/clickhouse/chtest"
	"github.com/kubetrail/kubetrail/internal/store/local"
)

var ch chtest.Server

func TestMain(m *testing.M) {
	code := chtest.Run(m, &ch)
	if err := replicas.stop(); err != nil {
		fmt.Fprintf(os.Stderr, "replicas: %v\n", err)
		code = max(code, 1)
	}
	os.Exit(code)
}

// newDB creates a fresh kubetrail database on the package's server.
func newDB(t testing.TB, name string) (Config, *Store) {
	t.Helper()
	cfg, err := ParseURL(strings.Replace(ch.URL(t), "http://", "clickhouse://", 1) + "/" + name)
	if err != nil {
		t.Fatal(err)
	}
	if err := Setup(context.Background(), cfg); err != nil {
		t.Fatalf("setup: %v\n%s", err, ch.Log())
	}
	s, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return cfg, s
}

// TestQuoteEveryByte sends every byte value, and strings built to end a
// literal early, through quote and asks the server what it read: the same
// bytes, whatever they are.
func TestQuoteEveryByte(t *testing.T) {
	_, s := newDB(t, "kt_quote")
	var all []byte
	for i := range 256 {
		all = append(all, byte(i))
	}
	vals := []string{string(all), `'`, `\`, `\'`, `\\'`, `'; DROP DATABASE kt_quote; --`, "a\x00b", "\n", `\x27`, `\0`, "é中\xff\xfe"}
	for _, v := range vals {
		var got string
		sql := "SELECT hex(" + quote(v) + ") FORMAT RowBinary"
		err := s.c.query(context.Background(), sql, func(r io.Reader) error {
			rr := newRowReader(r)
			got = rr.string()
			return rr.err
		})
		if err != nil {
			t.Fatalf("%q: %v", v, err)
		}
		if want := strings.ToUpper(hex.EncodeToString([]byte(v))); got != want {
			t.Errorf("quote(%q) reads back as %s, want %s", v, got, want)
		}
	}
}

// hostile are values meant to break out of a SQL literal or a regular
// expression, or to be mangled on the way.
var hostile = []string{
	`it's`,
	`back\slash`,
	`'; DROP TABLE events; --`,
	`\'; DROP TABLE kt_inject.events; --`,
	"nul\x00byte",
	"new\nline\r\ttab",
	`\x27 \0 \\`,
	"unit\x1fsep",
	`%_*?.[]()^$|+{}`,
}

// hostileEvent is an event holding v in every string field.
func hostileEvent(i int, v string) []byte {
	ev := map[string]any{
		"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata",
		"auditID": v, "stage": "ResponseComplete", "requestURI": v, "verb": v,
		"user":             map[string]any{"username": v, "uid": v, "groups": []string{v, "x"}, "extra": map[string][]string{v: {v}}},
		"impersonatedUser": map[string]any{"username": v, "uid": v, "groups": []string{v}, "extra": map[string][]string{v: {v}}},
		"sourceIPs":        []string{"10.0.0.1", v},
		"userAgent":        v,
		"objectRef": map[string]any{"resource": v, "namespace": v, "name": v, "uid": v, "apiGroup": v,
			"apiVersion": v, "resourceVersion": v, "subresource": v},
		"responseStatus":           map[string]any{"code": 403, "status": v, "reason": v, "message": v},
		"requestReceivedTimestamp": time.Date(2026, 11, 1, 0, 0, i, 0, time.UTC).Format(time.RFC3339Nano),
		"stageTimestamp":           time.Date(2026, 11, 1, 0, 0, i, 500, time.UTC).Format(time.RFC3339Nano),
		"annotations":              map[string]string{v: v, "authorization.k8s.io/decision": v},
		"authenticationMetadata":   map[string]any{"impersonationConstraint": v},
	}
	b, err := json.Marshal(ev)
	if err != nil {
		panic(err)
	}
	return b
}

// TestInjection stores events with hostile values in every field and
// asks for each value through every field with =, in and an anchored ~:
// each question finds exactly its event, and the table is intact.
func TestInjection(t *testing.T) {
	cfg, s := newDB(t, "kt_inject")
	var lines []byte
	for i, v := range hostile {
		lines = append(append(lines, hostileEvent(i, v)...), '\n')
	}
	var recs []audit.Record
	audit.NewDecoder(audit.Limits{}).DecodeLines("hostile", lines, func(r audit.Record) { recs = append(recs, r) },
		func(p audit.Problem) { t.Fatalf("%v", p) })
	for i := range recs {
		b := &pipeline.Batch{Cluster: hostile[i], Received: time.Now(), Records: recs[i : i+1]}
		if _, err := s.Append(context.Background(), b); err != nil {
			t.Fatal(err)
		}
	}
	fieldsOf := []query.Field{
		{Name: "user"}, {Name: "group"}, {Name: "user.uid"}, {Name: "user.extra"}, {Name: "as"}, {Name: "as.group"},
		{Name: "as.uid"}, {Name: "as.extra"}, {Name: "verb"}, {Name: "resource"}, {Name: "subresource"}, {Name: "ns"},
		{Name: "name"}, {Name: "apigroup"}, {Name: "apiversion"}, {Name: "objectRef.uid"},
		{Name: "objectRef.resourceVersion"}, {Name: "status"}, {Name: "reason"}, {Name: "message"}, {Name: "ip"},
		{Name: "peer"}, {Name: "ua"}, {Name: "uri"}, {Name: "auditid"}, {Name: "cluster"}, {Name: "decision"},
		{Name: "annotation"}, {Name: "impersonationConstraint"},
	}
	now := time.Now()
	for i, v := range hostile {
		for _, f := range fieldsOf {
			if f.Name == "user.extra" || f.Name == "as.extra" || f.Name == "annotation" {
				f.Key = v
			}
			ops := []*query.Cmp{
				{Field: f, Op: query.OpMatch, Values: []query.Value{{Text: "^" + regexp.QuoteMeta(v) + "$"}}},
			}
			if f.Name != "ip" && f.Name != "peer" {
				ops = append(ops,
					&query.Cmp{Field: f, Op: query.OpEq, Values: []query.Value{{Text: v}}},
					&query.Cmp{Field: f, Op: query.OpIn, Values: []query.Value{{Text: "nothing"}, {Text: v}}})
			}
			for _, c := range ops {
				flt, err := query.CompileExpr(c, now)
				if err != nil {
					t.Fatalf("%s: %v", c, err)
				}
				var got []string
				err = s.Select(context.Background(), local.Selection{Filter: flt}, func(h *local.Hit) error {
					got = append(got, h.Event.AuditID)
					return nil
				})
				if err != nil {
					t.Errorf("%s: %v", c, err)
					continue
				}
				if len(got) != 1 || got[0] != v {
					t.Errorf("%s: found the events of %q, want only that of %q", c, got, hostile[i])
				}
			}
		}
		// Free text, and an export of a cluster named v.
		flt, err := query.CompileExpr(&query.Text{Text: v}, now)
		if err != nil {
			t.Fatal(err)
		}
		if n, err := s.Count(context.Background(), local.Selection{Filter: flt}); err != nil || n < 1 {
			t.Errorf("free text %q: %d events, %v; want its event", v, n, err)
		}
		n := 0
		err = s.Export(context.Background(), local.ScanOptions{Cluster: v}, func(st local.Stored) error {
			if st.Cluster != v || string(st.Raw) != string(recs[i].Raw) {
				t.Errorf("export of cluster %q gave cluster %q", v, st.Cluster)
			}
			n++
			return nil
		})
		if err != nil || n != 1 {
			t.Errorf("export of cluster %q: %d events, %v; want 1", v, n, err)
		}
	}
	// Everything is still there.
	s2, err := Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := s2.Count(context.Background(), local.Selection{}); err != nil || n != int64(len(hostile)) {
		t.Errorf("after the questions the store holds %d events, %v; want %d", n, err, len(hostile))
	}
}

// TestErrors checks what a person sees when ClickHouse is down, the
// database was never set up, or holds another schema version.
func TestErrors(t *testing.T) {
	ctx := context.Background()
	_, err := Open(ctx, Config{Endpoint: "http://127.0.0.1:1", Database: "kubetrail"})
	if !errors.Is(err, ErrUnreachable) || !strings.Contains(err.Error(), "http://127.0.0.1:1") {
		t.Errorf("open with nothing listening: %v; want ErrUnreachable naming the address", err)
	}
	cfg, err := ParseURL(strings.Replace(ch.URL(t), "http://", "clickhouse://", 1) + "/kt_never")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, cfg); err == nil || !strings.Contains(err.Error(), "kubetrail setup clickhouse") {
		t.Errorf("open before setup: %v; want a message naming kubetrail setup clickhouse", err)
	}
	cfg, s := newDB(t, "kt_version")
	if err := s.c.exec(ctx, "INSERT INTO kt_version.kubetrail_meta VALUES ('schema_version', '99')"); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(ctx, cfg); err == nil || !strings.Contains(err.Error(), "schema_version") {
		t.Errorf("open of a database with two versions: %v; want it refused", err)
	}
	if err := Setup(ctx, cfg); err == nil {
		t.Error("setup over another schema version: no error")
	}
	// Appending while ClickHouse is down is ErrUnavailable, so that a
	// receiver answers 503 and the sender retries.
	down := &Store{c: newClient(Config{Endpoint: "http://127.0.0.1:1", Database: "kubetrail"}), db: "kubetrail", now: time.Now}
	recs := []audit.Record{{Raw: []byte(`{}`)}}
	if _, err := down.Append(ctx, &pipeline.Batch{Records: recs}); !errors.Is(err, pipeline.ErrUnavailable) {
		t.Errorf("append with ClickHouse down: %v; want pipeline.ErrUnavailable", err)
	}
}

func TestParseURL(t *testing.T) {
	f := func(in string, want Config, wantErr string) {
		t.Helper()
		got, err := ParseURL(in)
		if wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), wantErr) {
				t.Errorf("ParseURL(%q): %v, want an error with %q", in, err, wantErr)
			}
			return
		}
		if err != nil || got != want {
			t.Errorf("ParseURL(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	f("clickhouse://ch.example:8123/kubetrail", Config{Endpoint: "http://ch.example:8123", Database: "kubetrail"}, "")
	f("clickhouse://ch.example/audit_2", Config{Endpoint: "http://ch.example:8123", Database: "audit_2"}, "")
	f("clickhouse://bob:s3cret@[::1]:9123/k", Config{Endpoint: "http://[::1]:9123", Database: "k", User: "bob", Password: "s3cret"}, "")
	f("clickhouse://ch:8123/", Config{}, "database")
	f("clickhouse://ch:8123/a;DROP", Config{}, "database")
	f("clickhouse://ch:8123/a.b", Config{}, "database")
	f("http://ch:8123/k", Config{}, "want clickhouse://")
	f("clickhouse:///k", Config{}, "no host")
	f("clickhouse://ch/k?shards=2", Config{}, `unknown option "shards"`)
}

// TestTimeComparisons pins the µs column against times with and without
// a rest below the microsecond, where an off-by-one would hide.
func TestTimeComparisons(t *testing.T) {
	_, s := newDB(t, "kt_time")
	var lines []byte
	for i := range 3 {
		// Events at 00:00:01.000001, .000002, .000003.
		ts := time.Date(2026, 11, 1, 0, 0, 1, (i+1)*1000, time.UTC).Format(time.RFC3339Nano)
		lines = append(lines, fmt.Sprintf(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"%d","stage":"ResponseComplete","requestURI":"/","verb":"get","user":{},"requestReceivedTimestamp":%q,"stageTimestamp":%q}`+"\n", i+1, ts, ts)...)
	}
	var recs []audit.Record
	audit.NewDecoder(audit.Limits{}).DecodeLines("times", lines, func(r audit.Record) { recs = append(recs, r) },
		func(p audit.Problem) { t.Fatalf("%v", p) })
	if _, err := s.Append(context.Background(), &pipeline.Batch{Cluster: "c", Received: time.Now(), Records: recs}); err != nil {
		t.Fatal(err)
	}
	for _, src := range []string{
		"time=2026-11-01T00:00:01.000002Z", "time=2026-11-01T00:00:01.0000025Z",
		"time<2026-11-01T00:00:01.000002Z", "time<2026-11-01T00:00:01.0000025Z",
		"time<=2026-11-01T00:00:01.000002Z", "time<=2026-11-01T00:00:01.0000025Z",
		"time>2026-11-01T00:00:01.000002Z", "time>2026-11-01T00:00:01.0000015Z",
		"time>=2026-11-01T00:00:01.000002Z", "time>=2026-11-01T00:00:01.0000015Z",
		"received>=2026-11-01T00:00:01.0000015Z", "time!=2026-11-01T00:00:01.000002Z",
	} {
		f, err := query.Compile(src)
		if err != nil {
			t.Fatal(err)
		}
		want, got := "", ""
		for _, r := range recs {
			if f.Match(&r.Event, "c") {
				want += r.Event.AuditID
			}
		}
		err = s.Select(context.Background(), local.Selection{Filter: f}, func(h *local.Hit) error {
			got += h.Event.AuditID
			return nil
		})
		if err != nil || got != want {
			t.Errorf("%s: events %q, %v; want %q", src, got, err, want)
		}
	}
}

// TestInjectionThroughGlobs asks for hostile values as globs (a prefix,
// a suffix, a substring and a star inside, which becomes a regular
// expression) through string and list fields, and compares each answer
// with the query package's own matcher over the same events.
func TestInjectionThroughGlobs(t *testing.T) {
	_, s := newDB(t, "kt_inject_glob")
	var lines []byte
	for i, v := range hostile {
		lines = append(append(lines, hostileEvent(i, v)...), '\n')
	}
	var recs []audit.Record
	audit.NewDecoder(audit.Limits{}).DecodeLines("hostile", lines, func(r audit.Record) { recs = append(recs, r) },
		func(p audit.Problem) { t.Fatalf("%v", p) })
	if _, err := s.Append(context.Background(), &pipeline.Batch{Cluster: "c", Received: time.Now(), Records: recs}); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for _, v := range hostile {
		globs := []string{v + "*", "*" + v, "*" + v + "*", v[:1] + "*" + v[1:], v[:len(v)-1] + "*" + v[len(v)-1:] + "*"}
		for _, g := range globs {
			for _, f := range []query.Field{{Name: "user"}, {Name: "group"}, {Name: "ns"}, {Name: "annotation", Key: v}, {Name: "user.extra", Key: v}, {Name: "ip"}} {
				c := &query.Cmp{Field: f, Op: query.OpEq, Values: []query.Value{{Text: g, Glob: true}}}
				flt, err := query.CompileExpr(c, now)
				if err != nil {
					t.Fatalf("%s: %v", c, err)
				}
				var want []string
				for i := range recs {
					if flt.Match(&recs[i].Event, "c") {
						want = append(want, recs[i].Event.AuditID)
					}
				}
				var got []string
				err = s.Select(context.Background(), local.Selection{Filter: flt}, func(h *local.Hit) error {
					got = append(got, h.Event.AuditID)
					return nil
				})
				if err != nil || strings.Join(got, "\x00") != strings.Join(want, "\x00") || len(want) == 0 {
					t.Errorf("%s: %q, %v; the query package finds %q", c, got, err, want)
				}
			}
		}
	}
}

// TestRegexesMatchAsTheQueryPackage: a regular expression, or a glob that
// becomes one, selects on ClickHouse what the query package's matcher
// (Go's regexp) selects: '.' and newlines (ClickHouse's match() lets it
// match one, Go's only after (?s)), NUL bytes in a pattern and in a glob,
// (?i) (18.16 looks for a pattern's literal text case-sensitively first),
// \x00 escapes and an open \Q.
func TestRegexesMatchAsTheQueryPackage(t *testing.T) {
	_, s := newDB(t, "kt_regex")
	users := []string{"a\nb", "a-b", "a", "a\x00zzz", "a\x00b", "line one\nline two", "n\x00x", "Admin", "a.b", "x\\Q"}
	var lines []byte
	for i, u := range users {
		ev := map[string]any{"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata", "auditID": fmt.Sprint(i),
			"stage": "ResponseComplete", "verb": "get", "user": map[string]any{"username": u},
			"stageTimestamp": time.Date(2026, 11, 1, 0, 0, i, 0, time.UTC).Format(time.RFC3339Nano)}
		b, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		lines = append(append(lines, b...), '\n')
	}
	var recs []audit.Record
	audit.NewDecoder(audit.Limits{}).DecodeLines("regex", lines, func(r audit.Record) { recs = append(recs, r) },
		func(p audit.Problem) { t.Fatalf("%v", p) })
	if _, err := s.Append(context.Background(), &pipeline.Batch{Cluster: "c", Received: time.Now(), Records: recs}); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for _, c := range []*query.Cmp{
		{Field: query.Field{Name: "user"}, Op: query.OpMatch, Values: []query.Value{{Text: "^a.b$"}}},
		{Field: query.Field{Name: "user"}, Op: query.OpMatch, Values: []query.Value{{Text: "one.line"}}},
		{Field: query.Field{Name: "user"}, Op: query.OpMatch, Values: []query.Value{{Text: "(?s)one.line"}}},
		{Field: query.Field{Name: "user"}, Op: query.OpMatch, Values: []query.Value{{Text: "^a\x00b$"}}},
		{Field: query.Field{Name: "user"}, Op: query.OpMatch, Values: []query.Value{{Text: "^a[\x00-\x01]z"}}},
		{Field: query.Field{Name: "user"}, Op: query.OpNotMatch, Values: []query.Value{{Text: "^a\x00b$"}}},
		{Field: query.Field{Name: "user"}, Op: query.OpEq, Values: []query.Value{{Text: "a\x00*b", Glob: true}}},
		{Field: query.Field{Name: "user"}, Op: query.OpEq, Values: []query.Value{{Text: "n*\x00x", Glob: true}}},
		{Field: query.Field{Name: "user"}, Op: query.OpMatch, Values: []query.Value{{Text: "a\x00zzz"}}},
		{Field: query.Field{Name: "user"}, Op: query.OpMatch, Values: []query.Value{{Text: "\x00b"}}},
		{Field: query.Field{Name: "user"}, Op: query.OpEq, Values: []query.Value{{Text: "*\x00z*", Glob: true}}},
		{Field: query.Field{Name: "user"}, Op: query.OpEq, Values: []query.Value{{Text: "a\x00*", Glob: true}}},
		{Field: query.Field{Name: "user"}, Op: query.OpEq, Values: []query.Value{{Text: "*\x00b", Glob: true}}},
		{Field: query.Field{Name: "user"}, Op: query.OpIn, Values: []query.Value{{Text: "a\x00b"}, {Text: "n\x00x"}}},
		{Field: query.Field{Name: "user"}, Op: query.OpMatch, Values: []query.Value{{Text: "(?i)admin"}}},
		{Field: query.Field{Name: "user"}, Op: query.OpMatch, Values: []query.Value{{Text: "(?i)^ADMIN$"}}},
		{Field: query.Field{Name: "user"}, Op: query.OpMatch, Values: []query.Value{{Text: "A(?i)DMIN"}}},
		{Field: query.Field{Name: "user"}, Op: query.OpMatch, Values: []query.Value{{Text: "(?-s)a\\x00b"}}},
		{Field: query.Field{Name: "user"}, Op: query.OpMatch, Values: []query.Value{{Text: "^\\Qa.b"}}},
		{Field: query.Field{Name: "user"}, Op: query.OpMatch, Values: []query.Value{{Text: "^x\\\\Q$"}}},
		{Field: query.Field{Name: "user"}, Op: query.OpMatch, Values: []query.Value{{Text: "\\Q\\E|^a\\Q.\\E"}}},
	} {
		flt, err := query.CompileExpr(c, now)
		if err != nil {
			t.Fatalf("%s: %v", c, err)
		}
		var want, got []string
		for i := range recs {
			if flt.Match(&recs[i].Event, "c") {
				want = append(want, recs[i].Event.AuditID)
			}
		}
		err = s.Select(context.Background(), local.Selection{Filter: flt}, func(h *local.Hit) error {
			got = append(got, h.Event.AuditID)
			return nil
		})
		if err != nil || strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("%q: events %v, %v; the query package selects %v", c.String(), got, err, want)
		}
		if n, err := s.Count(context.Background(), local.Selection{Filter: flt}); err != nil || n != int64(len(want)) {
			t.Errorf("%q: count %d, %v; want %d", c.String(), n, err, len(want))
		}
	}
}
