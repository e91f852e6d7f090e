package policy

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/kubetrail/kubetrail/internal/audit"
	"github.com/kubetrail/kubetrail/internal/policy/profiles"
)

// mutate returns a copy of p with one change: a rule's level or stages,
// a rule inserted or removed, or the policy's omitStages.
func mutate(c chooser, p *Policy) *Policy {
	q := clonePolicy(p)
	i := c.intn(len(q.Rules))
	switch c.intn(5) {
	case 0:
		q.Rules[i].Level = audit.Level(pick(c, levelPool))
	case 1:
		q.Rules[i].OmitStages = genStages(c)
	case 2:
		q.Rules = slices.Insert(q.Rules, i, genRule(c))
	case 3:
		if len(q.Rules) > 1 {
			q.Rules = slices.Delete(q.Rules, i, i+1)
		}
	case 4:
		q.OmitStages = genStages(c)
	}
	return q
}

// TestDiffFindsEveryDifference: for generated pairs of policies (one a
// mutation of the other, or two unrelated) and generated requests, a
// request the two log differently falls in a Change whose outcomes are
// exactly what each policy decides, and a request logged alike falls in
// none. This is what makes the probes a proof and not a sample.
// Mutations it catches: resourceOf mapping "pods/*" requests to any other
// subresource, urlOf ignoring prefixes, the user probes without group
// pairs, effective() comparing the stages of a None decision.
func TestDiffFindsEveryDifference(t *testing.T) {
	pairs, requests := 120, 400
	if testing.Short() {
		pairs = 40
	}
	c := randChooser{newRand(*diffSeed)}
	var differing, checked, unplaced int
	for range pairs {
		a := genPolicy(c)
		b := genPolicy(c)
		if chance(c, 70) {
			b = mutate(c, a)
		}
		rep := Diff(a, b)
		ea, eb := NewEvaluator(a), NewEvaluator(b)
		for range requests {
			p := a
			if chance(c, 50) {
				p = b
			}
			r := genRequest(c, p)
			if strings.Contains(r.Resource, "/") {
				continue // the API server never sends one
			}
			oa, ob := effective(ea.Evaluate(r)), effective(eb.Evaluate(r))
			d, ch, ok := rep.Find(r)
			if !ok {
				unplaced++
				continue
			}
			checked++
			if oa.same(ob) {
				if d >= 0 {
					t.Fatalf("a request logged alike (%+v) falls in difference %d\nA:\n%s\nB:\n%s\nrequest %s", oa, d, dump(a), dump(b), dumpRequest(r))
				}
				continue
			}
			differing++
			if d < 0 {
				t.Fatalf("a request logged differently (A %+v, B %+v) falls in no difference\nA:\n%s\nB:\n%s\nrequest %s", oa, ob, dump(a), dump(b), dumpRequest(r))
			}
			got := rep.Differences[d].Changes[ch]
			if !sameOutcome(got.A, oa) || !sameOutcome(got.B, ob) {
				t.Fatalf("request %s: change says A %+v, B %+v; the policies decide A %+v, B %+v\nA:\n%s\nB:\n%s",
					dumpRequest(r), got.A, got.B, oa.public(), ob.public(), dump(a), dump(b))
			}
		}
	}
	if differing < checked/20 || unplaced > checked/10 {
		t.Fatalf("%d requests checked, %d logged differently, %d in 3+ listed groups: the generator no longer exercises the diff", checked, differing, unplaced)
	}
}

func sameOutcome(o Outcome, e outcome) bool {
	p := e.public()
	return o.Level == p.Level && slices.Equal(o.StagesLogged, p.StagesLogged) && o.OmitManagedFields == p.OmitManagedFields && o.Rule == p.Rule
}

func dump(p *Policy) string {
	var b strings.Builder
	fmt.Fprintf(&b, "omitStages %v omitManagedFields %v\n", p.OmitStages, p.OmitManagedFields)
	for i, r := range p.Rules {
		fmt.Fprintf(&b, "  %d: %+v\n", i, r)
	}
	return b.String()
}

func dumpRequest(r *Request) string {
	u := "(unauthenticated)"
	if r.User != nil {
		u = fmt.Sprintf("%q %q", r.User.Name, r.User.Groups)
	}
	return fmt.Sprintf("%s verb %q group %q resource %q sub %q ns %q name %q path %q resourceRequest %v", u, r.Verb, r.APIGroup, r.Resource, r.Subresource, r.Namespace, r.Name, r.Path, r.ResourceRequest)
}

