package main

import (
	"strconv"
	"strings"
)

// Human traffic: people using kubectl. Users follow a skewed distribution
// (admin and alice dominate); what RBAC allows them is decided by
// human.authorize, so developers get 403s in production.

const discoveryReason = `RBAC: allowed by ClusterRoleBinding "system:discovery" of ClusterRole "system:discovery" to Group "system:authenticated"`

func (g *generator) randomHuman() *human {
	return g.w.humans[g.w.humanTable.pick(g.r)]
}

// humanIPs is the sourceIPs of a human request: the user's address, or,
// through the corporate proxy, the X-Forwarded-For client then the proxy.
func (g *generator) humanIPs(h *human) []string {
	if h.proxy && g.chance(400) {
		return []string{h.ip, "10.0.0.5"}
	}
	return nil
}

// kubectl builds a request by h, authorized as RBAC would.
func (g *generator) kubectl(h *human, verb, uri string, r *objectRef) *call {
	c := &call{a: &h.actor, verb: verb, uri: uri, ref: r, code: 200, ips: g.humanIPs(h)}
	if r == nil {
		c.reason = discoveryReason
		return c
	}
	ok, reason := h.authorize(verb, r.resource, r.subresource, r.namespace)
	if ok {
		c.reason = reason
		return c
	}
	if verb == "create" && r.name != "" {
		// Denied before the body is read: the name inside it is never seen.
		n := *r
		n.name = ""
		c.ref = &n
	}
	c.code, c.st = 403, forbidden(h.name, verb, c.ref)
	return c
}

// discovery is kubectl refreshing its discovery cache (at most every few
// hours per user, so only sometimes).
func (g *generator) discovery(h *human, t int64) int64 {
	if !g.chance(120) {
		return t
	}
	t = g.do(t, g.kubectl(h, "get", "/api?timeout=32s", nil)) + g.between(500, 5_000)
	return g.do(t, g.kubectl(h, "get", "/apis?timeout=32s", nil)) + g.between(500, 5_000)
}

var listed = []resourceType{
	rtPods, rtPods, rtPods, rtPods, rtDeployments, rtDeployments, rtServices, rtConfigMaps,
	rtEvents, rtSecrets, rtReplicaSets, rtIngresses, rtNodes, rtNamespaces, rtJobs, rtStatefulSets,
}

func (g *generator) kubectlList() {
	h := g.randomHuman()
	t := g.discovery(h, g.now)
	rt := listed[g.r.IntN(len(listed))]
	ns := g.w.randomNamespace(g.r)
	if g.chance(120) {
		ns = "" // --all-namespaces
	}
	if !rt.namespaced {
		ns = ""
	}
	g.do(t, g.kubectl(h, "list", rt.path(ns, "", "")+"?limit=500", rt.ref(ns, "", "")))
}

func (g *generator) kubectlGet() {
	h := g.randomHuman()
	t := g.discovery(h, g.now)
	ns := g.w.randomNamespace(g.r)
	var rt resourceType
	var name string
	switch g.r.IntN(6) {
	case 0, 1:
		p := g.w.randomPod(g.r)
		rt, name, ns = rtPods, p.name, p.dep.ns
	case 2:
		d := g.w.randomDeployment(g.r)
		rt, name, ns = rtDeployments, d.name, d.ns
	case 3:
		rt, name = rtConfigMaps, g.w.configMapName(g.r)
	case 4:
		rt, name = rtSecrets, g.w.secretName(g.r, ns)
	default:
		d := g.w.randomDeployment(g.r)
		rt, name, ns = rtServices, d.name, d.ns
	}
	c := g.kubectl(h, "get", rt.path(ns, name, ""), rt.ref(ns, name, ""))
	if c.code == 200 && g.chance(30) {
		c.code, c.st = 404, notFound(c.ref)
	}
	g.do(t, c)
}

