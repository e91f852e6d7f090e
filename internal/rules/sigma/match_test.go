package sigma

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kubetrail/kubetrail/internal/rules"
)

// matches reports whether the one-rule detection matches e.
func matches(t *testing.T, detection string, e *rules.Event) bool {
	t.Helper()
	return len(compile(t, detection).Eval(e)) == 1
}

func TestModifiersAndWildcards(t *testing.T) {
	e := event(t,
		"verb", "create",
		"userAgent", `Mozilla/5.0 C:\tools\*star?.exe`,
		"requestURI", "/api/v1/namespaces/default/pods/web/exec?command=%2Fbin%2Fsh&stdin=true",
		"sourceIPs", []any{"192.168.7.9", "10.1.2.3"},
	)
	f := func(detection string, want bool) {
		t.Helper()
		if got := matches(t, detection, e); got != want {
			t.Errorf("%s\nmatched %v, want %v", detection, got, want)
		}
	}
	// Plain strings: whole value, case-insensitive.
	f("s:\n  verb: create\ncondition: s", true)
	f("s:\n  verb: CREATE\ncondition: s", true)
	f("s:\n  verb: creat\ncondition: s", false)
	f("s:\n  verb|cased: CREATE\ncondition: s", false)
	f("s:\n  verb|cased: create\ncondition: s", true)
	// Value lists are ORed; |all ANDs them.
	f("s:\n  verb: [get, create]\ncondition: s", true)
	f("s:\n  verb: [get, list]\ncondition: s", false)
	f("s:\n  requestURI|contains|all: ['%2fbin', 'stdin=TRUE']\ncondition: s", true)
	f("s:\n  requestURI|contains|all: ['%2fbin', 'stdout=true']\ncondition: s", false)
	// contains, startswith, endswith, case-insensitive.
	f("s:\n  requestURI|contains: '%2fbin%2fsh'\ncondition: s", true)
	f("s:\n  requestURI|contains: '%2fbin%2fbash'\ncondition: s", false)
	f("s:\n  requestURI|startswith: '/API/v1/'\ncondition: s", true)
	f("s:\n  requestURI|startswith: 'v1/'\ncondition: s", false)
	f("s:\n  requestURI|endswith: 'STDIN=true'\ncondition: s", true)
	f("s:\n  requestURI|endswith: '/exec'\ncondition: s", false)
	f("s:\n  requestURI|contains|cased: '%2fbin'\ncondition: s", false)
	// Wildcards: * any run, ? one character, anywhere.
	f("s:\n  verb: 'cr*e'\ncondition: s", true)
	f("s:\n  verb: 'cr?ate'\ncondition: s", true)
	f("s:\n  verb: 'cr?te'\ncondition: s", false)
	f("s:\n  verb: 'c*t?'\ncondition: s", true)
	f("s:\n  verb: 'c*x*'\ncondition: s", false)
	f("s:\n  requestURI: '*exec?command=*'\ncondition: s", true)
	// Escapes: \* and \? are plain; \\ before a wildcard is a backslash;
	// a backslash before anything else is itself.
	f(`s:`+"\n"+`  userAgent|endswith: '\tools\\\*star\?.exe'`+"\ncondition: s", true)
	f(`s:`+"\n"+`  userAgent|endswith: '\tools\\\*starX.exe'`+"\ncondition: s", false)
	f(`s:`+"\n"+`  userAgent|contains: 'tools\*'`+"\ncondition: s", false)
	f(`s:`+"\n"+`  userAgent|contains: 'tools\\*star'`+"\ncondition: s", true)
	f(`s:`+"\n"+`  userAgent|contains: 'C:\tools'`+"\ncondition: s", true)
	// re: unanchored, case-sensitive unless |i or (?i).
	f("s:\n  requestURI|re: 'command=%2Fbin%2F(sh|bash)'\ncondition: s", true)
	f("s:\n  requestURI|re: 'COMMAND='\ncondition: s", false)
	f("s:\n  requestURI|re|i: 'COMMAND='\ncondition: s", true)
	f("s:\n  requestURI|re: '(?i)COMMAND='\ncondition: s", true)
	f("s:\n  verb|re: '^creat$'\ncondition: s", false)
	// cidr over a list of IPs: one is enough.
	f("s:\n  sourceIPs|cidr: 10.0.0.0/8\ncondition: s", true)
	f("s:\n  sourceIPs|cidr: [172.16.0.0/12, 192.168.7.0/24]\ncondition: s", true)
	f("s:\n  sourceIPs|cidr: 172.16.0.0/12\ncondition: s", false)
	f("s:\n  sourceIPs|cidr: 'fd00::/8'\ncondition: s", false)
	// Numbers compare as numbers; a string compares with the number's text.
	f("s:\n  responseStatus.code: 200\ncondition: s", true)
	f("s:\n  responseStatus.code: 200.0\ncondition: s", true)
	f("s:\n  responseStatus.code: '200'\ncondition: s", true)
	f("s:\n  responseStatus.code: '2*'\ncondition: s", true)
	f("s:\n  responseStatus.code: 201\ncondition: s", false)
	f("s:\n  responseStatus.code|gte: 200\ncondition: s", true)
	f("s:\n  responseStatus.code|gt: 200\ncondition: s", false)
	f("s:\n  responseStatus.code|lt: 300\ncondition: s", true)
	f("s:\n  responseStatus.code|lte: 199\ncondition: s", false)
	// null and exists.
	f("s:\n  objectRef.subresource: null\ncondition: s", true)
	f("s:\n  objectRef.name: null\ncondition: s", false)
	f("s:\n  objectRef.subresource|exists: false\ncondition: s", true)
	f("s:\n  objectRef.name|exists: true\ncondition: s", true)
	f("s:\n  objectRef.name|exists: false\ncondition: s", false)
	f("s:\n  impersonatedUser|exists: true\ncondition: s", false)
	f("s:\n  objectRef: '*'\ncondition: s", true)
	f("s:\n  impersonatedUser: '*'\ncondition: s", false)
	// An empty value is not a missing one.
	f("s:\n  objectRef.subresource: ''\ncondition: s", false)
	f("s:\n  objectRef.subresource: '*'\ncondition: s", false)
	// Keyword searches: a value anywhere in the event, as a substring.
	f("k:\n  - 'STDIN=TRUE'\ncondition: k", true)
	f("k:\n  - 'no-such-thing'\n  - 'system:AUTHENTICATED'\ncondition: k", true)
	f("k:\n  '|all':\n    - 'alice'\n    - 'bob'\ncondition: k", false)
}

