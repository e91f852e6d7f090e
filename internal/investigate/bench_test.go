package investigate

import (
	"context"
	"net/url"
	"os"
	"testing"
	"time"

	"github.com/kubetrail/kubetrail/internal/store/local"
	"github.com/kubetrail/kubetrail/internal/testenv"
)

// The investigation benchmarks open a reader and run one investigation per
// iteration, as the CLI does, over the data folder named by
// KUBETRAIL_BENCH_DATA: a store of bench/gen's corpus, whose incident
// gives each question an answer:
//
//	go run ./bench/gen --events 300000 --seed 1 > /tmp/audit.log
//	kubetrail import --data /tmp/data /tmp/audit.log
//	KUBETRAIL_BENCH_DATA=/tmp/data go test ./internal/investigate -run '^$' -bench Investigate
var benchInvestigations = []struct {
	name, inv string
	params    url.Values
}{
	{"who-deleted", "who", url.Values{"verb": {"delete"}, "resource": {"secrets/important"}, "namespace": {"production"}}},
	{"who-secrets", "who", url.Values{"verb": {"delete"}, "resource": {"secrets"}}},
	{"activity", "activity", url.Values{"user": {"attacker"}}},
	{"history", "history", url.Values{"resource": {"secrets/important"}, "namespace": {"production"}}},
	{"secrets", "secrets", nil},
	{"execs", "execs", nil},
	{"denied", "denied", nil},
	{"rbac", "rbac", nil},
	{"from", "from", url.Values{"addr": {"192.168.1.100"}}},
	{"timeline", "timeline", url.Values{"user": {"attacker"}}},
	// The questions of bench/run/investigations.go, which `make bench`
	// times as a new process: -n production is where=ns=production.
	{"prod-activity", "activity", url.Values{"user": {"attacker"}, "where": {"ns=production"}}},
	{"prod-secrets", "secrets", url.Values{"where": {"ns=production"}}},
	{"prod-execs", "execs", url.Values{"where": {"ns=production"}}},
	{"prod-denied", "denied", url.Values{"where": {"ns=production"}}},
	{"prod-from", "from", url.Values{"addr": {"192.168.1.100"}, "where": {"ns=production"}}},
	{"prod-timeline", "timeline", url.Values{"user": {"attacker"}, "where": {"ns=production"}}},
}

func BenchmarkInvestigate(b *testing.B) {
	dir := os.Getenv("KUBETRAIL_BENCH_DATA")
	if dir == "" {
		b.Skip("KUBETRAIL_BENCH_DATA names no data folder (see the comment above)")
	}
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, q := range benchInvestigations {
		b.Run(q.name, func(b *testing.B) {
			cpu := testenv.CPUTime()
			for b.Loop() {
				r, err := local.OpenReader(dir)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := Run(context.Background(), r, q.inv, q.params, now); err != nil {
					b.Fatal(err)
				}
				r.Close()
			}
			b.ReportMetric(float64(testenv.CPUTime()-cpu)/float64(b.N), "cpu-ns/op")
		})
	}
}
