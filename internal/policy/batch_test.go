package policy

import (
	"bytes"
	"compress/gzip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/kubetrail/kubetrail/internal/audit"
)

const evalPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
  - level: None
    nonResourceURLs: ["/healthz*"]
  - level: Metadata
    resources:
      - group: ""
        resources: ["secrets"]
  - level: None
    users: ["system:kube-proxy"]
  - level: RequestResponse
    resources:
      - group: ""
        resources: ["pods/exec", "pods/attach"]
    omitManagedFields: true
  - level: Metadata
    userGroups: ["system:unauthenticated"]
    omitStages: ["Panic", "ResponseStarted"]
`

func mustEvaluator(t *testing.T, src string) *Evaluator {
	t.Helper()
	p, err := Load("policy.yaml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	return NewEvaluator(p)
}

func TestEvalRequests(t *testing.T) {
	ev := mustEvaluator(t, evalPolicy)
	in := `{"user":"alice","groups":["dev"],"verb":"get","apiGroup":"","apiVersion":"v1","resource":"pods","subresource":"exec","namespace":"default","name":"web","path":"/api/v1/namespaces/default/pods/web/exec","resourceRequest":true}
{"verb":"get","path":"/healthz/ready"}

{"user":"bob","verb":"list","resource":"secrets","namespace":"prod"}
{"user":"system:anonymous","groups":["system:unauthenticated"],"verb":"get","path":"/version"}
{"verb":"get","path":"/version"}
{"user":"alice","verb":"get","namepsace":"default"}
{"groups":["dev"],"verb":"get"}
{"user":"alice","verb":["get"]}
not json
{"user":"system:kube-proxy","verb":"watch","resource":"endpoints"}
`
	var out bytes.Buffer
	var bad []string
	nbad, err := EvalRequests(ev, "req.jsonl", strings.NewReader(in), &out, func(m string) { bad = append(bad, m) })
	if err != nil {
		t.Fatal(err)
	}
	want := `{"level":"RequestResponse","omitStages":["RequestReceived"],"omitManagedFields":true,"rule":3}
{"level":"None","omitStages":["RequestReceived"],"omitManagedFields":false,"rule":0}
{"level":"Metadata","omitStages":["RequestReceived"],"omitManagedFields":false,"rule":1}
{"level":"Metadata","omitStages":["RequestReceived","ResponseStarted","Panic"],"omitManagedFields":false,"rule":4}
{"level":"None","omitStages":["RequestReceived"],"omitManagedFields":false,"rule":-1}
{"line":7,"error":"req.jsonl:7: unknown key \"namepsace\" (did you mean namespace?)"}
{"line":8,"error":"req.jsonl:8: \"groups\" without \"user\": a request without user information has no groups; add \"user\" (\"\" is allowed) or drop \"groups\""}
{"line":9,"error":"req.jsonl:9: \"verb\" must be a string, got a JSON array"}
{"line":10,"error":"req.jsonl:10: not JSON: invalid character 'o' in literal null (expecting 'u') (at byte 2)"}
{"level":"None","omitStages":["RequestReceived"],"omitManagedFields":false,"rule":2}
`
	if diff := cmp.Diff(want, out.String()); diff != "" {
		t.Errorf("output (-want +got):\n%s", diff)
	}
	if nbad != 4 || len(bad) != 4 || !strings.HasPrefix(bad[0], "req.jsonl:7: ") {
		t.Errorf("bad lines %d: %q", nbad, bad)
	}
}

func TestEvalLog(t *testing.T) {
	ev := mustEvaluator(t, evalPolicy)
	log := `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":"a1","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/default/pods/web/exec?command=sh","verb":"create","user":{"username":"alice","groups":["dev","system:authenticated"]},"objectRef":{"resource":"pods","namespace":"default","name":"web","apiVersion":"v1","subresource":"exec"},"requestReceivedTimestamp":"2026-01-02T15:04:05.000000Z","stageTimestamp":"2026-01-02T15:04:05.100000Z"}
{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"a2","stage":"ResponseComplete","requestURI":"/version","verb":"get","user":{},"requestReceivedTimestamp":"2026-01-02T15:04:05.000000Z","stageTimestamp":"2026-01-02T15:04:05.100000Z"}
{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"a3","stage":"ResponseComplete","requestURI":"/healthz?verbose","verb":"get","user":{"username":"system:anonymous","groups":["system:unauthenticated"]},"requestReceivedTimestamp":"2026-01-02T15:04:05.000000Z","stageTimestamp":"2026-01-02T15:04:05.100000Z"}
{"kind":"Event","broken
`
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte(log))
	zw.Close()
	for name, in := range map[string][]byte{"plain": []byte(log), "gzip": gz.Bytes()} {
		var out bytes.Buffer
		var bad []string
		nbad, err := EvalLog(ev, "audit.log", bytes.NewReader(in), &out, func(m string) { bad = append(bad, m) })
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(out.String()), "\n")
		want := []string{
			`{"line":1,"auditID":"a1","stage":"ResponseComplete","recordedLevel":"RequestResponse","level":"RequestResponse","omitStages":["RequestReceived"],"omitManagedFields":true,"rule":3}`,
			`{"line":2,"auditID":"a2","stage":"ResponseComplete","recordedLevel":"Metadata","level":"None","omitStages":["RequestReceived"],"omitManagedFields":false,"rule":-1}`,
			`{"line":3,"auditID":"a3","stage":"ResponseComplete","recordedLevel":"Metadata","level":"None","omitStages":["RequestReceived"],"omitManagedFields":false,"rule":0}`,
		}
		if diff := cmp.Diff(want, lines[:min(3, len(lines))]); diff != "" {
			t.Errorf("%s: (-want +got):\n%s", name, diff)
		}
		if nbad != 1 || len(lines) != 4 || !strings.HasPrefix(lines[3], `{"line":4,"error":"audit.log:4: `) {
			t.Errorf("%s: bad lines %d %q, output %q", name, nbad, bad, lines)
		}
	}
}

