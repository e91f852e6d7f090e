package native

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/kubetrail/kubetrail/internal/query"
	"github.com/kubetrail/kubetrail/internal/rules"
	"github.com/kubetrail/kubetrail/internal/suggest"
)

// Load reads rule files in order. Each entry of a file is a rule, or,
// when it has a name and no condition, threshold or sequence, a change to
// a rule loaded before it (from this file, an earlier one, or base): its
// enabled, severity, except and tags replace or extend the rule's. A file
// with an error is left out whole, with its problems (FILE:LINE:COL); the
// evaluator holds base's rules and those of every file that loaded.
func Load(base []*Rule, files ...rules.File) (*Evaluator, []rules.Problem) {
	ruleset := cloneRules(base)
	var problems []rules.Problem
	for _, f := range files {
		next, probs := loadFile(cloneRules(ruleset), f)
		problems = append(problems, probs...)
		if !hasError(probs) {
			ruleset = next
		}
	}
	return newEvaluator(ruleset), problems
}

func hasError(ps []rules.Problem) bool {
	for _, p := range ps {
		if !p.Warning {
			return true
		}
	}
	return false
}

// cloneRules copies the rules so that a change from a file that fails to
// load touches nothing.
func cloneRules(rs []*Rule) []*Rule {
	out := make([]*Rule, len(rs))
	for i, r := range rs {
		c := *r
		c.Except = append([]*query.Filter(nil), r.Except...)
		c.Tags = append([]string(nil), r.Tags...)
		out[i] = &c
	}
	return out
}

// loader collects one file's problems.
type loader struct {
	file     string
	problems []rules.Problem
}

func (l *loader) errorf(n *yaml.Node, format string, args ...any) {
	p := rules.Problem{File: l.file, Msg: fmt.Sprintf(format, args...)}
	if n != nil {
		p.Line, p.Col = n.Line, n.Column
	}
	l.problems = append(l.problems, p)
}

// ruleKeys are the keys a rule may have.
var ruleKeys = []string{"name", "severity", "description", "condition", "except", "threshold", "sequence", "once", "tags", "enabled"}

func loadFile(ruleset []*Rule, f rules.File) ([]*Rule, []rules.Problem) {
	l := &loader{file: f.Name}
	var doc yaml.Node
	if err := yaml.Unmarshal(f.Data, &doc); err != nil {
		p := rules.Problem{File: f.Name, Msg: "not YAML: " + err.Error()}
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			p.Line = yamlErrLine(err.Error())
		}
		return ruleset, []rules.Problem{p}
	}
	if len(doc.Content) == 0 {
		return ruleset, nil
	}
	top := doc.Content[0]
	if top.Kind != yaml.SequenceNode {
		l.errorf(top, "a kubetrail rule file is a list of rules (- name: ...)")
		return ruleset, l.problems
	}
	names := map[string]int{}
	for i, r := range ruleset {
		names[r.Name] = i
	}
	for _, item := range top.Content {
		if item.Kind != yaml.MappingNode {
			l.errorf(item, "a rule is a mapping with name, severity, condition...")
			continue
		}
		for i := 0; i < len(item.Content); i += 2 {
			k := item.Content[i]
			if !contains(ruleKeys, k.Value) {
				l.errorf(k, "unknown key %q in a rule%s; a rule has %s", k.Value, suggestKey(k.Value, ruleKeys), strings.Join(ruleKeys, ", "))
			}
			// YAML decoding into a node keeps both; mapValue would
			// read the first and the second would do nothing.
			for j := 0; j < i; j += 2 {
				if item.Content[j].Value == k.Value {
					l.errorf(k, "key %q appears twice in a rule", k.Value)
				}
			}
		}
		nameNode := mapValue(item, "name")
		if nameNode == nil || strings.TrimSpace(nameNode.Value) == "" {
			l.errorf(item, "a rule needs a name")
			continue
		}
		name := nameNode.Value
		isChange := mapValue(item, "condition") == nil && mapValue(item, "threshold") == nil && mapValue(item, "sequence") == nil
		if isChange {
			i, ok := names[name]
			if !ok {
				l.errorf(nameNode, "no rule named %q to change (a rule needs a condition or a sequence; a change names a rule loaded before it)", name)
				continue
			}
			l.change(ruleset[i], item)
			continue
		}
		if _, dup := names[name]; dup {
			l.errorf(nameNode, "a rule named %q is already loaded; to change it, give only its name and what changes (enabled, severity, except, tags)", name)
			continue
		}
		r := l.rule(item, name)
		if r == nil {
			continue
		}
		names[name] = len(ruleset)
		ruleset = append(ruleset, r)
	}
	return ruleset, l.problems
}