func (g *generator) kubectlDescribe() {
	h := g.randomHuman()
	p := g.w.randomPod(g.r)
	ns := p.dep.ns
	t := g.do(g.now, g.kubectl(h, "get", rtPods.path(ns, p.name, ""), rtPods.ref(ns, p.name, ""))) + g.between(2_000, 20_000)
	q := "?fieldSelector=involvedObject.name%3D" + p.name + "%2CinvolvedObject.namespace%3D" + ns +
		"%2CinvolvedObject.uid%3D" + p.uid + "&limit=500"
	g.do(t, g.kubectl(h, "list", rtEvents.path(ns, "", "")+q, rtEvents.ref(ns, "", "")))
}

func (g *generator) kubectlLogs() {
	h := g.randomHuman()
	p := g.w.randomPod(g.r)
	ns := p.dep.ns
	t := g.do(g.now, g.kubectl(h, "get", rtPods.path(ns, p.name, ""), rtPods.ref(ns, p.name, ""))) + g.between(1_000, 10_000)
	q, d := "?container=app", g.between(50_000, 2_000_000)
	if g.chance(400) {
		q, d = "?container=app&follow=true&tailLines=100", g.between(10e6, 1800e6)
	} else if g.chance(300) {
		q = "?container=app&previous=true"
	}
	c := g.kubectl(h, "get", rtPods.path(ns, p.name, "log")+q, rtPods.ref(ns, p.name, "log"))
	c.duration = d
	g.do(t, c)
}

// newImage is the next tag of a deployment's image.
func (g *generator) newImage(d *deployment) string {
	base := d.image[:strings.LastIndexByte(d.image, ':')]
	return base + ":1." + strconv.Itoa(g.r.IntN(30)) + "." + strconv.Itoa(g.r.IntN(10))
}

func (g *generator) kubectlApply() {
	h := g.randomHuman()
	d := g.w.randomDeployment(g.r)
	r := rtDeployments.ref(d.ns, d.name, "")
	t := g.discovery(h, g.now)
	get := g.kubectl(h, "get", rtDeployments.path(d.ns, d.name, ""), r)
	create := get.code == 200 && g.chance(100)
	if create {
		get.code, get.st = 404, notFound(r)
	}
	t = g.do(t, get) + g.between(5_000, 60_000)
	if get.code == 403 {
		return
	}
	image := g.newImage(d)
	const q = "?fieldManager=kubectl-client-side-apply&fieldValidation=Strict"
	if create {
		c := g.kubectl(h, "create", rtDeployments.path(d.ns, "", "")+q, rtDeployments.ref(d.ns, d.name, ""))
		if c.code == 200 {
			rv := g.nextRV()
			d.gen = 1
			c.code = 201
			c.reqBody = deploymentRequest(d, d.replicas, image)
			c.respBody = deploymentObject(d, rv, t, t, d.replicas, image, nil)
		}
		g.do(t, c)
		return
	}
	c := g.kubectl(h, "patch", rtDeployments.path(d.ns, d.name, "")+q, rtDeployments.ref(d.ns, d.name, ""))
	if c.code == 200 {
		rv := g.nextRV()
		d.gen++
		d.image = image
		c.reqBody = applyPatch(d, d.replicas, image)
		c.respBody = deploymentObject(d, rv, t-g.between(86400e6, 90*86400e6), t, d.replicas, image, nil)
	}
	g.do(t, c)
}

func (g *generator) kubectlScale() {
	h := g.randomHuman()
	d := g.w.randomDeployment(g.r)
	n := 1 + g.r.IntN(8)
	c := g.kubectl(h, "patch", rtDeployments.path(d.ns, d.name, "scale"), rtDeployments.ref(d.ns, d.name, "scale"))
	if c.code == 200 {
		rv := g.nextRV()
		c.reqBody = scalePatch(n)
		c.respBody = scaleObject(d, rv, g.now-g.between(86400e6, 90*86400e6), n)
		d.replicas = n
	}
	g.do(g.now, c)
}

