package main

import (
	"strconv"
	"time"
)

// Helpers that build request URIs, object references and the Status
// objects the API server returns for failures.

// basePath is /api/v1 for the core group, /apis/GROUP/VERSION otherwise.
func basePath(group, version string) string {
	if group == "" {
		return "/api/" + version
	}
	return "/apis/" + group + "/" + version
}

// path is the URI path of a resource, a named object or its subresource.
func path(group, version, ns, resource, name, sub string) string {
	p := basePath(group, version)
	if ns != "" {
		p += "/namespaces/" + ns
	}
	p += "/" + resource
	if name != "" {
		p += "/" + name
		if sub != "" {
			p += "/" + sub
		}
	}
	return p
}

// ref is the objectRef the audit filter records from the request info.
func ref(group, version, resource, ns, name, sub string) *objectRef {
	return &objectRef{resource: resource, namespace: ns, name: name, apiGroup: group, apiVersion: version, subresource: sub}
}

// resourceType is a Kubernetes resource: its group, version and whether it
// lives in namespaces.
type resourceType struct {
	group, version, resource string
	namespaced               bool
}

var (
	rtPods          = resourceType{"", "v1", "pods", true}
	rtNodes         = resourceType{"", "v1", "nodes", false}
	rtConfigMaps    = resourceType{"", "v1", "configmaps", true}
	rtSecrets       = resourceType{"", "v1", "secrets", true}
	rtServices      = resourceType{"", "v1", "services", true}
	rtEndpoints     = resourceType{"", "v1", "endpoints", true}
	rtEvents        = resourceType{"", "v1", "events", true}
	rtNamespaces    = resourceType{"", "v1", "namespaces", false}
	rtSAs           = resourceType{"", "v1", "serviceaccounts", true}
	rtPVCs          = resourceType{"", "v1", "persistentvolumeclaims", true}
	rtDeployments   = resourceType{"apps", "v1", "deployments", true}
	rtReplicaSets   = resourceType{"apps", "v1", "replicasets", true}
	rtStatefulSets  = resourceType{"apps", "v1", "statefulsets", true}
	rtDaemonSets    = resourceType{"apps", "v1", "daemonsets", true}
	rtJobs          = resourceType{"batch", "v1", "jobs", true}
	rtCronJobs      = resourceType{"batch", "v1", "cronjobs", true}
	rtLeases        = resourceType{"coordination.k8s.io", "v1", "leases", true}
	rtSlices        = resourceType{"discovery.k8s.io", "v1", "endpointslices", true}
	rtIngresses     = resourceType{"networking.k8s.io", "v1", "ingresses", true}
	rtNetPols       = resourceType{"networking.k8s.io", "v1", "networkpolicies", true}
	rtPDBs          = resourceType{"policy", "v1", "poddisruptionbudgets", true}
	rtHPAs          = resourceType{"autoscaling", "v2", "horizontalpodautoscalers", true}
	rtRoles         = resourceType{"rbac.authorization.k8s.io", "v1", "roles", true}
	rtRoleBindings  = resourceType{"rbac.authorization.k8s.io", "v1", "rolebindings", true}
	rtClusterRoles  = resourceType{"rbac.authorization.k8s.io", "v1", "clusterroles", false}
	rtCRBs          = resourceType{"rbac.authorization.k8s.io", "v1", "clusterrolebindings", false}
	rtCSIDrivers    = resourceType{"storage.k8s.io", "v1", "csidrivers", false}
	rtCSINodes      = resourceType{"storage.k8s.io", "v1", "csinodes", false}
	rtRuntimeClass  = resourceType{"node.k8s.io", "v1", "runtimeclasses", false}
	rtPVs           = resourceType{"", "v1", "persistentvolumes", false}
	rtEventsV1      = resourceType{"events.k8s.io", "v1", "events", true}
	rtCertificates  = resourceType{"cert-manager.io", "v1", "certificates", true}
	rtApplications  = resourceType{"argoproj.io", "v1alpha1", "applications", true}
	rtPodMetrics    = resourceType{"metrics.k8s.io", "v1beta1", "pods", true}
	rtIngressClass  = resourceType{"networking.k8s.io", "v1", "ingressclasses", false}
	rtValidatingWH  = resourceType{"admissionregistration.k8s.io", "v1", "validatingwebhookconfigurations", false}
	rtPriorityClass = resourceType{"scheduling.k8s.io", "v1", "priorityclasses", false}
)

