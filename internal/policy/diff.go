package policy

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/kubetrail/kubetrail/internal/audit"
)

// A policy tells requests apart only by the values it names: a user it
// does not list is treated like every other unlisted user. So a request
// built from each combination of the values either policy names, plus one
// value neither names for each field, stands for every request there is,
// and comparing the two policies on these probes finds every kind of
// request they log differently. The probe of a value neither policy names
// is the string other: it never reaches the output, which says "any other
// user", "any other resource in apps" instead (see diffwords.go).
//
// Resources are probed per API group: the resources, subresources and
// patterns ("pods/*", "*/status") that rules name for that group or for
// "*", plus "any other resource" and "any other subresource". Users are
// probed in no listed group, in each listed group and in each pair of
// listed groups (a request in three or more listed groups is not built;
// Find says so).

// other is the probe value for every value neither policy names.
const other = "\x00other"

// Impact orders differences, worst first.
type Impact string

// The impacts of a difference.
const (
	// ImpactCritical: credentials start being logged, or exec or RBAC
	// changes stop being logged.
	ImpactCritical Impact = "critical"
	// ImpactHigh: requests stop being logged, or RBAC changes and exec
	// lose the level an investigation needs.
	ImpactHigh Impact = "high"
	// ImpactMedium: less is logged (a lower level, fewer stages).
	ImpactMedium Impact = "medium"
	// ImpactLow: more is logged, credentials stop being logged, or
	// managedFields change.
	ImpactLow Impact = "low"
)

var impactRank = map[Impact]int{ImpactCritical: 0, ImpactHigh: 1, ImpactMedium: 2, ImpactLow: 3}

// Difference is one kind of change between two policies: its impact, why
// it matters, the stages logged and managedFields by each, and the
// requests it applies to with the levels and rules that decide them. Each
// request the two policies log differently falls in exactly one Change of
// one Difference.
type Difference struct {
	// Impact is how much the change matters to an investigation.
	Impact Impact `json:"impact" yaml:"impact"`
	// Concern says in words why it matters.
	Concern string `json:"concern" yaml:"concern"`
	// Changes are the requests it applies to, each set with what each
	// policy decides; the stages logged and managedFields are the same in
	// every Change of a Difference.
	Changes []Change `json:"changes" yaml:"changes"`
}

// Change is a set of requests and what each policy decides for them.
type Change struct {
	// Requests are the requests, in words.
	Requests Scope `json:"requests" yaml:"requests"`
	// A and B are what the two policies decide.
	A Outcome `json:"a" yaml:"a"`
	B Outcome `json:"b" yaml:"b"`
}

// Outcome is what one policy decides for the requests of a Difference.
type Outcome struct {
	// Level is the level the requests are logged at.
	Level audit.Level `json:"level" yaml:"level"`
	// StagesLogged are the stages an event is written for, in the order of
	// a request's life; empty at level None.
	StagesLogged []audit.Stage `json:"stagesLogged" yaml:"stagesLogged"`
	// OmitManagedFields tells whether managedFields are dropped from the
	// logged bodies; false below level Request, where there are none.
	OmitManagedFields bool `json:"omitManagedFields" yaml:"omitManagedFields"`
	// Rule is the 0-based index of the deciding rule; -1 when none matched.
	Rule int `json:"rule" yaml:"rule"`
	// Line is where that rule is written; 0 when unknown.
	Line int `json:"line,omitempty" yaml:"line,omitempty"`
}

// DiffReport is what Diff finds.
type DiffReport struct {
	// Differences are the changes, worst first.
	Differences []Difference
	space       *probeSpace
	// scopes are the probes of each Change of each Difference.
	scopes [][]scopeSet
}

// outcome is an Outcome reduced to what is logged, comparable: a level
// of None logs no stage, and managedFields matter only with bodies.
type outcome struct {
	level  audit.Level
	logged uint8 // bit i: stageOrder[i] is logged
	omf    bool
	rule   int
}

const streamStages = 1<<0 | 1<<1 | 1<<2 // RequestReceived, ResponseStarted, ResponseComplete

