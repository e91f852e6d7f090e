package policy

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/kubetrail/kubetrail/internal/audit"
)

var (
	diffSeed     = flag.Uint64("diff.seed", 1, "seed of the randomized differential test; 0 picks one from the clock")
	diffPolicies = flag.Int("diff.policies", 0, "policies in the randomized differential test, each checked with 10 requests (default 50000, 5000 with -short)")
)

// The value pools are chosen to hit the traps of the policy language: "*"
// verbs (literal), empty and "*" API groups, "pods/*", "*/status",
// subresources, resourceNames with and without names in the request,
// trailing-* URLs, "" namespaces for cluster-scoped requests, requests
// without user information, and the empty string everywhere.
var (
	levelPool    = []string{"None", "Metadata", "Request", "RequestResponse"}
	stagePool    = []string{"RequestReceived", "ResponseStarted", "ResponseComplete", "Panic"}
	userPool     = []string{"alice", "bob", "", "system:anonymous", "system:kube-proxy"}
	userGroupSet = []string{"dev", "system:authenticated", "system:unauthenticated", "system:serviceaccounts", "system:masters", ""}
	verbPool     = []string{"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection", "*", "post", ""}
	apiGroupPool = []string{"", "*", "apps", "rbac.authorization.k8s.io", "batch", "core"}
	resPatterns  = []string{"pods", "pods/*", "*/status", "pods/exec", "pods/log", "pods/status", "*", "deployments",
		"deployments/status", "secrets", "*/*", "pods/", "*/", "/", "", "*/exec", "configmaps", "pods/exec/x", "**"}
	resourcePool = []string{"pods", "deployments", "secrets", "configmaps", "*", "", "nodes", "pods/exec"}
	subresPool   = []string{"", "", "", "exec", "status", "log", "*", "exec/x"}
	namePool     = []string{"", "web", "important", "*"}
	nsPool       = []string{"", "default", "kube-system", "prod", "*"}
	urlPatterns  = []string{"/healthz", "/healthz*", "/healthz/*", "/api*", "*", "/logs/*", "/", "/version", "**",
		"/metrics", "", "/livez*", "healthz", "/a*b", "/api**"}
	pathPool = []string{"/healthz", "/healthz/ready", "/healthzx", "/api", "/apis/apps", "/logs/kubelet.log", "/metrics",
		"", "/version", "*", "/", "/livez", "/api/v1/namespaces/default/pods/web"}
)

// chooser is the source of the generator's choices: a PRNG for the
// randomized test, the fuzzer's bytes for the fuzz target.
type chooser interface {
	// intn returns a number in [0, n).
	intn(n int) int
	// raw returns an arbitrary short string.
	raw() string
}

type randChooser struct{ r *rand.Rand }

func (c randChooser) intn(n int) int { return c.r.IntN(n) }

func (c randChooser) raw() string {
	const alphabet = "ab/*:-.s"
	b := make([]byte, c.r.IntN(5))
	for i := range b {
		b[i] = alphabet[c.r.IntN(len(alphabet))]
	}
	return string(b)
}

type byteChooser struct{ b []byte }

func (c *byteChooser) intn(n int) int {
	if len(c.b) == 0 {
		return 0
	}
	v := int(c.b[0])
	c.b = c.b[1:]
	return v % n
}

func (c *byteChooser) raw() string {
	n := min(c.intn(8), len(c.b))
	s := string(c.b[:n])
	c.b = c.b[n:]
	return s
}

func chance(c chooser, percent int) bool { return c.intn(100) < percent }

// pick returns an element of pool, or rarely an arbitrary string.
func pick(c chooser, pool []string) string {
	if k := c.intn(len(pool)*16 + 1); k < len(pool)*16 {
		return pool[k%len(pool)]
	}
	return c.raw()
}

func list(c chooser, pool []string) []string {
	out := make([]string, 1+c.intn(3))
	for i := range out {
		out[i] = pick(c, pool)
	}
	return out
}

func genStages(c chooser) []audit.Stage {
	out := make([]audit.Stage, c.intn(4))
	for i := range out {
		out[i] = audit.Stage(pick(c, stagePool))
	}
	return out
}

func genPolicy(c chooser) *Policy {
	p := &Policy{OmitManagedFields: chance(c, 30)}
	if chance(c, 40) {
		p.OmitStages = genStages(c)
	}
	n := 1 + c.intn(8)
	for range n {
		p.Rules = append(p.Rules, genRule(c))
	}
	return p
}

