package main

import (
	"strconv"
)

// Machine traffic: kubelets, control-plane controllers, the scheduler,
// add-ons running under service accounts, health probes and scanners.
// Each action starts at g.now; the shares are documented in README.md.

func (g *generator) setupActions() {
	machine := []action{
		// Kubelets.
		{300, "kubelet lease renew", (*generator).kubeletLease},
		{45, "kubelet node status", (*generator).kubeletNodeStatus},
		{110, "kubelet pod status", (*generator).kubeletPodStatus},
		{30, "kubelet watch", (*generator).kubeletWatch},
		{8, "kubelet list", (*generator).kubeletList},
		{30, "kubelet event", (*generator).kubeletEvent},
		{14, "kubelet token request", (*generator).kubeletToken},
		{12, "kubelet get configmap/secret", (*generator).kubeletGetObject},
		// Control plane.
		{55, "kube-controller-manager leader election", (*generator).kcmLeader},
		{45, "apiserver identity lease", (*generator).apiserverLease},
		{25, "apiserver endpoint reconciler", (*generator).apiserverReconcile},
		{65, "endpointslice controller", (*generator).endpointSlices},
		{25, "endpoints controller", (*generator).endpoints},
		{28, "replicaset controller creates pod", (*generator).rsCreatePod},
		{12, "replicaset controller deletes pod", (*generator).rsDeletePod},
		{18, "replicaset/deployment status", (*generator).workloadStatus},
		{40, "controller informer watch", (*generator).kcmWatch},
		{12, "controller discovery", (*generator).kcmDiscovery},
		{16, "controller event", (*generator).kcmEvent},
		{4, "cronjob and ttl controllers", (*generator).jobs},
		// Scheduler.
		{45, "kube-scheduler leader election", (*generator).schedulerLeader},
		{12, "kube-scheduler watch", (*generator).schedulerWatch},
		{8, "kube-scheduler binding", (*generator).schedulerBindRandom},
		// Add-ons.
		{22, "kube-proxy watch", (*generator).kubeProxy},
		{10, "coredns watch", (*generator).coredns},
		{40, "prometheus scrape", (*generator).prometheus},
		{14, "argocd", (*generator).argocd},
		{20, "cert-manager", (*generator).certManager},
		{16, "ingress-nginx", (*generator).ingressNginx},
		{15, "metrics-server delegated auth", (*generator).metricsServer},
		{16, "payments operator", (*generator).paymentsOperator},
		// Anonymous.
		{30, "kube-probe", (*generator).probe},
		{14, "load balancer health check", (*generator).lbHealth},
		// Scanners.
		{1, "scan burst from 192.168.1.100", (*generator).scanBurst},
		{1, "attacker enumeration burst", (*generator).attackerBurst},
	}
	human := []action{
		{260, "kubectl get (list)", (*generator).kubectlList},
		{120, "kubectl get (one)", (*generator).kubectlGet},
		{50, "kubectl describe", (*generator).kubectlDescribe},
		{55, "kubectl logs", (*generator).kubectlLogs},
		{40, "kubectl apply deployment", (*generator).kubectlApply},
		{15, "kubectl scale", (*generator).kubectlScale},
		{15, "kubectl rollout restart", (*generator).kubectlRestart},
		{5, "kubectl delete deployment", (*generator).kubectlDeleteDeployment},
		{30, "kubectl configmap", (*generator).kubectlConfigMap},
		{25, "kubectl secret", (*generator).kubectlSecret},
		{30, "kubectl exec", (*generator).kubectlExec},
		{4, "kubectl attach", (*generator).kubectlAttach},
		{10, "kubectl port-forward", (*generator).kubectlPortForward},
		{18, "kubectl delete pod", (*generator).kubectlDeletePod},
		{8, "kubectl RBAC change", (*generator).kubectlRBAC},
		{10, "kubectl auth can-i / whoami", (*generator).kubectlAuth},
		{15, "kubectl --as (impersonation)", (*generator).kubectlImpersonate},
		{10, "kubectl get -w", (*generator).kubectlWatch},
		{10, "kubectl top", (*generator).kubectlTop},
	}
	g.machineActs, g.humanActs = machine, human
	g.machine = newTable(weightsOf(machine))
	g.human = newTable(weightsOf(human))
}

func weightsOf(as []action) []uint64 {
	w := make([]uint64, len(as))
	for i, a := range as {
		w[i] = a.weight
	}
	return w
}

