package main

import (
	"bufio"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/kubetrail/kubetrail/internal/audit"
	"github.com/kubetrail/kubetrail/internal/rules"
	"github.com/kubetrail/kubetrail/internal/rules/builtin"
	"github.com/kubetrail/kubetrail/internal/rules/native"
	"github.com/kubetrail/kubetrail/internal/testenv"
)

// TestJQCoverage: every enabled single-event rule of the pack has exactly
// one jq condition, the exec rule is known to alert once per request, and
// the threshold and sequence rules are the ones named as left out. A rule
// added to the pack without a jq condition, a renamed rule or a doubled
// condition is an error.
func TestJQCoverage(t *testing.T) {
	pack, conds := builtin.Rules(), packJQ()
	once, left, err := checkJQCoverage(pack, conds)
	if err != nil {
		t.Fatal(err)
	}
	if !once["Exec, attach or port-forward into a pod"] || once["Secret read by a person"] {
		t.Errorf("once per request: %v", once)
	}
	if want := []string{"Burst of denied requests", "Denied, then granted, then reading secrets", "Changes by a user just granted a powerful role"}; !slices.Equal(left, want) {
		t.Errorf("left out %q, want %q", left, want)
	}
	if _, _, err := checkJQCoverage(pack, conds[1:]); err == nil || !strings.Contains(err.Error(), conds[0].rule) {
		t.Errorf("a rule without a jq condition: %v", err)
	}
	renamed := append(slices.Clone(conds), jqRule{"No such rule", "true"})
	if _, _, err := checkJQCoverage(pack, renamed); err == nil || !strings.Contains(err.Error(), "No such rule") {
		t.Errorf("a condition naming no rule: %v", err)
	}
	twice := append(slices.Clone(conds), conds[2])
	if _, _, err := checkJQCoverage(pack, twice); err == nil || !strings.Contains(err.Error(), "two jq conditions") {
		t.Errorf("a rule with two conditions: %v", err)
	}
	threshold := append(slices.Clone(conds), jqRule{"Burst of denied requests", "true"})
	if _, _, err := checkJQCoverage(pack, threshold); err == nil {
		t.Errorf("a jq condition for a threshold rule was accepted")
	}
}

// TestJQAlertsAgreement: the check that compares jq's matches with
// kubetrail's alerts accepts equal sets, counts a once-per-request rule's
// stages once per request, and reports a missing, an extra or a
// different alert.
func TestJQAlertsAgreement(t *testing.T) {
	conds := []jqRule{{"Secret read", "x"}, {"Exec", "y"}}
	once := map[string]bool{"Secret read": false, "Exec": true}
	keep := map[string]bool{"Secret read": true, "Exec": true}
	kt := strings.Join([]string{
		`{"rule":"Exec","auditIDs":["e1"],"user":"bob"}`,
		`{"rule":"Secret read","auditIDs":["s1"],"user":"alice"}`,
		`{"rule":"Secret read","auditIDs":["s1"],"user":"alice"}`, // a client-set audit ID used twice
		`{"rule":"Burst","auditIDs":["d1","d2"],"user":"eve"}`,    // not a jq rule: ignored
		`{"rule":"Exec","auditIDs":["e2"],"user":"bob"}`,
	}, "\n") + "\n"
	jq := strings.Join([]string{
		"1\te1\t2026-11-01T10:00:00.000001Z\tbob", // ResponseStarted
		"0\ts1\t2026-11-01T10:00:01.000000Z\talice",
		"1\te1\t2026-11-01T10:00:00.000001Z\tbob", // ResponseComplete of the same request
		"0\ts1\t2026-11-01T10:00:02.000000Z\talice",
		"1\te2\t2026-11-01T10:05:00.000000Z\tbob",
	}, "\n") + "\n"
	agree := func(ktOut, jqOut string) error {
		t.Helper()
		a, err := ktAlerts(ktOut, keep)
		if err != nil {
			t.Fatal(err)
		}
		b, err := jqAlerts(jqOut, conds, once)
		if err != nil {
			t.Fatal(err)
		}
		return sameLines("kt", a, "jq", b)
	}
	if err := agree(kt, jq); err != nil {
		t.Fatalf("equal sets: %v", err)
	}
	if n := perRule(mustKt(t, kt, keep)); n["Exec"] != 2 || n["Secret read"] != 2 || n["Burst"] != 0 {
		t.Errorf("per rule %v", n)
	}
	// The same audit ID, receive time and user at a third stage is the same
	// request; another receive time is another request of a reused ID.
	if err := agree(kt, jq+"1\te2\t2026-11-01T10:05:00.000000Z\tbob\n"); err != nil {
		t.Errorf("a third stage of a request counted again: %v", err)
	}
	if err := agree(kt, jq+"1\te2\t2026-11-01T10:06:00.000000Z\tbob\n"); err == nil {
		t.Error("a second request with a reused audit ID was not counted")
	}
	// A single-event rule counts every match, even with the same key.
	if err := agree(kt, jq+"0\ts1\t2026-11-01T10:00:02.000000Z\talice\n"); err == nil {
		t.Error("an extra jq match of a rule without once was not reported")
	}
	lines := strings.Split(strings.TrimSpace(kt), "\n")
	if err := agree(strings.Join(lines[1:], "\n"), jq); err == nil {
		t.Error("an alert kubetrail lacks was not reported")
	}
	if err := agree(strings.Replace(kt, `"user":"bob"}`, `"user":"mallory"}`, 1), jq); err == nil {
		t.Error("an alert about another user was not reported")
	}
	if _, err := jqAlerts("7\tx\ty\tz\n", conds, once); err == nil {
		t.Error("a condition index out of range was accepted")
	}
	if _, err := jqAlerts("0\tx\ty\n", conds, once); err == nil {
		t.Error("a line with three fields was accepted")
	}
	if _, err := ktAlerts(`{"rule":"Exec","auditIDs":["a","b"]}`, keep); err == nil {
		t.Error("a single-event alert with two audit IDs was accepted")
	}
}

