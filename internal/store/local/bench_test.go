package local

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/kubetrail/kubetrail/internal/audit"
	"github.com/kubetrail/kubetrail/internal/pipeline"
	"github.com/kubetrail/kubetrail/internal/query"
	"github.com/kubetrail/kubetrail/internal/rules"
	"github.com/kubetrail/kubetrail/internal/rules/builtin"
	"github.com/kubetrail/kubetrail/internal/rules/native"
	"github.com/kubetrail/kubetrail/internal/testenv"
)

// The query benchmarks open a reader and answer one question per
// iteration, as a CLI process or an API request does. They run over a
// generated store of benchEvents events, or over the data folder named by
// KUBETRAIL_BENCH_DATA (for instance one that `kubetrail import` wrote from
// bench/gen's corpus):
//
//	go test ./internal/store/local -run '^$' -bench Query -benchtime 30x
//	KUBETRAIL_BENCH_DATA=/tmp/data go test ./internal/store/local -run '^$' -bench Query

const benchEvents = 100_000

// benchMade is set when benchStore generated its store, which TestMain
// removes.
var benchMade bool

var benchStore = sync.OnceValues(func() (string, error) {
	if dir := os.Getenv("KUBETRAIL_BENCH_DATA"); dir != "" {
		return dir, nil
	}
	dir, err := os.MkdirTemp("", "kubetrail-bench-")
	if err != nil {
		return "", err
	}
	benchMade = true
	db, err := Open(dir, Options{NoSync: true, WALSegmentBytes: 16 << 20})
	if err != nil {
		return "", err
	}
	rng := rand.New(rand.NewPCG(5, 6))
	for b := 0; b < benchEvents/1000; b++ {
		batch := &pipeline.Batch{Cluster: "default", Received: time.Now()}
		for i := 0; i < 1000; i++ {
			batch.Records = append(batch.Records, benchEvent(rng, b*1000+i))
		}
		if _, err := db.Append(context.Background(), batch); err != nil {
			return "", err
		}
	}
	return dir, db.Close()
})

// benchEvent makes an event with cardinalities like a cluster's: few
// verbs and resources, dozens of users and IPs, hundreds of namespaces and
// thousands of names.
func benchEvent(rng *rand.Rand, i int) audit.Record {
	ts := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(i)*250*time.Millisecond + time.Duration(rng.IntN(200_000))*time.Microsecond)
	user := fmt.Sprintf("system:serviceaccount:ns-%d:sa-%d", rng.IntN(20), rng.IntN(3))
	switch rng.IntN(10) {
	case 0:
		user = "admin"
	case 1, 2, 3:
		user = fmt.Sprintf("system:node:node-%02d", rng.IntN(20))
	}
	ns := fmt.Sprintf("tenant-%03d", rng.IntN(200))
	if rng.IntN(20) == 0 {
		ns = "production"
	}
	name := fmt.Sprintf("app-%d-%05x", rng.IntN(100), rng.IntN(1<<16)%3000)
	if rng.IntN(200) == 0 {
		name = "important"
	}
	code := []int32{200, 200, 200, 201, 404, 403, 409, 500}[rng.IntN(8)]
	ev := audit.Event{
		Kind: "Event", APIVersion: audit.APIVersionV1, Level: audit.LevelMetadata,
		AuditID:                  fmt.Sprintf("%08x-%04x-4%03x-%04x-%012x", rng.Uint32(), rng.IntN(1<<16), rng.IntN(1<<12), rng.IntN(1<<16), rng.Uint64()&(1<<48-1)),
		Stage:                    audit.StageResponseComplete,
		Verb:                     tVerbs[rng.IntN(len(tVerbs))],
		User:                     audit.UserInfo{Username: user, Groups: []string{"system:authenticated"}},
		SourceIPs:                []string{fmt.Sprintf("10.0.%d.%d", rng.IntN(4), rng.IntN(40))},
		UserAgent:                fmt.Sprintf("kubectl/v1.3%d.0 (linux/amd64)", rng.IntN(5)),
		RequestReceivedTimestamp: audit.MicroTime{Time: ts},
		StageTimestamp:           audit.MicroTime{Time: ts.Add(time.Duration(rng.IntN(20000)) * time.Microsecond)},
		ObjectRef:                &audit.ObjectReference{Resource: tRes[rng.IntN(len(tRes)-1)], Namespace: ns, Name: name, APIVersion: "v1"},
		ResponseStatus:           &audit.Status{Code: code},
		Annotations:              map[string]string{"authorization.k8s.io/decision": "allow"},
	}
	if rng.IntN(100) == 0 {
		ev.SourceIPs = []string{"192.168.1.100"}
	}
	if rng.IntN(30) == 0 {
		ev.ObjectRef.Subresource = "exec"
	}
	ev.RequestURI = "/api/v1/namespaces/" + ns + "/" + ev.ObjectRef.Resource + "/" + name
	raw, _ := json.Marshal(&ev)
	var rec audit.Record
	audit.NewDecoder(audit.Limits{}).DecodeBody("gen", raw, func(r audit.Record) { rec = r }, func(p audit.Problem) { panic(p.String()) })
	return rec
}