func (g *generator) kubectlRestart() {
	h := g.randomHuman()
	d := g.w.randomDeployment(g.r)
	c := g.kubectl(h, "patch", rtDeployments.path(d.ns, d.name, "")+"?fieldManager=kubectl-rollout", rtDeployments.ref(d.ns, d.name, ""))
	if c.code == 200 {
		rv := g.nextRV()
		d.gen++
		c.reqBody = restartPatch(g.now)
		c.respBody = deploymentObject(d, rv, g.now-g.between(86400e6, 90*86400e6), g.now, d.replicas, d.image, nil)
	}
	g.do(g.now, c)
}

func (g *generator) kubectlDeleteDeployment() {
	h := g.randomHuman()
	d := g.w.randomDeployment(g.r)
	c := g.kubectl(h, "delete", rtDeployments.path(d.ns, d.name, ""), rtDeployments.ref(d.ns, d.name, ""))
	if c.code == 200 {
		g.nextRV()
		c.st = deleteStatus(d.name, "apps", "deployments", d.uid)
		c.reqBody = deleteOptions("Background")
		c.respBody = statusObject(c.st)
	}
	g.do(g.now, c)
}

func (g *generator) kubectlConfigMap() {
	h := g.randomHuman()
	ns := g.w.randomNamespace(g.r)
	name := g.w.configMapName(g.r)
	if name == "kube-root-ca.crt" {
		name = "app-config"
	}
	hv := hashOf("cm", ns, name)
	switch g.r.IntN(3) {
	case 0:
		c := g.kubectl(h, "create", rtConfigMaps.path(ns, "", "")+"?fieldManager=kubectl-create&fieldValidation=Strict", rtConfigMaps.ref(ns, name, ""))
		if c.code == 200 {
			if g.chance(80) {
				c.code, c.st = 409, alreadyExists(c.ref)
			} else {
				rv := g.nextRV()
				c.code = 201
				c.reqBody = configMapRequest(ns, name, hv)
				c.respBody = configMapObject(ns, name, hv, rv, g.now, g.now, "kubectl-create")
			}
		}
		g.do(g.now, c)
	case 1:
		c := g.kubectl(h, "patch", rtConfigMaps.path(ns, name, "")+"?fieldManager=kubectl-edit&fieldValidation=Strict", rtConfigMaps.ref(ns, name, ""))
		if c.code == 200 {
			rv := g.nextRV()
			c.reqBody = configMapPatch(name, hv)
			c.respBody = configMapObject(ns, name, hv+1, rv, g.now-g.between(86400e6, 90*86400e6), g.now, "kubectl-edit")
		}
		g.do(g.now, c)
	default:
		c := g.kubectl(h, "delete", rtConfigMaps.path(ns, name, ""), rtConfigMaps.ref(ns, name, ""))
		if c.code == 200 {
			g.nextRV()
			c.st = deleteStatus(name, "", "configmaps", uidOf("configmap", ns, name))
			c.reqBody = deleteOptions("Background")
			c.respBody = statusObject(c.st)
		}
		g.do(g.now, c)
	}
}

func (g *generator) kubectlSecret() {
	h := g.randomHuman()
	ns := g.w.randomNamespace(g.r)
	name := g.w.secretName(g.r, ns)
	switch {
	case g.chance(600):
		g.do(g.now, g.kubectl(h, "get", rtSecrets.path(ns, name, ""), rtSecrets.ref(ns, name, "")))
	case g.chance(600) || name == "important":
		c := g.kubectl(h, "create", rtSecrets.path(ns, "", "")+"?fieldManager=kubectl-create&fieldValidation=Strict", rtSecrets.ref(ns, name, ""))
		if c.code == 200 {
			if name == "important" || g.chance(100) {
				c.code, c.st = 409, alreadyExists(c.ref)
			} else {
				g.nextRV()
				c.code = 201
			}
		}
		g.do(g.now, c)
	default:
		c := g.kubectl(h, "delete", rtSecrets.path(ns, name, ""), rtSecrets.ref(ns, name, ""))
		if c.code == 200 {
			g.nextRV()
			c.st = deleteStatus(name, "", "secrets", uidOf("secret", ns, name))
		}
		g.do(g.now, c)
	}
}

