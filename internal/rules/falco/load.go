package falco

import (
	"bytes"
	"fmt"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// This file reads Falco rule files (a YAML sequence of rule, macro, list,
// required_engine_version and required_plugin_versions items) and merges
// each item into the rule set as Falco's loader does: a new name defines,
// a known name redefines, and append: true or override: {key:
// append|replace} changes an earlier definition.

// loadError is a problem at a position of a rule file.
type loadError struct {
	file      string
	line, col int
	msg       string
}

func errAt(file string, n *yaml.Node, format string, args ...any) *loadError {
	e := &loadError{file: file, msg: fmt.Sprintf(format, args...)}
	if n != nil {
		e.line, e.col = n.Line, n.Column
	}
	return e
}

// srcText is a piece of condition or output text and where it is written.
type srcText struct {
	s    string
	file string
	node *yaml.Node
	data []byte
}

// texts are pieces joined with a space: a definition and its appends.
type texts []srcText

func (t texts) join() string {
	parts := make([]string, len(t))
	for i, p := range t {
		parts[i] = p.s
	}
	return strings.Join(parts, " ")
}

// errAtOffset places an error at byte off of the joined text.
func (t texts) errAtOffset(off int, msg string) *loadError {
	for _, p := range t {
		if off <= len(p.s) {
			line, col := p.locate(off)
			return &loadError{file: p.file, line: line, col: col, msg: msg}
		}
		off -= len(p.s) + 1
	}
	last := t[len(t)-1]
	line, col := last.locate(len(last.s))
	return &loadError{file: last.file, line: line, col: col, msg: msg}
}

// locate finds the file position of byte off of the scalar's value. YAML
// may fold lines, indent or quote the text, so the value is matched
// against the file's bytes from where the scalar starts, character by
// character, skipping what YAML dropped.
func (t srcText) locate(off int) (line, col int) {
	n := t.node
	line, col = n.Line, n.Column
	if len(t.data) == 0 {
		return line, col
	}
	if n.Style&(yaml.LiteralStyle|yaml.FoldedStyle) == 0 && !strings.ContainsAny(t.s[:min(off, len(t.s))], "\n\\") && n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) == 0 {
		// A plain scalar on one line: the common case, exactly.
		if j := lineStart(t.data, n.Line); j >= 0 && !bytes.ContainsRune(t.data[j+n.Column-1:min(len(t.data), j+n.Column-1+off)], '\n') {
			return line, col + off
		}
	}
	j := lineStart(t.data, n.Line)
	if j < 0 {
		return line, col
	}
	j += n.Column - 1
	if n.Style&(yaml.LiteralStyle|yaml.FoldedStyle) != 0 {
		for j < len(t.data) && t.data[j] != '\n' {
			j++
		}
	} else if n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) != 0 {
		j++
	}
	for k := 0; k < off && k < len(t.s) && j < len(t.data); k++ {
		c := t.s[k]
		if isBlank(c) {
			continue
		}
		for j < len(t.data) && t.data[j] != c {
			j++
		}
		j++
	}
	for j < len(t.data) && isBlank(t.data[j]) {
		j++
	}
	return posOf(t.data, j)
}

func lineStart(data []byte, line int) int {
	j := 0
	for l := 1; l < line; l++ {
		i := bytes.IndexByte(data[j:], '\n')
		if i < 0 {
			return -1
		}
		j += i + 1
	}
	return j
}

func posOf(data []byte, j int) (line, col int) {
	j = min(j, len(data))
	line = 1 + bytes.Count(data[:j], []byte{'\n'})
	col = j - (bytes.LastIndexByte(data[:j], '\n') + 1) + 1
	return line, col
}

type listDef struct {
	name  string
	items []string
	file  string
	node  *yaml.Node
	order
}

type macroDef struct {
	name string
	cond texts
	file string
	node *yaml.Node
	order
}

// order is where a list or macro stands among the lists and macros loaded
// (all files, in order), as Falco's loader counts them: index is where
// it was first defined, visibility where it was last defined, appended
// to or overridden. A list's items and a macro's condition see only the
// lists (macros) whose index is below their visibility: Falco reads a
// list item naming a list defined after it as a plain string, and refuses
// a macro that uses a macro defined after it.
type order struct {
	index, visibility int
}

