package falco

import (
	"fmt"
	"strings"
)

// outTok is a piece of a rule's output: literal text or a field.
type outTok struct {
	lit string
	f   *fieldInst
}

// compileOutput splits an output template into text and %fields. A field
// name is the longest known field at the '%' (so "%ka.target.name/" ends
// before the slash), followed by an optional [argument].
func (c *compiler) compileOutput(src texts) ([]outTok, *compileError) {
	s := src.join()
	var out []outTok
	var lit strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' || i+1 >= len(s) {
			lit.WriteByte(s[i])
			continue
		}
		j := i + 1
		for j < len(s) && (isAlpha(s[j]) || isDigit(s[j]) || s[j] == '_' || s[j] == '.') {
			j++
		}
		run := s[i+1 : j]
		name := ""
		for k := len(run); k > 0; k-- {
			if _, ok := c.fields[run[:k]]; ok {
				name = run[:k]
				break
			}
		}
		if name == "" {
			if run == "" {
				lit.WriteByte('%')
				continue
			}
			return nil, &compileError{src: src, at: i, msg: fmt.Sprintf("output: unknown field %q", run), unknown: true}
		}
		end := i + 1 + len(name)
		ref := fieldRef{name: name, at: i}
		if end < len(s) && s[end] == '[' {
			close := strings.IndexByte(s[end:], ']')
			if close < 0 {
				return nil, &compileError{src: src, at: end, msg: "output: unclosed '[' after " + name}
			}
			ref.arg, ref.hasArg = s[end+1:end+close], true
			end += close + 1
		}
		fi, err := c.field(ref, src)
		if err != nil {
			err.msg = "output: " + err.msg
			return nil, err
		}
		if lit.Len() > 0 {
			out = append(out, outTok{lit: lit.String()})
			lit.Reset()
		}
		out = append(out, outTok{f: fi})
		i = end - 1
	}
	if lit.Len() > 0 {
		out = append(out, outTok{lit: lit.String()})
	}
	return out, nil
}

// render fills in an output: a missing value prints <NA> as Falco does, a
// list prints as (a,b). fields holds each field's value (nil when missing)
// for Falco's output_fields.
func render(c *evalCtx, toks []outTok) (string, map[string]any) {
	var b strings.Builder
	fields := map[string]any{}
	for _, t := range toks {
		if t.f == nil {
			b.WriteString(t.lit)
			continue
		}
		vals, ok := t.f.spec.get(c, t.f)
		if ok && len(vals) > 0 && len(t.f.trans) > 0 {
			vals = applyTransformers(vals, t.f.trans)
		}
		if !ok || len(vals) == 0 {
			b.WriteString("<NA>")
			fields[t.f.text] = nil
			continue
		}
		s := vals[0]
		if t.f.spec.list {
			s = "(" + strings.Join(vals, ",") + ")"
		}
		b.WriteString(s)
		fields[t.f.text] = s
	}
	return b.String(), fields
}