func TestConditions(t *testing.T) {
	e := event(t, "verb", "delete", "objectRef.resource", "secrets")
	searches := "sel_verb:\n  verb: delete\nsel_res:\n  objectRef.resource: secrets\nsel_other:\n  verb: list\n_private:\n  verb: watch\nfilter:\n  user.username: alice\n"
	f := func(cond string, want bool) {
		t.Helper()
		if got := matches(t, searches+"condition: "+cond, e); got != want {
			t.Errorf("condition %q matched %v, want %v", cond, got, want)
		}
	}
	f("sel_verb", true)
	f("sel_other", false)
	f("not sel_other", true)
	f("sel_verb and sel_res", true)
	f("sel_verb and sel_other", false)
	f("sel_other or sel_res", true)
	f("sel_verb and not filter", false)
	f("sel_verb and not (filter or sel_other)", false)
	f("(sel_verb or sel_other) and sel_res", true)
	f("sel_other and sel_res or sel_verb", true)    // and binds tighter than or
	f("sel_other and (sel_res or sel_verb)", false) // parentheses override
	f("not sel_verb or sel_res", true)              // not binds tighter than or
	f("not (sel_verb or sel_res)", false)
	f("1 of sel_*", true)
	f("all of sel_*", false)
	f("all of sel_v* and all of sel_r*", true)
	f("1 of sel_o*", false)
	f("not 1 of sel_o*", true) // not applies to the whole 1 of
	f("1 of them", true)
	f("all of them", false)
	f("1 of *_private", false)
	f("all of them or sel_verb", true)
	f("1 of _priv*", false)
	f("NOT sel_other AND sel_verb", true) // keywords in any case
	f("sel_verb and 1 of sel_r*", true)
	f("1 of sel_v* and not 1 of fil*", false)
	f("all of sel_v*", true)

	// them leaves out identifiers starting with _: with only _private
	// defined besides a failing search, all of them holds.
	if !matches(t, "sel_verb:\n  verb: delete\n_private:\n  verb: watch\ncondition: all of them", e) {
		t.Error("all of them counted an identifier starting with _")
	}
	// A list of conditions is ORed.
	if !matches(t, searches+"condition:\n  - sel_other\n  - sel_res", e) {
		t.Error("a list of conditions is not ORed")
	}
}

