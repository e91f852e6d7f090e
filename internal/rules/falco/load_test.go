package falco

import (
	"strconv"
	"strings"
	"testing"

	"github.com/kubetrail/kubetrail/internal/rules"
)

// TestRealRulesLoad: Falco's k8saudit rule file, unchanged, loads with no
// problem at all and every one of its 48 rules compiles and is enabled.
func TestRealRulesLoad(t *testing.T) {
	f := falcoRulesFile(t)
	ev, problems := Load([]rules.File{f}, Options{})
	for _, p := range problems {
		t.Errorf("problem: %s", p)
	}
	want := strings.Count(string(f.Data), "\n- rule: ")
	if want != 48 {
		t.Fatalf("the rule file has %d rules, the test expects Falco's 48", want)
	}
	infos := ev.Rules()
	if len(infos) != want || len(ev.rules) != want {
		t.Fatalf("compiled %d rules (%d enabled), want %d", len(infos), len(ev.rules), want)
	}
	if infos[0].Name != "Disallowed K8s User" || infos[47].Name != "Untrusted Node Unsuccessfully Tried to Join the Cluster" {
		t.Errorf("rule order: first %q, last %q", infos[0].Name, infos[47].Name)
	}
	sev := map[string]rules.Severity{}
	for _, i := range infos {
		sev[i.Name] = i.Severity
		if i.Source != rules.SourceFalco || !i.Enabled || i.Line == 0 {
			t.Errorf("%s: %+v", i.Name, i)
		}
	}
	if sev["K8s Secret Get Successfully"] != rules.High || sev["Attach/Exec Pod"] != rules.Low ||
		sev["Disallowed K8s User"] != rules.Medium || sev["All K8s Audit Events"] != rules.Info {
		t.Errorf("severities: %v", sev)
	}
}

