package jq

import "github.com/itchyny/gojq"

// walkQuery calls fn for every term of q, inner terms included.
func walkQuery(q *gojq.Query, fn func(*gojq.Term)) {
	if q == nil {
		return
	}
	for _, d := range q.FuncDefs {
		walkQuery(d.Body, fn)
	}
	walkTerm(q.Term, fn)
	walkQuery(q.Left, fn)
	walkQuery(q.Right, fn)
}

func walkTerm(t *gojq.Term, fn func(*gojq.Term)) {
	if t == nil {
		return
	}
	fn(t)
	walkIndex(t.Index, fn)
	if t.Func != nil {
		for _, a := range t.Func.Args {
			walkQuery(a, fn)
		}
	}
	if t.Object != nil {
		for _, kv := range t.Object.KeyVals {
			walkString(kv.KeyString, fn)
			walkQuery(kv.KeyQuery, fn)
			walkQuery(kv.Val, fn)
		}
	}
	if t.Array != nil {
		walkQuery(t.Array.Query, fn)
	}
	if t.Unary != nil {
		walkTerm(t.Unary.Term, fn)
	}
	walkString(t.Str, fn)
	if t.If != nil {
		walkQuery(t.If.Cond, fn)
		walkQuery(t.If.Then, fn)
		for _, e := range t.If.Elif {
			walkQuery(e.Cond, fn)
			walkQuery(e.Then, fn)
		}
		walkQuery(t.If.Else, fn)
	}
	if t.Try != nil {
		walkQuery(t.Try.Body, fn)
		walkQuery(t.Try.Catch, fn)
	}
	if t.Reduce != nil {
		walkQuery(t.Reduce.Query, fn)
		walkQuery(t.Reduce.Start, fn)
		walkQuery(t.Reduce.Update, fn)
	}
	if t.Foreach != nil {
		walkQuery(t.Foreach.Query, fn)
		walkQuery(t.Foreach.Start, fn)
		walkQuery(t.Foreach.Update, fn)
		walkQuery(t.Foreach.Extract, fn)
	}
	if t.Label != nil {
		walkQuery(t.Label.Body, fn)
	}
	walkQuery(t.Query, fn)
	for _, s := range t.SuffixList {
		walkIndex(s.Index, fn)
		if s.Bind != nil {
			walkQuery(s.Bind.Body, fn)
		}
	}
}

func walkIndex(ix *gojq.Index, fn func(*gojq.Term)) {
	if ix == nil {
		return
	}
	walkString(ix.Str, fn)
	walkQuery(ix.Start, fn)
	walkQuery(ix.End, fn)
}

func walkString(s *gojq.String, fn func(*gojq.Term)) {
	if s == nil {
		return
	}
	for _, q := range s.Queries {
		walkQuery(q, fn)
	}
}
