package policy

import (
	"cmp"
	"math/bits"
	"slices"
	"strings"

	"github.com/kubetrail/kubetrail/internal/audit"
)

// Request is what the API server knows about a request when it picks the
// audit level: the fields of k8s.io/apiserver's authorizer.Attributes that
// the policy looks at.
type Request struct {
	// User is who sent the request; nil when the request carried no user
	// information (failed authentication). Such a request never matches a
	// rule that lists users or userGroups.
	User *UserInfo
	// Verb is the Kubernetes verb (get, list, watch, create, update, patch,
	// delete, deletecollection) for a resource request, or the lowercase
	// HTTP method for a non-resource request.
	Verb string
	// APIGroup is the resource's API group; "" is the core group.
	APIGroup string
	// APIVersion is the resource's API version; policies do not look at it.
	APIVersion string
	// Resource is the resource, such as pods.
	Resource string
	// Subresource is the subresource, such as exec or status; "" for none.
	Subresource string
	// Namespace is the namespace; "" for cluster-scoped resources.
	Namespace string
	// Name is the object's name; "" for list, watch of a collection and
	// create.
	Name string
	// Path is the URL path, such as /healthz.
	Path string
	// ResourceRequest is true for requests to the resource API (/api,
	// /apis) and false for non-resource URLs.
	ResourceRequest bool
}

// UserInfo is the authenticated user of a request.
type UserInfo struct {
	// Name is the user name.
	Name string
	// Groups are the groups the user is in.
	Groups []string
}

// Decision is what the policy decides for one request.
type Decision struct {
	// Level is the level the request is logged at; None when no rule matched.
	Level audit.Level
	// OmitStages are the stages no event is written for. For a matched rule
	// it is the union of the policy's and the rule's, each stage once, in
	// the order of a request's life (RequestReceived, ResponseStarted,
	// ResponseComplete, Panic); the API server's order of this union is
	// random. When no rule matched it is the policy's list as written, as
	// the API server returns it. Never nil. The slice is shared: callers
	// must not modify it.
	OmitStages []audit.Stage
	// OmitManagedFields tells whether managedFields are dropped from logged
	// bodies: the matched rule's setting when it has one, else the policy's.
	OmitManagedFields bool
	// Rule is the 0-based index of the matching rule; -1 when none matched.
	Rule int
}

// Evaluator decides the audit level of requests under one policy. It is
// immutable once built and safe for concurrent use.
//
// Rules are compiled into bit sets: for each verb, user name, user group,
// namespace, API group and resource named anywhere in the policy, the set
// of rules that a request with that value can match. Evaluate intersects
// the sets for the request, looking a value up only when a remaining
// candidate restricts it, and then checks the surviving rules in full,
// lowest index first, which keeps "first match wins".
type Evaluator struct {
	rules   []compiledRule
	words   int // bit-set length in uint64 words
	noMatch Decision

	kind [2][]uint64 // [ResourceRequest]: the rules that kind of request can match

	verbs, users, groups dimension
	// Resource requests only.
	spaces, apiGroups, resources dimension

	// late has the rules that restrict namespaces, users or groups (first
	// word only; see evaluate1).
	late uint64
}

// dimension holds, for one request attribute, which rules each value can
// match.
type dimension struct {
	// any has the rules that do not restrict the attribute.
	any []uint64
	// table has, for each value some rule names, the rules that can match
	// a request with that value (not including any).
	table strTable

	build map[string][]uint64 // while compiling
}

type ruleKind uint8

const (
	kindAny         ruleKind = iota // matches resource and non-resource requests
	kindResource                    // has resources or namespaces
	kindNonResource                 // has nonResourceURLs only
)

type compiledRule struct {
	kind      ruleKind
	resources []compiledGroup // empty: any resource (kindResource)
	urls      []urlPattern
	decision  Decision
}

type compiledGroup struct {
	group    string
	anyGroup bool // group "*"
	anyRes   bool // no resources listed: the whole group
	names    []string
	patterns []resourcePattern
}