func (g *generator) randomNode() *node { return &g.w.nodes[g.r.IntN(numNodes)] }

// leaderElection is a client-go leader elector renewing its lease: a GET
// then an UPDATE, or (rarely) a 409 when another candidate raced it.
func (g *generator) leaderElection(a *actor, ns, name string, timeout string) {
	r := rtLeases.ref(ns, name, "")
	q := "?timeout=" + timeout
	t := g.do(g.now, &call{a: a, verb: "get", uri: rtLeases.path(ns, name, "") + q, ref: r})
	u := *r
	u.uid = uidOf("lease", ns, name)
	u.resourceVersion = strconv.FormatInt(g.rv, 10)
	c := &call{a: a, verb: "update", uri: rtLeases.path(ns, name, "") + q, ref: &u}
	if g.chance(4) {
		c.code, c.st = 409, conflict(&u)
	} else {
		g.nextRV()
	}
	g.do(t+g.between(200, 2_000), c)
}

func withUA(a *actor, suffix string) *actor {
	b := *a
	b.ua += suffix
	return &b
}

// ---- Kubelets ----

func (g *generator) kubeletLease() {
	n := g.randomNode()
	r := rtLeases.ref("kube-node-lease", n.name, "")
	r.uid = uidOf("lease", "kube-node-lease", n.name)
	r.resourceVersion = strconv.FormatInt(g.rv, 10)
	g.nextRV()
	g.do(g.now, &call{a: n.kubelet, verb: "update", uri: rtLeases.path("kube-node-lease", n.name, "") + "?timeout=10s", ref: r})
}

func (g *generator) kubeletNodeStatus() {
	n := g.randomNode()
	t := g.do(g.now, &call{a: n.kubelet, verb: "get", uri: rtNodes.path("", n.name, "") + "?resourceVersion=0&timeout=10s",
		ref: rtNodes.ref("", n.name, "")})
	g.nextRV()
	g.do(t+g.between(500, 3_000), &call{a: n.kubelet, verb: "patch", uri: rtNodes.path("", n.name, "status") + "?timeout=10s",
		ref: rtNodes.ref("", n.name, "status")})
}

func (g *generator) kubeletPodStatus() {
	p := g.w.randomPod(g.r)
	k := g.w.nodes[p.node].kubelet
	t := g.do(g.now, &call{a: k, verb: "get", uri: rtPods.path(p.dep.ns, p.name, ""), ref: rtPods.ref(p.dep.ns, p.name, "")})
	at := t + g.between(500, 4_000)
	c := &call{a: k, verb: "patch", uri: rtPods.path(p.dep.ns, p.name, "status"), ref: rtPods.ref(p.dep.ns, p.name, "status"),
		reqBody: podStatusPatch(p, at, g.r.Uint64())}
	if g.chance(15) {
		c.code, c.st = 404, notFound(rtPods.ref(p.dep.ns, p.name, ""))
	} else {
		g.nextRV()
	}
	g.do(at, c)
}

// kubeletWatch is one of the kubelet's reflector watches.
func (g *generator) kubeletWatch() {
	n := g.randomNode()
	var rt resourceType
	var ns, sel string
	switch g.r.IntN(7) {
	case 0, 1:
		rt, sel = rtPods, "fieldSelector=spec.nodeName%3D"+n.name
	case 2:
		rt, ns, sel = rtConfigMaps, g.w.randomNamespace(g.r), "fieldSelector=metadata.name%3Dkube-root-ca.crt"
	case 3:
		rt, ns = rtSecrets, g.w.randomNamespace(g.r)
		sel = "fieldSelector=metadata.name%3D" + g.w.secretName(g.r, ns)
	case 4:
		rt, sel = rtNodes, "fieldSelector=metadata.name%3D"+n.name
	case 5:
		rt = rtServices
	default:
		rt = []resourceType{rtCSIDrivers, rtRuntimeClass, rtCSINodes}[g.r.IntN(3)]
	}
	g.watch(n.kubelet, rt, ns, sel, false)
}

// watch schedules a reflector watch that ends at its server-side timeout
// (or, rarely, early when the client goes away).
func (g *generator) watch(a *actor, rt resourceType, ns, sel string, streaming bool) {
	to := g.between(300, 599)
	d := to * 1e6
	if g.chance(40) {
		d = g.between(1e6, d)
	}
	g.do(g.now, &call{a: a, verb: "watch", uri: rt.path(ns, "", "") + watchQuery(sel, g.rv-g.between(0, 5000), to, streaming),
		ref: rt.ref(ns, "", ""), duration: d})
}