type ruleDef struct {
	name       string
	desc       string
	cond       texts
	output     texts
	priority   string
	source     string
	tags       []string
	enabled    bool
	skipUnk    bool
	exceptions []*exceptionDef
	file       string
	node       *yaml.Node
}

// exceptionDef is one of a rule's exceptions. With a single field (fields
// written as a string) each value is one item; otherwise each value is a
// tuple with one entry per field.
type exceptionDef struct {
	name   string
	fields []string
	single bool
	comps  []string
	// compsList: comps was written as a list (Falco refuses it with a
	// single field).
	compsList bool
	values    [][]excEntry
	file      string
	node      *yaml.Node
}

// excEntry is one entry of an exception value: a string, or a list of
// strings (for in, intersects and pmatch).
type excEntry struct {
	s      string
	list   []string
	isList bool
	node   *yaml.Node
}

// ruleset is what the loaded files define, in definition order.
type ruleset struct {
	lists  map[string]*listDef
	macros map[string]*macroDef
	rules  map[string]*ruleDef
	order  []string
	// next is the order of the next list or macro item (see order).
	next int
}

func newRuleset() *ruleset {
	return &ruleset{lists: map[string]*listDef{}, macros: map[string]*macroDef{}, rules: map[string]*ruleDef{}}
}

// clone copies the set deeply enough that merging a file into the copy
// leaves the original as it was.
func (r *ruleset) clone() *ruleset {
	c := newRuleset()
	for k, v := range r.lists {
		cp := *v
		cp.items = slices.Clone(v.items)
		c.lists[k] = &cp
	}
	for k, v := range r.macros {
		cp := *v
		cp.cond = slices.Clone(v.cond)
		c.macros[k] = &cp
	}
	for k, v := range r.rules {
		cp := *v
		cp.cond = slices.Clone(v.cond)
		cp.output = slices.Clone(v.output)
		cp.tags = slices.Clone(v.tags)
		cp.exceptions = make([]*exceptionDef, len(v.exceptions))
		for i, e := range v.exceptions {
			ce := *e
			ce.values = slices.Clone(e.values)
			cp.exceptions[i] = &ce
		}
		c.rules[k] = &cp
	}
	c.order = slices.Clone(r.order)
	c.next = r.next
	return c
}

// define returns the order of a list or macro item being loaded now: a
// new visibility, and the index of prev (its earlier definition), or a new
// one without it.
func (r *ruleset) define(prev *order) order {
	o := order{index: r.next, visibility: r.next}
	if prev != nil {
		o.index = prev.index
	}
	r.next++
	return o
}

func (d *listDef) orderOf() *order {
	if d == nil {
		return nil
	}
	return &d.order
}

func (d *macroDef) orderOf() *order {
	if d == nil {
		return nil
	}
	return &d.order
}

// fileLoader merges one file's items into a rule set.
type fileLoader struct {
	file string
	data []byte
	rs   *ruleset
	errs []*loadError
	// skipped counts rules of other sources defined in this file.
	skipped map[string]int
}

func (l *fileLoader) errorf(n *yaml.Node, format string, args ...any) {
	l.errs = append(l.errs, errAt(l.file, n, format, args...))
}

// itemKinds are the keys that say what an item is.
var itemKinds = []string{"rule", "macro", "list", "required_engine_version", "required_plugin_versions"}

// load merges every item of the file, collecting every problem it finds.
func (l *fileLoader) load() {
	var doc yaml.Node
	if err := yaml.Unmarshal(l.data, &doc); err != nil {
		l.errs = append(l.errs, yamlError(l.file, err))
		return
	}
	if len(doc.Content) == 0 {
		return
	}
	top := doc.Content[0]
	if top.Kind == yaml.ScalarNode && top.Tag == "!!null" {
		return
	}
	if top.Kind != yaml.SequenceNode {
		l.errorf(top, "a Falco rule file must be a list of rule, macro and list items")
		return
	}
	for _, item := range top.Content {
		l.item(item)
	}
}

// yamlError turns a YAML syntax error into a positioned problem.
func yamlError(file string, err error) *loadError {
	msg := err.Error()
	msg = strings.TrimPrefix(msg, "yaml: ")
	e := &loadError{file: file, msg: "invalid YAML: " + msg}
	var line int
	if _, scanErr := fmt.Sscanf(msg, "line %d:", &line); scanErr == nil {
		e.line, e.col = line, 1
		if i := strings.Index(msg, ": "); i >= 0 {
			e.msg = "invalid YAML: " + msg[i+2:]
		}
	}
	return e
}

