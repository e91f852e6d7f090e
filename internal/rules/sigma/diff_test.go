package sigma

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/kubetrail/kubetrail/internal/rules"
)

// referenceFiles are the 16 SigmaHQ rules and the rules in
// testdata/reference, written for this test to use every modifier on the
// fields the corpus varies.
func referenceFiles(t testing.TB) []rules.File {
	files := sigmaHQFiles(t)
	names, _ := filepath.Glob("testdata/reference/*.yml")
	sort.Strings(names)
	for _, n := range names {
		data, err := os.ReadFile(n)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, rules.File{Name: n, Data: data})
	}
	if len(files) < 20 {
		t.Fatalf("only %d rule files", len(files))
	}
	return files
}

// TestDifferential: over a generated corpus of audit events, every rule
// matches exactly the events the naive reference evaluator says it does.
// The corpus is big and varied enough that each rule that can match
// matches some events and misses others (asserted, so a corpus that
// stopped exercising a rule fails the test).
func TestDifferential(t *testing.T) {
	files := referenceFiles(t)
	rs, probs := Load(files...)
	for _, p := range probs {
		if !p.Warning {
			t.Fatal(p)
		}
	}
	var refs []*refRule
	for _, f := range files {
		r, err := refLoad(f.Data)
		if err != nil {
			t.Fatal(err)
		}
		refs = append(refs, r)
	}
	if len(refs) != len(rs.rules) {
		t.Fatalf("%d rules loaded, %d files", len(rs.rules), len(refs))
	}
	corpus := genCorpus(3000)
	hits := make([]int, len(refs))
	for _, raw := range corpus {
		e := decoded(t, raw)
		generic := refDecode(raw)
		got := map[string]bool{}
		for _, a := range rs.Eval(e) {
			got[a.Rule] = true
		}
		for i, r := range refs {
			want := refMatch(r, generic)
			if want {
				hits[i]++
			}
			if got[r.Title] != want {
				t.Fatalf("rule %q: kubetrail says %v, the reference %v, for\n%s", r.Title, got[r.Title], want, raw)
			}
		}
	}
	never := map[string]bool{
		"Container With A hostPath Mount Created":             true,
		"Kubernetes Potential Enumeration Activity":           true,
		"Privileged Container Deployed":                       true,
		"RBAC Permission Enumeration Attempt":                 true,
		"Potential Sidecar Injection Into Running Deployment": true,
	}
	for i, r := range refs {
		switch {
		case never[r.Title] && hits[i] != 0:
			t.Errorf("rule %q matched %d events; it can never match", r.Title, hits[i])
		case !never[r.Title] && (hits[i] == 0 || hits[i] == len(corpus)):
			t.Errorf("rule %q matched %d of %d events: the corpus does not exercise it", r.Title, hits[i], len(corpus))
		}
	}
}

// genCorpus makes n audit events as an API server writes them (no empty
// strings where it omits a field), varying every field the rules read.
func genCorpus(n int) [][]byte {
	rng := rand.New(rand.NewPCG(10, 2024))
	pick := func(xs ...any) any { return xs[rng.IntN(len(xs))] }
	maybe := func(p float64) bool { return rng.Float64() < p }
	type res struct{ group, resource string }
	resources := []res{
		{"", "pods"}, {"", "secrets"}, {"", "configmaps"}, {"", "events"}, {"events.k8s.io", "events"},
		{"", "serviceaccounts"}, {"apps", "deployments"}, {"extensions", "deployments"}, {"batch", "jobs"},
		{"batch", "cronjobs"}, {"rbac.authorization.k8s.io", "rolebindings"},
		{"rbac.authorization.k8s.io", "clusterrolebindings"}, {"rbac.authorization.k8s.io", "clusterroles"},
		{"admissionregistration.k8s.io", "mutatingwebhookconfigurations"},
		{"admissionregistration.k8s.io", "validatingwebhookconfigurations"},
		{"authorization.k8s.io", "selfsubjectrulesreviews"}, {"authorization.k8s.io", "selfsubjectaccessreviews"},
	}
	var out [][]byte
	for i := range n {
		ev := map[string]any{
			"kind": "Event", "apiVersion": "audit.k8s.io/v1",
			"level":                    pick("Metadata", "Request", "RequestResponse"),
			"auditID":                  fmt.Sprintf("id-%d", i),
			"stage":                    pick("ResponseComplete", "ResponseComplete", "ResponseStarted", "RequestReceived"),
			"verb":                     pick("get", "list", "watch", "create", "update", "patch", "delete", "deletecollection", "Create", "GET"),
			"requestReceivedTimestamp": "2024-05-01T10:00:00.000000Z",
			"stageTimestamp":           "2024-05-01T10:00:00.100000Z",
		}
		user := map[string]any{}
		if u := pick("alice", "bob", "admin", "system:serviceaccount:kube-system:replicaset-controller",
			"system:serviceaccount:prod:runner", "system:kube-scheduler", "system:anonymous", ""); u != "" {
			user["username"] = u
		}
		if maybe(0.7) {
			user["groups"] = []any{"system:authenticated", pick("dev", "system:masters", "ops")}
		}
		ev["user"] = user
		if maybe(0.1) {
			ev["impersonatedUser"] = map[string]any{"username": pick("cluster-admin", "bob", "system:admin")}
		}
		if maybe(0.9) {
			ev["sourceIPs"] = []any{pick("10.1.2.3", "192.168.7.9", "172.16.0.4", "fd00::17", "2001:db8::1", "8.8.8.8")}
			if maybe(0.2) {
				ev["sourceIPs"] = append(ev["sourceIPs"].([]any), "10.200.0.1")
			}
		}
		if maybe(0.9) {
			ev["userAgent"] = pick("kubectl/v1.30.0 (linux/amd64) kubernetes/abc", "Kubectl/v1.29 (darwin/arm64)",
				"kube-controller-manager/v1.30.0", "TruffleHog/3.63", "azurehound/v2", "access_matrix/0.4", "micro-scanner",
				"weird*agent?v1", "weirdXagentYv1", "curl/8.5")
		}
		ns := pick("", "default", "kube-system", "Kube-System", "prod")
		sub := pick("", "", "", "exec", "attach", "status", "token", "log")
		uri := "/version"
		if maybe(0.92) {
			r := resources[rng.IntN(len(resources))]
			ref := map[string]any{"resource": r.resource, "apiVersion": "v1"}
			if r.group != "" && maybe(0.95) {
				ref["apiGroup"] = r.group
			}
			if ns != "" {
				ref["namespace"] = ns
			}
			if maybe(0.7) {
				ref["name"] = pick("web-1", "web-12", "db-a-0", "db-0", "x")
			}
			if sub != "" {
				ref["subresource"] = sub
			}
			ev["objectRef"] = ref
			uri = "/api/v1/"
			if ns != "" {
				uri += "namespaces/" + ns.(string) + "/"
			}
			uri += r.resource
			if sub != "" {
				uri += "/x/" + sub.(string)
			}
			if sub == "exec" || sub == "attach" || maybe(0.05) {
				uri += "?command=" + pick("%2Fbin%2Fsh", "%2fbin%2fbash", "/bin/bash", "sh&stdin=true", "ls", "%2Fusr%2Fbin%2Fcurl").(string)
			}
			if r.resource == "pods" && maybe(0.6) {
				ev["requestObject"] = genPod(rng)
			}
		}
		ev["requestURI"] = uri
		if ev["stage"] != "RequestReceived" {
			st := map[string]any{"metadata": map[string]any{}}
			if c := pick(0, 200, 201, 101, 401, 403, 404, 409, 500); c != 0 {
				st["code"] = c
			}
			ev["responseStatus"] = st
		}
		if maybe(0.8) {
			ev["annotations"] = map[string]any{"authorization.k8s.io/decision": pick("allow", "forbid"), "authorization.k8s.io/reason": "RBAC"}
		}
		raw, err := json.Marshal(ev)
		if err != nil {
			panic(err)
		}
		out = append(out, raw)
	}
	return out
}