func (g *generator) kubeletList() {
	n := g.randomNode()
	ns := g.w.randomNamespace(g.r)
	rt, sel := rtConfigMaps, "fieldSelector=metadata.name%3Dkube-root-ca.crt"
	if g.chance(400) {
		rt, ns, sel = rtPods, "", "fieldSelector=spec.nodeName%3D"+n.name
	}
	g.do(g.now, &call{a: n.kubelet, verb: "list", uri: rt.path(ns, "", "") + listQuery(sel), ref: rt.ref(ns, "", "")})
}

func eventName(obj string, at int64) string {
	return obj + "." + strconv.FormatInt(at*1000+at%997, 16)
}

func (g *generator) kubeletEvent() {
	p := g.w.randomPod(g.r)
	k := g.w.nodes[p.node].kubelet
	name := eventName(p.name, g.now-g.between(0, 600e6))
	if g.chance(300) {
		// An event series: the recorder patches the count.
		g.do(g.now, &call{a: k, verb: "patch", uri: rtEvents.path(p.dep.ns, name, ""), ref: rtEvents.ref(p.dep.ns, name, "")})
		g.nextRV()
		return
	}
	g.nextRV()
	g.do(g.now, &call{a: k, verb: "create", uri: rtEvents.path(p.dep.ns, "", ""), ref: rtEvents.ref(p.dep.ns, name, ""), code: 201})
}

func (g *generator) kubeletToken() {
	p := g.w.randomPod(g.r)
	k := g.w.nodes[p.node].kubelet
	g.do(g.now, &call{a: k, verb: "create", uri: rtSAs.path(p.dep.ns, "default", "token"),
		ref: rtSAs.ref(p.dep.ns, "default", "token"), code: 201})
}

func (g *generator) kubeletGetObject() {
	p := g.w.randomPod(g.r)
	k := g.w.nodes[p.node].kubelet
	rt, name := rtConfigMaps, g.w.configMapName(g.r)
	if g.chance(400) {
		rt, name = rtSecrets, g.w.secretName(g.r, p.dep.ns)
	}
	g.do(g.now, &call{a: k, verb: "get", uri: rt.path(p.dep.ns, name, ""), ref: rt.ref(p.dep.ns, name, "")})
}

// ---- Control plane ----

func (g *generator) kcmLeader() {
	g.leaderElection(withUA(g.w.kcm, "/leader-election"), "kube-system", "kube-controller-manager", "5s")
}

func (g *generator) apiserverLease() {
	name := "apiserver-" + suffixOf(hashOf("apiserver-lease"), 26)
	r := rtLeases.ref("kube-system", name, "")
	r.uid = uidOf("lease", "kube-system", name)
	r.resourceVersion = strconv.FormatInt(g.rv, 10)
	g.nextRV()
	g.do(g.now, &call{a: g.w.apiserver, verb: "update", uri: rtLeases.path("kube-system", name, ""), ref: r})
}

func (g *generator) apiserverReconcile() {
	a := g.w.apiserver
	t := g.do(g.now, &call{a: a, verb: "get", uri: rtServices.path("default", "kubernetes", ""), ref: rtServices.ref("default", "kubernetes", "")})
	t = g.do(t+g.between(100, 900), &call{a: a, verb: "get", uri: rtEndpoints.path("default", "kubernetes", ""), ref: rtEndpoints.ref("default", "kubernetes", "")})
	g.do(t+g.between(100, 900), &call{a: a, verb: "get", uri: rtSlices.path("default", "kubernetes", ""), ref: rtSlices.ref("default", "kubernetes", "")})
}

func (g *generator) endpointSlices() {
	d := g.w.randomDeployment(g.r)
	a := g.w.controller["endpointslice-controller"]
	if g.chance(80) {
		a = g.w.controller["endpointslicemirroring-controller"]
	}
	name := d.name + "-" + suffixOf(hashOf("slice", d.ns, d.name), 5)
	r := rtSlices.ref(d.ns, name, "")
	if g.chance(60) {
		// Slices are created with generateName: the objectRef has no name.
		g.nextRV()
		g.do(g.now, &call{a: a, verb: "create", uri: rtSlices.path(d.ns, "", ""), ref: rtSlices.ref(d.ns, "", ""), code: 201})
		return
	}
	r.uid = uidOf("endpointslice", d.ns, name)
	r.resourceVersion = strconv.FormatInt(g.rv-g.between(0, 900), 10)
	c := &call{a: a, verb: "update", uri: rtSlices.path(d.ns, name, ""), ref: r}
	if g.chance(30) {
		c.code, c.st = 409, conflict(r)
	} else {
		g.nextRV()
	}
	g.do(g.now, c)
}