// execQueries are the query strings kubectl exec sends (url.Values, so
// sorted by key), with how long such a session lasts.
var execQueries = []struct {
	q        string
	min, max int64
}{
	{"?command=sh&container=app&stdin=true&stdout=true&tty=true", 30e6, 2400e6},
	{"?command=bash&container=app&stdin=true&stdout=true&tty=true", 30e6, 2400e6},
	{"?command=env&container=app&stderr=true&stdout=true", 150_000, 2e6},
	{"?command=cat&command=%2Fetc%2Fapp%2Fconfig.yaml&container=app&stderr=true&stdout=true", 150_000, 2e6},
	{"?command=sh&command=-c&command=ps+aux&container=app&stderr=true&stdout=true", 150_000, 3e6},
	{"?command=curl&command=-s&command=localhost%3A8080%2Fhealthz&container=app&stderr=true&stdout=true", 150_000, 3e6},
}

// stream runs an exec/attach/portforward on pod p: kubectl first GETs the
// pod, then upgrades the connection. kubectl since 1.30 uses WebSockets
// (verb get); older ones use SPDY (verb create). The response code is 101.
func (g *generator) stream(h *human, p *pod, sub, q string, min, max int64) int64 {
	ns := p.dep.ns
	t := g.do(g.now, g.kubectl(h, "get", rtPods.path(ns, p.name, ""), rtPods.ref(ns, p.name, ""))) + g.between(3_000, 40_000)
	verb := "get"
	if h.spdy {
		verb = "create"
	}
	c := g.kubectl(h, verb, rtPods.path(ns, p.name, sub)+q, rtPods.ref(ns, p.name, sub))
	if c.code == 200 {
		c.code = 101
		c.duration = g.between(min, max)
	}
	return g.do(t, c)
}

func (g *generator) kubectlExec() {
	e := execQueries[g.r.IntN(len(execQueries))]
	g.stream(g.randomHuman(), g.w.randomPod(g.r), "exec", e.q, e.min, e.max)
}

func (g *generator) kubectlAttach() {
	g.stream(g.randomHuman(), g.w.randomPod(g.r), "attach", "?container=app&stdin=true&stdout=true&tty=true", 10e6, 900e6)
}

func (g *generator) kubectlPortForward() {
	g.stream(g.randomHuman(), g.w.randomPod(g.r), "portforward", "", 20e6, 3600e6)
}

func (g *generator) kubectlDeletePod() {
	h := g.randomHuman()
	p := g.w.randomPod(g.r)
	ns := p.dep.ns
	c := g.kubectl(h, "delete", rtPods.path(ns, p.name, ""), rtPods.ref(ns, p.name, ""))
	if c.code == 200 {
		rv := g.nextRV()
		c.reqBody = deleteOptions("Background")
		c.respBody = podObject(p, false, rv, g.now-g.between(3600e6, 20*86400e6), g.now+30e6)
	}
	g.do(g.now, c)
}

