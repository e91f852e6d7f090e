package builtin

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/kubetrail/kubetrail/internal/audit"
	"github.com/kubetrail/kubetrail/internal/query"
	"github.com/kubetrail/kubetrail/internal/rules"
	"github.com/kubetrail/kubetrail/internal/rules/falco"
	"github.com/kubetrail/kubetrail/internal/rules/native"
	"github.com/kubetrail/kubetrail/internal/rules/sigma"
	"github.com/kubetrail/kubetrail/internal/testenv"
)

// The coverage tables of docs/detection.md ("Coverage of the public rule
// sets") are claims: a row that names built-in rules says that on every
// event the public rule matches (within the row's scope), one of those
// built-in rules fires for the same request. TestCoverageClaims backs each
// claim differentially: it runs Falco's 48 k8saudit rules (rule_matching:
// all, so no rule hides another), SigmaHQ's 16 rules and the pack over the
// same events, and compares per request. The events are a generated corpus
// (every user kind, verb, resource, namespace, answer and request body
// below, each request at every stage the API server logs it), Falco's
// regression fixtures (../falco/testdata/k8saudit) and the bootstrap log.

// controlPlanePhrase in a scope cell excludes the control plane's
// identities, as most built-in rules do.
const controlPlanePhrase = "not by the control plane"

// controlPlane is what controlPlanePhrase means (docs/detection.md says so
// above the tables).
const controlPlane = `user in (system:apiserver,system:kube-controller-manager,system:kube-scheduler) or user=system:node:* or user~"^system:serviceaccount:kube-system:"`

// coverageRow is one row of a coverage table.
type coverageRow struct {
	line    int
	public  string
	builtin []string // empty: not covered
	scope   *query.Filter
}

// coverageTables reads the two coverage tables: "falco" and "sigma" rows.
func coverageTables(t *testing.T) map[string][]coverageRow {
	t.Helper()
	doc, err := os.ReadFile("../../../docs/detection.md")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]coverageRow{}
	section := ""
	for i, line := range strings.Split(string(doc), "\n") {
		switch {
		case strings.HasPrefix(line, "#"):
			section = ""
			if strings.Contains(line, "Falco's k8saudit rules, one by one") {
				section = "falco"
			} else if strings.Contains(line, "SigmaHQ's kubernetes/audit rules, one by one") {
				section = "sigma"
			}
			continue
		case section == "" || !strings.HasPrefix(line, "| ") || strings.HasPrefix(line, "| public rule |"):
			continue
		}
		cells := splitRow(line)
		if len(cells) != 5 {
			t.Fatalf("docs/detection.md:%d: a coverage row has 5 cells (public rule, detects, built-in rule, scope, notes), got %d", i+1, len(cells))
		}
		row := coverageRow{line: i + 1, public: cells[0]}
		if cells[2] != "—" {
			row.builtin = strings.Split(cells[2], "; ")
			row.scope = scopeFilter(t, i+1, cells[3])
		} else if cells[3] != "—" {
			t.Errorf("docs/detection.md:%d: a row without a built-in rule has no scope", i+1)
		}
		out[section] = append(out[section], row)
	}
	return out
}

// splitRow splits a Markdown table row on the pipes outside backticks.
func splitRow(line string) []string {
	var cells []string
	var cur strings.Builder
	code := false
	for _, r := range strings.TrimSpace(line[1 : len(line)-1]) {
		switch {
		case r == '`':
			code = !code
		case r == '|' && !code:
			cells = append(cells, strings.TrimSpace(cur.String()))
			cur.Reset()
			continue
		}
		cur.WriteRune(r)
	}
	return append(cells, strings.TrimSpace(cur.String()))
}

var backticked = regexp.MustCompile("`([^`]*)`")

