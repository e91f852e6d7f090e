package sigma

import (
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// search is one search identifier of a rule's detection: its alternatives
// (the maps of a list of maps) are ORed, the items of one alternative
// ANDed.
type search struct {
	name string
	alts [][]*item
	// konst is what the search is whatever the event (tvUnknown: it
	// depends on the event).
	konst tv
}

func (s *search) eval(st *state) bool {
	for _, alt := range s.alts {
		ok := true
		for _, it := range alt {
			if !it.eval(st) {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}

// item is one `field|modifiers: values` of a search.
type item struct {
	// field is the Sigma field path ("" for keywords).
	field string
	r     resolver
	// exists is 0, or +1 / -1 for |exists: true / false.
	exists int8
	// all: every value must match (|all); otherwise one is enough.
	all    bool
	values []matcher
	konst  tv
}

// match is the OR of the item's values against one value of the field.
func (it *item) match(l leaf) bool {
	for _, v := range it.values {
		if v.match(l) {
			return true
		}
	}
	return false
}

func (it *item) eval(st *state) bool {
	switch {
	case it.exists != 0:
		return it.r.each(st, existsMatcher{}) == (it.exists > 0)
	case it.all:
		for _, v := range it.values {
			if !it.r.each(st, v) {
				return false
			}
		}
		return true
	}
	return it.r.each(st, it)
}

// mods are the modifiers of one search item.
type mods struct {
	contains, startswith, endswith bool
	all, re, cidr, cased           bool
	exists                         bool
	cmp                            string // lt, lte, gt, gte
	reFlags                        string // of i, m, s
}

// The modifiers Sigma defines that kubetrail does not implement: they
// encode values for Windows command lines and binary logs, or need a
// processing pipeline (expand, fieldref).
func unsupportedModifier(m string) bool {
	switch m {
	case "base64", "base64offset", "wide", "utf16le", "utf16be", "utf16", "windash", "expand", "fieldref", "neq":
		return true
	}
	return false
}

// parseMods reads the modifiers after a field name.
func (c *compiler) parseMods(key *yaml.Node, list []string) (mods, bool) {
	var m mods
	for _, name := range list {
		switch name {
		case "contains":
			m.contains = true
		case "startswith":
			m.startswith = true
		case "endswith":
			m.endswith = true
		case "all":
			m.all = true
		case "re":
			m.re = true
		case "i", "m", "s":
			m.reFlags += name
		case "cidr":
			m.cidr = true
		case "cased":
			m.cased = true
		case "exists":
			m.exists = true
		case "lt", "lte", "gt", "gte":
			if m.cmp != "" {
				c.errorf(key, "modifiers |%s and |%s cannot be combined", m.cmp, name)
				return m, false
			}
			m.cmp = name
		default:
			if unsupportedModifier(name) {
				c.errorf(key, "modifier |%s is not supported by kubetrail (audit events hold no Windows command lines or encoded payloads)", name)
			} else {
				c.errorf(key, "unknown modifier |%s (known: contains, startswith, endswith, all, re (with i, m, s), cidr, cased, exists, lt, lte, gt, gte)", name)
			}
			return m, false
		}
	}
	var str []string
	for _, s := range []struct {
		on   bool
		name string
	}{{m.contains, "contains"}, {m.startswith, "startswith"}, {m.endswith, "endswith"}} {
		if s.on {
			str = append(str, s.name)
		}
	}
	var bad string
	switch {
	case len(str) > 1:
		bad = "|" + strings.Join(str, " and |") + " cannot be combined"
	case m.reFlags != "" && !m.re:
		bad = "|" + m.reFlags[:1] + " applies only after |re"
	case m.re && (len(str) > 0 || m.cidr || m.cmp != ""):
		bad = "|re cannot be combined with another matching modifier"
	case m.cidr && (len(str) > 0 || m.cmp != ""):
		bad = "|cidr cannot be combined with another matching modifier"
	case m.cmp != "" && len(str) > 0:
		bad = "|" + m.cmp + " cannot be combined with |" + str[0]
	case m.exists && len(list) > 1:
		bad = "|exists cannot be combined with other modifiers"
	}
	if bad != "" {
		c.errorf(key, "%s", bad)
		return m, false
	}
	return m, true
}

// compileSearch compiles one search identifier's definition.
func (c *compiler) compileSearch(name string, n *yaml.Node) *search {
	n = deref(n)
	s := &search{name: name}
	switch n.Kind {
	case yaml.MappingNode:
		if alt, ok := c.compileMap(n); ok {
			s.alts = append(s.alts, alt)
		}
	case yaml.SequenceNode:
		if len(n.Content) == 0 {
			c.errorf(n, "search %s is an empty list", name)
			return nil
		}
		if deref(n.Content[0]).Kind == yaml.MappingNode {
			for _, el := range n.Content {
				el = deref(el)
				if el.Kind != yaml.MappingNode {
					c.errorf(el, "search %s mixes maps and plain values; a list holds either maps (ORed) or keywords", name)
					return nil
				}
				if alt, ok := c.compileMap(el); ok {
					s.alts = append(s.alts, alt)
				}
			}
			break
		}
		if it := c.compileItem(nil, "", nil, n); it != nil {
			s.alts = append(s.alts, []*item{it})
		}
	case yaml.ScalarNode:
		if n.ShortTag() == "!!null" {
			c.errorf(n, "search %s is empty; want a map of fields or a list", name)
			return nil
		}
		if it := c.compileItem(nil, "", nil, n); it != nil {
			s.alts = append(s.alts, []*item{it})
		}
	default:
		c.errorf(n, "search %s: want a map of fields or a list", name)
		return nil
	}
	s.konst = tvFalse
	for _, alt := range s.alts {
		k := tvTrue
		for _, it := range alt {
			k = k.and(it.konst)
		}
		s.konst = s.konst.or(k)
	}
	return s
}

// compileMap compiles the items of one map of a search.
func (c *compiler) compileMap(n *yaml.Node) ([]*item, bool) {
	if len(n.Content) == 0 {
		c.errorf(n, "empty map in a search; want field: value pairs")
		return nil, false
	}
	ok := true
	var items []*item
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if seen[k.Value] {
			c.errorf(k, "field %s appears twice in one map", k.Value)
			ok = false
			continue
		}
		seen[k.Value] = true
		field, modList, _ := strings.Cut(k.Value, "|")
		var list []string
		if modList != "" || strings.Contains(k.Value, "|") {
			list = strings.Split(modList, "|")
		}
		it := c.compileItem(k, field, list, v)
		if it == nil {
			ok = false
			continue
		}
		items = append(items, it)
	}
	return items, ok
}

// compileItem compiles `field|mods: values`; key is nil and field "" for a
// keyword list.
func (c *compiler) compileItem(key *yaml.Node, field string, modList []string, v *yaml.Node) *item {
	at := key
	if at == nil {
		at = v
	}
	m, ok := c.parseMods(at, modList)
	if !ok {
		return nil
	}
	keyword := field == ""
	var info fieldInfo
	if keyword {
		info = fieldInfo{r: keywords{}, known: true}
	} else {
		info = compileField(field)
		if !info.known {
			c.warnf(at, "field %s: %s; this search item can never match", field, info.why)
		}
	}
	v = deref(v)
	var vals []*yaml.Node
	switch v.Kind {
	case yaml.ScalarNode:
		vals = []*yaml.Node{v}
	case yaml.SequenceNode:
		if len(v.Content) == 0 {
			c.errorf(v, "%s: empty list of values", describeItem(field))
			return nil
		}
		for _, el := range v.Content {
			el = deref(el)
			if el.Kind != yaml.ScalarNode {
				c.errorf(el, "%s: a value must be a string, number, boolean or null", describeItem(field))
				return nil
			}
			vals = append(vals, el)
		}
	default:
		c.errorf(v, "%s: want a value or a list of values", describeItem(field))
		return nil
	}
	it := &item{field: field, r: info.r, all: m.all}
	if m.exists {
		if len(vals) != 1 || vals[0].ShortTag() != "!!bool" {
			c.errorf(v, "%s|exists: want true or false", field)
			return nil
		}
		it.exists = -1
		if b, _ := strconv.ParseBool(vals[0].Value); b {
			it.exists = 1
		}
	}
	if m.all && len(vals) == 1 {
		c.warnf(at, "%s: |all with a single value (the Sigma spec forbids it; it means the same as without)", describeItem(field))
	}
	impossible := 0
	if !m.exists {
		for _, vn := range vals {
			mt := c.compileValue(m, keyword, vn)
			if mt == nil {
				return nil
			}
			if info.known && !keyword && !canMatch(info.typ, mt) {
				c.warnf(vn, "%s is a %s in audit events: %s can never match it", field, typeName(info.typ), strconv.Quote(vn.Value))
				impossible++
			}
			it.values = append(it.values, mt)
		}
	}
	switch {
	case !info.known:
		it.konst = tvFalse
		if it.eval(&state{}) {
			it.konst = tvTrue
		}
	case impossible == len(it.values) && impossible > 0, m.all && impossible > 0:
		it.konst = tvFalse
	default:
		it.konst = tvUnknown
	}
	return it
}

func describeItem(field string) string {
	if field == "" {
		return "keywords"
	}
	return "field " + field
}

func typeName(t fieldType) string {
	switch t {
	case tInt:
		return "number"
	case tObject:
		return "object"
	}
	return "string"
}

// canMatch reports whether a value of type t can ever satisfy m.
func canMatch(t fieldType, m matcher) bool {
	switch t {
	case tInt:
		switch x := m.(type) {
		case *stringMatcher:
			if x.anyValue {
				return true
			}
			lits := x.pat
			if x.form != 'g' {
				lits = parsePattern(x.lit)
			}
			for _, e := range lits {
				if e.kind == 0 && !strings.ContainsRune("0123456789-", e.r) {
					return false
				}
			}
		case numberMatcher:
			return x.n == float64(int64(x.n))
		case boolMatcher, cidrMatcher:
			return false
		}
	case tObject:
		switch x := m.(type) {
		case *stringMatcher:
			return x.anyValue
		case nullMatcher:
			return true
		}
		return false
	}
	return true
}

// compileValue compiles one value of an item with its modifiers.
func (c *compiler) compileValue(m mods, keyword bool, v *yaml.Node) matcher {
	tag := v.ShortTag()
	if tag == "!!null" {
		if m.re || m.cidr || m.cmp != "" || m.contains || m.startswith || m.endswith || keyword {
			c.errorf(v, "null cannot be used with a matching modifier or as a keyword")
			return nil
		}
		return nullMatcher{}
	}
	switch {
	case m.re:
		expr := v.Value
		if m.reFlags != "" {
			expr = "(?" + m.reFlags + ")" + expr
		}
		re, err := regexp.Compile(expr)
		if err != nil {
			c.errorf(v, "invalid regular expression %s: %s", strconv.Quote(v.Value), strings.TrimPrefix(err.Error(), "error parsing regexp: "))
			return nil
		}
		return regexMatcher{re}
	case m.cidr:
		p, err := netip.ParsePrefix(strings.TrimSpace(v.Value))
		if err != nil {
			c.errorf(v, "|cidr: %s is not a CIDR prefix like 10.0.0.0/8 or fd00::/8", strconv.Quote(v.Value))
			return nil
		}
		return cidrMatcher{p.Masked()}
	case m.cmp != "":
		f, err := strconv.ParseFloat(v.Value, 64)
		if err != nil || (tag != "!!int" && tag != "!!float") {
			c.errorf(v, "|%s: want a number, not %s", m.cmp, strconv.Quote(v.Value))
			return nil
		}
		return compareMatcher{op: m.cmp, n: f}
	case m.contains || m.startswith || m.endswith || keyword:
		p := parsePattern(v.Value)
		if m.contains || m.endswith || keyword {
			p = append([]patElem{{kind: '*'}}, p...)
		}
		if m.contains || m.startswith || keyword {
			p = append(p, patElem{kind: '*'})
		}
		return newStringMatcher(p, m.cased)
	}
	switch tag {
	case "!!int", "!!float":
		f, err := parseYAMLNumber(v.Value)
		if err != nil {
			c.errorf(v, "number %s: %v", v.Value, err)
			return nil
		}
		return numberMatcher{f}
	case "!!bool":
		b, _ := strconv.ParseBool(strings.ToLower(v.Value))
		return boolMatcher{b}
	}
	return newStringMatcher(parsePattern(v.Value), m.cased)
}

// parseYAMLNumber reads an int or float as YAML writes them (0x1f, 0o17,
// 1_000, .5, 1e3).
func parseYAMLNumber(s string) (float64, error) {
	s = strings.ReplaceAll(s, "_", "")
	if i, err := strconv.ParseInt(s, 0, 64); err == nil {
		return float64(i), nil
	}
	if strings.HasPrefix(s, "0o") || strings.HasPrefix(s, "0O") {
		if i, err := strconv.ParseInt(s[2:], 8, 64); err == nil {
			return float64(i), nil
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, fmt.Errorf("not a number")
	}
	return f, nil
}
