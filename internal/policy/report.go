package policy

import (
	"errors"
	"fmt"
	"strings"
)

// RequestSpec describes one request as `policy explain` takes it on its
// command line and POST /api/v1/policy/explain in its query: the same
// fields, checked and read the same way by Request.
type RequestSpec struct {
	// User is the authenticated user's name; empty with Unauthenticated.
	User string
	// Groups are the user's groups.
	Groups []string
	// Unauthenticated says the request carries no user information.
	Unauthenticated bool
	// Verb is the verb, or for URL the lowercase HTTP method.
	Verb string
	// Resource is RES, RES/SUB or kubectl's RES.GROUP[/SUB].
	Resource string
	// APIGroup is Resource's group when Resource does not name one.
	APIGroup string
	// Namespace and Name are the object's; both empty for a
	// cluster-scoped collection.
	Namespace, Name string
	// URL is a non-resource URL path such as /healthz.
	URL string
}

// Request checks s and builds the request it describes. Its errors name
// the fields as prefix+name ("--resource" for the command line,
// "resource" for the API's query parameters).
func (s RequestSpec) Request(prefix string) (*Request, error) {
	f := func(name string) string { return prefix + name }
	if (s.Resource == "") == (s.URL == "") {
		return nil, fmt.Errorf("give exactly one of %s and %s", f("resource"), f("url"))
	}
	if (s.User == "") == !s.Unauthenticated {
		return nil, fmt.Errorf("give exactly one of %s and %s", f("user"), f("unauthenticated"))
	}
	if s.Unauthenticated && len(s.Groups) > 0 {
		return nil, fmt.Errorf("%s needs %s", f("group"), f("user"))
	}
	if s.URL != "" && (s.Namespace != "" || s.Name != "" || s.APIGroup != "") {
		if prefix == "--" {
			return nil, errors.New("-n, --name and --api-group apply to --resource, not --url")
		}
		return nil, fmt.Errorf("%s, %s and %s apply to %s, not %s", f("namespace"), f("name"), f("api-group"), f("resource"), f("url"))
	}
	r := &Request{Verb: s.Verb, Namespace: s.Namespace, Name: s.Name, Path: s.URL}
	if !s.Unauthenticated {
		r.User = &UserInfo{Name: s.User, Groups: s.Groups}
	}
	if s.Resource != "" {
		r.ResourceRequest = true
		apiGroup := s.APIGroup
		res, sub, _ := strings.Cut(s.Resource, "/")
		if before, group, ok := strings.Cut(res, "."); ok {
			if apiGroup != "" && apiGroup != group {
				return nil, fmt.Errorf("%s %s names group %s, %s %s", f("resource"), s.Resource, group, f("api-group"), apiGroup)
			}
			res, apiGroup = before, group
		}
		r.Resource, r.Subresource, r.APIGroup = res, sub, apiGroup
		if r.Resource == "" {
			return nil, fmt.Errorf("%s %q: no resource", f("resource"), s.Resource)
		}
	}
	return r, nil
}

// Report is an explanation as fields: what `policy explain -o json|yaml`
// prints and POST /api/v1/policy/explain answers.
type Report struct {
	Request ReportRequest `json:"request" yaml:"request"`
	// Rule is the matching rule's index; -1 when none matched.
	Rule int `json:"rule" yaml:"rule"`
	// RuleLine and RuleText quote the matching rule from the file.
	RuleLine          int          `json:"ruleLine,omitempty" yaml:"ruleLine,omitempty"`
	RuleText          []string     `json:"ruleText,omitempty" yaml:"ruleText,omitempty"`
	Level             string       `json:"level" yaml:"level"`
	OmitStages        []string     `json:"omitStages" yaml:"omitStages"`
	OmitManagedFields bool         `json:"omitManagedFields" yaml:"omitManagedFields"`
	Misses            []ReportMiss `json:"misses" yaml:"misses"`
}

// ReportRequest is the request a Report explains.
type ReportRequest struct {
	User            string   `json:"user,omitempty" yaml:"user,omitempty"`
	Groups          []string `json:"groups,omitempty" yaml:"groups,omitempty"`
	Unauthenticated bool     `json:"unauthenticated,omitempty" yaml:"unauthenticated,omitempty"`
	Verb            string   `json:"verb" yaml:"verb"`
	APIGroup        string   `json:"apiGroup,omitempty" yaml:"apiGroup,omitempty"`
	Resource        string   `json:"resource,omitempty" yaml:"resource,omitempty"`
	Subresource     string   `json:"subresource,omitempty" yaml:"subresource,omitempty"`
	Namespace       string   `json:"namespace,omitempty" yaml:"namespace,omitempty"`
	Name            string   `json:"name,omitempty" yaml:"name,omitempty"`
	URL             string   `json:"url,omitempty" yaml:"url,omitempty"`
}

// ReportMiss is one earlier rule and why it did not match.
type ReportMiss struct {
	Rule      int    `json:"rule" yaml:"rule"`
	Line      int    `json:"line,omitempty" yaml:"line,omitempty"`
	Criterion string `json:"criterion" yaml:"criterion"`
	Reason    string `json:"reason" yaml:"reason"`
}

// NewReport lays out x, the explanation of r, as fields.
func NewReport(r *Request, x *Explanation) *Report {
	d := x.Decision
	out := &Report{Rule: d.Rule, Level: string(d.Level), OmitStages: []string{}, OmitManagedFields: d.OmitManagedFields, Misses: []ReportMiss{}}
	out.Request = ReportRequest{Verb: r.Verb, Namespace: r.Namespace, Name: r.Name, Unauthenticated: r.User == nil}
	if r.User != nil {
		out.Request.User, out.Request.Groups = r.User.Name, r.User.Groups
	}
	if r.ResourceRequest {
		out.Request.APIGroup, out.Request.Resource, out.Request.Subresource = r.APIGroup, r.Resource, r.Subresource
	} else {
		out.Request.URL = r.Path
	}
	for _, st := range d.OmitStages {
		out.OmitStages = append(out.OmitStages, string(st))
	}
	for i, l := range x.Lines {
		if i == 0 {
			out.RuleLine = l.Line
		}
		out.RuleText = append(out.RuleText, l.Text)
	}
	for _, m := range x.Misses {
		out.Misses = append(out.Misses, ReportMiss{Rule: m.Rule, Line: m.Pos.Line, Criterion: m.Criterion, Reason: m.Reason})
	}
	return out
}
