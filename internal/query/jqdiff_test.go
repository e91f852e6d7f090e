package query

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/kubetrail/kubetrail/internal/audit"
)

// jqOddEvents are audit lines of odd but real shapes: fields absent, null
// or empty, a status without a code, a RequestReceived event, IPv6 and
// IPv4-mapped addresses, impersonation, extra, a name holding '*'.
var jqOddEvents = []string{
	`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"e1","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/production/secrets/important","verb":"delete","user":{"username":"alice","groups":["system:authenticated","devs"]},"sourceIPs":["203.0.113.9","10.0.0.9"],"userAgent":"kubectl/v1.30.0 (linux/amd64)","objectRef":{"resource":"secrets","namespace":"production","name":"important","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"2026-01-02T08:00:00.000000Z","stageTimestamp":"2026-01-02T08:00:00.000000Z","annotations":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":"RBAC: allowed"}}`,
	`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"e2","stage":"ResponseComplete","requestURI":"/version","verb":"get","user":{},"sourceIPs":["::ffff:10.0.0.7"],"userAgent":"curl/8.5.0","responseStatus":{"metadata":{},"status":"Failure","reason":"Unauthorized","code":401},"requestReceivedTimestamp":"2026-01-02T07:59:59.999999Z","stageTimestamp":"2026-01-02T07:59:59.999999Z"}`,
	`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Request","auditID":"e3","stage":"RequestReceived","requestURI":"/api/v1/namespaces/kube-system/pods/web/exec?command=sh","verb":"create","user":{"username":"system:serviceaccount:kube-system:x","groups":[]},"sourceIPs":[],"objectRef":{"resource":"pods","namespace":"kube-system","name":"web","subresource":"exec","apiVersion":"v1"},"requestReceivedTimestamp":"2026-01-02T09:00:00.000000Z","stageTimestamp":"2026-01-02T09:00:00.000000Z"}`,
	`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":"e4","stage":"ResponseComplete","requestURI":"/apis/rbac.authorization.k8s.io/v1/clusterrolebindings","verb":"create","user":{"username":"admin","groups":["system:masters"],"extra":{"scopes":["view","edit"]}},"impersonatedUser":{"username":"developer","groups":["devs"]},"sourceIPs":["2001:db8::1"],"userAgent":"kubectl/v1.31.0","objectRef":{"resource":"clusterrolebindings","name":"a*b","apiGroup":"rbac.authorization.k8s.io","apiVersion":"v1"},"responseStatus":{"metadata":{}},"requestObject":{"kind":"ClusterRoleBinding","subjects":[{"kind":"User","name":"kube-system"}]},"requestReceivedTimestamp":"2026-01-02T10:00:00.000000Z","stageTimestamp":"2026-01-02T10:00:00.500000Z","annotations":{"authorization.k8s.io/decision":"forbid","x":""}}`,
	`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"None","auditID":"e5","stage":"ResponseStarted","requestURI":"/api/v1/namespaces/default/pods/p/attach","verb":"get","user":{"username":"Alice"},"impersonatedUser":{"username":""},"sourceIPs":["10.0.0.9"],"objectRef":{"resource":"pods","namespace":"default","name":"p","subresource":"attach","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":0},"stageTimestamp":"2026-01-02T10:00:00+02:00"}`,
	`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"e6","stage":"ResponseComplete","requestURI":"/apis/apps/v1/namespaces/production/deployments/a-b","verb":"patch","user":{"username":"bob","groups":null},"userAgent":"","objectRef":{"resource":"deployments","namespace":"production","name":"a-b","apiGroup":"apps","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":503},"requestReceivedTimestamp":"2026-01-02T11:00:00.000000Z","annotations":null}`,
}