// kubectlRBAC creates or deletes roles and bindings. Only admins are
// allowed; the rest get 403.
func (g *generator) kubectlRBAC() {
	h := g.randomHuman()
	ns := g.w.randomNamespace(g.r)
	const q = "?fieldManager=kubectl-create&fieldValidation=Strict"
	var c *call
	switch g.r.IntN(6) {
	case 0:
		name := "pod-reader"
		c = g.kubectl(h, "create", rtRoles.path(ns, "", "")+q, rtRoles.ref(ns, name, ""))
		if c.code == 200 {
			rv := g.nextRV()
			rules := []rule{{[]string{"get", "list", "watch"}, []string{""}, []string{"pods", "pods/log"}}}
			c.reqBody = roleObject("Role", ns, name, rules, 0, 0, "")
			c.respBody = roleObject("Role", ns, name, rules, rv, g.now, "kubectl-create")
		}
	case 1, 2:
		name := []string{"oncall-view", "ci-deployer", "dev-edit", "auditor-view"}[g.r.IntN(4)]
		subj := []subject{{kind: "Group", name: "developers"}}
		role := "edit"
		if name == "ci-deployer" {
			subj = []subject{{kind: "ServiceAccount", name: "deployer", namespace: "ci"}}
		} else if strings.HasSuffix(name, "view") {
			role = "view"
		}
		c = g.kubectl(h, "create", rtRoleBindings.path(ns, "", "")+q, rtRoleBindings.ref(ns, name, ""))
		if c.code == 200 {
			rv := g.nextRV()
			c.reqBody = bindingObject("RoleBinding", ns, name, "ClusterRole", role, subj, 0, 0, "")
			c.respBody = bindingObject("RoleBinding", ns, name, "ClusterRole", role, subj, rv, g.now, "kubectl-create")
		}
	case 3:
		name := "namespace-viewer"
		rules := []rule{{[]string{"get", "list", "watch"}, []string{""}, []string{"namespaces"}}}
		if g.chance(300) {
			name = "debug-everything"
			rules = []rule{{[]string{"*"}, []string{"*"}, []string{"*"}}}
		}
		c = g.kubectl(h, "create", rtClusterRoles.path("", "", "")+q, rtClusterRoles.ref("", name, ""))
		if c.code == 200 {
			rv := g.nextRV()
			c.reqBody = roleObject("ClusterRole", "", name, rules, 0, 0, "")
			c.respBody = roleObject("ClusterRole", "", name, rules, rv, g.now, "kubectl-create")
		}
	case 4:
		name, role := "ci-cluster-admin", "cluster-admin"
		subj := []subject{{kind: "ServiceAccount", name: "deployer", namespace: "ci"}}
		if g.chance(500) {
			name, role = "monitoring-view", "view"
			subj = []subject{{kind: "Group", name: "monitoring"}}
		}
		c = g.kubectl(h, "create", rtCRBs.path("", "", "")+q, rtCRBs.ref("", name, ""))
		if c.code == 200 {
			rv := g.nextRV()
			c.reqBody = bindingObject("ClusterRoleBinding", "", name, "ClusterRole", role, subj, 0, 0, "")
			c.respBody = bindingObject("ClusterRoleBinding", "", name, "ClusterRole", role, subj, rv, g.now, "kubectl-create")
		}
	default:
		name := "oncall-view"
		c = g.kubectl(h, "delete", rtRoleBindings.path(ns, name, ""), rtRoleBindings.ref(ns, name, ""))
		if c.code == 200 {
			g.nextRV()
			c.st = deleteStatus(name, "rbac.authorization.k8s.io", "rolebindings", uidOf("RoleBinding", ns, name))
			c.reqBody = deleteOptions("Background")
			c.respBody = statusObject(c.st)
		}
	}
	g.do(g.now, c)
}

func (g *generator) kubectlAuth() {
	h := g.randomHuman()
	r := ref("authorization.k8s.io", "v1", "selfsubjectaccessreviews", "", "", "")
	uri := "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews"
	if g.chance(300) {
		r = ref("authentication.k8s.io", "v1", "selfsubjectreviews", "", "", "")
		uri = "/apis/authentication.k8s.io/v1/selfsubjectreviews"
	}
	g.do(g.now, &call{a: &h.actor, verb: "create", uri: uri, ref: r, code: 201, ips: g.humanIPs(h),
		reason: `RBAC: allowed by ClusterRoleBinding "system:basic-user" of ClusterRole "system:basic-user" to Group "system:authenticated"`})
}