func (g *generator) endpoints() {
	d := g.w.randomDeployment(g.r)
	r := rtEndpoints.ref(d.ns, d.name, "")
	r.uid = uidOf("endpoints", d.ns, d.name)
	r.resourceVersion = strconv.FormatInt(g.rv-g.between(0, 900), 10)
	g.nextRV()
	g.do(g.now, &call{a: g.w.controller["endpoint-controller"], verb: "update", uri: rtEndpoints.path(d.ns, d.name, ""), ref: r})
}

// rsCreatePod: the replicaset controller creates a pod (RequestResponse,
// with the Pod in both bodies), then the scheduler binds it and records an
// event.
func (g *generator) rsCreatePod() {
	p := g.w.pod(g.w.nsTable.pick(g.r), g.w.appTable.pick(g.r), g.r.IntN(podsPerApp))
	d := p.dep
	a := g.w.controller["replicaset-controller"]
	rv := g.nextRV()
	lat := g.latency("create", 201)
	// The name is generated from generateName after the audit filter took
	// the objectRef, so the objectRef has no name.
	t := g.do(g.now, &call{a: a, verb: "create", uri: rtPods.path(d.ns, "", ""), ref: rtPods.ref(d.ns, "", ""), code: 201,
		latency: lat, reqBody: podObject(p, true, 0, 0, 0), respBody: podObject(p, false, rv, g.now, 0),
		ann: []annotation{{"pod-security.kubernetes.io/enforce-policy", "baseline:latest"}}})
	g.do(t+g.between(1_000, 30_000), &call{a: a, verb: "create", uri: rtEvents.path(d.ns, "", ""),
		ref: rtEvents.ref(d.ns, eventName(d.name+"-"+d.rsHash, t), ""), code: 201})
	g.schedulerBind(p, t+g.between(5_000, 400_000))
}

func (g *generator) rsDeletePod() {
	p := g.w.randomPod(g.r)
	d := p.dep
	a := g.w.controller["replicaset-controller"]
	rv := g.nextRV()
	pre := newBody("DeleteOptions", "v1")
	pre.kobj("preconditions").kstr("uid", p.uid).close()
	g.do(g.now, &call{a: a, verb: "delete", uri: rtPods.path(d.ns, p.name, ""), ref: rtPods.ref(d.ns, p.name, ""),
		reqBody: pre.done(), respBody: podObject(p, false, rv, g.now-g.between(3600e6, 20*86400e6), g.now+30e6)})
}

func (g *generator) workloadStatus() {
	d := g.w.randomDeployment(g.r)
	rt, name, a := rtReplicaSets, d.name+"-"+d.rsHash, g.w.controller["replicaset-controller"]
	if g.chance(400) {
		rt, name, a = rtDeployments, d.name, g.w.controller["deployment-controller"]
	}
	r := rt.ref(d.ns, name, "status")
	r.uid = uidOf(rt.resource, d.ns, name)
	r.resourceVersion = strconv.FormatInt(g.rv-g.between(0, 900), 10)
	c := &call{a: a, verb: "update", uri: rt.path(d.ns, name, "status"), ref: r}
	if g.chance(60) {
		c.code, c.st = 409, conflict(rt.ref(d.ns, name, ""))
	} else {
		g.nextRV()
	}
	g.do(g.now, c)
}

var kcmWatched = []resourceType{
	rtPods, rtNodes, rtReplicaSets, rtDeployments, rtServices, rtSlices, rtJobs, rtCronJobs,
	rtStatefulSets, rtDaemonSets, rtNamespaces, rtPVCs, rtSAs, rtLeases, rtPDBs, rtHPAs,
	rtConfigMaps, rtSecrets, rtEndpoints, rtPVs, rtCSINodes, rtValidatingWH, rtPriorityClass,
}

