// Package falco loads Falco rule files unchanged and evaluates their
// k8s_audit rules over kubetrail's audit events, as Falco with its k8saudit
// and json plugins would: the same condition language, the same fields
// with the same answers for events that lack them, lists, macros, append
// and override, exceptions, priorities and rendered outputs, and Falco's
// default of one alert per event (rule_matching: first). See
// docs/detection.md, "Falco rules".
package falco

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/kubetrail/kubetrail/internal/audit"
	"github.com/kubetrail/kubetrail/internal/rules"
)

// sourceK8sAudit is the Falco event source of audit events; rules of every
// other source are skipped.
const sourceK8sAudit = "k8s_audit"

// Matching says how many rules may fire for one event.
type Matching int

const (
	// MatchFirst is Falco's default (rule_matching: first): only the
	// first enabled rule, in file order, that matches an event fires.
	MatchFirst Matching = iota
	// MatchAll lets every matching rule fire (rule_matching: all).
	MatchAll
)

// ParseMatching reads Falco's rule_matching setting: first or all.
func ParseMatching(s string) (Matching, error) {
	switch s {
	case "first", "":
		return MatchFirst, nil
	case "all":
		return MatchAll, nil
	}
	return 0, fmt.Errorf("rule_matching %q: want first or all", s)
}

// Options change how rules are evaluated. The zero value is Falco's default.
type Options struct {
	Matching Matching
}

// Evaluator evaluates compiled Falco rules; it is safe for concurrent use.
type Evaluator struct {
	rules    []*compiledRule
	infos    []rules.RuleInfo
	matching Matching
}

var _ rules.Evaluator = (*Evaluator)(nil)

type compiledRule struct {
	name     string
	priority string
	severity rules.Severity
	tags     []string
	m        matcher
	output   []outTok
}

// Load reads Falco rule files in order, each one able to append to or
// override what the earlier ones define. A file with an error is left out
// whole (nothing it defines or changes is kept) and its errors are
// returned with file:line:col; warnings say how many rules of other
// sources each file had (skipped) and which rules skip-if-unknown-filter
// dropped. The Evaluator holds whatever loaded.
func Load(files []rules.File, opts Options) (*Evaluator, []rules.Problem) {
	fields := fieldTable()
	rs := newRuleset()
	var problems []rules.Problem
	for _, f := range files {
		next := rs.clone()
		fl := &fileLoader{file: f.Name, data: f.Data, rs: next, skipped: map[string]int{}}
		fl.load()
		errs := fl.errs
		if len(errs) == 0 {
			_, errs, _ = compileAll(next, fields)
		}
		if len(errs) > 0 {
			for _, e := range errs {
				problems = append(problems, rules.Problem{File: e.file, Line: e.line, Col: e.col, Msg: e.msg})
			}
			continue
		}
		rs = next
		if p, ok := skippedProblem(f.Name, fl.skipped); ok {
			problems = append(problems, p)
		}
	}
	ev, _, warnings := compileAll(rs, fields)
	ev.matching = opts.Matching
	for _, w := range warnings {
		problems = append(problems, rules.Problem{File: w.file, Line: w.line, Col: w.col, Warning: true, Msg: w.msg})
	}
	return ev, problems
}

// skippedProblem is the one line per file saying how many rules of other
// sources it had.
func skippedProblem(file string, skipped map[string]int) (rules.Problem, bool) {
	if len(skipped) == 0 {
		return rules.Problem{}, false
	}
	total := 0
	var parts []string
	for src, n := range skipped {
		total += n
		parts = append(parts, fmt.Sprintf("%s: %d", src, n))
	}
	sort.Strings(parts)
	return rules.Problem{File: file, Warning: true, Msg: fmt.Sprintf(
		"skipped %d rules of other sources than k8s_audit (%s); their lists and macros are loaded", total, strings.Join(parts, ", "))}, true
}

