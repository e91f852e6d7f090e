package policy

import (
	"fmt"
	"strings"

	"github.com/kubetrail/kubetrail/internal/audit"
)

// Validate applies the API server's validation rules
// (k8s.io/apiserver/pkg/apis/audit/validation) and its loader's "at least
// one rule" check to p. Errors carry field paths like the API server's
// (rules[2].level); paths inside resources also carry the entry's index
// (rules[0].resources[1].group), which the API server leaves out. When p
// was loaded from a file, each error also says where.
func Validate(p *Policy) ErrorList {
	var errs ErrorList
	add := func(path, msg, hint string) {
		e := &Error{File: p.File, Path: path, Msg: msg, Hint: hint}
		e.Pos, _ = p.PosOf(path)
		errs = append(errs, e)
	}
	validateStages(p.OmitStages, "omitStages", add)
	for i := range p.Rules {
		r := &p.Rules[i]
		at := fmt.Sprintf("rules[%d]", i)
		switch {
		case r.Level == "":
			add(at+".level", "required: every rule needs a level", "one of "+joinLevels())
		case !validLevel(r.Level):
			add(at+".level", fmt.Sprintf("unsupported value %q: must be one of %s", r.Level, joinLevels()), suggestLevel(string(r.Level)))
		}
		for j, u := range r.NonResourceURLs {
			if u == "*" {
				continue
			}
			path := fmt.Sprintf("%s.nonResourceURLs[%d]", at, j)
			if !strings.HasPrefix(u, "/") {
				add(path, fmt.Sprintf("invalid value %q: a non-resource URL must begin with '/'", u), "")
			}
			if u != "" && strings.Contains(u[:len(u)-1], "*") {
				add(path, fmt.Sprintf("invalid value %q: '*' is allowed only as the last character", u), "")
			}
		}
		for j, gr := range r.Resources {
			path := fmt.Sprintf("%s.resources[%d]", at, j)
			if gr.Group != "" && gr.Group != "*" {
				if msg := checkDNSSubdomain(gr.Group); msg != "" {
					add(path+".group", fmt.Sprintf("invalid value %q: %s", gr.Group, msg), groupHint(gr.Group))
				}
			}
			if len(gr.ResourceNames) > 0 && len(gr.Resources) == 0 {
				add(path+".resourceNames", "resourceNames needs at least one resource in the same entry", "add resources: [...] next to resourceNames")
			}
		}
		validateStages(r.OmitStages, at+".omitStages", add)
		if len(r.NonResourceURLs) > 0 && (len(r.Resources) > 0 || len(r.Namespaces) > 0) {
			add(at+".nonResourceURLs", "a rule cannot match both resources (resources, namespaces) and non-resource URLs", "split it into two rules")
		}
	}
	if len(p.Rules) == 0 {
		add("rules", "the policy has no rules; the API server refuses a policy with 0 rules", "add at least one rule, such as - level: Metadata")
	}
	return errs
}

func validateStages(stages []audit.Stage, path string, add func(path, msg, hint string)) {
	for i, s := range stages {
		if validStage(s) {
			continue
		}
		add(fmt.Sprintf("%s[%d]", path, i), fmt.Sprintf("invalid value %q: stages are %s", s, joinStages()), suggestStage(string(s)))
	}
}

func validLevel(l audit.Level) bool {
	for _, v := range levels {
		if l == v {
			return true
		}
	}
	return false
}

func validStage(s audit.Stage) bool {
	for _, v := range stageOrder {
		if s == v {
			return true
		}
	}
	return false
}

func joinLevels() string {
	var b strings.Builder
	for i, l := range levels {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(string(l))
	}
	return b.String()
}

func joinStages() string {
	var b strings.Builder
	for i, s := range stageOrder {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(string(s))
	}
	return b.String()
}

func suggestLevel(v string) string {
	names := make([]string, len(levels))
	for i, l := range levels {
		names[i] = string(l)
	}
	return didYouMean(v, names)
}

func suggestStage(v string) string {
	names := make([]string, len(stageOrder))
	for i, s := range stageOrder {
		names[i] = string(s)
	}
	return didYouMean(v, names)
}

// checkDNSSubdomain is the API server's check of an API group name: a
// lowercase RFC 1123 subdomain of at most 253 characters. It returns what
// is wrong, or "".
func checkDNSSubdomain(s string) string {
	var msgs []string
	if len(s) > 253 {
		msgs = append(msgs, "must be no more than 253 characters")
	}
	if !isDNSSubdomain(s) {
		msgs = append(msgs, "an API group is a lowercase DNS subdomain (RFC 1123) such as apps or rbac.authorization.k8s.io")
	}
	return strings.Join(msgs, "; ")
}

// isDNSSubdomain reports whether s is one or more dot-separated labels of
// [a-z0-9-] that start and end with [a-z0-9].
func isDNSSubdomain(s string) bool {
	if s == "" {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// groupHint explains the usual reasons an API group is invalid.
func groupHint(g string) string {
	switch {
	case strings.Contains(g, "/"):
		base, _, _ := strings.Cut(g, "/")
		if base == "" || base == "v1" {
			return `the core group is written as group: "" (or left out)`
		}
		return fmt.Sprintf("write the group without its version: group: %s", base)
	case strings.ToLower(g) != g:
		return fmt.Sprintf("API groups are lowercase: group: %s", strings.ToLower(g))
	}
	return ""
}
