package policy

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
)

// Explanation tells why a policy gives a request its level: the rule that
// matched, quoted from its file, and for each earlier rule the first
// criterion that excluded the request.
type Explanation struct {
	// Decision is the policy's decision, from the Evaluator.
	Decision Decision
	// Lines are the matching rule's lines in the policy file; empty when
	// no rule matched or the source is unknown.
	Lines []SourceLine
	// Misses has, in order, every rule before the matching one (every rule
	// when none matched) and why it did not match.
	Misses []Miss
}

// SourceLine is one numbered line of a policy file.
type SourceLine struct {
	// Line is 1-based.
	Line int
	// Text is the line without its newline.
	Text string
}

// Miss says why one rule did not match a request.
type Miss struct {
	// Rule is the 0-based index of the rule.
	Rule int
	// Pos is where the rule starts; zero when unknown.
	Pos Pos
	// Criterion is the first failing field: users, userGroups, verbs,
	// nonResourceURLs (a URL rule against a resource request or the
	// reverse), namespaces, resources/group, resources, resourceNames.
	Criterion string
	// Reason says the same in plain words.
	Reason string
}

// Explain decides r under p, as NewEvaluator(p).Evaluate(r) does, and says
// why. src is the policy file's content (for quoting the rule); it may be
// nil.
func Explain(p *Policy, src []byte, r *Request) *Explanation {
	d := NewEvaluator(p).Evaluate(r)
	x := &Explanation{Decision: d}
	upto := len(p.Rules)
	if d.Rule >= 0 {
		upto = d.Rule
		x.Lines = ruleLines(p, src, d.Rule)
	}
	for i := 0; i < upto; i++ {
		crit, why := whyNot(&p.Rules[i], r)
		if crit == "" {
			// Cannot happen: the Evaluator is exact. Say so rather than lie.
			crit, why = "?", "this explanation finds that the rule matches, yet the evaluator passed it over; please report this"
		}
		x.Misses = append(x.Misses, Miss{Rule: i, Pos: p.Rules[i].Pos, Criterion: crit, Reason: why})
	}
	return x
}

// whyNot returns the first criterion of rule that excludes r and why, in
// the order the API server checks them, or "" when the rule matches.
func whyNot(rule *Rule, r *Request) (criterion, reason string) {
	if len(rule.Users) > 0 {
		if r.User == nil {
			return "users", "the rule lists users and the request carries no user information (unauthenticated)"
		}
		if !slices.Contains(rule.Users, r.User.Name) {
			return "users", fmt.Sprintf("the user %q is not one of %s", r.User.Name, quoteList(rule.Users))
		}
	}
	if len(rule.UserGroups) > 0 {
		if r.User == nil {
			return "userGroups", "the rule lists userGroups and the request carries no user information (unauthenticated)"
		}
		in := false
		for _, g := range r.User.Groups {
			if slices.Contains(rule.UserGroups, g) {
				in = true
				break
			}
		}
		if !in {
			have := "the user is in no group"
			if len(r.User.Groups) > 0 {
				have = "the user's groups " + quoteList(r.User.Groups) + " are"
			}
			return "userGroups", fmt.Sprintf("%s not one of %s", have, quoteList(rule.UserGroups))
		}
	}
	if len(rule.Verbs) > 0 && !slices.Contains(rule.Verbs, r.Verb) {
		why := fmt.Sprintf("the verb %q is not one of %s", r.Verb, quoteList(rule.Verbs))
		if slices.Contains(rule.Verbs, "*") {
			why += `; "*" in verbs is not a wildcard, it matches only the verb "*" (leave verbs out to match every verb)`
		}
		return "verbs", why
	}
	resourceRule := len(rule.Namespaces) > 0 || len(rule.Resources) > 0
	urlRule := !resourceRule && len(rule.NonResourceURLs) > 0
	if r.ResourceRequest {
		if urlRule {
			return "nonResourceURLs", "the rule is for non-resource URLs only, and this is a resource request"
		}
		if len(rule.Namespaces) > 0 && !slices.Contains(rule.Namespaces, r.Namespace) {
			ns := fmt.Sprintf("namespace %q", r.Namespace)
			if r.Namespace == "" {
				ns = `a cluster-scoped request (namespace "")`
			}
			return "namespaces", fmt.Sprintf("%s is not one of %s", ns, quoteList(rule.Namespaces))
		}
		if len(rule.Resources) > 0 {
			return whyNotResources(rule.Resources, r)
		}
		return "", ""
	}
	if resourceRule {
		return "resources", fmt.Sprintf("the rule is for resource requests only (it has resources or namespaces), and %s is a non-resource URL", r.Path)
	}
	if urlRule {
		for _, u := range rule.NonResourceURLs {
			if u == "*" || u == r.Path || strings.HasSuffix(u, "*") && strings.HasPrefix(r.Path, strings.TrimRight(u, "*")) {
				return "", ""
			}
		}
		return "nonResourceURLs", fmt.Sprintf("the path %q matches none of %s", r.Path, quoteList(rule.NonResourceURLs))
	}
	return "", ""
}