func (l *fileLoader) item(n *yaml.Node) {
	if n.Kind != yaml.MappingNode {
		l.errorf(n, "expected a rule, macro or list item (a mapping)")
		return
	}
	kind := ""
	for i := 0; i < len(n.Content); i += 2 {
		if k := n.Content[i].Value; slices.Contains(itemKinds, k) {
			if kind != "" {
				l.errorf(n.Content[i], "item has both %q and %q", kind, k)
				return
			}
			kind = k
		}
	}
	switch kind {
	case "rule":
		l.rule(n)
	case "macro":
		l.macro(n)
	case "list":
		l.list(n)
	case "required_engine_version", "required_plugin_versions":
		l.requirement(n, kind)
	default:
		l.errorf(n, "unknown item: expected one of the keys %s", strings.Join(itemKinds, ", "))
	}
}

// fields reads a mapping's keys, reporting unknown and repeated keys.
func (l *fileLoader) fields(n *yaml.Node, allowed ...string) (map[string]*yaml.Node, map[string]*yaml.Node, bool) {
	vals := map[string]*yaml.Node{}
	keys := map[string]*yaml.Node{}
	ok := true
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if !slices.Contains(allowed, k.Value) {
			l.errorf(k, "unknown key %q: expected one of %s", k.Value, strings.Join(allowed, ", "))
			ok = false
			continue
		}
		if _, dup := vals[k.Value]; dup {
			l.errorf(k, "key %q given twice", k.Value)
			ok = false
			continue
		}
		vals[k.Value], keys[k.Value] = v, k
	}
	return vals, keys, ok
}

func (l *fileLoader) str(n *yaml.Node, what string) (string, bool) {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		l.errorf(n, "%s must be a string", what)
		return "", false
	}
	return n.Value, true
}

func (l *fileLoader) boolean(n *yaml.Node, what string) (bool, bool) {
	var b bool
	if n.Kind != yaml.ScalarNode || n.Decode(&b) != nil {
		l.errorf(n, "%s must be true or false", what)
		return false, false
	}
	return b, true
}

func (l *fileLoader) strList(n *yaml.Node, what string) ([]string, bool) {
	if n.Kind != yaml.SequenceNode {
		l.errorf(n, "%s must be a list of strings", what)
		return nil, false
	}
	out := make([]string, 0, len(n.Content))
	for _, c := range n.Content {
		s, ok := l.str(c, what+" item")
		if !ok {
			return nil, false
		}
		out = append(out, s)
	}
	return out, true
}

// override reads override: {key: append|replace}, checking each key may be
// changed that way.
func (l *fileLoader) override(n *yaml.Node, appendable, replaceable []string) (map[string]string, bool) {
	if n.Kind != yaml.MappingNode {
		l.errorf(n, "override must map keys to append or replace")
		return nil, false
	}
	out := map[string]string{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i].Value, n.Content[i+1]
		switch v.Value {
		case "append":
			if !slices.Contains(appendable, k) {
				l.errorf(v, "override: key %q cannot be appended (appendable: %s)", k, strings.Join(appendable, ", "))
				return nil, false
			}
		case "replace":
			if !slices.Contains(replaceable, k) {
				l.errorf(v, "override: key %q cannot be replaced (replaceable: %s)", k, strings.Join(replaceable, ", "))
				return nil, false
			}
		default:
			l.errorf(v, "override: %q must be append or replace, not %q", k, v.Value)
			return nil, false
		}
		out[k] = v.Value
	}
	return out, true
}

// changeMode is how an item changes an earlier definition of its name.
type changeMode struct {
	appendAll bool              // append: true
	override  map[string]string // override: {...}
}

func (m changeMode) define() bool { return !m.appendAll && m.override == nil }

// mode reads append and override, which exclude each other.
func (l *fileLoader) mode(v, k map[string]*yaml.Node, appendable, replaceable []string) (changeMode, bool) {
	var m changeMode
	if a, ok := v["append"]; ok {
		b, ok := l.boolean(a, "append")
		if !ok {
			return m, false
		}
		m.appendAll = b
	}
	if o, ok := v["override"]; ok {
		if m.appendAll {
			l.errorf(k["override"], "append and override cannot be used together")
			return m, false
		}
		ov, ok := l.override(o, appendable, replaceable)
		if !ok {
			return m, false
		}
		// Every overridden key must be given, and nothing else.
		for key := range ov {
			if _, given := v[key]; !given {
				l.errorf(o, "override names %q but the item does not give it", key)
				return m, false
			}
		}
		m.override = ov
	}
	return m, true
}

