package main

import (
	"fmt"
	"math/rand/v2"
	"strconv"
)

// The world is the simulated cluster: nodes, namespaces, workloads and the
// identities that talk to the API server. Everything in it derives from
// fixed hashes of names, so an object keeps its uid, pod IP and node across
// the whole corpus and across seeds; only the choice of requests depends on
// the seed.

// mix64 is the SplitMix64 finalizer: a cheap, well-spread integer hash.
func mix64(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// hashOf hashes strings with FNV-1a (with a separator) and mixes the result.
func hashOf(parts ...string) uint64 {
	h := uint64(14695981039346656037)
	for _, p := range parts {
		for i := 0; i < len(p); i++ {
			h ^= uint64(p[i])
			h *= 1099511628211
		}
		h ^= 0xff
		h *= 1099511628211
	}
	return mix64(h)
}

// appendUUID appends a UUIDv4 made of the 128 bits hi, lo.
func appendUUID(dst []byte, hi, lo uint64) []byte {
	var b [16]byte
	for i := 0; i < 8; i++ {
		b[i] = byte(hi >> (56 - 8*i))
		b[8+i] = byte(lo >> (56 - 8*i))
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	for i, x := range b {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			dst = append(dst, '-')
		}
		dst = append(dst, hexDigits[x>>4], hexDigits[x&0xf])
	}
	return dst
}

// uidOf is the stable object uid for a name.
func uidOf(parts ...string) string {
	h := hashOf(parts...)
	return string(appendUUID(nil, h, mix64(h^0x5bd1e995)))
}

// hexOf returns n hex digits derived from h.
func hexOf(h uint64, n int) string {
	b := make([]byte, n)
	x := h
	for i := range b {
		if i%16 == 0 {
			x = mix64(h + uint64(i))
		}
		b[i] = hexDigits[x&0xf]
		x >>= 4
	}
	return string(b)
}

// nameChars is the alphabet Kubernetes uses for generated name suffixes
// (k8s.io/apimachinery/pkg/util/rand): no vowels, no confusable digits.
const nameChars = "bcdfghjklmnpqrstvwxz2456789"

func suffixOf(h uint64, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = nameChars[h%uint64(len(nameChars))]
		h /= uint64(len(nameChars))
		if h == 0 {
			h = mix64(uint64(i) + 77)
		}
	}
	return string(b)
}

// table picks an index with probability proportional to integer weights.
// Integer weights keep the output identical on every platform.
type table struct {
	cum []uint64
}

func newTable(weights []uint64) table {
	t := table{cum: make([]uint64, len(weights))}
	var sum uint64
	for i, w := range weights {
		sum += w
		t.cum[i] = sum
	}
	if sum == 0 {
		panic("BUG: table with zero total weight")
	}
	return t
}

// zipfTable weights rank k by 1/(k+q): a Zipf law with exponent 1, a few
// heavy ranks and a long tail.
func zipfTable(n int, q uint64) table {
	w := make([]uint64, n)
	for k := range w {
		w[k] = 1_000_000_000 / (uint64(k) + q)
	}
	return newTable(w)
}

func (t table) pick(r *rand.Rand) int {
	x := r.Uint64N(t.cum[len(t.cum)-1])
	lo, hi := 0, len(t.cum)-1
	for lo < hi {
		m := (lo + hi) / 2
		if t.cum[m] > x {
			hi = m
		} else {
			lo = m + 1
		}
	}
	return lo
}

// Versions and build commits in user agents. The commits are made up.
const (
	k8sVersion = "v1.37.2"
	k8sCommit  = "3f7c1a9"
	oldVersion = "v1.36.4" // the last nodes are still on the previous minor
	oldCommit  = "b52e8d0"
)

const numNodes = 24

type node struct {
	name string
	uid  string
	ip   string
	// kubelet is the node's client identity (x509, Node authorizer).
	kubelet *actor
}

type namespace struct {
	name string
	apps []string // head of the app-name pool for this namespace
}

type deployment struct {
	ns, name string
	uid      string
	rsHash   string // pod-template-hash of the current ReplicaSet
	image    string
	replicas int
	gen      int64
}

type pod struct {
	dep  *deployment
	name string
	uid  string
	node int
	ip   string
}