// TestDiffChangesHoldExactlyTheDifferingProbes: the scopes the probes are
// folded into (users, names, namespaces, verbs, resources) hold every
// probe the policies log differently, in exactly one change, and nothing
// else.
// Mutations it catches: a fold that merges two sets whose other fields
// differ (a lost or an invented difference), a scope without its users,
// a Difference that mixes changes of different stages (stages left out of
// its key: the stage line would be wrong for some of its requests).
func TestDiffChangesHoldExactlyTheDifferingProbes(t *testing.T) {
	c := randChooser{newRand(*diffSeed + 1)}
	for range 40 {
		a := genPolicy(c)
		b := mutate(c, a)
		rep := Diff(a, b)
		ea, eb := NewEvaluator(a), NewEvaluator(b)
		sp := rep.space
		// The stages and managedFields a Difference shows hold for each
		// of its changes.
		for _, d := range rep.Differences {
			c0 := d.Changes[0]
			for _, ch := range d.Changes[1:] {
				if !slices.Equal(ch.A.StagesLogged, c0.A.StagesLogged) || !slices.Equal(ch.B.StagesLogged, c0.B.StagesLogged) ||
					ch.A.OmitManagedFields != c0.A.OmitManagedFields || ch.B.OmitManagedFields != c0.B.OmitManagedFields {
					t.Fatalf("difference %q mixes changes of different stages or managedFields: %+v and %+v", d.Concern, c0, ch)
				}
			}
		}
		for w := range sp.what {
			nss, nms := len(sp.namespaces), len(sp.names)
			if sp.what[w].url {
				nss, nms = 1, 1
			}
			for v := range sp.verbs {
				for n := range nss {
					for m := range nms {
						for u := range sp.users {
							cl := cell{w, v, n, m, u}
							r := sp.request(cl)
							oa, ob := effective(ea.Evaluate(r)), effective(eb.Evaluate(r))
							in := 0
							for _, ss := range rep.scopes {
								for j := range ss {
									if ss[j].has(sp, cl) {
										in++
									}
								}
							}
							if oa.same(ob) {
								if in > 0 {
									t.Fatalf("probe %s is logged alike but in %d changes\nA:\n%s\nB:\n%s", dumpRequest(r), in, dump(a), dump(b))
								}
								continue
							}
							if in != 1 {
								t.Fatalf("probe %s differs (A %+v, B %+v) but is in %d changes\nA:\n%s\nB:\n%s", dumpRequest(r), oa, ob, in, dump(a), dump(b))
							}
							d, k, _ := rep.locate(cl)
							ch := rep.Differences[d].Changes[k]
							if !sameOutcome(ch.A, oa) || !sameOutcome(ch.B, ob) {
								t.Fatalf("probe %s: in a change of A %+v, B %+v; decided A %+v, B %+v", dumpRequest(r), ch.A, ch.B, oa, ob)
							}
						}
					}
				}
			}
		}
	}
}

func loadProfile(t *testing.T, name string) []byte {
	t.Helper()
	src, err := profiles.Get(name)
	if err != nil {
		t.Fatal(err)
	}
	return src
}

