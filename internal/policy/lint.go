package policy

import (
	"fmt"
	"slices"
	"strings"

	"github.com/kubetrail/kubetrail/internal/audit"
)

// Severity orders findings.
type Severity string

// The severities of lint findings.
const (
	SevError   Severity = "error"   // the policy does something harmful (secrets in the log)
	SevWarning Severity = "warning" // the policy misses what an audit needs, or has a rule that cannot work
	SevInfo    Severity = "info"    // the policy is correct but costly
)

// Finding is one lint result.
type Finding struct {
	Severity Severity `json:"severity"`
	// Code names the check, stable for scripts (secrets-above-metadata...).
	Code string `json:"code"`
	// Rule is the 0-based rule the finding is about; -1 for the policy.
	Rule int `json:"rule"`
	// Line is where that rule (or field) is written; 0 when unknown.
	Line    int    `json:"line,omitempty"`
	Message string `json:"message"`
	Fix     string `json:"fix"`
}

// knownGroups maps resources people often name without their API group to
// the group they live in. A rule naming them in the core group never
// matches.
var knownGroups = map[string]string{
	"deployments": "apps", "replicasets": "apps", "daemonsets": "apps", "statefulsets": "apps", "controllerrevisions": "apps",
	"jobs": "batch", "cronjobs": "batch",
	"roles": "rbac.authorization.k8s.io", "rolebindings": "rbac.authorization.k8s.io",
	"clusterroles": "rbac.authorization.k8s.io", "clusterrolebindings": "rbac.authorization.k8s.io",
	"ingresses": "networking.k8s.io", "networkpolicies": "networking.k8s.io", "ingressclasses": "networking.k8s.io",
	"leases": "coordination.k8s.io", "endpointslices": "discovery.k8s.io",
	"customresourcedefinitions": "apiextensions.k8s.io", "horizontalpodautoscalers": "autoscaling",
	"poddisruptionbudgets": "policy", "certificatesigningrequests": "certificates.k8s.io",
	"tokenreviews": "authentication.k8s.io", "subjectaccessreviews": "authorization.k8s.io",
	"selfsubjectaccessreviews": "authorization.k8s.io", "localsubjectaccessreviews": "authorization.k8s.io",
	"validatingwebhookconfigurations": "admissionregistration.k8s.io", "mutatingwebhookconfigurations": "admissionregistration.k8s.io",
	"validatingadmissionpolicies": "admissionregistration.k8s.io", "storageclasses": "storage.k8s.io",
	"volumeattachments": "storage.k8s.io", "csidrivers": "storage.k8s.io", "priorityclasses": "scheduling.k8s.io",
	"runtimeclasses": "node.k8s.io", "flowschemas": "flowcontrol.apiserver.k8s.io",
}

var levelRank = map[audit.Level]int{audit.LevelNone: 0, audit.LevelMetadata: 1, audit.LevelRequest: 2, audit.LevelRequestResponse: 3}