// benchQuestions are bench/run's seed questions.
var benchQuestions = []struct{ name, filter string }{
	{"who-deleted", "verb=delete resource=secrets ns=production name=important"},
	{"secrets", "resource=secrets"},
	{"user", "user=admin"},
	{"failed", "code>=400"},
	{"exec", "subresource=exec verb in (create,get)"},
	{"ip", "ip=192.168.1.100"},
	{"rbac", "apigroup=rbac.authorization.k8s.io verb in (create,update,patch,delete)"},
}

func benchDir(b *testing.B) string {
	b.Helper()
	dir, err := benchStore()
	if err != nil {
		b.Fatal(err)
	}
	return dir
}

func BenchmarkQueryOpen(b *testing.B) {
	dir := benchDir(b)
	for b.Loop() {
		r, err := OpenReader(dir)
		if err != nil {
			b.Fatal(err)
		}
		r.Close()
	}
}

func BenchmarkQueryCount(b *testing.B) {
	dir := benchDir(b)
	for _, q := range benchQuestions {
		f, err := query.Compile(q.filter)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(q.name, func(b *testing.B) {
			for b.Loop() {
				r, err := OpenReader(dir)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := r.CountMatching(Selection{Filter: f}); err != nil {
					b.Fatal(err)
				}
				r.Close()
			}
		})
	}
}

// BenchmarkQueryEvents selects events with their text, as -o json does.
func BenchmarkQueryEvents(b *testing.B) {
	dir := benchDir(b)
	for _, q := range []string{"verb=delete resource=secrets ns=production name=important", "user=admin ns=production"} {
		f, _ := query.Compile(q)
		b.Run(q, func(b *testing.B) {
			for b.Loop() {
				r, err := OpenReader(dir)
				if err != nil {
					b.Fatal(err)
				}
				if err := r.Select(Selection{Filter: f, NeedEvent: true}, func(*Hit) error { return nil }); err != nil {
					b.Fatal(err)
				}
				r.Close()
			}
		})
	}
}

// benchPrinted are selections printed with their events' text, as
// `query -o jsonl` prints them: few events spread over the store, about a
// hundred, and a few thousand.
var benchPrinted = []struct{ name, filter string }{
	{"who-deleted", "verb=delete resource=secrets ns=production name=important"},
	{"user-verb", "user=carol verb=delete"},
	{"exec", "subresource=exec verb in (create,get)"},
	{"secrets", "resource=secrets"},
}

// BenchmarkQueryPrint opens a reader and copies the stored bytes of every
// matching event, as `kubetrail query -o jsonl` does before printing
// (NeedRaw: the events are not decoded).
func BenchmarkQueryPrint(b *testing.B) {
	dir := benchDir(b)
	for _, q := range benchPrinted {
		f, err := query.Compile(q.filter)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(q.name, func(b *testing.B) {
			var n, bytes int
			cpu := testenv.CPUTime()
			for b.Loop() {
				r, err := OpenReader(dir)
				if err != nil {
					b.Fatal(err)
				}
				var out [][]byte
				if err := r.Select(Selection{Filter: f, NeedRaw: true}, func(h *Hit) error {
					out = append(out, append([]byte(nil), h.Raw...))
					return nil
				}); err != nil {
					b.Fatal(err)
				}
				r.Close()
				n, bytes = len(out), 0
				for _, o := range out {
					bytes += len(o)
				}
			}
			b.ReportMetric(float64(testenv.CPUTime()-cpu)/float64(b.N), "cpu-ns/op")
			b.ReportMetric(float64(n), "events/op")
			_ = bytes
		})
	}
}

