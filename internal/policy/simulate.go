package policy

import (
	"slices"
	"sort"

	"github.com/kubetrail/kubetrail/internal/audit"
)

// Simulation is what a policy would have logged of a recorded log.
type Simulation struct {
	// Events and Bytes are what the recorded log holds.
	Events, Bytes int64
	// Kept and KeptBytes are what the policy would log. Bytes of events it
	// logs at a lower level than recorded are estimated by dropping the
	// bodies the lower level leaves out.
	Kept, KeptBytes int64
	// ByRule counts kept events per rule (index -1: no rule, level None).
	ByRule map[int]*Tally
	// ByLevel counts events per level the policy gives them.
	ByLevel map[audit.Level]*Tally
	// StagesDropped counts events dropped by omitStages, per stage.
	StagesDropped map[audit.Stage]int64
	// Unknown counts events the policy logs at a higher level than they
	// were recorded at: their bodies are not in the log, so their size is
	// a lower bound.
	Unknown int64
	// SecretsExposed counts events on secrets, configmaps, tokenreviews or
	// tokens the policy would log with bodies; Examples holds the first
	// few different ones, each once with how often it was seen.
	SecretsExposed int64
	Examples       []Example
	// FirstTime and LastTime bound the recorded events (unix microseconds).
	FirstTime, LastTime int64
}

// Example is one kind of request in a sample, and how many events were
// of that kind: a watch repeated a thousand times is one line, not five.
type Example struct {
	What  string
	Count int64
}

// maxExamples bounds Simulation.Examples.
const maxExamples = 5

// Tally is a count of events and their bytes.
type Tally struct {
	Events, Bytes int64
}

// PerDay projects the kept bytes to a day, from the recorded time span.
func (s *Simulation) PerDay() float64 {
	span := float64(s.LastTime-s.FirstTime) / 86400e6
	if span <= 0 {
		return 0
	}
	return float64(s.KeptBytes) / span
}

// Simulator replays recorded events under a policy. It is not safe for
// concurrent use.
type Simulator struct {
	ev  *Evaluator
	Sim Simulation
}

// NewSimulator starts a simulation of p.
func NewSimulator(p *Policy) *Simulator {
	return &Simulator{ev: NewEvaluator(p), Sim: Simulation{
		ByRule: map[int]*Tally{}, ByLevel: map[audit.Level]*Tally{}, StagesDropped: map[audit.Stage]int64{},
	}}
}

var secretLike = map[string]bool{"secrets": true, "configmaps": true, "tokenreviews": true, "serviceaccounts/token": true}

// Add replays one recorded event of size bytes (its stored line).
func (s *Simulator) Add(ev *audit.Event, size int) {
	sim := &s.Sim
	sim.Events++
	sim.Bytes += int64(size)
	t := ev.Time().UnixMicro()
	if sim.FirstTime == 0 || t < sim.FirstTime {
		sim.FirstTime = t
	}
	if t > sim.LastTime {
		sim.LastTime = t
	}
	d := s.ev.Evaluate(RequestFromEvent(ev))
	tally := func(m map[audit.Level]*Tally, k audit.Level, b int64) {
		if m[k] == nil {
			m[k] = &Tally{}
		}
		m[k].Events++
		m[k].Bytes += b
	}
	if d.Level == audit.LevelNone {
		tally(sim.ByLevel, d.Level, 0)
		s.rule(d.Rule, 0)
		return
	}
	if slices.Contains(d.OmitStages, ev.Stage) {
		sim.StagesDropped[ev.Stage]++
		return
	}
	b := int64(size)
	switch {
	case levelRank[d.Level] < levelRank[ev.Level]:
		if levelRank[d.Level] < levelRank[audit.LevelRequestResponse] {
			b -= int64(len(ev.ResponseObject))
		}
		if levelRank[d.Level] < levelRank[audit.LevelRequest] {
			b -= int64(len(ev.RequestObject))
		}
	case levelRank[d.Level] > levelRank[ev.Level] && levelRank[d.Level] >= levelRank[audit.LevelRequest]:
		sim.Unknown++
	}
	sim.Kept++
	sim.KeptBytes += b
	tally(sim.ByLevel, d.Level, b)
	s.rule(d.Rule, b)
	if ev.ObjectRef != nil && levelRank[d.Level] >= levelRank[audit.LevelRequest] {
		r := ev.ObjectRef.Resource
		if ev.ObjectRef.Subresource != "" {
			r += "/" + ev.ObjectRef.Subresource
		}
		if secretLike[r] {
			sim.SecretsExposed++
			sim.example(ev.Verb + " " + r + " " + ev.ObjectRef.Namespace + "/" + ev.ObjectRef.Name + " by " + ev.User.Username + " at " + string(d.Level))
		}
	}
}

// example counts what in Examples: once per kind, up to maxExamples kinds.
func (s *Simulation) example(what string) {
	for i := range s.Examples {
		if s.Examples[i].What == what {
			s.Examples[i].Count++
			return
		}
	}
	if len(s.Examples) < maxExamples {
		s.Examples = append(s.Examples, Example{What: what, Count: 1})
	}
}

func (s *Simulator) rule(i int, b int64) {
	t := s.Sim.ByRule[i]
	if t == nil {
		t = &Tally{}
		s.Sim.ByRule[i] = t
	}
	t.Events++
	t.Bytes += b
}

// Rules returns the rule indexes with events, in order (-1 first).
func (s *Simulation) Rules() []int {
	var out []int
	for i := range s.ByRule {
		out = append(out, i)
	}
	sort.Ints(out)
	return out
}
