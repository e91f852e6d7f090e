package audit

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// GKE writes Kubernetes audit events to Cloud Logging as Cloud Audit Logs
// LogEntry records whose protoPayload is a google.cloud.audit.AuditLog. The
// mapping to the v1 Event shape is documented in docs/formats.md; fields that
// GKE does not carry (the exact requestURI, the stage, the user's groups) are
// inferred or left empty, and every mapped event carries the annotation
// AnnotationOrigin so nobody mistakes it for an API server's own line.

// AnnotationOrigin marks an event kubetrail built from another shape.
const AnnotationOrigin = "kubetrail.io/origin"

type gkeEntry struct {
	InsertID  string    `json:"insertId"`
	Timestamp time.Time `json:"timestamp"`
	Operation *struct {
		ID    string `json:"id"`
		First bool   `json:"first"`
		Last  bool   `json:"last"`
	} `json:"operation"`
	Labels       map[string]string `json:"labels"`
	ProtoPayload struct {
		Type               string `json:"@type"`
		AuthenticationInfo struct {
			PrincipalEmail string `json:"principalEmail"`
		} `json:"authenticationInfo"`
		RequestMetadata struct {
			CallerIP                string `json:"callerIp"`
			CallerSuppliedUserAgent string `json:"callerSuppliedUserAgent"`
		} `json:"requestMetadata"`
		MethodName   string `json:"methodName"`
		ResourceName string `json:"resourceName"`
		ServiceName  string `json:"serviceName"`
		Status       *struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"status"`
		Request  json.RawMessage `json:"request"`
		Response json.RawMessage `json:"response"`
	} `json:"protoPayload"`
}

// fromGKE maps one Cloud Audit Logs entry to a v1 Event.
func fromGKE(raw []byte) (Record, error) {
	var e gkeEntry
	if err := json.Unmarshal(raw, &e); err != nil {
		return Record{}, fmt.Errorf("%s", describeJSONError(raw, err))
	}
	p := &e.ProtoPayload
	if p.ServiceName != "" && p.ServiceName != "k8s.io" {
		return Record{}, fmt.Errorf("serviceName %q is not k8s.io: not a Kubernetes audit entry", p.ServiceName)
	}
	if p.MethodName == "" {
		return Record{}, fmt.Errorf("protoPayload has no methodName")
	}
	ev := Event{
		Kind:       "Event",
		APIVersion: APIVersionV1,
		Level:      LevelMetadata,
		AuditID:    e.InsertID,
		Stage:      StageResponseComplete,
		User:       UserInfo{Username: p.AuthenticationInfo.PrincipalEmail},
		UserAgent:  p.RequestMetadata.CallerSuppliedUserAgent,
		Annotations: map[string]string{
			AnnotationOrigin: "gke:" + e.InsertID,
		},
	}
	if e.Operation != nil && e.Operation.ID != "" {
		ev.AuditID = e.Operation.ID
		if e.Operation.First && !e.Operation.Last {
			ev.Stage = StageResponseStarted
		}
	}
	if ev.AuditID == "" {
		return Record{}, fmt.Errorf("entry has neither operation.id nor insertId")
	}
	if e.Timestamp.IsZero() {
		return Record{}, fmt.Errorf("entry has no timestamp")
	}
	ts := MicroTime{e.Timestamp.UTC().Truncate(time.Microsecond)}
	ev.RequestReceivedTimestamp, ev.StageTimestamp = ts, ts
	if ip := p.RequestMetadata.CallerIP; ip != "" {
		ev.SourceIPs = []string{ip}
	}
	for k, v := range e.Labels {
		if strings.Contains(k, "/") {
			ev.Annotations[k] = v
		}
	}
	if len(p.Request) > 0 && string(p.Request) != "null" {
		ev.Level = LevelRequest
		ev.RequestObject = p.Request
	}
	if len(p.Response) > 0 && string(p.Response) != "null" {
		ev.Level = LevelRequestResponse
		ev.ResponseObject = p.Response
	}
	code, status := 200, "Success"
	if p.Status != nil && p.Status.Code != 0 {
		code, status = grpcToHTTP(p.Status.Code), "Failure"
	}
	ev.ResponseStatus = &Status{Metadata: json.RawMessage("{}"), Code: int32(code)}
	if status == "Failure" {
		ev.ResponseStatus.Status = status
		ev.ResponseStatus.Message = p.Status.Message
	}
	ev.Verb, ev.ObjectRef, ev.RequestURI = gkeRequest(p.MethodName, p.ResourceName)
	out, err := json.Marshal(&ev)
	if err != nil {
		return Record{}, err
	}
	return Record{Event: ev, Raw: out, Format: FormatGKE}, nil
}

// gkeRequest infers verb, object and URI from a method name such as
// io.k8s.core.v1.secrets.delete or io.k8s.core.v1.pods.exec.create and a
// resource name such as core/v1/namespaces/production/secrets/important.
func gkeRequest(method, resource string) (string, *ObjectReference, string) {
	m := strings.Split(strings.TrimPrefix(method, "io.k8s."), ".")
	verb := m[len(m)-1]
	if len(m) < 4 {
		// Non-resource request such as io.k8s.get on /healthz.
		return verb, nil, "/" + strings.TrimPrefix(resource, "/")
	}
	// group may contain dots (apps, rbac.authorization.k8s.io): the version
	// is the first part that looks like v1, v1beta1...
	vi := -1
	for i := 1; i+2 < len(m); i++ {
		if isAPIVersion(m[i]) {
			vi = i
			break
		}
	}
	if vi < 0 {
		// No group.version.resource.verb shape: keep what we know.
		return verb, nil, "/" + strings.TrimPrefix(resource, "/")
	}
	group := strings.Join(m[:vi], ".")
	if group == "core" {
		group = ""
	}
	ref := &ObjectReference{APIGroup: group, APIVersion: m[vi]}
	rest := m[vi+1 : len(m)-1]
	if len(rest) > 0 {
		ref.Resource = rest[0]
	}
	if len(rest) > 1 {
		ref.Subresource = rest[1]
	}
	parts := strings.Split(strings.Trim(resource, "/"), "/")
	for i := 0; i+1 < len(parts); i++ {
		switch {
		case parts[i] == "namespaces" && i+1 < len(parts) && ref.Resource != "namespaces":
			ref.Namespace = parts[i+1]
		case parts[i] == ref.Resource:
			ref.Name = parts[i+1]
		}
	}
	if ref.Resource == "namespaces" && len(parts) >= 4 {
		ref.Name = parts[3]
	}
	uri := "/apis/" + group + "/" + ref.APIVersion
	if group == "" {
		uri = "/api/" + ref.APIVersion
	}
	if ref.Namespace != "" {
		uri += "/namespaces/" + ref.Namespace
	}
	uri += "/" + ref.Resource
	if ref.Name != "" {
		uri += "/" + ref.Name
	}
	if ref.Subresource != "" {
		uri += "/" + ref.Subresource
	}
	return verb, ref, uri
}

func isAPIVersion(s string) bool {
	return len(s) >= 2 && s[0] == 'v' && s[1] >= '1' && s[1] <= '9'
}

// grpcToHTTP maps google.rpc.Code to the HTTP status the API server answered.
func grpcToHTTP(code int) int {
	switch code {
	case 0:
		return 200
	case 1:
		return 499
	case 3, 9, 11:
		return 400
	case 4:
		return 504
	case 5:
		return 404
	case 6, 10:
		return 409
	case 7:
		return 403
	case 8:
		return 429
	case 12:
		return 501
	case 14:
		return 503
	case 16:
		return 401
	default:
		return 500
	}
}
