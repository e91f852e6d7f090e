package main

import (
	"strconv"
	"strings"
	"time"
)

// Request and response bodies, written the way the API server serializes
// objects: kind and apiVersion first, then Go struct field order, map keys
// sorted, zero values omitted where the API types say omitempty. Patches
// sent by kubectl and the kubelet come from Go maps, so their keys are
// sorted too.

// rfc3339 formats a metav1.Time: seconds precision, UTC.
func rfc3339(us int64) string {
	return time.UnixMicro(us).UTC().Format(time.RFC3339)
}

// managed is one metadata.managedFields entry.
type managed struct {
	manager, operation, apiVersion string
	at                             int64
	fields                         string // fieldsV1, compact JSON
	subresource                    string
}

// meta is the subset of ObjectMeta the corpus uses.
type meta struct {
	name, generateName, namespace, uid string
	rv                                 int64
	generation                         int64
	created                            int64 // µs; 0 omits creationTimestamp
	deleted                            int64 // µs; 0 omits deletionTimestamp
	grace                              int64
	labels                             []string // sorted key, value pairs
	annotations                        []string // sorted key, value pairs
	owner                              *owner
	managed                            []managed
}

type owner struct{ apiVersion, kind, name, uid string }

func (j *jb) meta(m *meta) *jb {
	j.kobj("metadata")
	if m.name != "" {
		j.kstr("name", m.name)
	}
	if m.generateName != "" {
		j.kstr("generateName", m.generateName)
	}
	if m.namespace != "" {
		j.kstr("namespace", m.namespace)
	}
	if m.uid != "" {
		j.kstr("uid", m.uid)
	}
	if m.rv != 0 {
		j.kstr("resourceVersion", strconv.FormatInt(m.rv, 10))
	}
	if m.generation != 0 {
		j.knum("generation", m.generation)
	}
	if m.created != 0 {
		j.kstr("creationTimestamp", rfc3339(m.created))
	}
	if m.deleted != 0 {
		j.kstr("deletionTimestamp", rfc3339(m.deleted))
		j.knum("deletionGracePeriodSeconds", m.grace)
	}
	if len(m.labels) > 0 {
		j.kmap("labels", m.labels...)
	}
	if len(m.annotations) > 0 {
		j.kmap("annotations", m.annotations...)
	}
	if o := m.owner; o != nil {
		j.karr("ownerReferences").open().
			kstr("apiVersion", o.apiVersion).kstr("kind", o.kind).kstr("name", o.name).kstr("uid", o.uid).
			kbool("controller", true).kbool("blockOwnerDeletion", true).close().closeArr()
	}
	if len(m.managed) > 0 {
		j.karr("managedFields")
		for _, f := range m.managed {
			j.open().kstr("manager", f.manager).kstr("operation", f.operation).kstr("apiVersion", f.apiVersion).
				kstr("time", rfc3339(f.at)).kstr("fieldsType", "FieldsV1").key("fieldsV1").raw(f.fields)
			if f.subresource != "" {
				j.kstr("subresource", f.subresource)
			}
			j.close()
		}
		j.closeArr()
	}
	return j.close()
}

func newBody(kind, apiVersion string) *jb {
	j := &jb{b: make([]byte, 0, 2048)}
	return j.open().kstr("kind", kind).kstr("apiVersion", apiVersion)
}

func (j *jb) done() []byte { j.close(); return j.b }

// ---- Deployments ----

// lastApplied is kubectl's last-applied-configuration annotation: the
// manifest as kubectl marshalled it from a map (sorted keys), plus "\n".
func lastApplied(d *deployment, replicas int, image string) string {
	j := &jb{}
	j.open().kstr("apiVersion", "apps/v1").kstr("kind", "Deployment").
		kobj("metadata").kobj("annotations").close().kmap("labels", "app", d.name).
		kstr("name", d.name).kstr("namespace", d.ns).close().
		kobj("spec").knum("replicas", int64(replicas)).
		kobj("selector").kmap("matchLabels", "app", d.name).close().
		kobj("template").kobj("metadata").kmap("labels", "app", d.name).close().
		kobj("spec").karr("containers").open().kstr("image", image).kstr("name", "app").
		karr("ports").open().knum("containerPort", 8080).kstr("name", "http").close().closeArr().
		kobj("readinessProbe").kobj("httpGet").kstr("path", "/healthz").knum("port", 8080).close().close().
		kobj("resources").kmap("limits", "memory", "256Mi").kmap("requests", "cpu", "100m", "memory", "128Mi").close().
		close().closeArr().close().close().close().close()
	return string(j.b) + "\n"
}

