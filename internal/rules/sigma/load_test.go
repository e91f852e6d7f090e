package sigma

import (
	"strings"
	"testing"

	"github.com/kubetrail/kubetrail/internal/rules"
)

const head = "title: T\nlogsource:\n  product: kubernetes\n  service: audit\n"

// TestLoadErrors: each bad file gets an error at its place, and nothing
// from it loads, while a good file loaded beside it does.
func TestLoadErrors(t *testing.T) {
	good := rules.File{Name: "good.yml", Data: []byte(ruleYAML("s:\n  verb: get\ncondition: s"))}
	f := func(body, want string) {
		t.Helper()
		rs, probs := Load(rules.File{Name: "bad.yml", Data: []byte(body)}, good)
		var errs []string
		for _, p := range probs {
			if !p.Warning {
				errs = append(errs, p.String())
			}
		}
		if len(errs) == 0 || !strings.HasPrefix(errs[0], want) {
			t.Errorf("%s\nerrors %q, want the first to start with %q", body, errs, want)
		}
		if got := rs.Rules(); len(got) != 1 || got[0].File != "good.yml" {
			t.Errorf("%s\nloaded %+v, want only good.yml's rule", body, got)
		}
	}
	f("title: [unclosed\n", "bad.yml:1: error: invalid YAML")
	f("title: T\nlogsource: {product: kubernetes, service: audit}\ndetection:\n  s:\n    verb: *\n  condition: s\n", "bad.yml:5: error: invalid YAML: did not find expected alphabetic or numeric character (a bare * starts a YAML alias")
	f(head+"detection:\n  s:\n    verb|startswith|wide: x\n  condition: s\n", "bad.yml:7:5: error: modifier |wide is not supported")
	f(head+"detection:\n  s:\n    verb|contain: x\n  condition: s\n", "bad.yml:7:5: error: unknown modifier |contain")
	f(head+"detection:\n  s:\n    verb|contains|startswith: x\n  condition: s\n", "bad.yml:7:5: error: |contains and |startswith cannot be combined")
	f(head+"detection:\n  s:\n    verb|i: x\n  condition: s\n", "bad.yml:7:5: error: |i applies only after |re")
	f(head+"detection:\n  s:\n    verb|re: 'a(b'\n  condition: s\n", "bad.yml:7:14: error: invalid regular expression \"a(b\"")
	f(head+"detection:\n  s:\n    sourceIPs|cidr: 10.0.0.1\n  condition: s\n", "bad.yml:7:21: error: |cidr: \"10.0.0.1\" is not a CIDR prefix")
	f(head+"detection:\n  s:\n    responseStatus.code|gt: many\n  condition: s\n", "bad.yml:7:29: error: |gt: want a number")
	f(head+"detection:\n  s:\n    verb|exists: maybe\n  condition: s\n", "bad.yml:7:18: error: verb|exists: want true or false")
	f(head+"detection:\n  s:\n    verb|contains: null\n  condition: s\n", "bad.yml:7:20: error: null cannot be used with a matching modifier")
	f(head+"detection:\n  s:\n    verb: get\n", "bad.yml:5:1: error: detection: no condition")
	f(head, "bad.yml:1:1: error: detection: missing")
	f("logsource: {product: kubernetes, service: audit}\ndetection: {s: {verb: get}, condition: s}\n", "bad.yml:1:1: error: title: missing")
	f("title: T\ndetection: {s: {verb: get}, condition: s}\n", "bad.yml:1:1: error: logsource: missing")
	f(head+"level: severe\ndetection: {s: {verb: get}, condition: s}\n", "bad.yml:5:8: error: level \"severe\": want informational")
	f(head+"detection:\n  s:\n    verb: get\n  condition: s and\n", "bad.yml:8:19: error: condition: the condition ends too early")
	f(head+"detection:\n  s:\n    verb: get\n  condition: s and t\n", "bad.yml:8:20: error: condition: no search identifier \"t\"")
	f(head+"detection:\n  s:\n    verb: get\n  condition: (s\n", "bad.yml:8:16: error: condition: unbalanced (")
	f(head+"detection:\n  s:\n    verb: get\n  condition: s)\n", "bad.yml:8:15: error: condition: unbalanced )")
	f(head+"detection:\n  s:\n    verb: get\n  condition: 1 of x*\n", "bad.yml:8:14: error: condition: x* matches no search identifier")
	f(head+"detection:\n  s:\n    verb: get\n  condition: s | count() > 5\n", "bad.yml:8:16: error: condition: aggregations")
	f(head+"detection:\n  s:\n    verb: get\n  condition: 2 of s\n", "bad.yml:8:14: error: condition: 2 of is not supported")
	f(head+"detection:\n  s:\n    verb: get\n  condition: s*\n", "bad.yml:8:14: error: condition: \"s*\": a pattern needs 1 of or all of")
	f(head+"detection:\n  s:\n    verb: get\n  condition: ''\n", "bad.yml:8:14: error: condition: the condition is empty")
	f(head+"detection:\n  s: []\n  condition: s\n", "bad.yml:6:6: error: search s is an empty list")
	f(head+"detection:\n  s:\n    verb: {a: b}\n  condition: s\n", "bad.yml:7:11: error: field verb: want a value or a list of values")
	f(head+"detection:\n  s:\n    - verb: get\n    - list\n  condition: s\n", "bad.yml:8:7: error: search s mixes maps and plain values")
	f(head+"detection:\n  s:\n    verb: get\n    verb: list\n  condition: s\n", "bad.yml:8:5: error: field verb appears twice")
	// Sigma 2's correlation rules and meta filters are refused by name
	// (they were refused as a rule without logsource or detection).
	f("title: C\ncorrelation:\n  type: event_count\n  rules: [x]\n  timespan: 1m\n  condition: {gte: 10}\n", "bad.yml:2:1: error: correlation rules are not supported")
	f(head+"filter:\n  rules: [x]\n  s: {verb: get}\n  condition: not s\n", "bad.yml:5:1: error: Sigma filters (filter:) are not supported")
	// An error in the second rule of a file drops the first too.
	f(ruleYAML("s:\n  verb: get\ncondition: s")+"---\n"+head+"detection: {s: {verb|nope: x}, condition: s}\n", "bad.yml:15:17: error: unknown modifier |nope")
}