func mustLoad(t *testing.T, name string, src []byte) *Policy {
	t.Helper()
	p, err := Load(name, src)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// render writes a report as policy diff's table does, enough to assert on:
// the impact, concern, stages, and each change's scope, levels and rules.
func render(rep *DiffReport) string {
	var b strings.Builder
	for _, d := range rep.Differences {
		fmt.Fprintf(&b, "%s: %s\n", d.Impact, d.Concern)
		c0 := d.Changes[0]
		fmt.Fprintf(&b, "  stages logged: %v → %v\n", c0.A.StagesLogged, c0.B.StagesLogged)
		for _, ch := range d.Changes {
			fmt.Fprintf(&b, "  - %s: %s → %s (rule %d → rule %d)\n", ch.Requests, ch.A.Level, ch.B.Level, ch.A.Rule, ch.B.Rule)
		}
	}
	return b.String()
}

// candidate is the recommended profile with three changes: secret reads
// at RequestResponse (a leak), deployments.apps at RequestResponse without
// the ResponseStarted stage, and RBAC writes and exec dropped (rule 6 and
// the exec rule at None).
func candidate(t *testing.T) (a, b *Policy) {
	src := string(loadProfile(t, "recommended"))
	a = mustLoad(t, "a.yaml", []byte(src))
	for _, r := range [][2]string{
		{`resources: ["secrets", "configmaps", "serviceaccounts/token"]`, `resources: ["configmaps", "serviceaccounts/token"]`},
		{"  # 5. Interactive", `  - level: RequestResponse
    verbs: ["get", "list", "watch"]
    resources:
      - group: ""
        resources: ["secrets"]
  - level: RequestResponse
    omitStages: ["ResponseStarted"]
    resources:
      - group: "apps"
        resources: ["deployments"]
  # 5. Interactive`},
		{"  - level: RequestResponse\n    verbs: [\"create\", \"update\", \"patch\", \"delete\", \"deletecollection\"]\n    resources:\n      - group: \"rbac.authorization.k8s.io\"",
			"  - level: None\n    verbs: [\"create\", \"update\", \"patch\", \"delete\", \"deletecollection\"]\n    resources:\n      - group: \"rbac.authorization.k8s.io\""},
	} {
		if !strings.Contains(src, r[0]) {
			t.Fatalf("the recommended profile no longer has %q", r[0])
		}
		src = strings.Replace(src, r[0], r[1], 1)
	}
	return a, mustLoad(t, "b.yaml", []byte(src))
}

// TestDiffSaysRealResourcesAndStages: on the recommended profile against
// a candidate, the report names the real resources (secrets (core),
// deployments.apps, clusterrolebindings.rbac.authorization.k8s.io), says
// the stages that differ, puts the secret leak and the lost RBAC changes
// first, and never shows a probe value.
// Mutations it catches: groupPhrase saying "other.example.com" for any
// other group, resourcePhrase dropping the group (core "deployments"),
// the stages left out of the block key (a lost stage difference), the
// impacts unsorted.
func TestDiffSaysRealResourcesAndStages(t *testing.T) {
	a, b := candidate(t)
	rep := Diff(a, b)
	got := render(rep)
	for _, want := range []string{
		"critical: starts logging credentials: the contents of secrets, configmaps or tokens\n" +
			"  stages logged: [ResponseStarted ResponseComplete Panic] → [ResponseStarted ResponseComplete Panic]\n" +
			"  - secrets (core); verbs get, list, watch; any user: Metadata → RequestResponse (rule 4 → rule 5)\n" +
			"  - secrets (core); verbs create, update, patch; any user: Metadata → Request (rule 4 → rule 9)\n",
		"critical: stops logging RBAC changes\n" +
			"  stages logged: [ResponseStarted ResponseComplete Panic] → []\n" +
			"  - clusterrolebindings.rbac.authorization.k8s.io, clusterroles.rbac.authorization.k8s.io, rolebindings.rbac.authorization.k8s.io, roles.rbac.authorization.k8s.io; verbs create, update, patch, delete, deletecollection; any user: RequestResponse → None (rule 6 → rule 8)\n",
		"medium: stops logging stage ResponseStarted\n" +
			"  stages logged: [ResponseStarted ResponseComplete Panic] → [ResponseComplete Panic]\n" +
			"  - deployments.apps; verbs get, list, watch; any user: Metadata → RequestResponse (rule 8 → rule 6)\n" +
			"  - deployments.apps; verbs create, update, patch, delete, deletecollection; any user: Request → RequestResponse (rule 7 → rule 6)\n" +
			"  - deployments.apps; any other verb; any user: Metadata → RequestResponse (rule 9 → rule 6)\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing\n%s\nin:\n%s", want, got)
		}
	}
	// Worst first.
	for i := 1; i < len(rep.Differences); i++ {
		if impactRank[rep.Differences[i-1].Impact] > impactRank[rep.Differences[i].Impact] {
			t.Errorf("difference %d (%s) before %d (%s)", i-1, rep.Differences[i-1].Impact, i, rep.Differences[i].Impact)
		}
	}
	if !strings.HasPrefix(got, "critical: starts logging credentials") {
		t.Errorf("the secret leak is not first:\n%s", got)
	}
	for _, bad := range []string{"example", "\x00", "other.", "deployments;", "deployments (core)"} {
		if strings.Contains(got, bad) {
			t.Errorf("the report says %q:\n%s", bad, got)
		}
	}
	if d := Diff(a, a); len(d.Differences) != 0 {
		t.Errorf("a policy differs from itself:\n%s", render(d))
	}
}