// TestBadFiles: every kind of bad input is an error at FILE:LINE:COL, and
// nothing of the bad file is loaded (its good rule is absent), while the
// good file beside it loads.
func TestBadFiles(t *testing.T) {
	good := ruleFile("good.yaml", `
- macro: m
  condition: ka.verb=get
- rule: good
  desc: d
  condition: m
  output: o
  priority: INFO
  source: k8s_audit
`)
	f := func(text, want string) {
		t.Helper()
		bad := ruleFile("bad.yaml", text+`
- rule: also in the bad file
  desc: d
  condition: ka.verb=create
  output: o
  priority: INFO
  source: k8s_audit
`)
		ev, problems := Load([]rules.File{good, bad}, Options{})
		var errs []string
		for _, p := range problems {
			if !p.Warning {
				errs = append(errs, p.String())
			}
		}
		if len(errs) == 0 || !strings.Contains(errs[0], want) {
			t.Errorf("problems %q, want one containing %q", errs, want)
		}
		for _, r := range ev.Rules() {
			if r.Name != "good" {
				t.Errorf("rule %q of the bad file was loaded", r.Name)
			}
		}
		if len(ev.Rules()) != 1 {
			t.Errorf("the good file's rule is missing: %v", ev.Rules())
		}
	}
	rule := func(cond string) string {
		return "- rule: r\n  desc: d\n  condition: " + cond + "\n  output: o\n  priority: INFO\n  source: k8s_audit\n"
	}
	f("- rule: [", "bad.yaml:1:")
	f("- rule: r\n  desc: d\n  condition: ka.verb=get\n  output: o\n  priority: INFO\n  source: k8s_audit\n  colour: red\n",
		`bad.yaml:7:3: error: unknown key "colour"`)
	f(rule("ka.verb=get and"), "bad.yaml:3:29: error: rule \"r\": expected a field, a macro or '(' but found the end")
	f(rule("ka.verb=get and (ka.uri=/x"), "bad.yaml:3:40: error: rule \"r\": expected ')'")
	f(rule("ka.verb=get and no_such_macro"), `bad.yaml:3:30: error: rule "r": undefined macro "no_such_macro"`)
	f(rule("ka.user.name in no_such_list"), `bad.yaml:3:30: error: rule "r": undefined list "no_such_list"`)
	f(rule("ka.verb=get and ka.no.such.field=1"), `bad.yaml:3:30: error: rule "r": unknown field "ka.no.such.field"`)
	f(rule(`ka.user.name regex "a(b"`), `bad.yaml:3:33: error: rule "r": invalid regex "a(b"`)
	f(rule(`ka.user.name glob "a[b"`), `bad.yaml:3:32: error: rule "r": invalid glob "a[b"`)
	f(rule("ka.req.pod.containers.image = nginx"), `bad.yaml:3:42: error: rule "r": ka.req.pod.containers.image is a list field`)
	f(rule("ka.uri.param = x"), `bad.yaml:3:14: error: rule "r": field ka.uri.param needs an argument`)
	// The json plugin refuses an empty pointer ("value argument is
	// required"): it is not the key "" (that is json.value[/]). The
	// condition parser refuses json.value[]; these reached the key "".
	f(rule(`json.value[""] exists`), `bad.yaml:3:14: error: rule "r": field json.value needs a JSON pointer`)
	f("- rule: r\n  desc: d\n  condition: ka.verb=get\n  output: v=%jevt.value[]\n  priority: INFO\n  source: k8s_audit\n",
		`bad.yaml:4:13: error: rule "r": output: field jevt.value needs a JSON pointer`)
	f(rule("ka.verb[0] = x"), `bad.yaml:3:14: error: rule "r": field ka.verb takes no argument`)
	f(rule("ka.response.code > abc"), "bad.yaml:3:33: error: rule \"r\": expected a number")
	f("- macro: loop\n  condition: loop\n"+rule("loop"), `macro "loop" refers to itself`)
	f("- macro: broken\n  condition: ka.verb=\n", "bad.yaml:2:22: error: macro broken: expected a value")
	f("- rule: r\n  desc: d\n  condition: >\n    ka.verb=get and\n    ka.bogus.field exists\n  output: o\n  priority: INFO\n  source: k8s_audit\n",
		`bad.yaml:5:5: error: rule "r": unknown field "ka.bogus.field"`)
	f("- rule: r\n  desc: d\n  condition: ka.verb=get\n  output: user=%ka.user.nam\n  priority: INFO\n  source: k8s_audit\n",
		`bad.yaml:4:16: error: rule "r": output: unknown field "ka.user.nam"`)
	f("- rule: r\n  desc: d\n  condition: ka.verb=get\n  output: o\n  priority: LOUD\n  source: k8s_audit\n", `bad.yaml:5:13: error: priority "LOUD"`)
	f("- rule: r\n  condition: ka.verb=get\n", "bad.yaml:1:3: error: rule \"r\" has no output")
	f("- list: l\n  items: [a]\n  append: true\n  override:\n    items: append\n", "append and override cannot be used together")
	f("- list: nope\n  items: [a]\n  append: true\n", `list "nope" is appended to or overridden but was not defined before`)
	// An append continues the earlier condition ("m" + " " + "and (..."),
	// and an error in the appended text is placed in the appending file.
	f("- rule: good\n  condition: and (ka.verb=x\n  append: true\n", `bad.yaml:2:28: error: rule "good": expected ')'`)
	f("- rule: good\n  priority: ERROR\n  append: true\n", `"priority" cannot be appended`)
	f("- rule: good\n  output: x\n  override:\n    condition: append\n", `override names "condition" but the item does not give it`)
	f("- widget: w\n", "bad.yaml:1:3: error: unknown item")
	f("rule: r\n", "bad.yaml:2:1: error: invalid YAML: did not find expected key")
	f("- rule: r\n  desc: d\n  condition: ka.verb=get\n  output: o\n  priority: INFO\n  source: k8s_audit\n  exceptions:\n  - name: e\n    fields: [ka.user.name, ka.nope]\n    values: [[a, b]]\n",
		`bad.yaml:8:5: error: rule "r": unknown field "ka.nope"`)
	// As Falco: with a single field, comps is in, pmatch or intersects
	// (kubetrail compared only the first value with startswith and
	// dropped the others), and a single string.
	exc := "- rule: r\n  desc: d\n  condition: ka.verb=get\n  output: o\n  priority: INFO\n  source: k8s_audit\n  exceptions:\n  - name: e\n"
	f(exc+"    fields: ka.user.name\n    comps: startswith\n    values: [ci-, deploy-]\n",
		`bad.yaml:8:5: error: rule "r": exception "e": with a single field, comps must be one of in, pmatch, intersects`)
	f(exc+"    fields: ka.user.name\n    comps: [in]\n    values: [ci, deploy]\n",
		`bad.yaml:8:5: error: rule "r": exception "e": with a single field, comps must be a single string too`)
	// A list entry of a tuple compares with in, intersects or pmatch; with
	// = only its first item was compared.
	f(exc+"    fields: ka.user.name\n    values: [[alice, bob]]\n",
		`bad.yaml:8:5: error: rule "r": exception "e": with a single field, values must be strings`)
	f(exc+"    fields: [ka.user.name, ka.verb]\n    values: [[[alice, bob], get]]\n",
		`bad.yaml:8:5: error: rule "r": exception "e": ka.user.name: a list of values needs comps in, intersects or pmatch, not =`)
}