func (t resourceType) path(ns, name, sub string) string {
	if !t.namespaced {
		ns = ""
	}
	return path(t.group, t.version, ns, t.resource, name, sub)
}

func (t resourceType) ref(ns, name, sub string) *objectRef {
	if !t.namespaced {
		ns = ""
	}
	return ref(t.group, t.version, t.resource, ns, name, sub)
}

// forbidden is the Status the authorization filter writes for a denied
// resource request.
func forbidden(user, verb string, r *objectRef) *status {
	res := r.resource
	if r.subresource != "" {
		res += "/" + r.subresource
	}
	msg := `User "` + user + `" cannot ` + verb + ` resource "` + res + `" in API group "` + r.apiGroup + `"`
	if r.namespace != "" {
		msg += ` in the namespace "` + r.namespace + `"`
	} else {
		msg += " at the cluster scope"
	}
	qr := r.resource
	if r.apiGroup != "" {
		qr += "." + r.apiGroup
	}
	if r.name != "" {
		msg = qr + ` "` + r.name + `" is forbidden: ` + msg
	} else {
		msg = qr + " is forbidden: " + msg
	}
	return &status{status: "Failure", message: msg, reason: "Forbidden",
		details: &statusDetails{name: r.name, group: r.apiGroup, kind: r.resource}}
}

// forbiddenPath is the Status for a denied non-resource request.
func forbiddenPath(user, verb, p string) *status {
	return &status{status: "Failure", message: `forbidden: User "` + user + `" cannot ` + verb + ` path "` + p + `"`,
		reason: "Forbidden", details: &statusDetails{}}
}

func notFound(r *objectRef) *status {
	qr := r.resource
	if r.apiGroup != "" {
		qr += "." + r.apiGroup
	}
	return &status{status: "Failure", message: qr + ` "` + r.name + `" not found`, reason: "NotFound",
		details: &statusDetails{name: r.name, group: r.apiGroup, kind: r.resource}}
}

func conflict(r *objectRef) *status {
	qr := r.resource
	if r.apiGroup != "" {
		qr += "." + r.apiGroup
	}
	return &status{status: "Failure",
		message: "Operation cannot be fulfilled on " + qr + ` "` + r.name + `": the object has been modified; please apply your changes to the latest version and try again`,
		reason:  "Conflict", details: &statusDetails{name: r.name, group: r.apiGroup, kind: r.resource}}
}

func alreadyExists(r *objectRef) *status {
	qr := r.resource
	if r.apiGroup != "" {
		qr += "." + r.apiGroup
	}
	return &status{status: "Failure", message: qr + ` "` + r.name + `" already exists`, reason: "AlreadyExists",
		details: &statusDetails{name: r.name, group: r.apiGroup, kind: r.resource}}
}

// watchQuery is the query string of a client-go reflector watch. selector
// is a complete "fieldSelector=..." or "labelSelector=..." pair (already
// URL-encoded) or "". Parameters come sorted, as url.Values encodes them.
func watchQuery(selector string, rv int64, timeoutSec int64, streaming bool) string {
	q := "?allowWatchBookmarks=true"
	if selector != "" {
		q += "&" + selector
	}
	if streaming {
		q += "&resourceVersionMatch=NotOlderThan&sendInitialEvents=true"
	} else {
		q += "&resourceVersion=" + strconv.FormatInt(rv, 10)
	}
	return q + "&timeout=" + (time.Duration(timeoutSec) * time.Second).String() +
		"&timeoutSeconds=" + strconv.FormatInt(timeoutSec, 10) + "&watch=true"
}

// listQuery is the query string of a reflector's initial list.
func listQuery(selector string) string {
	if selector != "" {
		return "?" + selector + "&limit=500&resourceVersion=0"
	}
	return "?limit=500&resourceVersion=0"
}
