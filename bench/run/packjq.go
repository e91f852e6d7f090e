package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/kubetrail/kubetrail/internal/rules/builtin"
	"github.com/kubetrail/kubetrail/internal/rules/native"
)

// jqRule is a built-in rule's single-event condition written in jq.
type jqRule struct {
	rule string // the pack's rule name
	cond string // a jq boolean over one event
}

// jqPrelude defines the filter language's fields as jq functions, with
// its meaning for absent parts: an absent string is "", and code has no
// value when responseStatus or its code is absent, so code<400 is false.
// body is requestObject as JSON text (compact, keys in their order),
// which the pack's requestObject~"..." regular expressions read.
const jqPrelude = `def u: .user.username // "";
def imp: .impersonatedUser.username // "";
def res: .objectRef.resource // "";
def sub: .objectRef.subresource // "";
def ns: .objectRef.namespace // "";
def nm: .objectRef.name // "";
def done: .stage == "ResponseComplete";
def ok: (.responseStatus.code // 0) as $c | $c > 0 and $c < 400;
def body: if .requestObject == null then "" else (.requestObject | tojson) end;
def among($xs): . as $v | any($xs[]; . == $v);
def cup: .verb | among(["create","update","patch"]);
def ctl: u | among(["system:apiserver","system:kube-controller-manager"]);
def kssa: u | startswith("system:serviceaccount:kube-system:");
def person: u | startswith("system:") | not;
`

// packJQ returns the jq conditions of the built-in pack's single-event
// rules (internal/rules/builtin/pack.yaml), each the rule's condition
// term by term. Thresholds and sequences have none: jq filters one event
// at a time. checkJQCoverage proves every single-event rule has one.
func packJQ() []jqRule {
	return []jqRule{
		{"Binding to cluster-admin", `(res | among(["clusterrolebindings","rolebindings"])) and cup and done and ok
  and (body | test("\"roleRef\":\\{[^}]*\"name\":\"(cluster-admin|admin|edit)\""))
  and (ctl | not)`},
		{"Powerful ClusterRole written", `(res | among(["clusterroles","roles"])) and cup and done and ok
  and (body | test("\"verbs\":\\[[^\\]]*\"(\\*|escalate|bind|impersonate)\"|\"resources\":\\[[^\\]]*\"(\\*|pods/exec|pods/attach|nodes/proxy)\""))
  and (ctl | not) and (kssa | not)`},
		{"System role or binding changed", `(res | among(["clusterroles","roles","clusterrolebindings","rolebindings"]))
  and (.verb | among(["update","patch","delete"])) and (nm | startswith("system:")) and nm != "system:coredns"
  and done and ok and (ctl | not) and (kssa | not)`},
		{"Exec, attach or port-forward into a pod", `(sub | among(["exec","attach","portforward"])) and (.verb | among(["create","get"]))
  and (.stage | among(["ResponseStarted","ResponseComplete"]))`},
		{"Privileged or host-access workload", `(res | among(["pods","deployments","daemonsets","statefulsets","replicasets","jobs","cronjobs"])) and cup and done and ok
  and (body | test("\"privileged\":true|\"hostNetwork\":true|\"hostPID\":true|\"hostIPC\":true|\"hostPath\":\\{"))
  and ns != "kube-system" and u != "system:kube-controller-manager" and (u | startswith("system:node:") | not)`},
		{"Ephemeral container added", `sub == "ephemeralcontainers" and (.verb | among(["update","patch"])) and done and ok`},
		{"Workload or service account created in a system namespace", `(res | among(["pods","deployments","daemonsets","statefulsets","replicasets","jobs","cronjobs","serviceaccounts"]))
  and sub == "" and .verb == "create" and done and ok and (ns | among(["kube-system","kube-public","kube-node-lease"]))
  and (u | among(["system:apiserver","system:kube-controller-manager","system:kube-scheduler"]) | not)
  and (u | startswith("system:node:") | not) and (kssa | not)`},
		{"Secret read by a person", `res == "secrets" and (.verb | among(["get","list","watch"])) and done and ok and person`},
		{"Secrets listed by a service account outside kube-system", `res == "secrets" and (.verb | among(["list","watch"])) and done and ok
  and (u | startswith("system:serviceaccount:")) and (kssa | not)`},
		{"Anonymous request allowed", `u == "system:anonymous" and .annotations["authorization.k8s.io/decision"] == "allow" and done
  and ((.requestURI // "") | test("^/(healthz|livez|readyz|version)(\\?|/|$)") | not)`},
		{"Permission enumeration", `(res | among(["selfsubjectrulesreviews","selfsubjectaccessreviews"])) and .verb == "create" and done and person`},
		{"Service account token requested by a person", `res == "serviceaccounts" and sub == "token" and .verb == "create" and done and ok
  and (u | startswith("system:node:") | not) and u != "system:kube-controller-manager" and (kssa | not)`},
		{"Certificate signing request approved", `res == "certificatesigningrequests" and sub == "approval" and (.verb | among(["update","patch"])) and done and ok
  and u != "system:kube-controller-manager" and (kssa | not)`},
		{"Admission control changed", `(res | among(["validatingwebhookconfigurations","mutatingwebhookconfigurations","validatingadmissionpolicies","validatingadmissionpolicybindings"]))
  and (.verb | among(["create","update","patch","delete","deletecollection"])) and done and ok and (ctl | not)`},
		{"Kubernetes events deleted", `res == "events" and (.verb | among(["delete","deletecollection"])) and done and ok
  and u != "system:kube-controller-manager" and u != "system:apiserver"`},
		{"System identity impersonated", `((imp | startswith("system:")) or (.impersonatedUser.groups // [] | any(. == "system:masters"))) and person and done`},
		{"CronJob created or changed", `res == "cronjobs" and sub == "" and cup and done and ok and (ctl | not) and (kssa | not)`},
		{"Service opened on the nodes' ports", `res == "services" and sub == "" and cup and done and ok
  and (body | test("\"type\":\"NodePort\"")) and (ctl | not) and (kssa | not)`},
	}
}

