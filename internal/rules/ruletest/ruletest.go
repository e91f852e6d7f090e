// Package ruletest runs unit tests of detection rules, as `promtool test
// rules` does for Prometheus: a YAML fixture names rule files, gives
// audit events, and says which alerts they must raise (`kubetrail rules
// test`, docs/detection.md "Testing your rules").
//
//	rules: [my-rules.yaml, builtin]   # relative to the fixture; builtin: the built-in pack
//	tests:
//	- name: exec over WebSocket
//	  events: |                       # JSON lines; or events_file: a path
//	    {"kind":"Event",...}
//	  alerts:
//	  - rule: Exec into production
//	    severity: high                # optional
//	    auditIDs: [a-1]               # optional: the alert's, in order
//	    count: 1                      # optional, default 1; 0: must not fire
//
// A test checks only the rules its alerts name: every alert those rules
// raise must be expected, and every expected alert must be raised.
package ruletest

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	"go.yaml.in/yaml/v3"

	"github.com/kubetrail/kubetrail/internal/audit"
	"github.com/kubetrail/kubetrail/internal/rules"
	"github.com/kubetrail/kubetrail/internal/rules/engine"
)

// Builtin is the entry of `rules` that stands for the built-in pack.
const Builtin = "builtin"

// Failure is one mismatch between the alerts a test expects and those
// its events raise, at the line of the fixture that states the
// expectation.
type Failure struct {
	File string
	Line int
	Test string
	Msg  string
}

func (f Failure) String() string {
	return fmt.Sprintf("%s:%d: test %q: %s", f.File, f.Line, f.Test, f.Msg)
}

// Report is the outcome of one fixture file.
type Report struct {
	File     string
	Tests    int
	Failures []Failure
	// Failed counts the tests with at least one failure.
	Failed int
}

// RunFile reads the fixture at path and runs its tests. An error means
// the fixture could not be run at all (it, a rule file or an events file
// is invalid): FILE:LINE: error: ..., one problem per line.
func RunFile(path string) (*Report, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Run(path, data)
}

// Run runs the fixture data, read from name; paths in it are relative to
// name's folder.
func Run(name string, data []byte) (*Report, error) {
	fx, err := parse(name, data)
	if err != nil {
		return nil, err
	}
	files, _, err := engine.ReadPaths(fx.ruleFiles) // warnings, like the files' own, do not stop a test
	if err != nil {
		return nil, fmt.Errorf("%s:%d: error: %w", name, fx.rulesLine, err)
	}
	opts := engine.Options{Builtin: fx.builtin}
	// Load once to report the rule files' errors and learn the rules'
	// names; each test loads again, so that thresholds and sequences
	// start empty.
	eng, probs := engine.Load(files, opts)
	var errs []string
	for _, p := range probs {
		if !p.Warning {
			errs = append(errs, p.String())
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%s", strings.Join(errs, "\n"))
	}
	known := map[string]bool{}
	for _, r := range eng.Rules() {
		known[r.Name] = true
	}
	rep := &Report{File: name, Tests: len(fx.tests)}
	for _, tc := range fx.tests {
		for _, x := range tc.expect {
			if !known[x.rule] {
				return nil, fmt.Errorf("%s:%d:%d: error: test %q: no loaded rule is named %q", name, x.line, x.col, tc.name, x.rule)
			}
		}
		eng, _ := engine.Load(files, opts)
		var got []rules.Alert
		for _, e := range tc.events {
			got = append(got, eng.Eval(e)...)
		}
		fails := compare(name, tc, got)
		rep.Failures = append(rep.Failures, fails...)
		if len(fails) > 0 {
			rep.Failed++
		}
	}
	return rep, nil
}

// fixture is a parsed fixture file.
type fixture struct {
	ruleFiles []string
	rulesLine int
	builtin   bool
	tests     []testCase
}

type testCase struct {
	name   string
	line   int
	events []*rules.Event
	expect []expected
}

// expected is one entry of a test's alerts.
type expected struct {
	line     int
	col      int
	rule     string
	severity *rules.Severity
	auditIDs []string // nil: any
	count    int
}

func (x expected) String() string {
	s := fmt.Sprintf("%d alert", x.count)
	if x.count != 1 {
		s += "s"
	}
	if x.severity != nil {
		s += " of severity " + x.severity.String()
	}
	if x.auditIDs != nil {
		s += " with auditIDs [" + strings.Join(x.auditIDs, " ") + "]"
	}
	return s
}

func (x expected) matches(a rules.Alert) bool {
	return a.Rule == x.rule && (x.severity == nil || *x.severity == a.Severity) &&
		(x.auditIDs == nil || slices.Equal(x.auditIDs, a.AuditIDs))
}

// compare matches the alerts of the rules tc names against its
// expectations, in the order they are written: each expectation takes the
// first alerts it matches that no earlier one took.
func compare(file string, tc testCase, got []rules.Alert) []Failure {
	var out []Failure
	taken := make([]bool, len(got))
	fail := func(line int, format string, args ...any) {
		out = append(out, Failure{File: file, Line: line, Test: tc.name, Msg: fmt.Sprintf(format, args...)})
	}
	firstLine := map[string]int{}
	for _, x := range tc.expect {
		if _, ok := firstLine[x.rule]; !ok {
			firstLine[x.rule] = x.line
		}
		n := 0
		for i, a := range got {
			if n < x.count && !taken[i] && x.matches(a) {
				taken[i] = true
				n++
			}
		}
		if n < x.count {
			fail(x.line, "rule %q: want %s, got %d%s", x.rule, x, n, others(got, taken, x.rule))
		}
	}
	// Alerts of the named rules that no expectation took.
	for _, rule := range sortedKeys(firstLine) {
		var extra []string
		for i, a := range got {
			if a.Rule == rule && !taken[i] {
				extra = append(extra, describe(a))
			}
		}
		if len(extra) > 0 {
			fail(firstLine[rule], "rule %q: %d unexpected alert(s): %s", rule, len(extra), strings.Join(extra, "; "))
		}
	}
	slices.SortStableFunc(out, func(a, b Failure) int { return a.Line - b.Line })
	return out
}

// others describes the alerts of rule that are not taken, to say what
// was raised instead.
func others(got []rules.Alert, taken []bool, rule string) string {
	var s []string
	for i, a := range got {
		if a.Rule == rule && !taken[i] {
			s = append(s, describe(a))
		}
	}
	if len(s) == 0 {
		return ""
	}
	return "; raised instead: " + strings.Join(s, "; ")
}

func describe(a rules.Alert) string {
	return fmt.Sprintf("severity %s, auditIDs [%s]", a.Severity, strings.Join(a.AuditIDs, " "))
}

func sortedKeys(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b string) int { return m[a] - m[b] })
	return keys
}