// genPod is a pod body with one to three containers, some privileged, some
// with added capabilities, and sometimes a hostPath volume or hostNetwork.
func genPod(rng *rand.Rand) map[string]any {
	var cs []any
	for range 1 + rng.IntN(3) {
		c := map[string]any{"name": "c", "image": "nginx"}
		switch rng.IntN(5) {
		case 0:
			c["securityContext"] = map[string]any{"privileged": true}
		case 1:
			c["securityContext"] = map[string]any{"privileged": false}
		case 2:
			c["securityContext"] = map[string]any{"capabilities": map[string]any{"add": []any{[]string{"NET_ADMIN", "SYS_ADMIN", "CHOWN"}[rng.IntN(3)]}}}
		}
		cs = append(cs, c)
	}
	spec := map[string]any{"containers": cs}
	switch rng.IntN(4) {
	case 0:
		spec["volumes"] = []any{map[string]any{"name": "v", "hostPath": map[string]any{"path": "/var/run"}}}
	case 1:
		spec["volumes"] = []any{map[string]any{"name": "v", "emptyDir": map[string]any{}}}
	}
	if rng.IntN(6) == 0 {
		spec["hostNetwork"] = true
	}
	return map[string]any{"kind": "Pod", "apiVersion": "v1", "metadata": map[string]any{"name": "p"}, "spec": spec}
}

// TestReferenceAgreesOnTheModelEdge shows the one place the reference and
// kubetrail differ on purpose, and why the corpus avoids it: the
// reference reads every key of the event's bytes; kubetrail reads the
// audit.k8s.io/v1 fields, so a key no API server writes never matches.
func TestReferenceAgreesOnTheModelEdge(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(sharedDir(t), "rulesets", "sigma", "kubernetes_audit_rbac_permisions_listing.yml"))
	if err != nil {
		t.Fatal(err)
	}
	ref, err := refLoad(data)
	if err != nil {
		t.Fatal(err)
	}
	rs, _ := Load(rules.File{Name: "r.yml", Data: data})
	e := event(t, "verb", "create", "objectRef.resource", "selfsubjectrulesreviews", "apiGroup", "authorization.k8s.io")
	if !refMatch(ref, refDecode(e.Raw)) {
		t.Error("the reference did not read the top-level key")
	}
	if got := rs.Eval(e); len(got) != 0 {
		t.Errorf("kubetrail matched a key outside the audit model: %v", got)
	}
	if !strings.Contains(string(e.Raw), `"apiGroup":"authorization.k8s.io"`) {
		t.Fatal("the event lost its extra key")
	}
}

// TestConcurrentEval: Eval may be called from many goroutines at once
// (run with -race); each gets the alerts it would get alone.
func TestConcurrentEval(t *testing.T) {
	rs, _ := Load(referenceFiles(t)...)
	corpus := genCorpus(200)
	want := make([]int, len(corpus))
	events := make([]*rules.Event, len(corpus))
	for i, raw := range corpus {
		events[i] = decoded(t, raw)
		want[i] = len(rs.Eval(events[i]))
	}
	errs := make(chan string, 4)
	for range 4 {
		go func() {
			for i, e := range events {
				if got := len(rs.Eval(e)); got != want[i] {
					errs <- fmt.Sprintf("event %d: %d alerts, want %d", i, got, want[i])
					return
				}
			}
			errs <- ""
		}()
	}
	for range 4 {
		if msg := <-errs; msg != "" {
			t.Error(msg)
		}
	}
}
