package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"time"

	"github.com/kubetrail/kubetrail/internal/policy"
	"github.com/kubetrail/kubetrail/internal/store/local"
	"github.com/kubetrail/kubetrail/internal/timespec"
)

// The policy API: what `kubetrail policy check|explain|simulate` print,
// for a policy sent as the request body (YAML or JSON, at most
// MaxPolicyBody bytes: more is a 413). The body is never logged: the
// access log has the query parameters only.
//
//	POST /api/v1/policy/check
//	    {"file":"policy","rules":N,"errors":[{"line","column","path","message","hint","ignored"}],
//	     "findings":[{"severity","code","rule","line","column","message","fix"}]}
//	    errors are the load's (a policy that does not load has no
//	    findings; ignored ones are fields the API server drops, and the
//	    lint checks the policy without them, as policy check does).
//	POST /api/v1/policy/explain?user=U&group=G...&unauthenticated=1&verb=V&resource=RES[/SUB]&api-group=G&namespace=NS&name=X&url=PATH
//	    policy.Report: what policy explain -o json prints.
//	POST /api/v1/policy/simulate?since=S&until=U
//	    policySimulation: the stored events of [since, until) (since
//	    defaults to 24h ago) the caller may read, replayed under the
//	    policy: volume per rule and per level.
//
// A policy that does not load is, for explain and simulate, a 400 whose
// "errors" list its problems as check does.

// MaxPolicyBody bounds a policy sent to the policy API: audit policies
// are a few KiB.
const MaxPolicyBody = 1 << 20

// policyName is the file name problems are reported under.
const policyName = "policy"

// policyProblem is one problem loading a policy, at line:column.
type policyProblem struct {
	Line    int    `json:"line,omitempty"`
	Column  int    `json:"column,omitempty"`
	Path    string `json:"path,omitempty"`
	Message string `json:"message"`
	Hint    string `json:"hint,omitempty"`
	Ignored bool   `json:"ignored,omitempty"`
}

// policyFinding is a lint finding with the column its line starts at
// (lint findings name a rule's or field's line; the UI puts the caret
// there).
type policyFinding struct {
	policy.Finding
	Column int `json:"column,omitempty"`
}

// policyCheckAnswer is the body of POST /api/v1/policy/check.
type policyCheckAnswer struct {
	File     string          `json:"file"`
	Rules    int             `json:"rules"`
	Errors   []policyProblem `json:"errors"`
	Findings []policyFinding `json:"findings"`
}

// policyLoadError is the 400 of explain and simulate for a policy that
// does not load.
type policyLoadError struct {
	Error  string          `json:"error"`
	Errors []policyProblem `json:"errors"`
}

// policyTally is the volume of one rule or level.
type policyTally struct {
	Rule   *int   `json:"rule,omitempty"`
	Line   int    `json:"line,omitempty"`
	Level  string `json:"level,omitempty"`
	Events int64  `json:"events"`
	Bytes  int64  `json:"bytes"`
}

// policySimulation is the body of POST /api/v1/policy/simulate: the
// fields of policy.Simulation, with rules and levels in order.
type policySimulation struct {
	Since          string           `json:"since"`
	Until          string           `json:"until,omitempty"`
	Events         int64            `json:"events"`
	Bytes          int64            `json:"bytes"`
	Kept           int64            `json:"kept"`
	KeptBytes      int64            `json:"keptBytes"`
	PerDay         float64          `json:"perDay"`
	ByRule         []policyTally    `json:"byRule"`
	ByLevel        []policyTally    `json:"byLevel"`
	StagesDropped  map[string]int64 `json:"stagesDropped"`
	Unknown        int64            `json:"unknown"`
	SecretsExposed int64            `json:"secretsExposed"`
	Examples       []policyExample  `json:"examples"`
}

type policyExample struct {
	What  string `json:"what"`
	Count int64  `json:"count"`
}

// readPolicyBody reads the policy the request carries; false means the
// answer was written (413 when it is larger than MaxPolicyBody).
func readPolicyBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	src, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxPolicyBody))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Errorf("the policy is larger than %d bytes; an audit policy is a few KiB", MaxPolicyBody))
		return nil, false
	case err != nil:
		writeError(w, http.StatusBadRequest, fmt.Errorf("read the policy: %w", err))
		return nil, false
	}
	return src, true
}

// problems lays out a load's errors.
func problems(list policy.ErrorList) []policyProblem {
	out := []policyProblem{}
	for _, e := range list {
		out = append(out, policyProblem{Line: e.Pos.Line, Column: e.Pos.Column, Path: e.Path, Message: e.Msg, Hint: e.Hint, Ignored: e.Ignored})
	}
	return out
}

// lineStart is the 1-based column of the first character of line (1-based)
// in src that is not a space or a list dash; 0 when src has no such line.
func lineStart(src []byte, line int) int {
	for n := 1; len(src) > 0; n++ {
		l, rest, _ := bytes.Cut(src, []byte("\n"))
		if n == line {
			for i, c := range l {
				if c != ' ' && c != '\t' && c != '-' {
					return i + 1
				}
			}
			return 1
		}
		src = rest
	}
	return 0
}