func genRule(c chooser) Rule {
	r := Rule{Level: audit.Level(pick(c, levelPool))}
	if chance(c, 25) {
		r.Users = list(c, userPool)
	}
	if chance(c, 25) {
		r.UserGroups = list(c, userGroupSet)
	}
	if chance(c, 40) {
		r.Verbs = list(c, verbPool)
	}
	switch c.intn(8) {
	case 0, 1: // matches every kind of request
	case 2, 3, 4:
		r.Resources = genResources(c)
		if chance(c, 30) {
			r.Namespaces = list(c, nsPool)
		}
	case 5:
		r.Namespaces = list(c, nsPool)
	case 6:
		r.NonResourceURLs = list(c, urlPatterns)
	case 7: // invalid, but the API server's checker still decides it
		r.NonResourceURLs = list(c, urlPatterns)
		if chance(c, 50) {
			r.Resources = genResources(c)
		} else {
			r.Namespaces = list(c, nsPool)
		}
	}
	if chance(c, 30) {
		r.OmitStages = genStages(c)
	}
	switch c.intn(3) {
	case 1:
		t := true
		r.OmitManagedFields = &t
	case 2:
		f := false
		r.OmitManagedFields = &f
	}
	return r
}

func genResources(c chooser) []GroupResources {
	out := make([]GroupResources, 1+c.intn(2))
	for i := range out {
		gr := &out[i]
		if !chance(c, 30) {
			gr.Group = pick(c, apiGroupPool)
		}
		if !chance(c, 10) {
			gr.Resources = list(c, resPatterns)
		}
		if chance(c, 25) {
			gr.ResourceNames = list(c, namePool)
		}
	}
	return out
}

// genRequest makes a request, half the time shaped after one of p's rules
// so that rules match often enough to test what they decide.
func genRequest(c chooser, p *Policy) *Request {
	var like *Rule
	if len(p.Rules) > 0 && chance(c, 50) {
		like = &p.Rules[c.intn(len(p.Rules))]
	}
	from := func(ruleValues, pool []string) string {
		if len(ruleValues) > 0 && chance(c, 70) {
			return ruleValues[c.intn(len(ruleValues))]
		}
		return pick(c, pool)
	}
	var rl Rule
	if like != nil {
		rl = *like
	}
	r := &Request{ResourceRequest: chance(c, 60)}
	if like != nil && (len(rl.Resources) > 0 || len(rl.Namespaces) > 0) {
		r.ResourceRequest = chance(c, 85)
	} else if like != nil && len(rl.NonResourceURLs) > 0 {
		r.ResourceRequest = chance(c, 15)
	}
	if !chance(c, 15) {
		r.User = &UserInfo{Name: from(rl.Users, userPool)}
		for range c.intn(4) {
			r.User.Groups = append(r.User.Groups, from(rl.UserGroups, userGroupSet))
		}
	}
	r.Verb = from(rl.Verbs, verbPool)
	if r.ResourceRequest {
		var gr GroupResources
		if len(rl.Resources) > 0 {
			gr = rl.Resources[c.intn(len(rl.Resources))]
		}
		r.APIGroup = from([]string{gr.Group}, apiGroupPool)
		r.Resource = pick(c, resourcePool)
		r.Subresource = pick(c, subresPool)
		if len(gr.Resources) > 0 && chance(c, 60) {
			// Split a pattern into a request for it: "pods/exec", "*/status".
			pat := gr.Resources[c.intn(len(gr.Resources))]
			res, sub, _ := cutSlash(pat)
			if res != "*" {
				r.Resource = res
			}
			if sub != "*" {
				r.Subresource = sub
			}
		}
		r.Name = from(gr.ResourceNames, namePool)
		r.Namespace = from(rl.Namespaces, nsPool)
		r.APIVersion = "v1"
	} else {
		r.Path = from(rl.NonResourceURLs, pathPool)
		if len(r.Path) > 0 && r.Path[len(r.Path)-1] == '*' && chance(c, 70) {
			r.Path = r.Path[:len(r.Path)-1] + pick(c, []string{"", "/x", "z", "ready"})
		}
	}
	return r
}

