package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
)

// rbacManifest gives alice the run of secrets, configmaps and pods in
// production, and impersonator the right to act as any user or group.
const rbacManifest = `apiVersion: v1
kind: ServiceAccount
metadata:
  name: default
  namespace: production
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: alice-edit
  namespace: production
rules:
  - apiGroups: [""]
    resources: ["secrets", "configmaps", "pods"]
    verbs: ["get", "list", "watch", "create", "update", "patch", "delete"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: alice-edit
  namespace: production
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: alice-edit
subjects:
  - apiGroup: rbac.authorization.k8s.io
    kind: User
    name: alice
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: impersonate-all
rules:
  - apiGroups: [""]
    resources: ["users", "groups"]
    verbs: ["impersonate"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: impersonator
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: impersonate-all
subjects:
  - apiGroup: rbac.authorization.k8s.io
    kind: User
    name: impersonator
`

// runScenario drives the API server with the real kubectl the way people
// would, producing the events an investigator asks about: a secret deleted
// in production, a forbidden list, impersonation, an exec attempt and an
// unauthenticated request.
func runScenario(t *testing.T, c *cluster) {
	t.Helper()
	start := time.Now()

	c.kubectl(t, userAdmin, "create", "namespace", "production")
	// No controller-manager runs, so the namespace's default ServiceAccount
	// (which a pod needs) is created here, with the RBAC objects.
	c.kubectlIn(t, userAdmin, rbacManifest, "apply", "-f", "-")
	// RBAC decisions come from an informer cache; wait until it has the
	// new bindings so that the requests below are decided as intended.
	c.waitCanI(t, userAlice, "delete", "secrets", "-n", "production")
	c.waitCanI(t, userImpersonator, "impersonate", "users")

	c.kubectl(t, userAlice, "create", "secret", "generic", "important", "-n", "production",
		"--from-literal=password=hunter2")
	c.kubectl(t, userAlice, "get", "secret", "important", "-n", "production", "-o", "name")
	c.kubectl(t, userAlice, "create", "configmap", "settings", "-n", "production",
		"--from-literal=mode=strict")
	c.kubectl(t, userAlice, "get", "configmaps", "-n", "production")
	c.kubectl(t, userAlice, "delete", "configmap", "settings", "-n", "production")
	c.kubectl(t, userAlice, "delete", "secret", "important", "-n", "production")

	c.kubectlFails(t, userBob, "Forbidden", "get", "secrets", "-n", "production")

	c.kubectl(t, userAdmin, "get", "pods", "-n", "production", "--as", userAlice)
	c.kubectl(t, userImpersonator, "get", "configmaps", "-n", "production", "--as", userAlice)

	// No kubelet runs: the pod stays Pending and exec cannot reach it, but
	// the attempt is authorized and audited.
	c.kubectl(t, userAdmin, "run", "web", "-n", "production", "--restart=Never",
		"--image=registry.example/web:1.0")
	c.kubectlFails(t, userAdmin, "", "exec", "web", "-n", "production", "--", "cat", "/etc/shadow")

	c.kubectlFails(t, userMallory, "Unauthorized", "get", "pods", "-n", "production")

	c.kubectl(t, userAdmin, "delete", "namespace", "production", "--wait=false")
	t.Logf("scenario ran in %s", time.Since(start).Round(time.Millisecond))
}