// containerSpec writes the app container with the API defaults filled in:
// the API server defaults objects while decoding, so even request bodies
// carry them.
// mount, when set, is the service account token volume that admission
// added.
func (j *jb) containerSpec(image, mount string) *jb {
	j.open().kstr("name", "app").kstr("image", image).
		karr("ports").open().kstr("name", "http").knum("containerPort", 8080).kstr("protocol", "TCP").close().closeArr().
		kobj("resources").kmap("limits", "memory", "256Mi").kmap("requests", "cpu", "100m", "memory", "128Mi").close()
	if mount != "" {
		j.karr("volumeMounts").open().kstr("name", mount).kbool("readOnly", true).
			kstr("mountPath", "/var/run/secrets/kubernetes.io/serviceaccount").close().closeArr()
	}
	return j.kobj("readinessProbe").kobj("httpGet").kstr("path", "/healthz").knum("port", 8080).kstr("scheme", "HTTP").close().
		knum("timeoutSeconds", 1).knum("periodSeconds", 10).knum("successThreshold", 1).knum("failureThreshold", 3).close().
		kstr("terminationMessagePath", "/dev/termination-log").kstr("terminationMessagePolicy", "File").
		kstr("imagePullPolicy", "IfNotPresent").close()
}

func (j *jb) deploymentSpec(d *deployment, replicas int, image string) *jb {
	return j.kobj("spec").knum("replicas", int64(replicas)).
		kobj("selector").kmap("matchLabels", "app", d.name).close().
		kobj("template").kobj("metadata").kmap("labels", "app", d.name).close().
		kobj("spec").karr("containers").containerSpec(image, "").closeArr().
		kstr("restartPolicy", "Always").knum("terminationGracePeriodSeconds", 30).kstr("dnsPolicy", "ClusterFirst").
		kobj("securityContext").close().kstr("schedulerName", "default-scheduler").close().close().
		kobj("strategy").kstr("type", "RollingUpdate").kobj("rollingUpdate").kstr("maxUnavailable", "25%").kstr("maxSurge", "25%").close().close().
		knum("revisionHistoryLimit", 10).knum("progressDeadlineSeconds", 600).close()
}

// deploymentRequest is a Deployment as kubectl create/apply sends it, as the
// API server records it (decoded, so defaulted).
func deploymentRequest(d *deployment, replicas int, image string) []byte {
	j := newBody("Deployment", "apps/v1")
	j.meta(&meta{name: d.name, namespace: d.ns, labels: []string{"app", d.name},
		annotations: []string{"kubectl.kubernetes.io/last-applied-configuration", lastApplied(d, replicas, image)}})
	j.deploymentSpec(d, replicas, image).kobj("status").close()
	return j.done()
}