func effective(d Decision) outcome {
	o := outcome{level: d.Level, rule: d.Rule}
	if d.Level == audit.LevelNone {
		return o
	}
	for i, s := range stageOrder {
		if !slices.Contains(d.OmitStages, s) {
			o.logged |= 1 << i
		}
	}
	if levelRank[d.Level] >= levelRank[audit.LevelRequest] {
		o.omf = d.OmitManagedFields
	}
	return o
}

// same tells whether two outcomes log the same (the rules may differ).
func (o outcome) same(p outcome) bool {
	return o.level == p.level && o.logged == p.logged && o.omf == p.omf
}

// logsNothing tells whether no event is written: level None, or every
// stage a request can reach but Panic omitted.
func (o outcome) logsNothing() bool { return o.level == audit.LevelNone || o.logged&streamStages == 0 }

// cell is one probe: indices into the probe space's lists. For a
// non-resource URL, ns and name are 0 and stand for any.
type cell struct{ what, verb, ns, name, user int }

// probeSpace lists the values probed for each field.
type probeSpace struct {
	what       []whatProbe
	verbs      []string
	namespaces []string
	names      []string
	users      []userProbe

	groups     map[string]bool             // API groups some rule names (or kubetrail always shows)
	byGroup    map[string]map[resProbe]int // resource probes of each group (other: any other group)
	anySubOf   map[string]map[string]bool  // group -> resources with a "res/*" pattern
	subOfAny   map[string]map[string]bool  // group -> subresources with a "*/sub" pattern
	urls       map[string]int              // literal paths and prefixes probed
	prefixes   []string                    // URL prefixes (trailing * cut), longest first
	userGroups []string                    // listed user groups, sorted
}

type resProbe struct{ group, resource, sub string }

// whatProbe is a resource (url false) or a non-resource URL.
type whatProbe struct {
	url bool
	res resProbe
	// path is a literal path, prefix+other (any other path under prefix)
	// or other.
	path string
}

// userProbe is an authenticated user in zero, one or two listed groups,
// or a request without user information.
type userProbe struct {
	unauth bool
	name   string
	groups []string
}

// sensitive are the resources kubetrail always probes by name, so that a
// difference on them is reported under their name even when neither
// policy names them.
var sensitive = []resProbe{
	{"", "secrets", ""}, {"", "configmaps", ""}, {"", "serviceaccounts", "token"}, {"authentication.k8s.io", "tokenreviews", ""},
	{"", "pods", "exec"}, {"", "pods", "attach"}, {"", "pods", "portforward"},
	{"rbac.authorization.k8s.io", "roles", ""}, {"rbac.authorization.k8s.io", "rolebindings", ""},
	{"rbac.authorization.k8s.io", "clusterroles", ""}, {"rbac.authorization.k8s.io", "clusterrolebindings", ""},
}

// resourceVerbs and urlVerbs are always probed: the verbs of resource
// requests and the HTTP methods of non-resource requests.
var (
	resourceVerbs = []string{"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"}
	urlVerbs      = []string{"post", "put"}
)

func uniqSorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return slices.Compact(s)
}