type podKey struct{ ns, app, idx int }
type depKey struct{ ns, app int }

// world holds the cluster model. It is built once per run.
type world struct {
	nodes      []node
	namespaces []namespace
	nsTable    table // Zipf over namespaces (production first)
	appTable   table // Zipf over app ranks within a namespace
	podTable   table // skew over replicas within an app
	objTable   table // Zipf over configmap/secret names

	deps map[depKey]*deployment
	pods map[podKey]*pod

	kcm        *actor
	apiserver  *actor
	scheduler  *actor
	controller map[string]*actor // kube-system/<name> controller service accounts
	anonymous  *actor
	probe      *actor // kube-probe from the nodes' kubelets, system:anonymous
	lbCheck    *actor // load balancer health check, no user agent
	addons     []*addon
	humans     []*human
	humanTable table
	attacker   *human
}

// addon is a service account running in pods (one actor per replica).
type addon struct {
	ns, name string
	replicas []*actor
	reason   string
}

// human is a person using kubectl.
type human struct {
	actor
	name string
	// role decides what RBAC allows: "admin" (cluster-admin), "edit" (edit
	// except in production and kube-system, view there), "view" (view
	// everywhere) or "attacker" (view in default only).
	role string
	// binding describes the binding that grants the role, for the reason.
	binding string
	// peers: the user's own address, and whether they sometimes come through
	// the corporate proxy (then sourceIPs has two entries).
	proxy bool
	spdy  bool // old kubectl: exec/attach/portforward use SPDY (verb create)
}

var genericApps = []string{
	"web", "api", "worker", "frontend", "backend", "cache", "gateway", "auth",
	"cart", "checkout", "search", "notifier", "orders", "inventory", "billing",
	"recommender", "mailer", "reports", "ledger", "profile", "media", "pricing",
	"shipping", "catalog",
}

var namespaceHeads = []namespace{
	{name: "production"},
	{name: "default"},
	{name: "staging"},
	{name: "payments", apps: []string{"payments-api", "payments-worker", "fraud-check", "ledger", "payments-operator"}},
	{name: "checkout"},
	{name: "monitoring", apps: []string{"prometheus-operator", "grafana", "alertmanager-main", "kube-state-metrics", "blackbox-exporter", "prometheus-adapter"}},
	{name: "kube-system", apps: []string{"coredns", "metrics-server", "cilium-operator", "snapshot-controller", "csi-controller"}},
	{name: "ingress-nginx", apps: []string{"ingress-nginx-controller", "default-backend"}},
	{name: "search"},
	{name: "argocd", apps: []string{"argocd-server", "argocd-repo-server", "argocd-redis", "argocd-dex-server", "argocd-applicationset-controller"}},
	{name: "cert-manager", apps: []string{"cert-manager", "cert-manager-cainjector", "cert-manager-webhook"}},
	{name: "logging", apps: []string{"loki-gateway", "loki-read", "loki-write", "vector-aggregator"}},
	{name: "data-platform"},
	{name: "ml-serving"},
	{name: "team-alpha"},
	{name: "team-bravo"},
	{name: "team-charlie"},
	{name: "team-delta"},
}

const (
	numTailNamespaces = 150
	appsPerNamespace  = 200
	podsPerApp        = 8
	objectNames       = 120
)