// rule compiles a new rule; nil when it has errors (reported).
func (l *loader) rule(item *yaml.Node, name string) *Rule {
	before := len(l.problems)
	r := &Rule{Name: name, Severity: rules.Medium, Enabled: true, File: l.file, Line: item.Line}
	l.common(r, item)
	if n := mapValue(item, "description"); n != nil {
		r.Description = strings.TrimSpace(n.Value)
	}
	cond, seq := mapValue(item, "condition"), mapValue(item, "sequence")
	switch {
	case cond != nil && seq != nil:
		l.errorf(seq, "a rule has a condition or a sequence, not both")
	case seq != nil:
		r.Sequence = l.sequence(seq)
		if mapValue(item, "threshold") != nil {
			l.errorf(mapValue(item, "threshold"), "a sequence cannot have a threshold")
		}
	case cond != nil:
		r.Condition = l.filter(cond)
		if t := mapValue(item, "threshold"); t != nil {
			r.Threshold = l.threshold(t)
		}
	default:
		l.errorf(item, "rule %q needs a condition or a sequence", name)
	}
	if n := mapValue(item, "once"); n != nil {
		switch {
		case n.Value != "request":
			l.errorf(n, "once %q: the one choice is request (fire once per request, at its first matching stage)", n.Value)
		case r.Threshold != nil || r.Sequence != nil:
			l.errorf(n, "once applies to single-event rules, not thresholds or sequences")
		default:
			r.OncePerRequest = true
		}
	}
	if len(l.problems) > before && hasError(l.problems[before:]) {
		return nil
	}
	return r
}

// change applies a change entry to an already loaded rule.
func (l *loader) change(r *Rule, item *yaml.Node) {
	if n := mapValue(item, "description"); n != nil {
		l.errorf(n, "a change to rule %q cannot set its description", r.Name)
	}
	if n := mapValue(item, "once"); n != nil {
		l.errorf(n, "a change to rule %q cannot set once (it may set enabled, severity, except and tags)", r.Name)
	}
	l.common(r, item)
}

// common reads what a rule and a change to one both have.
func (l *loader) common(r *Rule, item *yaml.Node) {
	if n := mapValue(item, "severity"); n != nil {
		s, err := rules.ParseSeverity(n.Value)
		if err != nil {
			l.errorf(n, "%v", err)
		}
		r.Severity = s
	}
	if n := mapValue(item, "enabled"); n != nil {
		b, err := strconv.ParseBool(n.Value)
		if err != nil || n.Kind != yaml.ScalarNode {
			l.errorf(n, "enabled %q: want true or false", n.Value)
		}
		r.Enabled = b
	}
	if n := mapValue(item, "tags"); n != nil {
		if n.Kind != yaml.SequenceNode {
			l.errorf(n, "tags: want a list")
		} else {
			for _, t := range n.Content {
				if !contains(r.Tags, t.Value) {
					r.Tags = append(r.Tags, t.Value)
				}
			}
		}
	}
	if n := mapValue(item, "except"); n != nil {
		nodes := []*yaml.Node{n}
		if n.Kind == yaml.SequenceNode {
			nodes = n.Content
		}
		for _, x := range nodes {
			if f := l.filter(x); f != nil {
				r.Except = append(r.Except, f)
			}
		}
	}
}

// filter compiles a condition in the filter language, reporting an error
// at its line and column in the file.
func (l *loader) filter(n *yaml.Node) *query.Filter {
	if n.Kind != yaml.ScalarNode || strings.TrimSpace(n.Value) == "" {
		l.errorf(n, "a condition is a filter (docs/query.md), such as: verb=delete resource=secrets")
		return nil
	}
	f, err := query.Compile(n.Value)
	if err != nil {
		var qe *query.Error
		p := rules.Problem{File: l.file, Line: n.Line, Col: n.Column, Msg: "condition: " + err.Error()}
		if errors.As(err, &qe) {
			p.Msg = "condition: " + qe.Msg
			switch {
			case n.Style == 0 && !strings.Contains(n.Value, "\n"):
				p.Col = n.Column + qe.Col - 1
			case (n.Style == yaml.DoubleQuotedStyle || n.Style == yaml.SingleQuotedStyle) && !strings.Contains(n.Value, "\n"):
				p.Col = n.Column + qe.Col // after the quote (exact when nothing is escaped)
			case n.Style == yaml.LiteralStyle:
				p.Line, p.Col = n.Line+qe.Line, 0 // the text starts on the next line
			}
		}
		l.problems = append(l.problems, p)
		return nil
	}
	return f
}

