// Package query is kubetrail's filter language: the lexer and parser that
// turn text such as
//
//	verb=delete resource=secrets ns=production name=important
//	user=attacker or ip in 192.168.0.0/16
//	code>=400 not user~"^system:"
//
// into a tree (Expr), the compiler that turns the tree into a Filter whose
// Match tests an audit.Event without allocating, and the helpers a store
// planner uses to push a filter down to its indexes (Conjuncts, Walk,
// RequiredValues, TimeRange). docs/query.md is the language reference.
//
// The CLI, the HTTP API, the web UI and the rules engine all take filters
// through Compile, so a filter means the same thing everywhere.
package query
