package investigate

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// RBACQuery asks who created, changed or deleted roles, role bindings,
// cluster roles and cluster role bindings.
type RBACQuery struct {
	// AllStages reports every event instead of one row per request.
	AllStages bool
	Scope
}

// RBACChange is one write to an RBAC object, with what its body says.
type RBACChange struct {
	*Request
	// Kind is Role, RoleBinding, ClusterRole or ClusterRoleBinding.
	Kind string `json:"kind"`
	// RoleRef is a binding's role as Kind/name ("ClusterRole/cluster-admin").
	RoleRef string `json:"roleRef,omitempty"`
	// Subjects are a binding's subjects: User/alice, Group/dev,
	// ServiceAccount/namespace/name.
	Subjects []string `json:"subjects,omitempty"`
	// Rules counts a role's rules.
	Rules int `json:"rules,omitempty"`
	// Aggregated is set for a ClusterRole with an aggregationRule: its
	// rules are those of the roles it selects, filled in by the
	// aggregation controller, not written in the body.
	Aggregated bool `json:"aggregated,omitempty"`
	// Flags name what deserves a look: "cluster-admin" (a binding to the
	// cluster-admin ClusterRole), "wildcard" (a rule with "*" verbs or
	// resources), "grants escalate|bind|impersonate" (verbs that let a
	// holder gain more rights), "aggregate-to-NAME" (a ClusterRole whose
	// rules the aggregation controller adds to ClusterRole NAME, such as
	// the built-in admin, edit and view that many users hold).
	Flags []string `json:"flags,omitempty"`
	// Body says which body of the event these came from: responseObject,
	// requestObject, or empty when the event carried none.
	Body string `json:"body,omitempty"`

	// rulesKnown says whether Rules counts the role's rules: false for a
	// merge patch that sets none (a label, say).
	rulesKnown bool
}

// RBACReport answers an RBACQuery in time order.
type RBACReport struct {
	Changes []*RBACChange
	// NoBody counts the changes whose event carried no body (logged at
	// Metadata level), so that their role reference and rules are unknown.
	NoBody int
	// Hidden counts the rows of the control plane left out (see
	// Scope.IncludeSystem).
	Hidden    int
	allStages bool
}

var rbacKinds = map[string]string{
	"roles": "Role", "rolebindings": "RoleBinding", "clusterroles": "ClusterRole", "clusterrolebindings": "ClusterRoleBinding",
}

// RBAC finds the writes to RBAC objects.
func RBAC(r Source, q RBACQuery) (*RBACReport, error) {
	base := and(eq("apigroup", "rbac.authorization.k8s.io"),
		in("resource", "roles", "rolebindings", "clusterroles", "clusterrolebindings"),
		in("verb", writeVerbs...))
	reqs, hidden, err := collect(r, q.Scope, base, q.AllStages, true)
	if err != nil {
		return nil, err
	}
	rep := &RBACReport{Hidden: hidden, allStages: q.AllStages}
	for _, rq := range lastN(reqs, q.Limit) {
		c := &RBACChange{Request: rq, Kind: rbacKinds[rq.Resource]}
		c.read()
		if c.Body == "" && (rq.Level == "Metadata" || rq.Level == "None") {
			rep.NoBody++
		}
		rep.Changes = append(rep.Changes, c)
	}
	return rep, nil
}

// rbacBody holds the parts of a Role, ClusterRole, RoleBinding or
// ClusterRoleBinding (or a merge patch of one) that the report shows.
type rbacBody struct {
	Kind     string `json:"kind"`
	Metadata struct {
		Labels map[string]string `json:"labels"`
	} `json:"metadata"`
	AggregationRule *struct {
		ClusterRoleSelectors []json.RawMessage `json:"clusterRoleSelectors"`
	} `json:"aggregationRule"`
	RoleRef  *rbacRoleRef  `json:"roleRef"`
	Subjects []rbacSubject `json:"subjects"`
	Rules    []rbacRule    `json:"rules"`
}

