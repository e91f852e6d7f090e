package query

import (
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/kubetrail/kubetrail/internal/audit"
)

// kind is how a field's values are compared.
type kind uint8

const (
	kString  kind = iota + 1 // one string; "" when absent
	kStrings                 // zero or more strings
	kIP                      // zero or more IP addresses, as strings
	kPeer                    // one IP address, as a string; "" when absent
	kCode                    // an HTTP status code; no value when absent
	kLevel                   // a string, also ordered None < Metadata < Request < RequestResponse
	kTime                    // a timestamp; no value when absent
	kBody                    // raw JSON text of a body; "" when absent
)

// fieldSpec describes one field: its names, how it compares and how to read
// it from an event. Exactly one accessor is set, matching kind and keyed.
type fieldSpec struct {
	name    string   // canonical name, as printed
	aliases []string // lower-case alternative names, dotted event paths included
	kind    kind
	keyed   bool // takes a [KEY]
	doc     string

	str       func(ev *audit.Event, cluster string) string
	strs      func(ev *audit.Event) []string
	keyedStr  func(ev *audit.Event, key string) string
	keyedStrs func(ev *audit.Event, key string) []string
	code      func(ev *audit.Event) (int, bool)
	time      func(ev *audit.Event) time.Time
}

// multi reports whether an event may hold several values of the field.
func (s *fieldSpec) multi() bool {
	return s.kind == kStrings || s.kind == kIP
}

func impersonated(ev *audit.Event) *audit.UserInfo {
	if ev.ImpersonatedUser != nil {
		return ev.ImpersonatedUser
	}
	return &noUser
}

func objectRef(ev *audit.Event) *audit.ObjectReference {
	if ev.ObjectRef != nil {
		return ev.ObjectRef
	}
	return &noObject
}

func status(ev *audit.Event) *audit.Status {
	if ev.ResponseStatus != nil {
		return ev.ResponseStatus
	}
	return &noStatus
}

// Zero values standing in for absent parts of an event. They are never
// written to.
var (
	noUser   audit.UserInfo
	noObject audit.ObjectReference
	noStatus audit.Status
)

// bytesString views b as a string without copying. The result must not
// outlive the Match call that reads it; events are not modified during
// Match.
func bytesString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(unsafe.SliceData(b), len(b))
}

// decisionAnnotation is the annotation the authorizer records its decision in.
const decisionAnnotation = "authorization.k8s.io/decision"