func BenchmarkQueryStats(b *testing.B) {
	dir := benchDir(b)
	for _, tc := range []struct {
		name string
		o    StatsOptions
	}{
		{"by-user", StatsOptions{By: []Column{ColUser}}},
		{"hourly", StatsOptions{Interval: int64(time.Hour / time.Microsecond)}},
		{"by-user-verb", StatsOptions{By: []Column{ColUser, ColVerb}}},
		{"bytes-by-resource", StatsOptions{By: []Column{ColResource}, ByBytes: true}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			for b.Loop() {
				r, err := OpenReader(dir)
				if err != nil {
					b.Fatal(err)
				}
				if _, _, err := r.StatsOf(Selection{}, tc.o); err != nil {
					b.Fatal(err)
				}
				r.Close()
			}
		})
	}
}

func TestMain(m *testing.M) {
	code := m.Run()
	if benchMade {
		dir, _ := benchStore()
		os.RemoveAll(dir)
	}
	os.Exit(code)
}

// BenchmarkDetect runs the built-in pack over the store as `kubetrail
// detect --data` does: SelectFilters decides the rules' conditions on the
// columns and reads ahead the events the rules will read; the rules read
// the others when they need them. cpu-ns/op tells more than the time on
// a shared machine. Over bench/gen's corpus (the events that
// decide its time have bodies, which the generated store lacks):
//
//	KUBETRAIL_BENCH_DATA=/tmp/data go test ./internal/store/local -run '^$' -bench Detect -benchtime 5x
func BenchmarkDetect(b *testing.B) {
	dir := benchDir(b)
	alerts := 0
	cpu := testenv.CPUTime()
	for b.Loop() {
		r, err := OpenReader(dir)
		if err != nil {
			b.Fatal(err)
		}
		pack, probs := native.Load(builtin.Rules())
		if len(probs) > 0 {
			b.Fatal(probs)
		}
		var (
			ev  rules.Event
			lz  rules.Lazy
			hit *Hit
		)
		read := func() (*audit.Event, []byte, error) {
			err := hit.Load()
			return hit.Event, hit.Raw, err
		}
		alerts = 0
		opts := LazyOptions{Filters: pack.Filters(), Fields: pack.KeyFields(), ReadAhead: pack.WillRead}
		err = r.SelectFilters(Selection{}, opts, func(h *Hit) error {
			hit = h
			ev = rules.Event{Ev: h.Event, Raw: h.Raw, Cluster: h.Cluster}
			if h.Partial {
				lz = rules.Lazy{Fields: h.Fields, Known: h.Known, Read: read}
				ev.Lazy = &lz
			}
			alerts += len(pack.Eval(&ev))
			if ev.Lazy != nil {
				return ev.Lazy.Err
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		r.Close()
	}
	b.ReportMetric(float64(testenv.CPUTime()-cpu)/float64(b.N), "cpu-ns/op")
	b.ReportMetric(float64(alerts), "alerts/op")
}

// BenchmarkWarmCount answers the seed questions as serve's API does: one
// DB open for the whole run (the serving process), a reader per request.
func BenchmarkWarmCount(b *testing.B) {
	dir := benchDir(b)
	db, err := Open(dir, Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	for _, q := range benchQuestions {
		f, err := query.Compile(q.filter)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(q.name, func(b *testing.B) {
			b.ReportAllocs()
			cpu := testenv.CPUTime()
			for b.Loop() {
				r, err := db.OpenReader()
				if err != nil {
					b.Fatal(err)
				}
				if _, err := r.CountMatching(Selection{Filter: f}); err != nil {
					b.Fatal(err)
				}
				r.Close()
			}
			// On a shared machine the CPU time is steadier than the wall
			// time.
			b.ReportMetric(float64(testenv.CPUTime()-cpu)/float64(b.N), "cpu-ns/op")
		})
	}
}

// BenchmarkWarmCountIngest is BenchmarkWarmCount while ingest appends to
// the WAL: before each request (untimed) one 400-event batch is acknowledged,
// as serve's webhook does at 50k events/s between API requests. A request
// must read every acknowledged event, so what it costs beyond
// BenchmarkWarmCount is the events still in the WAL (up to a 16 MiB
// segment's, plus those being sealed).
func BenchmarkWarmCountIngest(b *testing.B) {
	dir := b.TempDir()
	if err := os.CopyFS(dir+"/data", os.DirFS(benchDir(b))); err != nil {
		b.Fatal(err)
	}
	db, err := Open(dir+"/data", Options{NoSync: true, WALSegmentBytes: 16 << 20, SealAfter: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	rng := rand.New(rand.NewPCG(7, 8))
	next := 10 * benchEvents // past the stored events: no duplicates
	ingest := func(n int) {
		batch := &pipeline.Batch{Cluster: "default", Received: time.Now()}
		for i := 0; i < n; i++ {
			batch.Records = append(batch.Records, benchEvent(rng, next))
			next++
		}
		if _, err := db.Append(context.Background(), batch); err != nil {
			b.Fatal(err)
		}
	}
	for i := 0; i < 20; i++ {
		ingest(1000)
	}
	for _, q := range benchQuestions {
		f, err := query.Compile(q.filter)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(q.name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				ingest(400)
				b.StartTimer()
				r, err := db.OpenReader()
				if err != nil {
					b.Fatal(err)
				}
				if _, err := r.CountMatching(Selection{Filter: f}); err != nil {
					b.Fatal(err)
				}
				r.Close()
			}
		})
	}
}

// BenchmarkWarmOpen is what each API request pays before it asks
// anything: DB.OpenReader and Close on a serving DB, nothing changing the
// folder.
func BenchmarkWarmOpen(b *testing.B) {
	db, err := Open(benchDir(b), Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	b.ReportAllocs()
	cpu := testenv.CPUTime()
	for b.Loop() {
		r, err := db.OpenReader()
		if err != nil {
			b.Fatal(err)
		}
		r.Close()
	}
	b.ReportMetric(float64(testenv.CPUTime()-cpu)/float64(b.N), "cpu-ns/op")
}

// BenchmarkScanAll reads every stored event's bytes, as export does.
func BenchmarkScanAll(b *testing.B) {
	dir := benchDir(b)
	var n, bytes int64
	cpu := testenv.CPUTime()
	for b.Loop() {
		n, bytes = 0, 0
		if err := Scan(dir, ScanOptions{}, func(s Stored) error {
			n++
			bytes += int64(len(s.Raw))
			return nil
		}); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(testenv.CPUTime()-cpu)/float64(b.N), "cpu-ns/op")
	b.ReportMetric(float64(n), "events/op")
	b.SetBytes(bytes)
}

// BenchmarkSelectEveryEvent selects every event decoded, as detect does
// with Sigma or Falco rules (and --jq with no filter): the read-ahead's
// parallel decoding, and what it holds. cpu-ns/op and the peak heap
// (runtime/metrics, sampled each 64k events) tell more than the time on
// a shared machine. Over a 2M-event store:
//
//	KUBETRAIL_BENCH_DATA=/tmp/data go test ./internal/store/local -run '^$' -bench SelectEveryEvent -benchtime 3x
func BenchmarkSelectEveryEvent(b *testing.B) {
	dir := benchDir(b)
	cpu := testenv.CPUTime()
	var peak uint64
	var ms runtime.MemStats
	for b.Loop() {
		r, err := OpenReader(dir)
		if err != nil {
			b.Fatal(err)
		}
		n := 0
		if err := r.Select(Selection{NeedEvent: true}, func(h *Hit) error {
			if n++; n%(64<<10) == 0 {
				runtime.ReadMemStats(&ms)
				peak = max(peak, ms.HeapInuse)
			}
			return nil
		}); err != nil {
			b.Fatal(err)
		}
		r.Close()
	}
	b.ReportMetric(float64(testenv.CPUTime()-cpu)/float64(b.N), "cpu-ns/op")
	b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
}