func (l *fileLoader) list(n *yaml.Node) {
	v, k, ok := l.fields(n, "list", "items", "append", "override")
	if !ok {
		return
	}
	name, ok := l.str(v["list"], "list name")
	if !ok {
		return
	}
	m, ok := l.mode(v, k, []string{"items"}, []string{"items"})
	if !ok {
		return
	}
	itemsNode, has := v["items"]
	if !has {
		l.errorf(n, "list %q has no items", name)
		return
	}
	items, ok := l.strList(itemsNode, "items")
	if !ok {
		return
	}
	old := l.rs.lists[name]
	if m.define() {
		l.rs.lists[name] = &listDef{name: name, items: items, file: l.file, node: v["list"], order: l.rs.define(old.orderOf())}
		return
	}
	if old == nil {
		l.errorf(v["list"], "list %q is appended to or overridden but was not defined before", name)
		return
	}
	old.order = l.rs.define(&old.order)
	if m.appendAll || m.override["items"] == "append" {
		old.items = append(old.items, items...)
	} else {
		old.items = items
	}
}

func (l *fileLoader) macro(n *yaml.Node) {
	v, k, ok := l.fields(n, "macro", "condition", "append", "override")
	if !ok {
		return
	}
	name, ok := l.str(v["macro"], "macro name")
	if !ok {
		return
	}
	m, ok := l.mode(v, k, []string{"condition"}, []string{"condition"})
	if !ok {
		return
	}
	cn, has := v["condition"]
	if !has {
		l.errorf(n, "macro %q has no condition", name)
		return
	}
	cs, ok := l.str(cn, "condition")
	if !ok {
		return
	}
	t := srcText{s: cs, file: l.file, node: cn, data: l.data}
	old := l.rs.macros[name]
	if m.define() {
		l.rs.macros[name] = &macroDef{name: name, cond: texts{t}, file: l.file, node: v["macro"], order: l.rs.define(old.orderOf())}
	} else if old == nil {
		l.errorf(v["macro"], "macro %q is appended to or overridden but was not defined before", name)
		return
	} else if old.order = l.rs.define(&old.order); m.appendAll || m.override["condition"] == "append" {
		old.cond = append(old.cond, t)
	} else {
		old.cond = texts{t}
	}
	// Syntax is checked at once, for every macro; fields and references
	// only when a k8s_audit rule uses the macro, since macros of other
	// sources name fields this engine does not have.
	if _, err := parseCondition(l.rs.macros[name].cond.join()); err != nil {
		se := err.(*syntaxError)
		l.errs = append(l.errs, l.rs.macros[name].cond.errAtOffset(se.at, "macro "+name+": "+se.msg))
	}
}

// ruleKeys are the keys a rule item may have.
var ruleKeys = []string{"rule", "desc", "condition", "output", "priority", "source", "tags", "enabled",
	"exceptions", "append", "override", "warn_evttypes", "skip-if-unknown-filter", "capture", "capture_duration"}

var (
	ruleAppendable  = []string{"condition", "output", "desc", "tags", "exceptions"}
	ruleReplaceable = []string{"condition", "output", "desc", "priority", "tags", "exceptions", "enabled",
		"warn_evttypes", "skip-if-unknown-filter", "capture", "capture_duration", "source"}
)

func (l *fileLoader) rule(n *yaml.Node) {
	v, k, ok := l.fields(n, ruleKeys...)
	if !ok {
		return
	}
	name, ok := l.str(v["rule"], "rule name")
	if !ok {
		return
	}
	m, ok := l.mode(v, k, ruleAppendable, ruleReplaceable)
	if !ok {
		return
	}
	old := l.rs.rules[name]
	// A rule item with only its name and enabled turns an earlier rule on
	// or off (Falco's older way to disable a rule).
	if m.define() && old != nil && len(v) == 2 && v["enabled"] != nil {
		if b, ok := l.boolean(v["enabled"], "enabled"); ok {
			old.enabled = b
		}
		return
	}
	if m.define() {
		l.defineRule(n, name, v)
		return
	}
	if old == nil {
		l.errorf(v["rule"], "rule %q is appended to or overridden but was not defined before", name)
		return
	}
	if m.appendAll {
		for key := range v {
			if key != "rule" && key != "append" && !slices.Contains(ruleAppendable, key) {
				l.errorf(k[key], "rule %q: %q cannot be appended (appendable: %s)", name, key, strings.Join(ruleAppendable, ", "))
				return
			}
		}
	} else {
		for key := range v {
			if key != "rule" && key != "override" && m.override[key] == "" {
				l.errorf(k[key], "rule %q: %q is given but not named in override", name, key)
				return
			}
		}
	}
	l.changeRule(old, v, m)
}

