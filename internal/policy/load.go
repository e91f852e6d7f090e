package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/kubetrail/kubetrail/internal/audit"
)

// MaxFileBytes bounds the size of a policy file; real policies are a few
// KiB.
const MaxFileBytes = 8 << 20

// LoadFile reads and validates the policy in the named file. See Load.
func LoadFile(path string) (*Policy, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	return Load(path, data)
}

// LoadFileAsAPIServer reads the named file and loads it as LoadAsAPIServer.
func LoadFileAsAPIServer(path string) (*Policy, ErrorList, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, nil, err
	}
	return LoadAsAPIServer(path, data)
}

// readFile reads a policy file, at most MaxFileBytes+1 bytes (Load
// rejects a larger one with its own message).
func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("policy file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read policy %q: %w", path, err)
	}
	return data, nil
}

// Load decodes an audit.k8s.io/v1 Policy written as YAML or JSON and
// validates it as the API server does. Unlike the API server, which
// ignores fields it does not know, Load rejects them, and it rejects
// values of the wrong type instead of guessing. The error, when not nil,
// is an ErrorList with every problem found, each with the file, line and
// column, in file order. name is used only in messages.
func Load(name string, data []byte) (*Policy, error) {
	p, errs := load(name, data)
	if len(errs) > 0 {
		return nil, errs
	}
	return p, nil
}

// load decodes and validates, returning what it decoded and every problem.
func load(name string, data []byte) (*Policy, ErrorList) {
	if len(data) > MaxFileBytes {
		return nil, ErrorList{{File: name, Msg: fmt.Sprintf("the file is larger than %d bytes; an audit policy is a few KiB", MaxFileBytes)}}
	}
	l := &loader{p: &Policy{File: name, pos: map[string]Pos{}}}
	doc, err := parseDocument(name, data)
	if err != nil {
		return nil, ErrorList{err}
	}
	l.policy(doc)
	// Validate what could be decoded too, so that one run reports every
	// problem, but not again where decoding already failed.
	errs := l.errs
	for _, v := range Validate(l.p) {
		if !l.covers(v.Path) {
			errs = append(errs, v)
		}
	}
	errs.sortByPos()
	return l.p, errs
}

// LoadAsAPIServer loads a policy as the API server would apply it: like
// Load, but a field the API server does not know is left out instead of
// failing the load, as the API server silently does. It returns the policy
// and those ignored fields (each an *Error with Ignored set); err is set,
// and the policy nil, only for problems that would make the API server
// reject the policy (wrong types, invalid values). policy check lints
// what it returns, so a typo cannot hide what the applied policy logs.
func LoadAsAPIServer(name string, data []byte) (p *Policy, ignored ErrorList, err error) {
	p, errs := load(name, data)
	for _, e := range errs {
		if !e.Ignored {
			return nil, nil, errs
		}
	}
	return p, errs, nil
}