func newProbeSpace(ps ...*Policy) *probeSpace {
	sp := &probeSpace{
		groups: map[string]bool{}, byGroup: map[string]map[resProbe]int{},
		anySubOf: map[string]map[string]bool{}, subOfAny: map[string]map[string]bool{}, urls: map[string]int{},
	}
	var users, groups, verbs, namespaces, names, urls []string
	patterns := map[string][]string{} // group ("*" for any) -> resource patterns
	for _, s := range sensitive {
		sp.groups[s.group] = true
		p := s.resource
		if s.sub != "" {
			p += "/" + s.sub
		}
		patterns[s.group] = append(patterns[s.group], p)
	}
	for _, p := range ps {
		for _, r := range p.Rules {
			users = append(users, r.Users...)
			groups = append(groups, r.UserGroups...)
			verbs = append(verbs, r.Verbs...)
			namespaces = append(namespaces, r.Namespaces...)
			urls = append(urls, r.NonResourceURLs...)
			for _, g := range r.Resources {
				names = append(names, g.ResourceNames...)
				if g.Group != "*" {
					sp.groups[g.Group] = true
				}
				patterns[g.Group] = append(patterns[g.Group], g.Resources...)
			}
		}
	}
	// Verbs: resource verbs, then HTTP methods, then what the policies
	// name besides, then any other.
	sp.verbs = append(slices.Clone(resourceVerbs), urlVerbs...)
	for _, v := range uniqSorted(verbs) {
		if !slices.Contains(sp.verbs, v) {
			sp.verbs = append(sp.verbs, v)
		}
	}
	sp.verbs = append(sp.verbs, other)
	// A namespace or name no rule lists is treated like any other, even
	// "" (cluster-scoped; no name): "" is probed only when listed.
	sp.namespaces = append(uniqSorted(namespaces), other)
	sp.names = append(uniqSorted(names), other)
	sp.userGroups = uniqSorted(groups)
	for _, u := range append(uniqSorted(users), other) {
		sp.users = append(sp.users, userProbe{name: u})
		for i, g := range sp.userGroups {
			sp.users = append(sp.users, userProbe{name: u, groups: []string{g}})
			for _, h := range sp.userGroups[i+1:] {
				sp.users = append(sp.users, userProbe{name: u, groups: []string{g, h}})
			}
		}
	}
	sp.users = append(sp.users, userProbe{unauth: true})

	// Resources, group by group: the core group first, then named groups,
	// then any other group.
	gs := make([]string, 0, len(sp.groups)+1)
	for g := range sp.groups {
		gs = append(gs, g)
	}
	slices.Sort(gs)
	for _, g := range append(gs, other) {
		pats := append(slices.Clone(patterns[g]), patterns["*"]...)
		sp.addGroup(g, pats)
	}
	// Non-resource URLs: each path a pattern names, each prefix, a path
	// under each prefix that no pattern names, and any other path.
	// (A path equal to a pattern with a trailing "*" is also under its
	// prefix: that pattern is not probed as written.)
	for _, u := range uniqSorted(urls) {
		prefix, ok := strings.CutSuffix(u, "*")
		if !ok {
			sp.addURL(u)
			continue
		}
		prefix = strings.TrimRight(prefix, "*")
		sp.addURL(prefix)
		if !slices.Contains(sp.prefixes, prefix) {
			sp.prefixes = append(sp.prefixes, prefix)
		}
	}
	slices.SortFunc(sp.prefixes, func(a, b string) int { return cmp.Compare(len(b), len(a)) })
	for _, p := range sp.prefixes {
		if p != "" {
			sp.addURL(p + other)
		}
	}
	sp.addURL(other)
	return sp
}

// addGroup adds the resource probes of one API group from the resource
// patterns that apply to it.
func (sp *probeSpace) addGroup(g string, pats []string) {
	sp.byGroup[g] = map[resProbe]int{}
	sp.anySubOf[g], sp.subOfAny[g] = map[string]bool{}, map[string]bool{}
	add := func(res, sub string) {
		p := resProbe{g, res, sub}
		if _, ok := sp.byGroup[g][p]; !ok {
			sp.byGroup[g][p] = len(sp.what)
			sp.what = append(sp.what, whatProbe{res: p})
		}
	}
	for _, p := range uniqSorted(pats) {
		if p == "*" {
			continue
		}
		sub, anyRes := strings.CutPrefix(p, "*/")
		res, anySub := strings.CutSuffix(p, "/*")
		switch {
		case anyRes && anySub:
			sp.subOfAny[g][sub] = true
			sp.anySubOf[g][res] = true
		case anyRes:
			sp.subOfAny[g][sub] = true
		case anySub:
			sp.anySubOf[g][res] = true
		default:
			res, sub, _ := strings.Cut(p, "/")
			add(res, sub)
		}
	}
	for res := range sp.anySubOf[g] {
		add(res, "")
		add(res, other)
		for sub := range sp.subOfAny[g] {
			add(res, sub)
		}
	}
	for sub := range sp.subOfAny[g] {
		add(other, sub)
	}
	add(other, "")
	add(other, other)
}