func newWorld() *world {
	w := &world{
		deps:       map[depKey]*deployment{},
		pods:       map[podKey]*pod{},
		controller: map[string]*actor{},
	}
	for i := 1; i <= numNodes; i++ {
		name := fmt.Sprintf("node-%02d", i)
		version, commit, arch := k8sVersion, k8sCommit, "amd64"
		if i > 20 {
			version, commit, arch = oldVersion, oldCommit, "arm64"
		}
		n := node{name: name, uid: uidOf("node", name), ip: "10.0.1." + strconv.Itoa(10+i)}
		n.kubelet = &actor{
			class: classKubelet,
			user: &userInfo{
				username: "system:node:" + name,
				groups:   []string{"system:nodes", "system:authenticated"},
				extra:    []extraValue{{extraCredentialID, []string{"X509SHA256=" + hexOf(hashOf("kubelet-cert", name), 64)}}},
			},
			ua: "kubelet/" + version + " (linux/" + arch + ") kubernetes/" + commit,
			ip: n.ip,
			// The Node authorizer allows kubelets and gives no reason.
		}
		w.nodes = append(w.nodes, n)
	}

	w.namespaces = append(w.namespaces, namespaceHeads...)
	for i := 1; i <= numTailNamespaces; i++ {
		w.namespaces = append(w.namespaces, namespace{name: fmt.Sprintf("tenant-%03d", i)})
	}
	w.nsTable = zipfTable(len(w.namespaces), 2)
	w.appTable = zipfTable(appsPerNamespace, 1)
	w.podTable = zipfTable(podsPerApp, 2)
	w.objTable = zipfTable(objectNames, 1)

	cp := w.nodes[0].ip // the control-plane components run on node-01
	x509 := func(name string) []extraValue {
		return []extraValue{{extraCredentialID, []string{"X509SHA256=" + hexOf(hashOf("cert", name), 64)}}}
	}
	w.kcm = &actor{
		class:  classController,
		user:   &userInfo{username: "system:kube-controller-manager", groups: []string{"system:authenticated"}, extra: x509("kcm")},
		ua:     "kube-controller-manager/" + k8sVersion + " (linux/amd64) kubernetes/" + k8sCommit,
		ip:     cp,
		reason: `RBAC: allowed by ClusterRoleBinding "system:kube-controller-manager" of ClusterRole "system:kube-controller-manager" to User "system:kube-controller-manager"`,
	}
	w.apiserver = &actor{
		class: classController,
		user: &userInfo{
			username: "system:apiserver",
			uid:      uidOf("apiserver-identity", "node-01"),
			groups:   []string{"system:authenticated", "system:masters"},
		},
		ua: "kube-apiserver/" + k8sVersion + " (linux/amd64) kubernetes/" + k8sCommit,
		ip: "::1",
	}
	w.scheduler = &actor{
		class:  classScheduler,
		user:   &userInfo{username: "system:kube-scheduler", groups: []string{"system:authenticated"}, extra: x509("scheduler")},
		ua:     "kube-scheduler/" + k8sVersion + " (linux/amd64) kubernetes/" + k8sCommit + "/scheduler",
		ip:     cp,
		reason: `RBAC: allowed by ClusterRoleBinding "system:kube-scheduler" of ClusterRole "system:kube-scheduler" to User "system:kube-scheduler"`,
	}
	for _, c := range []string{
		"endpointslice-controller", "endpoint-controller", "replicaset-controller",
		"deployment-controller", "node-controller", "namespace-controller",
		"job-controller", "cronjob-controller", "generic-garbage-collector",
		"resourcequota-controller", "statefulset-controller", "daemon-set-controller",
		"horizontal-pod-autoscaler", "root-ca-cert-publisher", "endpointslicemirroring-controller",
		"disruption-controller", "ttl-after-finished-controller",
	} {
		w.controller[c] = &actor{
			class: classController,
			user: &userInfo{
				username: "system:serviceaccount:kube-system:" + c,
				uid:      uidOf("serviceaccount", "kube-system", c),
				groups:   []string{"system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"},
				extra:    []extraValue{{extraCredentialID, []string{"JTI=" + uidOf("jti", c)}}},
			},
			ua:     "kube-controller-manager/" + k8sVersion + " (linux/amd64) kubernetes/" + k8sCommit + "/system:serviceaccount:kube-system:" + c,
			ip:     cp,
			reason: `RBAC: allowed by ClusterRoleBinding "system:controller:` + c + `" of ClusterRole "system:controller:` + c + `" to ServiceAccount "` + c + `/kube-system"`,
		}
	}
	anon := &userInfo{username: "system:anonymous", groups: []string{"system:unauthenticated"}}
	public := `RBAC: allowed by ClusterRoleBinding "system:public-info-viewer" of ClusterRole "system:public-info-viewer" to Group "system:unauthenticated"`
	w.anonymous = &actor{class: classAnonymous, user: anon, ip: "192.168.1.100"}
	w.probe = &actor{class: classAnonymous, user: anon, ua: "kube-probe/1.37", ip: cp, reason: public}
	w.lbCheck = &actor{class: classAnonymous, user: anon, ip: "10.0.0.4", reason: public}

	w.addons = []*addon{
		w.newAddon("kube-system", "kube-proxy", "kube-proxy/"+k8sVersion+" (linux/amd64) kubernetes/"+k8sCommit, numNodes, true,
			`RBAC: allowed by ClusterRoleBinding "kubeadm:node-proxier" of ClusterRole "system:node-proxier" to ServiceAccount "kube-proxy/kube-system"`),
		w.newAddon("kube-system", "coredns", "coredns/v0.0.0 (linux/amd64) kubernetes/$Format", 2, false,
			`RBAC: allowed by ClusterRoleBinding "system:coredns" of ClusterRole "system:coredns" to ServiceAccount "coredns/kube-system"`),
		w.newAddon("monitoring", "prometheus-k8s", "Prometheus/3.5.0", 2, false,
			`RBAC: allowed by ClusterRoleBinding "prometheus-k8s" of ClusterRole "prometheus-k8s" to ServiceAccount "prometheus-k8s/monitoring"`),
		w.newAddon("argocd", "argocd-application-controller", "argocd-application-controller/v0.0.0 (linux/amd64) kubernetes/$Format", 1, false,
			`RBAC: allowed by ClusterRoleBinding "argocd-application-controller" of ClusterRole "argocd-application-controller" to ServiceAccount "argocd-application-controller/argocd"`),
		w.newAddon("cert-manager", "cert-manager", "cert-manager-controller/v1.18.2 (linux/amd64) cert-manager/8d9e1f0", 1, false,
			`RBAC: allowed by RoleBinding "cert-manager:leaderelection/kube-system" of Role "cert-manager:leaderelection" to ServiceAccount "cert-manager/cert-manager"`),
		w.newAddon("ingress-nginx", "ingress-nginx", "nginx-ingress-controller/v1.13.1 (linux/amd64) ingress-nginx/4b1e5c7", 2, false,
			`RBAC: allowed by ClusterRoleBinding "ingress-nginx" of ClusterRole "ingress-nginx" to ServiceAccount "ingress-nginx/ingress-nginx"`),
		w.newAddon("kube-system", "metrics-server", "metrics-server/v0.8.0 (linux/amd64) kubernetes/$Format", 1, false,
			`RBAC: allowed by ClusterRoleBinding "metrics-server:system:auth-delegator" of ClusterRole "system:auth-delegator" to ServiceAccount "metrics-server/kube-system"`),
		w.newAddon("payments", "payments-operator", "manager/v0.0.0 (linux/amd64) kubernetes/$Format", 1, false,
			`RBAC: allowed by ClusterRoleBinding "payments-operator" of ClusterRole "payments-operator" to ServiceAccount "payments-operator/payments"`),
	}

	type hdef struct {
		name, role, binding string
		groups              []string
		x509                bool
		ua, ip              string
		proxy, spdy         bool
		weight              uint64
	}
	defs := []hdef{
		{"admin", "admin", `ClusterRoleBinding "kubeadm:cluster-admins" of ClusterRole "cluster-admin" to Group "kubeadm:cluster-admins"`,
			[]string{"kubeadm:cluster-admins", "system:authenticated"}, true, "kubectl/v1.37.2 (linux/amd64) kubernetes/" + k8sCommit, "10.0.0.2", false, false, 300},
		{"alice", "admin", `ClusterRoleBinding "platform-team-admin" of ClusterRole "cluster-admin" to Group "platform-team"`,
			[]string{"platform-team", "system:authenticated"}, false, "kubectl/v1.36.1 (darwin/arm64) kubernetes/9c04e1b", "10.20.3.14", true, false, 240},
		{"bob", "edit", `Group "developers"`,
			[]string{"developers", "system:authenticated"}, false, "kubectl/v1.32.4 (linux/amd64) kubernetes/59526cd", "10.20.7.31", true, false, 160},
		{"carol", "edit", `Group "developers"`,
			[]string{"developers", "system:authenticated"}, false, "kubectl/v1.35.3 (windows/amd64) kubernetes/d1e2f07", "10.20.7.52", true, false, 90},
		{"dave", "admin", `ClusterRoleBinding "sre-admin" of ClusterRole "cluster-admin" to Group "sre"`,
			[]string{"sre", "system:authenticated"}, false, "kubectl/v1.37.2 (linux/arm64) kubernetes/" + k8sCommit, "10.20.9.8", false, false, 70},
		{"erin", "edit", `Group "developers"`,
			[]string{"developers", "system:authenticated"}, false, "kubectl/v1.29.6 (linux/amd64) kubernetes/7a8c6d5", "10.20.7.77", true, true, 50},
		{"frank", "edit", `Group "developers"`,
			[]string{"developers", "system:authenticated"}, false, "kubectl/v1.34.2 (darwin/amd64) kubernetes/2e9b4c1", "10.20.8.3", true, false, 30},
		{"grace", "view", `ClusterRoleBinding "auditors-view" of ClusterRole "view" to Group "auditors"`,
			[]string{"auditors", "system:authenticated"}, false, "kubectl/v1.37.2 (darwin/arm64) kubernetes/" + k8sCommit, "10.20.4.21", true, false, 20},
		{"heidi", "view", `ClusterRoleBinding "auditors-view" of ClusterRole "view" to Group "auditors"`,
			[]string{"auditors", "system:authenticated"}, false, "kubectl/v1.33.5 (linux/amd64) kubernetes/c6a1f3e", "10.20.4.40", false, false, 15},
		{"attacker", "attacker", `RoleBinding "attacker-view/default" of ClusterRole "view" to User "attacker"`,
			[]string{"system:authenticated"}, false, "kubectl/v1.29.0 (linux/amd64) kubernetes/3f7ea43", "192.168.1.100", false, true, 10},
	}
	weights := make([]uint64, len(defs))
	for i, d := range defs {
		u := &userInfo{username: d.name, groups: d.groups}
		if d.x509 {
			u.extra = []extraValue{{extraCredentialID, []string{"X509SHA256=" + hexOf(hashOf("user-cert", d.name), 64)}}}
		}
		h := &human{
			actor:   actor{class: classHuman, user: u, ua: d.ua, ip: d.ip},
			name:    d.name,
			role:    d.role,
			binding: d.binding,
			proxy:   d.proxy,
			spdy:    d.spdy,
		}
		w.humans = append(w.humans, h)
		weights[i] = d.weight
		if d.name == "attacker" {
			w.attacker = h
		}
	}
	w.humanTable = newTable(weights)
	return w
}

