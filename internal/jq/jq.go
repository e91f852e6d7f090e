// Package jq runs jq programs over stored audit events with jq's semantics
// (through github.com/itchyny/gojq) and prints their results byte for byte
// as `jq -c` (jq 1.6) prints them over the raw log: jq's number format and
// string escapes, and object keys in jq's order, which gojq does not keep
// (see encode.go and docs/adr/0004-jq.md).
//
// Compile also derives a filter of the query language that every event the
// program prints something for satisfies (Program.Pushdown), so that the
// store can use its indexes and run the program only on the candidates.
package jq

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/itchyny/gojq"

	"github.com/kubetrail/kubetrail/internal/query"
)

// Program is a compiled jq program. A Program is not safe for concurrent
// use; it reuses buffers between events.
type Program struct {
	src      string
	code     *gojq.Code
	pushdown query.Expr
	filter   *query.Filter
	enc      encoder
	dec      decoder
	fast     *fastProg // select(...) chains decided without gojq, or nil
	vals     []fval
	// Raw prints strings without quotes, as jq -r does.
	Raw bool
	// Warnings name the parts of the program whose output order may differ
	// from jq's (see orderWarnings).
	Warnings []string
}

// Error is a compile error with the offset in the program it was found at.
type Error struct {
	Offset int // byte offset in the program, -1 when unknown
	Msg    string
}

func (e *Error) Error() string { return e.Msg }

// Format returns the error with the program and a caret under the offset.
func (e *Error) Format(src string) string {
	if e.Offset < 0 || e.Offset > len(src) {
		return "--jq: " + e.Msg
	}
	return fmt.Sprintf("--jq: %s\n  %s\n  %s^", e.Msg, src, strings.Repeat(" ", e.Offset))
}

// unsupported are functions that read other inputs than the event, which a
// program run once per stored event cannot give them.
var unsupported = map[string]string{
	"input":             "reads the next input",
	"inputs":            "reads the remaining inputs",
	"input_line_number": "needs the line of the raw log",
	"input_filename":    "needs the name of the raw log",
}

// Compile parses and compiles a jq program. now resolves relative times in
// the pushed-down filter.
func Compile(src string, now time.Time) (*Program, error) {
	q, err := gojq.Parse(src)
	if err != nil {
		var pe *gojq.ParseError
		if errors.As(err, &pe) {
			return nil, &Error{Offset: max(0, pe.Offset-len(pe.Token)), Msg: err.Error()}
		}
		return nil, &Error{Offset: -1, Msg: err.Error()}
	}
	p := &Program{src: src}
	text := q.String()
	var bad error
	walkFuncs(q, func(name string) {
		if why, ok := unsupported[name]; ok && bad == nil {
			bad = &Error{Offset: strings.Index(src, name), Msg: fmt.Sprintf("%s %s; --jq runs the program once per stored event (pipe `kubetrail query -o jsonl` into jq for whole-stream programs)", name, why)}
		}
		if why, ok := orderSensitive[name]; ok {
			p.Warnings = appendOnce(p.Warnings, fmt.Sprintf("%s %s", name, why))
		}
	})
	if bad != nil {
		return nil, bad
	}
	if strings.Contains(text, "..") {
		p.Warnings = appendOnce(p.Warnings, ".. visits object keys in sorted order, jq in the order of the event")
	}
	code, err := gojq.Compile(q)
	if err != nil {
		return nil, &Error{Offset: -1, Msg: err.Error()}
	}
	p.code = code
	p.enc.dec = &p.dec
	p.enc.constructors = constructors(q)
	// Programs that define functions may redefine select, test and the
	// rest: no push-down then.
	if !strings.Contains(text, "def ") {
		if p.fast = compileFast(q); p.fast != nil {
			p.vals = make([]fval, len(p.fast.paths))
		}
		if e := pushdown(q); e != nil {
			if f, err := query.CompileExpr(e, now); err == nil {
				p.pushdown, p.filter = e, f
			}
		}
	}
	return p, nil
}