func mustKt(t *testing.T, out string, keep map[string]bool) []string {
	t.Helper()
	l, err := ktAlerts(out, keep)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestPackJQMatchesEngine runs the jq program with jq 1.6 and the pack
// with kubetrail's engine over the same events, edge cases of every
// single-event rule and a generated corpus, and requires the same
// alerts. A jq condition that drifts from its rule (a term left out, a
// wrong default for an absent field) fails here before a benchmark run.
func TestPackJQMatchesEngine(t *testing.T) {
	jq := testenv.JQ(t)
	dir := t.TempDir()
	log := filepath.Join(dir, "audit.log")
	events := edgeEvents()
	if !testing.Short() {
		gen, err := exec.Command("go", "run", "../gen", "--events", "5000", "--seed", "5").Output()
		if err != nil {
			t.Fatalf("bench/gen: %v", err)
		}
		events += string(gen)
	}
	if err := os.WriteFile(log, []byte(events), 0o600); err != nil {
		t.Fatal(err)
	}
	prog := filepath.Join(dir, "pack.jq")
	conds := packJQ()
	if err := os.WriteFile(prog, []byte(jqProgram(conds)), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(jq, "-r", "-f", prog, log).Output()
	if err != nil {
		t.Fatalf("jq -f pack.jq: %v", err)
	}
	once, _, err := checkJQCoverage(builtin.Rules(), conds)
	if err != nil {
		t.Fatal(err)
	}
	got, err := jqAlerts(string(out), conds, once)
	if err != nil {
		t.Fatal(err)
	}
	ev, probs := native.Load(builtin.Rules())
	if len(probs) > 0 {
		t.Fatal(probs)
	}
	var ktOut strings.Builder
	sc := bufio.NewScanner(strings.NewReader(events))
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		raw := append([]byte(nil), sc.Bytes()...)
		var e audit.Event
		if err := audit.DecodeStored(raw, &e); err != nil {
			t.Fatalf("%s: %v", raw, err)
		}
		for _, a := range ev.Eval(&rules.Event{Ev: &e, Raw: raw}) {
			b, _ := json.Marshal(map[string]any{"rule": a.Rule, "auditIDs": a.AuditIDs, "user": a.User})
			ktOut.Write(append(b, '\n'))
		}
	}
	keep := map[string]bool{}
	for r := range once {
		keep[r] = true
	}
	want := mustKt(t, ktOut.String(), keep)
	if err := sameLines("the engine's alerts", want, "jq's matches", got); err != nil {
		t.Fatal(err)
	}
	// Every single-event rule fired at least once on the edge cases, so
	// each condition was put to the test.
	n := perRule(want)
	for r := range once {
		if n[r] == 0 {
			t.Errorf("no edge case fires %q", r)
		}
	}
}

// edgeEvents returns JSON lines that each single-event rule of the pack
// fires on, and near misses it must not fire on.
func edgeEvents() string {
	type ev = map[string]any
	n := 0
	mk := func(user, verb, res, ns, name, stage string, code int, more ev) string {
		n++
		resource, sub, _ := strings.Cut(res, "/")
		e := ev{"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Request", "auditID": "edge-" + strconv.Itoa(n),
			"stage": stage, "requestURI": "/api/v1/x", "verb": verb, "sourceIPs": []string{"10.0.0.9"},
			"requestReceivedTimestamp": "2026-12-01T10:00:00.000000Z", "stageTimestamp": "2026-12-01T10:00:01.000000Z"}
		if user != "" {
			e["user"] = ev{"username": user}
		} else {
			e["user"] = ev{}
		}
		if res != "" {
			o := ev{"resource": resource}
			if sub != "" {
				o["subresource"] = sub
			}
			if ns != "" {
				o["namespace"] = ns
			}
			if name != "" {
				o["name"] = name
			}
			e["objectRef"] = o
		}
		if code != 0 {
			e["responseStatus"] = ev{"metadata": ev{}, "code": code}
		}
		for k, v := range more {
			e[k] = v
		}
		b, _ := json.Marshal(e)
		return string(b) + "\n"
	}
	body := func(s string) ev { return ev{"requestObject": json.RawMessage(s)} }
	rc := "ResponseComplete"
	var b strings.Builder
	for _, l := range []string{
		// Binding to cluster-admin, and a binding to view; one by the API server.
		mk("bob", "create", "clusterrolebindings", "", "x", rc, 201, body(`{"kind":"ClusterRoleBinding","roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"cluster-admin"},"subjects":[{"kind":"User","name":"eve"}]}`)),
		mk("bob", "patch", "rolebindings", "dev", "y", rc, 200, body(`{"roleRef":{"kind":"ClusterRole","name":"edit"}}`)),
		mk("bob", "create", "rolebindings", "dev", "z", rc, 201, body(`{"roleRef":{"kind":"ClusterRole","name":"view"}}`)),
		mk("system:apiserver", "create", "clusterrolebindings", "", "w", rc, 201, body(`{"roleRef":{"name":"cluster-admin"}}`)),
		mk("bob", "create", "clusterrolebindings", "", "v", rc, 403, body(`{"roleRef":{"name":"cluster-admin"}}`)),
		// Powerful ClusterRole written; a harmless one; one by a kube-system service account.
		mk("alice", "create", "clusterroles", "", "p", rc, 201, body(`{"rules":[{"verbs":["get","*"],"resources":["pods"]}]}`)),
		mk("alice", "update", "roles", "dev", "q", rc, 200, body(`{"rules":[{"verbs":["get"],"resources":["pods/exec"]}]}`)),
		mk("alice", "create", "clusterroles", "", "r", rc, 201, body(`{"rules":[{"verbs":["get"],"resources":["pods"]}]}`)),
		mk("system:serviceaccount:kube-system:clusterrole-aggregation-controller", "update", "clusterroles", "", "admin", rc, 200, body(`{"rules":[{"verbs":["impersonate"]}]}`)),
		// System role or binding changed; system:coredns is left out.
		mk("alice", "patch", "clusterroles", "", "system:basic-user", rc, 200, nil),
		mk("alice", "delete", "clusterrolebindings", "", "system:discovery", rc, 200, nil),
		mk("alice", "patch", "clusterroles", "", "system:coredns", rc, 200, nil),
		// Exec over WebSocket at two stages (one alert), SPDY at one, a port-forward, an exec denied.
		mk("carol", "get", "pods/exec", "prod", "web", "ResponseStarted", 101, nil),
		mk("carol", "get", "pods/exec", "prod", "web", rc, 101, nil),
		mk("erin", "create", "pods/attach", "prod", "web", rc, 101, nil),
		mk("erin", "get", "pods/portforward", "prod", "web", "ResponseStarted", 101, nil),
		mk("erin", "get", "pods/log", "prod", "web", "ResponseStarted", 200, nil),
		mk("erin", "create", "pods/exec", "prod", "web", "RequestReceived", 0, nil),
		// Privileged or host-access workload; in kube-system; by a kubelet.
		mk("bob", "create", "pods", "dev", "p1", rc, 201, body(`{"spec":{"containers":[{"securityContext":{"privileged":true}}]}}`)),
		mk("bob", "patch", "daemonsets", "dev", "d1", rc, 200, body(`{"spec":{"template":{"spec":{"volumes":[{"hostPath":{"path":"/"}}]}}}}`)),
		mk("bob", "create", "pods", "kube-system", "p2", rc, 201, body(`{"spec":{"hostNetwork":true}}`)),
		mk("system:node:node-01", "create", "pods", "dev", "p3", rc, 201, body(`{"spec":{"hostPID":true}}`)),
		mk("bob", "create", "pods", "dev", "p4", rc, 201, body(`{"spec":{"hostNetwork":false}}`)),
		// Ephemeral container added.
		mk("bob", "patch", "pods/ephemeralcontainers", "dev", "p1", rc, 200, nil),
		// Workload or service account created in a system namespace.
		mk("bob", "create", "serviceaccounts", "kube-system", "sa", rc, 201, nil),
		mk("system:kube-scheduler", "create", "pods", "kube-system", "x", rc, 201, nil),
		mk("bob", "create", "pods/binding", "kube-system", "x", rc, 201, nil),
		// Secret reads by people, a failed one, one by an unauthenticated request; service accounts listing.
		mk("alice", "get", "secrets", "prod", "important", rc, 200, nil),
		mk("alice", "list", "secrets", "", "", rc, 200, nil),
		mk("alice", "get", "secrets", "prod", "x", rc, 403, nil),
		mk("", "get", "secrets", "prod", "x", rc, 401, nil),
		mk("system:serviceaccount:argocd:app", "watch", "secrets", "argocd", "", rc, 200, nil),
		mk("system:serviceaccount:kube-system:x", "list", "secrets", "", "", rc, 200, nil),
		mk("system:node:node-02", "get", "secrets", "prod", "x", rc, 200, nil),
		// Anonymous request allowed, beyond the health endpoints.
		mk("system:anonymous", "get", "", "", "", rc, 200, ev{"requestURI": "/api/v1/namespaces", "annotations": ev{"authorization.k8s.io/decision": "allow"}}),
		mk("system:anonymous", "get", "", "", "", rc, 200, ev{"requestURI": "/healthz?verbose", "annotations": ev{"authorization.k8s.io/decision": "allow"}}),
		mk("system:anonymous", "get", "", "", "", rc, 403, ev{"requestURI": "/api", "annotations": ev{"authorization.k8s.io/decision": "forbid"}}),
		// Permission enumeration (no code needed) and one by a component.
		mk("eve", "create", "selfsubjectrulesreviews", "", "", rc, 201, nil),
		mk("eve", "create", "selfsubjectaccessreviews", "", "", rc, 0, nil),
		mk("system:kube-scheduler", "create", "selfsubjectaccessreviews", "", "", rc, 201, nil),
		// Service account token requested by a person, and by a kubelet.
		mk("bob", "create", "serviceaccounts/token", "dev", "default", rc, 201, nil),
		mk("system:node:node-03", "create", "serviceaccounts/token", "dev", "default", rc, 201, nil),
		// Certificate signing request approved, and by the controller manager.
		mk("bob", "update", "certificatesigningrequests/approval", "", "csr-1", rc, 200, nil),
		mk("system:kube-controller-manager", "update", "certificatesigningrequests/approval", "", "csr-2", rc, 200, nil),
		// Admission control changed.
		mk("bob", "delete", "validatingwebhookconfigurations", "", "gatekeeper", rc, 200, nil),
		mk("system:apiserver", "create", "validatingadmissionpolicies", "", "x", rc, 201, nil),
		// Kubernetes events deleted, and by the controller manager.
		mk("bob", "deletecollection", "events", "prod", "", rc, 200, nil),
		mk("system:kube-controller-manager", "delete", "events", "prod", "e", rc, 200, nil),
		// System identity impersonated, and a component impersonating.
		mk("bob", "get", "pods", "prod", "", rc, 200, ev{"impersonatedUser": ev{"username": "system:admin"}}),
		mk("system:serviceaccount:x:y", "get", "pods", "prod", "", rc, 200, ev{"impersonatedUser": ev{"username": "system:admin"}}),
		mk("bob", "get", "pods", "prod", "", rc, 200, ev{"impersonatedUser": ev{"username": "alice"}}),
		// CronJob created or changed; its status is not its spec.
		mk("bob", "create", "cronjobs", "dev", "cj", rc, 201, nil),
		mk("bob", "update", "cronjobs/status", "dev", "cj", rc, 200, nil),
		// Service opened on the nodes' ports; a ClusterIP one.
		mk("bob", "create", "services", "dev", "s1", rc, 201, body(`{"spec":{"type":"NodePort","ports":[{"port":80}]}}`)),
		mk("bob", "create", "services", "dev", "s2", rc, 201, body(`{"spec":{"type":"ClusterIP"}}`)),
	} {
		b.WriteString(l)
	}
	return b.String()
}
