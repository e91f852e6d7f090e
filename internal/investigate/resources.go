package investigate

import (
	"fmt"
	"slices"
	"strings"

	"github.com/kubetrail/kubetrail/internal/query"
)

// resourceAliases lists, per resource name as audit events carry it in
// objectRef.resource, what people type for it: kubectl's short names and
// the singular, which is also the kind lower-cased. docs/investigations.md
// lists it.
var resourceAliases = []struct {
	resource string
	aliases  []string
}{
	{"pods", []string{"po", "pod"}},
	{"services", []string{"svc", "service"}},
	{"deployments", []string{"deploy", "deployment"}},
	{"replicasets", []string{"rs", "replicaset"}},
	{"statefulsets", []string{"sts", "statefulset"}},
	{"daemonsets", []string{"ds", "daemonset"}},
	{"jobs", []string{"job"}},
	{"cronjobs", []string{"cj", "cronjob"}},
	{"configmaps", []string{"cm", "configmap"}},
	{"secrets", []string{"secret"}},
	{"namespaces", []string{"ns", "namespace"}},
	{"serviceaccounts", []string{"sa", "serviceaccount"}},
	{"nodes", []string{"no", "node"}},
	{"persistentvolumes", []string{"pv", "persistentvolume"}},
	{"persistentvolumeclaims", []string{"pvc", "persistentvolumeclaim"}},
	{"endpoints", []string{"ep", "endpoint"}},
	{"endpointslices", []string{"endpointslice"}},
	{"events", []string{"ev", "event"}},
	{"ingresses", []string{"ing", "ingress"}},
	{"ingressclasses", []string{"ingressclass"}},
	{"networkpolicies", []string{"netpol", "networkpolicy"}},
	{"roles", []string{"role"}},
	{"rolebindings", []string{"rb", "rolebinding"}},
	{"clusterroles", []string{"clusterrole"}},
	{"clusterrolebindings", []string{"crb", "clusterrolebinding"}},
	{"customresourcedefinitions", []string{"crd", "crds", "customresourcedefinition"}},
	{"horizontalpodautoscalers", []string{"hpa", "horizontalpodautoscaler"}},
	{"poddisruptionbudgets", []string{"pdb", "poddisruptionbudget"}},
	{"storageclasses", []string{"sc", "storageclass"}},
	{"certificatesigningrequests", []string{"csr", "certificatesigningrequest"}},
	{"resourcequotas", []string{"quota", "resourcequota"}},
	{"limitranges", []string{"limits", "limitrange"}},
	{"replicationcontrollers", []string{"rc", "replicationcontroller"}},
	{"priorityclasses", []string{"pc", "priorityclass"}},
	{"leases", []string{"lease"}},
	{"podtemplates", []string{"podtemplate"}},
	{"mutatingwebhookconfigurations", []string{"mutatingwebhookconfiguration"}},
	{"validatingwebhookconfigurations", []string{"validatingwebhookconfiguration"}},
	{"tokenreviews", []string{"tokenreview"}},
	{"subjectaccessreviews", []string{"subjectaccessreview"}},
	{"selfsubjectaccessreviews", []string{"selfsubjectaccessreview"}},
	{"localsubjectaccessreviews", []string{"localsubjectaccessreview"}},
	{"apiservices", []string{"apiservice"}},
	{"csidrivers", []string{"csidriver"}},
	{"csinodes", []string{"csinode"}},
	{"volumeattachments", []string{"volumeattachment"}},
	{"runtimeclasses", []string{"runtimeclass"}},
}

// ResourceAliases returns, per resource, the short and singular names
// Resources knows for it, for documentation and completion.
func ResourceAliases() map[string][]string {
	out := make(map[string][]string, len(resourceAliases))
	for _, r := range resourceAliases {
		out[r.resource] = slices.Clone(r.aliases)
	}
	return out
}

// Resources returns the resource names an object kind typed by a person
// may stand for. A known short, singular or kind name gives its resource
// ("cm" and "ConfigMap" give configmaps); a known plural gives itself. An
// unknown name (a custom resource) gives itself and, unless it already
// ends in "s", its regular plural too, so "widget" finds widgets.
func Resources(typed string) []string {
	s := strings.ToLower(strings.TrimSpace(typed))
	for _, r := range resourceAliases {
		if r.resource == s || slices.Contains(r.aliases, s) {
			return []string{r.resource}
		}
	}
	if s == "" || strings.HasSuffix(s, "s") {
		return []string{s}
	}
	return []string{s, plural(s)}
}

// plural is the regular English plural Kubernetes uses for resources.
func plural(s string) string {
	switch {
	case strings.HasSuffix(s, "y") && len(s) > 1 && !strings.ContainsRune("aeiou", rune(s[len(s)-2])):
		return s[:len(s)-1] + "ies"
	case strings.HasSuffix(s, "x"), strings.HasSuffix(s, "z"), strings.HasSuffix(s, "ch"), strings.HasSuffix(s, "sh"):
		return s + "es"
	}
	return s + "s"
}