func (w *world) newAddon(ns, name, ua string, replicas int, hostNetwork bool, reason string) *addon {
	a := &addon{ns: ns, name: name, reason: reason}
	for i := 0; i < replicas; i++ {
		h := hashOf("addon-pod", ns, name, strconv.Itoa(i))
		ni := 3 + int(h%uint64(numNodes-3))
		if replicas == numNodes {
			ni = i
		}
		n := &w.nodes[ni]
		podName := name + "-" + suffixOf(h, 5)
		if replicas < numNodes {
			podName = name + "-" + suffixOf(h>>20, 10) + "-" + suffixOf(h, 5)
		}
		ip := n.ip
		if !hostNetwork {
			ip = podIP(ni, h)
		}
		a.replicas = append(a.replicas, &actor{
			class: classServiceAccount,
			user: &userInfo{
				username: "system:serviceaccount:" + ns + ":" + name,
				uid:      uidOf("serviceaccount", ns, name),
				groups:   []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"},
				extra: []extraValue{
					{extraCredentialID, []string{"JTI=" + uidOf("jti", ns, podName)}},
					{extraNodeName, []string{n.name}},
					{extraNodeUID, []string{n.uid}},
					{extraPodName, []string{podName}},
					{extraPodUID, []string{uidOf("pod", ns, podName)}},
				},
			},
			ua:     ua,
			ip:     ip,
			reason: reason,
		})
	}
	return a
}