// Lint checks a loaded policy for the mistakes that make an audit log leak
// secrets, miss attacks or drown in noise. It asks the exact evaluator how
// representative requests are logged, and reads the rules for shapes that
// can never match.
func Lint(p *Policy) []Finding {
	ev := NewEvaluator(p)
	var out []Finding
	line := func(rule int) int {
		if rule < 0 {
			return 0
		}
		pos, _ := p.PosOf(fmt.Sprintf("rules[%d]", rule))
		return pos.Line
	}
	add := func(sev Severity, code string, rule int, msg, fix string) {
		out = append(out, Finding{Severity: sev, Code: code, Rule: rule, Line: line(rule), Message: msg, Fix: fix})
	}
	human := &UserInfo{Name: "alice", Groups: []string{"developers", "system:authenticated"}}
	sa := &UserInfo{Name: "system:serviceaccount:default:app", Groups: []string{"system:serviceaccounts", "system:authenticated"}}
	res := func(u *UserInfo, verb, group, resource, sub, ns, name string) *Request {
		return &Request{User: u, Verb: verb, APIGroup: group, Resource: resource, Subresource: sub, Namespace: ns, Name: name, ResourceRequest: true}
	}
	nameFor := func(verb string) string {
		if verb == "list" || verb == "watch" || verb == "create" || verb == "deletecollection" {
			return ""
		}
		return "x"
	}

	// Secrets and their kin above Metadata write their values to the log.
	seen := map[int]bool{}
	for _, t := range []struct{ group, resource, sub, what string }{
		{"", "secrets", "", "secret values"},
		{"", "configmaps", "", "configmap contents (often credentials)"},
		{"authentication.k8s.io", "tokenreviews", "", "bearer tokens under review"},
		{"", "serviceaccounts", "token", "issued service account tokens"},
	} {
		for _, u := range []*UserInfo{human, sa} {
			for _, verb := range []string{"get", "list", "watch", "create", "update", "patch", "delete"} {
				d := ev.Evaluate(res(u, verb, t.group, t.resource, t.sub, "default", nameFor(verb)))
				if levelRank[d.Level] >= levelRank[audit.LevelRequest] && !seen[d.Rule] {
					seen[d.Rule] = true
					r := t.resource
					if t.sub != "" {
						r += "/" + t.sub
					}
					add(SevError, "secrets-above-metadata", d.Rule,
						fmt.Sprintf("%s %s is logged at %s: the log would hold %s", verb, r, d.Level, t.what),
						fmt.Sprintf("log %s at Metadata, in a rule placed before this one", r))
				}
			}
		}
	}

	// Interactive access to pods must be logged with its request.
	for _, sub := range []string{"exec", "attach", "portforward"} {
		for _, verb := range []string{"create", "get"} {
			d := ev.Evaluate(res(human, verb, "", "pods", sub, "default", "web"))
			if levelRank[d.Level] < levelRank[audit.LevelRequest] {
				add(SevWarning, "exec-not-covered", d.Rule,
					fmt.Sprintf("pods/%s (%s) is logged at %s: who ran which command in which pod is lost", sub, verb, d.Level),
					fmt.Sprintf("add pods/%s to a rule at Request or RequestResponse (kubectl >= 1.30 uses get over WebSocket, older ones create)", sub))
				break
			}
		}
	}

	// RBAC writes are how attackers keep access.
	for _, r := range []string{"roles", "rolebindings", "clusterroles", "clusterrolebindings"} {
		ns := "default"
		if strings.HasPrefix(r, "cluster") {
			ns = ""
		}
		d := ev.Evaluate(res(human, "create", "rbac.authorization.k8s.io", r, "", ns, ""))
		if levelRank[d.Level] < levelRank[audit.LevelRequest] {
			add(SevWarning, "rbac-writes-below-request", d.Rule,
				fmt.Sprintf("create %s is logged at %s: what was granted to whom is lost", r, d.Level),
				"log RBAC writes (create, update, patch, delete on group rbac.authorization.k8s.io) at RequestResponse")
		}
	}

	// Rules that cannot match.
	for i, r := range p.Rules {
		if slices.Contains(r.Verbs, "*") {
			add(SevWarning, "star-verb", i, `"*" in verbs matches only a verb literally named "*", not every verb`,
				"leave verbs out to match every verb")
		}
		for _, gr := range r.Resources {
			for _, res := range gr.Resources {
				base, _, _ := strings.Cut(res, "/")
				if want, ok := knownGroups[base]; ok && gr.Group == "" {
					add(SevWarning, "resource-without-group", i,
						fmt.Sprintf("%s is named in the core group, where it does not exist: this part of the rule never matches", res),
						fmt.Sprintf("add group: %q", want))
				}
			}
			if len(gr.ResourceNames) > 0 && len(r.Verbs) > 0 && !slices.Contains(gr.ResourceNames, "") {
				onlyNameless := true
				for _, v := range r.Verbs {
					if v != "list" && v != "create" && v != "watch" && v != "deletecollection" {
						onlyNameless = false
					}
				}
				if onlyNameless {
					add(SevWarning, "resourcenames-without-name", i,
						"resourceNames never match "+strings.Join(r.Verbs, ", ")+": those requests carry no object name",
						"drop resourceNames, or add verbs that name an object (get, update, patch, delete)")
				}
			}
		}
	}

	// A rule that matches everything hides every rule after it.
	catchAll := -1
	for i, r := range p.Rules {
		if len(r.Users) == 0 && len(r.UserGroups) == 0 && len(r.Verbs) == 0 && len(r.Resources) == 0 &&
			len(r.Namespaces) == 0 && len(r.NonResourceURLs) == 0 {
			catchAll = i
			break
		}
	}
	switch {
	case catchAll < 0:
		add(SevWarning, "no-catch-all", -1, "no final rule matches every request: requests no rule matches are not logged at all",
			"end the policy with a rule that has only a level (Metadata), or level: None to make dropping explicit")
	case catchAll < len(p.Rules)-1:
		for j := catchAll + 1; j < len(p.Rules); j++ {
			add(SevWarning, "unreachable-rule", j, fmt.Sprintf("rule %d above matches every request, so this rule never applies", catchAll),
				fmt.Sprintf("move rule %d to the end", catchAll))
		}
	}
	// A rule is also unreachable when one earlier rule matches every
	// request it could match (decided from the rules, not by sampling).
	limit := len(p.Rules)
	if catchAll >= 0 {
		limit = catchAll + 1 // rules after the catch-all are reported above
	}
	for j := 1; j < limit; j++ {
		for i := 0; i < j; i++ {
			if i != catchAll && covers(&p.Rules[i], &p.Rules[j]) {
				add(SevWarning, "unreachable-rule", j, fmt.Sprintf("rule %d above matches every request this rule could match, so this rule never applies", i),
					fmt.Sprintf("move this rule above rule %d, or remove it", i))
				break
			}
		}
	}

	if !slices.Contains(p.OmitStages, audit.StageRequestReceived) {
		// Name the rules that still log the stage: a rule may omit it on
		// its own, and level None logs nothing.
		var which []string
		for i := range p.Rules {
			r := &p.Rules[i]
			if r.Level != audit.LevelNone && !slices.Contains(r.OmitStages, audit.StageRequestReceived) {
				w := fmt.Sprintf("%d", i)
				if r.Pos.Line > 0 {
					w += fmt.Sprintf(" (line %d)", r.Pos.Line)
				}
				which = append(which, w)
			}
		}
		if len(which) > 0 {
			noun := "rule " + which[0] + " logs"
			if len(which) > 1 {
				noun = "rules " + strings.Join(which[:len(which)-1], ", ") + " and " + which[len(which)-1] + " log"
			}
			add(SevWarning, "request-received-logged", -1, "RequestReceived is not omitted: "+noun+" every request they match twice, before and after it is handled",
				"add omitStages: [RequestReceived] at the top of the policy")
		}
	}

	// Noise: health checks and the control plane's own watches.
	for _, path := range []string{"/healthz", "/readyz", "/livez"} {
		d := ev.Evaluate(&Request{User: &UserInfo{Name: "system:anonymous", Groups: []string{"system:unauthenticated"}}, Verb: "get", Path: path})
		if d.Level != audit.LevelNone {
			add(SevInfo, "health-checks-logged", d.Rule, fmt.Sprintf("GET %s is logged at %s: probes can be most of the log", path, d.Level),
				`add a rule at level None for nonResourceURLs ["/healthz*", "/readyz*", "/livez*"]`)
			break
		}
	}
	for _, w := range []struct {
		user  *UserInfo
		group string
		res   string
	}{
		{&UserInfo{Name: "system:kube-proxy", Groups: []string{"system:authenticated"}}, "", "endpoints"},
		{&UserInfo{Name: "system:kube-proxy", Groups: []string{"system:authenticated"}}, "", "services"},
	} {
		d := ev.Evaluate(res(w.user, "watch", w.group, w.res, "", "", ""))
		if d.Level != audit.LevelNone {
			add(SevInfo, "system-watches-logged", d.Rule, fmt.Sprintf("%s watching %s is logged at %s: long-running system watches are noise", w.user.Name, w.res, d.Level),
				"add a rule at level None for users [system:kube-proxy], verbs [watch], resources endpoints, services")
			break
		}
	}
	return out
}