// kubectlImpersonate is an admin running kubectl --as: the request is
// authorized (and named in 403 messages) as the impersonated user.
func (g *generator) kubectlImpersonate() {
	var h *human
	for h == nil || h.role != "admin" {
		h = g.randomHuman()
	}
	ns := g.w.randomNamespace(g.r)
	rt := []resourceType{rtPods, rtDeployments, rtSecrets, rtConfigMaps}[g.r.IntN(4)]
	verb := []string{"list", "list", "get", "delete"}[g.r.IntN(4)]
	name := ""
	if verb != "list" {
		switch rt {
		case rtPods:
			name = g.w.randomPod(g.r).name
		case rtDeployments:
			name = g.w.randomDeployment(g.r).name
		case rtSecrets:
			name = g.w.secretName(g.r, ns)
			if name == "important" {
				name = "db-credentials"
			}
		default:
			name = g.w.configMapName(g.r)
		}
	}
	r := rt.ref(ns, name, "")
	uri := rt.path(ns, name, "")
	if verb == "list" {
		uri += "?limit=500"
	}
	c := &call{a: &h.actor, verb: verb, uri: uri, ref: r, ips: g.humanIPs(h)}
	if g.chance(300) {
		sa := []string{"deployer", "default", "argocd-application-controller"}[g.r.IntN(3)]
		c.impersonated = &userInfo{username: "system:serviceaccount:" + ns + ":" + sa,
			groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"}}
		if sa == "default" || (rt == rtSecrets && verb != "get") {
			c.code, c.st = 403, forbidden(c.impersonated.username, verb, r)
		} else {
			c.reason = `RBAC: allowed by RoleBinding "` + sa + `/` + ns + `" of ClusterRole "edit" to ServiceAccount "` + sa + `/` + ns + `"`
		}
	} else {
		var target *human
		for target == nil || target.role == "admin" || target.role == "attacker" {
			target = g.randomHuman()
		}
		c.impersonated = &userInfo{username: target.name, groups: []string{"system:authenticated"}}
		if g.chance(400) {
			// --as-group as well
			c.impersonated.groups = []string{target.user.groups[0], "system:authenticated"}
		}
		if ok, reason := target.authorize(verb, rt.resource, "", ns); ok {
			c.reason = reason
		} else {
			c.code, c.st = 403, forbidden(target.name, verb, r)
		}
	}
	if g.chance(40) {
		c.constraint = "impersonate-on:user-info:" + verb
	}
	if c.code == 200 && verb == "delete" {
		g.nextRV()
		if rt == rtPods {
			c.reqBody = deleteOptions("Background")
			p := g.w.randomPod(g.r)
			c.respBody = podObject(p, false, g.rv, g.now-g.between(3600e6, 20*86400e6), g.now+30e6)
		} else {
			c.st = deleteStatus(name, rt.group, rt.resource, uidOf(rt.resource, ns, name))
			c.reqBody = deleteOptions("Background")
			c.respBody = statusObject(c.st)
		}
	}
	g.do(g.now, c)
}

func (g *generator) kubectlWatch() {
	h := g.randomHuman()
	ns := g.w.randomNamespace(g.r)
	t := g.do(g.now, g.kubectl(h, "list", rtPods.path(ns, "", "")+"?limit=500", rtPods.ref(ns, "", ""))) + g.between(2_000, 20_000)
	c := g.kubectl(h, "watch", rtPods.path(ns, "", "")+"?resourceVersion="+strconv.FormatInt(g.rv, 10)+"&watch=true", rtPods.ref(ns, "", ""))
	c.duration = g.between(5e6, 1200e6)
	g.do(t, c)
}

func (g *generator) kubectlTop() {
	h := g.randomHuman()
	ns := g.w.randomNamespace(g.r)
	if g.chance(300) {
		r := ref("metrics.k8s.io", "v1beta1", "nodes", "", "", "")
		g.do(g.now, g.kubectl(h, "list", "/apis/metrics.k8s.io/v1beta1/nodes", r))
		return
	}
	g.do(g.now, g.kubectl(h, "list", rtPodMetrics.path(ns, "", ""), rtPodMetrics.ref(ns, "", "")))
}
