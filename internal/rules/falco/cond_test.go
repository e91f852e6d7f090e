package falco

import (
	"strings"
	"testing"

	"github.com/kubetrail/kubetrail/internal/rules"
)

// podEvent is a pod create with two containers (the second privileged),
// an init container, a hostPath volume and an emptyDir one.
const podEvent = `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":"a1","stage":"ResponseComplete",` +
	`"requestURI":"/api/v1/namespaces/web/pods?fieldManager=kubectl-create&dryRun=All","verb":"create",` +
	`"user":{"username":"alice","groups":["dev","system:authenticated"]},"sourceIPs":["10.0.0.1","192.168.1.9"],"userAgent":"kubectl/v1.30.2",` +
	`"objectRef":{"resource":"pods","namespace":"web","name":"app","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":201},` +
	`"requestObject":{"kind":"Pod","apiVersion":"v1","metadata":{"name":"app","namespace":"web"},"spec":{` +
	`"containers":[{"name":"web","image":"nginx:1.27","ports":[{"containerPort":80},{"containerPort":443,"hostPort":8443}]},` +
	`{"name":"side","image":"reg.example.com/tools/busybox@sha256:abc","securityContext":{"privileged":true,"capabilities":{"add":["NET_ADMIN","SYS_TIME"]}}}],` +
	`"initContainers":[{"name":"init","image":"alpine:3"}],` +
	`"volumes":[{"name":"cache","emptyDir":{}},{"name":"host","hostPath":{"path":"/var/run/docker.sock"}}],` +
	`"hostNetwork":true,"securityContext":{"runAsUser":1000}}},` +
	`"responseObject":{"kind":"Pod","apiVersion":"v1","metadata":{"name":"app","namespace":"web","uid":"u1"}},` +
	`"requestReceivedTimestamp":"2026-03-01T10:00:00.000000Z","stageTimestamp":"2026-03-01T10:00:00.500000Z",` +
	`"annotations":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":""}}`

// metaEvent is a Metadata-level get with no body, no subresource and no
// impersonation: many fields are missing.
const metaEvent = `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"a2","stage":"ResponseComplete",` +
	`"requestURI":"/api/v1/namespaces/web/secrets/db","verb":"get","user":{"username":"bob"},"sourceIPs":["10.0.0.2"],` +
	`"objectRef":{"resource":"secrets","namespace":"web","name":"db","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":403},` +
	`"requestReceivedTimestamp":"2026-03-01T10:00:01.000000Z","stageTimestamp":"2026-03-01T10:00:01.000100Z"}`

const condLists = `
- list: web_images
  items: [nginx, "reg.example.com/tools/busybox"]
- list: only_nginx
  items: [nginx]
- list: nested
  items: [only_nginx, alpine]
- macro: is_pod
  condition: ka.target.resource=pods
`