// jqPairs are filters and the jq programs docs/query.md gives or implies
// for them ("Absent values", "Fields with several values").
var jqPairs = []struct{ filter, jq string }{
	{`user=alice`, `select(.user.username == "alice")`},
	{`user=""`, `select((.user.username // "") == "")`},
	{`user!=""`, `select((.user.username // "") != "")`},
	{`ns=""`, `select((.objectRef.namespace // "") == "")`},
	{`not ns=production`, `select(.objectRef.namespace != "production")`},
	{`ns!=production`, `select(.objectRef.namespace != "production")`},
	{`as!=""`, `select((.impersonatedUser.username // "") != "")`},
	{`as=""`, `select((.impersonatedUser.username // "") == "")`},
	{`group=system:masters`, `select(any(.user.groups[]?; . == "system:masters"))`},
	{`group!=system:masters`, `select(any(.user.groups[]?; . == "system:masters") | not)`},
	{`group=*`, `select((.user.groups // []) | length > 0)`},
	{`not group=*`, `select((.user.groups // []) | length == 0)`},
	{`as.group=devs`, `select(any(.impersonatedUser.groups[]?; . == "devs"))`},
	{`user.extra[scopes]=edit`, `select(any(.user.extra.scopes[]?; . == "edit"))`},
	{`ip=10.0.0.9`, `select(any(.sourceIPs[]?; . == "10.0.0.9"))`},
	{`ip=2001:db8::1`, `select(any(.sourceIPs[]?; . == "2001:db8::1"))`},
	{`peer=10.0.0.9`, `select(.sourceIPs[-1]? == "10.0.0.9")`},
	{`code>=400`, `select(.responseStatus.code >= 400)`},
	{`code>0`, `select(.responseStatus.code > 0)`},
	{`not code>0`, `select(.responseStatus.code > 0 | not)`},
	{`code in (401, 403)`, `select(.responseStatus.code | IN(401, 403))`},
	{`decision=forbid`, `select(.annotations["authorization.k8s.io/decision"] == "forbid")`},
	{`annotation[x]!=""`, `select((.annotations.x // "") != "")`},
	{`annotation[authorization.k8s.io/reason]~"RBAC"`, `select((.annotations["authorization.k8s.io/reason"] // "") | test("RBAC"))`},
	{`ua~"^kubectl/"`, `select((.userAgent // "") | test("^kubectl/"))`},
	{`ua=""`, `select((.userAgent // "") == "")`},
	{`user~"(?i)^ALICE$"`, `select((.user.username // "") | test("^ALICE$"; "i"))`},
	{`user~"^alice$"`, `select(.user.username == "alice")`},
	{`name="a*b"`, `select(.objectRef.name == "a*b")`},
	{`name=a*b`, `select((.objectRef.name // "") | test("^a.*b$"))`},
	{`subresource in (exec, attach, portforward)`, `select(.objectRef.subresource | IN("exec", "attach", "portforward"))`},
	{`verb not in (get, list, watch)`, `select(.verb | IN("get", "list", "watch") | not)`},
	{`level>=Request`, `select(.level | IN("Request", "RequestResponse"))`},
	{`level<Metadata`, `select(.level == "None")`},
	{`stage!=ResponseComplete`, `select(.stage != "ResponseComplete")`},
	{`apigroup=""`, `select((.objectRef.apiGroup // "") == "")`},
	{`uri=/api/v1/namespaces/*/pods/*/exec?*`, `select(.requestURI | test("^/api/v1/namespaces/.*/pods/.*/exec\\?.*$"))`},
	{`"kube-system"`, `select([.requestURI, .userAgent, .user.username, .impersonatedUser.username, .objectRef.namespace, .objectRef.name, .responseStatus.message, (.annotations // {} | .[]), (.requestObject // empty | tojson), (.responseObject // empty | tojson)] | map(select(. != null)) | any(contains("kube-system")))`},
	// time is stageTimestamp, else requestReceivedTimestamp, compared as a
	// time in any zone (jq 1.6's fromdate takes neither fractions nor
	// offsets, and these events' fractions do not cross the bounds).
	{`time>=2026-01-02T10:00:00+02:00`, `select((.stageTimestamp // .requestReceivedTimestamp) | sub("\\.[0-9]+"; "") | if endswith("+02:00") then (sub("\\+02:00$"; "Z") | fromdate - 7200) else fromdate end >= ("2026-01-02T08:00:00Z" | fromdate))`},
	{`received<2026-01-02T08:00:00Z`, `select(.requestReceivedTimestamp != null and .requestReceivedTimestamp < "2026-01-02T08:00:00")`},
	{`not received>0001-01-02`, `select(.requestReceivedTimestamp == null)`},
}

// TestJQDifferential runs each filter and its jq program over the same
// odd events and compares the events they select.
func TestJQDifferential(t *testing.T) {
	if out, err := exec.Command("jq", "--version").Output(); err != nil || !strings.HasPrefix(string(out), "jq-1.6") {
		if os.Getenv("CI") != "" {
			t.Fatalf("jq 1.6 is needed: %q %v", out, err)
		}
		t.Skipf("no jq 1.6 (%q %v)", out, err)
	}
	path := filepath.Join(t.TempDir(), "audit.log")
	if err := os.WriteFile(path, []byte(strings.Join(jqOddEvents, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var evs []audit.Record
	audit.NewDecoder(audit.Limits{}).DecodeLines("odd", []byte(strings.Join(jqOddEvents, "\n")),
		func(r audit.Record) { evs = append(evs, r) }, func(p audit.Problem) { t.Fatalf("odd events: %s", p.String()) })
	if len(evs) != len(jqOddEvents) {
		t.Fatalf("%d events decoded of %d", len(evs), len(jqOddEvents))
	}
	for _, p := range jqPairs {
		f, err := CompileAt(p.filter, testNow)
		if err != nil {
			t.Errorf("%s: %v", p.filter, err)
			continue
		}
		var got []string
		for i := range evs {
			if f.Match(&evs[i].Event, "c1") {
				got = append(got, evs[i].Event.AuditID)
			}
		}
		var stderr bytes.Buffer
		cmd := exec.Command("jq", "-r", p.jq+" | .auditID", path)
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Errorf("jq %s: %v: %s", p.jq, err, stderr.String())
			continue
		}
		want := strings.Fields(string(out))
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("%s selects %v; jq %s selects %v", p.filter, got, p.jq, want)
		}
	}
}