// Target is the object, or the kind of object, an investigation is about,
// as written on the command line: RESOURCE[.GROUP][/NAME[/SUBRESOURCE]].
type Target struct {
	// Resources are the resource names the typed kind may stand for.
	Resources []string
	// APIGroup is the API group after the first dot ("deployments.apps");
	// HasGroup says whether one was written (the core group is empty).
	APIGroup string
	HasGroup bool
	// Name is the object's name; empty for any. A '*' in it matches any
	// run of characters.
	Name string
	// Subresource is the subresource ("status", "exec"); empty for the
	// object itself.
	Subresource string
}

// ParseTarget reads RESOURCE[.GROUP][/NAME[/SUBRESOURCE]]: "secret/important",
// "deploy.apps/web", "pods/web/exec", "cm".
func ParseTarget(s string) (Target, error) {
	parts := strings.Split(s, "/")
	if len(parts) > 3 || parts[0] == "" {
		return Target{}, fmt.Errorf("%q: want RESOURCE, RESOURCE/NAME or RESOURCE/NAME/SUBRESOURCE (e.g. secret/important)", s)
	}
	var t Target
	kind := parts[0]
	if i := strings.IndexByte(kind, '.'); i > 0 {
		kind, t.APIGroup, t.HasGroup = kind[:i], kind[i+1:], true
	}
	t.Resources = Resources(kind)
	if len(parts) > 1 {
		t.Name = parts[1]
	}
	if len(parts) > 2 {
		t.Subresource = parts[2]
	}
	return t, nil
}

// String writes the target back, with the resource resolved.
func (t Target) String() string {
	s := strings.Join(t.Resources, "|")
	if t.HasGroup {
		s += "." + t.APIGroup
	}
	if t.Name != "" {
		s += "/" + t.Name
	}
	if t.Subresource != "" {
		s += "/" + t.Subresource
	}
	return s
}

// clusterScoped lists the common resources that live outside namespaces:
// for them a namespace (-n) is ignored, as kubectl does.
var clusterScoped = map[string]bool{
	"namespaces": true, "nodes": true, "persistentvolumes": true, "clusterroles": true,
	"clusterrolebindings": true, "customresourcedefinitions": true, "storageclasses": true,
	"certificatesigningrequests": true, "priorityclasses": true, "ingressclasses": true,
	"mutatingwebhookconfigurations": true, "validatingwebhookconfigurations": true,
	"apiservices": true, "csidrivers": true, "csinodes": true, "volumeattachments": true,
	"runtimeclasses": true, "tokenreviews": true, "subjectaccessreviews": true,
	"selfsubjectaccessreviews": true,
}

// conds returns the conditions that select the target's events in
// namespace ns ("" for any). Without a subresource in the target, anySub
// says whether the object's subresources (status, exec...) count too.
// collections says whether a named object also takes the deletecollections
// of its resource: they name no object (the namespace controller empties a
// namespace that way), yet may have deleted it.
func (t Target) conds(ns string, anySub, collections bool) ([]query.Expr, error) {
	conds := []query.Expr{in("resource", t.Resources...)}
	if t.HasGroup {
		conds = append(conds, eq("apigroup", t.APIGroup))
	}
	if t.Name != "" {
		c, err := globEq("name", t.Name)
		if err != nil {
			return nil, err
		}
		if collections && t.Subresource == "" {
			c = or(c, and(eq("verb", "deletecollection"), eq("name", "")))
		}
		conds = append(conds, c)
	}
	switch {
	case t.Subresource != "":
		conds = append(conds, eq("subresource", t.Subresource))
	case !anySub:
		conds = append(conds, eq("subresource", ""))
	}
	if ns != "" && !(len(t.Resources) == 1 && clusterScoped[t.Resources[0]]) {
		c, err := globEq("ns", ns)
		if err != nil {
			return nil, err
		}
		conds = append(conds, c)
	}
	return conds, nil
}

// The verb groups people ask about.
var (
	readVerbs  = []string{"get", "list", "watch"}
	writeVerbs = []string{"create", "update", "patch", "delete", "deletecollection"}
)

// verbAliases maps words people use for verbs to Kubernetes verbs.
var verbAliases = map[string][]string{
	"created": {"create"}, "updated": {"update"}, "patched": {"patch"},
	"deleted": {"delete", "deletecollection"}, "listed": {"list"}, "watched": {"watch"},
	"read": readVerbs, "reads": readVerbs,
	"write": writeVerbs, "writes": writeVerbs, "changed": writeVerbs, "modified": writeVerbs,
}

// Verbs reads a comma-separated list of verbs, where "read" stands for
// get, list and watch, "write" (or "changed") for create, update, patch,
// delete and deletecollection, past tenses ("deleted") for their verb, and
// "*" or "any" for every verb (nil).
func Verbs(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		v = strings.ToLower(strings.TrimSpace(v))
		switch {
		case v == "":
			continue
		case v == "*" || v == "any":
			return nil
		case verbAliases[v] != nil:
			out = append(out, verbAliases[v]...)
		default:
			out = append(out, v)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}