// TestConditions runs each condition against the two events above: every
// operator, list fields with in and intersects, indexed and keyed fields,
// and fields the event does not have (every comparison false, exists
// false, and so "not" true).
func TestConditions(t *testing.T) {
	pod, meta := event(t, podEvent), event(t, metaEvent)
	f := func(cond string, wantPod, wantMeta bool) {
		t.Helper()
		text := condLists + "- rule: r\n  desc: d\n  output: o\n  priority: INFO\n  source: k8s_audit\n  condition: " + yamlQuote(cond) + "\n"
		ev, problems := Load([]rules.File{ruleFile("c.yaml", text)}, Options{})
		if len(problems) > 0 {
			t.Fatalf("%s: %s", cond, problems[0])
		}
		if got := len(ev.Eval(pod)) == 1; got != wantPod {
			t.Errorf("%s on the pod event: got %v, want %v", cond, got, wantPod)
		}
		if got := len(ev.Eval(meta)) == 1; got != wantMeta {
			t.Errorf("%s on the metadata event: got %v, want %v", cond, got, wantMeta)
		}
	}
	// Comparison operators.
	f(`ka.verb=create`, true, false)
	f(`ka.verb==create`, true, false)
	f(`ka.verb!=create`, false, true)
	f(`ka.verb = "create"`, true, false)
	f(`ka.response.code < 300`, true, false)
	f(`ka.response.code >= 400`, false, true)
	f(`ka.response.code > 201`, false, true)
	f(`ka.response.code <= 201`, true, false)
	f(`ka.user.name contains li`, true, false)
	f(`ka.user.name icontains LI`, true, false)
	f(`ka.user.name contains LI`, false, false)
	f(`ka.uri startswith /api/v1/namespaces/web/`, true, true)
	f(`ka.uri endswith /db`, false, true)
	f(`ka.uri glob "/api/v1/*/web/secrets/*"`, false, true)
	f(`ka.uri glob "/api/v1/namespaces/we?/pods*"`, true, false)
	f(`ka.user.name iglob "B[aeiou]B"`, false, true)
	f(`ka.user.name glob "B[aeiou]B"`, false, false)
	f(`ka.user.name regex "b.b"`, false, true)
	f(`ka.user.name regex "o"`, false, false) // anchored, like RE2 full match
	f(`ka.user.name in (alice, carol)`, true, false)
	f(`ka.user.name in ("bob")`, false, true)
	f(`ka.user.name intersects (bob)`, false, true)
	f(`ka.uri pmatch (/api/v1/namespaces/web/secrets)`, false, true)
	f(`ka.uri pmatch (/api/v1/namespaces/we)`, false, false)
	// Boolean structure and precedence: or < and < not.
	f(`ka.verb=get or ka.verb=create and ka.user.name=nobody`, false, true)
	f(`(ka.verb=get or ka.verb=create) and ka.user.name=alice`, true, false)
	f(`not ka.verb=get`, true, false)
	f(`not not ka.verb=get`, false, true)
	f(`not(ka.verb=get)and is_pod`, true, false)
	f(`is_pod`, true, false)
	// List fields: in needs every value in the set, intersects one.
	f(`ka.req.pod.containers.image.repository in (web_images)`, true, false)
	f(`ka.req.pod.containers.image.repository in (only_nginx)`, false, false)
	f(`not ka.req.pod.containers.image.repository in (only_nginx)`, true, true)
	f(`ka.req.pod.containers.image.repository intersects (only_nginx)`, true, false)
	f(`ka.req.pod.containers.image.repository in web_images`, true, false)
	f(`ka.req.pod.initContainers.image.repository in (nested)`, true, false)
	f(`ka.req.pod.containers.privileged intersects (true)`, true, false)
	f(`ka.req.pod.containers.privileged in (true)`, true, false) // only the second container says, so the list is [true]
	f(`ka.req.pod.containers.image[1] in ("reg.example.com/tools/busybox@sha256:abc")`, true, false)
	f(`ka.req.pod.containers.image[0] in (nginx:1.27)`, true, false)
	f(`ka.req.pod.containers.image[2] exists`, false, false)
	f(`ka.req.pod.containers.host_port intersects (8443)`, true, false)
	f(`ka.req.pod.containers.host_port intersects (80)`, true, false)
	// The plugin returns each container's capabilities.add array as one
	// JSON value, not its elements; kubetrail gives the same answer.
	f(`ka.req.pod.containers.add_capabilities intersects (SYS_TIME)`, false, false)
	f(`ka.req.pod.containers.add_capabilities intersects ('["NET_ADMIN","SYS_TIME"]')`, true, false)
	f(`ka.req.pod.volumes.hostpath intersects (/var/run/docker.sock)`, true, false)
	f(`ka.req.pod.volumes.volume_type intersects (hostPath)`, true, false)
	f(`ka.req.volume.hostpath[/var/run*] = true`, true, false)
	f(`ka.req.volume.hostpath[/etc] = false`, true, false)
	f(`ka.req.pod.host_network intersects (true)`, true, false)
	f(`ka.req.pod.host_network = true`, true, false)
	f(`ka.req.pod.run_as_user = 1000`, true, false)
	f(`ka.req.container.image.repository = nginx`, true, false)
	f(`ka.req.container.privileged = true`, true, false) // deprecated: true when any container is
	f(`ka.user.groups intersects (dev)`, true, false)
	f(`ka.sourceips[1] in (192.168.1.9)`, true, false)
	f(`ka.uri.param[dryRun] = All`, true, false)
	f(`ka.uri.param[fieldManager] startswith kubectl`, true, false)
	f(`ka.resp.name = app`, true, false)
	f(`ka.cluster.name = prod`, true, true)
	// The json plugin's fields.
	f(`jevt.value[/stage] in (ResponseComplete)`, true, true)
	f(`json.value[/requestObject/spec/containers/1/name] = side`, true, false)
	f(`jevt.value[/responseStatus/code] = 403`, false, true)
	f(`jevt.value[/requestObject/spec/hostNetwork] = true`, true, false)
	f(`jevt.rawtime exists`, true, true)
	f(`jevt.rawtime = 0`, false, false)
	f(`evt.rawtime > 1000`, true, true)
	f(`evt.time.iso8601 startswith 2026-03-01T10:00:01`, false, true)
	// Missing fields: every comparison false, exists false, not true.
	f(`ka.target.subresource exists`, false, false)
	f(`not ka.target.subresource exists`, true, true)
	f(`ka.impuser.name != nobody`, false, false)
	f(`not ka.impuser.name = nobody`, true, true)
	f(`ka.req.pod.containers.image.repository in (nginx)`, false, false)
	f(`not ka.req.pod.containers.image.repository in (nginx)`, true, true)
	f(`ka.auth.decision exists`, true, false)
	f(`ka.auth.reason = ""`, true, false) // present and empty is not missing
	f(`ka.useragent exists`, true, false)
	f(`jevt.value[/requestObject] exists`, true, false)
	f(`ka.uri.param[command] exists`, false, false)
	// Transformers and comparing two fields.
	f(`tolower(ka.user.name) = alice`, true, false)
	f(`toupper(ka.user.name) = ALICE`, true, false)
	f(`ka.target.name = val(ka.resp.name)`, true, false)
}