// podIP is an address in the pod CIDR of node index n (node-NN has
// 10.244.NN.0/24).
func podIP(n int, h uint64) string {
	return "10.244." + strconv.Itoa(n+1) + "." + strconv.Itoa(2+int(h%250))
}

// appName is the name of the app with rank k in namespace ns.
func (w *world) appName(ns, k int) string {
	head := w.namespaces[ns].apps
	if head == nil {
		head = genericApps
	}
	if k < len(head) {
		return head[k]
	}
	return "app-" + strconv.Itoa(k)
}

func (w *world) deployment(ns, app int) *deployment {
	if d, ok := w.deps[depKey{ns, app}]; ok {
		return d
	}
	nsName, name := w.namespaces[ns].name, w.appName(ns, app)
	h := hashOf("deployment", nsName, name)
	d := &deployment{
		ns:       nsName,
		name:     name,
		uid:      uidOf("deployment", nsName, name),
		rsHash:   suffixOf(h, 10),
		image:    "registry.example.com/" + nsName + "/" + name + ":1." + strconv.Itoa(int(h%30)) + "." + strconv.Itoa(int(h>>8%10)),
		replicas: 1 + int(h>>16%5),
		gen:      1 + int64(h>>24%40),
	}
	w.deps[depKey{ns, app}] = d
	return d
}