// resourcePattern is one entry of GroupResources.resources, taken apart
// so that matching needs no string concatenation.
type resourcePattern struct {
	full      string // compared with resource or resource/subresource
	star      bool   // "*"
	anySubOf  string // "pods/*": resource == anySubOf (with or without a subresource)
	hasAnySub bool
	subOfAny  string // "*/status": subresource == subOfAny
	hasSubAny bool
}

type urlPattern struct {
	exact     string
	prefix    string // spec without its trailing '*'s
	hasPrefix bool
}

// NewEvaluator compiles p. It does not validate p (see Validate): it
// decides any policy the way the API server would, valid or not. Later
// changes to p do not affect the Evaluator.
func NewEvaluator(p *Policy) *Evaluator {
	n := len(p.Rules)
	e := &Evaluator{rules: make([]compiledRule, n), words: (n + 63) / 64}
	// No match: the policy's stages as written, as the API server returns them.
	stages := slices.Clone(p.OmitStages)
	if stages == nil {
		stages = []audit.Stage{}
	}
	e.noMatch = Decision{Level: audit.LevelNone, OmitStages: stages, OmitManagedFields: p.OmitManagedFields, Rule: -1}
	for k := range e.kind {
		e.kind[k] = make([]uint64, e.words)
	}
	dims := []*dimension{&e.verbs, &e.users, &e.groups, &e.spaces, &e.apiGroups, &e.resources}
	for _, d := range dims {
		*d = dimension{any: make([]uint64, e.words), build: map[string][]uint64{}}
	}
	for i := range p.Rules {
		r := &p.Rules[i]
		cr := &e.rules[i]
		switch {
		case len(r.Namespaces) > 0 || len(r.Resources) > 0:
			cr.kind = kindResource
			setBit(e.kind[1], i)
		case len(r.NonResourceURLs) > 0:
			cr.kind = kindNonResource
			setBit(e.kind[0], i)
		default:
			cr.kind = kindAny
			setBit(e.kind[0], i)
			setBit(e.kind[1], i)
		}
		e.verbs.add(i, r.Verbs)
		e.users.add(i, r.Users)
		e.groups.add(i, r.UserGroups)
		if cr.kind != kindResource {
			for _, d := range []*dimension{&e.spaces, &e.apiGroups, &e.resources} {
				d.add(i, nil)
			}
		} else {
			e.spaces.add(i, r.Namespaces)
			groups, resources := resourceKeys(r.Resources)
			e.apiGroups.add(i, groups)
			e.resources.add(i, resources)
			for _, gr := range r.Resources {
				cr.resources = append(cr.resources, compileGroup(gr))
			}
		}
		if cr.kind == kindNonResource {
			for _, u := range r.NonResourceURLs {
				up := urlPattern{exact: u}
				if strings.HasSuffix(u, "*") {
					up.prefix, up.hasPrefix = strings.TrimRight(u, "*"), true
				}
				cr.urls = append(cr.urls, up)
			}
		}
		omf := p.OmitManagedFields
		if r.OmitManagedFields != nil {
			omf = *r.OmitManagedFields
		}
		cr.decision = Decision{Level: r.Level, OmitStages: unionStages(p.OmitStages, r.OmitStages), OmitManagedFields: omf, Rule: i}
	}
	for _, d := range dims {
		d.table = newStrTable(d.build)
		d.build = nil
	}
	if e.words > 0 {
		e.late = ^(e.spaces.any[0] & e.users.any[0] & e.groups.any[0])
	}
	return e
}