// deploymentObject is a stored Deployment as the API server returns it,
// defaults filled in and managedFields kept.
func deploymentObject(d *deployment, rv int64, created, updated int64, replicas int, image string, extraAnn []string) []byte {
	j := newBody("Deployment", "apps/v1")
	ann := []string{
		"deployment.kubernetes.io/revision", strconv.FormatInt(d.gen, 10),
		"kubectl.kubernetes.io/last-applied-configuration", lastApplied(d, replicas, image),
	}
	ann = append(ann, extraAnn...)
	j.meta(&meta{
		name: d.name, namespace: d.ns, uid: d.uid, rv: rv, generation: d.gen, created: created,
		labels: []string{"app", d.name}, annotations: ann,
		managed: []managed{
			{manager: "kubectl-client-side-apply", operation: "Update", apiVersion: "apps/v1", at: updated,
				fields: `{"f:metadata":{"f:annotations":{".":{},"f:kubectl.kubernetes.io/last-applied-configuration":{}},"f:labels":{".":{},"f:app":{}}},"f:spec":{"f:progressDeadlineSeconds":{},"f:replicas":{},"f:revisionHistoryLimit":{},"f:selector":{},"f:strategy":{"f:rollingUpdate":{".":{},"f:maxSurge":{},"f:maxUnavailable":{}},"f:type":{}},"f:template":{"f:metadata":{"f:labels":{".":{},"f:app":{}}},"f:spec":{"f:containers":{"k:{\"name\":\"app\"}":{".":{},"f:image":{},"f:imagePullPolicy":{},"f:name":{},"f:ports":{".":{},"k:{\"containerPort\":8080,\"protocol\":\"TCP\"}":{".":{},"f:containerPort":{},"f:name":{},"f:protocol":{}}},"f:readinessProbe":{".":{},"f:failureThreshold":{},"f:httpGet":{".":{},"f:path":{},"f:port":{},"f:scheme":{}},"f:periodSeconds":{},"f:successThreshold":{},"f:timeoutSeconds":{}},"f:resources":{".":{},"f:limits":{".":{},"f:memory":{}},"f:requests":{".":{},"f:cpu":{},"f:memory":{}}},"f:terminationMessagePath":{},"f:terminationMessagePolicy":{}}},"f:dnsPolicy":{},"f:restartPolicy":{},"f:schedulerName":{},"f:securityContext":{},"f:terminationGracePeriodSeconds":{}}}}}`},
			{manager: "kube-controller-manager", operation: "Update", apiVersion: "apps/v1", at: created + 2_000_000, subresource: "status",
				fields: `{"f:metadata":{"f:annotations":{"f:deployment.kubernetes.io/revision":{}}},"f:status":{"f:availableReplicas":{},"f:conditions":{".":{},"k:{\"type\":\"Available\"}":{".":{},"f:lastTransitionTime":{},"f:lastUpdateTime":{},"f:message":{},"f:reason":{},"f:status":{},"f:type":{}},"k:{\"type\":\"Progressing\"}":{".":{},"f:lastTransitionTime":{},"f:lastUpdateTime":{},"f:message":{},"f:reason":{},"f:status":{},"f:type":{}}},"f:observedGeneration":{},"f:readyReplicas":{},"f:replicas":{},"f:updatedReplicas":{}}}`},
		},
	})
	j.deploymentSpec(d, replicas, image)
	rs := d.name + "-" + d.rsHash
	j.kobj("status").knum("observedGeneration", d.gen-1).knum("replicas", int64(d.replicas)).
		knum("updatedReplicas", int64(d.replicas)).knum("readyReplicas", int64(d.replicas)).knum("availableReplicas", int64(d.replicas)).
		karr("conditions").
		open().kstr("type", "Available").kstr("status", "True").kstr("lastUpdateTime", rfc3339(created+30e6)).
		kstr("lastTransitionTime", rfc3339(created+30e6)).kstr("reason", "MinimumReplicasAvailable").
		kstr("message", "Deployment has minimum availability.").close().
		open().kstr("type", "Progressing").kstr("status", "True").kstr("lastUpdateTime", rfc3339(updated)).
		kstr("lastTransitionTime", rfc3339(created)).kstr("reason", "NewReplicaSetAvailable").
		kstr("message", `ReplicaSet "`+rs+`" has successfully progressed.`).close().
		closeArr().close()
	return j.done()
}

// applyPatch is the strategic merge patch kubectl apply sends for an image
// change.
func applyPatch(d *deployment, replicas int, image string) []byte {
	j := &jb{}
	j.open().kobj("metadata").kmap("annotations", "kubectl.kubernetes.io/last-applied-configuration", lastApplied(d, replicas, image)).close().
		kobj("spec").kobj("template").kobj("spec").
		karr("$setElementOrder/containers").open().kstr("name", "app").close().closeArr().
		karr("containers").open().kstr("image", image).kstr("name", "app").close().closeArr().
		close().close().close().close()
	return j.b
}

func restartPatch(at int64) []byte {
	j := &jb{}
	j.open().kobj("spec").kobj("template").kobj("metadata").
		kmap("annotations", "kubectl.kubernetes.io/restartedAt", rfc3339(at)).close().close().close().close()
	return j.b
}

func scalePatch(replicas int) []byte {
	j := &jb{}
	j.open().kobj("spec").knum("replicas", int64(replicas)).close().close()
	return j.b
}