// scopeFilter reads a scope cell: "—" (every event the public rule
// matches: nil), or a filter expression in backticks, controlPlanePhrase,
// or both separated by a comma.
func scopeFilter(t *testing.T, line int, cell string) *query.Filter {
	t.Helper()
	if cell == "—" {
		cell = ""
	}
	var parts []string
	rest := cell
	if m := backticked.FindStringSubmatch(cell); m != nil {
		parts = append(parts, "("+m[1]+")")
		rest = strings.Replace(rest, m[0], "", 1)
	}
	if strings.Contains(rest, controlPlanePhrase) {
		parts = append(parts, "not ("+controlPlane+")")
		rest = strings.Replace(rest, controlPlanePhrase, "", 1)
	}
	if strings.Trim(rest, " ,") != "" {
		t.Fatalf("docs/detection.md:%d: scope %q: want —, a `filter`, %q, or both", line, cell, controlPlanePhrase)
	}
	src := strings.Join(parts, " ")
	if src == "" {
		return nil
	}
	f, err := query.Compile(src)
	if err != nil {
		t.Fatalf("docs/detection.md:%d: scope %q: %v", line, src, err)
	}
	return f
}

// TestCoverageTables: every Falco k8saudit rule and every SigmaHQ rule has
// exactly one row, and every built-in rule a row names exists.
func TestCoverageTables(t *testing.T) {
	tables := coverageTables(t)
	falcoEv, sigmaEv := publicRules(t)
	pack := map[string]bool{}
	for _, r := range Rules() {
		pack[r.Name] = true
	}
	for source, ev := range map[string]rules.Evaluator{"falco": falcoEv, "sigma": sigmaEv} {
		want := map[string]int{}
		for _, r := range ev.Rules() {
			want[r.Name]++
		}
		got := map[string]int{}
		for _, row := range tables[source] {
			got[row.public]++
			if want[row.public] == 0 {
				t.Errorf("docs/detection.md:%d: %q is not a %s rule", row.line, row.public, source)
			}
			for _, b := range row.builtin {
				if !pack[b] {
					t.Errorf("docs/detection.md:%d: %q is not a built-in rule", row.line, b)
				}
			}
		}
		for name := range want {
			if got[name] != 1 {
				t.Errorf("docs/detection.md: %s rule %q has %d rows in the coverage table, want 1", source, name, got[name])
			}
		}
	}
	if n := len(falcoEv.Rules()); n != 48 {
		t.Errorf("Falco's k8saudit file holds %d rules, want 48", n)
	}
	if n := len(sigmaEv.Rules()); n != 16 {
		t.Errorf("SigmaHQ's folder holds %d rules, want 16", n)
	}
}

// publicRules loads Falco's k8saudit rules (every matching rule fires) and
// SigmaHQ's kubernetes/audit rules from the shared folder.
func publicRules(t *testing.T) (*falco.Evaluator, *sigma.Ruleset) {
	t.Helper()
	dir := filepath.Join(testenv.SharedDir(t), "rulesets")
	read := func(name string) rules.File {
		data, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		return rules.File{Name: name, Data: data}
	}
	fev, probs := falco.Load([]rules.File{read(filepath.Join(dir, "falco", "k8s_audit_rules.yaml"))}, falco.Options{Matching: falco.MatchAll})
	for _, p := range probs {
		if !p.Warning {
			t.Fatal(p)
		}
	}
	names, err := filepath.Glob(filepath.Join(dir, "sigma", "*.yml"))
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(names)
	var files []rules.File
	for _, n := range names {
		files = append(files, read(n))
	}
	sev, probs := sigma.Load(files...)
	for _, p := range probs {
		if !p.Warning {
			t.Fatal(p)
		}
	}
	return fev, sev
}