func (s *Server) policyCheck(w http.ResponseWriter, r *http.Request) {
	src, ok := readPolicyBody(w, r)
	if !ok {
		return
	}
	ans := policyCheckAnswer{File: policyName, Errors: []policyProblem{}, Findings: []policyFinding{}}
	// As policy check: lint what the API server would apply, without the
	// fields it ignores, so a typo cannot hide what the policy logs.
	p, ignored, err := policy.LoadAsAPIServer(policyName, src)
	var list policy.ErrorList
	switch {
	case errors.As(err, &list):
		ans.Errors = problems(list)
	case err != nil:
		writeError(w, http.StatusBadRequest, err)
		return
	default:
		ans.Errors = problems(ignored)
		ans.Rules = len(p.Rules)
		for _, f := range policy.Lint(p) {
			ans.Findings = append(ans.Findings, policyFinding{Finding: f, Column: lineStart(src, f.Line)})
		}
	}
	addResults(r, int64(len(ans.Errors)+len(ans.Findings)))
	writeJSON(w, &ans)
}

// loadPolicy loads the request's policy strictly, as explain and simulate
// do; false means the answer was written.
func loadPolicy(w http.ResponseWriter, r *http.Request) (*policy.Policy, []byte, bool) {
	src, ok := readPolicyBody(w, r)
	if !ok {
		return nil, nil, false
	}
	p, err := policy.Load(policyName, src)
	var list policy.ErrorList
	switch {
	case errors.As(err, &list):
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		json.NewEncoder(w).Encode(policyLoadError{Error: err.Error(), Errors: problems(list)})
		return nil, nil, false
	case err != nil:
		writeError(w, http.StatusBadRequest, err)
		return nil, nil, false
	}
	return p, src, true
}

func (s *Server) policyExplain(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	spec := policy.RequestSpec{User: q.Get("user"), Groups: q["group"], Unauthenticated: q.Get("unauthenticated") == "1" || q.Get("unauthenticated") == "true",
		Verb: q.Get("verb"), Resource: q.Get("resource"), APIGroup: q.Get("api-group"), Namespace: q.Get("namespace"), Name: q.Get("name"), URL: q.Get("url")}
	if spec.Verb == "" {
		spec.Verb = "get" // policy explain's default
	}
	req, err := spec.Request("")
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	p, src, ok := loadPolicy(w, r)
	if !ok {
		return
	}
	addResults(r, 1)
	writeJSON(w, policy.NewReport(req, policy.Explain(p, src, req)))
}

func (s *Server) policySimulate(w http.ResponseWriter, r *http.Request) {
	now := time.Now()
	q := r.URL.Query()
	since := q.Get("since")
	if since == "" {
		since = "24h" // bounded: a day of events, unless asked otherwise
	}
	var sel local.Selection
	var err error
	if sel.Since, sel.Until, err = timespec.Range("since", since, "until", q.Get("until"), now); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	p, _, ok := loadPolicy(w, r)
	if !ok {
		return
	}
	// The caller's scope, as every read: a scoped viewer's simulation
	// counts only the events it may read.
	if err := scopeOf(r).restrict(&sel, now); err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	sel.NeedEvent = true
	sim := policy.NewSimulator(p)
	ctx := r.Context()
	rd, err := s.openReader(ctx)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	err = rd.Select(sel, func(h *local.Hit) error {
		sim.Add(h.Event, len(h.Raw)+1) // +1: the newline, as policy simulate --data counts
		return ctx.Err()
	})
	setDamage(w, rd)
	rd.Close()
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	addResults(r, sim.Sim.Events)
	ans := simulationAnswer(p, &sim.Sim)
	ans.Since = time.UnixMicro(sel.Since).UTC().Format(time.RFC3339)
	if sel.Until != 0 {
		ans.Until = time.UnixMicro(sel.Until).UTC().Format(time.RFC3339)
	}
	writeJSON(w, ans)
}

// simulationAnswer lays out s, a simulation of p: rules in order (-1, no
// rule, first) with their lines, levels by name.
func simulationAnswer(p *policy.Policy, s *policy.Simulation) *policySimulation {
	ans := &policySimulation{Events: s.Events, Bytes: s.Bytes, Kept: s.Kept, KeptBytes: s.KeptBytes, PerDay: s.PerDay(),
		ByRule: []policyTally{}, ByLevel: []policyTally{}, StagesDropped: map[string]int64{}, Unknown: s.Unknown,
		SecretsExposed: s.SecretsExposed, Examples: []policyExample{}}
	for _, i := range s.Rules() {
		t := policyTally{Rule: &i, Events: s.ByRule[i].Events, Bytes: s.ByRule[i].Bytes}
		if i >= 0 && i < len(p.Rules) {
			t.Line = p.Rules[i].Pos.Line
		}
		ans.ByRule = append(ans.ByRule, t)
	}
	for l, t := range s.ByLevel {
		ans.ByLevel = append(ans.ByLevel, policyTally{Level: string(l), Events: t.Events, Bytes: t.Bytes})
	}
	sort.Slice(ans.ByLevel, func(i, j int) bool { return ans.ByLevel[i].Level < ans.ByLevel[j].Level })
	for st, n := range s.StagesDropped {
		ans.StagesDropped[string(st)] = n
	}
	for _, ex := range s.Examples {
		ans.Examples = append(ans.Examples, policyExample{What: ex.What, Count: ex.Count})
	}
	return ans
}

// writeJSON answers v as JSON.
func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}
