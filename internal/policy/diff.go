package policy

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/kubetrail/kubetrail/internal/audit"
)

// A policy tells requests apart only by the values it names: a user it
// does not list is treated like every other unlisted user. So the requests
// built from the values both policies name, plus one value neither names
// for each field, stand for every request there is, and comparing the two
// policies on them finds every kind of request they treat differently.
// (Groups are tried one at a time: a request in two listed groups is not
// built.)

// Difference is a kind of request two policies log differently.
type Difference struct {
	// Request describes the requests, with "*" for a field whose value does
	// not matter.
	User, Group, Verb, Resource, Namespace, Name, URL string
	A, B                                              Decision
}

// String renders the difference on one line.
func (d Difference) String() string {
	var who string
	switch {
	case d.User == "(unauthenticated)":
		who = "unauthenticated"
	case d.Group != "*" && d.Group != "":
		who = "user " + d.User + " in group " + d.Group
	default:
		who = "user " + d.User
	}
	what := d.URL
	if d.Resource != "" {
		what = d.Resource
		if d.Namespace != "*" {
			what += " in namespace " + quoteEmpty(d.Namespace)
		}
		if d.Name != "*" {
			what += " named " + quoteEmpty(d.Name)
		}
	}
	return fmt.Sprintf("%s %s by %s: %s -> %s", d.Verb, what, who, describe(d.A), describe(d.B))
}

func quoteEmpty(s string) string {
	if s == "" {
		return `""`
	}
	return s
}

func describe(d Decision) string {
	if d.Rule < 0 {
		return "None (no rule)"
	}
	return fmt.Sprintf("%s (rule %d)", d.Level, d.Rule)
}

const other = "\x00other"

// Diff lists the kinds of requests a and b log differently: a different
// level, different omitted stages or a different omitManagedFields.
func Diff(a, b *Policy) []Difference {
	ea, eb := NewEvaluator(a), NewEvaluator(b)
	var users, groups, verbs, namespaces, names, urls []string
	type gr struct{ group, resource string }
	var resources []gr
	for _, p := range []*Policy{a, b} {
		for _, r := range p.Rules {
			users = append(users, r.Users...)
			groups = append(groups, r.UserGroups...)
			verbs = append(verbs, r.Verbs...)
			namespaces = append(namespaces, r.Namespaces...)
			for _, u := range r.NonResourceURLs {
				urls = append(urls, strings.TrimSuffix(u, "*")+"x", strings.TrimSuffix(u, "*"))
			}
			for _, g := range r.Resources {
				names = append(names, g.ResourceNames...)
				grp := g.Group
				if grp == "*" {
					grp = "example.com"
				}
				for _, res := range g.Resources {
					res = strings.ReplaceAll(res, "*", "x")
					resources = append(resources, gr{grp, res})
					if base, _, ok := strings.Cut(res, "/"); ok {
						resources = append(resources, gr{grp, base})
					}
				}
				resources = append(resources, gr{grp, "other"})
			}
		}
	}
	uniq := func(s []string, extra ...string) []string {
		s = append(s, extra...)
		slices.Sort(s)
		return slices.Compact(s)
	}
	users = uniq(users, other, "(unauthenticated)")
	groups = uniq(groups, "", other)
	verbs = uniq(verbs, "get", "list", "watch", "create", "update", "patch", "delete", "deletecollection", other)
	namespaces = uniq(namespaces, "", other)
	names = uniq(names, "", other)
	urls = uniq(urls, "/other")
	resources = append(resources, gr{"", "other"}, gr{"other.example", "other"})
	slices.SortFunc(resources, func(x, y gr) int { return strings.Compare(x.group+"/"+x.resource, y.group+"/"+y.resource) })
	resources = slices.Compact(resources)

	differs := func(x, y Decision) bool {
		return x.Level != y.Level || x.OmitManagedFields != y.OmitManagedFields || !slices.Equal(x.OmitStages, y.OmitStages)
	}
	userOf := func(u, g string) *UserInfo {
		if u == "(unauthenticated)" {
			return nil
		}
		ui := &UserInfo{Name: u}
		if g != "" {
			ui.Groups = []string{g}
		}
		return ui
	}
	show := func(s string) string {
		if s == other {
			return "(any other)"
		}
		return s
	}
	seen := map[string]bool{}
	var out []Difference
	emit := func(d Difference) {
		k := d.String()
		if !seen[k] {
			seen[k] = true
			out = append(out, d)
		}
	}
	// Resource requests: for each verb, resource, namespace and name,
	// collapse user, group, namespace and name when every value gives the
	// same pair of decisions.
	for _, verb := range verbs {
		for _, res := range resources {
			resName, sub, _ := strings.Cut(res.resource, "/")
			for _, ns := range namespaces {
				for _, name := range names {
					type pair struct{ a, b Decision }
					outcomes := map[string]pair{}
					same := true
					var first *pair
					for _, u := range users {
						for _, g := range groups {
							if u == "(unauthenticated)" && g != "" {
								continue
							}
							r := &Request{User: userOf(u, g), Verb: verb, APIGroup: res.group, Resource: resName, Subresource: sub, Namespace: ns, Name: name, ResourceRequest: true}
							pa, pb := ea.Evaluate(r), eb.Evaluate(r)
							p := pair{pa, pb}
							outcomes[u+"\x01"+g] = p
							if first == nil {
								first = &p
							} else if differs(first.a, p.a) || differs(first.b, p.b) || first.a.Rule != p.a.Rule || first.b.Rule != p.b.Rule {
								same = false
							}
						}
					}
					for k, p := range outcomes {
						if !differs(p.a, p.b) {
							continue
						}
						u, g, _ := strings.Cut(k, "\x01")
						d := Difference{Verb: show(verb), Resource: displayResource(res.group, res.resource), Namespace: show(ns), Name: show(name), A: p.a, B: p.b}
						if same {
							d.User, d.Group = "*", "*"
						} else {
							d.User, d.Group = show(u), show(g)
						}
						emit(d)
					}
				}
			}
		}
	}
	// Collapse namespace and name: a difference that holds for every
	// namespace (or name) with the rest equal is reported once with "*".
	out = collapse(out, func(d *Difference) *string { return &d.Name }, len(names))
	out = collapse(out, func(d *Difference) *string { return &d.Namespace }, len(namespaces))
	// Non-resource requests.
	for _, verb := range []string{"get", "post", "put", "delete"} {
		for _, u := range urls {
			for _, user := range users {
				for _, g := range groups {
					if user == "(unauthenticated)" && g != "" {
						continue
					}
					r := &Request{User: userOf(user, g), Verb: verb, Path: u}
					pa, pb := ea.Evaluate(r), eb.Evaluate(r)
					if differs(pa, pb) {
						emit(Difference{Verb: verb, URL: u, User: show(user), Group: show(g), A: pa, B: pb})
					}
				}
			}
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}

func displayResource(group, resource string) string {
	if group == "" {
		return resource
	}
	return resource + "." + group
}

// collapse merges differences that differ only in one field and cover all
// n values of it into one with "*".
func collapse(ds []Difference, field func(*Difference) *string, n int) []Difference {
	groups := map[string][]int{}
	var order []string
	for i := range ds {
		d := ds[i]
		*field(&d) = "*"
		k := d.String()
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], i)
	}
	var out []Difference
	for _, k := range order {
		idx := groups[k]
		if len(idx) >= n {
			d := ds[idx[0]]
			*field(&d) = "*"
			out = append(out, d)
			continue
		}
		for _, i := range idx {
			out = append(out, ds[i])
		}
	}
	return out
}