func scaleObject(d *deployment, rv, created int64, replicas int) []byte {
	j := newBody("Scale", "autoscaling/v1")
	j.meta(&meta{name: d.name, namespace: d.ns, uid: d.uid, rv: rv, created: created})
	j.kobj("spec").knum("replicas", int64(replicas)).close().
		kobj("status").knum("replicas", int64(d.replicas)).kstr("selector", "app="+d.name).close()
	return j.done()
}

// argoPatch is the merge patch Argo CD sends when it syncs replicas and
// its tracking annotation.
func argoPatch(d *deployment, replicas int) []byte {
	j := &jb{}
	j.open().kobj("metadata").kmap("annotations", "argocd.argoproj.io/tracking-id", d.ns+":apps/Deployment:"+d.ns+"/"+d.name).close().
		kobj("spec").knum("replicas", int64(replicas)).close().close()
	return j.b
}

// ---- ConfigMaps ----

func configMapData(name string, h uint64) []string {
	switch h % 3 {
	case 0:
		return []string{
			"config.yaml", "server:\n  port: 8080\n  readTimeout: 15s\nfeatures:\n  newCheckout: " + strconv.FormatBool(h%2 == 0) + "\n  maxItems: " + strconv.Itoa(int(h%500)) + "\n",
			"log.level", []string{"info", "debug", "warn"}[h%3],
		}
	case 1:
		return []string{
			"index.html", "<!doctype html>\n<html><body><h1>" + name + "</h1><p>Terms & conditions apply.</p></body></html>\n",
			"nginx.conf", "server {\n  listen 8080;\n  location / {\n    root /usr/share/nginx/html;\n    add_header X-Frame-Options \"DENY\";\n  }\n}\n",
		}
	default:
		return []string{
			"DATABASE_HOST", "postgres." + name + ".svc.cluster.local",
			"FEATURE_FLAGS", `{"beta":true,"regions":["eu-west-1","us-east-1"]}`,
			"TIMEOUT", strconv.Itoa(int(5 + h%55)),
		}
	}
}

func configMapRequest(ns, name string, h uint64) []byte {
	j := newBody("ConfigMap", "v1")
	j.meta(&meta{name: name, namespace: ns})
	j.kmap("data", configMapData(name, h)...)
	return j.done()
}

func configMapObject(ns, name string, h uint64, rv, created, updated int64, manager string) []byte {
	j := newBody("ConfigMap", "v1")
	data := configMapData(name, h)
	fields := &jb{}
	fields.open().kobj("f:data").kobj(".").close()
	for i := 0; i < len(data); i += 2 {
		fields.kobj("f:" + data[i]).close()
	}
	fields.close().close()
	j.meta(&meta{name: name, namespace: ns, uid: uidOf("configmap", ns, name), rv: rv, created: created,
		managed: []managed{{manager: manager, operation: "Update", apiVersion: "v1", at: updated, fields: string(fields.b)}}})
	j.kmap("data", data...)
	return j.done()
}

func configMapPatch(name string, h uint64) []byte {
	data := configMapData(name, h+1)
	j := &jb{}
	j.open().kmap("data", data[:2]...).close()
	return j.b
}

// ---- Pods ----