// yamlLineErr matches go-yaml's syntax errors, "yaml: line 3: did not find
// expected key".
var yamlLineErr = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^yaml: line (\d+): (.*)$`) })

// parseDocument parses exactly one YAML (or JSON) document.
func parseDocument(name string, data []byte) (*yaml.Node, *Error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, &Error{File: name, Msg: "the file is empty; expected an audit.k8s.io/v1 Policy"}
	}
	if trimmed := bytes.TrimLeft(data, " \t\r\n"); trimmed[0] == '{' {
		// The API server reads a file that starts with '{' as JSON, strictly.
		if err := checkJSON(data); err != nil {
			err.File = name
			return nil, err
		}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &Error{File: name, Msg: "the file holds no YAML document; expected an audit.k8s.io/v1 Policy"}
		}
		return nil, syntaxError(name, err)
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, syntaxError(name, err)
	default:
		return nil, &Error{File: name, Pos: Pos{next.Line, 0}, Msg: "a second YAML document; a policy file must hold exactly one (the API server reads only the first)", Hint: "remove the --- separator and what follows, or split the file"}
	}
	return &doc, nil
}

// checkJSON reports the first syntax error of a JSON document, with its
// line and column.
func checkJSON(data []byte) *Error {
	dec := json.NewDecoder(bytes.NewReader(data))
	var v any
	err := dec.Decode(&v)
	if err == nil {
		if _, err2 := dec.Token(); err2 != io.EOF {
			off := int(dec.InputOffset())
			return &Error{Pos: posAt(data, off), Msg: "invalid JSON: more data after the policy object"}
		}
		return nil
	}
	var se *json.SyntaxError
	off := len(data)
	if errors.As(err, &se) {
		off = int(se.Offset)
	}
	msg := strings.TrimPrefix(err.Error(), "json: ")
	if errors.Is(err, io.ErrUnexpectedEOF) {
		msg = "the document ends too early"
	}
	return &Error{Pos: posAt(data, max(off-1, 0)), Msg: "invalid JSON: " + msg}
}

// posAt converts a byte offset to a line and column.
func posAt(data []byte, off int) Pos {
	off = min(off, len(data))
	line := 1 + bytes.Count(data[:off], []byte("\n"))
	col := off - bytes.LastIndexByte(data[:off], '\n')
	return Pos{line, col}
}

func syntaxError(name string, err error) *Error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	e := &Error{File: name, Msg: "invalid YAML: " + msg}
	if m := yamlLineErr().FindStringSubmatch(err.Error()); m != nil {
		e.Pos.Line, _ = strconv.Atoi(m[1])
		e.Msg = "invalid YAML: " + m[2]
	}
	switch {
	case strings.Contains(msg, "found character that cannot start any token"), strings.Contains(msg, "tab character"):
		e.Hint = "YAML does not allow tabs for indentation; use spaces"
	case strings.Contains(msg, "did not find expected alphabetic or numeric character"):
		e.Hint = `a bare * starts a YAML alias; quote it: "*"`
	}
	return e
}

// The fields of each object, as the API spells them.
var (
	policyFields = []string{"apiVersion", "kind", "metadata", "rules", "omitStages", "omitManagedFields"}
	ruleFields   = []string{"level", "users", "userGroups", "verbs", "resources", "namespaces", "nonResourceURLs", "omitStages", "omitManagedFields"}
	groupFields  = []string{"group", "resources", "resourceNames"}
	metaFields   = []string{"name", "generateName", "namespace", "selfLink", "uid", "resourceVersion", "generation", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "labels", "annotations", "ownerReferences", "finalizers", "managedFields"}
)

// fieldHints explain field names that are not typos of a valid field but
// a different API's vocabulary (RBAC's, mostly).
var fieldHints = map[string]map[string]string{
	"rule": {
		"apiGroups":     "an audit rule has no apiGroups: put group: NAME in each entry under resources",
		"apiGroup":      "an audit rule has no apiGroup: put group: NAME in each entry under resources",
		"group":         "group belongs inside an entry of resources: resources: [{group: apps, resources: [deployments]}]",
		"groups":        "did you mean userGroups?",
		"resourceNames": "resourceNames belongs inside an entry of resources, next to its resources",
		"stages":        "did you mean omitStages?",
		"rules":         "rules cannot be nested; this key is indented too far",
	},
	"group": {
		"apiGroups":  "an audit policy names one API group per entry: group: NAME",
		"apiGroup":   "did you mean group?",
		"verbs":      "verbs belongs to the rule, not to an entry of resources; indent it less",
		"level":      "level belongs to the rule, not to an entry of resources; indent it less",
		"namespaces": "namespaces belongs to the rule, not to an entry of resources; indent it less",
	},
	"policy": {
		"level":      "a rule's field at the top level: put it in an entry of rules",
		"spec":       "a Policy has no spec: rules and omitStages are top-level fields",
		"apiversion": "did you mean apiVersion?",
	},
}

type loader struct {
	p    *Policy
	errs ErrorList
}

// covers reports whether decoding already failed at path or around it.
func (l *loader) covers(path string) bool {
	for _, e := range l.errs {
		if e.Ignored {
			continue
		}
		if e.Path == "" || path == e.Path || strings.HasPrefix(path, e.Path+".") || strings.HasPrefix(path, e.Path+"[") || strings.HasPrefix(e.Path, path+".") || strings.HasPrefix(e.Path, path+"[") {
			return true
		}
	}
	return false
}

func (l *loader) fail(n *yaml.Node, path, msg, hint string) {
	e := &Error{File: l.p.File, Path: path, Msg: msg, Hint: hint}
	if n != nil {
		e.Pos = Pos{n.Line, n.Column}
	}
	l.errs = append(l.errs, e)
}

// deref follows aliases (*name) to the node they point at.
func deref(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 100; i++ {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// kindName describes a node's type for messages.
func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!str":
			return fmt.Sprintf("the string %q", n.Value)
		case "!!int", "!!float":
			return "the number " + n.Value
		case "!!bool":
			return "the boolean " + n.Value
		case "!!null":
			return "null"
		case "!!timestamp":
			return "the timestamp " + n.Value
		}
		return fmt.Sprintf("%s %s", n.ShortTag(), n.Value)
	}
	return "an unexpected node"
}

// fields walks a mapping, reporting unknown and duplicate keys, and calls
// f for each known one.
func (l *loader) fields(n *yaml.Node, path, what string, known []string, f func(key string, k, v *yaml.Node)) {
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := deref(n.Content[i]), deref(n.Content[i+1])
		key := k.Value
		at := joinPath(path, key)
		if k.Kind != yaml.ScalarNode {
			l.fail(k, path, fmt.Sprintf("a key must be a field name, got %s", kindName(k)), "")
			continue
		}
		if k.Value == "<<" && k.ShortTag() == "!!merge" {
			l.fail(k, path, "YAML merge keys (<<) are not supported in a policy file", "write the fields out")
			continue
		}
		if seen[key] {
			l.fail(k, at, fmt.Sprintf("field %q given twice", key), "the API server would use only the last one")
			continue
		}
		seen[key] = true
		if !contains(known, key) {
			hint := fieldHints[what][key]
			if hint == "" {
				hint = didYouMean(key, known)
			}
			if hint == "" {
				hint = "valid fields: " + strings.Join(known, ", ")
			}
			l.fail(k, at, fmt.Sprintf("unknown field %q, which the API server would silently ignore", key), hint)
			l.errs[len(l.errs)-1].Ignored = true
			continue
		}
		f(key, k, v)
	}
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func (l *loader) mark(path string, n *yaml.Node) {
	l.p.pos[path] = Pos{n.Line, n.Column}
}

func (l *loader) policy(doc *yaml.Node) {
	root := doc
	if root.Kind == yaml.DocumentNode && len(root.Content) > 0 {
		root = deref(root.Content[0])
	}
	l.p.Pos = Pos{root.Line, root.Column}
	if root.Kind != yaml.MappingNode {
		l.fail(root, "", fmt.Sprintf("expected an audit.k8s.io/v1 Policy (a mapping with apiVersion, kind and rules), got %s", kindName(root)), "")
		return
	}
	var haveAPIVersion, haveKind, haveRules bool
	l.fields(root, "", "policy", policyFields, func(key string, k, v *yaml.Node) {
		l.mark(key, v)
		switch key {
		case "apiVersion":
			haveAPIVersion = true
			if s, ok := l.str(v, key); ok {
				l.p.APIVersion = s
				l.checkAPIVersion(v, s)
			}
		case "kind":
			haveKind = true
			if s, ok := l.str(v, key); ok {
				l.p.Kind = s
				if s != "Policy" {
					hint := ""
					if strings.EqualFold(s, "Policy") {
						hint = "did you mean Policy?"
					}
					l.fail(v, key, fmt.Sprintf("%q is not an audit policy: want kind: Policy", s), hint)
				}
			}
		case "metadata":
			l.metadata(v)
		case "rules":
			haveRules = true
			l.rules(v)
		case "omitStages":
			l.p.OmitStages = l.stages(v, key)
		case "omitManagedFields":
			l.p.OmitManagedFields, _ = l.boolean(v, key)
		}
	})
	if !haveAPIVersion {
		l.fail(root, "apiVersion", "missing apiVersion", "add apiVersion: "+APIVersion)
	}
	if !haveKind {
		l.fail(root, "kind", "missing kind", "add kind: Policy")
	}
	if !haveRules && haveKind && haveAPIVersion {
		l.fail(root, "rules", "missing: the API server refuses a policy without rules", "add rules: with at least one rule, such as - level: Metadata")
	}
}

func (l *loader) checkAPIVersion(n *yaml.Node, v string) {
	switch v {
	case APIVersion:
	case "audit.k8s.io/v1beta1", "audit.k8s.io/v1alpha1":
		l.fail(n, "apiVersion", fmt.Sprintf("%s was removed in Kubernetes 1.24: the API server reads only %s", v, APIVersion), "change it to "+APIVersion+", where every field of the older versions is valid")
	default:
		hint := ""
		if strings.HasPrefix(strings.ToLower(v), "audit.k8s.io") || v == "v1" || strings.EqualFold(v, "audit/v1") {
			hint = "write apiVersion: " + APIVersion
		}
		l.fail(n, "apiVersion", fmt.Sprintf("%q is not an audit policy version: want %s", v, APIVersion), hint)
	}
}

func (l *loader) metadata(n *yaml.Node) {
	if isNull(n) {
		return
	}
	if n.Kind != yaml.MappingNode {
		l.fail(n, "metadata", fmt.Sprintf("expected a mapping, got %s", kindName(n)), "")
		return
	}
	l.fields(n, "metadata", "metadata", metaFields, func(key string, k, v *yaml.Node) {
		path := "metadata." + key
		l.mark(path, v)
		switch key {
		case "name":
			l.p.Name, _ = l.str(v, path)
		case "namespace", "generateName", "uid", "resourceVersion", "selfLink":
			l.str(v, path)
		case "labels", "annotations":
			l.stringMap(v, path)
		case "finalizers":
			l.strings(v, path)
		case "generation", "deletionGracePeriodSeconds":
			if !isNull(v) && (v.Kind != yaml.ScalarNode || v.ShortTag() != "!!int") {
				l.fail(v, path, fmt.Sprintf("expected an integer, got %s", kindName(v)), "")
			}
		case "creationTimestamp", "deletionTimestamp":
			if !isNull(v) {
				if s, ok := l.timestamp(v, path); ok {
					if _, err := time.Parse(time.RFC3339, s); err != nil {
						l.fail(v, path, fmt.Sprintf("expected an RFC 3339 time such as 2026-01-02T15:04:05Z, got %q", s), "or remove it: the API server ignores it")
					}
				}
			}
		case "ownerReferences", "managedFields":
			if !isNull(v) && !(v.Kind == yaml.SequenceNode && len(v.Content) == 0) {
				l.fail(v, path, "not supported in an audit policy file", "remove it: the API server ignores it")
			}
		}
	})
}

// timestamp reads a time written as a string or a YAML timestamp.
func (l *loader) timestamp(n *yaml.Node, path string) (string, bool) {
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!timestamp" {
		return n.Value, true
	}
	return l.str(n, path)
}

func (l *loader) stringMap(n *yaml.Node, path string) {
	if isNull(n) {
		return
	}
	if n.Kind != yaml.MappingNode {
		l.fail(n, path, fmt.Sprintf("expected a mapping of strings, got %s", kindName(n)), "")
		return
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := deref(n.Content[i]), deref(n.Content[i+1])
		if _, ok := l.str(k, path); ok {
			l.str(v, path+"."+k.Value)
		}
	}
}

func (l *loader) rules(n *yaml.Node) {
	if isNull(n) {
		return
	}
	if n.Kind != yaml.SequenceNode {
		hint := ""
		if n.Kind == yaml.MappingNode {
			hint = `put each rule in a list item, indented under rules and starting with "- ", such as "- level: Metadata"`
		}
		l.fail(n, "rules", fmt.Sprintf("expected a list of rules, got %s", kindName(n)), hint)
		return
	}
	l.p.Rules = make([]Rule, len(n.Content))
	for i, item := range n.Content {
		item = deref(item)
		path := fmt.Sprintf("rules[%d]", i)
		r := &l.p.Rules[i]
		r.Pos = Pos{item.Line, item.Column}
		l.mark(path, item)
		if item.Kind != yaml.MappingNode {
			l.fail(item, path, fmt.Sprintf("expected a rule (a mapping with level and what it matches), got %s", kindName(item)), "")
			continue
		}
		l.rule(item, path, r)
	}
}

func (l *loader) rule(n *yaml.Node, path string, r *Rule) {
	l.fields(n, path, "rule", ruleFields, func(key string, k, v *yaml.Node) {
		at := path + "." + key
		l.mark(at, v)
		switch key {
		case "level":
			if s, ok := l.str(v, at); ok {
				r.Level = audit.Level(s)
			}
		case "users":
			r.Users = l.strings(v, at)
		case "userGroups":
			r.UserGroups = l.strings(v, at)
		case "verbs":
			r.Verbs = l.strings(v, at)
		case "namespaces":
			r.Namespaces = l.strings(v, at)
		case "nonResourceURLs":
			r.NonResourceURLs = l.strings(v, at)
		case "omitStages":
			r.OmitStages = l.stages(v, at)
		case "omitManagedFields":
			if b, ok := l.boolean(v, at); ok {
				r.OmitManagedFields = &b
			}
		case "resources":
			r.Resources = l.groupResources(v, at)
		}
	})
}

func (l *loader) groupResources(n *yaml.Node, path string) []GroupResources {
	if isNull(n) {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		hint := ""
		if n.Kind == yaml.MappingNode {
			hint = `make it a list: start the entry with "- " (- group: ...)`
		} else if n.Kind == yaml.ScalarNode {
			hint = fmt.Sprintf(`write resources: [{group: API_GROUP, resources: [%s]}]; the core group is ""`, n.Value)
		}
		l.fail(n, path, fmt.Sprintf("expected a list of {group, resources, resourceNames} entries, got %s", kindName(n)), hint)
		return nil
	}
	out := make([]GroupResources, len(n.Content))
	for i, item := range n.Content {
		item = deref(item)
		at := fmt.Sprintf("%s[%d]", path, i)
		l.mark(at, item)
		if item.Kind != yaml.MappingNode {
			hint := ""
			if item.Kind == yaml.ScalarNode && item.ShortTag() == "!!str" {
				hint = fmt.Sprintf(`each entry is {group: API_GROUP, resources: [%s]}; the core group is ""`, item.Value)
			}
			l.fail(item, at, fmt.Sprintf("expected an entry {group, resources, resourceNames}, got %s", kindName(item)), hint)
			continue
		}
		gr := &out[i]
		l.fields(item, at, "group", groupFields, func(key string, k, v *yaml.Node) {
			p := at + "." + key
			l.mark(p, v)
			switch key {
			case "group":
				gr.Group, _ = l.str(v, p)
			case "resources":
				gr.Resources = l.strings(v, p)
			case "resourceNames":
				gr.ResourceNames = l.strings(v, p)
			}
		})
	}
	return out
}

func (l *loader) stages(n *yaml.Node, path string) []audit.Stage {
	list := l.strings(n, path)
	if list == nil {
		return nil
	}
	out := make([]audit.Stage, len(list))
	for i, s := range list {
		out[i] = audit.Stage(s)
	}
	return out
}

// strings reads a list of strings; null is an empty list.
func (l *loader) strings(n *yaml.Node, path string) []string {
	if isNull(n) {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		hint := ""
		if n.Kind == yaml.ScalarNode {
			hint = fmt.Sprintf("write a list: [%q]", n.Value)
		}
		l.fail(n, path, fmt.Sprintf("expected a list of strings, got %s", kindName(n)), hint)
		return nil
	}
	out := make([]string, 0, len(n.Content))
	for i, item := range n.Content {
		item = deref(item)
		at := fmt.Sprintf("%s[%d]", path, i)
		l.mark(at, item)
		if isNull(item) {
			l.fail(item, at, "expected a string, got null", `write "" for the empty string`)
			out = append(out, "")
			continue
		}
		s, _ := l.str(item, at)
		out = append(out, s)
	}
	return out
}

// str reads a string; null is "", as the API server reads it.
func (l *loader) str(n *yaml.Node, path string) (string, bool) {
	if isNull(n) {
		return "", true
	}
	if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!str" {
		hint := ""
		if n.Kind == yaml.ScalarNode {
			hint = fmt.Sprintf("quote it: %q", n.Value)
		}
		l.fail(n, path, fmt.Sprintf("expected a string, got %s", kindName(n)), hint)
		return "", false
	}
	if n.Style == 0 { // plain: no quotes, no explicit tag
		if what := yaml11NonString(n.Value); what != "" {
			l.fail(n, path, fmt.Sprintf("%s is %s to the API server's YAML reader (YAML 1.1), not a string", n.Value, what), fmt.Sprintf("quote it: %q", n.Value))
			return "", false
		}
	}
	return n.Value, true
}

func (l *loader) boolean(n *yaml.Node, path string) (bool, bool) {
	if isNull(n) {
		return false, true
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!bool" {
		b, err := strconv.ParseBool(strings.ToLower(n.Value))
		if err == nil {
			return b, true
		}
	}
	hint := "write true or false"
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!str" && n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) != 0 {
		hint = "write true or false without quotes"
	}
	l.fail(n, path, fmt.Sprintf("expected true or false, got %s", kindName(n)), hint)
	return false, false
}

// yaml11NonString says what YAML 1.1, which the API server's YAML reader
// follows, makes of a plain scalar that YAML 1.2 reads as a string: yes,
// no, on, off, y and n are booleans there, and 1_000 is a number. It
// returns "" when both read a string.
func yaml11NonString(v string) string {
	switch v {
	case "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "on", "On", "ON", "off", "Off", "OFF":
		return "a boolean"
	}
	if strings.Contains(v, "_") {
		plain := strings.ReplaceAll(v, "_", "")
		if _, err := strconv.ParseInt(plain, 0, 64); err == nil {
			return "a number"
		}
		if _, err := strconv.ParseFloat(plain, 64); err == nil && plain != "" && !strings.ContainsAny(plain, "xXpP") {
			return "a number"
		}
	}
	return ""
}