// buildSpecs returns the field table, in documentation order.
func buildSpecs() []*fieldSpec {
	s := func(name, doc string, aliases []string, get func(ev *audit.Event, cluster string) string) *fieldSpec {
		return &fieldSpec{name: name, doc: doc, aliases: aliases, kind: kString, str: get}
	}
	return []*fieldSpec{
		s("user", "user.username, the authenticated user; empty when authentication failed", []string{"username", "user.username"},
			func(ev *audit.Event, _ string) string { return ev.User.Username }),
		{name: "group", doc: "any of user.groups", aliases: []string{"groups", "user.groups"}, kind: kStrings,
			strs: func(ev *audit.Event) []string { return ev.User.Groups }},
		s("user.uid", "user.uid", nil,
			func(ev *audit.Event, _ string) string { return ev.User.UID }),
		{name: "user.extra", doc: "any of user.extra[KEY]", kind: kStrings, keyed: true,
			keyedStrs: func(ev *audit.Event, k string) []string { return ev.User.Extra[k] }},
		s("as", "impersonatedUser.username, the user the request impersonated; empty without impersonation", []string{"impersonateduser", "impersonateduser.username"},
			func(ev *audit.Event, _ string) string { return impersonated(ev).Username }),
		{name: "as.group", doc: "any of impersonatedUser.groups", aliases: []string{"as.groups", "impersonateduser.groups"}, kind: kStrings,
			strs: func(ev *audit.Event) []string { return impersonated(ev).Groups }},
		s("as.uid", "impersonatedUser.uid", []string{"impersonateduser.uid"},
			func(ev *audit.Event, _ string) string { return impersonated(ev).UID }),
		{name: "as.extra", doc: "any of impersonatedUser.extra[KEY]", aliases: []string{"impersonateduser.extra"}, kind: kStrings, keyed: true,
			keyedStrs: func(ev *audit.Event, k string) []string { return impersonated(ev).Extra[k] }},
		s("verb", "the Kubernetes verb (get, list, watch, create, update, patch, delete, deletecollection) or HTTP method", nil,
			func(ev *audit.Event, _ string) string { return ev.Verb }),
		s("resource", "objectRef.resource", []string{"objectref.resource"},
			func(ev *audit.Event, _ string) string { return objectRef(ev).Resource }),
		s("subresource", "objectRef.subresource", []string{"objectref.subresource"},
			func(ev *audit.Event, _ string) string { return objectRef(ev).Subresource }),
		s("ns", "objectRef.namespace; empty for cluster-scoped objects", []string{"namespace", "objectref.namespace"},
			func(ev *audit.Event, _ string) string { return objectRef(ev).Namespace }),
		s("name", "objectRef.name", []string{"objectref.name"},
			func(ev *audit.Event, _ string) string { return objectRef(ev).Name }),
		s("apigroup", "objectRef.apiGroup; empty for the core group", []string{"objectref.apigroup"},
			func(ev *audit.Event, _ string) string { return objectRef(ev).APIGroup }),
		s("apiversion", "objectRef.apiVersion", []string{"objectref.apiversion"},
			func(ev *audit.Event, _ string) string { return objectRef(ev).APIVersion }),
		s("objectRef.uid", "objectRef.uid", nil,
			func(ev *audit.Event, _ string) string { return objectRef(ev).UID }),
		s("objectRef.resourceVersion", "objectRef.resourceVersion", []string{"resourceversion"},
			func(ev *audit.Event, _ string) string { return objectRef(ev).ResourceVersion }),
		{name: "code", doc: "responseStatus.code, the HTTP status; no value when the event has none", aliases: []string{"responsestatus.code"}, kind: kCode,
			code: func(ev *audit.Event) (int, bool) {
				if ev.ResponseStatus == nil || ev.ResponseStatus.Code == 0 {
					return 0, false
				}
				return int(ev.ResponseStatus.Code), true
			}},
		s("status", "responseStatus.status (Success, Failure)", []string{"responsestatus.status"},
			func(ev *audit.Event, _ string) string { return status(ev).Status }),
		s("reason", "responseStatus.reason (Forbidden, NotFound, ...)", []string{"responsestatus.reason"},
			func(ev *audit.Event, _ string) string { return status(ev).Reason }),
		s("message", "responseStatus.message", []string{"responsestatus.message"},
			func(ev *audit.Event, _ string) string { return status(ev).Message }),
		{name: "ip", doc: "any entry of sourceIPs, including those a client can forge", aliases: []string{"sourceip", "sourceips"}, kind: kIP,
			strs: func(ev *audit.Event) []string { return ev.SourceIPs }},
		{name: "peer", doc: "the last entry of sourceIPs, the address the API server saw", aliases: []string{"ip.peer"}, kind: kPeer,
			str: func(ev *audit.Event, _ string) string { return ev.LastSourceIP() }},
		s("ua", "userAgent, as the client reported it", []string{"useragent"},
			func(ev *audit.Event, _ string) string { return ev.UserAgent }),
		{name: "level", doc: "the audit level (None, Metadata, Request, RequestResponse), ordered for < <= > >=", kind: kLevel,
			str: func(ev *audit.Event, _ string) string { return string(ev.Level) }},
		s("stage", "the stage (RequestReceived, ResponseStarted, ResponseComplete, Panic)", nil,
			func(ev *audit.Event, _ string) string { return string(ev.Stage) }),
		s("uri", "requestURI, query string included", []string{"requesturi"},
			func(ev *audit.Event, _ string) string { return ev.RequestURI }),
		s("auditid", "auditID; not unique, a client may set it", nil,
			func(ev *audit.Event, _ string) string { return ev.AuditID }),
		s("cluster", "the cluster the event came from, as kubetrail recorded it", nil,
			func(_ *audit.Event, cluster string) string { return cluster }),
		s("decision", "the "+decisionAnnotation+" annotation (allow, forbid)", nil,
			func(ev *audit.Event, _ string) string { return ev.Annotations[decisionAnnotation] }),
		{name: "annotation", doc: "annotations[KEY]; empty when absent", aliases: []string{"annotations"}, kind: kString, keyed: true,
			keyedStr: func(ev *audit.Event, k string) string { return ev.Annotations[k] }},
		{name: "time", doc: "stageTimestamp, or requestReceivedTimestamp when the stage has none", aliases: []string{"stagetimestamp"}, kind: kTime,
			time: func(ev *audit.Event) time.Time { return ev.Time() }},
		{name: "received", doc: "requestReceivedTimestamp", aliases: []string{"requestreceivedtimestamp"}, kind: kTime,
			time: func(ev *audit.Event) time.Time { return ev.RequestReceivedTimestamp.Time }},
		s("impersonationConstraint", "authenticationMetadata.impersonationConstraint", []string{"authenticationmetadata.impersonationconstraint"},
			func(ev *audit.Event, _ string) string {
				if ev.AuthenticationMetadata == nil {
					return ""
				}
				return ev.AuthenticationMetadata.ImpersonationConstraint
			}),
		{name: "requestObject", doc: "the request body as raw JSON text; empty below level Request", kind: kBody,
			str: func(ev *audit.Event, _ string) string { return bytesString(ev.RequestObject) }},
		{name: "responseObject", doc: "the response body as raw JSON text; empty below level RequestResponse", kind: kBody,
			str: func(ev *audit.Event, _ string) string { return bytesString(ev.ResponseObject) }},
	}
}