func (w *world) pod(ns, app, idx int) *pod {
	if p, ok := w.pods[podKey{ns, app, idx}]; ok {
		return p
	}
	d := w.deployment(ns, app)
	h := hashOf("pod", d.ns, d.name, strconv.Itoa(idx))
	p := &pod{dep: d, name: d.name + "-" + d.rsHash + "-" + suffixOf(h, 5), node: 3 + int(h%uint64(numNodes-3))}
	p.uid = uidOf("pod", d.ns, p.name)
	p.ip = podIP(p.node, h>>12)
	w.pods[podKey{ns, app, idx}] = p
	return p
}

// randomPod picks a pod with skew over namespace, app and replica.
func (w *world) randomPod(r *rand.Rand) *pod {
	return w.pod(w.nsTable.pick(r), w.appTable.pick(r), w.podTable.pick(r))
}

func (w *world) randomDeployment(r *rand.Rand) *deployment {
	return w.deployment(w.nsTable.pick(r), w.appTable.pick(r))
}

func (w *world) randomNamespace(r *rand.Rand) string {
	return w.namespaces[w.nsTable.pick(r)].name
}

var configMapHeads = []string{
	"kube-root-ca.crt", "app-config", "feature-flags", "nginx-conf", "settings",
	"istio-ca-root-cert", "logging-config", "env", "cluster-info", "dashboards",
}

var secretHeads = []string{
	"db-credentials", "tls-cert", "api-token", "registry-pull-secret",
	"oauth-client-secret", "smtp-password", "sh.helm.release.v1.web.v7", "jwt-signing-key",
}

// configMapName picks a configmap name: a few dominate, then a long tail.
func (w *world) configMapName(r *rand.Rand) string {
	k := w.objTable.pick(r)
	if k < len(configMapHeads) {
		return configMapHeads[k]
	}
	return "config-" + strconv.Itoa(k)
}

// secretName picks a secret name. The secret "important" exists only in
// production, where it is the most-used secret.
func (w *world) secretName(r *rand.Rand, ns string) string {
	k := w.objTable.pick(r)
	if ns == "production" {
		if k == 0 {
			return "important"
		}
		k--
	}
	if k < len(secretHeads) {
		return secretHeads[k]
	}
	return "secret-" + strconv.Itoa(k)
}

// authorize decides a human's request like the RBAC setup described on
// human.role, and returns the reason annotation for an allow.
func (h *human) authorize(verb, resource, subresource, ns string) (bool, string) {
	read := (verb == "get" || verb == "list" || verb == "watch") &&
		(subresource == "" || subresource == "log" || subresource == "status")
	rbac := resource == "roles" || resource == "rolebindings" || resource == "clusterroles" || resource == "clusterrolebindings"
	switch h.role {
	case "admin":
		return true, "RBAC: allowed by " + h.binding
	case "view":
		if read && resource != "secrets" {
			return true, "RBAC: allowed by " + h.binding
		}
	case "edit":
		if ns == "" || rbac {
			return false, ""
		}
		if ns == "production" || ns == "kube-system" {
			if read && resource != "secrets" {
				return true, `RBAC: allowed by RoleBinding "developers-view/` + ns + `" of ClusterRole "view" to Group "developers"`
			}
			return false, ""
		}
		return true, `RBAC: allowed by RoleBinding "developers-edit/` + ns + `" of ClusterRole "edit" to Group "developers"`
	case "attacker":
		if ns == "default" && read && resource != "secrets" {
			return true, "RBAC: allowed by " + h.binding
		}
	}
	return false, ""
}