// assertScenarioEvents checks that the events of runScenario that an
// investigator would look for are in events.
func assertScenarioEvents(t *testing.T, name string, events []event) {
	t.Helper()
	type want struct {
		what  string
		match func(e event) bool
	}
	// The API server names the object in objectRef for create too, and
	// gives a namespace its own name as objectRef.namespace on delete.
	obj := func(e event, verb, resource, ns, objName string) bool {
		return e.str("verb") == verb && e.str("objectRef.resource") == resource &&
			e.str("objectRef.namespace") == ns && e.str("objectRef.name") == objName
	}
	done := func(e event) bool { return e.str("stage") == "ResponseComplete" }
	wants := []want{
		{"admin creates namespace production (201)", func(e event) bool {
			return done(e) && e.str("user.username") == userAdmin &&
				obj(e, "create", "namespaces", "", "production") && e.code() == 201 &&
				e.str("responseObject.metadata.name") == "production"
		}},
		{"alice creates secret important in production (201), without its body", func(e event) bool {
			return done(e) && e.str("user.username") == userAlice &&
				obj(e, "create", "secrets", "production", "important") && e.code() == 201 &&
				e.get("requestObject") == nil && e.get("responseObject") == nil
		}},
		{"alice gets secret important in production (200)", func(e event) bool {
			return done(e) && e.str("user.username") == userAlice &&
				obj(e, "get", "secrets", "production", "important") && e.code() == 200
		}},
		{"alice deletes secret important in production (200)", func(e event) bool {
			return done(e) && e.str("user.username") == userAlice &&
				obj(e, "delete", "secrets", "production", "important") && e.code() == 200
		}},
		{"alice deletes configmap settings in production (200)", func(e event) bool {
			return done(e) && e.str("user.username") == userAlice &&
				obj(e, "delete", "configmaps", "production", "settings") && e.code() == 200
		}},
		{"bob is forbidden to list secrets in production (403)", func(e event) bool {
			return done(e) && e.str("user.username") == userBob &&
				obj(e, "list", "secrets", "production", "") && e.code() == 403 &&
				e.annotation("authorization.k8s.io/decision") == "forbid"
		}},
		{"admin lists pods in production impersonating alice", func(e event) bool {
			return done(e) && e.str("user.username") == userAdmin &&
				e.str("impersonatedUser.username") == userAlice &&
				obj(e, "list", "pods", "production", "") && e.code() == 200
		}},
		{"impersonator lists configmaps in production impersonating alice", func(e event) bool {
			return done(e) && e.str("user.username") == userImpersonator &&
				e.str("impersonatedUser.username") == userAlice &&
				obj(e, "list", "configmaps", "production", "") && e.code() == 200
		}},
		{"admin creates pod web in production (201), with its body", func(e event) bool {
			return done(e) && e.str("user.username") == userAdmin &&
				obj(e, "create", "pods", "production", "web") && e.code() == 201 &&
				e.str("requestObject.metadata.name") == "web"
		}},
		{"admin attempts exec into pod web in production", func(e event) bool {
			return e.str("user.username") == userAdmin &&
				(e.str("verb") == "create" || e.str("verb") == "get") &&
				e.str("objectRef.resource") == "pods" && e.str("objectRef.subresource") == "exec" &&
				e.str("objectRef.namespace") == "production" && e.str("objectRef.name") == "web"
		}},
		{"an unauthenticated request is rejected (401, no username)", func(e event) bool {
			return e.code() == 401 && e.str("user.username") == ""
		}},
		{"admin deletes namespace production", func(e event) bool {
			return done(e) && e.str("user.username") == userAdmin &&
				obj(e, "delete", "namespaces", "production", "production") && e.code() == 200
		}},
	}
	for _, w := range wants {
		if i := slices.IndexFunc(events, w.match); i < 0 {
			t.Errorf("%s: no event for %q", name, w.what)
		} else {
			t.Logf("%s: found %q: %s", name, w.what, events[i].summary())
		}
	}
}

// kubectl runs kubectl as user and fails the test if it fails.
func (c *cluster) kubectl(t *testing.T, user string, args ...string) string {
	t.Helper()
	out, err := c.runKubectl(t, user, "", args...)
	if err != nil {
		t.Fatalf("kubectl %s (as %s): %v\n%s", strings.Join(args, " "), user, err, out)
	}
	return out
}

// kubectlIn is kubectl with stdin.
func (c *cluster) kubectlIn(t *testing.T, user, stdin string, args ...string) string {
	t.Helper()
	out, err := c.runKubectl(t, user, stdin, args...)
	if err != nil {
		t.Fatalf("kubectl %s (as %s): %v\n%s", strings.Join(args, " "), user, err, out)
	}
	return out
}

// kubectlFails runs kubectl as user and fails the test unless kubectl
// fails with output containing wantErr.
func (c *cluster) kubectlFails(t *testing.T, user, wantErr string, args ...string) {
	t.Helper()
	out, err := c.runKubectl(t, user, "", args...)
	if err == nil {
		t.Fatalf("kubectl %s (as %s) succeeded, want an error containing %q:\n%s",
			strings.Join(args, " "), user, wantErr, out)
	}
	if !strings.Contains(out, wantErr) {
		t.Fatalf("kubectl %s (as %s): %v, want an error containing %q:\n%s",
			strings.Join(args, " "), user, err, wantErr, out)
	}
	t.Logf("kubectl %s (as %s) failed as expected: %s", strings.Join(args, " "), user, lastLine(out))
}

// waitCanI polls `kubectl auth can-i` as user until the answer is yes.
func (c *cluster) waitCanI(t *testing.T, user string, args ...string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := c.runKubectl(t, user, "", append([]string{"auth", "can-i"}, args...)...)
		if err == nil && strings.TrimSpace(out) == "yes" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still cannot %s after 30s: %v %s", user, strings.Join(args, " "), err, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (c *cluster) runKubectl(t *testing.T, user, stdin string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	full := append([]string{"--kubeconfig=" + c.kubeconfigs[user], "--request-timeout=30s"}, args...)
	cmd := exec.CommandContext(ctx, c.kubectlBin, full...)
	// A HOME of its own keeps kubectl's discovery cache out of the real one.
	cmd.Env = append(os.Environ(), "HOME="+c.kubectlHome, "KUBECONFIG=")
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("%w (%v)", err, ctx.Err())
	}
	return out.String(), err
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}