// TestDiffWords: the words for what neither policy names, for users, URL
// prefixes, "*" groups and subresource patterns.
// Mutations it catches: a placeholder group or resource in the words
// (other.example.com, "other"), "any user" for a set without one user,
// a user in two groups listed pair by pair.
func TestDiffWords(t *testing.T) {
	load := func(rules string) *Policy {
		return mustLoad(t, "p.yaml", []byte("apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [RequestReceived]\nrules:\n"+rules))
	}
	f := func(a, b string, want ...string) {
		t.Helper()
		got := render(Diff(load(a), load(b)))
		for _, w := range want {
			if !strings.Contains(got, w) {
				t.Errorf("missing %q in:\n%s", w, got)
			}
		}
		for _, bad := range []string{"example", "\x00", "other)", "(other", "other."} {
			if strings.Contains(got, bad) {
				t.Errorf("the words say %q:\n%s", bad, got)
			}
		}
	}
	// The catch-all changes for every resource but those named before it.
	f("- level: Metadata\n  resources: [{group: apps, resources: [deployments]}]\n- level: Request\n",
		"- level: Metadata\n  resources: [{group: apps, resources: [deployments]}]\n- level: RequestResponse\n",
		"- any resource except [configmaps (core), secrets (core), serviceaccounts/token (core), deployments.apps, tokenreviews.authentication.k8s.io], any non-resource URL; any verb; any user: Request → RequestResponse (rule 1 → rule 1)")
	// Any other group: what no rule names a group of.
	f("- level: Metadata\n  resources: [{group: apps}, {group: ''}]\n- level: None\n",
		"- level: Metadata\n  resources: [{group: apps}, {group: ''}]\n- level: Metadata\n",
		"- any resource in authentication.k8s.io, any resource in rbac.authorization.k8s.io, any resource in any other group, any non-resource URL; any verb; any user: None → Metadata (rule 1 → rule 1)")
	// One user left out, one user alone.
	f("- level: None\n  users: [system:kube-proxy]\n  verbs: [watch]\n- level: Metadata\n",
		"- level: None\n  users: [system:kube-proxy]\n  verbs: [watch]\n- level: Request\n",
		"- any request; verbs watch; any user except system:kube-proxy: Metadata → Request")
	f("- level: None\n  users: [system:kube-proxy]\n  verbs: [watch]\n- level: Metadata\n",
		"- level: Metadata\n  users: [system:kube-proxy]\n  verbs: [watch]\n- level: Metadata\n",
		"- any request; verbs watch; user system:kube-proxy: None → Metadata (rule 0 → rule 0)")
	// A user whenever in one of two groups (alone or with the other).
	f("- level: None\n  users: [alice]\n  userGroups: [dev, ops]\n- level: Metadata\n",
		"- level: Request\n  users: [alice]\n  userGroups: [dev, ops]\n- level: Metadata\n",
		"- any resource except [configmaps (core), secrets (core), serviceaccounts/token (core), tokenreviews.authentication.k8s.io], any non-resource URL; any verb; user alice in group dev, user alice in group ops: None → Request (rule 0 → rule 0)")
	// URL prefixes, "*" groups and subresource patterns.
	f("- level: None\n  nonResourceURLs: [/healthz*]\n- level: Metadata\n  resources: [{group: '*', resources: ['pods/*', '*/status']}]\n- level: None\n",
		"- level: Metadata\n  nonResourceURLs: [/healthz*]\n- level: Request\n  resources: [{group: '*', resources: ['pods/*', '*/status']}]\n- level: None\n",
		"- /healthz, any other path starting with /healthz; any verb; any user: None → Metadata (rule 0 → rule 0)",
		"- pods in any group, pods/<any other subresource> in any group, pods/status in any group, status of any other resource in any group, pods/attach (core), pods/exec (core), pods/portforward (core); any verb; any user: Metadata → Request (rule 1 → rule 1)")
	// Stages of requests neither policy logs do not differ.
	f("- level: None\n  omitStages: [ResponseComplete]\n- level: Metadata\n", "- level: None\n- level: Metadata\n")
	if d := Diff(load("- level: None\n  omitStages: [ResponseComplete]\n"), load("- level: None\n")); len(d.Differences) != 0 {
		t.Errorf("stages of requests logged at None in both differ:\n%s", render(d))
	}
}