func (sp *probeSpace) addURL(path string) {
	if _, ok := sp.urls[path]; !ok {
		sp.urls[path] = len(sp.what)
		sp.what = append(sp.what, whatProbe{url: true, path: path})
	}
}

// request builds the request a cell stands for.
func (sp *probeSpace) request(c cell) *Request {
	w := &sp.what[c.what]
	r := &Request{Verb: sp.verbs[c.verb]}
	if u := sp.users[c.user]; !u.unauth {
		r.User = &UserInfo{Name: u.name, Groups: u.groups}
	}
	if w.url {
		r.Path = w.path
		return r
	}
	r.ResourceRequest = true
	r.APIGroup, r.Resource, r.Subresource = w.res.group, w.res.resource, w.res.sub
	r.Namespace, r.Name = sp.namespaces[c.ns], sp.names[c.name]
	return r
}

// cellOf finds the probe that stands for r; ok is false when no probe
// does (a user in three or more listed groups).
func (sp *probeSpace) cellOf(r *Request) (c cell, ok bool) {
	c.verb = indexOr(sp.verbs, r.Verb)
	if r.User == nil {
		c.user = len(sp.users) - 1
	} else {
		var in []string
		for _, g := range sp.userGroups {
			if slices.Contains(r.User.Groups, g) {
				in = append(in, g)
			}
		}
		if len(in) > 2 {
			return c, false
		}
		name := r.User.Name
		if !slices.ContainsFunc(sp.users, func(u userProbe) bool { return !u.unauth && u.name == name }) {
			name = other
		}
		c.user = slices.IndexFunc(sp.users, func(u userProbe) bool {
			return !u.unauth && u.name == name && slices.Equal(u.groups, in)
		})
	}
	if !r.ResourceRequest {
		c.what = sp.urlOf(r.Path)
		return c, true
	}
	c.what = sp.resourceOf(r.APIGroup, r.Resource, r.Subresource)
	c.ns = indexOr(sp.namespaces, r.Namespace)
	c.name = indexOr(sp.names, r.Name)
	return c, true
}

// indexOr returns the index of v in list, or of other (the last) when v
// is not listed.
func indexOr(list []string, v string) int {
	if i := slices.Index(list, v); i >= 0 && v != other {
		return i
	}
	return len(list) - 1
}

// resourceOf maps a request's group, resource and subresource to the
// probe that every rule of both policies treats alike (see addGroup).
func (sp *probeSpace) resourceOf(group, res, sub string) int {
	g := group
	if !sp.groups[g] || g == other {
		g = other
	}
	probes := sp.byGroup[g]
	if i, ok := probes[resProbe{g, res, sub}]; ok && res != other && sub != other {
		return i
	}
	switch {
	case sub == "":
		return probes[resProbe{g, other, ""}]
	case sp.anySubOf[g][res]:
		return probes[resProbe{g, res, other}]
	case sp.subOfAny[g][sub]:
		return probes[resProbe{g, other, sub}]
	}
	return probes[resProbe{g, other, other}]
}

// urlOf maps a path to its probe: itself when probed, else the longest
// prefix it starts with, else any other path.
func (sp *probeSpace) urlOf(path string) int {
	if i, ok := sp.urls[path]; ok && !strings.Contains(path, other) {
		return i
	}
	for _, p := range sp.prefixes {
		if p != "" && strings.HasPrefix(path, p) {
			return sp.urls[p+other]
		}
	}
	return sp.urls[other]
}

// standIns maps each value of one field to the value probed for it: for
// a given resource, a value that no rule able to match it names behaves
// like any other value.
type standIns struct {
	// reps are the values probed.
	reps []int
	// members has, for each probed value, the values it stands for.
	members map[int]bitset
}

func newStandIns(n int, rep func(int) int) standIns {
	s := standIns{members: map[int]bitset{}}
	for i := 0; i < n; i++ {
		r := rep(i)
		m, ok := s.members[r]
		if !ok {
			m = newBitset(n)
			s.members[r] = m
			s.reps = append(s.reps, r)
		}
		m.set(i)
	}
	slices.Sort(s.reps)
	return s
}