func cutSlash(s string) (before, after string, found bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == '/' {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

// TestDifferentialRandom compares kubetrail with upstream on generated
// (policy, request) pairs. Run with -diff.seed=0 for a new sample each time.
func TestDifferentialRandom(t *testing.T) {
	seed := *diffSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	policies := *diffPolicies
	if policies == 0 {
		policies = 50000
		if testing.Short() {
			policies = 5000
		}
	}
	const perPolicy = 10
	c := randChooser{newRand(seed)}
	var pairs, matched, none, unauth, disagreements int
	levels := map[audit.Level]int{}
	start := time.Now()
	var big, beyond64 int
	for n := range policies {
		p := genPolicy(c)
		if n%50 == 49 {
			// Over 64 rules: bit sets of more than one word.
			for len(p.Rules) < 65+c.intn(100) {
				p.Rules = append(p.Rules, genRule(c))
			}
			// Make most rules specific to one user, so that matches spread
			// over all the words instead of stopping at a catch-all.
			for i := range p.Rules {
				if chance(c, 85) {
					p.Rules[i].Users = append(p.Rules[i].Users, fmt.Sprintf("user-%d", i))
				}
			}
			big++
		}
		ev, or := NewEvaluator(p), newOracle(p)
		for range perPolicy {
			r := genRequest(c, p)
			got, want := ev.Evaluate(r), or.decide(r)
			pairs++
			if r.User == nil {
				unauth++
			}
			if want.Rule >= 64 {
				beyond64++
			}
			if want.Rule >= 0 {
				matched++
				if validLevel(want.Level) {
					levels[want.Level]++
				} else {
					levels["(invalid)"]++
				}
			} else {
				none++
			}
			if d := disagreement(got, want); d != "" {
				disagreements++
				if disagreements == 1 {
					mp, mr := minimize(p, r)
					mgot, mwant := NewEvaluator(mp).Evaluate(mr), newOracle(mp).decide(mr)
					t.Errorf("seed %d: kubetrail and upstream disagree: %s\nminimal repro:\n%s", seed, d, repro(mp, mr, mgot, mwant))
				}
			}
		}
	}
	t.Logf("seed %d: %d (policy, request) pairs (%d policies, %d of them over 64 rules) in %v: %d matched a rule (%d a rule after the 64th) (levels %v), %d matched none, %d without user info; %d disagreements",
		seed, pairs, policies, big, time.Since(start).Round(time.Millisecond), matched, beyond64, levels, none, unauth, disagreements)
	if pairs < 100000 && !testing.Short() && *diffPolicies == 0 {
		t.Fatalf("only %d pairs", pairs)
	}
}

// FuzzEvaluateMatchesUpstream builds a policy and requests from the fuzzer's
// bytes and compares kubetrail with upstream.
func FuzzEvaluateMatchesUpstream(f *testing.F) {
	f.Add([]byte("\x00"))
	f.Add([]byte("\x05\x10\x20\x30\x40\x50\x60\x70\x80\x90\xa0\xb0\xc0\xd0\xe0\xf0"))
	f.Add([]byte("pods/exec */status get list * healthz"))
	f.Add([]byte{3, 2, 99, 7, 1, 0, 0, 4, 2, 8, 9, 200, 17, 33, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12})
	f.Fuzz(func(t *testing.T, data []byte) {
		c := &byteChooser{b: data}
		p := genPolicy(c)
		ev, or := NewEvaluator(p), newOracle(p)
		for range 1 + c.intn(4) {
			r := genRequest(c, p)
			got, want := ev.Evaluate(r), or.decide(r)
			if d := disagreement(got, want); d != "" {
				mp, mr := minimize(p, r)
				mgot, mwant := NewEvaluator(mp).Evaluate(mr), newOracle(mp).decide(mr)
				t.Fatalf("kubetrail and upstream disagree: %s\nminimal repro:\n%s", d, repro(mp, mr, mgot, mwant))
			}
		}
	})
}

// minimize shrinks a failing (policy, request) pair while kubetrail and
// upstream still disagree on it: fewer rules, shorter lists, emptier
// fields.
func minimize(p *Policy, r *Request) (*Policy, *Request) {
	fails := func(p *Policy, r *Request) bool {
		return disagreement(NewEvaluator(p).Evaluate(r), newOracle(p).decide(r)) != ""
	}
	p, r = clonePolicy(p), cloneRequest(r)
	for changed := true; changed; {
		changed = false
		for _, shrink := range shrinks(p, r) {
			cp, cr := clonePolicy(p), cloneRequest(r)
			shrink(cp, cr)
			if fails(cp, cr) {
				p, r, changed = cp, cr, true
				break
			}
		}
	}
	return p, r
}

func shrinks(p *Policy, r *Request) []func(*Policy, *Request) {
	var out []func(*Policy, *Request)
	add := func(f func(*Policy, *Request)) { out = append(out, f) }
	for i := range p.Rules {
		add(func(p *Policy, _ *Request) { p.Rules = slices.Delete(p.Rules, i, i+1) })
	}
	for j := range p.OmitStages {
		add(func(p *Policy, _ *Request) { p.OmitStages = slices.Delete(p.OmitStages, j, j+1) })
	}
	if p.OmitManagedFields {
		add(func(p *Policy, _ *Request) { p.OmitManagedFields = false })
	}
	lists := func(r *Rule) []*[]string {
		return []*[]string{&r.Users, &r.UserGroups, &r.Verbs, &r.Namespaces, &r.NonResourceURLs}
	}
	for i := range p.Rules {
		for li, l := range lists(&p.Rules[i]) {
			for j := range *l {
				add(func(p *Policy, _ *Request) {
					l := lists(&p.Rules[i])[li]
					*l = slices.Delete(*l, j, j+1)
				})
			}
		}
		for j := range p.Rules[i].OmitStages {
			add(func(p *Policy, _ *Request) { p.Rules[i].OmitStages = slices.Delete(p.Rules[i].OmitStages, j, j+1) })
		}
		if p.Rules[i].OmitManagedFields != nil {
			add(func(p *Policy, _ *Request) { p.Rules[i].OmitManagedFields = nil })
		}
		for k, gr := range p.Rules[i].Resources {
			add(func(p *Policy, _ *Request) { p.Rules[i].Resources = slices.Delete(p.Rules[i].Resources, k, k+1) })
			if gr.Group != "" {
				add(func(p *Policy, _ *Request) { p.Rules[i].Resources[k].Group = "" })
			}
			for j := range gr.Resources {
				add(func(p *Policy, _ *Request) {
					g := &p.Rules[i].Resources[k]
					g.Resources = slices.Delete(g.Resources, j, j+1)
				})
			}
			for j := range gr.ResourceNames {
				add(func(p *Policy, _ *Request) {
					g := &p.Rules[i].Resources[k]
					g.ResourceNames = slices.Delete(g.ResourceNames, j, j+1)
				})
			}
		}
	}
	if r.User != nil {
		add(func(_ *Policy, r *Request) { r.User = nil })
		for j := range r.User.Groups {
			add(func(_ *Policy, r *Request) { r.User.Groups = slices.Delete(r.User.Groups, j, j+1) })
		}
	}
	for _, f := range []func(r *Request) *string{
		func(r *Request) *string { return &r.Verb },
		func(r *Request) *string { return &r.APIGroup },
		func(r *Request) *string { return &r.APIVersion },
		func(r *Request) *string { return &r.Resource },
		func(r *Request) *string { return &r.Subresource },
		func(r *Request) *string { return &r.Namespace },
		func(r *Request) *string { return &r.Name },
		func(r *Request) *string { return &r.Path },
	} {
		if *f(r) != "" {
			add(func(_ *Policy, r *Request) { *f(r) = "" })
		}
	}
	return out
}

func clonePolicy(p *Policy) *Policy {
	q := *p
	q.OmitStages = slices.Clone(p.OmitStages)
	q.Rules = slices.Clone(p.Rules)
	for i := range q.Rules {
		r := &q.Rules[i]
		r.Users, r.UserGroups, r.Verbs = slices.Clone(r.Users), slices.Clone(r.UserGroups), slices.Clone(r.Verbs)
		r.Namespaces, r.NonResourceURLs = slices.Clone(r.Namespaces), slices.Clone(r.NonResourceURLs)
		r.OmitStages = slices.Clone(r.OmitStages)
		if r.OmitManagedFields != nil {
			b := *r.OmitManagedFields
			r.OmitManagedFields = &b
		}
		r.Resources = slices.Clone(r.Resources)
		for k := range r.Resources {
			g := &r.Resources[k]
			g.Resources, g.ResourceNames = slices.Clone(g.Resources), slices.Clone(g.ResourceNames)
		}
	}
	return &q
}

func cloneRequest(r *Request) *Request {
	q := *r
	if r.User != nil {
		u := *r.User
		u.Groups = slices.Clone(u.Groups)
		q.User = &u
	}
	return &q
}
