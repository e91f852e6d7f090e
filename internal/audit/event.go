// Package audit holds the Kubernetes audit event model (audit.k8s.io/v1, and
// the older v1beta1 shape found in old logs) and the decoders that turn every
// format an audit event arrives in into that model, keeping the bytes each
// event arrived as.
package audit

import (
	"encoding/json"
	"time"
)

// Level is the amount of detail the API server recorded for a request.
type Level string

// The audit levels, in increasing order of detail.
const (
	LevelNone            Level = "None"
	LevelMetadata        Level = "Metadata"
	LevelRequest         Level = "Request"
	LevelRequestResponse Level = "RequestResponse"
)

// Stage is the point of request handling at which an event was emitted.
type Stage string

// The stages of request handling at which the API server emits events.
const (
	StageRequestReceived  Stage = "RequestReceived"
	StageResponseStarted  Stage = "ResponseStarted"
	StageResponseComplete Stage = "ResponseComplete"
	StagePanic            Stage = "Panic"
)

// APIVersionV1 and APIVersionV1beta1 are the event API versions kubetrail reads.
const (
	APIVersionV1      = "audit.k8s.io/v1"
	APIVersionV1beta1 = "audit.k8s.io/v1beta1"
)

// Event mirrors audit.k8s.io/v1 Event field for field, in the same order and
// with the same JSON names, so that decoding and re-encoding an event keeps
// its meaning. Request and response bodies are kept as raw JSON: kubetrail
// never needs to understand them to store them.
type Event struct {
	Kind       string `json:"kind,omitempty"`
	APIVersion string `json:"apiVersion,omitempty"`

	// Level is the level at which the event was generated.
	Level Level `json:"level"`
	// AuditID is the request's audit ID. It is not unique: a client may set it
	// with the Audit-ID header, and all stages of one request share it.
	AuditID string `json:"auditID"`
	// Stage is the request handling stage that emitted this event.
	Stage Stage `json:"stage"`
	// RequestURI is the URI the client sent, query string included.
	RequestURI string `json:"requestURI"`
	// Verb is the Kubernetes verb (get, list, create...) or the lower-cased
	// HTTP method for non-resource requests.
	Verb string `json:"verb"`
	// User is the authenticated user; empty when authentication failed.
	User UserInfo `json:"user"`
	// ImpersonatedUser is set when the request impersonated another user.
	ImpersonatedUser *UserInfo `json:"impersonatedUser,omitempty"`
	// AuthenticationMetadata describes how the request was authenticated.
	AuthenticationMetadata *AuthenticationMetadata `json:"authenticationMetadata,omitempty"`
	// SourceIPs are the request's origins; only the last entry is the peer
	// the API server saw, the others come from client-controlled headers.
	SourceIPs []string `json:"sourceIPs,omitempty"`
	// UserAgent is the client's self-reported user agent.
	UserAgent string `json:"userAgent,omitempty"`
	// ObjectRef is the object the request targeted; nil for non-resource requests.
	ObjectRef *ObjectReference `json:"objectRef,omitempty"`
	// ResponseStatus is the response status, set for ResponseComplete and Panic.
	ResponseStatus *Status `json:"responseStatus,omitempty"`
	// RequestObject is the request body, at Request level and above.
	RequestObject json.RawMessage `json:"requestObject,omitempty"`
	// ResponseObject is the response body, at RequestResponse level.
	ResponseObject json.RawMessage `json:"responseObject,omitempty"`
	// RequestReceivedTimestamp is when the request reached the API server.
	RequestReceivedTimestamp MicroTime `json:"requestReceivedTimestamp"`
	// StageTimestamp is when the request reached this stage.
	StageTimestamp MicroTime `json:"stageTimestamp"`
	// Annotations carry the authorization decision and reason, admission
	// annotations and more.
	Annotations map[string]string `json:"annotations,omitempty"`
}

// UserInfo mirrors authentication.k8s.io/v1 UserInfo.
type UserInfo struct {
	Username string              `json:"username,omitempty"`
	UID      string              `json:"uid,omitempty"`
	Groups   []string            `json:"groups,omitempty"`
	Extra    map[string][]string `json:"extra,omitempty"`
}

// AuthenticationMetadata mirrors audit.k8s.io/v1 AuthenticationMetadata.
type AuthenticationMetadata struct {
	// ImpersonationConstraint is the verb the constrained-impersonation
	// authorizer checked, when impersonation was constrained.
	ImpersonationConstraint string `json:"impersonationConstraint,omitempty"`
}

// ObjectReference mirrors audit.k8s.io/v1 ObjectReference.
type ObjectReference struct {
	Resource        string `json:"resource,omitempty"`
	Namespace       string `json:"namespace,omitempty"`
	Name            string `json:"name,omitempty"`
	UID             string `json:"uid,omitempty"`
	APIGroup        string `json:"apiGroup,omitempty"`
	APIVersion      string `json:"apiVersion,omitempty"`
	ResourceVersion string `json:"resourceVersion,omitempty"`
	Subresource     string `json:"subresource,omitempty"`
}

// Status mirrors the parts of meta/v1 Status that audit events carry. Details
// and metadata are kept raw.
type Status struct {
	Metadata json.RawMessage `json:"metadata,omitempty"`
	Status   string          `json:"status,omitempty"`
	Message  string          `json:"message,omitempty"`
	Reason   string          `json:"reason,omitempty"`
	Details  json.RawMessage `json:"details,omitempty"`
	Code     int32           `json:"code,omitempty"`
}

// MicroTime is a timestamp with microsecond precision, written as RFC 3339
// with six fractional digits, like meta/v1 MicroTime.
type MicroTime struct{ time.Time }

// MicroTimeLayout is the layout the API server writes MicroTime values in.
const MicroTimeLayout = "2006-01-02T15:04:05.000000Z07:00"

// MarshalJSON writes the time as the API server does; the zero time is null.
func (t MicroTime) MarshalJSON() ([]byte, error) {
	if t.IsZero() {
		return []byte("null"), nil
	}
	b := make([]byte, 0, len(MicroTimeLayout)+2)
	b = append(b, '"')
	b = t.UTC().AppendFormat(b, MicroTimeLayout)
	return append(b, '"'), nil
}

// UnmarshalJSON accepts RFC 3339 with any fractional precision, and null.
func (t *MicroTime) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		t.Time = time.Time{}
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	if s == "" {
		t.Time = time.Time{}
		return nil
	}
	pt, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return err
	}
	t.Time = pt
	return nil
}

// LastSourceIP is the one source IP the API server saw itself (the peer
// address); every earlier entry came from client-controlled headers.
func (e *Event) LastSourceIP() string {
	if len(e.SourceIPs) == 0 {
		return ""
	}
	return e.SourceIPs[len(e.SourceIPs)-1]
}

// Time is the event's position in time: its stage timestamp, or when that is
// missing, the time the request was received.
func (e *Event) Time() time.Time {
	if !e.StageTimestamp.IsZero() {
		return e.StageTimestamp.Time
	}
	return e.RequestReceivedTimestamp.Time
}

// EventList mirrors audit.k8s.io/v1 EventList, the body of a webhook batch.
type EventList struct {
	Kind       string          `json:"kind,omitempty"`
	APIVersion string          `json:"apiVersion,omitempty"`
	Metadata   json.RawMessage `json:"metadata,omitempty"`
	Items      []Event         `json:"items"`
}
