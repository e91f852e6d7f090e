// Package rules is kubetrail's detection engine: one model of rules and
// alerts that three formats compile into (kubetrail's own YAML rules,
// Sigma rules, Falco rule files: subpackages native, sigma and falco), run
// the same way over the live stream in serve and over stored history or
// log files in `kubetrail detect` (docs/detection.md).
//
// This file holds the vocabulary every format shares; a format's package
// compiles its files into an Evaluator.
package rules

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/kubetrail/kubetrail/internal/audit"
)

// Event is what a rule looks at: one stored audit event, decoded, with the
// bytes it was stored as (Falco's jevt.value and json.value and Sigma's
// field paths read them). Ev and Raw must not be modified.
type Event struct {
	Ev      *audit.Event
	Raw     []byte
	Cluster string
	// Lazy, when not nil, says the store has not read the event yet: Ev
	// holds only the fields Lazy.Fields names and Raw is nil until Load.
	// Only the native evaluator reads a lazy event (through Known, Has and
	// Load); the engine loads it for the others.
	Lazy *Lazy
}

// Lazy is an event a store gives before reading it: it decided some of
// the evaluator's conditions on its columns and reads the event only when
// an evaluator asks (`kubetrail detect --data`, where reading every
// event's text would cost most of the time).
type Lazy struct {
	// Fields are the filter-language fields (canonical names, as
	// query.LookupField gives them) that the partial Ev holds.
	Fields []string
	// Known holds, per condition the evaluator gave the store (in the
	// order of native.Evaluator.Filters), 1 when the event matches it, -1
	// when it does not, 0 when only the whole event can tell. The store
	// must set 1 or -1 only where its answer is the condition's own.
	Known []int8
	// Read reads the whole event; Load calls it at most once.
	Read func() (*audit.Event, []byte, error)
	// ReadRaw, when not nil, reads the event's stored text without
	// decoding it, for User.
	ReadRaw func() ([]byte, error)
	// Groups, when not nil, gives the user's groups as the store's column
	// holds them, joined by sep (a single control byte): [] and [""] both
	// read "", and a group holding sep reads as two. Only a test that
	// rules events out, and allows for those, may use it.
	Groups func() (joined string, sep byte, ok bool)
	// Err is why Read failed. The caller of Eval must fail with it: the
	// alerts of an event that could not be read are not an answer.
	Err    error
	loaded bool
}

// Load makes e whole, reading a lazy event; it reports false when the
// event cannot be read (e.Lazy.Err says why).
func (e *Event) Load() bool {
	l := e.Lazy
	if l == nil || l.loaded {
		return true
	}
	if l.Err != nil {
		return false
	}
	ev, raw, err := l.Read()
	if err != nil {
		l.Err = err
		return false
	}
	e.Ev, e.Raw, l.loaded = ev, raw, true
	return true
}

// User returns the event's user, groups included. A lazy event whose
// store gives its text alone (Lazy.ReadRaw) has only its user decoded
// (audit.StoredUser), not the whole event; false when the event cannot
// be read (e.Lazy.Err says why).
func (e *Event) User() (audit.UserInfo, bool) {
	l := e.Lazy
	if l != nil && !l.loaded && l.ReadRaw != nil && l.Err == nil {
		raw, err := l.ReadRaw()
		if err != nil {
			l.Err = err
			return audit.UserInfo{}, false
		}
		if u, ok := audit.StoredUser(raw); ok {
			return u, true
		}
	}
	if !e.Load() {
		return audit.UserInfo{}, false
	}
	return e.Ev.User, true
}

// Known returns what the store decided of the evaluator's condition j: 1
// matches, -1 does not, 0 unknown (always, for an event given whole).
func (e *Event) Known(j int) int8 {
	if e.Lazy == nil {
		return 0
	}
	return e.Lazy.Known[j]
}

// Has reports whether e.Ev holds field (a canonical filter-language
// name): always, once the event is whole.
func (e *Event) Has(field string) bool {
	return e.Lazy == nil || e.Lazy.loaded || slices.Contains(e.Lazy.Fields, field)
}