// jqProgram is one jq program that tests every condition on each event
// and prints, per match, the condition's index, the audit ID, the receive
// time and the user, tab-separated.
func jqProgram(conds []jqRule) string {
	var b strings.Builder
	b.WriteString(jqPrelude)
	for i, c := range conds {
		if i > 0 {
			b.WriteString(",\n")
		}
		fmt.Fprintf(&b, "(if %s\n then \"%d\\t\\(.auditID)\\t\\(.requestReceivedTimestamp)\\t\\(u)\" else empty end)", c.cond, i)
	}
	b.WriteString("\n")
	return b.String()
}

// checkJQCoverage matches the jq conditions with the pack's rules: every
// enabled single-event rule must have exactly one, and every condition
// must name such a rule. It returns the rules that alert once per request
// and the names of the rules jq leaves out (thresholds and sequences).
func checkJQCoverage(pack []*native.Rule, conds []jqRule) (once map[string]bool, left []string, err error) {
	single := map[string]*native.Rule{}
	for _, r := range pack {
		switch {
		case !r.Enabled:
		case r.Threshold != nil || r.Sequence != nil:
			left = append(left, r.Name)
		default:
			single[r.Name] = r
		}
	}
	once = map[string]bool{}
	seen := map[string]bool{}
	for _, c := range conds {
		r, ok := single[c.rule]
		if !ok {
			return nil, nil, fmt.Errorf("jq condition for %q: the built-in pack has no enabled single-event rule of that name", c.rule)
		}
		if seen[c.rule] {
			return nil, nil, fmt.Errorf("two jq conditions for %q", c.rule)
		}
		seen[c.rule] = true
		once[c.rule] = r.OncePerRequest
	}
	for name := range single {
		if !seen[name] {
			return nil, nil, fmt.Errorf("built-in rule %q has no jq condition in bench/run/packjq.go: write one", name)
		}
	}
	return once, left, nil
}

// jqAlerts turns the jq program's output into "rule TAB auditID TAB user"
// lines, sorted, as the rules alert: one per matching event, and for a
// rule that alerts once per request, one per request (audit ID, receive
// time and user, the engine's key).
func jqAlerts(out string, conds []jqRule, once map[string]bool) ([]string, error) {
	var lines []string
	requests := map[string]bool{}
	for n, l := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		if l == "" {
			continue
		}
		f := strings.Split(l, "\t")
		i, err := strconv.Atoi(f[0])
		if len(f) != 4 || err != nil || i < 0 || i >= len(conds) {
			return nil, fmt.Errorf("jq output line %d: %q is not INDEX TAB auditID TAB received TAB user", n+1, l)
		}
		rule := conds[i].rule
		if once[rule] {
			k := rule + "\t" + f[1] + "\t" + f[2] + "\t" + f[3]
			if requests[k] {
				continue
			}
			requests[k] = true
		}
		lines = append(lines, rule+"\t"+f[1]+"\t"+f[3])
	}
	slices.Sort(lines)
	return lines, nil
}