func (l *fileLoader) defineRule(n *yaml.Node, name string, v map[string]*yaml.Node) {
	r := &ruleDef{name: name, enabled: true, source: "syscall", file: l.file, node: v["rule"]}
	for _, req := range []string{"condition", "output", "desc", "priority"} {
		if v[req] == nil {
			l.errorf(n, "rule %q has no %s", name, req)
			return
		}
	}
	if !l.setRuleFields(r, v, nil) {
		return
	}
	if _, known := l.rs.rules[name]; !known {
		l.rs.order = append(l.rs.order, name)
	}
	l.rs.rules[name] = r
	if r.source != sourceK8sAudit {
		l.skipped[r.source]++
	}
}

// changeRule applies an append or override item to an earlier rule.
func (l *fileLoader) changeRule(r *ruleDef, v map[string]*yaml.Node, m changeMode) {
	mode := func(key string) string {
		if m.appendAll {
			return "append"
		}
		return m.override[key]
	}
	l.setRuleFields(r, v, mode)
}

// setRuleFields sets (mode nil or "replace") or appends each given key.
func (l *fileLoader) setRuleFields(r *ruleDef, v map[string]*yaml.Node, mode func(string) string) bool {
	appending := func(key string) bool { return mode != nil && mode(key) == "append" }
	ok := true
	if n := v["condition"]; n != nil {
		s, good := l.str(n, "condition")
		t := srcText{s: s, file: l.file, node: n, data: l.data}
		switch {
		case !good:
			ok = false
		case appending("condition"):
			r.cond = append(r.cond, t)
		default:
			r.cond = texts{t}
		}
	}
	if n := v["output"]; n != nil {
		s, good := l.str(n, "output")
		t := srcText{s: strings.TrimSpace(s), file: l.file, node: n, data: l.data}
		switch {
		case !good:
			ok = false
		case appending("output"):
			r.output = append(r.output, t)
		default:
			r.output = texts{t}
		}
	}
	if n := v["desc"]; n != nil {
		if s, good := l.str(n, "desc"); !good {
			ok = false
		} else if appending("desc") {
			r.desc += " " + s
		} else {
			r.desc = s
		}
	}
	if n := v["priority"]; n != nil {
		s, good := l.str(n, "priority")
		if good {
			if _, known := parsePriority(s); !known {
				l.errorf(n, "priority %q: want one of EMERGENCY, ALERT, CRITICAL, ERROR, WARNING, NOTICE, INFORMATIONAL, DEBUG", s)
				good = false
			}
		}
		ok = ok && good
		r.priority = s
	}
	if n := v["source"]; n != nil {
		s, good := l.str(n, "source")
		ok = ok && good
		r.source = s
	}
	if n := v["tags"]; n != nil {
		tags, good := l.strList(n, "tags")
		ok = ok && good
		if appending("tags") {
			r.tags = append(r.tags, tags...)
		} else {
			r.tags = tags
		}
	}
	if n := v["enabled"]; n != nil {
		b, good := l.boolean(n, "enabled")
		ok = ok && good
		r.enabled = b
	}
	if n := v["skip-if-unknown-filter"]; n != nil {
		b, good := l.boolean(n, "skip-if-unknown-filter")
		ok = ok && good
		r.skipUnk = b
	}
	for _, key := range []string{"warn_evttypes", "capture"} {
		if n := v[key]; n != nil {
			_, good := l.boolean(n, key)
			ok = ok && good
		}
	}
	if n := v["exceptions"]; n != nil {
		excs, good := l.exceptions(n)
		if !good {
			return false
		}
		if appending("exceptions") {
			ok = l.appendExceptions(r, excs) && ok
		} else {
			r.exceptions = excs
		}
	}
	return ok
}

