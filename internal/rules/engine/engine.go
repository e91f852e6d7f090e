// Package engine runs every detection format together: it tells each rule
// file's format from its contents, loads the files of each format with
// their own loader (Falco's in order, since they build on each other), and
// evaluates an event against all of them. kubetrail's rules come first,
// then Sigma's, then Falco's; Falco's keep their own one-alert-per-event
// matching among themselves.
package engine

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/kubetrail/kubetrail/internal/query"
	"github.com/kubetrail/kubetrail/internal/rules"
	"github.com/kubetrail/kubetrail/internal/rules/builtin"
	"github.com/kubetrail/kubetrail/internal/rules/falco"
	"github.com/kubetrail/kubetrail/internal/rules/native"
	"github.com/kubetrail/kubetrail/internal/rules/sigma"
)

// Options say what to load besides the files.
type Options struct {
	// Builtin includes the built-in pack (before the files, so that a file
	// can change its rules by name).
	Builtin bool
	// Falco is how Falco rules match (first, Falco's default, or all).
	Falco falco.Options
}

// Engine evaluates every loaded rule. It is safe for concurrent use.
type Engine struct {
	evals []rules.Evaluator
	// lazy is the plan of Lazy, made on its first use (planOnce: a detect
	// over files or serve's detector never needs one), ok in lazyOK; the
	// prefilters of evals[i] (Sigma, Falco) are its filters pre[i].
	planOnce sync.Once
	lazy     LazyPlan
	lazyOK   bool
	pre      []span
}

// span is a range [from, to) of a plan's filters.
type span struct{ from, to int }

// prefiltered is a ruleset that says, per rule, a filter every event the
// rule matches also matches (sigma.Ruleset, falco.Evaluator).
type prefiltered interface {
	Prefilters(now time.Time) ([]*query.Filter, bool)
}

var _ rules.Evaluator = (*Engine)(nil)

// Format is a rule file's format.
type Format string

// The formats Detect tells apart.
const (
	FormatNative Format = "kubetrail"
	FormatSigma  Format = "sigma"
	FormatFalco  Format = "falco"
)

// Detect tells a rule file's format from its contents, or says why it is
// none of them.
func Detect(data []byte) (Format, error) {
	switch {
	case falco.LooksLikeFalco(data):
		return FormatFalco, nil
	case sigma.LooksLikeSigma(data):
		return FormatSigma, nil
	case native.LooksLikeNative(data):
		return FormatNative, nil
	}
	return "", fmt.Errorf("not a rule file: neither kubetrail rules (a list of - name: ... condition: ...), a Sigma rule (title, logsource, detection) nor a Falco rules file (- rule:, - macro:, - list:)")
}

// Load loads rule files of any format. A file with errors loads nothing
// (its problems say why, FILE:LINE:COL); the others load.
func Load(files []rules.File, opts Options) (*Engine, []rules.Problem) {
	var byFormat = map[Format][]rules.File{}
	var problems []rules.Problem
	for _, f := range files {
		format, err := Detect(f.Data)
		if err != nil {
			problems = append(problems, rules.Problem{File: f.Name, Msg: err.Error()})
			continue
		}
		byFormat[format] = append(byFormat[format], f)
	}
	e := &Engine{}
	var base []*native.Rule
	if opts.Builtin {
		base = builtin.Rules()
	}
	if nf := byFormat[FormatNative]; len(nf) > 0 || len(base) > 0 {
		ev, probs := native.Load(base, nf...)
		problems = append(problems, probs...)
		e.evals = append(e.evals, ev)
	}
	if sf := byFormat[FormatSigma]; len(sf) > 0 {
		ev, probs := sigma.Load(sf...)
		problems = append(problems, probs...)
		e.evals = append(e.evals, ev)
	}
	if ff := byFormat[FormatFalco]; len(ff) > 0 {
		ev, probs := falco.Load(ff, opts.Falco)
		problems = append(problems, probs...)
		e.evals = append(e.evals, ev)
	}
	return e, problems
}

// planLazy makes the plan Lazy returns, once: the native rules' conditions,
// then the Sigma and Falco rules' prefilters (sigma.Ruleset.Prefilters,
// falco.Evaluator.Prefilters). A rule with no prefilter makes the engine
// read every event: no plan.
func (e *Engine) planLazy() {
	e.planOnce.Do(e.makePlan)
}