// fieldTable indexes the field specs by every lower-case name they answer to.
type fieldTable struct {
	specs  []*fieldSpec
	byName map[string]*fieldSpec
	keyed  []string // lower-case dotted prefixes of keyed fields, e.g. "user.extra."
}

// fields is built on first use (not at start: a command that parses no
// filter must not pay for it) and never modified.
var fields = sync.OnceValue(newFieldTable)

func newFieldTable() *fieldTable {
	t := &fieldTable{specs: buildSpecs(), byName: map[string]*fieldSpec{}}
	for _, s := range t.specs {
		for _, n := range append([]string{s.name}, s.aliases...) {
			n = strings.ToLower(n)
			if t.byName[n] != nil {
				panic("BUG: duplicate field name " + n)
			}
			t.byName[n] = s
			if s.keyed {
				t.keyed = append(t.keyed, n+".")
			}
		}
	}
	return t
}

// resolve finds the field a name written in a filter refers to. A keyed
// field written as a dotted path (annotations.KEY, user.extra.KEY) gives
// its key too, with hasKey set.
func (t *fieldTable) resolve(name string) (spec *fieldSpec, key string, hasKey bool) {
	lower := strings.ToLower(name)
	if s := t.byName[lower]; s != nil {
		return s, "", false
	}
	for _, p := range t.keyed {
		if len(lower) > len(p) && strings.HasPrefix(lower, p) {
			return t.byName[p[:len(p)-1]], name[len(p):], true
		}
	}
	return nil, "", false
}

// names returns every name a field answers to, for suggestions.
func (t *fieldTable) names() []string {
	var out []string
	for _, s := range t.specs {
		out = append(out, s.name)
		out = append(out, s.aliases...)
	}
	return out
}

// list returns the canonical names, keyed ones with [KEY], for messages.
func (t *fieldTable) list() string {
	var b strings.Builder
	for i, s := range t.specs {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(s.name)
		if s.keyed {
			b.WriteString("[KEY]")
		}
	}
	return b.String()
}

// FieldInfo describes a field of the filter language, for help texts and
// completion.
type FieldInfo struct {
	// Name is the canonical name; Aliases are the other names it answers to
	// (field names are case-insensitive).
	Name    string
	Aliases []string
	// Keyed fields are written Name[KEY].
	Keyed bool
	// Multi fields hold any number of values per event: a comparison holds
	// when any value satisfies it, and its negation when none does.
	Multi bool
	// Doc says what the field is, in the event's terms.
	Doc string
}

// Fields lists the fields of the filter language in documentation order.
func Fields() []FieldInfo {
	out := make([]FieldInfo, 0, len(fields().specs))
	for _, s := range fields().specs {
		out = append(out, FieldInfo{
			Name: s.name, Aliases: append([]string(nil), s.aliases...),
			Keyed: s.keyed, Multi: s.multi(), Doc: s.doc,
		})
	}
	return out
}

// LookupField returns the canonical Field a name written in a filter refers
// to: LookupField("objectRef.namespace") is {Name: "ns"}, and
// LookupField("annotations.example.com/x") is {Name: "annotation", Key:
// "example.com/x"}. A keyed field named without its key gets Key "".
func LookupField(name string) (Field, bool) {
	s, key, _ := fields().resolve(name)
	if s == nil {
		return Field{}, false
	}
	return Field{Name: s.name, Key: key}, true
}

// FreeTextFields lists, in event terms, where free text (a quoted string
// standing alone) is searched.
func FreeTextFields() []string {
	return []string{
		"requestURI", "userAgent", "user.username", "impersonatedUser.username",
		"objectRef.namespace", "objectRef.name", "responseStatus.message",
		"annotations (values)", "requestObject (raw JSON)", "responseObject (raw JSON)",
	}
}

// FieldValues returns the values field has in ev, as the filter language
// compares them: none when the event lacks the field, several for the
// fields that hold many (groups, source IPs). Codes are decimal, times RFC
// 3339 with nanoseconds. Rules use it to group events by fields
// (threshold by user, sequence by user). It panics on a field LookupField
// did not return.
func FieldValues(f Field, ev *audit.Event, cluster string) []string {
	s := fields().byName[strings.ToLower(f.Name)]
	if s == nil {
		panic("BUG: query.FieldValues of unknown field " + f.Name)
	}
	one := func(v string) []string {
		if v == "" {
			return nil
		}
		return []string{v}
	}
	switch {
	case s.str != nil:
		return one(s.str(ev, cluster))
	case s.strs != nil:
		return s.strs(ev)
	case s.keyedStr != nil:
		return one(s.keyedStr(ev, f.Key))
	case s.keyedStrs != nil:
		return s.keyedStrs(ev, f.Key)
	case s.code != nil:
		if c, ok := s.code(ev); ok {
			return []string{strconv.Itoa(c)}
		}
		return nil
	case s.time != nil:
		if t := s.time(ev); !t.IsZero() {
			return []string{t.UTC().Format(time.RFC3339Nano)}
		}
		return nil
	}
	return nil
}