// exceptions reads a rule's exceptions list.
func (l *fileLoader) exceptions(n *yaml.Node) ([]*exceptionDef, bool) {
	if n.Kind != yaml.SequenceNode {
		l.errorf(n, "exceptions must be a list")
		return nil, false
	}
	var out []*exceptionDef
	for _, en := range n.Content {
		if en.Kind != yaml.MappingNode {
			l.errorf(en, "an exception must be a mapping with name, fields, comps and values")
			return nil, false
		}
		v, _, ok := l.fields(en, "name", "fields", "comps", "values")
		if !ok {
			return nil, false
		}
		e := &exceptionDef{file: l.file, node: en}
		if v["name"] == nil {
			l.errorf(en, "exception has no name")
			return nil, false
		}
		if e.name, ok = l.str(v["name"], "exception name"); !ok {
			return nil, false
		}
		if f := v["fields"]; f != nil {
			if f.Kind == yaml.ScalarNode {
				e.fields, e.single = []string{f.Value}, true
			} else if e.fields, ok = l.strList(f, "fields"); !ok {
				return nil, false
			}
		}
		if c := v["comps"]; c != nil {
			if c.Kind == yaml.ScalarNode {
				e.comps = []string{c.Value}
			} else if e.comps, ok = l.strList(c, "comps"); !ok {
				return nil, false
			} else {
				e.compsList = true
			}
		}
		if vals := v["values"]; vals != nil {
			if e.values, ok = l.excValues(vals); !ok {
				return nil, false
			}
		}
		out = append(out, e)
	}
	return out, true
}

// excValues reads an exception's values: each a scalar (single-field
// form) or a tuple whose entries are scalars or lists.
func (l *fileLoader) excValues(n *yaml.Node) ([][]excEntry, bool) {
	if n.Kind != yaml.SequenceNode {
		l.errorf(n, "exception values must be a list")
		return nil, false
	}
	var out [][]excEntry
	for _, vn := range n.Content {
		switch vn.Kind {
		case yaml.ScalarNode:
			out = append(out, []excEntry{{s: vn.Value, node: vn}})
		case yaml.SequenceNode:
			var tuple []excEntry
			for _, en := range vn.Content {
				if en.Kind == yaml.SequenceNode {
					items, ok := l.strList(en, "exception value")
					if !ok {
						return nil, false
					}
					tuple = append(tuple, excEntry{list: items, isList: true, node: en})
					continue
				}
				s, ok := l.str(en, "exception value")
				if !ok {
					return nil, false
				}
				tuple = append(tuple, excEntry{s: s, node: en})
			}
			out = append(out, tuple)
		default:
			l.errorf(vn, "an exception value must be a string or a list")
			return nil, false
		}
	}
	return out, true
}

// appendExceptions adds values to exceptions the rule has by name, and
// adds the others.
func (l *fileLoader) appendExceptions(r *ruleDef, excs []*exceptionDef) bool {
	for _, e := range excs {
		i := slices.IndexFunc(r.exceptions, func(o *exceptionDef) bool { return o.name == e.name })
		if i < 0 {
			r.exceptions = append(r.exceptions, e)
			continue
		}
		if len(e.fields) > 0 || len(e.comps) > 0 {
			l.errorf(e.node, "rule %q: exception %q already exists: an append may only add values", r.name, e.name)
			return false
		}
		old := *r.exceptions[i]
		old.values = append(slices.Clone(old.values), e.values...)
		r.exceptions[i] = &old
	}
	return true
}

func (l *fileLoader) requirement(n *yaml.Node, kind string) {
	v, _, ok := l.fields(n, kind)
	if !ok {
		return
	}
	val := v[kind]
	if kind == "required_engine_version" {
		if val.Kind != yaml.ScalarNode {
			l.errorf(val, "required_engine_version must be a version")
		}
		return
	}
	if val.Kind != yaml.SequenceNode {
		l.errorf(val, "required_plugin_versions must be a list of name and version")
		return
	}
	// kubetrail replaces the k8saudit and json plugins; the versions
	// asked for are only checked for shape.
	for _, p := range val.Content {
		if p.Kind != yaml.MappingNode {
			l.errorf(p, "a required plugin must be a mapping with name and version")
			continue
		}
		l.fields(p, "name", "version", "alternatives")
	}
}