func TestParseRequest(t *testing.T) {
	r, err := ParseRequest([]byte(`{"verb":"get","path":"/healthz"}`))
	if err != nil || r.ResourceRequest || r.User != nil {
		t.Fatalf("%+v %v", r, err)
	}
	r, err = ParseRequest([]byte(`{"user":"","verb":"get","resource":"pods","resourceRequest":false}`))
	if err != nil || r.ResourceRequest || r.User == nil || r.User.Name != "" {
		t.Fatalf("explicit resourceRequest false and empty user: %+v %v", r, err)
	}
	r, err = ParseRequest([]byte(`{"user":null,"verb":"get","resource":"pods"}`))
	if err != nil || !r.ResourceRequest || r.User != nil {
		t.Fatalf("null user, resource implies resourceRequest: %+v %v", r, err)
	}
	if _, err := ParseRequest([]byte(`{"verb":"get"} {"verb":"list"}`)); err == nil {
		t.Fatal("two objects on a line accepted")
	}
}

func TestRequestFromEvent(t *testing.T) {
	ev := &audit.Event{
		Verb:             "get",
		RequestURI:       "/api/v1/namespaces/a%20b/pods?watch=true",
		User:             audit.UserInfo{Username: "alice", Groups: []string{"dev"}},
		ImpersonatedUser: &audit.UserInfo{Username: "bob"},
	}
	got := RequestFromEvent(ev)
	want := &Request{User: &UserInfo{Name: "alice", Groups: []string{"dev"}}, Verb: "get", Path: "/api/v1/namespaces/a b/pods"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	ev = &audit.Event{Verb: "list", RequestURI: "/apis/apps/v1/deployments",
		ObjectRef: &audit.ObjectReference{Resource: "deployments", APIGroup: "apps", APIVersion: "v1"}}
	got = RequestFromEvent(ev)
	want = &Request{Verb: "list", APIGroup: "apps", APIVersion: "v1", Resource: "deployments", Path: "/apis/apps/v1/deployments", ResourceRequest: true}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("failed authentication (-want +got):\n%s", diff)
	}

	// A create's objectRef carries the name (and namespace) of the body,
	// which the API server filled in after choosing the level with the
	// URL's: the name is "" then, so a rule with resourceNames does not
	// match. A subresource create names its object in the URL.
	f := func(uri string, ref audit.ObjectReference, wantNS, wantName string) {
		t.Helper()
		got := RequestFromEvent(&audit.Event{Verb: "create", RequestURI: uri, ObjectRef: &ref})
		if got.Namespace != wantNS || got.Name != wantName {
			t.Errorf("create %s: namespace %q name %q, want %q %q", uri, got.Namespace, got.Name, wantNS, wantName)
		}
	}
	f("/api/v1/namespaces/prod/configmaps?fieldManager=kubectl-create", audit.ObjectReference{Resource: "configmaps", Namespace: "prod", Name: "cfg"}, "prod", "")
	f("/apis/rbac.authorization.k8s.io/v1/clusterroles", audit.ObjectReference{Resource: "clusterroles", Namespace: "bogus", Name: "admin2"}, "", "")
	f("/api/v1/namespaces", audit.ObjectReference{Resource: "namespaces", Name: "prod"}, "", "")
	f("/api/v1/namespaces/prod/pods/web/exec?command=sh", audit.ObjectReference{Resource: "pods", Subresource: "exec", Namespace: "prod", Name: "web"}, "prod", "web")
	f("/api/v1/namespaces/prod/serviceaccounts/build/token", audit.ObjectReference{Resource: "serviceaccounts", Subresource: "token", Namespace: "prod", Name: "build"}, "prod", "build")
	f("/api/v1/namespaces/prod/finalize", audit.ObjectReference{Resource: "namespaces", Subresource: "finalize", Name: "prod"}, "prod", "prod")
	// Not an API path: objectRef is all there is.
	f("/weird", audit.ObjectReference{Resource: "configmaps", Namespace: "prod", Name: "cfg"}, "prod", "cfg")
}