// resourceKeys returns the API groups and resources a request must have
// for a rule with these resources to match it; nil means any. A request
// for resource R (and maybe a subresource) can match the pattern P only
// if P is "*" or "*/sub", or R is P or the part of P before one of its
// slashes (P = R/sub, R/*, or R = P).
func resourceKeys(grs []GroupResources) (groups, resources []string) {
	anyGroup, anyResource := false, false
	for _, gr := range grs {
		if gr.Group == "*" {
			anyGroup = true
		} else {
			groups = append(groups, gr.Group)
		}
		if len(gr.Resources) == 0 {
			anyResource = true
		}
		for _, res := range gr.Resources {
			if res == "*" || strings.HasPrefix(res, "*/") {
				anyResource = true
				continue
			}
			resources = append(resources, res)
			for i := 0; i < len(res); i++ {
				if res[i] == '/' {
					resources = append(resources, res[:i])
				}
			}
		}
	}
	if anyGroup {
		groups = nil
	}
	if anyResource {
		resources = nil
	}
	return groups, resources
}

// add records that rule i can match the given values, or any value when
// there are none.
func (d *dimension) add(i int, values []string) {
	if len(values) == 0 {
		setBit(d.any, i)
		return
	}
	for _, v := range values {
		set := d.build[v]
		if set == nil {
			set = make([]uint64, len(d.any))
			d.build[v] = set
		}
		setBit(set, i)
	}
}

func setBit(set []uint64, i int) { set[i/64] |= 1 << (i % 64) }

func compileGroup(gr GroupResources) compiledGroup {
	cg := compiledGroup{
		group:    gr.Group,
		anyGroup: gr.Group == "*",
		anyRes:   len(gr.Resources) == 0,
		names:    slices.Clone(gr.ResourceNames),
	}
	for _, res := range gr.Resources {
		rp := resourcePattern{full: res, star: res == "*"}
		if sub, ok := strings.CutPrefix(res, "*/"); ok {
			rp.subOfAny, rp.hasSubAny = sub, true
		}
		if r, ok := strings.CutSuffix(res, "/*"); ok {
			rp.anySubOf, rp.hasAnySub = r, true
		}
		cg.patterns = append(cg.patterns, rp)
	}
	return cg
}

// unionStages merges stage lists, each stage once, known stages in the
// order of a request's life and any others after them, sorted.
func unionStages(lists ...[]audit.Stage) []audit.Stage {
	out := []audit.Stage{}
	for _, s := range stageOrder {
		for _, l := range lists {
			if slices.Contains(l, s) {
				out = append(out, s)
				break
			}
		}
	}
	var other []audit.Stage
	for _, l := range lists {
		for _, s := range l {
			if !validStage(s) && !slices.Contains(other, s) {
				other = append(other, s)
			}
		}
	}
	slices.SortFunc(other, func(a, b audit.Stage) int { return cmp.Compare(a, b) })
	return append(out, other...)
}

// Evaluate decides the audit level of r exactly as the API server's policy
// checker would. It allocates nothing.
func (e *Evaluator) Evaluate(r *Request) Decision {
	kind := e.kind[0]
	if r.ResourceRequest {
		kind = e.kind[1]
	}
	if e.words == 1 {
		return e.evaluate1(r, kind[0])
	}
	// More than 64 rules: the same, a word of the bit sets at a time.
	verbs := e.verbs.table.get(r.Verb)
	var resources, apiGroups, spaces, users []uint64
	if r.ResourceRequest {
		resources = e.resources.table.get(r.Resource)
		apiGroups = e.apiGroups.table.get(r.APIGroup)
		spaces = e.spaces.table.get(r.Namespace)
	}
	if r.User != nil {
		users = e.users.table.get(r.User.Name)
	}
	for w := range e.words {
		m := kind[w] & (e.verbs.any[w] | word(verbs, w))
		if r.ResourceRequest {
			m &= e.resources.any[w] | word(resources, w)
			m &= e.apiGroups.any[w] | word(apiGroups, w)
			m &= e.spaces.any[w] | word(spaces, w)
		}
		m &= e.users.any[w] | word(users, w)
		if m&^e.groups.any[w] != 0 {
			allowed := e.groups.any[w]
			if r.User != nil {
				for _, name := range r.User.Groups {
					allowed |= word(e.groups.table.get(name), w)
				}
			}
			m &= allowed
		}
		for m != 0 {
			bit := bits.TrailingZeros64(m)
			if cr := &e.rules[w*64+bit]; cr.matchesRest(r) {
				return cr.decision
			}
			m &^= 1 << bit
		}
	}
	return e.noMatch
}

