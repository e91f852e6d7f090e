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

// gkeRequest infers verb, object and URI from a method name and a resource
// name. GKE writes the method as the API group's DNS labels reversed, then
// version, resource, subresource and verb:
// io.k8s.core.v1.pods.exec.create, io.k8s.authorization.rbac.v1.clusterrolebindings.create
// (rbac.authorization.k8s.io), io.gke.networking.v1.X.list (networking.gke.io).
// The built-in groups without a dot carry an implied k8s.io: core (the core
// group "") and apps, batch... (io.k8s.apps). The resource name starts with
// the group as the API server spells it (core/v1/namespaces/NS/pods/NAME,
// rbac.authorization.k8s.io/v1/clusterrolebindings/NAME), so that group wins
// when it is there; the reversed method is the fallback.
func gkeRequest(method, resource string) (string, *ObjectReference, string) {
	m := strings.Split(method, ".")
	verb := m[len(m)-1]
	vi := gkeVersionIndex(m)
	if vi < 0 {
		// Non-resource request such as io.k8s.get on /healthz.
		return verb, nil, "/" + strings.TrimPrefix(resource, "/")
	}
	ref := &ObjectReference{APIVersion: m[vi], Resource: m[vi+1]}
	if vi+3 < len(m) {
		ref.Subresource = m[vi+2]
	}
	parts := strings.Split(strings.Trim(resource, "/"), "/")
	if len(parts) >= 2 && parts[0] != "" && parts[1] == ref.APIVersion {
		ref.APIGroup, parts = parts[0], parts[2:]
		if ref.APIGroup == "core" {
			ref.APIGroup = ""
		}
	} else {
		ref.APIGroup = gkeGroup(m[:vi])
	}
	gkeObject(ref, parts)
	uri := "/apis/" + ref.APIGroup + "/" + ref.APIVersion
	if ref.APIGroup == "" {
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

// gkeVersionIndex finds the version in a split method name: it is followed by
// the resource and the verb, or by resource, subresource and verb, and
// preceded by at least two group labels. It is -1 for any other shape. Looking
// from the right keeps a group label that looks like a version (v1.example.com)
// from being taken for one.
func gkeVersionIndex(m []string) int {
	for _, i := range []int{len(m) - 3, len(m) - 4} {
		if i >= 2 && isAPIVersion(m[i]) {
			return i
		}
	}
	return -1
}

// gkeGroup turns the reversed labels of a method name back into the API
// group: io.k8s.authorization.rbac is rbac.authorization.k8s.io, io.k8s.core
// is the core group "", io.k8s.apps is apps, io.gke.networking is
// networking.gke.io.
func gkeGroup(labels []string) string {
	if len(labels) == 3 && labels[0] == "io" && labels[1] == "k8s" {
		// The built-in groups without a dot, written as io.k8s.NAME.
		switch labels[2] {
		case "core":
			return ""
		case "apps", "autoscaling", "batch", "policy", "extensions":
			return labels[2]
		}
	}
	rev := make([]string, len(labels))
	for i, l := range labels {
		rev[len(labels)-1-i] = l
	}
	return strings.Join(rev, ".")
}

// gkeObject sets namespace and name from the path of a resource name after
// its group and version: [namespaces/NS/]RESOURCE[/NAME[/SUBRESOURCE]], or
// namespaces/NAME for a namespace itself.
func gkeObject(ref *ObjectReference, parts []string) {
	if len(parts) >= 2 && parts[0] == "namespaces" {
		if ref.Resource == "namespaces" {
			ref.Name = parts[1]
			return
		}
		ref.Namespace, parts = parts[1], parts[2:]
	}
	if len(parts) >= 2 && parts[0] == ref.Resource {
		ref.Name = parts[1]
	}
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