// TestExceptionSingleFieldPmatch: a single-field exception with comps
// pmatch or intersects checks every value, as Falco builds
// "field comps (v1, v2)".
// Mutation it catches: comparing only the first value.
func TestExceptionSingleFieldPmatch(t *testing.T) {
	ev := loadOK(t, Options{}, ruleFile("r.yaml", `
- rule: r
  desc: d
  condition: ka.verb=get
  output: o
  priority: INFO
  source: k8s_audit
  exceptions:
  - name: healthz
    fields: ka.uri
    comps: pmatch
    values: [/healthz, /livez]
`))
	for uri, want := range map[string]int{"/healthz/etcd": 0, "/livez": 0, "/api/v1/pods": 1} {
		e := event(t, `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"a","stage":"ResponseComplete","requestURI":"`+uri+`","verb":"get","user":{"username":"u"},"stageTimestamp":"2026-12-01T10:00:00Z"}`)
		if got := len(ev.Eval(e)); got != want {
			t.Errorf("%s: %d alerts, want %d", uri, got, want)
		}
	}
}

// TestNotAList: a rule file must be a YAML list.
func TestNotAList(t *testing.T) {
	_, problems := Load([]rules.File{ruleFile("m.yaml", "rule: r\ncondition: x\n")}, Options{})
	if len(problems) != 1 || problems[0].String() != "m.yaml:1:1: error: a Falco rule file must be a list of rule, macro and list items" {
		t.Errorf("problems %v", problems)
	}
}