// relevance says, for one resource or URL probe, which namespaces, names
// and users the rules of a and b that can match it name; the others are
// tried once, as any other value. A non-resource URL has no namespace or
// name: probe 0 stands for every one.
type relevance struct{ ns, names, users standIns }

func (sp *probeSpace) relevance(w int, ps ...*Policy) relevance {
	wp := &sp.what[w]
	ns, names, users, groups := map[string]bool{}, map[string]bool{}, map[string]bool{}, map[string]bool{}
	for _, p := range ps {
		for _, r := range p.Rules {
			resourceRule := len(r.Namespaces) > 0 || len(r.Resources) > 0
			if wp.url && resourceRule {
				continue // a resource rule never matches a non-resource request
			}
			if !wp.url && !resourceRule && len(r.NonResourceURLs) > 0 {
				continue // nor a URL rule a resource request
			}
			matches := len(r.Resources) == 0
			for _, gr := range r.Resources {
				cg := compileGroup(gr)
				if !cg.anyGroup && cg.group != wp.res.group {
					continue
				}
				if cg.anyRes {
					matches = true
					continue
				}
				if slices.ContainsFunc(cg.patterns, func(p resourcePattern) bool { return p.matches(wp.res.resource, wp.res.sub) }) {
					matches = true
					for _, n := range gr.ResourceNames {
						names[n] = true
					}
				}
			}
			if !matches {
				continue
			}
			for _, n := range r.Namespaces {
				ns[n] = true
			}
			for _, u := range r.Users {
				users[u] = true
			}
			for _, g := range r.UserGroups {
				groups[g] = true
			}
		}
	}
	keep := func(list []string, named map[string]bool) func(int) int {
		last := len(list) - 1
		return func(i int) int {
			if wp.url {
				return 0
			}
			if named[list[i]] {
				return i
			}
			return last
		}
	}
	index := map[string]int{}
	for i, u := range sp.users {
		if !u.unauth {
			index[userKey(u.name, u.groups)] = i
		}
	}
	userRep := func(i int) int {
		u := sp.users[i]
		if u.unauth {
			return i
		}
		name := u.name
		if !users[name] {
			name = other
		}
		var in []string
		for _, g := range u.groups {
			if groups[g] {
				in = append(in, g)
			}
		}
		return index[userKey(name, in)]
	}
	return relevance{
		ns:    newStandIns(len(sp.namespaces), keep(sp.namespaces, ns)),
		names: newStandIns(len(sp.names), keep(sp.names, names)),
		users: newStandIns(len(sp.users), userRep),
	}
}

// userKey tells user probes apart: the group "" is not no group.
func userKey(name string, groups []string) string {
	return fmt.Sprintf("%q %q", name, groups)
}

// changeKey groups differing probes into Differences.
type changeKey struct {
	a, b    outcome
	impact  Impact
	concern string
}

// Diff lists what a and b log differently: a different level, different
// stages logged, or a different omitManagedFields where bodies are
// logged. Requests that neither policy logs (level None in both) never
// differ, whatever their omitted stages.
func Diff(a, b *Policy) *DiffReport {
	sp := newProbeSpace(a, b)
	ea, eb := NewEvaluator(a), NewEvaluator(b)
	rep := &DiffReport{space: sp}

	// Evaluate the probes; group the differing ones by change, one user
	// set per (what, verb, namespace, name). For each resource or URL only
	// the values that the rules able to match it name are tried; every
	// other value gets the outcome of the value that stands for it.
	users := make([]*UserInfo, len(sp.users))
	for i, u := range sp.users {
		if !u.unauth {
			users[i] = &UserInfo{Name: u.name, Groups: u.groups}
		}
	}
	var recs, scratch []userRec
	r := &Request{}
	for w := range sp.what {
		rel := sp.relevance(w, a, b)
		for v := range sp.verbs {
			for _, n := range rel.ns.reps {
				for _, m := range rel.names.reps {
					*r = *sp.request(cell{w, v, n, m, 0})
					scratch = scratch[:0]
					for _, u := range rel.users.reps {
						r.User = users[u]
						oa, ob := effective(ea.Evaluate(r)), effective(eb.Evaluate(r))
						if oa.same(ob) {
							continue
						}
						impact, concern := concernOf(&sp.what[w], sp.verbs[v], oa, ob)
						k := changeKey{oa, ob, impact, concern}
						i := slices.IndexFunc(scratch, func(x userRec) bool { return x.key == k })
						if i < 0 {
							i = len(scratch)
							scratch = append(scratch, userRec{key: k, idx: [4]int{w, v, n, m}, users: newBitset(len(sp.users)),
								nsMask: rel.ns.members[n], namesMask: rel.names.members[m]})
						}
						scratch[i].users.or(rel.users.members[u])
					}
					recs = append(recs, scratch...)
				}
			}
		}
	}
	rep.Differences, rep.scopes = compress(sp, recs)
	for i := range rep.Differences {
		for j := range rep.Differences[i].Changes {
			c := &rep.Differences[i].Changes[j]
			c.A.Line, c.B.Line = ruleLine(a, c.A.Rule), ruleLine(b, c.B.Rule)
		}
	}
	return rep
}

