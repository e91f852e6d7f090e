package sigma

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"go.yaml.in/yaml/v3"

	"github.com/kubetrail/kubetrail/internal/rules"
)

// compiler collects the problems of one file.
type compiler struct {
	file   string
	probs  []rules.Problem
	errors int
}

func (c *compiler) errorf(n *yaml.Node, format string, args ...any) {
	c.errors++
	c.add(n, false, fmt.Sprintf(format, args...))
}

func (c *compiler) warnf(n *yaml.Node, format string, args ...any) {
	c.add(n, true, fmt.Sprintf(format, args...))
}

func (c *compiler) add(n *yaml.Node, warning bool, msg string) {
	p := rules.Problem{File: c.file, Warning: warning, Msg: msg}
	if n != nil {
		p.Line, p.Col = n.Line, n.Column
	}
	c.probs = append(c.probs, p)
}

// yamlLineErr matches go-yaml's syntax errors, "yaml: line 3: did not find
// expected key".
var yamlLineErr = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^yaml: line (\d+): (.*)$`) })

// documents reads every YAML document of a file.
func (c *compiler) documents(data []byte) []*yaml.Node {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var docs []*yaml.Node
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			p := rules.Problem{File: c.file, Msg: "invalid YAML: " + strings.TrimPrefix(err.Error(), "yaml: ")}
			if m := yamlLineErr().FindStringSubmatch(err.Error()); m != nil {
				p.Line, _ = strconv.Atoi(m[1])
				p.Msg = "invalid YAML: " + m[2]
			}
			if strings.Contains(p.Msg, "did not find expected alphabetic or numeric character") {
				p.Msg += " (a bare * starts a YAML alias; quote it: '*')"
			}
			c.errors++
			c.probs = append(c.probs, p)
			return nil
		}
		if len(doc.Content) == 0 {
			continue
		}
		root := deref(doc.Content[0])
		if root.Kind == yaml.ScalarNode && root.ShortTag() == "!!null" {
			continue
		}
		docs = append(docs, root)
	}
}

// deref follows YAML aliases to the node they name.
func deref(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

// lookup returns the key and value nodes of a mapping's key.
func lookup(m *yaml.Node, key string) (k, v *yaml.Node) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i], deref(m.Content[i+1])
		}
	}
	return nil, nil
}

// merge lays over on top of base, as a Sigma rule collection lays each
// rule on its global document: maps merge key by key, anything else in
// over replaces what base had. Neither is modified.
func merge(base, over *yaml.Node) *yaml.Node {
	if base == nil {
		return over
	}
	if base.Kind != yaml.MappingNode || over.Kind != yaml.MappingNode {
		return over
	}
	out := *base
	out.Content = append([]*yaml.Node(nil), base.Content...)
	for i := 0; i+1 < len(over.Content); i += 2 {
		k, v := over.Content[i], deref(over.Content[i+1])
		replaced := false
		for j := 0; j+1 < len(out.Content); j += 2 {
			if out.Content[j].Value == k.Value {
				out.Content[j], out.Content[j+1] = k, merge(deref(out.Content[j+1]), v)
				replaced = true
				break
			}
		}
		if !replaced {
			out.Content = append(out.Content, k, v)
		}
	}
	return &out
}

// without returns m without the given key.
func without(m *yaml.Node, key string) *yaml.Node {
	out := *m
	out.Content = nil
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value != key {
			out.Content = append(out.Content, m.Content[i], m.Content[i+1])
		}
	}
	return &out
}

// loadFile compiles the rules of one file; it returns none when the file
// has an error.
func loadFile(f rules.File) ([]*rule, []rules.Problem) {
	c := &compiler{file: f.Name}
	docs := c.documents(f.Data)
	var out []*rule
	var global, previous *yaml.Node
	for _, doc := range docs {
		if doc.Kind != yaml.MappingNode {
			c.errorf(doc, "a Sigma rule is a map of title, logsource, detection...; this document is a %s", kindName(doc))
			continue
		}
		body := doc
		if k, v := lookup(doc, "action"); k != nil {
			body = without(doc, "action")
			switch v.Value {
			case "global":
				global = merge(global, body)
				continue
			case "reset":
				global = nil
				continue
			case "repeat":
				if previous == nil {
					c.errorf(k, "action: repeat with no rule before it to repeat")
					continue
				}
				body = merge(previous, body)
			default:
				c.errorf(v, "action %s: want global, reset or repeat", strconv.Quote(v.Value))
				continue
			}
		} else {
			body = merge(global, body)
		}
		previous = body
		if r := c.compileRule(body); r != nil {
			out = append(out, r)
		}
	}
	if c.errors > 0 {
		return nil, c.probs
	}
	if len(docs) == 0 {
		c.warnf(nil, "no Sigma rule in the file")
	}
	return out, c.probs
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "list"
	case yaml.ScalarNode:
		return "plain value"
	}
	return "map"
}

// str reads an optional string field.
func (c *compiler) str(m *yaml.Node, key string) (string, *yaml.Node) {
	k, v := lookup(m, key)
	if k == nil {
		return "", nil
	}
	if v.Kind != yaml.ScalarNode || v.ShortTag() == "!!null" {
		c.errorf(v, "%s: want a string", key)
		return "", k
	}
	return v.Value, v
}

// strList reads an optional list of strings (a single string counts as a
// list of one).
func (c *compiler) strList(m *yaml.Node, key string) []string {
	k, v := lookup(m, key)
	if k == nil {
		return nil
	}
	if v.Kind == yaml.ScalarNode && v.ShortTag() != "!!null" {
		return []string{v.Value}
	}
	if v.Kind != yaml.SequenceNode {
		c.errorf(v, "%s: want a list of strings", key)
		return nil
	}
	var out []string
	for _, el := range v.Content {
		el = deref(el)
		if el.Kind != yaml.ScalarNode {
			c.errorf(el, "%s: want a list of strings", key)
			return nil
		}
		out = append(out, el.Value)
	}
	return out
}

// levels maps Sigma's levels to kubetrail's severities.
func level(s string) (rules.Severity, bool) {
	switch s {
	case "informational":
		return rules.Info, true
	case "low":
		return rules.Low, true
	case "medium":
		return rules.Medium, true
	case "high":
		return rules.High, true
	case "critical":
		return rules.Critical, true
	}
	return 0, false
}

// compileRule compiles one rule; nil when it has an error or is for
// another log source.
func (c *compiler) compileRule(m *yaml.Node) *rule {
	before := c.errors
	for i := 0; i+1 < len(m.Content); i += 2 {
		for j := 0; j < i; j += 2 {
			if m.Content[j].Value == m.Content[i].Value {
				c.errorf(m.Content[i], "key %s appears twice", m.Content[i].Value)
			}
		}
	}
	// Sigma 2's other kinds of document: refused by name, rather than as
	// a rule without logsource or detection.
	if k, _ := lookup(m, "correlation"); k != nil {
		c.errorf(k, "correlation rules are not supported; write a kubetrail threshold or sequence rule (docs/detection.md)")
		return nil
	}
	if k, _ := lookup(m, "filter"); k != nil {
		if dk, _ := lookup(m, "detection"); dk == nil {
			c.errorf(k, "Sigma filters (filter:) are not supported; add the condition to the rule, or tune a kubetrail rule with except")
			return nil
		}
	}
	r := &rule{}
	title, tn := c.str(m, "title")
	if tn == nil || strings.TrimSpace(title) == "" {
		c.errorf(m, "title: missing; every Sigma rule has one")
	}
	r.info = rules.RuleInfo{Name: title, Source: rules.SourceSigma, Severity: rules.Medium, Enabled: true, File: c.file, Line: m.Line}
	if tn != nil {
		r.info.Line = tn.Line
	}
	r.meta.Title = title
	r.meta.ID, _ = c.str(m, "id")
	r.meta.Status, _ = c.str(m, "status")
	r.info.Description, _ = c.str(m, "description")
	r.info.Description = strings.TrimSpace(r.info.Description)
	if lv, ln := c.str(m, "level"); ln != nil {
		sev, ok := level(lv)
		if !ok {
			c.errorf(ln, "level %s: want informational, low, medium, high or critical", strconv.Quote(lv))
		}
		r.meta.Level, r.info.Severity = lv, sev
	}
	r.info.Tags = c.strList(m, "tags")
	r.meta.FalsePositives = c.strList(m, "falsepositives")
	r.meta.Fields = c.strList(m, "fields")

	lk, ls := lookup(m, "logsource")
	if lk == nil || ls.Kind != yaml.MappingNode {
		c.errorf(m, "logsource: missing; want product: kubernetes and service: audit")
		return nil
	}
	product, _ := c.str(ls, "product")
	service, _ := c.str(ls, "service")
	if c.errors > before {
		return nil
	}
	if !strings.EqualFold(product, "kubernetes") || !strings.EqualFold(service, "audit") {
		c.warnf(lk, "rule %s is for logsource product: %s, service: %s, not product: kubernetes, service: audit; skipped", strconv.Quote(title), orNone(product), orNone(service))
		return nil
	}

	dk, det := lookup(m, "detection")
	if dk == nil || det.Kind != yaml.MappingNode {
		c.errorf(m, "detection: missing; want search identifiers and a condition")
		return nil
	}
	var searches []*search
	var condKey, condNode *yaml.Node
	for i := 0; i+1 < len(det.Content); i += 2 {
		k, v := det.Content[i], det.Content[i+1]
		switch k.Value {
		case "condition":
			condKey, condNode = k, deref(v)
			continue
		case "timeframe":
			c.warnf(k, "timeframe applies only to aggregations, which kubetrail does not run; ignored")
			continue
		}
		for _, s := range searches {
			if s.name == k.Value {
				c.errorf(k, "search identifier %s is defined twice", k.Value)
			}
		}
		if s := c.compileSearch(k.Value, v); s != nil {
			searches = append(searches, s)
		}
	}
	if condKey == nil {
		c.errorf(dk, "detection: no condition")
		return nil
	}
	if c.errors > before {
		return nil
	}
	var conds []*yaml.Node
	switch condNode.Kind {
	case yaml.ScalarNode:
		conds = []*yaml.Node{condNode}
	case yaml.SequenceNode:
		for _, el := range condNode.Content {
			conds = append(conds, deref(el))
		}
	}
	if len(conds) == 0 {
		c.errorf(condNode, "condition: want a string or a list of strings")
		return nil
	}
	var es orExpr
	for _, cn := range conds {
		if cn.Kind != yaml.ScalarNode {
			c.errorf(cn, "condition: want a string")
			continue
		}
		tree, err := parseCondition(cn.Value)
		var e expr
		if err == nil {
			e, err = link(tree, searches)
		}
		if err != nil {
			c.condError(cn, err)
			continue
		}
		es = append(es, e)
	}
	if c.errors > before {
		return nil
	}
	r.cond = es
	if len(es) == 1 {
		r.cond = es[0]
	}
	switch r.cond.konst() {
	case tvFalse:
		c.warnf(condKey, "rule %s can never match an audit event (see the warnings about its fields); it loads but never fires", strconv.Quote(title))
	case tvTrue:
		c.warnf(condKey, "rule %s matches every audit event (see the warnings about its fields)", strconv.Quote(title))
	}
	return r
}

// condError reports a condition error at its column when the condition is
// written plainly on one line.
func (c *compiler) condError(n *yaml.Node, err error) {
	p := rules.Problem{File: c.file, Line: n.Line, Col: n.Column, Msg: "condition: " + err.Error()}
	var ce *condError
	if errors.As(err, &ce) && n.Style == 0 && !strings.Contains(n.Value, "\n") {
		p.Col += ce.pos
	}
	c.errors++
	c.probs = append(c.probs, p)
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}
