package main

// incident schedules the scripted attack that every corpus of at least
// minIncidentEvents lines contains, at 62% of the lines, so the seed
// questions have answers:
//
//  1. 192.168.1.100 tries a stolen, expired token: a burst of 401s
//     ("user":{}), then probes anonymously: 403s as system:anonymous;
//  2. the user "attacker" (a low-privilege token, from 192.168.1.100)
//     enumerates secrets, RBAC and pods: 403s, including a denied
//     clusterrolebinding create and a denied exec;
//  3. bob creates ClusterRoleBinding "attacker-debug" granting cluster-admin
//     to User "attacker" (RequestReceived + ResponseComplete, with bodies);
//  4. the attacker lists secrets in production, gets and deletes the secret
//     "important" (RequestReceived + ResponseComplete), execs into a
//     production pod and starts a privileged hostPath pod in kube-system;
//  5. the payments operator sends two distinct requests with one Audit-ID;
//  6. admin restores the secret, deletes the binding and the debug pod.
func (g *generator) incident() {
	w := g.w
	at := g.now
	t := g.scan("192.168.1.100", 25, true, at)
	t = g.scan("192.168.1.100", 12, false, t+g.between(30e6, 120e6))

	// 2. Enumeration as "attacker".
	h := w.attacker
	t += g.between(60e6, 300e6)
	for _, step := range []struct {
		verb string
		rt   resourceType
		ns   string
		name string
	}{
		{"list", rtSecrets, "production", ""},
		{"list", rtSecrets, "kube-system", ""},
		{"get", rtSecrets, "production", "important"},
		{"list", rtCRBs, "", ""},
		{"list", rtPods, "default", ""},
		{"list", rtPods, "production", ""},
		{"create", rtCRBs, "", "attacker-admin"},
	} {
		q := ""
		if step.verb == "list" {
			q = "?limit=500"
		}
		p := step.rt.path(step.ns, step.name, "")
		if step.verb == "create" {
			p = step.rt.path("", "", "") + "?fieldManager=kubectl-create&fieldValidation=Strict"
		}
		t = g.do(t, g.kubectl(h, step.verb, p+q, step.rt.ref(step.ns, step.name, ""))) + g.between(500_000, 8e6)
	}
	victim := w.pod(0, 0, 0) // production/web, replica 0
	c := g.kubectl(h, "create", rtPods.path("production", victim.name, "exec")+"?command=sh&container=app&stdin=true&stdout=true&tty=true",
		rtPods.ref("production", victim.name, "exec"))
	t = g.do(t, c) + g.between(20e6, 90e6)

	// 3. bob grants cluster-admin to attacker.
	bob := w.humans[2]
	if bob.name != "bob" {
		panic("BUG: humans[2] is not bob")
	}
	t += g.between(300e6, 900e6)
	subj := []subject{{kind: "User", name: "attacker"}}
	rv := g.nextRV()
	t = g.do(t, &call{a: &bob.actor, verb: "create", code: 201,
		uri:     rtCRBs.path("", "", "") + "?fieldManager=kubectl-create&fieldValidation=Strict",
		ref:     rtCRBs.ref("", "attacker-debug", ""),
		reason:  `RBAC: allowed by ClusterRoleBinding "oncall-escalation" of ClusterRole "cluster-admin" to User "bob"`,
		ips:     []string{bob.ip, "10.0.0.5"},
		reqBody: bindingObject("ClusterRoleBinding", "", "attacker-debug", "ClusterRole", "cluster-admin", subj, 0, 0, ""),
		respBody: bindingObject("ClusterRoleBinding", "", "attacker-debug", "ClusterRole", "cluster-admin", subj,
			rv, t, "kubectl-create"),
	})

	// 4. The attacker uses cluster-admin.
	admin := *h
	admin.reason = `RBAC: allowed by ClusterRoleBinding "attacker-debug" of ClusterRole "cluster-admin" to User "attacker"`
	a := &admin.actor
	t += g.between(120e6, 400e6)
	t = g.do(t, &call{a: a, verb: "list", uri: rtSecrets.path("production", "", "") + "?limit=500", ref: rtSecrets.ref("production", "", "")}) + g.between(3e6, 20e6)
	t = g.do(t, &call{a: a, verb: "get", uri: rtSecrets.path("production", "important", ""), ref: rtSecrets.ref("production", "important", "")}) + g.between(5e6, 40e6)
	g.nextRV()
	t = g.do(t, &call{a: a, verb: "delete", uri: rtSecrets.path("production", "important", ""), ref: rtSecrets.ref("production", "important", ""),
		st: deleteStatus("important", "", "secrets", uidOf("secret", "production", "important"))}) + g.between(10e6, 60e6)
	t = g.do(t, &call{a: a, verb: "get", uri: rtPods.path("production", victim.name, ""), ref: rtPods.ref("production", victim.name, "")}) + g.between(2_000, 30_000)
	t = g.do(t, &call{a: a, verb: "create", code: 101, duration: g.between(60e6, 600e6),
		uri: rtPods.path("production", victim.name, "exec") + "?command=sh&container=app&stdin=true&stdout=true&tty=true",
		ref: rtPods.ref("production", victim.name, "exec")})
	t += g.between(5e6, 30e6)
	dbg := "debug-" + suffixOf(hashOf("debug", "incident"), 5)
	node := w.nodes[0].name
	rv = g.nextRV()
	t = g.do(t, &call{a: a, verb: "create", code: 201,
		uri:      rtPods.path("kube-system", "", "") + "?fieldManager=kubectl-run",
		ref:      rtPods.ref("kube-system", dbg, ""),
		reqBody:  debugPod("kube-system", dbg, node, 0, 0, true),
		respBody: debugPod("kube-system", dbg, node, rv, t, false),
		ann: []annotation{{"pod-security.kubernetes.io/enforce-policy", "privileged:latest"},
			{"pod-security.kubernetes.io/audit-violations", `would violate PodSecurity "restricted:latest": host namespaces (hostNetwork=true, hostPID=true), privileged (container "` + dbg + `" must not set securityContext.privileged=true), hostPath volumes (volume "host")`}},
	})
	g.nextRV()
	t = g.do(t+g.between(1e6, 5e6), &call{a: a, verb: "create", code: 101, duration: g.between(30e6, 300e6),
		uri: rtPods.path("kube-system", dbg, "attach") + "?container=" + dbg + "&stdin=true&stdout=true&tty=true",
		ref: rtPods.ref("kube-system", dbg, "attach")})

	// 5. The operator reuses its Audit-ID on two different requests.
	op := g.addonActor("payments-operator")
	id := g.uuid()
	t2 := g.do(at+g.between(1e6, 20e6), &call{a: op, verb: "get", auditID: id,
		uri: rtConfigMaps.path("payments", "payments-settings", ""), ref: rtConfigMaps.ref("payments", "payments-settings", "")})
	g.do(t2+g.between(10e6, 50e6), &call{a: op, verb: "list", auditID: id,
		uri: rtConfigMaps.path("payments", "", "") + "?limit=500", ref: rtConfigMaps.ref("payments", "", "")})

	// 6. Clean-up by admin.
	ad := w.humans[0]
	t += g.between(600e6, 1800e6)
	g.nextRV()
	t = g.do(t, &call{a: &ad.actor, verb: "create", code: 201, reason: "RBAC: allowed by " + ad.binding,
		uri: rtSecrets.path("production", "", "") + "?fieldManager=kubectl-create&fieldValidation=Strict",
		ref: rtSecrets.ref("production", "important", "")})
	g.nextRV()
	st := deleteStatus("attacker-debug", "rbac.authorization.k8s.io", "clusterrolebindings", uidOf("ClusterRoleBinding", "", "attacker-debug"))
	t = g.do(t+g.between(20e6, 120e6), &call{a: &ad.actor, verb: "delete", reason: "RBAC: allowed by " + ad.binding,
		uri: rtCRBs.path("", "attacker-debug", ""), ref: rtCRBs.ref("", "attacker-debug", ""),
		st: st, reqBody: deleteOptions("Background"), respBody: statusObject(st)})
	g.nextRV()
	g.do(t+g.between(5e6, 30e6), &call{a: &ad.actor, verb: "delete", reason: "RBAC: allowed by " + ad.binding,
		uri: rtPods.path("kube-system", dbg, ""), ref: rtPods.ref("kube-system", dbg, ""), reqBody: deleteOptions("Background"),
		respBody: debugPod("kube-system", dbg, node, g.rv, t, false)})
}