func (g *generator) kcmWatch() {
	rt := kcmWatched[g.r.IntN(len(kcmWatched))]
	if g.chance(300) {
		// A list: an informer (re)starting.
		g.do(g.now, &call{a: g.w.kcm, verb: "list", uri: rt.path("", "", "") + listQuery(""), ref: rt.ref("", "", "")})
		return
	}
	g.watch(g.w.kcm, rt, "", "", g.chance(300))
}

// kcmDiscovery is the periodic API discovery of the garbage collector and
// the resource quota controller.
func (g *generator) kcmDiscovery() {
	a := g.w.controller["generic-garbage-collector"]
	if g.chance(500) {
		a = g.w.controller["resourcequota-controller"]
	}
	a = &actor{class: a.class, user: a.user, ua: a.ua, ip: a.ip,
		reason: `RBAC: allowed by ClusterRoleBinding "system:discovery" of ClusterRole "system:discovery" to Group "system:authenticated"`}
	t := g.do(g.now, &call{a: a, verb: "get", uri: "/api"})
	g.do(t+g.between(300, 3_000), &call{a: a, verb: "get", uri: "/apis"})
}

func (g *generator) kcmEvent() {
	d := g.w.randomDeployment(g.r)
	a, obj := g.w.controller["deployment-controller"], d.name
	if g.chance(500) {
		a, obj = g.w.controller["replicaset-controller"], d.name+"-"+d.rsHash
	}
	g.nextRV()
	g.do(g.now, &call{a: a, verb: "create", uri: rtEvents.path(d.ns, "", ""), ref: rtEvents.ref(d.ns, eventName(obj, g.now), ""), code: 201})
}

func (g *generator) jobs() {
	d := g.w.randomDeployment(g.r)
	job := d.name + "-report-" + strconv.FormatInt(g.now/60e6, 10)
	if g.chance(500) {
		g.nextRV()
		g.do(g.now, &call{a: g.w.controller["cronjob-controller"], verb: "create", uri: rtJobs.path(d.ns, "", ""),
			ref: rtJobs.ref(d.ns, job, ""), code: 201})
		return
	}
	old := d.name + "-report-" + strconv.FormatInt(g.now/60e6-1440, 10)
	g.nextRV()
	g.do(g.now, &call{a: g.w.controller["ttl-after-finished-controller"], verb: "delete", uri: rtJobs.path(d.ns, old, ""),
		ref: rtJobs.ref(d.ns, old, ""), st: deleteStatus(old, "batch", "jobs", uidOf("job", d.ns, old))})
}

// ---- Scheduler ----

func (g *generator) schedulerLeader() {
	g.leaderElection(withUA(g.w.scheduler, "/leader-election"), "kube-system", "kube-scheduler", "5s")
}

var schedWatched = []resourceType{rtPods, rtNodes, rtPVs, rtPVCs, rtCSINodes, rtCSIDrivers, rtServices, rtStatefulSets, rtReplicaSets, rtPDBs, rtNamespaces}

func (g *generator) schedulerWatch() {
	rt := schedWatched[g.r.IntN(len(schedWatched))]
	sel := ""
	if rt == rtPods {
		sel = "fieldSelector=status.phase%21%3DSucceeded%2Cstatus.phase%21%3DFailed"
	}
	g.watch(g.w.scheduler, rt, "", sel, false)
}

func (g *generator) schedulerBindRandom() {
	g.schedulerBind(g.w.randomPod(g.r), g.now)
}

// schedulerBind posts the binding of a pod to its node and the Scheduled
// event (events.k8s.io/v1, unlike the kubelet's core events).
func (g *generator) schedulerBind(p *pod, at int64) {
	s := g.w.scheduler
	g.nextRV()
	t := g.do(at, &call{a: s, verb: "create", uri: rtPods.path(p.dep.ns, p.name, "binding"), ref: rtPods.ref(p.dep.ns, p.name, "binding"), code: 201})
	g.nextRV()
	g.do(t+g.between(200, 5_000), &call{a: s, verb: "create", uri: rtEventsV1.path(p.dep.ns, "", ""),
		ref: rtEventsV1.ref(p.dep.ns, eventName(p.name, t), ""), code: 201})
}

// ---- Add-ons ----

func (g *generator) addonActor(name string) *actor {
	for _, a := range g.w.addons {
		if a.name == name {
			return a.replicas[g.r.IntN(len(a.replicas))]
		}
	}
	panic("BUG: no add-on " + name)
}

