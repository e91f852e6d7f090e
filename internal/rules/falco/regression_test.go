package falco

import (
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// Falco's repository kept a k8s-audit regression suite: trace files of
// audit events, Falco's k8s audit rules, and the number of alerts Falco
// gives per rule. This is its equivalent, rebuilt from Falco's rule
// conditions and the k8saudit plugin's documented fields: the fixtures in
// testdata/k8saudit are audit.k8s.io events written for these tests, and
// each expected count below says why Falco gives it. Falco's default
// rule_matching is "first": an event raises at most one alert, from the
// first rule in file order that matches, so an event by a user outside
// allowed_k8s_users raises only "Disallowed K8s User" (the file's first
// rule) whatever else it does; most fixtures use kubernetes-admin, an
// allowed user, to reach the later rules.
func TestFalcoRegression(t *testing.T) {
	rulesFile := falcoRulesFile(t)
	cases := []struct {
		file  string
		first map[string]int
		// all is the count with rule_matching: all, where given.
		all map[string]int
	}{{
		// alice (not allowed) creates a namespace: Disallowed K8s User.
		// minikube-user, eks:node-manager, system:node:n1 (system: users
		// are excluded), vpa-recommender (in a list nested in
		// allowed_k8s_users) and cluster-autoscaler (a bare list item)
		// raise nothing.
		file:  "users.jsonl",
		first: map[string]int{"Disallowed K8s User": 1},
	}, {
		// foo is not in allowed_namespaces: Create Disallowed Namespace
		// comes before K8s Namespace Created, so it is the one alert;
		// kube-public is allowed: K8s Namespace Created. Deleting foo:
		// K8s Namespace Deleted; deleting by a system: service account:
		// nothing (non_system_user).
		file:  "namespaces.jsonl",
		first: map[string]int{"Create Disallowed Namespace": 1, "K8s Namespace Created": 1, "K8s Namespace Deleted": 1},
		all:   map[string]int{"Create Disallowed Namespace": 1, "K8s Namespace Created": 2, "K8s Namespace Deleted": 1},
	}, {
		// Privileged: the only container; the SECOND container (the first
		// has no securityContext, so the list is just ["true"]); a falco
		// image beside a privileged busybox (in needs EVERY repository
		// in k8s_audit_privileged_images, so the exception does not
		// apply); an init container. Not: falco alone (trusted), and
		// privileged: false ("false" does not intersect (true)).
		file:  "privileged.jsonl",
		first: map[string]int{"Create Privileged Pod": 4},
	}, {
		// hostNetwork: nginx; the second container of a pod whose first is
		// the trusted gke.gcr.io/kube-proxy (not every image trusted); not
		// kube-proxy alone, not hostNetwork: false. hostPID and hostIPC:
		// their image lists are empty, so "not ... in ()" holds.
		file:  "hostnetwork.jsonl",
		first: map[string]int{"Create HostNetwork Pod": 2, "Create HostPid Pod": 1, "Create HostIPC Pod": 1},
	}, {
		// /etc after an emptyDir volume (which adds no hostpath value),
		// and /var/run/docker.sock; not /data (not sensitive), not /proc
		// for docker.io/datadog/agent (a trusted image).
		file:  "mounts.jsonl",
		first: map[string]int{"Create Sensitive Mount Pod": 2},
	}, {
		// Pods in kube-system and kube-public with nginx; not the
		// allowed registry.k8s.io/kube-apiserver, not in default. The
		// service account evil in kube-system; coredns there is trusted,
		// so it falls through to K8s Serviceaccount Created, as does app
		// in default; deleting app: K8s Serviceaccount Deleted.
		file: "kube_namespace.jsonl",
		first: map[string]int{"Pod Created in Kube Namespace": 2, "Service Account Created in Kube Namespace": 1,
			"K8s Serviceaccount Created": 2, "K8s Serviceaccount Deleted": 1},
	}, {
		// Six creates whose data holds aws_access_key_id,
		// aws-access-key-id, aws_s3_access_key_id, aws-s3-access-key-id,
		// "password" (in db-password) and passphrase; a plain one (K8s
		// ConfigMap Created); an update with only PASSWORD (contains is
		// case-sensitive: nothing); a delete. With rule_matching: all
		// every create is also K8s ConfigMap Created.
		file:  "configmaps.jsonl",
		first: map[string]int{"Create/Modify Configmap With Private Credentials": 6, "K8s ConfigMap Created": 1, "K8s ConfigMap Deleted": 1},
		all:   map[string]int{"Create/Modify Configmap With Private Credentials": 6, "K8s ConfigMap Created": 7, "K8s ConfigMap Deleted": 1},
	}, {
		// Attach/Exec Pod looks at ResponseStarted only (kevt_started),
		// for create or get: alice's exec, kubernetes-admin's exec as a
		// get (WebSocket) and an attach. alice's exec at ResponseComplete
		// is Disallowed K8s User; the admin's is nothing. port-forward
		// has no stage condition: both of its events. Patching
		// ephemeralcontainers: EphemeralContainers Created.
		file: "exec.jsonl",
		first: map[string]int{"Attach/Exec Pod": 3, "Disallowed K8s User": 1, "port-forward": 2,
			"EphemeralContainers Created": 1},
	}, {
		// A binding to cluster-admin: Attach to cluster-admin Role (first),
		// also K8s ClusterRoleBinding Created with all. Wildcard: "*" in
		// resources, and "*" in one rule's verbs. Write: update among
		// the verbs. Pod exec: pods/exec with get. A read-only role:
		// K8s ClusterRole Created. system:aggregate-extra deleted: System
		// ClusterRole Modified/Deleted; system:coredns updated: excluded,
		// and no other rule looks at updates.
		file: "rbac.jsonl",
		first: map[string]int{"Attach to cluster-admin Role": 1, "K8s ClusterRoleBinding Created": 1,
			"K8s ClusterRoleBinding Deleted": 1, "K8s RoleBinding Created": 1, "K8s RoleBinding Deleted": 1,
			"ClusterRole With Wildcard Created": 2, "ClusterRole With Write Privileges Created": 1,
			"ClusterRole With Pod Exec Created": 1, "K8s ClusterRole Created": 1, "K8s Role Created": 1,
			"K8s Role Deleted": 1, "K8s ClusterRole Deleted": 1, "System ClusterRole Modified/Deleted": 1},
		all: map[string]int{"Attach to cluster-admin Role": 1, "K8s ClusterRoleBinding Created": 2,
			"K8s ClusterRoleBinding Deleted": 1, "K8s RoleBinding Created": 1, "K8s RoleBinding Deleted": 1,
			"ClusterRole With Wildcard Created": 2, "ClusterRole With Write Privileges Created": 1,
			"ClusterRole With Pod Exec Created": 1, "K8s ClusterRole Created": 5, "K8s Role Created": 1,
			"K8s Role Deleted": 1, "K8s ClusterRole Deleted": 2, "System ClusterRole Modified/Deleted": 1},
	}, {
		// Deployments: created (also by a system: controller, since the
		// activity rules do not exclude system users), a 403 create
		// (response_successful fails), deleted. Services: ClusterIP
		// created, NodePort (Create NodePort Service first), deleted.
		// Secrets: created in default (not kube-system), deleted, read
		// twice (any user, any namespace), read with 403. An ingress
		// without tls; not one with tls. A node joining: nothing
		// (allow_all_k8s_nodes). system:anonymous allowed to get a pod:
		// Anonymous Request Allowed; not /healthz, /readyz?verbose, or a
		// forbidden request.
		file: "activity.jsonl",
		first: map[string]int{"K8s Deployment Created": 2, "K8s Deployment Deleted": 1, "K8s Service Created": 1,
			"Create NodePort Service": 1, "K8s Service Deleted": 1, "K8s Secret Created": 1, "K8s Secret Deleted": 1,
			"K8s Secret Get Successfully": 2, "K8s Secret Get Unsuccessfully Tried": 1,
			"Ingress Object without TLS Certificate Created": 1, "Anonymous Request Allowed": 1},
	}, {
		// An event without apiVersion and a v1beta1 event are read like
		// any other: alice twice, and a disallowed namespace.
		file:  "versions.jsonl",
		first: map[string]int{"Disallowed K8s User": 2, "Create Disallowed Namespace": 1},
	}, {
		// Not audit events (a Pod manifest, an application log line):
		// the decoder rejects both, Falco's plugin too; no alert.
		file:  "not_audit.jsonl",
		first: map[string]int{},
	}}
	first := loadOK(t, Options{}, rulesFile)
	all := loadOK(t, Options{Matching: MatchAll}, rulesFile)
	for _, tc := range cases {
		t.Run(tc.file, func(t *testing.T) {
			evs, bad := decodeFile(t, filepath.Join("testdata", "k8saudit", tc.file))
			if tc.file == "not_audit.jsonl" {
				if len(evs) != 0 || len(bad) != 2 {
					t.Fatalf("decoded %d events and %d problems, want 0 and 2", len(evs), len(bad))
				}
			} else if len(bad) > 0 {
				t.Fatalf("fixture has a bad event: %s", bad[0])
			}
			count := func(ev *Evaluator) map[string]int {
				got := map[string]int{}
				for _, e := range evs {
					alerts := ev.Eval(e)
					if ev.matching == MatchFirst && len(alerts) > 1 {
						t.Errorf("rule_matching first gave %d alerts for one event", len(alerts))
					}
					for _, a := range alerts {
						got[a.Rule]++
					}
				}
				return got
			}
			if diff := cmp.Diff(tc.first, count(first)); diff != "" {
				t.Errorf("alerts per rule, rule_matching first (-want +got):\n%s", diff)
			}
			if tc.all != nil {
				if diff := cmp.Diff(tc.all, count(all)); diff != "" {
					t.Errorf("alerts per rule, rule_matching all (-want +got):\n%s", diff)
				}
			}
		})
	}
}
