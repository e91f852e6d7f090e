// Package policy loads, validates and evaluates Kubernetes audit policies
// (audit.k8s.io/v1 Policy) with exactly the decisions the kube-apiserver
// makes (k8s.io/apiserver/pkg/audit/policy), which a differential test
// against that package proves.
//
// Loading is stricter than the API server: a field the API server would
// silently ignore (a typo such as omitStage) is an error here, reported with
// file:line:column and a suggestion. Evaluation is precompiled: Evaluate
// allocates nothing and says which rule decided.
package policy

import (
	"fmt"

	"github.com/kubetrail/kubetrail/internal/audit"
)

// APIVersion is the only policy apiVersion the API server accepts.
const APIVersion = "audit.k8s.io/v1"

// Policy mirrors audit.k8s.io/v1 Policy. The JSON names are the API's, so
// that json.Marshal of a Policy is a policy file the API server reads.
type Policy struct {
	// APIVersion must be audit.k8s.io/v1.
	APIVersion string `json:"apiVersion"`
	// Kind must be Policy.
	Kind string `json:"kind"`
	// Name is metadata.name; the API server ignores it.
	Name string `json:"-"`
	// Rules decide the level of a request: the first rule that matches wins,
	// and a request no rule matches is not logged (level None).
	Rules []Rule `json:"rules"`
	// OmitStages lists stages no event is written for, for every request;
	// a rule's own omitStages are added to these.
	OmitStages []audit.Stage `json:"omitStages,omitempty"`
	// OmitManagedFields drops metadata.managedFields from logged request and
	// response bodies, unless the matching rule says otherwise.
	OmitManagedFields bool `json:"omitManagedFields,omitempty"`

	// File is where the policy was loaded from; empty when built in code.
	File string `json:"-"`
	// Pos is where the document starts.
	Pos Pos `json:"-"`
	// pos maps field paths (rules[2].level) to where their value was written.
	pos map[string]Pos
}

// Rule mirrors audit.k8s.io/v1 PolicyRule. An empty list matches everything
// in its dimension.
type Rule struct {
	// Level is the level a matching request is logged at.
	Level audit.Level `json:"level"`
	// Users are authenticated user names; a request without user information
	// never matches a rule that lists users.
	Users []string `json:"users,omitempty"`
	// UserGroups match when the user is in any of them; a request without
	// user information never matches a rule that lists groups.
	UserGroups []string `json:"userGroups,omitempty"`
	// Verbs are compared literally: "*" matches only the verb "*".
	Verbs []string `json:"verbs,omitempty"`
	// Resources restricts the rule to resource requests for these resources.
	Resources []GroupResources `json:"resources,omitempty"`
	// Namespaces restricts the rule to resource requests in these
	// namespaces; "" is a cluster-scoped request.
	Namespaces []string `json:"namespaces,omitempty"`
	// NonResourceURLs restricts the rule to non-resource requests with these
	// paths; a trailing "*" matches any path with that prefix.
	NonResourceURLs []string `json:"nonResourceURLs,omitempty"`
	// OmitStages are added to the policy's OmitStages for this rule.
	OmitStages []audit.Stage `json:"omitStages,omitempty"`
	// OmitManagedFields, when set, overrides the policy's OmitManagedFields.
	OmitManagedFields *bool `json:"omitManagedFields,omitempty"`

	// Pos is where the rule starts in its file (its "- " list item).
	Pos Pos `json:"-"`
}

// GroupResources mirrors audit.k8s.io/v1 GroupResources.
type GroupResources struct {
	// Group is the API group; "" is the core group only, "*" any group.
	Group string `json:"group,omitempty"`
	// Resources are resource patterns: "pods", "pods/log", "pods/*" (pods
	// and all its subresources), "*/status", "*".
	Resources []string `json:"resources,omitempty"`
	// ResourceNames restricts the match to objects with these names;
	// requests without a name (list, create, watch of a collection) never
	// match unless "" is listed.
	ResourceNames []string `json:"resourceNames,omitempty"`
}

// Pos is a place in a policy file. Line and Column are 1-based; zero means
// unknown.
type Pos struct {
	Line, Column int
}

// String formats p as LINE:COLUMN, LINE, or "" when unknown.
func (p Pos) String() string {
	switch {
	case p.Line == 0:
		return ""
	case p.Column == 0:
		return fmt.Sprint(p.Line)
	}
	return fmt.Sprintf("%d:%d", p.Line, p.Column)
}

// PosOf returns where the value at a field path such as "rules[2].level"
// was written, falling back to the closest enclosing field that was; ok is
// false when the policy was not loaded from a file.
func (p *Policy) PosOf(path string) (pos Pos, ok bool) {
	for {
		if pos, ok := p.pos[path]; ok {
			return pos, true
		}
		if path == "" {
			return p.Pos, p.Pos.Line > 0
		}
		path = parentPath(path)
	}
}

// parentPath strips the last element of a field path: rules[2].level ->
// rules[2] -> rules -> "".
func parentPath(path string) string {
	for i := len(path) - 1; i >= 0; i-- {
		switch path[i] {
		case '.':
			return path[:i]
		case '[':
			return path[:i]
		}
	}
	return ""
}

// stageOrder lists every audit stage in the order of a request's life; it
// is the order of Decision.OmitStages for a matched rule.
var stageOrder = [...]audit.Stage{
	audit.StageRequestReceived,
	audit.StageResponseStarted,
	audit.StageResponseComplete,
	audit.StagePanic,
}

// levels lists the valid levels, least detail first.
var levels = [...]audit.Level{
	audit.LevelNone,
	audit.LevelMetadata,
	audit.LevelRequest,
	audit.LevelRequestResponse,
}