// podObject is a Pod created by the replicaset controller. request=true
// gives the object the controller sends (no name, no service account
// volume: admission adds it); otherwise the stored object.
func podObject(p *pod, request bool, rv, created, deleted int64) []byte {
	d := p.dep
	rs := d.name + "-" + d.rsHash
	m := &meta{
		generateName: rs + "-", namespace: d.ns,
		labels: []string{"app", d.name, "pod-template-hash", d.rsHash},
		owner:  &owner{apiVersion: "apps/v1", kind: "ReplicaSet", name: rs, uid: uidOf("replicaset", d.ns, rs)},
	}
	vol := "kube-api-access-" + suffixOf(hashOf("vol", p.name), 5)
	if !request {
		m.name, m.uid, m.rv, m.created = p.name, p.uid, rv, created
		if deleted != 0 {
			m.deleted, m.grace = deleted, 30
		}
		m.managed = []managed{{manager: "kube-controller-manager", operation: "Update", apiVersion: "v1", at: created,
			fields: `{"f:metadata":{"f:generateName":{},"f:labels":{".":{},"f:app":{},"f:pod-template-hash":{}},"f:ownerReferences":{".":{},"k:{\"uid\":\"` + m.owner.uid + `\"}":{}}},"f:spec":{"f:containers":{"k:{\"name\":\"app\"}":{".":{},"f:image":{},"f:imagePullPolicy":{},"f:name":{},"f:ports":{".":{},"k:{\"containerPort\":8080,\"protocol\":\"TCP\"}":{".":{},"f:containerPort":{},"f:name":{},"f:protocol":{}}},"f:resources":{".":{},"f:limits":{".":{},"f:memory":{}},"f:requests":{".":{},"f:cpu":{},"f:memory":{}}},"f:terminationMessagePath":{},"f:terminationMessagePolicy":{}}},"f:dnsPolicy":{},"f:enableServiceLinks":{},"f:restartPolicy":{},"f:schedulerName":{},"f:securityContext":{},"f:terminationGracePeriodSeconds":{}}}`}}
	}
	j := newBody("Pod", "v1")
	j.meta(m)
	j.kobj("spec")
	if !request {
		j.karr("volumes").open().kstr("name", vol).kobj("projected").karr("sources").
			open().kobj("serviceAccountToken").knum("expirationSeconds", 3607).kstr("path", "token").close().close().
			open().kobj("configMap").kstr("name", "kube-root-ca.crt").karr("items").open().kstr("key", "ca.crt").kstr("path", "ca.crt").close().closeArr().close().close().
			open().kobj("downwardAPI").karr("items").open().kstr("path", "namespace").kobj("fieldRef").kstr("apiVersion", "v1").kstr("fieldPath", "metadata.namespace").close().close().closeArr().close().close().
			closeArr().knum("defaultMode", 420).close().close().closeArr()
	}
	mount := vol
	if request {
		mount = ""
	}
	j.karr("containers").containerSpec(d.image, mount).closeArr().
		kstr("restartPolicy", "Always").knum("terminationGracePeriodSeconds", 30).kstr("dnsPolicy", "ClusterFirst")
	if !request {
		j.kstr("serviceAccountName", "default").kstr("serviceAccount", "default")
		if deleted != 0 {
			j.kstr("nodeName", "node-"+twoDigits(p.node+1))
		}
	}
	j.kobj("securityContext").close().kstr("schedulerName", "default-scheduler")
	if !request {
		j.karr("tolerations").
			open().kstr("key", "node.kubernetes.io/not-ready").kstr("operator", "Exists").kstr("effect", "NoExecute").knum("tolerationSeconds", 300).close().
			open().kstr("key", "node.kubernetes.io/unreachable").kstr("operator", "Exists").kstr("effect", "NoExecute").knum("tolerationSeconds", 300).close().
			closeArr().knum("priority", 0).kbool("enableServiceLinks", true).kstr("preemptionPolicy", "PreemptLowerPriority")
	} else {
		j.kbool("enableServiceLinks", true)
	}
	j.close().kobj("status")
	if !request {
		if deleted != 0 {
			j.kstr("phase", "Running").kstr("hostIP", "10.0.1."+strconv.Itoa(11+p.node)).kstr("podIP", p.ip).
				kstr("startTime", rfc3339(created+1e6))
		} else {
			j.kstr("phase", "Pending")
		}
		j.kstr("qosClass", "Burstable")
	}
	j.close()
	return j.done()
}

func twoDigits(n int) string {
	if n < 10 {
		return "0" + strconv.Itoa(n)
	}
	return strconv.Itoa(n)
}