// TestCoverageClaims backs every claim of the coverage tables (see the
// top of this file).
func TestCoverageClaims(t *testing.T) {
	tables := coverageTables(t)
	falcoEv, sigmaEv := publicRules(t)
	streams := map[string][]*rules.Event{"generated": generatedCorpus(t), "bootstrap": readEvents(t, "testdata/bootstrap.jsonl")}
	fixtures, err := filepath.Glob("../falco/testdata/k8saudit/*.jsonl")
	if err != nil || len(fixtures) == 0 {
		t.Fatalf("Falco's regression fixtures: %v", err)
	}
	for _, f := range fixtures {
		streams[filepath.Base(f)] = readFixture(t, f)
	}
	type hit struct {
		ev  *rules.Event
		req string
	}
	public := map[string][]hit{} // "falco\x00rule" -> events it fired on
	fired := map[string]bool{}   // request + "\x00" + built-in rule
	for name, evs := range streams {
		pack, _ := native.Load(Rules())
		for _, e := range evs {
			req := name + "\x00" + e.Ev.AuditID
			for _, a := range falcoEv.Eval(e) {
				public["falco\x00"+a.Rule] = append(public["falco\x00"+a.Rule], hit{e, req})
			}
			for _, a := range sigmaEv.Eval(e) {
				public["sigma\x00"+a.Rule] = append(public["sigma\x00"+a.Rule], hit{e, req})
			}
			for _, a := range pack.Eval(e) {
				fired[req+"\x00"+a.Rule] = true
			}
		}
	}
	for source, rows := range tables {
		for _, row := range rows {
			if len(row.builtin) == 0 {
				continue
			}
			inScope, missed := 0, 0
			for _, h := range public[source+"\x00"+row.public] {
				if row.scope != nil && !row.scope.Match(h.ev.Ev, h.ev.Cluster) {
					continue
				}
				inScope++
				ok := false
				for _, b := range row.builtin {
					ok = ok || fired[h.req+"\x00"+b]
				}
				if !ok {
					if missed++; missed <= 3 {
						t.Errorf("docs/detection.md:%d: %s rule %q fires and %s does not, on %s", row.line, source, row.public, strings.Join(row.builtin, " or "), h.ev.Raw)
					}
				}
			}
			if missed > 3 {
				t.Errorf("docs/detection.md:%d: ... %d more events", row.line, missed-3)
			}
			// A claim no event tests is not backed.
			if inScope < 3 {
				t.Errorf("docs/detection.md:%d: %s rule %q fires on %d events in the row's scope: too few to back the claim", row.line, source, row.public, inScope)
			}
		}
	}
}

// readFixture decodes an audit log fixture, keeping the events only.
func readFixture(t *testing.T, name string) []*rules.Event {
	t.Helper()
	data, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	var evs []*rules.Event
	audit.NewDecoder(audit.Limits{}).DecodeBody(name, data, func(r audit.Record) {
		ev := r.Event
		evs = append(evs, &rules.Event{Ev: &ev, Raw: r.Raw, Cluster: "test"})
	}, func(audit.Problem) {})
	return evs
}

// target is a kind of request the corpus makes.
type target struct {
	res, sub, group string
	namespaced      bool
	names           []string
	verbs           []string // default: every verb
	bodies          []string // sent with create, update and patch
	uri             string   // a non-resource request
}

var allVerbs = []string{"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"}

