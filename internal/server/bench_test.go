package server

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http/httptest"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/kubetrail/kubetrail/internal/investigate/investigatetest"
	"github.com/kubetrail/kubetrail/internal/pipeline"
	"github.com/kubetrail/kubetrail/internal/store/local"
	"github.com/kubetrail/kubetrail/internal/testenv"
)

// BenchmarkStatsWarm answers a count through the API's handler as serve
// does warm (issue 12: under 1 ms at 2M): one DB and one Server for the
// whole run, GET /api/v1/stats?filter=F per iteration, no network. It
// runs over a copy of the data folder named by KUBETRAIL_BENCH_DATA (a
// store `kubetrail import` wrote from bench/gen's corpus), or over 100,000
// generated events in several segments:
//
//	go test ./internal/server -run '^$' -bench StatsWarm -count 10
//	KUBETRAIL_BENCH_DATA=/tmp/data go test ./internal/server -run '^$' -bench StatsWarm
func BenchmarkStatsWarm(b *testing.B) {
	dir := b.TempDir()
	if src := os.Getenv("KUBETRAIL_BENCH_DATA"); src != "" {
		if err := os.CopyFS(dir, os.DirFS(src)); err != nil {
			b.Fatal(err)
		}
		os.Remove(dir + "/LOCK")
	}
	db, err := local.Open(dir, local.Options{NoSync: true, WALSegmentBytes: 8 << 20})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	if os.Getenv("KUBETRAIL_BENCH_DATA") == "" {
		benchFill(b, db, 100_000)
	}
	s, err := New(Config{Listen: "127.0.0.1:0"}, db, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	h := s.Handler()
	for _, q := range []struct{ name, filter string }{
		{"secrets", "resource=secrets"},
		{"user", "user=admin"},
		{"who-deleted", "verb=delete resource=secrets ns=production name=important"},
	} {
		path := "/api/v1/stats?filter=" + url.QueryEscape(q.filter)
		b.Run(q.name, func(b *testing.B) {
			b.ReportAllocs()
			cpu := testenv.CPUTime()
			for b.Loop() {
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
				if rec.Code != 200 {
					b.Fatalf("%s: %d %s", path, rec.Code, rec.Body)
				}
			}
			// On a shared machine the CPU time is steadier than the wall
			// time.
			b.ReportMetric(float64(testenv.CPUTime()-cpu)/float64(b.N), "cpu-ns/op")
		})
	}
}

// benchFill stores n events with a cluster's cardinalities (few verbs
// and resources, dozens of users, hundreds of namespaces) and waits until
// the full WAL segments are sealed.
func benchFill(b *testing.B, db *local.DB, n int) {
	rng := rand.New(rand.NewPCG(5, 6))
	verbs := []string{"get", "list", "watch", "create", "update", "patch", "delete"}
	resources := []string{"pods", "secrets", "configmaps", "deployments", "services", "events"}
	for i := 0; i < n; i += 1000 {
		var evs []*investigatetest.Event
		for j := i; j < i+1000 && j < n; j++ {
			user := fmt.Sprintf("system:serviceaccount:ns-%d:sa-%d", rng.IntN(20), rng.IntN(3))
			if rng.IntN(10) == 0 {
				user = "admin"
			}
			ns := fmt.Sprintf("tenant-%03d", rng.IntN(200))
			if rng.IntN(20) == 0 {
				ns = "production"
			}
			name := fmt.Sprintf("app-%d", rng.IntN(3000))
			if rng.IntN(200) == 0 {
				name = "important"
			}
			res := resources[rng.IntN(len(resources))]
			evs = append(evs, investigatetest.Req(float64(j)/4, user, verbs[rng.IntN(len(verbs))], "/api/v1/namespaces/"+ns+"/"+res+"/"+name).
				Obj(res, ns, name).ID(fmt.Sprintf("id-%d", j)))
		}
		recs, err := investigatetest.Records(evs)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := db.Append(context.Background(), &pipeline.Batch{Cluster: "default", Received: time.Now(), Records: recs}); err != nil {
			b.Fatal(err)
		}
	}
	for start := time.Now(); time.Since(start) < time.Minute; time.Sleep(10 * time.Millisecond) {
		if db.Stats().Sealed.Load() >= 3 {
			return
		}
	}
	b.Fatalf("%d WAL segments sealed after a minute, want 3", db.Stats().Sealed.Load())
}