// compileAll compiles every k8s_audit rule of rs.
func compileAll(rs *ruleset, fields map[string]*fieldSpec) (*Evaluator, []*loadError, []*loadError) {
	c := newCompiler(rs, fields)
	ev := &Evaluator{}
	var errs, warns []*loadError
	for _, name := range rs.order {
		r := rs.rules[name]
		if r.source != sourceK8sAudit {
			continue
		}
		cr, err := c.compileRule(r)
		if err != nil {
			le := err.src.errAtOffset(err.at, fmt.Sprintf("rule %q: %s", r.name, err.msg))
			if err.unknown && r.skipUnk {
				le.msg += "; the rule is skipped (skip-if-unknown-filter)"
				warns = append(warns, le)
				continue
			}
			errs = append(errs, le)
			continue
		}
		sev, _ := parsePriority(r.priority)
		ev.infos = append(ev.infos, rules.RuleInfo{
			Name: r.name, Source: rules.SourceFalco, Severity: sev, Description: strings.TrimSpace(r.desc),
			Tags: r.tags, Enabled: r.enabled, File: r.file, Line: r.node.Line,
		})
		if r.enabled {
			ev.rules = append(ev.rules, cr)
		}
	}
	return ev, errs, append(warns, c.warns...)
}

func (c *compiler) compileRule(r *ruleDef) (*compiledRule, *compileError) {
	m, err := c.compileCondition(r.cond)
	if err != nil {
		return nil, err
	}
	if len(r.exceptions) > 0 {
		var excs orM
		for _, e := range r.exceptions {
			em, err := c.compileException(r, e)
			if err != nil {
				return nil, err
			}
			if em != nil {
				excs = append(excs, em)
			}
		}
		if len(excs) > 0 {
			m = andM{m, notM{excs}}
		}
	}
	out, err := c.compileOutput(r.output)
	if err != nil {
		return nil, err
	}
	sev, _ := parsePriority(r.priority)
	return &compiledRule{name: r.name, priority: r.priority, severity: sev, tags: r.tags, m: m, output: out}, nil
}

// compileException builds "f1 c1 v1 and f2 c2 v2 ..." for each value of
// an exception, or'ed; nil when the exception has no values (Falco
// ignores such an exception).
func (c *compiler) compileException(r *ruleDef, e *exceptionDef) (matcher, *compileError) {
	src := texts{{s: "", file: e.file, node: e.node, data: nil}}
	bad := func(format string, args ...any) *compileError {
		return &compileError{src: src, at: 0, msg: fmt.Sprintf("exception %q: ", e.name) + fmt.Sprintf(format, args...)}
	}
	if len(e.fields) == 0 {
		return nil, bad("no fields")
	}
	comps := e.comps
	if len(comps) == 0 {
		def := "="
		if e.single {
			def = "in"
		}
		for range e.fields {
			comps = append(comps, def)
		}
	}
	if len(comps) != len(e.fields) {
		return nil, bad("%d fields but %d comps", len(e.fields), len(comps))
	}
	// Falco builds "field comps (v1, v2, ...)" from a single field, so
	// only the operators that take a list of values are allowed there.
	if e.single && e.compsList {
		return nil, bad("with a single field, comps must be a single string too")
	}
	if e.single && !listOperator(comps[0]) {
		return nil, bad("with a single field, comps must be one of in, pmatch, intersects, not %s", comps[0])
	}
	if len(e.values) == 0 {
		return nil, nil
	}
	var alts orM
	if e.single {
		// fields: f, comps: in, values: [a, b]: one check over every value.
		var vals []litValue
		for _, tuple := range e.values {
			if len(tuple) != 1 || tuple[0].isList {
				return nil, bad("with a single field, values must be strings, not lists (Falco refuses them)")
			}
			vals = append(vals, entryValues(tuple[0])...)
		}
		m, err := c.check(&checkExpr{field: fieldRef{name: e.fields[0], at: 0}, op: comps[0], vals: vals}, src)
		if err != nil {
			return nil, err
		}
		return m, nil
	}
	for _, tuple := range e.values {
		if len(tuple) != len(e.fields) {
			return nil, bad("a value has %d entries for %d fields", len(tuple), len(e.fields))
		}
		var all andM
		for i, en := range tuple {
			if en.isList && !listOperator(comps[i]) {
				return nil, bad("%s: a list of values needs comps in, intersects or pmatch, not %s", e.fields[i], comps[i])
			}
			ce := &checkExpr{field: fieldRef{name: e.fields[i]}, op: comps[i], vals: entryValues(en)}
			if _, ok := opNames[comps[i]]; !ok && comps[i] != "==" {
				return nil, bad("unknown comparison %q", comps[i])
			}
			if comps[i] == "==" {
				ce.op = "="
			}
			if f, ok := splitFieldArg(e.fields[i]); ok {
				ce.field = f
			}
			m, err := c.check(ce, src)
			if err != nil {
				return nil, err
			}
			all = append(all, m)
		}
		alts = append(alts, all)
	}
	return alts, nil
}