func corpusTargets() []target {
	pod := func(spec string) string {
		return `{"kind":"Pod","apiVersion":"v1","metadata":{"name":"web"},"spec":` + spec + `}`
	}
	tmpl := func(kind, spec string) string {
		return `{"kind":"` + kind + `","apiVersion":"apps/v1","metadata":{"name":"web"},"spec":{"template":{"spec":` + spec + `}}}`
	}
	specs := []string{
		`{"containers":[{"name":"web","image":"nginx:1.27"}]}`,
		`{"containers":[{"name":"web","image":"nginx:1.27"},{"name":"b","image":"busybox","securityContext":{"privileged":true}}]}`,
		`{"initContainers":[{"name":"init","image":"busybox","securityContext":{"privileged":true}}],"containers":[{"name":"web","image":"nginx:1.27"}]}`,
		`{"containers":[{"name":"web","image":"docker.io/falcosecurity/falco","securityContext":{"privileged":true}}]}`,
		`{"hostNetwork":true,"containers":[{"name":"web","image":"nginx:1.27"}]}`,
		`{"hostPID":true,"containers":[{"name":"web","image":"nginx:1.27"}]}`,
		`{"hostIPC":true,"containers":[{"name":"web","image":"nginx:1.27"}]}`,
		`{"volumes":[{"name":"cache","emptyDir":{}},{"name":"etc","hostPath":{"path":"/etc"}}],"containers":[{"name":"web","image":"nginx:1.27"}]}`,
		`{"volumes":[{"name":"sock","hostPath":{"path":"/var/run/docker.sock","type":"Socket"}}],"containers":[{"name":"web","image":"nginx:1.27"}]}`,
		`{"volumes":[{"name":"data","hostPath":{"path":"/data"}}],"containers":[{"name":"web","image":"nginx:1.27"}]}`,
		`{"containers":[{"name":"web","image":"nginx:1.27","securityContext":{"privileged":false,"capabilities":{"add":["NET_ADMIN"]}}}]}`,
	}
	var pods, deploys []string
	for _, s := range specs {
		pods = append(pods, pod(s))
		deploys = append(deploys, tmpl("Deployment", s))
	}
	role := func(kind, rules string) string {
		return `{"kind":"` + kind + `","apiVersion":"rbac.authorization.k8s.io/v1","metadata":{"name":"r"},"rules":` + rules + `}`
	}
	var roles []string
	for _, kind := range []string{"ClusterRole", "Role"} {
		for _, r := range []string{
			`[{"apiGroups":[""],"resources":["pods","services"],"verbs":["get","list","watch"]}]`,
			`[{"apiGroups":["*"],"resources":["*"],"verbs":["*"]}]`,
			`[{"apiGroups":[""],"resources":["*"],"verbs":["get"]}]`,
			`[{"apiGroups":["apps"],"resources":["deployments"],"verbs":["*"]}]`,
			`[{"apiGroups":["rbac.authorization.k8s.io"],"resources":["clusterroles"],"verbs":["get","escalate","bind"]}]`,
			`[{"apiGroups":[""],"resources":["users","groups"],"verbs":["impersonate"]}]`,
			`[{"apiGroups":[""],"resources":["configmaps"],"verbs":["create","update","patch","delete"]}]`,
			`[{"apiGroups":[""],"resources":["pods"],"verbs":["get"]},{"apiGroups":[""],"resources":["pods/exec"],"verbs":["create"]}]`,
			`[{"apiGroups":[""],"resources":["pods/attach","nodes/proxy"],"verbs":["get","create"]}]`,
		} {
			roles = append(roles, role(kind, r))
		}
	}
	binding := func(kind, role string) string {
		return `{"kind":"` + kind + `","apiVersion":"rbac.authorization.k8s.io/v1","metadata":{"name":"b"},"roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"` + role + `"},"subjects":[{"apiGroup":"rbac.authorization.k8s.io","kind":"User","name":"mallory"}]}`
	}
	var bindings []string
	for _, kind := range []string{"ClusterRoleBinding", "RoleBinding"} {
		for _, r := range []string{"cluster-admin", "admin", "edit", "view", "system:basic-user"} {
			bindings = append(bindings, binding(kind, r))
		}
	}
	service := func(typ string) string {
		return `{"kind":"Service","apiVersion":"v1","metadata":{"name":"web"},"spec":{"type":"` + typ + `","ports":[{"port":80,"nodePort":30080}]}}`
	}
	configmap := func(data string) string {
		return `{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"app"},"data":` + data + `}`
	}
	ingress := func(tls string) string {
		return `{"kind":"Ingress","apiVersion":"networking.k8s.io/v1","metadata":{"name":"web"},"spec":{` + tls + `"rules":[{"host":"a.example"}]}}`
	}
	webhook := `{"kind":"ValidatingWebhookConfiguration","apiVersion":"admissionregistration.k8s.io/v1","metadata":{"name":"gatekeeper"},"webhooks":[]}`
	exec := []string{"get", "create"}
	return []target{
		{res: "pods", namespaced: true, names: []string{"web"}, bodies: pods},
		{res: "pods", sub: "exec", namespaced: true, names: []string{"web"}, verbs: exec},
		{res: "pods", sub: "attach", namespaced: true, names: []string{"web"}, verbs: exec},
		{res: "pods", sub: "portforward", namespaced: true, names: []string{"web"}, verbs: exec},
		{res: "pods", sub: "log", namespaced: true, names: []string{"web"}, verbs: []string{"get"}},
		{res: "pods", sub: "ephemeralcontainers", namespaced: true, names: []string{"web"}, verbs: []string{"update", "patch"},
			bodies: []string{`{"kind":"Pod","apiVersion":"v1","spec":{"ephemeralContainers":[{"name":"debugger","image":"busybox","targetContainerName":"web"}]}}`}},
		{res: "pods", sub: "eviction", namespaced: true, names: []string{"web"}, verbs: []string{"create"}},
		{res: "pods", sub: "binding", namespaced: true, names: []string{"web"}, verbs: []string{"create"}},
		{res: "pods", sub: "status", namespaced: true, names: []string{"web"}, verbs: []string{"update", "patch"}},
		{res: "deployments", group: "apps", namespaced: true, names: []string{"web"}, bodies: deploys},
		{res: "daemonsets", group: "apps", namespaced: true, names: []string{"agent"}, bodies: []string{tmpl("DaemonSet", specs[0]), tmpl("DaemonSet", specs[7])}},
		{res: "jobs", group: "batch", namespaced: true, names: []string{"backup"}},
		{res: "cronjobs", group: "batch", namespaced: true, names: []string{"backup"}},
		{res: "cronjobs", sub: "status", group: "batch", namespaced: true, names: []string{"backup"}, verbs: []string{"update"}},
		{res: "services", namespaced: true, names: []string{"web"}, bodies: []string{service("ClusterIP"), service("NodePort"), service("LoadBalancer")}},
		{res: "configmaps", namespaced: true, names: []string{"app"}, bodies: []string{configmap(`{"color":"blue"}`), configmap(`{"db-password":"hunter2"}`), configmap(`{"aws_access_key_id":"AKIA..."}`)}},
		{res: "secrets", namespaced: true, names: []string{"db"}},
		{res: "serviceaccounts", namespaced: true, names: []string{"app"}},
		{res: "serviceaccounts", sub: "token", namespaced: true, names: []string{"app"}, verbs: []string{"create"}},
		{res: "namespaces", names: []string{"foo", "kube-public"}},
		{res: "nodes", names: []string{"worker-2"}},
		{res: "clusterroles", group: "rbac.authorization.k8s.io", names: []string{"r", "system:basic-user", "system:coredns"}, bodies: roles[:9]},
		{res: "roles", group: "rbac.authorization.k8s.io", namespaced: true, names: []string{"r", "system:controller:bootstrap-signer"}, bodies: roles[9:]},
		{res: "clusterrolebindings", group: "rbac.authorization.k8s.io", names: []string{"b", "system:public-info-viewer"}, bodies: bindings[:5]},
		{res: "rolebindings", group: "rbac.authorization.k8s.io", namespaced: true, names: []string{"b"}, bodies: bindings[5:]},
		{res: "validatingwebhookconfigurations", group: "admissionregistration.k8s.io", names: []string{"gatekeeper"}, bodies: []string{webhook}},
		{res: "mutatingwebhookconfigurations", group: "admissionregistration.k8s.io", names: []string{"istio"}},
		{res: "events", namespaced: true, names: []string{"web.1"}},
		{res: "events", group: "events.k8s.io", namespaced: true, names: []string{"web.2"}},
		{res: "selfsubjectrulesreviews", group: "authorization.k8s.io", verbs: []string{"create"}},
		{res: "selfsubjectaccessreviews", group: "authorization.k8s.io", verbs: []string{"create"}},
		{res: "certificatesigningrequests", group: "certificates.k8s.io", names: []string{"csr-1"}},
		{res: "certificatesigningrequests", sub: "approval", group: "certificates.k8s.io", names: []string{"csr-1"}, verbs: []string{"update", "patch"}},
		{res: "ingresses", group: "networking.k8s.io", namespaced: true, names: []string{"web"}, bodies: []string{ingress(""), ingress(`"tls":[{"hosts":["a.example"],"secretName":"t"}],`)}},
		{res: "leases", group: "coordination.k8s.io", namespaced: true, names: []string{"kube-scheduler"}},
		{uri: "/healthz"}, {uri: "/livez"}, {uri: "/readyz?verbose"}, {uri: "/version"}, {uri: "/healthz/etcd"}, {uri: "/api"}, {uri: "/metrics"},
	}
}