// yamlLine finds the line a YAML syntax error names.
var yamlLine = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`\bline (\d+)`) })

// parser reads a fixture's YAML, keeping the first error with its line.
type parser struct {
	name string
	dir  string
	err  error
}

func (p *parser) errorf(n *yaml.Node, format string, args ...any) {
	if p.err == nil {
		p.err = fmt.Errorf("%s:%d:%d: error: %s", p.name, n.Line, n.Column, fmt.Sprintf(format, args...))
	}
}

func parse(name string, data []byte) (*fixture, error) {
	p := &parser{name: name, dir: filepath.Dir(name)}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		if m := yamlLine().FindStringSubmatch(err.Error()); m != nil {
			return nil, fmt.Errorf("%s:%s: error: %s", name, m[1], strings.TrimPrefix(err.Error(), "yaml: "))
		}
		return nil, fmt.Errorf("%s: error: %w", name, err)
	}
	if len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%s: error: a rule test file is a mapping with rules and tests (docs/detection.md, \"Testing your rules\")", name)
	}
	root := doc.Content[0]
	fx := &fixture{builtin: true, rulesLine: root.Line}
	p.fields(root, map[string]func(*yaml.Node){
		"rules": func(v *yaml.Node) { p.rules(fx, v) },
		"tests": func(v *yaml.Node) {
			if v.Kind != yaml.SequenceNode {
				p.errorf(v, "tests: want a list of tests")
				return
			}
			for _, item := range v.Content {
				fx.tests = append(fx.tests, p.test(item))
			}
		},
	})
	if p.err == nil && len(fx.tests) == 0 {
		p.errorf(root, "no tests")
	}
	if p.err != nil {
		return nil, p.err
	}
	return fx, nil
}

// fields calls each key's handler, reporting unknown keys and keys
// written twice (YAML forbids it, and the parser of a yaml.Node keeps
// both: one of them would be lost or merged without a word).
func (p *parser) fields(m *yaml.Node, handlers map[string]func(*yaml.Node)) {
	if m.Kind != yaml.MappingNode {
		p.errorf(m, "want a mapping")
		return
	}
	var known []string
	for k := range handlers {
		known = append(known, k)
	}
	slices.Sort(known)
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		if first, dup := seen[k.Value]; dup {
			p.errorf(k, "key %q written twice (first at line %d)", k.Value, first.Line)
			continue
		}
		seen[k.Value] = k
		h, ok := handlers[k.Value]
		if !ok {
			p.errorf(k, "unknown key %q (want one of %s)", k.Value, strings.Join(known, ", "))
			continue
		}
		h(v)
	}
}