// DiffCount counts recorded events the two policies log differently,
// keyed by a short description.
type DiffCount struct {
	counts map[string]int64
	ea, eb *Evaluator
	Total  int64
	Differ int64
}

// NewDiffCount prepares counting differences on recorded traffic.
func NewDiffCount(a, b *Policy) *DiffCount {
	return &DiffCount{counts: map[string]int64{}, ea: NewEvaluator(a), eb: NewEvaluator(b)}
}

// Add counts one recorded event.
func (c *DiffCount) Add(ev *audit.Event) {
	c.Total++
	r := RequestFromEvent(ev)
	pa, pb := c.ea.Evaluate(r), c.eb.Evaluate(r)
	if pa.Level == pb.Level && pa.OmitManagedFields == pb.OmitManagedFields && slices.Equal(pa.OmitStages, pb.OmitStages) {
		return
	}
	c.Differ++
	what := r.Path
	if r.ResourceRequest {
		what = displayResource(r.APIGroup, r.Resource)
		if r.Subresource != "" {
			what = displayResource(r.APIGroup, r.Resource+"/"+r.Subresource)
		}
	}
	c.counts[fmt.Sprintf("%s %s: %s -> %s", r.Verb, what, describe(pa), describe(pb))]++
}

// Top returns the most frequent differences, at most n.
func (c *DiffCount) Top(n int) []struct {
	What  string
	Count int64
} {
	var out []struct {
		What  string
		Count int64
	}
	for k, v := range c.counts {
		out = append(out, struct {
			What  string
			Count int64
		}{k, v})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Count != out[j].Count {
			return out[i].Count > out[j].Count
		}
		return out[i].What < out[j].What
	})
	if len(out) > n {
		out = out[:n]
	}
	return out
}
