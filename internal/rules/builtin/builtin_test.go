package builtin

import (
	"encoding/json"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kubetrail/kubetrail/internal/audit"
	"github.com/kubetrail/kubetrail/internal/rules"
	"github.com/kubetrail/kubetrail/internal/rules/native"
)

func TestPackLoads(t *testing.T) {
	rs := Rules()
	if len(rs) < 15 {
		t.Fatalf("%d rules", len(rs))
	}
	for _, r := range rs {
		if r.Description == "" || len(r.Tags) == 0 {
			t.Errorf("%s: every built-in rule needs a description and ATT&CK tags", r.Name)
		}
	}
}

// e builds an event from a few fields: user, verb, res ("pods/exec"),
// ns/name, stage, code; opts set more: "as", "body" (requestObject JSON),
// "uri", "decision", "sec" (seconds after t0).
func e(t *testing.T, user, verb, res, nsName, stage string, code int, opts ...string) *rules.Event {
	t.Helper()
	o := map[string]string{}
	for i := 0; i+1 < len(opts); i += 2 {
		o[opts[i]] = opts[i+1]
	}
	resource, sub, _ := strings.Cut(res, "/")
	ns, name, _ := strings.Cut(nsName, "/")
	m := map[string]any{
		"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Request", "auditID": "id-" + verb + "-" + res,
		"stage": stage, "requestURI": "/api/v1/x", "verb": verb,
		"user":                     map[string]any{"username": user},
		"sourceIPs":                []string{"10.0.0.9"},
		"objectRef":                map[string]any{"resource": resource, "subresource": sub, "namespace": ns, "name": name},
		"responseStatus":           map[string]any{"code": code},
		"requestReceivedTimestamp": "2026-12-01T10:00:00Z",
		"stageTimestamp":           "2026-12-01T10:00:00Z",
	}
	if v, ok := o["as"]; ok {
		m["impersonatedUser"] = map[string]any{"username": v}
	}
	if v, ok := o["body"]; ok {
		m["requestObject"] = json.RawMessage(v)
	}
	if v, ok := o["uri"]; ok {
		m["requestURI"] = v
	}
	if v, ok := o["decision"]; ok {
		m["annotations"] = map[string]string{"authorization.k8s.io/decision": v}
	}
	if v, ok := o["sec"]; ok {
		d, _ := time.ParseDuration(v + "s")
		ts := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC).Add(d).Format(time.RFC3339Nano)
		m["stageTimestamp"], m["requestReceivedTimestamp"] = ts, ts
		m["auditID"] = m["auditID"].(string) + "-" + v
	}
	raw, _ := json.Marshal(m)
	ev := &audit.Event{}
	if err := audit.DecodeStored(raw, ev); err != nil {
		t.Fatalf("%s: %v", raw, err)
	}
	return &rules.Event{Ev: ev, Raw: raw, Cluster: "prod"}
}

func alerts(ev *native.Evaluator, evs ...*rules.Event) []string {
	var out []string
	for _, x := range evs {
		for _, a := range ev.Eval(x) {
			out = append(out, a.Rule)
		}
	}
	return out
}