func TestLoadWarnings(t *testing.T) {
	f := func(body string, loaded int, want ...string) {
		t.Helper()
		rs, probs := Load(rules.File{Name: "w.yml", Data: []byte(body)})
		var got []string
		for _, p := range probs {
			got = append(got, p.String())
		}
		if len(got) != len(want) {
			t.Fatalf("%s\nproblems %q, want %d", body, got, len(want))
		}
		for i := range want {
			if !strings.HasPrefix(got[i], want[i]) {
				t.Errorf("problem %d: %q, want it to start with %q", i, got[i], want[i])
			}
		}
		if n := len(rs.Rules()); n != loaded {
			t.Errorf("loaded %d rules, want %d", n, loaded)
		}
	}
	// Another log source: skipped, with a warning.
	f("title: W\nlogsource: {product: windows, service: security}\ndetection: {s: {EventID: 4624}, condition: s}\n", 0,
		"w.yml:2:1: warning: rule \"W\" is for logsource product: windows, service: security")
	// Fields audit events lack, wrong types, and whether the rule can still match.
	f(head+"detection:\n  s:\n    verb: get\n    objectRef.group: apps\n  t:\n    verb: list\n  condition: s or t\n", 1,
		"w.yml:8:5: warning: field objectRef.group: objectRef has no field \"group\"")
	f(head+"detection:\n  s:\n    responseStatus.code: [ALLOW, 403]\n  condition: s\n", 1,
		"w.yml:7:27: warning: responseStatus.code is a number in audit events: \"ALLOW\" can never match it")
	f(head+"detection:\n  s:\n    responseStatus.code|all: [403, deny]\n  condition: s\n", 1,
		"w.yml:7:36: warning: responseStatus.code is a number in audit events: \"deny\" can never match it",
		"w.yml:8:3: warning: rule \"T\" can never match")
	f(head+"detection:\n  s:\n    objectRef: pods\n  condition: s\n", 1,
		"w.yml:7:16: warning: objectRef is a object in audit events: \"pods\" can never match it",
		"w.yml:8:3: warning: rule \"T\" can never match")
	f(head+"detection:\n  s:\n    verb.name: get\n  condition: not s\n", 1,
		"w.yml:7:5: warning: field verb.name: verb is a string and has no field \"name\"",
		"w.yml:8:3: warning: rule \"T\" matches every audit event")
	f(head+"detection:\n  s:\n    verb|contains|all: get\n  condition: s\n", 1,
		"w.yml:7:5: warning: field verb: |all with a single value")
	f(head+"detection:\n  s:\n    verb: get\n  timeframe: 5m\n  condition: s\n", 1,
		"w.yml:8:3: warning: timeframe applies only to aggregations")
	f("", 0, "w.yml: warning: no Sigma rule in the file")
}

func TestCollections(t *testing.T) {
	data := `action: global
title: Collection
level: high
logsource:
  product: kubernetes
  service: audit
detection:
  filter:
    user.username: 'system:*'
---
detection:
  sel:
    verb: delete
  condition: sel and not filter
---
action: repeat
title: Collection (list)
detection:
  sel:
    verb: list
---
action: reset
---
title: Alone
logsource: {product: kubernetes, service: audit}
detection:
  sel: {verb: watch}
  condition: sel
`
	rs, probs := Load(rules.File{Name: "c.yml", Data: []byte(data)})
	if len(probs) != 0 {
		t.Fatal(probs)
	}
	infos := rs.Rules()
	var names []string
	for _, r := range infos {
		names = append(names, r.Name+"/"+r.Severity.String())
	}
	if got, want := strings.Join(names, ","), "Collection/high,Collection (list)/high,Alone/medium"; got != want {
		t.Fatalf("rules %s, want %s", got, want)
	}
	f := func(user, verb string, want ...string) {
		t.Helper()
		var got []string
		for _, a := range rs.Eval(event(t, "user.username", user, "verb", verb)) {
			got = append(got, a.Rule)
		}
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Errorf("%s %s: alerts %q, want %q", user, verb, got, want)
		}
	}
	f("alice", "delete", "Collection")
	f("system:kube-controller-manager", "delete")
	f("alice", "list", "Collection (list)")
	f("system:node:n1", "list")
	f("alice", "watch", "Alone")
}

func TestLooksLikeSigma(t *testing.T) {
	f := func(data string, want bool) {
		t.Helper()
		if got := LooksLikeSigma([]byte(data)); got != want {
			t.Errorf("%q: %v, want %v", data, got, want)
		}
	}
	f(ruleYAML("s: {verb: get}\ncondition: s"), true)
	f("action: global\nlogsource: {product: kubernetes}\n", true)
	// A correlation rule or a filter is Sigma, so that loading it says
	// it is not supported rather than "not a rule file".
	f("title: C\ncorrelation: {type: event_count, rules: [x], timespan: 1m}\n", true)
	f("title: F\nfilter: {rules: [x], s: {verb: get}, condition: not s}\n", true)
	f("- rule: Falco rule\n  condition: ka.verb=get\n", false)
	f("name: native\ncondition: verb == \"get\"\n", false)
	f("{{{", false)
}