// ktAlerts returns the alerts of `detect -o jsonl` whose rule is in keep,
// as "rule TAB auditID TAB user" lines, sorted.
func ktAlerts(jsonl string, keep map[string]bool) ([]string, error) {
	var lines []string
	for n, l := range strings.Split(strings.TrimRight(jsonl, "\n"), "\n") {
		if l == "" {
			continue
		}
		var a struct {
			Rule     string   `json:"rule"`
			AuditIDs []string `json:"auditIDs"`
			User     string   `json:"user"`
		}
		if err := json.Unmarshal([]byte(l), &a); err != nil {
			return nil, fmt.Errorf("alert line %d: %w", n+1, err)
		}
		if !keep[a.Rule] {
			continue
		}
		if len(a.AuditIDs) != 1 {
			return nil, fmt.Errorf("alert line %d: single-event rule %q with %d audit IDs", n+1, a.Rule, len(a.AuditIDs))
		}
		lines = append(lines, a.Rule+"\t"+a.AuditIDs[0]+"\t"+a.User)
	}
	slices.Sort(lines)
	return lines, nil
}

// perRule counts "rule TAB ..." lines by rule.
func perRule(lines []string) map[string]int {
	n := map[string]int{}
	for _, l := range lines {
		r, _, _ := strings.Cut(l, "\t")
		n[r]++
	}
	return n
}

// packBesideJQ times jq running the pack's single-event conditions over
// the corpus, checks that it finds the alerts kubetrail's built-in pack
// raised for those rules (ktOut, `detect FILE -o jsonl`), and writes them
// beside kubetrail's times over the file and the store.
func (s *suite) packBesideJQ(ci int, c corpus, ktFile, ktStore row) error {
	w := &s.out
	conds := packJQ()
	once, left, err := checkJQCoverage(builtin.Rules(), conds)
	if err != nil {
		return err
	}
	prog := filepath.Join(s.work, "pack.jq")
	if err := os.WriteFile(prog, []byte(jqProgram(conds)), 0o644); err != nil {
		return err
	}
	jq, err := s.measure(s.slowRuns(c), func() *exec.Cmd { return exec.Command("jq", "-r", "-f", prog, c.path) }, nil)
	if err != nil {
		return fmt.Errorf("jq with the pack's conditions: %w", err)
	}
	keep := map[string]bool{}
	for r := range once {
		keep[r] = true
	}
	want, err := ktAlerts(ktFile.out, keep)
	if err != nil {
		return err
	}
	got, err := jqAlerts(jq.out, conds, once)
	if err != nil {
		return err
	}
	if err := sameLines("kubetrail detect's alerts of the single-event rules", want, "jq's matches", got); err != nil {
		return fmt.Errorf("the built-in pack beside jq: %w", err)
	}
	fired := 0
	for _, n := range perRule(want) {
		if n > 0 {
			fired++
		}
	}
	if fired == 0 {
		return fmt.Errorf("the built-in pack beside jq: no single-event rule fired on the corpus, the comparison would prove nothing")
	}
	perSec := func(r row) string { return commas(float64(c.events) / r.median.Seconds()) }
	fmt.Fprintf(w, "### The built-in pack beside jq, %s events\n\n", c.name)
	fmt.Fprintf(w, "jq running the conditions of the pack's %d single-event rules (written in jq term by term in bench/run/packjq.go; one program, one pass, "+
		"printing one line per match) beside `kubetrail detect` with the whole pack (the rows above). "+
		"Left out of the jq side, which filters one event at a time: %s (a threshold or a sequence); kubetrail evaluates them too. "+
		"Before a time is written, jq's matches and kubetrail's alerts of those %d rules are compared as sorted (rule, audit ID, user) lists: "+
		"they agree, %d alerts from %d rules that fired (for the once-per-request exec rule, jq's matching stages are counted once per request: audit ID, receive time, user). "+
		"jq: %d pass(es); kubetrail: median of %d.\n\n", len(conds), strings.Join(left, "; "), len(conds), len(want), fired, jq.runs, ktFile.runs)
	fmt.Fprintf(w, "| what | command | time | events/s | vs jq | peak RSS |\n|---|---|---|---|---|---|\n")
	fmt.Fprintf(w, "| jq, the %d single-event conditions | `jq -r -f pack.jq audit.log` | %s | %s | 1.0x | %s |\n", len(conds), dur(jq.median), perSec(jq), human(jq.rss))
	fmt.Fprintf(w, "| kubetrail, the whole pack over the file | `kubetrail detect audit.log -o jsonl` | %s | %s | %s | %s |\n", dur(ktFile.median), perSec(ktFile), ratio(jq.median, ktFile.median), human(ktFile.rss))
	fmt.Fprintf(w, "| kubetrail, the whole pack over the store | `kubetrail detect --data DIR -o jsonl` | %s | %s | %s | %s |\n\n", dur(ktStore.median), perSec(ktStore), ratio(jq.median, ktStore.median), human(ktStore.rss))
	fmt.Fprintf(w, "Target (issue 10): `detect` with the built-in pack over the 2M-event corpus in < 2 s.\n\n")
	s.fig.add("detect, built-in pack, over the file (jq: its single-event conditions)", ci, fig{kt: ktFile.median, rss: ktFile.rss, jq: jq.median})
	return nil
}