var corpusUsers = []string{
	"alice", "kubernetes-admin", "system:serviceaccount:prod:app", "system:serviceaccount:kube-system:replicaset-controller",
	"system:kube-controller-manager", "system:apiserver", "system:kube-scheduler", "system:node:worker-1", "system:anonymous", "system:kube-proxy",
}

// generatedCorpus makes every request of corpusTargets by every user, in
// every namespace kind, allowed and denied, each logged at every stage
// the API server logs it at.
func generatedCorpus(t *testing.T) []*rules.Event {
	t.Helper()
	var out []*rules.Event
	n := 0
	at := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	for _, tg := range corpusTargets() {
		verbs := tg.verbs
		if verbs == nil {
			verbs = allVerbs
		}
		if tg.uri != "" {
			verbs = []string{"get"}
		}
		nss := []string{""}
		if tg.namespaced {
			nss = []string{"prod", "kube-system"}
		}
		names := tg.names
		if names == nil {
			names = []string{""}
		}
		for _, verb := range verbs {
			bodies := []string{""}
			if len(tg.bodies) > 0 && (verb == "create" || verb == "update" || verb == "patch") {
				bodies = tg.bodies
			}
			for _, user := range corpusUsers {
				for _, ns := range nss {
					for _, name := range names {
						for _, body := range bodies {
							for _, allowed := range []bool{true, false} {
								n++
								at = at.Add(time.Second)
								out = append(out, request(t, n, at, tg, verb, user, ns, name, body, allowed)...)
							}
						}
					}
				}
			}
		}
	}
	return out
}