// covers reports whether rule a matches every request rule b matches, as
// the API server decides matches. It errs on the side of false: a pair it
// cannot decide is not reported.
func covers(a, b *Rule) bool {
	sub := func(bs, as []string) bool { // b's list restricts at least as much as a's
		if len(as) == 0 {
			return true
		}
		if len(bs) == 0 {
			return false
		}
		for _, v := range bs {
			if !slices.Contains(as, v) {
				return false
			}
		}
		return true
	}
	if !sub(b.Users, a.Users) || !sub(b.UserGroups, a.UserGroups) || !sub(b.Verbs, a.Verbs) || !sub(b.Namespaces, a.Namespaces) {
		return false
	}
	switch {
	case len(a.Resources) == 0 && len(a.NonResourceURLs) == 0:
		return true // a matches resource and non-resource requests alike
	case len(a.Resources) > 0 && len(a.NonResourceURLs) == 0:
		if len(b.Resources) == 0 || len(b.NonResourceURLs) > 0 {
			return false
		}
		for _, bg := range b.Resources {
			if !groupCovered(bg, a.Resources) {
				return false
			}
		}
		return true
	case len(a.Resources) == 0 && len(a.NonResourceURLs) > 0:
		if len(b.NonResourceURLs) == 0 || len(b.Resources) > 0 || len(b.Namespaces) > 0 {
			return false
		}
		for _, u := range b.NonResourceURLs {
			if !urlCovered(u, a.NonResourceURLs) {
				return false
			}
		}
		return true
	}
	return false
}