// TestMerging: lists, macros and rules changed by later files with append
// and override, exceptions (defined, appended, with list values), enabled,
// rules of other sources skipped with one line while their lists and
// macros load, and skip-if-unknown-filter.
func TestMerging(t *testing.T) {
	syscall := ruleFile("falco_rules.yaml", `
- list: privileged_images
  items: [falcosecurity/falco]
- macro: never_true
  condition: (evt.num=0)
- rule: Write below etc
  desc: d
  condition: evt.type=open and fd.name startswith /etc
  output: o %proc.name
  priority: ERROR
- rule: Another syscall rule
  desc: d
  condition: proc.name=sh
  output: o
  priority: ERROR
  source: syscall
`)
	base := ruleFile("k8s.yaml", `
- list: users
  items: [alice]
- macro: watched
  condition: ka.user.name in (users)
- rule: Watched user
  desc: d
  condition: watched
  output: user=%ka.user.name
  priority: WARNING
  source: k8s_audit
  tags: [a]
  exceptions:
  - name: by_ns
    fields: [ka.target.namespace, ka.verb]
    comps: [=, in]
    values:
    - [kube-system, [get, list]]
- rule: Privileged image
  desc: d
  condition: ka.req.pod.containers.image.repository in (privileged_images)
  output: o
  priority: INFO
  source: k8s_audit
- rule: Off later
  desc: d
  condition: ka.verb exists
  output: o
  priority: INFO
  source: k8s_audit
- rule: Uses a field kubetrail lacks
  desc: d
  condition: ka.some.future.field exists
  output: o
  priority: INFO
  source: k8s_audit
  skip-if-unknown-filter: true
`)
	local := ruleFile("local.yaml", `
- list: users
  items: [bob]
  append: true
- list: privileged_images
  items: [nginx]
  override:
    items: replace
- macro: watched
  condition: or ka.user.name=carol
  append: true
- rule: Watched user
  exceptions:
  - name: by_ns
    values:
    - [web, [get]]
  - name: by_user
    fields: ka.user.name
    values: [dave]
  append: true
- rule: Watched user
  priority: CRITICAL
  tags: [b]
  override:
    priority: replace
    tags: append
- rule: Off later
  enabled: false
`)
	ev, problems := Load([]rules.File{syscall, base, local}, Options{Matching: MatchAll})
	var warns []string
	for _, p := range problems {
		if !p.Warning {
			t.Fatalf("error: %s", p)
		}
		warns = append(warns, p.String())
	}
	wantWarns := []string{
		"falco_rules.yaml: warning: skipped 2 rules of other sources than k8s_audit (syscall: 2); their lists and macros are loaded",
		"k8s.yaml:33:14: warning: rule \"Uses a field kubetrail lacks\": unknown field \"ka.some.future.field\" (see docs/detection.md for the fields kubetrail supports); the rule is skipped (skip-if-unknown-filter)",
	}
	if strings.Join(warns, "\n") != strings.Join(wantWarns, "\n") {
		t.Errorf("warnings\n got %q\nwant %q", warns, wantWarns)
	}
	var names []string
	for _, r := range ev.Rules() {
		names = append(names, r.Name)
	}
	if strings.Join(names, ",") != "Watched user,Privileged image,Off later" {
		t.Errorf("rules %v", names)
	}
	if ev.Rules()[2].Enabled || len(ev.rules) != 2 {
		t.Error("Off later is still enabled")
	}
	mk := func(user, ns, verb, image string) *rules.Event {
		line := `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Request","auditID":"x","stage":"ResponseComplete","requestURI":"/x","verb":"` + verb +
			`","user":{"username":"` + user + `"},"objectRef":{"resource":"pods","namespace":"` + ns + `","name":"p"},` +
			`"requestObject":{"spec":{"containers":[{"name":"c","image":"` + image + `"}]}},"stageTimestamp":"2026-03-01T10:00:00Z"}`
		return event(t, line)
	}
	fired := func(e *rules.Event) string {
		var out []string
		for _, a := range e2alerts(ev, e) {
			out = append(out, a.Rule+"/"+a.Severity.String()+"/"+strings.Join(a.Tags, "+"))
		}
		return strings.Join(out, ",")
	}
	for _, tc := range []struct {
		e    *rules.Event
		want string
	}{
		{mk("alice", "default", "create", "busybox"), "Watched user/critical/a+b"},
		{mk("bob", "default", "create", "busybox"), "Watched user/critical/a+b"},   // list append
		{mk("carol", "default", "create", "busybox"), "Watched user/critical/a+b"}, // macro append
		{mk("erin", "default", "create", "busybox"), ""},
		{mk("alice", "kube-system", "get", "busybox"), ""},                                              // exception
		{mk("alice", "kube-system", "create", "busybox"), "Watched user/critical/a+b"},                  // exception needs both fields
		{mk("alice", "web", "get", "busybox"), ""},                                                      // appended exception value
		{mk("dave", "default", "create", "busybox"), ""},                                                // new exception, single field
		{mk("erin", "default", "create", "nginx:1"), "Privileged image/info/"},                          // list override: replace
		{mk("erin", "default", "create", "falcosecurity/falco:1"), ""},                                  // the replaced item is gone
		{mk("alice", "default", "create", "nginx"), "Watched user/critical/a+b,Privileged image/info/"}, // rule_matching: all
	} {
		if got := fired(tc.e); got != tc.want {
			t.Errorf("%s in %s doing %s: got %q, want %q", tc.e.Ev.User.Username, tc.e.Ev.ObjectRef.Namespace, tc.e.Ev.Verb, got, tc.want)
		}
	}
	first := loadOK(t, Options{}, syscall, base, local)
	if got := first.Eval(mk("alice", "default", "create", "nginx")); len(got) != 1 || got[0].Rule != "Watched user" {
		t.Errorf("rule_matching first: %+v", got)
	}
}

func e2alerts(ev *Evaluator, e *rules.Event) []rules.Alert { return ev.Eval(e) }

// TestLooksLikeFalco tells Falco rule files from other YAML.
func TestLooksLikeFalco(t *testing.T) {
	if !LooksLikeFalco(falcoRulesFile(t).Data) {
		t.Error("Falco's own rule file not recognised")
	}
	for _, s := range []string{"title: x\nlogsource: {product: kubernetes}\n", "- name: r\n  severity: high\n", "", "[1, 2]"} {
		if LooksLikeFalco([]byte(s)) {
			t.Errorf("%q taken for a Falco rule file", s)
		}
	}
}

