// Package sigma compiles Sigma rules (logsource product: kubernetes,
// service: audit) into a rules.Evaluator, so that SigmaHQ's
// kubernetes/audit rules and a team's own run unchanged
// (docs/detection.md, "Sigma rules").
//
// Matching follows the Sigma specification (2.0): a search identifier is
// a map (its items ANDed) or a list of maps (ORed) or of keywords; a list
// of values is ORed unless |all; strings match case-insensitively with the
// * and ? wildcards and backslash escapes; |re is case-sensitive unless
// (?i) or |i. Where the specification leaves the choice to the backend,
// this package decides as fields.go and value.go say: arrays in a path
// match when one element does, a rule's number compares as a number and a
// rule's string as text, null matches a missing field.
//
// A rule that reads a field no audit event has, or a value its field can
// never hold, still loads (a warning says so, and the rule can never match
// there); syntax errors, unknown modifiers, bad conditions and invalid
// regular expressions are errors, and nothing from their file loads.
package sigma

import (
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/kubetrail/kubetrail/internal/audit"
	"github.com/kubetrail/kubetrail/internal/rules"
)

// Meta is what a Sigma rule says about itself beyond rules.RuleInfo.
type Meta struct {
	Title  string
	ID     string
	Status string
	// Level is the level as written ("" when the rule has none, and the
	// severity is then medium).
	Level          string
	FalsePositives []string
	// Fields are the event fields the rule suggests showing with an alert.
	Fields []string
}

type rule struct {
	info rules.RuleInfo
	meta Meta
	cond expr
}

// Ruleset is a compiled set of Sigma rules. It is immutable and safe for
// concurrent use.
type Ruleset struct {
	rules []*rule
}

var _ rules.Evaluator = (*Ruleset)(nil)

// Load compiles Sigma rule files, in order. A file with an error adds no
// rule; the problems (errors and warnings, with file:line:col) are every
// one found, file by file. A file may hold several YAML documents: each is
// a rule, except Sigma collections' action: global (laid under every rule
// after it), reset and repeat.
func Load(files ...rules.File) (*Ruleset, []rules.Problem) {
	rs := &Ruleset{}
	var probs []rules.Problem
	for _, f := range files {
		rs2, p := loadFile(f)
		rs.rules = append(rs.rules, rs2...)
		probs = append(probs, p...)
	}
	return rs, probs
}

// LooksLikeSigma reports whether a rule file is written in Sigma: its
// first YAML document is a map with a detection (or a Sigma 2 correlation
// or filter, which Load refuses by name), or a collection's action.
// It is how the engine tells Sigma files from Falco's lists of rules and
// kubetrail's own rules.
func LooksLikeSigma(data []byte) bool {
	c := &compiler{}
	docs := c.documents(data)
	if len(docs) == 0 || docs[0].Kind != yaml.MappingNode {
		return false
	}
	for _, key := range []string{"detection", "correlation", "filter"} {
		if k, _ := lookup(docs[0], key); k != nil {
			return true
		}
	}
	_, v := lookup(docs[0], "action")
	return v != nil && (v.Value == "global" || v.Value == "reset" || v.Value == "repeat")
}

// Rules describes the rules, in order.
func (rs *Ruleset) Rules() []rules.RuleInfo {
	out := make([]rules.RuleInfo, len(rs.rules))
	for i, r := range rs.rules {
		out[i] = r.info
		out[i].Tags = slices.Clone(r.info.Tags)
	}
	return out
}

// Meta returns the Sigma attributes of the rules, in the order of Rules.
func (rs *Ruleset) Meta() []Meta {
	out := make([]Meta, len(rs.rules))
	for i, r := range rs.rules {
		out[i] = r.meta
		out[i].FalsePositives = slices.Clone(r.meta.FalsePositives)
		out[i].Fields = slices.Clone(r.meta.Fields)
	}
	return out
}

// Eval returns one alert per rule that matches e, in rule order.
func (rs *Ruleset) Eval(e *rules.Event) []rules.Alert {
	if e == nil || e.Ev == nil || len(rs.rules) == 0 {
		return nil
	}
	st := &state{e: e}
	var out []rules.Alert
	for _, r := range rs.rules {
		if r.cond.eval(st) {
			out = append(out, r.alert(e))
		}
	}
	return out
}

// alert is the alert r raises for e. Its message is the title, then what
// the event did: who (and as whom), the verb, the object, the response
// code ("Kubernetes Secrets Enumeration: alice list secrets in prod
// (200)"); the rule's description is in Rules, not repeated per alert.
func (r *rule) alert(e *rules.Event) rules.Alert {
	ev := e.Ev
	a := rules.Alert{
		Rule:     r.info.Name,
		Severity: r.info.Severity,
		Source:   rules.SourceSigma,
		AuditIDs: []string{ev.AuditID},
		User:     ev.User.Username,
		Message:  r.info.Name + ": " + Summary(ev),
		Time:     ev.Time().UTC(),
		Tags:     slices.Clone(r.info.Tags),
		Cluster:  e.Cluster,
	}
	if ev.ImpersonatedUser != nil {
		a.ImpersonatedUser = ev.ImpersonatedUser.Username
	}
	if ev.ObjectRef != nil {
		a.Namespace = ev.ObjectRef.Namespace
	}
	return a
}

// Summary says in one line what an audit event did: "alice as bob create
// pods/exec prod/web-1 (101)".
func Summary(ev *audit.Event) string {
	var b strings.Builder
	who := ev.User.Username
	if who == "" {
		who = "(unauthenticated)"
	}
	b.WriteString(who)
	if ev.ImpersonatedUser != nil && ev.ImpersonatedUser.Username != "" {
		b.WriteString(" as ")
		b.WriteString(ev.ImpersonatedUser.Username)
	}
	b.WriteByte(' ')
	b.WriteString(ev.Verb)
	b.WriteByte(' ')
	if o := ev.ObjectRef; o != nil && o.Resource != "" {
		b.WriteString(o.Resource)
		if o.Subresource != "" {
			b.WriteByte('/')
			b.WriteString(o.Subresource)
		}
		switch {
		case o.Name != "" && o.Namespace != "":
			b.WriteString(" " + o.Namespace + "/" + o.Name)
		case o.Name != "":
			b.WriteString(" " + o.Name)
		case o.Namespace != "":
			b.WriteString(" in " + o.Namespace)
		}
	} else {
		b.WriteString(ev.RequestURI)
	}
	if ev.ResponseStatus != nil && ev.ResponseStatus.Code != 0 {
		b.WriteString(" (" + strconv.Itoa(int(ev.ResponseStatus.Code)) + ")")
	}
	return b.String()
}