func (e *Engine) makePlan() {
	var p LazyPlan
	var natWill func([]int8) bool
	pre := make([]span, len(e.evals))
	now := time.Now()
	for i, x := range e.evals {
		switch x := x.(type) {
		case *native.Evaluator:
			if i != 0 {
				return // WillRead reads its answers from the plan's first filters
			}
			p.Filters = append(p.Filters, x.Filters()...)
			p.Fields = x.KeyFields()
			natWill = x.WillRead
		case prefiltered:
			fs, ok := x.Prefilters(now)
			if !ok {
				return
			}
			pre[i] = span{len(p.Filters), len(p.Filters) + len(fs)}
			p.Filters = append(p.Filters[:len(p.Filters):len(p.Filters)], fs...)
		default:
			return
		}
	}
	p.WillRead = func(known []int8) bool {
		if natWill != nil && natWill(known) {
			return true
		}
		// A Sigma or Falco rule that may match reads the event whole.
		for _, sp := range pre {
			if slices.ContainsFunc(known[sp.from:sp.to], func(k int8) bool { return k >= 0 }) {
				return true
			}
		}
		return false
	}
	e.lazy, e.lazyOK, e.pre = p, true, pre
}

// Eval returns every alert e raises. A lazy event (ev.Lazy) is read
// before Sigma or Falco rules see it, unless the store ruled out every
// prefilter of their rules; when it cannot be read, Eval stops and
// ev.Lazy.Err says why.
func (e *Engine) Eval(ev *rules.Event) []rules.Alert {
	var out []rules.Alert
	for i, x := range e.evals {
		if _, isNative := x.(*native.Evaluator); !isNative {
			if e.ruledOut(i, ev) {
				continue
			}
			if !ev.Load() {
				break
			}
		}
		out = append(out, x.Eval(ev)...)
		if ev.Lazy != nil && ev.Lazy.Err != nil {
			break
		}
	}
	return out
}

// ruledOut reports whether the store decided that the lazy event ev
// matches none of the prefilters of evals[i].
func (e *Engine) ruledOut(i int, ev *rules.Event) bool {
	if ev.Lazy == nil {
		return false
	}
	if e.planLazy(); !e.lazyOK {
		return false
	}
	for j := e.pre[i].from; j < e.pre[i].to; j++ {
		if ev.Known(j) >= 0 {
			return false
		}
	}
	return true
}

// LazyPlan is what a store needs to give an engine's events lazily
// (rules.Lazy).
type LazyPlan struct {
	// Filters are the conditions whose answers go in Known.
	Filters []*query.Filter
	// Fields are those a partial event should hold.
	Fields []string
	// WillRead tells from Known whether the engine will surely read the
	// event whole, for a store to read it ahead.
	WillRead func(known []int8) bool
}

// Lazy returns the plan of a store giving events lazily, or ok false
// when the engine reads every event whole anyway (a Sigma or Falco rule
// with no prefilter); an engine without rules gives ok and no
// filter: no event is needed.
func (e *Engine) Lazy() (p LazyPlan, ok bool) {
	if len(e.evals) == 0 {
		return p, true
	}
	e.planLazy()
	return e.lazy, e.lazyOK
}

// Memory returns how far back in event time the loaded rules' state
// reaches (native thresholds, sequences and once-per-request rules; Sigma
// and Falco rules have none): replaying that span of events before a
// point rebuilds the state the engine had there.
func (e *Engine) Memory() time.Duration {
	var d time.Duration
	for _, x := range e.evals {
		if n, ok := x.(*native.Evaluator); ok {
			d = max(d, n.Memory())
		}
	}
	return d
}

// Rules describes every loaded rule.
func (e *Engine) Rules() []rules.RuleInfo {
	var out []rules.RuleInfo
	for _, x := range e.evals {
		out = append(out, x.Rules()...)
	}
	return out
}

// ReadPaths reads rule files: each path is a file, or a folder whose
// .yaml and .yml files are read in name order. A folder's subfolders are
// not read (a rule repository's other folders hold rules for other logs);
// each is named in a warning, so that rules left in one are not missed
// without a word. Folders whose name starts with '.' (.git) are passed
// over silently.
func ReadPaths(paths []string) ([]rules.File, []rules.Problem, error) {
	var out []rules.File
	var warns []rules.Problem
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			return nil, nil, fmt.Errorf("rules: %w", err)
		}
		names := []string{p}
		if st.IsDir() {
			names = nil
			ents, err := os.ReadDir(p)
			if err != nil {
				return nil, nil, fmt.Errorf("rules: %w", err)
			}
			for _, en := range ents {
				n := en.Name()
				switch {
				case en.IsDir() && !strings.HasPrefix(n, "."):
					warns = append(warns, rules.Problem{File: filepath.Join(p, n), Warning: true,
						Msg: "a subfolder is not read: only the .yaml and .yml files of " + p + " are; give it to --rules too to load its rules"})
				case !en.IsDir() && (strings.HasSuffix(n, ".yaml") || strings.HasSuffix(n, ".yml")):
					names = append(names, filepath.Join(p, n))
				}
			}
			sort.Strings(names)
			if len(names) == 0 {
				return nil, nil, fmt.Errorf("rules: %s holds no .yaml or .yml file", p)
			}
		}
		for _, n := range names {
			data, err := os.ReadFile(n)
			if err != nil {
				return nil, nil, fmt.Errorf("rules: %w", err)
			}
			out = append(out, rules.File{Name: n, Data: data})
		}
	}
	return out, warns, nil
}
