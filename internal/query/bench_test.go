package query

import (
	"math/rand/v2"
	"testing"

	"github.com/kubetrail/kubetrail/internal/audit"
)

// benchFilters are typical investigation filters.
var benchFilters = []struct{ name, src string }{
	{"who-deleted", `verb=delete resource=secrets ns=production name=important`},
	{"user-or-cidr", `user=attacker or ip in 192.168.0.0/16`},
	{"exec", `subresource in (exec,attach,portforward)`},
	{"denied-humans", `code>=400 not user~"^system:"`},
	{"node-writes", `user=system:node:* verb in (create, update, patch, delete)`},
	{"private-not-peer", `ip in (10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16) not peer=10.1.2.3`},
	{"recent-forbid", `time>-1h level>=Request decision=forbid`},
	{"rbac-writes", `resource~"role" verb!=get verb!=list verb!=watch`},
	{"free-text", `"kube-system"`},
}

func BenchmarkMatch(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	events := make([]*audit.Event, 1024)
	for i := range events {
		events[i] = randomEvent(rng)
	}
	for _, bf := range benchFilters {
		f, err := CompileAt(bf.src, diffNow)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(bf.name, func(b *testing.B) {
			b.ReportAllocs()
			n, matched := 0, 0
			for b.Loop() {
				if f.Match(events[n&1023], "c1") {
					matched++
				}
				n++
			}
			b.ReportMetric(float64(matched)/float64(n), "hit/op")
		})
	}
}

func BenchmarkCompile(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		for _, bf := range benchFilters {
			if _, err := Compile(bf.src); err != nil {
				b.Fatal(err)
			}
		}
	}
}