func groupCovered(b GroupResources, as []GroupResources) bool {
	if len(b.Resources) == 0 {
		// Every resource of b's group: only a rule for all resources of the
		// same group (or any group) covers it.
		for _, a := range as {
			if (a.Group == b.Group || a.Group == "*") && len(a.Resources) == 0 && len(a.ResourceNames) == 0 {
				return true
			}
		}
		return false
	}
	for _, r := range b.Resources {
		ok := false
		for _, a := range as {
			if a.Group != b.Group && a.Group != "*" {
				continue
			}
			if len(a.ResourceNames) > 0 && (len(b.ResourceNames) == 0 || !subset(b.ResourceNames, a.ResourceNames)) {
				continue
			}
			if len(a.Resources) == 0 || resourceCovered(r, a.Resources) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

func subset(b, a []string) bool {
	for _, v := range b {
		if !slices.Contains(a, v) {
			return false
		}
	}
	return true
}

// resourceCovered reports whether every request resource pattern r matches
// is matched by one of the patterns as ("*", "pods/*", "*/status", exact).
func resourceCovered(r string, as []string) bool {
	if slices.Contains(as, r) || slices.Contains(as, "*") {
		return true
	}
	base, sub, hasSub := strings.Cut(r, "/")
	if strings.Contains(base, "*") || strings.Contains(sub, "*") && sub != "*" {
		return false // a wildcard b only an identical or broader pattern covers
	}
	if slices.Contains(as, base+"/*") {
		return true // "pods/*" matches pods and every pods/SUB
	}
	if hasSub && sub != "*" && slices.Contains(as, "*/"+sub) {
		return true
	}
	return false
}

// urlCovered reports whether every path u matches is matched by one of as.
func urlCovered(u string, as []string) bool {
	for _, a := range as {
		if a == u {
			return true
		}
		if p, ok := strings.CutSuffix(a, "*"); ok && strings.HasPrefix(strings.TrimSuffix(u, "*"), p) {
			return true
		}
	}
	return false
}