// debugPod is the privileged pod with the node's root filesystem mounted
// that the attacker creates.
func debugPod(ns, name, node string, rv, created int64, request bool) []byte {
	j := newBody("Pod", "v1")
	m := &meta{name: name, namespace: ns, labels: []string{"run", name}}
	if !request {
		m.uid, m.rv, m.created = uidOf("pod", ns, name), rv, created
		m.managed = []managed{{manager: "kubectl-run", operation: "Update", apiVersion: "v1", at: created,
			fields: `{"f:metadata":{"f:labels":{".":{},"f:run":{}}},"f:spec":{"f:containers":{"k:{\"name\":\"` + name + `\"}":{".":{},"f:command":{},"f:image":{},"f:imagePullPolicy":{},"f:name":{},"f:securityContext":{".":{},"f:privileged":{}},"f:stdin":{},"f:tty":{},"f:volumeMounts":{".":{},"k:{\"mountPath\":\"/host\"}":{".":{},"f:mountPath":{},"f:name":{}}}}},"f:hostNetwork":{},"f:hostPID":{},"f:nodeName":{},"f:volumes":{".":{},"k:{\"name\":\"host\"}":{".":{},"f:hostPath":{".":{},"f:path":{},"f:type":{}},"f:name":{}}}}}`}}
	}
	j.meta(m)
	j.kobj("spec").karr("volumes").open().kstr("name", "host").kobj("hostPath").kstr("path", "/").kstr("type", "").close().close().closeArr().
		karr("containers").open().kstr("name", name).kstr("image", "alpine:3.22").kstrs("command", "nsenter", "--mount=/proc/1/ns/mnt", "--", "/bin/sh").
		kobj("resources").close().
		karr("volumeMounts").open().kstr("name", "host").kstr("mountPath", "/host").close().closeArr().
		kstr("terminationMessagePath", "/dev/termination-log").kstr("terminationMessagePolicy", "File").
		kstr("imagePullPolicy", "IfNotPresent").kobj("securityContext").kbool("privileged", true).close().
		kbool("stdin", true).kbool("tty", true).close().closeArr().
		kstr("restartPolicy", "Never").knum("terminationGracePeriodSeconds", 30).kstr("dnsPolicy", "ClusterFirst")
	if !request {
		j.kstr("serviceAccountName", "default").kstr("serviceAccount", "default")
	}
	j.kstr("nodeName", node).kbool("hostNetwork", true).kbool("hostPID", true).
		kobj("securityContext").close().kstr("schedulerName", "default-scheduler")
	if !request {
		j.karr("tolerations").
			open().kstr("key", "node.kubernetes.io/not-ready").kstr("operator", "Exists").kstr("effect", "NoExecute").knum("tolerationSeconds", 300).close().
			open().kstr("key", "node.kubernetes.io/unreachable").kstr("operator", "Exists").kstr("effect", "NoExecute").knum("tolerationSeconds", 300).close().
			closeArr().knum("priority", 0)
	}
	j.kbool("enableServiceLinks", true)
	if !request {
		j.kstr("preemptionPolicy", "PreemptLowerPriority")
	}
	j.close()
	j.kobj("status")
	if !request {
		j.kstr("phase", "Pending").kstr("qosClass", "BestEffort")
	}
	j.close()
	return j.done()
}

// podStatusPatch is the strategic merge patch the kubelet sends for a
// container becoming ready or restarting.
func podStatusPatch(p *pod, at int64, h uint64) []byte {
	j := &jb{b: make([]byte, 0, 1536)}
	ready := h%5 != 0
	restarts := int64(h >> 8 % 4)
	if h%7 != 0 {
		restarts = 0
	}
	started := at - int64(h>>12%3600)*1e6
	j.open().kobj("metadata").kstr("uid", p.uid).close().kobj("status").
		karr("$setElementOrder/conditions").
		open().kstr("type", "PodReadyToStartContainers").close().
		open().kstr("type", "Initialized").close().
		open().kstr("type", "Ready").close().
		open().kstr("type", "ContainersReady").close().
		open().kstr("type", "PodScheduled").close().closeArr().
		karr("conditions").
		condition("Ready", rfc3339(at-int64(h%900e6)), ready).
		condition("ContainersReady", rfc3339(at-int64(h%900e6)), ready).closeArr().
		karr("containerStatuses").open().
		kobj("allocatedResources").kstr("cpu", "100m").kstr("memory", "128Mi").close().
		kstr("containerID", "containerd://"+hexOf(hashOf("ctr", p.name, strconv.FormatInt(restarts, 10)), 64)).
		kstr("image", p.dep.image).
		kstr("imageID", strings.SplitN(p.dep.image, ":", 2)[0]+"@sha256:"+hexOf(hashOf("img", p.dep.image), 64)).
		kobj("lastState")
	if restarts > 0 {
		j.kobj("terminated").kstr("containerID", "containerd://"+hexOf(hashOf("ctr", p.name, strconv.FormatInt(restarts-1, 10)), 64)).
			knum("exitCode", 137).kstr("finishedAt", rfc3339(started-2e6)).kstr("reason", "OOMKilled").
			kstr("startedAt", rfc3339(started-600e6)).close()
	}
	j.close().kstr("name", "app").kbool("ready", ready).
		kobj("resources").kmap("limits", "memory", "256Mi").kmap("requests", "cpu", "100m", "memory", "128Mi").close().
		knum("restartCount", restarts).kbool("started", true).
		kobj("state").kobj("running").kstr("startedAt", rfc3339(started)).close().close().
		karr("volumeMounts").open().kstr("mountPath", "/var/run/secrets/kubernetes.io/serviceaccount").
		kstr("name", "kube-api-access-"+suffixOf(hashOf("vol", p.name), 5)).kbool("readOnly", true).
		kstr("recursiveReadOnly", "Disabled").close().closeArr().
		close().closeArr().close().close()
	return j.b
}