func ruleLine(p *Policy, rule int) int {
	if rule < 0 {
		return 0
	}
	pos, _ := p.PosOf(fmt.Sprintf("rules[%d]", rule))
	return pos.Line
}

// userRec is the users of one (what, verb, namespace, name) probe for
// whom the policies make one change.
type userRec struct {
	key   changeKey
	idx   [4]int // what, verb, namespace, name
	users bitset
	// nsMask and namesMask are the namespaces and names the probed ones
	// stand for.
	nsMask, namesMask bitset
}

// scopeSet is a Scope as sets of probe indices.
type scopeSet struct {
	what, verbs, ns, names, users bitset
}

// compress folds the differing probes of each change into scopes: users
// first, then names, namespaces, verbs and finally what is requested, each
// step merging the sets that agree on everything else. It returns the
// Differences, worst first, and the Difference of each differing probe.
func compress(sp *probeSpace, recs []userRec) ([]Difference, [][]scopeSet) {
	type partial struct {
		key        changeKey
		what, verb int
		ns         int
		users      string
	}
	sets := map[string]bitset{}
	remember := func(b bitset) string {
		k := b.key()
		sets[k] = b
		return k
	}
	// Names.
	byNames := map[partial]bitset{}
	nsMask := map[partial]bitset{}
	var order1 []partial
	for _, r := range recs {
		key, idx, users := r.key, r.idx, r.users
		p := partial{key: key, what: idx[0], verb: idx[1], ns: idx[2], users: remember(users)}
		set, ok := byNames[p]
		if !ok {
			set = newBitset(len(sp.names))
			order1 = append(order1, p)
			nsMask[p] = r.nsMask
		}
		set.or(r.namesMask)
		byNames[p] = set
	}
	// Namespaces.
	type partial2 struct {
		key          changeKey
		what, verb   int
		users, names string
	}
	byNS := map[partial2]bitset{}
	var order2 []partial2
	for _, p := range order1 {
		q := partial2{p.key, p.what, p.verb, p.users, remember(byNames[p])}
		set, ok := byNS[q]
		if !ok {
			set = newBitset(len(sp.namespaces))
			order2 = append(order2, q)
		}
		set.or(nsMask[p])
		byNS[q] = set
	}
	// Verbs.
	type partial3 struct {
		key              changeKey
		what             int
		users, names, ns string
	}
	byVerb := map[partial3]bitset{}
	var order3 []partial3
	for _, p := range order2 {
		q := partial3{p.key, p.what, p.users, p.names, remember(byNS[p])}
		set, ok := byVerb[q]
		if !ok {
			set = newBitset(len(sp.verbs))
			order3 = append(order3, q)
		}
		set.set(p.verb)
		byVerb[q] = set
	}
	// What.
	type partial4 struct {
		key                     changeKey
		users, names, ns, verbs string
	}
	byWhat := map[partial4]bitset{}
	var order4 []partial4
	for _, p := range order3 {
		q := partial4{p.key, p.users, p.names, p.ns, remember(byVerb[p])}
		set, ok := byWhat[q]
		if !ok {
			set = newBitset(len(sp.what))
			order4 = append(order4, q)
		}
		set.set(p.what)
		byWhat[q] = set
	}
	// One Change per scope; one Difference per impact, concern, stages
	// and managedFields, its changes in order of appearance.
	type block struct {
		impact           Impact
		concern          string
		loggedA, loggedB uint8
		omfA, omfB       bool
	}
	index := map[block]int{}
	var out []Difference
	var scopes [][]scopeSet
	for _, p := range order4 {
		k := p.key
		b := block{k.impact, k.concern, k.a.logged, k.b.logged, k.a.omf, k.b.omf}
		i, ok := index[b]
		if !ok {
			i = len(out)
			index[b] = i
			out = append(out, Difference{Impact: k.impact, Concern: k.concern})
			scopes = append(scopes, nil)
		}
		out[i].Changes = append(out[i].Changes, Change{A: k.a.public(), B: k.b.public()})
		scopes[i] = append(scopes[i], scopeSet{what: byWhat[p], verbs: sets[p.verbs], ns: sets[p.ns], names: sets[p.names], users: sets[p.users]})
	}
	// Worst first; among equals, in the order of the probes (the core
	// group's resources first, non-resource URLs last).
	perm := make([]int, len(out))
	for i := range perm {
		perm[i] = i
	}
	slices.SortStableFunc(perm, func(x, y int) int { return cmp.Compare(impactRank[out[x].Impact], impactRank[out[y].Impact]) })
	sorted := make([]Difference, len(out))
	sortedScopes := make([][]scopeSet, len(out))
	for j, i := range perm {
		sorted[j], sortedScopes[j] = out[i], scopes[i]
		for k, s := range scopes[i] {
			sorted[j].Changes[k].Requests = sp.words(s)
		}
	}
	return sorted, sortedScopes
}

