package sigma

// A deliberately naive reference evaluator for the differential test. The
// Go module github.com/bradleyjkemp/sigma-go, the independent evaluator
// the issue suggests, is not served by the module proxy here (403), so
// this file is the oracle instead: written from the Sigma specification
// alone, sharing no code with the package, and as simple as possible
// rather than fast. It reads the rule with yaml.Unmarshal into plain maps
// (no positions, no compilation), the event as generic JSON (every key
// from the bytes, not the audit model), turns wildcard strings into
// regular expressions, and evaluates conditions by textual expansion of
// `1 of`/`all of` and a shunting-yard pass.
//
// It follows the same reading of the places the specification leaves
// open (documented in docs/detection.md): arrays match when one element
// does, a missing value is null, a pattern of stars matches any present
// value, keywords are substrings of any value.

import (
	"encoding/json"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

type refRule struct {
	Title     string         `yaml:"title"`
	Detection map[string]any `yaml:"detection"`
	order     []string
	// res caches compiled expressions: compiling them per value is what
	// would make the naive evaluator slow, not what makes it naive.
	res map[string]*regexp.Regexp
}

func (r *refRule) re(expr string) *regexp.Regexp {
	if r.res == nil {
		r.res = map[string]*regexp.Regexp{}
	}
	re, ok := r.res[expr]
	if !ok {
		re = regexp.MustCompile(expr)
		r.res[expr] = re
	}
	return re
}

func refLoad(data []byte) (*refRule, error) {
	var r refRule
	if err := yaml.Unmarshal(data, &r); err != nil {
		return nil, err
	}
	// The order of the search identifiers does not matter to the result;
	// any order will do.
	for k := range r.Detection {
		if k != "condition" {
			r.order = append(r.order, k)
		}
	}
	return &r, nil
}

type refMissing struct{}

// refDecode reads an event's bytes as generic JSON.
func refDecode(raw []byte) map[string]any {
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.UseNumber()
	var ev map[string]any
	if err := dec.Decode(&ev); err != nil {
		panic(err)
	}
	return ev
}

// refMatch evaluates the rule over one event.
func refMatch(r *refRule, ev map[string]any) bool {
	cond := r.Detection["condition"].(string)
	// Expand "1 of X" / "all of X" into parenthesized or / and lists.
	toks := r.re(`\(|\)|[^\s()]+`).FindAllString(cond, -1)
	var out []string
	for i := 0; i < len(toks); i++ {
		low := strings.ToLower(toks[i])
		if (low == "1" || low == "all") && i+2 < len(toks) && strings.ToLower(toks[i+1]) == "of" {
			pat := toks[i+2]
			var names []string
			for _, n := range r.order {
				if r.ofMatch(pat, n) {
					names = append(names, n)
				}
			}
			op := "or"
			if low == "all" {
				op = "and"
			}
			out = append(out, "(")
			for j, n := range names {
				if j > 0 {
					out = append(out, op)
				}
				out = append(out, n)
			}
			out = append(out, ")")
			i += 2
			continue
		}
		out = append(out, toks[i])
	}
	// Shunting-yard to reverse Polish notation, then a stack machine.
	prec := map[string]int{"or": 1, "and": 2, "not": 3}
	var rpn, ops []string
	for _, t := range out {
		low := strings.ToLower(t)
		switch {
		case t == "(":
			ops = append(ops, t)
		case t == ")":
			for ops[len(ops)-1] != "(" {
				rpn, ops = append(rpn, ops[len(ops)-1]), ops[:len(ops)-1]
			}
			ops = ops[:len(ops)-1]
		case prec[low] > 0:
			for len(ops) > 0 && ops[len(ops)-1] != "(" && low != "not" && prec[ops[len(ops)-1]] >= prec[low] {
				rpn, ops = append(rpn, ops[len(ops)-1]), ops[:len(ops)-1]
			}
			ops = append(ops, low)
		default:
			if r.search(r.Detection[t], ev) {
				rpn = append(rpn, "T")
			} else {
				rpn = append(rpn, "F")
			}
		}
	}
	for len(ops) > 0 {
		rpn, ops = append(rpn, ops[len(ops)-1]), ops[:len(ops)-1]
	}
	var st []bool
	for _, t := range rpn {
		switch t {
		case "T", "F":
			st = append(st, t == "T")
		case "not":
			st[len(st)-1] = !st[len(st)-1]
		case "and", "or":
			a, b := st[len(st)-2], st[len(st)-1]
			st = st[:len(st)-2]
			if t == "and" {
				st = append(st, a && b)
			} else {
				st = append(st, a || b)
			}
		}
	}
	return st[0]
}

func (r *refRule) ofMatch(pat, name string) bool {
	if strings.EqualFold(pat, "them") {
		return !strings.HasPrefix(name, "_")
	}
	re := "^" + strings.ReplaceAll(regexp.QuoteMeta(pat), `\*`, ".*") + "$"
	return r.re(re).MatchString(name)
}

func (r *refRule) search(def any, ev map[string]any) bool {
	switch d := def.(type) {
	case map[string]any:
		for k, v := range d {
			if !r.item(k, v, ev) {
				return false
			}
		}
		return true
	case []any:
		if _, isMap := d[0].(map[string]any); isMap {
			for _, m := range d {
				if r.search(m, ev) {
					return true
				}
			}
			return false
		}
		return r.item("|contains", d, ev)
	}
	panic(fmt.Sprintf("search %T", def))
}

func (r *refRule) item(key string, v any, ev map[string]any) bool {
	parts := strings.Split(key, "|")
	field, mods := parts[0], parts[1:]
	has := func(m string) bool {
		for _, x := range mods {
			if x == m {
				return true
			}
		}
		return false
	}
	var leaves []any
	if field == "" {
		refAll(ev, &leaves)
		mods = append(mods, "contains")
	} else {
		leaves = refValues(ev, field)
	}
	if has("exists") {
		present := false
		for _, l := range leaves {
			if _, miss := l.(refMissing); !miss && l != nil {
				present = true
			}
		}
		return present == v.(bool)
	}
	vals, isList := v.([]any)
	if !isList {
		vals = []any{v}
	}
	one := func(want any) bool {
		for _, l := range leaves {
			if r.value(mods, want, l) {
				return true
			}
		}
		return false
	}
	if has("all") {
		for _, w := range vals {
			if !one(w) {
				return false
			}
		}
		return true
	}
	for _, w := range vals {
		if one(w) {
			return true
		}
	}
	return false
}

// refValues lists the values at a dotted path, trying every key of each
// object that the rest of the path starts with.
func refValues(v any, path string) []any {
	switch x := v.(type) {
	case map[string]any:
		var out []any
		for k, c := range x {
			if k == path {
				out = append(out, refFlatten(c)...)
			} else if strings.HasPrefix(path, k+".") {
				out = append(out, refValues(c, path[len(k)+1:])...)
			}
		}
		if out == nil {
			return []any{refMissing{}}
		}
		return out
	case []any:
		var out []any
		for _, c := range x {
			out = append(out, refValues(c, path)...)
		}
		if out == nil {
			return []any{refMissing{}}
		}
		return out
	}
	return []any{refMissing{}}
}

func refFlatten(v any) []any {
	if a, ok := v.([]any); ok {
		var out []any
		for _, c := range a {
			out = append(out, refFlatten(c)...)
		}
		if out == nil {
			return []any{refMissing{}}
		}
		return out
	}
	return []any{v}
}

func refAll(v any, out *[]any) {
	switch x := v.(type) {
	case map[string]any:
		for _, c := range x {
			refAll(c, out)
		}
	case []any:
		for _, c := range x {
			refAll(c, out)
		}
	default:
		*out = append(*out, v)
	}
}

func refText(l any) (string, bool) {
	switch x := l.(type) {
	case string:
		return x, true
	case json.Number:
		return x.String(), true
	case bool:
		return strconv.FormatBool(x), true
	}
	return "", false
}

func refNumber(l any) (float64, bool) {
	switch x := l.(type) {
	case json.Number:
		f, err := x.Float64()
		return f, err == nil
	case string:
		f, err := strconv.ParseFloat(strings.TrimSpace(x), 64)
		return f, err == nil
	}
	return 0, false
}

func (r *refRule) value(mods []string, want, l any) bool {
	has := func(m string) bool {
		for _, x := range mods {
			if x == m {
				return true
			}
		}
		return false
	}
	_, miss := l.(refMissing)
	if want == nil {
		return miss || l == nil
	}
	if miss || l == nil {
		return false
	}
	text, isText := refText(l)
	switch {
	case has("re"):
		flags := ""
		for _, f := range []string{"i", "m", "s"} {
			if has(f) {
				flags += f
			}
		}
		expr := fmt.Sprint(want)
		if flags != "" {
			expr = "(?" + flags + ")" + expr
		}
		return isText && r.re(expr).MatchString(text)
	case has("cidr"):
		_, n, err := net.ParseCIDR(fmt.Sprint(want))
		s, ok := l.(string)
		ip := net.ParseIP(s)
		return err == nil && ok && ip != nil && n.Contains(ip)
	case has("lt"), has("lte"), has("gt"), has("gte"):
		f, ok := refNumber(l)
		w := toFloat(want)
		return ok && (has("lt") && f < w || has("lte") && f <= w || has("gt") && f > w || has("gte") && f >= w)
	}
	switch w := want.(type) {
	case int, float64:
		f, ok := refNumber(l)
		return ok && f == toFloat(w)
	case bool:
		if b, ok := l.(bool); ok {
			return b == w
		}
		s, ok := l.(string)
		return ok && strings.EqualFold(s, strconv.FormatBool(w))
	}
	pat := fmt.Sprint(want)
	if strings.Trim(pat, "*") == "" && pat != "" {
		return true
	}
	// Wildcards to a regular expression, escapes as the spec lists them.
	var re strings.Builder
	if !has("cased") {
		re.WriteString("(?i)")
	}
	re.WriteString("(?s)^")
	if has("contains") || has("endswith") {
		re.WriteString(".*")
	}
	for i := 0; i < len(pat); i++ {
		c := pat[i]
		switch {
		case c == '\\' && i+1 < len(pat) && strings.IndexByte(`*?\`, pat[i+1]) >= 0:
			re.WriteString(regexp.QuoteMeta(pat[i+1 : i+2]))
			i++
		case c == '*':
			re.WriteString(".*")
		case c == '?':
			re.WriteString(".")
		default:
			re.WriteString(regexp.QuoteMeta(pat[i : i+1]))
		}
	}
	if has("contains") || has("startswith") {
		re.WriteString(".*")
	}
	re.WriteString("$")
	return isText && r.re(re.String()).MatchString(text)
}

func toFloat(v any) float64 {
	switch x := v.(type) {
	case int:
		return float64(x)
	case float64:
		return x
	}
	f, _ := strconv.ParseFloat(fmt.Sprint(v), 64)
	return f
}