type rbacRoleRef struct {
	Kind string `json:"kind"`
	Name string `json:"name"`
}

type rbacSubject struct {
	Kind      string `json:"kind"`
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
}

type rbacRule struct {
	Verbs     []string `json:"verbs"`
	Resources []string `json:"resources"`
	APIGroups []string `json:"apiGroups"`
}

// jsonPatchBody reads a JSON patch (RFC 6902, kubectl patch --type=json):
// what its add and replace operations put in roleRef, subjects, rules and
// the metadata labels, as a body holding only those. ok is false when raw
// is not a JSON patch.
func jsonPatchBody(raw []byte) (b rbacBody, ok bool) {
	var ops []struct {
		Op    string          `json:"op"`
		Path  string          `json:"path"`
		Value json.RawMessage `json:"value"`
	}
	if json.Unmarshal(raw, &ops) != nil {
		return b, false
	}
	for _, op := range ops {
		if op.Op != "add" && op.Op != "replace" {
			continue
		}
		// A path's segments escape '/' as ~1 and '~' as ~0.
		path := strings.NewReplacer("~1", "/", "~0", "~").Replace(op.Path)
		switch {
		case path == "/roleRef":
			json.Unmarshal(op.Value, &b.RoleRef)
		case path == "/subjects":
			var all []rbacSubject
			json.Unmarshal(op.Value, &all)
			b.Subjects = append(b.Subjects, all...)
		case strings.HasPrefix(path, "/subjects/"):
			var one rbacSubject
			if json.Unmarshal(op.Value, &one) == nil {
				b.Subjects = append(b.Subjects, one)
			}
		case path == "/rules":
			var all []rbacRule
			json.Unmarshal(op.Value, &all)
			b.Rules = append(b.Rules, all...)
		case strings.HasPrefix(path, "/rules/"):
			var one rbacRule
			if json.Unmarshal(op.Value, &one) == nil {
				b.Rules = append(b.Rules, one)
			}
		case path == "/metadata/labels":
			json.Unmarshal(op.Value, &b.Metadata.Labels)
		case strings.HasPrefix(path, "/metadata/labels/"):
			var v string
			if json.Unmarshal(op.Value, &v) == nil {
				if b.Metadata.Labels == nil {
					b.Metadata.Labels = map[string]string{}
				}
				b.Metadata.Labels[strings.TrimPrefix(path, "/metadata/labels/")] = v
			}
		}
	}
	return b, true
}

// read fills the change from the first body that is the object: the
// response (the object as stored), else the request (the object sent, or
// the merge patch, or what a JSON patch adds).
func (c *RBACChange) read() {
	for _, src := range []struct {
		name string
		raw  []byte
	}{{"responseObject", c.responseObject}, {"requestObject", c.requestObject}} {
		if len(src.raw) == 0 {
			continue
		}
		var b rbacBody
		patch := false
		if json.Unmarshal(src.raw, &b) != nil {
			// Not an object: a JSON patch is all the log holds of a
			// change made with one at level Request.
			if b, patch = jsonPatchBody(src.raw); !patch {
				continue
			}
		}
		aggregates := aggregateTo(b.Metadata.Labels)
		if !patch && (b.Kind == "Status" || strings.HasSuffix(b.Kind, "Options") ||
			(b.RoleRef == nil && b.Subjects == nil && b.Rules == nil && b.AggregationRule == nil && aggregates == nil)) {
			continue
		}
		c.rulesKnown = !patch && (b.Rules != nil || b.Kind != "")
		c.Aggregated = b.AggregationRule != nil
		c.Body = src.name
		if b.RoleRef != nil {
			c.RoleRef = b.RoleRef.Kind + "/" + b.RoleRef.Name
			if b.RoleRef.Kind == "ClusterRole" && b.RoleRef.Name == "cluster-admin" {
				c.Flags = append(c.Flags, "cluster-admin")
			}
		}
		for _, s := range b.Subjects {
			name := s.Name
			if s.Namespace != "" {
				name = s.Namespace + "/" + name
			}
			c.Subjects = append(c.Subjects, s.Kind+"/"+name)
		}
		if c.rulesKnown {
			c.Rules = len(b.Rules)
		}
		wildcard := false
		var grants []string
		for _, r := range b.Rules {
			wildcard = wildcard || slices.Contains(r.Verbs, "*") || slices.Contains(r.Resources, "*")
			for _, v := range []string{"escalate", "bind", "impersonate"} {
				if slices.Contains(r.Verbs, v) && !slices.Contains(grants, v) {
					grants = append(grants, v)
				}
			}
		}
		if wildcard {
			c.Flags = append(c.Flags, "wildcard")
		}
		if len(grants) > 0 {
			c.Flags = append(c.Flags, "grants "+strings.Join(grants, "|"))
		}
		c.Flags = append(c.Flags, aggregates...)
		return
	}
}