// has tells whether the scope holds a probe.
func (s *scopeSet) has(sp *probeSpace, c cell) bool {
	if !s.what.has(c.what) || !s.verbs.has(c.verb) || !s.users.has(c.user) {
		return false
	}
	return sp.what[c.what].url || s.ns.has(c.ns) && s.names.has(c.name)
}

// locate finds the Difference and Change of a probe; ok is false when the
// policies log it alike.
func (rep *DiffReport) locate(c cell) (diff, change int, ok bool) {
	for i, ss := range rep.scopes {
		for j := range ss {
			if ss[j].has(rep.space, c) {
				return i, j, true
			}
		}
	}
	return -1, -1, false
}

func (o outcome) public() Outcome {
	out := Outcome{Level: o.level, OmitManagedFields: o.omf, Rule: o.rule, StagesLogged: []audit.Stage{}}
	for i, s := range stageOrder {
		if o.logged&(1<<i) != 0 {
			out.StagesLogged = append(out.StagesLogged, s)
		}
	}
	return out
}

// bodyVerbs are the verbs whose requests carry an object: at level
// Request it is logged.
var bodyVerbs = []string{"create", "update", "patch", "post", "put", other}

// logsBodies tells whether a request with this verb has an object logged.
func logsBodies(o outcome, verb string) bool {
	if o.logsNothing() {
		return false
	}
	return o.level == audit.LevelRequestResponse || o.level == audit.LevelRequest && slices.Contains(bodyVerbs, verb)
}

func (w *whatProbe) is(group, resource, sub string) bool {
	return !w.url && w.res == resProbe{group, resource, sub}
}

