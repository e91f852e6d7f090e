package policy

// The differential test: kubetrail's Evaluator against the API server's own
// policy checker, k8s.io/apiserver/pkg/audit/policy, imported only here so
// that the kubetrail binary does not link it.

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	auditinternal "k8s.io/apiserver/pkg/apis/audit"
	"k8s.io/apiserver/pkg/apis/audit/validation"
	upstreamaudit "k8s.io/apiserver/pkg/audit"
	upstream "k8s.io/apiserver/pkg/audit/policy"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"

	"github.com/kubetrail/kubetrail/internal/audit"
)

// toUpstream converts p to the API server's internal Policy type, sharing
// nothing with p (NewPolicyRuleEvaluator modifies the policy it is given).
func toUpstream(p *Policy) *auditinternal.Policy {
	out := &auditinternal.Policy{OmitStages: upStages(p.OmitStages), OmitManagedFields: p.OmitManagedFields}
	if p.Rules != nil {
		out.Rules = make([]auditinternal.PolicyRule, len(p.Rules))
	}
	for i, r := range p.Rules {
		ur := auditinternal.PolicyRule{
			Level:           auditinternal.Level(r.Level),
			Users:           slices.Clone(r.Users),
			UserGroups:      slices.Clone(r.UserGroups),
			Verbs:           slices.Clone(r.Verbs),
			Namespaces:      slices.Clone(r.Namespaces),
			NonResourceURLs: slices.Clone(r.NonResourceURLs),
			OmitStages:      upStages(r.OmitStages),
		}
		if r.OmitManagedFields != nil {
			b := *r.OmitManagedFields
			ur.OmitManagedFields = &b
		}
		for _, gr := range r.Resources {
			ur.Resources = append(ur.Resources, auditinternal.GroupResources{
				Group:         gr.Group,
				Resources:     slices.Clone(gr.Resources),
				ResourceNames: slices.Clone(gr.ResourceNames),
			})
		}
		out.Rules[i] = ur
	}
	return out
}

func upStages(s []audit.Stage) []auditinternal.Stage {
	if s == nil {
		return nil
	}
	out := make([]auditinternal.Stage, len(s))
	for i, v := range s {
		out[i] = auditinternal.Stage(v)
	}
	return out
}

// toAttributes builds the authorizer.Attributes the API server would have
// for r. A nil User must stay a nil interface, not a typed nil pointer.
func toAttributes(r *Request) authorizer.Attributes {
	a := &authorizer.AttributesRecord{
		Verb:            r.Verb,
		Namespace:       r.Namespace,
		APIGroup:        r.APIGroup,
		APIVersion:      r.APIVersion,
		Resource:        r.Resource,
		Subresource:     r.Subresource,
		Name:            r.Name,
		ResourceRequest: r.ResourceRequest,
		Path:            r.Path,
	}
	if r.User != nil {
		a.User = &user.DefaultInfo{Name: r.User.Name, Groups: slices.Clone(r.User.Groups)}
	}
	return a
}

// oracle answers with the upstream checker for one policy. The upstream
// checker does not say which rule matched; the oracle finds out with
// "marker" copies of prefixes of the policy, in which every rule sets
// omitManagedFields and the policy does not, so that a true answer means
// "some rule of this prefix matched". Whether a prefix matches is
// monotonic in its length, so a binary search finds the first rule.
type oracle struct {
	p       *Policy
	full    upstreamaudit.PolicyRuleEvaluator
	markers map[int]upstreamaudit.PolicyRuleEvaluator // k: rules[:k+1], built on demand
}

func newOracle(p *Policy) *oracle {
	return &oracle{p: p, full: upstream.NewPolicyRuleEvaluator(toUpstream(p)), markers: map[int]upstreamaudit.PolicyRuleEvaluator{}}
}

// prefixMatches reports whether one of rules[:k+1] matches.
func (o *oracle) prefixMatches(k int, attrs authorizer.Attributes) bool {
	m := o.markers[k]
	if m == nil {
		up := toUpstream(&Policy{Rules: o.p.Rules[:k+1]})
		t := true
		for i := range up.Rules {
			up.Rules[i].OmitManagedFields = &t
		}
		m = upstream.NewPolicyRuleEvaluator(up)
		o.markers[k] = m
	}
	return m.EvaluatePolicyRule(attrs).OmitManagedFields
}

func (o *oracle) decide(r *Request) Decision {
	attrs := toAttributes(r)
	c := o.full.EvaluatePolicyRule(attrs)
	d := Decision{Level: audit.Level(c.Level), OmitManagedFields: c.OmitManagedFields, Rule: -1}
	for _, s := range c.OmitStages {
		d.OmitStages = append(d.OmitStages, audit.Stage(s))
	}
	n := len(o.p.Rules)
	if n > 0 && o.prefixMatches(n-1, attrs) {
		lo, hi := 0, n-1 // the first matching rule is in [lo, hi]
		for lo < hi {
			mid := (lo + hi) / 2
			if o.prefixMatches(mid, attrs) {
				hi = mid
			} else {
				lo = mid + 1
			}
		}
		d.Rule = lo
	}
	return d
}

