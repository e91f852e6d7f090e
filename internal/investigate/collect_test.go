package investigate

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	gocmp "github.com/google/go-cmp/cmp"

	"github.com/kubetrail/kubetrail/internal/audit"
	"github.com/kubetrail/kubetrail/internal/query"
	"github.com/kubetrail/kubetrail/internal/store/local"
)

// collectByParts is collect as it was before it read an "or" in one
// selection: each term selected on its own, excluding the terms before
// it, and the parts folded in turn. The oracle of TestCollectAsParts.
func collectByParts(r Source, sc Scope, base query.Expr, allStages, bodies bool) []*Request {
	sc.Now = t0
	parts := []query.Expr{base}
	if o, ok := base.(*query.Or); ok {
		parts = parts[:0]
		for i, t := range o.Terms {
			p := []query.Expr{t}
			for _, prev := range o.Terms[:i] {
				p = append(p, &query.Not{X: prev})
			}
			parts = append(parts, and(p...))
		}
	}
	c := &collector{allStages: allStages, byKey: map[reqKey]*Request{}}
	for _, p := range parts {
		f, err := compile(sc, p)
		if err != nil {
			panic(err)
		}
		sel := local.Selection{Filter: f, NeedEvent: true}
		if err := r.Select(sel, func(h *local.Hit) error { c.add(newRequest(h, bodies)); return nil }); err != nil {
			panic(err)
		}
	}
	out := c.out
	if !sc.IncludeSystem {
		out, _ = dropControlPlane(out)
	}
	for _, q := range out {
		slices.SortStableFunc(q.Stages, func(a, b string) int {
			return cmp.Compare(stageRank(audit.Stage(a)), stageRank(audit.Stage(b)))
		})
	}
	sortRequests(out)
	return out
}

// tieEvents makes n events of a few users, some impersonating, some
// binding roles to alice, with many sharing a time, an audit ID and a
// request, in stages of every rank: the order of parts is then what
// decides the order of ties and which stage a request reports.
func tieEvents(seed uint64, n int) []*evb {
	rnd := rand.New(rand.NewPCG(seed, 1))
	pick := func(s ...string) string { return s[rnd.IntN(len(s))] }
	stages := []audit.Stage{audit.StageRequestReceived, audit.StageResponseStarted, audit.StageResponseComplete, audit.StagePanic}
	var evs []*evb
	for i := range n {
		user := pick("alice", "bob", "system:kube-scheduler")
		verb := pick("get", "create", "delete")
		e := req(float64(rnd.IntN(3)), user, verb, "/api/v1/namespaces/production/pods/p")
		e.Obj("pods", "production", "p")
		e.IPs(fmt.Sprintf("10.0.0.%d", i)) // no two alike: the store keeps one of a duplicate
		if rnd.IntN(3) == 0 {
			e.As(pick("alice", "carol"))
		}
		if rnd.IntN(4) == 0 {
			e.Ev.Verb = "create"
			e.Obj("rolebindings", "production", "rb").Group("rbac.authorization.k8s.io")
			e.ReqBody(`{"subjects":[{"kind":"User","name":"` + pick("alice", "dave") + `"}]}`)
		}
		e.ID(fmt.Sprintf("id-%d", rnd.IntN(4)))
		e.Stage(stages[rnd.IntN(len(stages))])
		if e.Ev.Stage != audit.StageRequestReceived {
			e.Code(int32([]int{200, 403}[rnd.IntN(2)]), pick("", "allow", "forbid"))
			e.Ev.StageTimestamp = audit.MicroTime{Time: e.Ev.RequestReceivedTimestamp.Add(time.Duration(rnd.IntN(2)) * time.Millisecond)}
		}
		evs = append(evs, e)
	}
	return evs
}

// full is a request in one line with what the folding decides: its
// audit ID, the stage reported, its stages and its result.
func full(qs []*Request) []string {
	var out []string
	for _, q := range qs {
		out = append(out, fmt.Sprintf("%s %s %s [%s] %s", summary(q), q.AuditID, q.StageTime.Format(time.RFC3339Nano), strings.Join(q.Stages, ","), q.Decision))
	}
	return out
}

// TestCollectAsParts: collect reads an "or" in one selection and gives
// the requests, stages and order of ties that reading its parts one
// after the other gives, and collectEach gives each question what it
// gives alone. Mutations it catches: every event put in the first part
// (arrival order instead of the parts'); the parts folded in reverse; an
// event given only to the first question it matches.
func TestCollectAsParts(t *testing.T) {
	userTermsOf := func(u string) query.Expr {
		terms, err := userTerms(u)
		if err != nil {
			t.Fatal(err)
		}
		return or(terms...)
	}
	rbacWrites := and(eq("apigroup", "rbac.authorization.k8s.io"), in("resource", "roles", "rolebindings", "clusterroles", "clusterrolebindings"), in("verb", writeVerbs...))
	bases := map[string]query.Expr{
		"activity alice":  userTermsOf("alice"),
		"denied":          or(in("code", "401", "403"), eq("decision", "forbid")),
		"timeline reads":  within(userTermsOf("alice"), &query.Not{X: rbacWrites}),
		"timeline grants": within(userTermsOf("alice"), rbacWrites),
		"not an or":       eq("user", "bob"),
	}
	compared := 0
	for seed := range uint64(20) {
		r := openFixture(t, tieEvents(seed, 40))
		for name, base := range bases {
			for _, allStages := range []bool{false, true} {
				for _, system := range []bool{false, true} {
					sc := Scope{Now: t0, IncludeSystem: system}
					got, _, err := collect(r, sc, base, allStages, name == "timeline grants")
					if err != nil {
						t.Fatal(err)
					}
					want := collectByParts(r, sc, base, allStages, name == "timeline grants")
					if diff := gocmp.Diff(full(want), full(got)); diff != "" {
						t.Fatalf("seed %d, %s (all stages %v, system %v): one selection differs from the parts (-parts +one):\n%s", seed, name, allStages, system, diff)
					}
					compared += len(got)
				}
			}
		}
	}
	// collectEach: several questions, overlapping, in one selection.
	names := []string{"timeline reads", "timeline grants", "denied", "not an or"}
	for seed := range uint64(10) {
		r := openFixture(t, tieEvents(seed, 40))
		var specs []collectSpec
		for i, name := range names {
			specs = append(specs, collectSpec{bases[name], i == 2, name == "timeline grants"})
		}
		got, err := collectEach(r, Scope{Now: t0}, specs...)
		if err != nil {
			t.Fatal(err)
		}
		for i, s := range specs {
			want := collectByParts(r, Scope{Now: t0}, s.base, s.allStages, s.bodies)
			if diff := gocmp.Diff(full(want), full(got[i].reqs)); diff != "" {
				t.Fatalf("seed %d, %s read with %v: differs from it read alone (-alone +together):\n%s", seed, names[i], names, diff)
			}
			compared += len(want)
		}
	}
	if compared < 1000 {
		t.Errorf("only %d requests compared: the events select too little", compared)
	}
}