func (p *parser) rules(fx *fixture, v *yaml.Node) {
	fx.rulesLine, fx.builtin = v.Line, false
	if v.Kind != yaml.SequenceNode || len(v.Content) == 0 {
		p.errorf(v, "rules: want a list of rule files or folders (or %s, the built-in pack)", Builtin)
		return
	}
	for _, item := range v.Content {
		switch {
		case item.Kind != yaml.ScalarNode || item.Value == "":
			p.errorf(item, "rules: want a path")
		case item.Value == Builtin:
			fx.builtin = true
		default:
			fx.ruleFiles = append(fx.ruleFiles, p.path(item.Value))
		}
	}
}

// path resolves a path of the fixture against its folder.
func (p *parser) path(s string) string {
	if filepath.IsAbs(s) {
		return s
	}
	return filepath.Join(p.dir, s)
}

func (p *parser) test(item *yaml.Node) testCase {
	tc := testCase{line: item.Line}
	var events *yaml.Node
	var eventsFile *yaml.Node
	p.fields(item, map[string]func(*yaml.Node){
		"name":        func(v *yaml.Node) { tc.name = v.Value },
		"events":      func(v *yaml.Node) { events = v },
		"events_file": func(v *yaml.Node) { eventsFile = v },
		"alerts": func(v *yaml.Node) {
			if v.Kind != yaml.SequenceNode {
				p.errorf(v, "alerts: want a list of expected alerts ([] for none)")
				return
			}
			for _, a := range v.Content {
				tc.expect = append(tc.expect, p.expected(a))
			}
		},
	})
	if tc.name == "" {
		tc.name = "#" + strconv.Itoa(item.Line)
	}
	switch {
	case events != nil && eventsFile != nil:
		p.errorf(eventsFile, "test %q: events and events_file: give one", tc.name)
	case events != nil:
		// A block scalar's text starts on the line after its indicator.
		first := events.Line
		if events.Style&(yaml.LiteralStyle|yaml.FoldedStyle) != 0 {
			first++
		}
		tc.events = p.decode(events, p.name, []byte(events.Value), first-1)
	case eventsFile != nil:
		path := p.path(eventsFile.Value)
		data, err := os.ReadFile(path)
		if err != nil {
			p.errorf(eventsFile, "test %q: %v", tc.name, err)
			break
		}
		tc.events = p.decode(eventsFile, path, data, 0)
	default:
		p.errorf(item, "test %q: no events (events: JSON lines, or events_file: a path)", tc.name)
	}
	return tc
}

// decode reads audit events; offset is added to the line numbers of their
// problems (the events' first line in source, less one).
func (p *parser) decode(n *yaml.Node, source string, data []byte, offset int) []*rules.Event {
	var evs []*rules.Event
	audit.NewDecoder(audit.Limits{}).DecodeBody(source, data, func(r audit.Record) {
		ev := r.Event
		evs = append(evs, &rules.Event{Ev: &ev, Raw: r.Raw, Cluster: "default"})
	}, func(pr audit.Problem) {
		if p.err != nil {
			return
		}
		switch {
		case source != p.name && pr.Line == 0:
			p.err = fmt.Errorf("%s: error: %s", source, pr.Reason)
		case source != p.name:
			p.err = fmt.Errorf("%s:%d: error: %s", source, pr.Line, pr.Reason)
		case pr.Line > 0:
			p.err = fmt.Errorf("%s:%d: error: %s", source, pr.Line+offset, pr.Reason)
		default:
			p.err = fmt.Errorf("%s:%d: error: %s", source, n.Line, pr.Reason)
		}
	})
	if p.err == nil && len(evs) == 0 {
		p.errorf(n, "no audit event in %s", source)
	}
	return evs
}

func (p *parser) expected(n *yaml.Node) expected {
	x := expected{line: n.Line, col: n.Column, count: 1}
	p.fields(n, map[string]func(*yaml.Node){
		"rule": func(v *yaml.Node) { x.rule = v.Value },
		"severity": func(v *yaml.Node) {
			s, err := rules.ParseSeverity(v.Value)
			if err != nil {
				p.errorf(v, "%v", err)
			}
			x.severity = &s
		},
		"auditIDs": func(v *yaml.Node) {
			if v.Kind != yaml.SequenceNode {
				p.errorf(v, "auditIDs: want a list")
				return
			}
			x.auditIDs = []string{}
			for _, id := range v.Content {
				x.auditIDs = append(x.auditIDs, id.Value)
			}
		},
		"count": func(v *yaml.Node) {
			c, err := strconv.Atoi(v.Value)
			if err != nil || c < 0 {
				p.errorf(v, "count: want a number, 0 or more")
			}
			x.count = c
		},
	})
	if x.rule == "" {
		p.errorf(n, "an expected alert names its rule")
	}
	return x
}