// evaluate1 is Evaluate for policies of at most 64 rules, whose bit sets
// are one word. It filters the candidates by verb, resource and API group
// first. The namespace, user and groups, which fewer rules restrict, are
// looked up only once the first remaining candidate restricts one of them:
// a request that an early rule decides needs no more lookups.
func (e *Evaluator) evaluate1(r *Request, m uint64) Decision {
	if m&^e.verbs.any[0] != 0 {
		m &= e.verbs.any[0] | e.verbs.table.get1(r.Verb)
	}
	if r.ResourceRequest {
		if m&^e.resources.any[0] != 0 {
			m &= e.resources.any[0] | e.resources.table.get1(r.Resource)
		}
		if m&^e.apiGroups.any[0] != 0 {
			m &= e.apiGroups.any[0] | e.apiGroups.table.get1(r.APIGroup)
		}
	}
	late := e.late
	for m != 0 {
		bit := bits.TrailingZeros64(m)
		if late&(1<<bit) != 0 {
			m = e.filterLate(r, m)
			late = 0
			continue
		}
		if cr := &e.rules[bit]; cr.matchesRest(r) {
			return cr.decision
		}
		m &^= 1 << bit
	}
	return e.noMatch
}

// filterLate removes from m the rules whose namespaces, users or groups
// exclude r.
func (e *Evaluator) filterLate(r *Request, m uint64) uint64 {
	if r.ResourceRequest && m&^e.spaces.any[0] != 0 {
		m &= e.spaces.any[0] | e.spaces.table.get1(r.Namespace)
	}
	if m&^e.users.any[0] != 0 {
		allowed := e.users.any[0]
		if r.User != nil {
			allowed |= e.users.table.get1(r.User.Name)
		}
		m &= allowed
	}
	if m&^e.groups.any[0] != 0 {
		allowed := e.groups.any[0]
		if r.User != nil {
			for _, name := range r.User.Groups {
				allowed |= e.groups.table.get1(name)
			}
		}
		m &= allowed
	}
	return m
}

func word(set []uint64, w int) uint64 {
	if set == nil {
		return 0
	}
	return set[w]
}

// matchesRest checks what the bit sets did not: resources for resource
// rules and URLs for non-resource rules. The request kind, verb, user,
// groups and namespace are already known to match.
func (cr *compiledRule) matchesRest(r *Request) bool {
	switch cr.kind {
	case kindResource:
		if len(cr.resources) == 0 {
			return true
		}
		for i := range cr.resources {
			if cr.resources[i].matches(r) {
				return true
			}
		}
		return false
	case kindNonResource:
		for i := range cr.urls {
			u := &cr.urls[i]
			if u.exact == "*" || u.exact == r.Path || u.hasPrefix && strings.HasPrefix(r.Path, u.prefix) {
				return true
			}
		}
		return false
	}
	return true
}

func (g *compiledGroup) matches(r *Request) bool {
	if !g.anyGroup && g.group != r.APIGroup {
		return false
	}
	if g.anyRes {
		return true
	}
	if len(g.names) > 0 && !slices.Contains(g.names, r.Name) {
		return false
	}
	for i := range g.patterns {
		if g.patterns[i].matches(r.Resource, r.Subresource) {
			return true
		}
	}
	return false
}

func (p *resourcePattern) matches(resource, sub string) bool {
	if p.star {
		return true
	}
	if sub == "" {
		if p.full == resource {
			return true
		}
	} else if len(p.full) == len(resource)+1+len(sub) && p.full[len(resource)] == '/' &&
		p.full[:len(resource)] == resource && p.full[len(resource)+1:] == sub {
		return true
	}
	if p.hasSubAny && sub != "" && p.subOfAny == sub {
		return true
	}
	return p.hasAnySub && p.anySubOf == resource
}

// Rules returns the number of rules the Evaluator was built from.
func (e *Evaluator) Rules() int { return len(e.rules) }