// condition writes a pod condition as a patch map (sorted keys).
func (j *jb) condition(typ, at string, ok bool) *jb {
	j.open().kstr("lastTransitionTime", at)
	if !ok {
		j.kstr("message", "containers with unready status: [app]").kstr("reason", "ContainersNotReady").kstr("status", "False")
	} else {
		j.kstr("status", "True")
	}
	return j.kstr("type", typ).close()
}

// ---- RBAC ----

type subject struct{ kind, name, namespace string }

func bindingObject(kind, ns, name, roleKind, role string, subjects []subject, rv, created int64, manager string) []byte {
	j := newBody(kind, "rbac.authorization.k8s.io/v1")
	m := &meta{name: name, namespace: ns}
	if rv != 0 {
		m.uid, m.rv, m.created = uidOf(kind, ns, name), rv, created
		m.managed = []managed{{manager: manager, operation: "Update", apiVersion: "rbac.authorization.k8s.io/v1", at: created,
			fields: `{"f:roleRef":{},"f:subjects":{}}`}}
	}
	j.meta(m)
	j.karr("subjects")
	for _, s := range subjects {
		j.open().kstr("kind", s.kind)
		if s.kind != "ServiceAccount" {
			j.kstr("apiGroup", "rbac.authorization.k8s.io")
		}
		j.kstr("name", s.name)
		if s.namespace != "" {
			j.kstr("namespace", s.namespace)
		}
		j.close()
	}
	j.closeArr().kobj("roleRef").kstr("apiGroup", "rbac.authorization.k8s.io").kstr("kind", roleKind).kstr("name", role).close()
	return j.done()
}

type rule struct{ verbs, groups, resources []string }

func roleObject(kind, ns, name string, rules []rule, rv, created int64, manager string) []byte {
	j := newBody(kind, "rbac.authorization.k8s.io/v1")
	m := &meta{name: name, namespace: ns}
	if rv != 0 {
		m.uid, m.rv, m.created = uidOf(kind, ns, name), rv, created
		m.managed = []managed{{manager: manager, operation: "Update", apiVersion: "rbac.authorization.k8s.io/v1", at: created,
			fields: `{"f:rules":{}}`}}
	}
	j.meta(m)
	j.karr("rules")
	for _, r := range rules {
		j.open().kstrs("verbs", r.verbs...).kstrs("apiGroups", r.groups...).kstrs("resources", r.resources...).close()
	}
	j.closeArr()
	return j.done()
}

// ---- Deletes ----

func deleteOptions(policy string) []byte {
	j := newBody("DeleteOptions", "v1")
	j.kstr("propagationPolicy", policy)
	return j.done()
}

// deleteStatus is what the generic registry returns for a delete of a
// resource that does not return the deleted object.
func deleteStatus(name, group, kind, uid string) *status {
	return &status{status: "Success", details: &statusDetails{name: name, group: group, kind: kind, uid: uid}}
}

func statusObject(s *status) []byte {
	j := newBody("Status", "v1")
	j.kobj("metadata").close().kstr("status", s.status)
	if d := s.details; d != nil {
		j.kobj("details")
		if d.name != "" {
			j.kstr("name", d.name)
		}
		if d.group != "" {
			j.kstr("group", d.group)
		}
		if d.kind != "" {
			j.kstr("kind", d.kind)
		}
		if d.uid != "" {
			j.kstr("uid", d.uid)
		}
		j.close()
	}
	return j.done()
}