// TestParseMatching reads rule_matching.
func TestParseMatching(t *testing.T) {
	if m, err := ParseMatching("all"); err != nil || m != MatchAll {
		t.Error("all")
	}
	if m, err := ParseMatching("first"); err != nil || m != MatchFirst {
		t.Error("first")
	}
	if _, err := ParseMatching("some"); err == nil {
		t.Error("some accepted")
	}
}

// TestQuotedListItems: Falco puts a list's items into the condition as
// written, so an item written with quotes inside the YAML string
// ('"a b"', common in Falco's own lists) is a quoted value, a b; the
// same holds for exception values. kubetrail compared the quotes too,
// and such items never matched.
// Mutation it catches: using list items and exception values verbatim.
func TestQuotedListItems(t *testing.T) {
	ev := loadOK(t, Options{}, ruleFile("r.yaml", `
- list: people
  items: ['"alice smith"', '"bob"', carol]
- rule: r
  desc: d
  condition: ka.user.name in (people)
  output: o
  priority: INFO
  source: k8s_audit
  exceptions:
  - name: ci
    fields: ka.user.name
    values: ['"carol"']
`))
	for user, want := range map[string]int{"alice smith": 1, "bob": 1, `"bob"`: 0, "carol": 0} {
		e := event(t, `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"a","stage":"ResponseComplete","requestURI":"/api","verb":"get","user":{"username":`+strconv.Quote(user)+`},"stageTimestamp":"2026-12-01T10:00:00Z"}`)
		if got := len(ev.Eval(e)); got != want {
			t.Errorf("user %s: %d alerts, want %d", user, got, want)
		}
	}
}

// TestDefinitionOrder: Falco resolves a macro's macros and a list's lists
// in load order. A macro using a macro defined after it is an error
// (Falco: undefined macro) at the use; a rule may use any macro; a list
// item naming a list defined after it is that string (with a warning),
// not the later list's items.
// Mutation it catches: resolving every name whatever its order (the
// macro loads, the list takes alice).
func TestDefinitionOrder(t *testing.T) {
	rule := "- rule: r\n  desc: d\n  condition: %s\n  output: o\n  priority: INFO\n  source: k8s_audit\n"
	_, problems := Load([]rules.File{ruleFile("order.yaml", "- macro: early\n  condition: ka.verb=get and late\n- macro: late\n  condition: ka.user.name=alice\n"+
		strings.Replace(rule, "%s", "early", 1))}, Options{})
	if len(problems) != 1 || problems[0].Warning ||
		!strings.Contains(problems[0].String(), `order.yaml:2:30: error: rule "r": macro "early" uses macro "late", which is defined after it`) {
		t.Errorf("problems %q; want the macro defined after its use refused at order.yaml:2:30", problems)
	}

	// An append is a new definition: it sees the macros before it.
	loadOK(t, Options{}, ruleFile("append.yaml", "- macro: early\n  condition: ka.verb=get\n- macro: late\n  condition: ka.user.name=alice\n"+
		"- macro: early\n  append: true\n  condition: and late\n"+strings.Replace(rule, "%s", "early", 1)))

	// A rule sees every macro, before or after it.
	loadOK(t, Options{}, ruleFile("rule.yaml", strings.Replace(rule, "%s", "m", 1)+"- macro: m\n  condition: ka.verb=get\n"))

	ev, problems := Load([]rules.File{ruleFile("lists.yaml", "- list: outer\n  items: [inner, bob]\n- list: inner\n  items: [alice]\n"+
		strings.Replace(rule, "%s", "ka.user.name in (outer)", 1))}, Options{})
	if len(problems) != 1 || !problems[0].Warning || !strings.Contains(problems[0].String(), `lists.yaml:1:9`) ||
		!strings.Contains(problems[0].String(), `list "outer": item "inner" names a list defined after it`) {
		t.Errorf("problems %q; want one warning at lists.yaml:1:9 naming the list and the item", problems)
	}
	for user, want := range map[string]bool{"alice": false, "inner": true, "bob": true} {
		e := event(t, `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"a","stage":"ResponseComplete","requestURI":"/api","verb":"get","user":{"username":"`+user+`"},"requestReceivedTimestamp":"2026-12-01T10:00:00Z","stageTimestamp":"2026-12-01T10:00:00Z"}`)
		if got := len(ev.Eval(e)) > 0; got != want {
			t.Errorf("user %s: fired %v, want %v", user, got, want)
		}
	}
}