// Severity is an alert's severity. Every format maps its own onto these five
// (Sigma informational is Info; Falco's priorities: EMERGENCY, ALERT and
// CRITICAL are Critical, ERROR High, WARNING Medium, NOTICE Low, others
// Info).
type Severity int

// The severities, in increasing order.
const (
	Info Severity = iota
	Low
	Medium
	High
	Critical
)

var severityNames = [...]string{"info", "low", "medium", "high", "critical"}

func (s Severity) String() string {
	if s < Info || s > Critical {
		return fmt.Sprintf("severity(%d)", int(s))
	}
	return severityNames[s]
}

// ParseSeverity reads one of info, low, medium, high, critical (any case).
func ParseSeverity(s string) (Severity, error) {
	for i, n := range severityNames {
		if strings.EqualFold(s, n) {
			return Severity(i), nil
		}
	}
	return 0, fmt.Errorf("severity %q: want one of %s", s, strings.Join(severityNames[:], ", "))
}

// MarshalText writes the severity's name.
func (s Severity) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// The sources of rules, as alerts name them.
const (
	SourceKubetrail = "kubetrail"
	SourceSigma     = "sigma"
	SourceFalco     = "falco"
)

// Alert is one firing of a rule. Its JSON form is the contract of
// `kubetrail detect -o jsonl` and of the file output (docs/detection.md).
type Alert struct {
	// Rule is the rule's name (Sigma: its title) exactly as written.
	Rule     string   `json:"rule"`
	Severity Severity `json:"severity"`
	// Source is SourceKubetrail, SourceSigma or SourceFalco.
	Source string `json:"source"`
	// AuditIDs are those of every event the alert is about, in order.
	AuditIDs []string `json:"auditIDs"`
	// User is the last event's user.username ("" when unauthenticated);
	// ImpersonatedUser its impersonatedUser.username, when set.
	User             string `json:"user"`
	ImpersonatedUser string `json:"impersonatedUser,omitempty"`
	// Message says what happened (Falco: the rule's output, rendered).
	Message string `json:"message"`
	// Time is the last event's stageTimestamp.
	Time time.Time `json:"time"`
	// Priority is a Falco rule's priority as written.
	Priority string `json:"priority,omitempty"`
	// Tags are the rule's tags (ATT&CK technique IDs among them).
	Tags []string `json:"tags,omitempty"`
	// OutputFields are the values of the fields a Falco output names,
	// for `detect -o falco`.
	OutputFields map[string]any `json:"-"`
	// Cluster is the cluster of the last event.
	Cluster string `json:"cluster,omitempty"`
	// Namespace is the last event's objectRef.namespace, when it has one
	// (Alertmanager's namespace label).
	Namespace string `json:"namespace,omitempty"`
}

// RuleInfo describes a loaded rule, for `rules list`.
type RuleInfo struct {
	Name        string
	Source      string
	Severity    Severity
	Description string
	Tags        []string
	Enabled     bool
	// File and Line say where the rule is written.
	File string
	Line int
}

// Problem is something wrong with a rule file, with its position. An error
// stops the file from loading; a warning never does.
type Problem struct {
	File      string
	Line, Col int
	Warning   bool
	Msg       string
}

func (p Problem) String() string {
	kind := "error"
	if p.Warning {
		kind = "warning"
	}
	switch {
	case p.Line > 0 && p.Col > 0:
		return fmt.Sprintf("%s:%d:%d: %s: %s", p.File, p.Line, p.Col, kind, p.Msg)
	case p.Line > 0:
		return fmt.Sprintf("%s:%d: %s: %s", p.File, p.Line, kind, p.Msg)
	}
	return fmt.Sprintf("%s: %s: %s", p.File, kind, p.Msg)
}

// File is a rule file's name and contents.
type File struct {
	Name string
	Data []byte
}

// Evaluator is a compiled set of rules of one format. Eval must be safe
// for concurrent use and must not keep e after it returns.
type Evaluator interface {
	// Eval returns the alerts e raises, in rule order.
	Eval(e *Event) []Alert
	// Rules describes the rules, in order, disabled ones included.
	Rules() []RuleInfo
}