// TestPackCatches gives each rule an event it must catch and one like it
// that it must not (the false positive its description rules out).
func TestPackCatches(t *testing.T) {
	admin := `{"kind":"ClusterRoleBinding","subjects":[{"kind":"User","name":"mallory"}],"roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"cluster-admin"}}`
	view := strings.Replace(admin, "cluster-admin", "view", 1)
	wild := `{"kind":"ClusterRole","rules":[{"apiGroups":["*"],"resources":["*"],"verbs":["*"]}]}`
	escalate := `{"kind":"ClusterRole","rules":[{"apiGroups":["rbac.authorization.k8s.io"],"resources":["clusterroles"],"verbs":["get","escalate"]}]}`
	plain := `{"kind":"ClusterRole","rules":[{"apiGroups":[""],"resources":["pods"],"verbs":["get","list"]}]}`
	priv := `{"kind":"Pod","spec":{"containers":[{"name":"a","image":"x"},{"name":"b","image":"y","securityContext":{"privileged":true}}]}}`
	hostpath := `{"kind":"Pod","spec":{"volumes":[{"name":"root","hostPath":{"path":"/"}}],"containers":[{"name":"a","image":"x"}]}}`
	safe := `{"kind":"Pod","spec":{"containers":[{"name":"a","image":"x","securityContext":{"privileged":false}}]}}`
	cases := []struct {
		rule     string
		yes, not *rules.Event
	}{
		{"Binding to cluster-admin", e(t, "mallory", "create", "clusterrolebindings", "/pwn", "ResponseComplete", 201, "body", admin),
			e(t, "mallory", "create", "clusterrolebindings", "/ro", "ResponseComplete", 201, "body", view)},
		{"Binding to cluster-admin", e(t, "alice", "patch", "rolebindings", "prod/x", "ResponseComplete", 200, "body", admin),
			e(t, "system:apiserver", "create", "clusterrolebindings", "/cluster-admin", "ResponseComplete", 201, "body", admin)},
		{"Powerful ClusterRole written", e(t, "alice", "create", "clusterroles", "/x", "ResponseComplete", 201, "body", wild),
			e(t, "alice", "create", "clusterroles", "/x", "ResponseComplete", 201, "body", plain)},
		{"Powerful ClusterRole written", e(t, "alice", "update", "clusterroles", "/x", "ResponseComplete", 200, "body", escalate),
			e(t, "alice", "update", "clusterroles", "/x", "ResponseComplete", 403, "body", escalate)},
		{"Exec, attach or port-forward into a pod", e(t, "alice", "get", "pods/exec", "prod/web", "ResponseStarted", 101),
			e(t, "alice", "get", "pods/exec", "prod/web", "RequestReceived", 0)},
		{"Exec, attach or port-forward into a pod", e(t, "alice", "create", "pods/portforward", "prod/web", "ResponseComplete", 403),
			e(t, "alice", "get", "pods/log", "prod/web", "ResponseStarted", 200)},
		{"Privileged or host-access workload", e(t, "alice", "create", "pods", "prod/p", "ResponseComplete", 201, "body", priv),
			e(t, "alice", "create", "pods", "prod/p", "ResponseComplete", 201, "body", safe)},
		{"Privileged or host-access workload", e(t, "alice", "create", "daemonsets", "prod/d", "ResponseComplete", 201, "body", hostpath),
			e(t, "alice", "create", "pods", "kube-system/cni", "ResponseComplete", 201, "body", priv)},
		{"Ephemeral container added", e(t, "alice", "patch", "pods/ephemeralcontainers", "prod/web", "ResponseComplete", 200),
			e(t, "alice", "patch", "pods", "prod/web", "ResponseComplete", 200)},
		{"Secret read by a person", e(t, "alice", "list", "secrets", "/", "ResponseComplete", 200),
			e(t, "system:serviceaccount:kube-system:x", "list", "secrets", "/", "ResponseComplete", 200)},
		{"Secrets listed by a service account outside kube-system", e(t, "system:serviceaccount:prod:app", "list", "secrets", "prod/", "ResponseComplete", 200),
			e(t, "system:serviceaccount:prod:app", "get", "secrets", "prod/x", "ResponseComplete", 200)},
		{"Anonymous request allowed", e(t, "system:anonymous", "get", "pods", "prod/", "ResponseComplete", 200, "decision", "allow", "uri", "/api/v1/namespaces/prod/pods"),
			e(t, "system:anonymous", "get", "", "/", "ResponseComplete", 200, "decision", "allow", "uri", "/healthz")},
		{"Permission enumeration", e(t, "mallory", "create", "selfsubjectrulesreviews", "/", "ResponseComplete", 201),
			e(t, "system:kube-scheduler", "create", "selfsubjectaccessreviews", "/", "ResponseComplete", 201)},
		{"Service account token requested by a person", e(t, "mallory", "create", "serviceaccounts/token", "prod/app", "ResponseComplete", 201),
			e(t, "system:node:worker-1", "create", "serviceaccounts/token", "prod/app", "ResponseComplete", 201)},
		{"Certificate signing request approved", e(t, "mallory", "update", "certificatesigningrequests/approval", "/csr-1", "ResponseComplete", 200),
			e(t, "system:kube-controller-manager", "update", "certificatesigningrequests/approval", "/csr-1", "ResponseComplete", 200)},
		{"Admission control changed", e(t, "mallory", "delete", "validatingwebhookconfigurations", "/gatekeeper", "ResponseComplete", 200),
			e(t, "mallory", "get", "validatingwebhookconfigurations", "/gatekeeper", "ResponseComplete", 200)},
		{"Kubernetes events deleted", e(t, "mallory", "deletecollection", "events", "prod/", "ResponseComplete", 200),
			e(t, "system:kube-controller-manager", "delete", "events", "prod/e", "ResponseComplete", 200)},
		{"System identity impersonated", e(t, "mallory", "get", "secrets", "prod/x", "ResponseComplete", 200, "as", "system:kube-controller-manager"),
			e(t, "mallory", "get", "secrets", "prod/x", "ResponseComplete", 200, "as", "bob")},
	}
	for _, c := range cases {
		ev, _ := native.Load(Rules())
		if got := alerts(ev, c.yes); !slices.Contains(got, c.rule) {
			t.Errorf("%s: did not fire on %s (fired %q)", c.rule, c.yes.Raw, got)
		}
		if got := alerts(ev, c.not); slices.Contains(got, c.rule) {
			t.Errorf("%s: fired on %s", c.rule, c.not.Raw)
		}
	}
}