func (g *generator) kubeProxy() {
	a := g.addonActor("kube-proxy")
	if g.chance(500) {
		g.watch(a, rtSlices, "", "labelSelector=%21service.kubernetes.io%2Fheadless%2C%21service.kubernetes.io%2Fservice-proxy-name", false)
		return
	}
	if g.chance(300) {
		g.watch(a, rtNodes, "", "fieldSelector=metadata.name%3D"+a.user.extra[1].values[0], false)
		return
	}
	g.watch(a, rtServices, "", "labelSelector=%21service.kubernetes.io%2Fheadless%2C%21service.kubernetes.io%2Fservice-proxy-name", false)
}

func (g *generator) coredns() {
	a := g.addonActor("coredns")
	rt := []resourceType{rtSlices, rtServices, rtNamespaces}[g.r.IntN(3)]
	if g.chance(150) {
		g.do(g.now, &call{a: a, verb: "list", uri: rt.path("", "", "") + "?limit=500&resourceVersion=0", ref: rt.ref("", "", "")})
		return
	}
	g.watch(a, rt, "", "", false)
}

func (g *generator) prometheus() {
	a := g.addonActor("prometheus-k8s")
	switch {
	case g.chance(650):
		g.do(g.now, &call{a: a, verb: "get", uri: "/metrics", latency: g.between(8_000, 60_000)})
	case g.chance(500):
		// cAdvisor metrics through the API server's node proxy.
		n := g.randomNode()
		g.do(g.now, &call{a: a, verb: "get", uri: rtNodes.path("", n.name, "proxy") + "/metrics/cadvisor",
			ref: rtNodes.ref("", n.name, "proxy"), duration: g.between(20_000, 400_000)})
	default:
		ns := g.w.randomNamespace(g.r)
		rt := []resourceType{rtPods, rtEndpoints, rtServices, rtSlices}[g.r.IntN(4)]
		g.watch(a, rt, ns, "", false)
	}
}

var argoWatched = []resourceType{rtDeployments, rtServices, rtConfigMaps, rtIngresses, rtSecrets, rtStatefulSets, rtApplications, rtNetPols, rtSAs, rtRoleBindings}

func (g *generator) argocd() {
	a := g.addonActor("argocd-application-controller")
	switch {
	case g.chance(200):
		g.do(g.now, &call{a: a, verb: "get", uri: "/openapi/v2?timeout=32s", latency: g.between(40_000, 400_000),
			reason: `RBAC: allowed by ClusterRoleBinding "system:discovery" of ClusterRole "system:discovery" to Group "system:authenticated"`})
	case g.chance(250):
		d := g.w.randomDeployment(g.r)
		replicas := 1 + g.r.IntN(6)
		rv := g.nextRV()
		g.do(g.now, &call{a: a, verb: "patch", uri: rtDeployments.path(d.ns, d.name, "") + "?fieldManager=argocd-controller",
			ref: rtDeployments.ref(d.ns, d.name, ""), reqBody: argoPatch(d, replicas),
			respBody: deploymentObject(d, rv, g.now-30*86400e6, g.now, replicas, d.image,
				[]string{"argocd.argoproj.io/tracking-id", d.ns + ":apps/Deployment:" + d.ns + "/" + d.name})})
	case g.chance(300):
		ns := "argocd"
		name := g.w.randomNamespace(g.r)
		g.nextRV()
		g.do(g.now, &call{a: a, verb: "patch", uri: rtApplications.path(ns, name, ""), ref: rtApplications.ref(ns, name, "")})
	default:
		g.watch(a, argoWatched[g.r.IntN(len(argoWatched))], "", "", false)
	}
}

func (g *generator) certManager() {
	a := g.addonActor("cert-manager")
	switch {
	case g.chance(550):
		g.leaderElection(a, "kube-system", "cert-manager-controller", "10s")
	case g.chance(500):
		ns := g.w.randomNamespace(g.r)
		a2 := *a
		a2.reason = `RBAC: allowed by ClusterRoleBinding "cert-manager-controller-certificates" of ClusterRole "cert-manager-controller-certificates" to ServiceAccount "cert-manager/cert-manager"`
		g.do(g.now, &call{a: &a2, verb: "get", uri: rtSecrets.path(ns, "tls-cert", ""), ref: rtSecrets.ref(ns, "tls-cert", "")})
	default:
		g.watch(a, rtCertificates, "", "", false)
	}
}