// whyNotResources explains why no entry of resources matches r, or returns
// "" when one does.
func whyNotResources(grs []GroupResources, r *Request) (criterion, reason string) {
	want := r.Resource
	if r.Subresource != "" {
		want += "/" + r.Subresource
	}
	var groups []string
	sameGroup, nameOnly := false, false
	otherGroup, elsewhere := "", false // a group that names the resource, but not the request's
	for _, gr := range grs {
		cg := compileGroup(gr)
		groups = append(groups, gr.Group)
		if cg.group != r.APIGroup && !cg.anyGroup {
			for _, res := range gr.Resources {
				p := compileGroup(GroupResources{Group: "*", Resources: []string{res}})
				if p.patterns[0].matches(r.Resource, r.Subresource) && !p.patterns[0].star {
					otherGroup, elsewhere = gr.Group, true
				}
			}
			continue
		}
		sameGroup = true
		if cg.anyRes {
			return "", ""
		}
		for i := range cg.patterns {
			if cg.patterns[i].matches(r.Resource, r.Subresource) {
				if len(cg.names) == 0 || slices.Contains(cg.names, r.Name) {
					return "", ""
				}
				nameOnly = true
			}
		}
	}
	switch {
	case !sameGroup:
		why := fmt.Sprintf("the request is in API group %s, and the rule's resources are for group %s", groupName(r.APIGroup), groupList(groups))
		if elsewhere {
			why += fmt.Sprintf("; %s is listed under group %s: write group: %s (an omitted group is the core group only)", r.Resource, groupName(otherGroup), groupName(r.APIGroup))
		}
		return "resources/group", why
	case nameOnly:
		name := fmt.Sprintf("the name %q is", r.Name)
		if r.Name == "" {
			name = "the request has no object name (list, watch of a collection, or create), which is"
		}
		return "resourceNames", fmt.Sprintf("%s matches, but %s not in resourceNames", want, name)
	}
	why := fmt.Sprintf("%s in group %s matches none of the rule's resources", want, groupName(r.APIGroup))
	if r.Subresource != "" && mentions(grs, r.Resource) {
		why += fmt.Sprintf(`; "%s" does not cover its subresources: list "%s" or "%s/*"`, r.Resource, want, r.Resource)
	}
	return "resources", why
}

// mentions reports whether some entry lists exactly resource.
func mentions(grs []GroupResources, resource string) bool {
	for _, gr := range grs {
		if slices.Contains(gr.Resources, resource) {
			return true
		}
	}
	return false
}

func groupName(g string) string {
	if g == "" {
		return `"" (core)`
	}
	return fmt.Sprintf("%q", g)
}

func groupList(gs []string) string {
	slices.Sort(gs)
	gs = slices.Compact(gs)
	out := make([]string, len(gs))
	for i, g := range gs {
		out[i] = groupName(g)
	}
	return strings.Join(out, ", ")
}

func quoteList(list []string) string {
	out := make([]string, len(list))
	for i, s := range list {
		out[i] = fmt.Sprintf("%q", s)
	}
	return strings.Join(out, ", ")
}

// ruleLines returns the lines of rule i in src: from the line it starts on
// to the last line indented deeper than its "- ", before the next rule,
// without trailing blank or comment lines.
func ruleLines(p *Policy, src []byte, i int) []SourceLine {
	start := p.Rules[i].Pos
	if len(src) == 0 || start.Line == 0 {
		return nil
	}
	lines := strings.Split(string(bytes.TrimRight(src, "\n")), "\n")
	if start.Line > len(lines) {
		return nil
	}
	end := len(lines) // exclusive, 0-based
	if i+1 < len(p.Rules) && p.Rules[i+1].Pos.Line > start.Line {
		end = min(end, p.Rules[i+1].Pos.Line-1)
	}
	indent := start.Column - 1 // the column of the rule's first key
	var out []SourceLine
	for n := start.Line - 1; n < end; n++ {
		text := strings.TrimRight(lines[n], "\r")
		trimmed := strings.TrimLeft(text, " ")
		if n > start.Line-1 && trimmed != "" && !strings.HasPrefix(trimmed, "#") && len(text)-len(trimmed) < indent {
			break
		}
		out = append(out, SourceLine{Line: n + 1, Text: text})
		if len(out) == 60 {
			break
		}
	}
	for len(out) > 1 {
		t := strings.TrimSpace(out[len(out)-1].Text)
		if t != "" && !strings.HasPrefix(t, "#") {
			break
		}
		out = out[:len(out)-1]
	}
	return out
}