func TestFieldPaths(t *testing.T) {
	pod := map[string]any{
		"metadata": map[string]any{"name": "p", "labels": map[string]any{"app.kubernetes.io/name": "web"}},
		"spec": map[string]any{
			"hostNetwork": true,
			"containers": []any{
				map[string]any{"name": "a", "securityContext": map[string]any{"privileged": false}},
				map[string]any{"name": "b", "securityContext": map[string]any{"privileged": true, "capabilities": map[string]any{"add": []any{"NET_ADMIN", "SYS_ADMIN"}}}, "ports": []any{map[string]any{"containerPort": 8080}}},
			},
			"volumes": []any{map[string]any{"name": "v", "hostPath": map[string]any{"path": "/etc"}}},
		},
	}
	e := event(t, "level", "RequestResponse", "verb", "create", "requestObject", pod,
		"impersonatedUser", map[string]any{"username": "system:admin"},
		"user.extra", map[string]any{"authentication.kubernetes.io/pod-name": []any{"runner-1"}})
	f := func(detection string, want bool) {
		t.Helper()
		if got := matches(t, detection, e); got != want {
			t.Errorf("%s\nmatched %v, want %v", detection, got, want)
		}
	}
	// Arrays in the path: one element matching is enough.
	f("s:\n  requestObject.spec.containers.securityContext.privileged: true\ncondition: s", true)
	f("s:\n  requestObject.spec.containers.securityContext.privileged: 'true'\ncondition: s", true)
	f("s:\n  requestObject.spec.containers.name: b\ncondition: s", true)
	f("s:\n  requestObject.spec.containers.name: c\ncondition: s", false)
	f("s:\n  requestObject.spec.containers.securityContext.capabilities.add: sys_admin\ncondition: s", true)
	f("s:\n  requestObject.spec.containers.ports.containerPort: 8080\ncondition: s", true)
	f("s:\n  requestObject.spec.containers.ports.containerPort: '80*'\ncondition: s", true)
	f("s:\n  requestObject.spec.containers.ports.containerPort|gt: 9000\ncondition: s", false)
	// A container without ports: the path is missing there, so null matches.
	f("s:\n  requestObject.spec.containers.ports: null\ncondition: s", true)
	f("s:\n  requestObject.spec.volumes.hostPath: '*'\ncondition: s", true)
	f("s:\n  requestObject.spec.volumes.hostPath|exists: true\ncondition: s", true)
	f("s:\n  requestObject.spec.volumes.emptyDir|exists: true\ncondition: s", false)
	f("s:\n  requestObject.spec.hostNetwork: true\ncondition: s", true)
	f("s:\n  requestObject.spec.hostPID: true\ncondition: s", false)
	f("s:\n  requestObject.spec.hostNetwork: false\ncondition: s", false)
	// Keys with dots.
	f("s:\n  requestObject.metadata.labels.app.kubernetes.io/name: web\ncondition: s", true)
	f("s:\n  annotations.authorization.k8s.io/decision: ALLOW\ncondition: s", true)
	f("s:\n  annotations.authorization.k8s.io/reason|exists: true\ncondition: s", false)
	f("s:\n  user.extra.authentication.kubernetes.io/pod-name: 'runner-*'\ncondition: s", true)
	// Lists of strings and impersonation.
	f("s:\n  user.groups: dev\ncondition: s", true)
	f("s:\n  user.groups: system:masters\ncondition: s", false)
	f("s:\n  user.groups|all: [dev, 'system:auth*']\ncondition: s", true)
	f("s:\n  impersonatedUser.username|startswith: 'system:'\ncondition: s", true)
	f("s:\n  stageTimestamp|startswith: '2024-05-01T10:00:00.1'\ncondition: s", true)
	f("s:\n  level: requestresponse\ncondition: s", true)
	// A body that is absent: nothing under it exists.
	meta := event(t)
	if matches(t, "s:\n  requestObject.spec.hostNetwork|exists: true\ncondition: s", meta) {
		t.Error("a field of an absent requestObject exists")
	}
	if !matches(t, "s:\n  requestObject: null\ncondition: s", meta) {
		t.Error("an absent requestObject is not null")
	}
}