// orderSensitive are the builtins whose results depend on the order of an
// object's keys, which gojq visits sorted and jq in insertion order.
var orderSensitive = map[string]string{
	"keys_unsorted": "lists keys sorted (gojq), not in the order of the event (jq)",
	"to_entries":    "lists keys sorted (gojq), not in the order of the event (jq)",
	"with_entries":  "visits keys sorted (gojq), not in the order of the event (jq)",
	"tojson":        "writes object keys sorted (gojq), not in the order of the event (jq)",
	"tostream":      "visits keys sorted (gojq), not in the order of the event (jq)",
	"paths":         "visits keys sorted (gojq), not in the order of the event (jq)",
	"leaf_paths":    "visits keys sorted (gojq), not in the order of the event (jq)",
	"recurse":       "visits keys sorted (gojq), not in the order of the event (jq)",
}

func appendOnce(list []string, s string) []string {
	for _, x := range list {
		if x == s {
			return list
		}
	}
	return append(list, s)
}

// Pushdown returns the filter every event the program prints something for
// satisfies, or nil when the program gives none away.
func (p *Program) Pushdown() query.Expr { return p.pushdown }

// Filter is Pushdown compiled, or nil.
func (p *Program) Filter() *query.Filter { return p.filter }

// String returns the program as given.
func (p *Program) String() string { return p.src }

// Run evaluates the program on one stored event and appends each of its n
// results to buf as jq -c prints it, one per line. A runtime error stops
// the results of this event (as in jq) and is returned with the results
// before it appended.
func (p *Program) Run(ctx context.Context, event []byte, buf []byte) (_ []byte, n int, err error) {
	if p.fast != nil {
		start := len(buf)
		out, ok := p.dec.scan(p.fast, buf, event, p.vals)
		for _, v := range p.vals {
			ok = ok && v.kind != 'e'
		}
		if ok {
			truth, sure := p.fast.cond(p.vals)
			switch {
			case sure && truth:
				return append(out, '\n'), 1, nil
			case sure:
				return out[:start], 0, nil
			}
		}
		buf = out[:start]
	}
	v, err := p.dec.decode(event)
	if err != nil {
		return buf, 0, err
	}
	root, _ := v.(map[string]any)
	text := p.dec.data
	iter := p.code.RunWithContext(ctx, v)
	for ; ; n++ {
		out, ok := iter.Next()
		if !ok {
			return buf, n, nil
		}
		if err, ok := out.(error); ok {
			var he *gojq.HaltError
			if errors.As(err, &he) && he.Value() == nil {
				return buf, n, ErrHalt
			}
			return buf, n, err
		}
		if s, ok := out.(string); ok && p.Raw {
			buf = append(buf, s...)
		} else if m, ok := out.(map[string]any); ok && root != nil && mapKey(m) == mapKey(root) {
			// The event itself, as select(...) gives it: its text in jq's
			// format, unless the text repeats or escapes a key.
			start := len(buf)
			if buf, ok = p.dec.scan(&noPicks, buf, text, nil); !ok {
				buf = p.enc.encode(buf[:start], out)
			}
		} else {
			buf = p.enc.encode(buf, out)
		}
		buf = append(buf, '\n')
	}
}

// noPicks is a fast path reading no values: scan then only reformats.
var noPicks fastProg

// ErrHalt is returned by Run when the program called halt.
var ErrHalt = errors.New("halt")

// walkFuncs calls fn for every function call in q.
func walkFuncs(q *gojq.Query, fn func(name string)) {
	walkQuery(q, func(t *gojq.Term) {
		if t.Type == gojq.TermTypeFunc && t.Func != nil {
			fn(t.Func.Name)
		}
	})
}

// constructors lists the literal keys of every {...} in q, in the order
// written; a key given by an expression ends the list of its object.
func constructors(q *gojq.Query) [][]string {
	var out [][]string
	walkQuery(q, func(t *gojq.Term) {
		if t.Type != gojq.TermTypeObject || t.Object == nil {
			return
		}
		var keys []string
		for _, kv := range t.Object.KeyVals {
			k, ok := "", true
			switch {
			case kv.Key != "":
				k = strings.TrimPrefix(kv.Key, "$")
				if k == "__loc__" {
					ok = false
				}
			case kv.KeyString != nil && len(kv.KeyString.Queries) == 0:
				k = kv.KeyString.Str
			default:
				ok = false
			}
			if !ok {
				break
			}
			keys = append(keys, k)
		}
		if len(keys) > 1 {
			out = append(out, keys)
		}
	})
	return out
}