// disagreement compares kubetrail's decision with upstream's and says how
// they differ, or "". Levels, omitManagedFields and the matched rule must
// be equal; omitStages must hold the same stages. When no rule matched,
// upstream returns the policy's list as written, and so must kubetrail,
// order and all; for a matched rule upstream's order is that of a Go map
// (random), and kubetrail's must be the order of a request's life.
func disagreement(got, want Decision) string {
	var diffs []string
	if got.Level != want.Level {
		diffs = append(diffs, fmt.Sprintf("level %q, upstream %q", got.Level, want.Level))
	}
	if got.OmitManagedFields != want.OmitManagedFields {
		diffs = append(diffs, fmt.Sprintf("omitManagedFields %v, upstream %v", got.OmitManagedFields, want.OmitManagedFields))
	}
	if got.Rule != want.Rule {
		diffs = append(diffs, fmt.Sprintf("rule %d, upstream %d", got.Rule, want.Rule))
	}
	if got.OmitStages == nil {
		diffs = append(diffs, "omitStages is nil")
	}
	if !sameStageSet(got.OmitStages, want.OmitStages) {
		diffs = append(diffs, fmt.Sprintf("omitStages %v, upstream %v", got.OmitStages, want.OmitStages))
	} else if want.Rule < 0 && !slices.Equal(got.OmitStages, want.OmitStages) {
		diffs = append(diffs, fmt.Sprintf("omitStages order %v, upstream %v", got.OmitStages, want.OmitStages))
	} else if want.Rule >= 0 && !slices.Equal(got.OmitStages, unionStages(got.OmitStages)) {
		diffs = append(diffs, fmt.Sprintf("omitStages %v not in canonical order", got.OmitStages))
	}
	return strings.Join(diffs, "; ")
}

func sameStageSet(a, b []audit.Stage) bool {
	for _, s := range a {
		if !slices.Contains(b, s) {
			return false
		}
	}
	for _, s := range b {
		if !slices.Contains(a, s) {
			return false
		}
	}
	return true
}

// repro prints a failing case so that it can be replayed with
// `kubetrail policy eval`.
func repro(p *Policy, r *Request, got, want Decision) string {
	q := *p
	q.APIVersion, q.Kind = APIVersion, "Policy"
	pj, _ := json.MarshalIndent(&q, "", "  ")
	rj, _ := json.Marshal(requestToLine(r))
	return fmt.Sprintf("policy.yaml:\n%s\nrequests.jsonl:\n%s\nkubetrail: %+v\nupstream:  %+v", pj, rj, got, want)
}

// requestToLine writes r in the input format of `policy eval`, leaving
// out empty fields.
func requestToLine(r *Request) map[string]any {
	l := map[string]any{"resourceRequest": r.ResourceRequest}
	if r.User != nil {
		l["user"] = r.User.Name
		if len(r.User.Groups) > 0 {
			l["groups"] = r.User.Groups
		}
	}
	for k, v := range map[string]string{"verb": r.Verb, "apiGroup": r.APIGroup, "apiVersion": r.APIVersion, "resource": r.Resource,
		"subresource": r.Subresource, "namespace": r.Namespace, "name": r.Name, "path": r.Path} {
		if v != "" {
			l[k] = v
		}
	}
	return l
}

// checkAgainstUpstream evaluates r under p with both and reports a
// minimized repro on disagreement.
func checkAgainstUpstream(t testing.TB, p *Policy, r *Request) {
	t.Helper()
	got, want := NewEvaluator(p).Evaluate(r), newOracle(p).decide(r)
	if d := disagreement(got, want); d != "" {
		mp, mr := minimize(p, r)
		mgot, mwant := NewEvaluator(mp).Evaluate(mr), newOracle(mp).decide(mr)
		t.Fatalf("kubetrail and upstream disagree: %s\nminimal repro (%s):\n%s", d, disagreement(mgot, mwant), repro(mp, mr, mgot, mwant))
	}
}

// validateUpstream returns the field paths the API server rejects in p,
// counting its loader's refusal of a policy with no rules as "rules".
func validateUpstream(p *Policy) []string {
	var paths []string
	for _, e := range validation.ValidatePolicy(toUpstream(p)) {
		paths = append(paths, e.Field)
	}
	if len(p.Rules) == 0 {
		paths = append(paths, "rules")
	}
	return paths
}

func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 0x6b75626574726169)) }