// listOperator reports whether op compares with a list of values.
func listOperator(op string) bool {
	return op == "in" || op == "intersects" || op == "pmatch"
}

// entryValues is an exception entry as condition values: a list entry's
// items, or the one string (bare, so a list name expands as in Falco;
// one written with quotes is a quoted string, as in Falco).
func entryValues(en excEntry) []litValue {
	one := func(s string) litValue {
		if v := itemValue(s); v != s {
			return litValue{s: v, quoted: true}
		}
		return litValue{s: s}
	}
	if en.isList {
		out := make([]litValue, len(en.list))
		for i, s := range en.list {
			out[i] = one(s)
		}
		return out
	}
	return []litValue{one(en.s)}
}

// splitFieldArg splits "jevt.value[/x]" into name and argument.
func splitFieldArg(s string) (fieldRef, bool) {
	i := strings.IndexByte(s, '[')
	if i < 0 || !strings.HasSuffix(s, "]") {
		return fieldRef{name: s}, true
	}
	return fieldRef{name: s[:i], arg: s[i+1 : len(s)-1], hasArg: true}, true
}

// parsePriority maps a Falco priority onto a severity (issue 10's table).
func parsePriority(p string) (rules.Severity, bool) {
	switch strings.ToUpper(p) {
	case "EMERGENCY", "ALERT", "CRITICAL":
		return rules.Critical, true
	case "ERROR":
		return rules.High, true
	case "WARNING", "WARN":
		return rules.Medium, true
	case "NOTICE":
		return rules.Low, true
	case "INFORMATIONAL", "INFO", "DEBUG":
		return rules.Info, true
	}
	return rules.Info, false
}

// Rules describes the k8s_audit rules in order, disabled ones included.
func (ev *Evaluator) Rules() []rules.RuleInfo { return ev.infos }

// Eval returns the alerts e raises: with MatchFirst at most one, from the
// first enabled rule in file order that matches.
func (ev *Evaluator) Eval(e *rules.Event) []rules.Alert {
	var ptrs [4]pointerValue
	c := &evalCtx{e: e, ev: e.Ev, pointers: ptrs[:0]}
	if c.ev == nil {
		var decoded audit.Event
		if audit.DecodeStored(e.Raw, &decoded) != nil {
			return nil
		}
		c.ev = &decoded
	}
	var out []rules.Alert
	for _, r := range ev.rules {
		if !r.m.match(c) {
			continue
		}
		out = append(out, r.alert(c))
		if ev.matching == MatchFirst {
			break
		}
	}
	return out
}

func (r *compiledRule) alert(c *evalCtx) rules.Alert {
	msg, fields := render(c, r.output)
	a := rules.Alert{
		Rule: r.name, Severity: r.severity, Source: rules.SourceFalco,
		AuditIDs: []string{c.ev.AuditID}, User: c.ev.User.Username,
		Message: msg, Time: c.ev.Time().UTC(), Priority: r.priority, Tags: r.tags,
		OutputFields: fields, Cluster: c.e.Cluster,
	}
	if c.ev.ImpersonatedUser != nil {
		a.ImpersonatedUser = c.ev.ImpersonatedUser.Username
	}
	if c.ev.ObjectRef != nil {
		a.Namespace = c.ev.ObjectRef.Namespace
	}
	return a
}

// LooksLikeFalco reports whether data is a Falco rule file: a YAML list
// whose items are rules, macros, lists or engine requirements. It lets a
// caller pick the format of a rule file by its contents.
func LooksLikeFalco(data []byte) bool {
	var doc yaml.Node
	if yaml.Unmarshal(data, &doc) != nil || len(doc.Content) == 0 {
		return false
	}
	top := doc.Content[0]
	if top.Kind != yaml.SequenceNode || len(top.Content) == 0 {
		return false
	}
	for _, item := range top.Content {
		if item.Kind != yaml.MappingNode || len(item.Content) == 0 {
			return false
		}
		found := false
		for i := 0; i < len(item.Content); i += 2 {
			for _, k := range itemKinds {
				found = found || item.Content[i].Value == k
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// indentJSON is json.obj: the event indented by two spaces.
func indentJSON(raw []byte) string {
	var b bytes.Buffer
	if json.Indent(&b, raw, "", "  ") != nil {
		return string(raw)
	}
	return b.String()
}