func (g *generator) ingressNginx() {
	a := g.addonActor("ingress-nginx")
	switch {
	case g.chance(500):
		g.leaderElection(a, "ingress-nginx", "ingress-nginx-leader", "10s")
	case g.chance(400):
		g.do(g.now, &call{a: a, verb: "get", uri: rtConfigMaps.path("ingress-nginx", "ingress-nginx-controller", ""),
			ref: rtConfigMaps.ref("ingress-nginx", "ingress-nginx-controller", "")})
	default:
		rt := []resourceType{rtSlices, rtIngresses, rtIngressClass, rtSecrets, rtServices}[g.r.IntN(5)]
		g.watch(a, rt, "", "", false)
	}
}

func (g *generator) metricsServer() {
	a := g.addonActor("metrics-server")
	if g.chance(600) {
		t := g.do(g.now, &call{a: a, verb: "create", uri: "/apis/authentication.k8s.io/v1/tokenreviews",
			ref: ref("authentication.k8s.io", "v1", "tokenreviews", "", "", ""), code: 201})
		g.do(t+g.between(300, 2_000), &call{a: a, verb: "create", uri: "/apis/authorization.k8s.io/v1/subjectaccessreviews",
			ref: ref("authorization.k8s.io", "v1", "subjectaccessreviews", "", "", ""), code: 201})
		return
	}
	a2 := *a
	a2.reason = `RBAC: allowed by ClusterRoleBinding "system:metrics-server" of ClusterRole "system:metrics-server" to ServiceAccount "metrics-server/kube-system"`
	g.do(g.now, &call{a: &a2, verb: "list", uri: rtNodes.path("", "", "") + "?limit=500&resourceVersion=0", ref: rtNodes.ref("", "", "")})
}

// paymentsOperator is a controller-runtime operator that sets its own
// Audit-ID header and, because of a bug, sometimes sends the same one
// again.
func (g *generator) paymentsOperator() {
	a := g.addonActor("payments-operator")
	id := g.uuid()
	if g.chance(25) {
		id = g.operatorID
	} else if g.chance(50) {
		g.operatorID = id
	}
	switch {
	case g.chance(500):
		g.leaderElection(a, "payments", "f3a9b2c1.payments.example.com", "10s")
	case g.chance(600):
		name := "payments-" + g.w.configMapName(g.r)
		r := rtConfigMaps.ref("payments", name, "")
		r.uid = uidOf("configmap", "payments", name)
		r.resourceVersion = strconv.FormatInt(g.rv-g.between(0, 5000), 10)
		h := hashOf("cm", "payments", name)
		rv := g.nextRV()
		g.do(g.now, &call{a: a, verb: "update", uri: rtConfigMaps.path("payments", name, ""), ref: r, auditID: id,
			reqBody:  configMapObject("payments", name, h, g.rv-5, g.now-40*86400e6, g.now-86400e6, "manager"),
			respBody: configMapObject("payments", name, h, rv, g.now-40*86400e6, g.now, "manager")})
	default:
		g.do(g.now, &call{a: a, verb: "get", uri: rtConfigMaps.path("payments", "payments-settings", ""),
			ref: rtConfigMaps.ref("payments", "payments-settings", ""), auditID: id})
	}
}

// ---- Anonymous ----

func (g *generator) probe() {
	p := "/livez"
	if g.chance(500) {
		p = "/readyz"
	}
	g.do(g.now, &call{a: g.w.probe, verb: "get", uri: p, latency: g.between(300, 2_500)})
}

func (g *generator) lbHealth() {
	p := "/healthz"
	if g.chance(300) {
		p = "/readyz"
	}
	g.do(g.now, &call{a: g.w.lbCheck, verb: "get", uri: p, latency: g.between(200, 1_500)})
}

// ---- Scanners ----

var scanPaths = []struct{ uri, verb string }{
	{"/api/v1/secrets", "list"},
	{"/api/v1/namespaces/kube-system/secrets", "list"},
	{"/api/v1/namespaces/production/secrets", "list"},
	{"/api/v1/pods", "list"},
	{"/api/v1/namespaces", "list"},
	{"/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", "list"},
	{"/api/v1/nodes", "list"},
	{"/api/v1/namespaces/default/pods", "list"},
	{"/apis/apps/v1/deployments", "list"},
	{"/api/v1/namespaces/kube-system/configmaps", "list"},
	{"/metrics", "get"},
	{"/version", "get"},
	{"/api", "get"},
	{"/apis", "get"},
	{"/openapi/v2", "get"},
	{"/logs/", "get"},
	{"/debug/pprof/", "get"},
	{"/api/v1/namespaces/kube-system/serviceaccounts", "list"},
}