// TestPackIncident plays the seed's incident through the whole pack: the
// sequence rule fires once, at critical, naming the three steps.
func TestPackIncident(t *testing.T) {
	ev, _ := native.Load(Rules())
	binding := `{"kind":"ClusterRoleBinding","subjects":[{"kind":"User","name":"mallory"}],"roleRef":{"kind":"ClusterRole","name":"cluster-admin"}}`
	var seq []rules.Alert
	for _, x := range []*rules.Event{
		e(t, "mallory", "list", "secrets", "prod/", "ResponseComplete", 403, "sec", "0"),
		e(t, "admin", "create", "clusterrolebindings", "/mallory-admin", "ResponseComplete", 201, "body", binding, "sec", "60"),
		e(t, "mallory", "get", "secrets", "prod/db", "ResponseComplete", 200, "sec", "120"),
	} {
		for _, a := range ev.Eval(x) {
			if a.Rule == "Denied, then granted, then reading secrets" {
				seq = append(seq, a)
			}
		}
	}
	if len(seq) != 1 || seq[0].Severity != rules.Critical || len(seq[0].AuditIDs) != 3 || seq[0].User != "mallory" {
		t.Fatalf("sequence alerts %+v", seq)
	}
}

// TestBurstOfDenials: ten 403s in a minute fire once; nine do not.
func TestBurstOfDenials(t *testing.T) {
	ev, _ := native.Load(Rules())
	var got []string
	for i := range 19 {
		got = append(got, alerts(ev, e(t, "mallory", "get", "secrets", "prod/x", "ResponseComplete", 403, "sec", strconv.Itoa(i)))...)
	}
	n := 0
	for _, g := range got {
		if g == "Burst of denied requests" {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("burst fired %d times over 19 denials, want 1", n)
	}
}

// TestPackDocumented: every built-in rule is in docs/detection.md's table,
// with its severity, so the docs cannot drift from the pack.
func TestPackDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../../docs/detection.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range Rules() {
		if !strings.Contains(string(doc), "| "+r.Name+" | "+r.Severity.String()+" |") {
			t.Errorf("docs/detection.md has no row for %q (%s)", r.Name, r.Severity)
		}
	}
}
