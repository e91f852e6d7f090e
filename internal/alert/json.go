// Package alert keeps and sends the alerts the rule engine raises: a
// durable append-only store (Store) that numbers every alert, and one
// dispatcher per output (Dispatcher) that delivers them at least once from
// a durable cursor, with retries, backoff and grouping of bursts. The
// outputs themselves (file, webhook, Slack, Alertmanager, syslog) are in
// subpackage output; docs/detection.md ("Alerts: storage and outputs") says
// what is promised.
package alert

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/kubetrail/kubetrail/internal/rules"
)

// Alert is a stored alert, or a notification made of stored alerts.
type Alert struct {
	rules.Alert
	// Seq is the store's number for the alert: unique, increasing in the
	// order alerts were stored (numbers may be skipped). 0 for an alert
	// that was never stored (detect's output).
	Seq uint64
	// Stored is when the store appended the alert; retention by age
	// counts from it.
	Stored time.Time
	// Count is, in a notification, how many alerts it stands for: more
	// than 1 when a burst of one rule and key was grouped (the alert is
	// the last of the burst). 0 or 1 otherwise.
	Count int
}

// wire is the JSON form of an alert: the `detect -o jsonl` contract
// (docs/detection.md), plus seq, count and stored when set. Field order is
// the contract's.
type wire struct {
	Rule             string         `json:"rule"`
	Severity         string         `json:"severity"`
	Source           string         `json:"source"`
	AuditIDs         []string       `json:"auditIDs"`
	User             string         `json:"user"`
	ImpersonatedUser string         `json:"impersonatedUser,omitempty"`
	Message          string         `json:"message"`
	Time             string         `json:"time"`
	Priority         string         `json:"priority,omitempty"`
	Tags             []string       `json:"tags,omitempty"`
	Cluster          string         `json:"cluster,omitempty"`
	Namespace        string         `json:"namespace,omitempty"`
	Seq              uint64         `json:"seq,omitempty"`
	Count            int            `json:"count,omitempty"`
	Stored           string         `json:"stored,omitempty"`
	OutputFields     map[string]any `json:"outputFields,omitempty"`
}

func toWire(a *Alert, full bool) wire {
	ids := a.AuditIDs
	if ids == nil {
		ids = []string{}
	}
	w := wire{Rule: a.Rule, Severity: a.Severity.String(), Source: a.Source, AuditIDs: ids, User: a.User,
		ImpersonatedUser: a.ImpersonatedUser, Message: a.Message, Time: a.Time.UTC().Format(time.RFC3339Nano),
		Priority: a.Priority, Tags: a.Tags, Cluster: a.Cluster, Namespace: a.Namespace, Seq: a.Seq}
	if a.Count > 1 {
		w.Count = a.Count
	}
	if full {
		if !a.Stored.IsZero() {
			w.Stored = a.Stored.UTC().Format(time.RFC3339Nano)
		}
		w.OutputFields = a.OutputFields
	}
	return w
}

// MarshalJSON writes the alert in the jsonl contract's shape, with seq and
// count when they are set.
func (a Alert) MarshalJSON() ([]byte, error) { return json.Marshal(toWire(&a, false)) }

// AppendJSONLine appends a's JSON (MarshalJSON's) and a newline to dst.
func AppendJSONLine(dst []byte, a *Alert) ([]byte, error) {
	b, err := json.Marshal(toWire(a, false))
	if err != nil {
		return dst, err
	}
	return append(append(dst, b...), '\n'), nil
}

// AppendStoredJSONLine appends a's stored form and a newline to dst: the
// jsonl contract's fields, seq, count, stored, and a Falco alert's
// outputFields. It is what `GET /api/v1/alerts` and `kubetrail alerts -o
// jsonl` print; ParseStoredJSON reads it back.
func AppendStoredJSONLine(dst []byte, a *Alert) ([]byte, error) {
	b, err := encodeRecord(a)
	if err != nil {
		return dst, err
	}
	return append(append(dst, b...), '\n'), nil
}

// ParseStoredJSON reads one alert in AppendStoredJSONLine's form; it must
// have a seq.
func ParseStoredJSON(b []byte) (Alert, error) { return decodeRecord(b) }

// encodeRecord is the form the store keeps: the contract's fields and
// every other field of the alert.
func encodeRecord(a *Alert) ([]byte, error) { return json.Marshal(toWire(a, true)) }

// decodeRecord reads what encodeRecord wrote.
func decodeRecord(b []byte) (Alert, error) {
	var w wire
	if err := json.Unmarshal(b, &w); err != nil {
		return Alert{}, err
	}
	sev, err := rules.ParseSeverity(w.Severity)
	if err != nil {
		return Alert{}, err
	}
	a := Alert{Alert: rules.Alert{Rule: w.Rule, Severity: sev, Source: w.Source, AuditIDs: w.AuditIDs, User: w.User,
		ImpersonatedUser: w.ImpersonatedUser, Message: w.Message, Priority: w.Priority, Tags: w.Tags,
		OutputFields: w.OutputFields, Cluster: w.Cluster, Namespace: w.Namespace}, Seq: w.Seq, Count: w.Count}
	if a.Time, err = time.Parse(time.RFC3339Nano, w.Time); err != nil {
		return Alert{}, fmt.Errorf("time: %w", err)
	}
	if w.Stored != "" {
		if a.Stored, err = time.Parse(time.RFC3339Nano, w.Stored); err != nil {
			return Alert{}, fmt.Errorf("stored: %w", err)
		}
	}
	if a.Seq == 0 {
		return Alert{}, fmt.Errorf("no seq")
	}
	return a, nil
}