// yamlQuote writes a condition as a YAML double-quoted string.
func yamlQuote(s string) string {
	return `"` + strings.ReplaceAll(strings.ReplaceAll(s, `\`, `\\`), `"`, `\"`) + `"`
}

// TestOutput checks rendering: values, lists as (a,b), <NA> for missing
// fields, and output fields for -o falco.
func TestOutput(t *testing.T) {
	text := `
- rule: r
  desc: d
  condition: ka.verb exists
  output: >
    user=%ka.user.name target=%ka.target.name/%ka.target.resource images=%ka.req.pod.containers.image
    sub=%ka.target.subresource cmd=%ka.uri.param[command] net=%jevt.value[/requestObject/spec/hostNetwork].
  priority: CRITICAL
  source: k8s_audit
  tags: [k8s, T1610]
`
	ev := loadOK(t, Options{}, ruleFile("o.yaml", text))
	got := ev.Eval(event(t, podEvent))
	if len(got) != 1 {
		t.Fatalf("got %d alerts", len(got))
	}
	a := got[0]
	want := "user=alice target=app/pods images=(nginx:1.27,reg.example.com/tools/busybox@sha256:abc) sub=<NA> cmd=<NA> net=true."
	if a.Message != want {
		t.Errorf("message\n got %q\nwant %q", a.Message, want)
	}
	if a.Rule != "r" || a.Source != rules.SourceFalco || a.Severity != rules.Critical || a.Priority != "CRITICAL" ||
		a.User != "alice" || len(a.AuditIDs) != 1 || a.AuditIDs[0] != "a1" || a.Cluster != "prod" ||
		a.Time.Format("15:04:05.000") != "10:00:00.500" || strings.Join(a.Tags, ",") != "k8s,T1610" {
		t.Errorf("alert fields: %+v", a)
	}
	if v, ok := a.OutputFields["ka.target.subresource"]; !ok || v != nil {
		t.Errorf("output field of a missing value: %v, %v; want nil, true", v, ok)
	}
	if v := a.OutputFields["ka.uri.param[command]"]; v != nil {
		t.Errorf("ka.uri.param[command] = %v, want nil", v)
	}
	if v := a.OutputFields["ka.user.name"]; v != "alice" {
		t.Errorf("ka.user.name = %v", v)
	}
}

// TestSeverity maps every Falco priority as issue 10 says.
func TestSeverity(t *testing.T) {
	for p, want := range map[string]rules.Severity{
		"EMERGENCY": rules.Critical, "ALERT": rules.Critical, "CRITICAL": rules.Critical, "ERROR": rules.High,
		"WARNING": rules.Medium, "NOTICE": rules.Low, "INFORMATIONAL": rules.Info, "INFO": rules.Info,
		"DEBUG": rules.Info, "warning": rules.Medium,
	} {
		got, ok := parsePriority(p)
		if !ok || got != want {
			t.Errorf("%s: got %v, %v; want %v", p, got, ok, want)
		}
	}
	if _, ok := parsePriority("LOUD"); ok {
		t.Error("LOUD accepted as a priority")
	}
}

// TestImpersonation: ImpersonatedUser is set from the event.
func TestImpersonation(t *testing.T) {
	line := strings.Replace(metaEvent, `"user":{"username":"bob"}`, `"user":{"username":"bob"},"impersonatedUser":{"username":"system:admin"}`, 1)
	ev := loadOK(t, Options{}, ruleFile("i.yaml", "- rule: r\n  desc: d\n  condition: ka.impuser.name=system:admin\n  output: o %ka.impuser.name\n  priority: ERROR\n  source: k8s_audit\n"))
	got := ev.Eval(event(t, line))
	if len(got) != 1 || got[0].ImpersonatedUser != "system:admin" || got[0].User != "bob" || got[0].Message != "o system:admin" || got[0].Severity != rules.High {
		t.Fatalf("got %+v", got)
	}
}