var scanAgents = []string{"python-requests/2.32.3", "curl/8.5.0", "Go-http-client/2.0", "Go-http-client/1.1"}

// scanRef is the objectRef the API server derives from a scanned path.
func scanRef(uri string) *objectRef {
	parts := splitPath(uri)
	if len(parts) < 3 || parts[0] != "api" && parts[0] != "apis" {
		return nil
	}
	group, version, rest := "", parts[1], parts[2:]
	if parts[0] == "apis" {
		if len(parts) < 4 {
			return nil
		}
		group, version, rest = parts[1], parts[2], parts[3:]
	}
	ns := ""
	if len(rest) >= 3 && rest[0] == "namespaces" {
		ns, rest = rest[1], rest[2:]
	}
	return ref(group, version, rest[0], ns, "", "")
}

func splitPath(p string) []string {
	var out []string
	start := 1
	for i := 1; i <= len(p); i++ {
		if i == len(p) || p[i] == '/' {
			if i > start {
				out = append(out, p[start:i])
			}
			start = i + 1
		}
	}
	return out
}

// scanBurst is a burst of 8-40 requests from one address: with bad
// credentials (401) or none (system:anonymous, mostly 403). Most come from
// 192.168.1.100; some spoof X-Forwarded-For.
func (g *generator) scanBurst() {
	ip := "192.168.1.100"
	if g.chance(200) {
		ip = "45.155." + strconv.Itoa(g.r.IntN(256)) + "." + strconv.Itoa(1+g.r.IntN(254))
	}
	g.scan(ip, int(g.between(8, 40)), g.chance(500), g.now)
}

func (g *generator) scan(ip string, n int, badToken bool, at int64) int64 {
	ua := scanAgents[g.r.IntN(len(scanAgents))]
	a := &actor{class: classAnonymous, user: g.w.anonymous.user, ua: ua, ip: ip,
		reason: `RBAC: allowed by ClusterRoleBinding "system:public-info-viewer" of ClusterRole "system:public-info-viewer" to Group "system:unauthenticated"`}
	var ips []string
	if g.chance(300) {
		ips = []string{"10.0.0.1", ip} // spoofed X-Forwarded-For; the peer is last
	}
	t := at
	for i := 0; i < n; i++ {
		sp := scanPaths[g.r.IntN(len(scanPaths))]
		c := &call{a: a, verb: sp.verb, uri: sp.uri, ref: scanRef(sp.uri), ips: ips, latency: g.between(150, 1_200)}
		switch {
		case badToken:
			c.code = 401
		case sp.uri == "/version" || sp.uri == "/livez" || sp.uri == "/readyz" || sp.uri == "/healthz":
		case c.ref == nil:
			c.code, c.st = 403, forbiddenPath("system:anonymous", sp.verb, sp.uri)
		default:
			c.code, c.st = 403, forbidden("system:anonymous", sp.verb, c.ref)
		}
		t = g.do(t, c) + g.between(30_000, 600_000)
	}
	return t
}

// attackerBurst is the user "attacker" enumerating with a low-privilege
// token: mostly 403, a few allowed reads in default.
func (g *generator) attackerBurst() {
	h := g.w.attacker
	t := g.now
	n := int(g.between(6, 25))
	for i := 0; i < n; i++ {
		ns := []string{"default", "kube-system", "production", "payments", ""}[g.r.IntN(5)]
		rt := []resourceType{rtSecrets, rtPods, rtConfigMaps, rtSAs, rtCRBs, rtClusterRoles, rtDeployments}[g.r.IntN(7)]
		if !rt.namespaced {
			ns = ""
		}
		verb := "list"
		name := ""
		if g.chance(300) && ns != "" {
			verb, rt = "get", rtSecrets
			name = []string{"important", "db-credentials", "admin-token", "default-token"}[g.r.IntN(4)]
		}
		q := ""
		if verb == "list" {
			q = "?limit=500"
		}
		t = g.do(t, g.kubectl(h, verb, rt.path(ns, name, "")+q, rt.ref(ns, name, ""))) + g.between(100_000, 3_000_000)
	}
}