// TestTopLevelKeysOutsideTheModel pins a deliberate difference from a
// generic JSON evaluator: kubetrail reads the fields audit.k8s.io/v1
// defines, so a key that is not one of them never matches even when the
// event's bytes hold it (the SigmaHQ rules' top-level apiGroup is such a
// key, and no API server writes it).
func TestTopLevelKeysOutsideTheModel(t *testing.T) {
	e := event(t, "verb", "create", "objectRef.resource", "selfsubjectrulesreviews", "apiGroup", "authorization.k8s.io")
	if matches(t, "s:\n  apiGroup: 'authorization.k8s.io'\ncondition: s", e) {
		t.Error("a top-level apiGroup matched")
	}
	if !matches(t, "s:\n  apiGroup: null\ncondition: s", e) {
		t.Error("a field outside the model is not missing")
	}
}

func TestAlertFields(t *testing.T) {
	rs, probs := Load(rules.File{Name: "r.yml", Data: []byte(`title: Exec In Pod (as Written)
description: Someone ran a command.
level: informational
tags: [attack.execution, attack.t1609]
logsource: {product: kubernetes, service: audit}
detection:
  sel: {objectRef.subresource: exec}
  condition: sel
`)})
	if len(probs) != 0 {
		t.Fatal(probs)
	}
	e := event(t, "auditID", "id-9", "verb", "create", "objectRef.subresource", "exec", "responseStatus.code", 101,
		"impersonatedUser", map[string]any{"username": "bob"}, "stageTimestamp", "2024-05-01T12:00:00.5+02:00")
	got := rs.Eval(e)
	if len(got) != 1 {
		t.Fatalf("%d alerts, want 1", len(got))
	}
	a := got[0]
	want := rules.Alert{
		Rule: "Exec In Pod (as Written)", Severity: rules.Info, Source: "sigma",
		AuditIDs: []string{"id-9"}, User: "alice", ImpersonatedUser: "bob",
		Message: "Exec In Pod (as Written): alice as bob create pods/exec default/web (101)",
		Tags:    []string{"attack.execution", "attack.t1609"}, Cluster: "test", Namespace: "default",
	}
	if a.Time.String() != "2024-05-01 10:00:00.5 +0000 UTC" {
		t.Errorf("time %s, want the stageTimestamp in UTC", a.Time)
	}
	a.Time = want.Time
	if diff := cmp.Diff(want, a); diff != "" {
		t.Error(diff)
	}
	info := rs.Rules()[0]
	if info.Name != want.Rule || info.Description != "Someone ran a command." || info.Line != 1 || info.File != "r.yml" || !info.Enabled {
		t.Errorf("rule info %+v", info)
	}
	// Without a user or an object: the request URI.
	e2 := event(t, "user", map[string]any{}, "objectRef", nil, "requestURI", "/version", "responseStatus.code", 401)
	if got := Summary(e2.Ev); got != "(unauthenticated) get /version (401)" {
		t.Errorf("summary %q", got)
	}
}

// TestPlainValueFoldsAsEqualFold: a plain value compares as
// strings.EqualFold (Unicode's simple folding, as the reference's (?i)
// and the prefilter's do) with the value as the rule writes it. Folding
// the rule's value first with strings.ToLower turned U+0130 (İ) into an
// ASCII i, outside İ's folding: `userAgent: İstanbul` then never matched
// the very value it names, and matched ISTANBUL.
func TestPlainValueFoldsAsEqualFold(t *testing.T) {
	for _, c := range []struct {
		value, ua string
		want      bool
	}{
		{"İstanbul", "İstanbul", true},
		{"İSTANBUL", "İstanbul", true},
		{"İstanbul", "ISTANBUL", false},
		{"istanbul", "İstanbul", false},
		{"\u212Aube", "kube", true},
		{"kube", "\u212AUBE", true},
	} {
		e := event(t, "userAgent", c.ua)
		d := "s:\n  userAgent: '" + c.value + "'\ncondition: s"
		if got := matches(t, d, e); got != c.want {
			t.Errorf("%s over userAgent %q: matched %v, want %v", d, c.ua, got, c.want)
		}
		rs := compile(t, d)
		pre, ok := rs.Prefilters(time.Now())
		if !ok || len(pre) != 1 {
			t.Fatalf("%s: prefilters %v %v", d, pre, ok)
		}
		if c.want && !pre[0].Match(e.Ev, "") {
			t.Errorf("%s matches userAgent %q, its prefilter %s does not", d, c.ua, pre[0])
		}
	}
}