// aggregateTo names, as "aggregate-to-NAME" in order, the ClusterRoles
// that the labels rbac.authorization.k8s.io/aggregate-to-NAME: "true"
// add a role's rules to: the built-in admin, edit and view select their
// parts by these labels.
func aggregateTo(labels map[string]string) []string {
	var out []string
	for k, v := range labels {
		if name, ok := strings.CutPrefix(k, "rbac.authorization.k8s.io/aggregate-to-"); ok && name != "" && v == "true" {
			out = append(out, "aggregate-to-"+name)
		}
	}
	slices.Sort(out)
	return out
}

// Records returns the changes.
func (x *RBACReport) Records() []any { return records(x.Changes) }

// Table lists the changes with their role reference, subjects and flags.
func (x *RBACReport) Table(wide bool) *Table {
	t := &Table{
		Head:  []string{"RECEIVED", "USER", "AS", "VERB", "KIND", "NAMESPACE", "NAME", "ROLE REF", "SUBJECTS", "RESULT", "FLAGS"},
		Empty: "no changes to roles, role bindings, cluster roles or cluster role bindings",
	}
	if wide {
		t.Head = append(t.Head, "RULES", "SOURCE IPS", "USER AGENT", "STAGE", "AUDIT ID")
	}
	users := counter{}
	flagged := 0
	for _, c := range x.Changes {
		subjects := strings.Join(c.Subjects, ",")
		if !wide && len(c.Subjects) > 3 {
			subjects = strings.Join(c.Subjects[:3], ",") + fmt.Sprintf(",+%d more", len(c.Subjects)-3)
		}
		flags := ""
		if len(c.Flags) > 0 {
			flags = "! " + strings.Join(c.Flags, ",")
			flagged++
		}
		cells := []string{fmtTime(c.Time), userOrNone(c.User), c.As, c.Verb, c.Kind, c.Namespace, c.Name, c.RoleRef, subjects, c.result(), flags}
		if wide {
			rules := ""
			if (c.Kind == "Role" || c.Kind == "ClusterRole") && c.rulesKnown {
				rules = strconv.Itoa(c.Rules)
			}
			cells = append(cells, rules, fmtIPs(c.SourceIPs), c.UserAgent, c.Stage, c.AuditID)
		}
		t.Rows = append(t.Rows, Row{Cells: cells})
		users[userOrNone(c.User)]++
	}
	if len(x.Changes) > 0 {
		what := nRows(len(x.Changes), "change", x.allStages)
		t.Notes = append(t.Notes, fmt.Sprintf("%s by %s; %d flagged", what, fmtCounts(users, 5, ", "), flagged))
	}
	if x.NoBody > 0 {
		t.Notes = append(t.Notes, fmt.Sprintf("%s carried no body (logged at Metadata level): their role reference, subjects and rules are not in the log. Log RBAC writes at Request level or above.", nRows(x.NoBody, "change", false)))
	}
	t.Notes = append(t.Notes, hiddenNote(x.Hidden, x.allStages)...)
	return t
}