func (l *loader) duration(n *yaml.Node, what string) time.Duration {
	if n == nil {
		return 0
	}
	v := strings.TrimSpace(n.Value)
	mult := time.Duration(1)
	if strings.HasSuffix(v, "d") {
		v, mult = strings.TrimSuffix(v, "d")+"h", 24
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		l.errorf(n, "%s %q: want a duration such as 30s, 5m, 1h or 1d", what, n.Value)
		return 0
	}
	return d * mult
}

var thresholdKeys = []string{"count", "window", "by"}

func (l *loader) threshold(n *yaml.Node) *Threshold {
	if n.Kind != yaml.MappingNode {
		l.errorf(n, "threshold: want count, window and by")
		return nil
	}
	l.keys(n, "threshold", thresholdKeys)
	t := &Threshold{}
	c := mapValue(n, "count")
	if c == nil {
		l.errorf(n, "threshold needs a count")
	} else if v, err := strconv.Atoi(c.Value); err != nil || v < 1 {
		l.errorf(c, "count %q: want a whole number of at least 1", c.Value)
	} else {
		t.Count = v
	}
	if w := mapValue(n, "window"); w == nil {
		l.errorf(n, "threshold needs a window")
	} else {
		t.Window = l.duration(w, "window")
	}
	if by := mapValue(n, "by"); by != nil {
		nodes := []*yaml.Node{by}
		if by.Kind == yaml.SequenceNode {
			nodes = by.Content
		}
		for _, b := range nodes {
			k, err := parseKey(b.Value)
			if err != nil {
				l.errorf(b, "by: %v", err)
				continue
			}
			t.By = append(t.By, k)
		}
	}
	return t
}

var sequenceKeys = []string{"within", "by", "steps"}

func (l *loader) sequence(n *yaml.Node) *Sequence {
	if n.Kind != yaml.MappingNode {
		l.errorf(n, "sequence: want within, by and steps")
		return nil
	}
	l.keys(n, "sequence", sequenceKeys)
	s := &Sequence{Within: l.duration(mapValue(n, "within"), "within")}
	if mapValue(n, "within") == nil {
		l.errorf(n, "a sequence needs within (the longest time from its first step to its last)")
	}
	var by Key
	if b := mapValue(n, "by"); b != nil {
		k, err := parseKey(b.Value)
		if err != nil {
			l.errorf(b, "by: %v", err)
		}
		by = k
	}
	steps := mapValue(n, "steps")
	if steps == nil || steps.Kind != yaml.SequenceNode || len(steps.Content) < 2 {
		l.errorf(n, "a sequence needs steps: a list of at least two conditions")
		return s
	}
	for _, st := range steps.Content {
		step := Step{By: by}
		cond := st
		if st.Kind == yaml.MappingNode {
			l.keys(st, "step", []string{"condition", "by"})
			cond = mapValue(st, "condition")
			if cond == nil {
				l.errorf(st, "a step needs a condition")
				continue
			}
			if b := mapValue(st, "by"); b != nil {
				k, err := parseKey(b.Value)
				if err != nil {
					l.errorf(b, "by: %v", err)
				}
				step.By = k
			}
		}
		if step.By.Name == "" {
			l.errorf(st, "a step needs a key to group by: give the sequence a by, or the step one")
		}
		step.Condition = l.filter(cond)
		s.Steps = append(s.Steps, step)
	}
	return s
}

func (l *loader) keys(n *yaml.Node, what string, allowed []string) {
	for i := 0; i < len(n.Content); i += 2 {
		k := n.Content[i]
		if !contains(allowed, k.Value) {
			l.errorf(k, "unknown key %q in %s%s; want %s", k.Value, what, suggestKey(k.Value, allowed), strings.Join(allowed, ", "))
		}
		for j := 0; j < i; j += 2 {
			if n.Content[j].Value == k.Value {
				l.errorf(k, "key %q appears twice in %s", k.Value, what)
			}
		}
	}
}

// mapValue returns the value of key in a mapping node, or nil.
func mapValue(m *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// suggestKey returns ` (did you mean "X"?)` for a close key.
func suggestKey(s string, candidates []string) string {
	if c := suggest.Closest(s, candidates); c != "" {
		return fmt.Sprintf(" (did you mean %q?)", c)
	}
	return ""
}

// yamlErrLine finds "line N" in a YAML syntax error.
func yamlErrLine(msg string) int {
	if i := strings.Index(msg, "line "); i >= 0 {
		n := 0
		for _, c := range msg[i+5:] {
			if c < '0' || c > '9' {
				break
			}
			n = n*10 + int(c-'0')
		}
		return n
	}
	return 0
}

// unmarshalLoose decodes JSON, ignoring what it does not know.
func unmarshalLoose(raw []byte, v any) error { return json.Unmarshal(raw, v) }