// request makes the events of one request.
func request(t *testing.T, n int, at time.Time, tg target, verb, user, ns, name, body string, allowed bool) []*rules.Event {
	t.Helper()
	code, decision := 200, "allow"
	if verb == "create" {
		code = 201
	}
	if !allowed {
		code, decision = 403, "forbid"
	}
	uri := tg.uri
	m := map[string]any{
		"kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata", "auditID": fmt.Sprintf("gen-%d", n),
		"verb": verb, "user": map[string]any{"username": user, "groups": []string{"system:authenticated"}},
		"sourceIPs": []string{"10.0.0.9"}, "userAgent": "kubectl/v1.31.0 (linux/amd64) kubernetes/abc",
		"requestReceivedTimestamp": at.Format(time.RFC3339Nano),
	}
	if tg.uri == "" {
		ref := map[string]any{"resource": tg.res, "apiVersion": "v1"}
		base := "/api/v1"
		if tg.group != "" {
			ref["apiGroup"], base = tg.group, "/apis/"+tg.group+"/v1"
		}
		if ns != "" {
			ref["namespace"], base = ns, base+"/namespaces/"+ns
		}
		uri = base + "/" + tg.res
		if name != "" && verb != "list" && verb != "watch" && verb != "deletecollection" {
			ref["name"], uri = name, uri+"/"+name
		}
		if tg.sub != "" {
			ref["subresource"], uri = tg.sub, uri+"/"+tg.sub
		}
		if tg.sub == "exec" {
			uri += "?command=%2Fbin%2Fsh&container=web&stdin=true&tty=true"
		}
		m["objectRef"] = ref
	}
	m["requestURI"] = uri
	if body != "" {
		m["level"], m["requestObject"] = "Request", json.RawMessage(body)
	}
	stages := []string{"RequestReceived", "ResponseComplete"}
	if verb == "watch" || (allowed && (tg.sub == "exec" || tg.sub == "attach" || tg.sub == "portforward")) {
		stages = []string{"RequestReceived", "ResponseStarted", "ResponseComplete"}
		if verb != "watch" {
			code = 101
		}
	}
	var out []*rules.Event
	for i, st := range stages {
		m["stage"] = st
		m["stageTimestamp"] = at.Add(time.Duration(i) * time.Millisecond).Format(time.RFC3339Nano)
		if st != "RequestReceived" {
			m["responseStatus"] = map[string]any{"metadata": map[string]any{}, "code": code}
			m["annotations"] = map[string]string{"authorization.k8s.io/decision": decision, "authorization.k8s.io/reason": ""}
		}
		raw, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		ev := &audit.Event{}
		if err := audit.DecodeStored(raw, ev); err != nil {
			t.Fatalf("%s: %v", raw, err)
		}
		out = append(out, &rules.Event{Ev: ev, Raw: raw, Cluster: "test"})
	}
	return out
}