// concernOf says how much a change on one kind of request matters, and
// why, worst reason first.
func concernOf(w *whatProbe, verb string, a, b outcome) (Impact, string) {
	credentials := w.is("", "secrets", "") || w.is("", "configmaps", "") || w.is("", "serviceaccounts", "token") ||
		w.is("authentication.k8s.io", "tokenreviews", "")
	interactive := w.is("", "pods", "exec") || w.is("", "pods", "attach") || w.is("", "pods", "portforward")
	rbacWrite := !w.url && w.res.group == "rbac.authorization.k8s.io" && w.res.sub == "" &&
		slices.Contains([]string{"roles", "rolebindings", "clusterroles", "clusterrolebindings"}, w.res.resource) &&
		slices.Contains([]string{"create", "update", "patch", "delete", "deletecollection"}, verb)
	ra, rb := levelRank[a.level], levelRank[b.level]
	if a.logsNothing() {
		ra = 0
	}
	if b.logsNothing() {
		rb = 0
	}
	request := levelRank[audit.LevelRequest]
	stops := b.logsNothing() && !a.logsNothing()
	switch {
	case credentials && logsBodies(b, verb) && !logsBodies(a, verb):
		return ImpactCritical, "starts logging credentials: the contents of secrets, configmaps or tokens"
	case interactive && stops:
		return ImpactCritical, "stops logging exec, attach and port-forward into pods"
	case rbacWrite && stops:
		return ImpactCritical, "stops logging RBAC changes"
	case rbacWrite && rb < request && ra >= request:
		return ImpactHigh, "RBAC changes lose their bodies: what was granted to whom"
	case interactive && rb < request && ra >= request:
		return ImpactHigh, "exec, attach and port-forward drop below Request"
	case stops:
		return ImpactHigh, "stops logging these requests"
	case credentials && logsBodies(a, verb) && !logsBodies(b, verb):
		return ImpactLow, "stops logging credentials"
	case rb < ra:
		return ImpactMedium, "logs less: a lower level"
	case a.logged&^b.logged != 0 && !a.logsNothing():
		return ImpactMedium, "stops logging stage " + stageNames(a.logged&^b.logged)
	case a.logsNothing() && !b.logsNothing():
		return ImpactLow, "starts logging these requests"
	case rb > ra:
		return ImpactLow, "logs more: a higher level"
	case b.logged&^a.logged != 0 && !a.logsNothing():
		return ImpactLow, "logs stage " + stageNames(b.logged&^a.logged) + " too"
	}
	return ImpactLow, "managedFields kept or dropped differently"
}

// stageNames lists the stages of a mask: "RequestReceived and Panic".
func stageNames(mask uint8) string {
	var names []string
	for i, s := range stageOrder {
		if mask&(1<<i) != 0 {
			names = append(names, string(s))
		}
	}
	if len(names) > 1 {
		return strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
	}
	return strings.Join(names, "")
}

// Find returns the indices of the Difference, and of the Change in it,
// that r falls in, or -1, -1 when the two policies log r alike. ok is
// false when r is a request the probes do not stand for (a user in three
// or more groups the policies name); the caller must then evaluate r
// itself.
func (rep *DiffReport) Find(r *Request) (diff, change int, ok bool) {
	c, ok := rep.space.cellOf(r)
	if !ok {
		return -1, -1, false
	}
	if i, j, found := rep.locate(c); found {
		return i, j, true
	}
	return -1, -1, true
}

// DiffCount counts recorded events the two policies log differently, per
// Difference.
type DiffCount struct {
	rep    *DiffReport
	ea, eb *Evaluator
	// Total is the number of events counted.
	Total int64
	// Differ is the number of them the policies log differently.
	Differ int64
	// PerDifference counts them by Difference (index into the report).
	PerDifference []int64
	// Unplaced counts the differing events that no Difference stands for
	// (users in three or more listed groups).
	Unplaced int64
}

// NewDiffCount prepares counting, on recorded traffic, the events of each
// Difference of rep, which Diff(a, b) made.
func NewDiffCount(a, b *Policy, rep *DiffReport) *DiffCount {
	return &DiffCount{rep: rep, ea: NewEvaluator(a), eb: NewEvaluator(b), PerDifference: make([]int64, len(rep.Differences))}
}

// Add counts one recorded event.
func (c *DiffCount) Add(ev *audit.Event) {
	c.Total++
	r := RequestFromEvent(ev)
	if effective(c.ea.Evaluate(r)).same(effective(c.eb.Evaluate(r))) {
		return
	}
	c.Differ++
	if i, _, ok := c.rep.Find(r); ok && i >= 0 {
		c.PerDifference[i]++
	} else {
		c.Unplaced++
	}
}
