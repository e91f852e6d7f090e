package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// chartDir is the Helm chart that must render what `setup deploy` prints.
const chartDir = "../../deploy/helm/kubetrail"

// deployNamespace is the namespace the test creates, as a user would.
const deployNamespace = "kubetrail"

// TestDeployManifestsOnRealAPIServer: the objects `kubetrail setup deploy`
// prints and those the Helm chart renders (with Helm's own engine, see
// helmrender/) are the same, with the defaults and with every setting
// changed, and as ClickHouse collectors (whose settings both validate the
// same way); both are accepted by the real API server with `kubectl apply
// --dry-run=server` (schema, strict field validation and admission) into a
// namespace created first; the server's pod meets the "restricted" Pod
// Security level and only the collector, for its hostPath volumes and its
// root user, does not; there is no RBAC object, nothing outside the
// namespace, and the security contexts say what docs/deploy.md promises.
// The ServiceMonitor is applied once a minimal CRD for it is installed.
// Two broken copies (a misspelled field, an invalid name) are refused, so
// the dry run is known to validate.
func TestDeployManifestsOnRealAPIServer(t *testing.T) {
	requireClusterDeps(t)
	bin := kubetrailBinary(t)
	render := helmRenderBinary(t)
	c := startCluster(t, clusterConfig{})

	c.kubectl(t, userAdmin, "create", "namespace", deployNamespace)
	// warn (not enforce): the API server says which level each pod
	// template breaks, and still accepts it.
	c.kubectl(t, userAdmin, "label", "namespace", deployNamespace, "pod-security.kubernetes.io/warn=restricted")

	configs := []struct {
		name   string
		flags  []string
		values string // Helm values, JSON
	}{
		{name: "defaults"},
		{
			name: "every setting",
			flags: []string{"--image", "registry.example/kubetrail:v1.2.3", "--storage-class", "fast-ssd",
				"--storage-size", "100Gi", "--service-monitor", "--allow-from", "10.0.0.0/24", "--allow-from", "fd00::/64"},
			values: `{"image": "registry.example/kubetrail:v1.2.3", "storage": {"className": "fast-ssd", "sizeGi": 100},
				"serviceMonitor": {"enabled": true}, "allowFrom": ["10.0.0.0/24", "fd00::/64"]}`,
		},
		{
			// ClickHouse collectors: three, a user's password from the
			// Secret's file, the spool bound from the volume's size.
			name:   "clickhouse collectors",
			flags:  []string{"--clickhouse", chDeployURL, "--replicas", "3", "--storage-size", "50Gi"},
			values: `{"clickhouse": {"url": "` + chDeployURL + `"}, "replicas": 3, "storage": {"sizeGi": 50}}`,
		},
	}
	for i, cfg := range configs {
		args := append([]string{"setup", "deploy", "--namespace", deployNamespace}, cfg.flags...)
		deployYAML := runOut(t, bin, args...)
		deployObjs := listItems(t, runOut(t, bin, append(args, "-o", "json")...))
		helmArgs := []string{chartDir, deployNamespace}
		if cfg.values != "" {
			v := filepath.Join(t.TempDir(), "values.json")
			writeFile(t, v, cfg.values)
			helmArgs = append(helmArgs, v)
		}
		helmYAML := runOut(t, render, helmArgs...)
		helmObjs := listItems(t, runOut(t, render, append([]string{"-json"}, helmArgs...)...))

		if d := cmp.Diff(byKindName(deployObjs), byKindName(helmObjs)); d != "" {
			t.Errorf("%s: the Helm chart and setup deploy differ (-setup deploy +helm):\n%s", cfg.name, d)
		}
		checkDeployObjects(t, cfg.name, deployObjs)
		checkDeployObjects(t, cfg.name+" (helm)", helmObjs)
		if cfg.name == "clickhouse collectors" {
			checkClickHouseServer(t, deployObjs)
			checkClickHouseServer(t, helmObjs)
		}

		if i == 1 {
			installServiceMonitorCRD(t, c)
		}
		for _, m := range []struct{ what, yaml string }{{"setup deploy", deployYAML}, {"helm", helmYAML}} {
			out := c.kubectlIn(t, userAdmin, m.yaml, "apply", "--dry-run=server", "-f", "-")
			checkDryRun(t, cfg.name+", "+m.what, out, deployObjs)
		}
	}

	// Settings both refuse, each naming its flag or value: a password in
	// the ClickHouse URL (it would be in the pod's arguments), a scheme,
	// several servers on the embedded store.
	for _, bad := range []struct{ flags, values, flagErr, valueErr string }{
		{`--clickhouse=clickhouse://bob:s3cret@ch/k`, `{"clickhouse": {"url": "clickhouse://bob:s3cret@ch/k"}}`,
			`--clickhouse "clickhouse://bob:xxxxx@ch/k": a password in the URL`, `clickhouse.url: a password in the URL`},
		{`--clickhouse=http://ch/k`, `{"clickhouse": {"url": "http://ch/k"}}`, `--clickhouse "http://ch/k": want clickhouse://`, `clickhouse.url "http://ch/k": want clickhouse://`},
		{`--replicas=2`, `{"replicas": 2}`, `--replicas 2: want 1, or more with --clickhouse`, `replicas 2: want 1, or more with clickhouse.url`},
	} {
		out, err := exec.Command(bin, "setup", "deploy", bad.flags).CombinedOutput()
		if err == nil || !strings.Contains(string(out), bad.flagErr) || strings.Contains(string(out), "s3cret") {
			t.Errorf("setup deploy %s: %v, %s; want an error with %q", bad.flags, err, out, bad.flagErr)
		}
		v := filepath.Join(t.TempDir(), "values.json")
		writeFile(t, v, bad.values)
		out, err = exec.Command(render, chartDir, deployNamespace, v).CombinedOutput()
		if err == nil || !strings.Contains(string(out), bad.valueErr) || strings.Contains(string(out), "s3cret") {
			t.Errorf("helm %s: %v, %s; want an error with %q", bad.values, err, out, bad.valueErr)
		}
	}

	// The dry run validates: a misspelled field (the classic readonly for
	// readOnly) and a name the API server refuses are each rejected.
	objs := listItems(t, runOut(t, bin, "setup", "deploy", "--namespace", deployNamespace, "-o", "json"))
	ds := byKindName(objs)["DaemonSet/kubetrail-collector"]
	for _, bad := range []struct {
		change  func(container map[string]any)
		wantErr string
	}{
		{func(c map[string]any) { c["volumeMounts"].([]any)[0].(map[string]any)["readonly"] = true }, `unknown field "spec.template.spec.containers[0].volumeMounts[0].readonly"`},
		{func(c map[string]any) { c["name"] = "Tail" }, `spec.template.spec.containers[0].name: Invalid value: "Tail"`},
	} {
		var broken map[string]any
		b, _ := json.Marshal(ds)
		json.Unmarshal(b, &broken)
		bad.change(dig(broken, "spec", "template", "spec", "containers", 0).(map[string]any))
		b, _ = json.Marshal(broken)
		path := filepath.Join(t.TempDir(), "broken.json")
		writeFile(t, path, string(b))
		c.kubectlFails(t, userAdmin, bad.wantErr, "apply", "--dry-run=server", "-f", path)
	}
}

// chDeployURL is the e2e's --clickhouse: a user, so a password file.
const chDeployURL = "clickhouses://kubetrail@ch.example:8443/audit?cluster=shards"

// checkClickHouseServer: three collectors storing into the URL with the
// password read from the Secret's file, the spool at 80% of 50Gi, and no
// secret in the environment.
func checkClickHouseServer(t *testing.T, objs []any) {
	t.Helper()
	ss := byKindName(objs)["StatefulSet/kubetrail"]
	c := dig(ss, "spec", "template", "spec", "containers", 0)
	args := fmt.Sprint(dig(c, "args"))
	for _, w := range []string{"--store=" + chDeployURL + "&password_file=/etc/kubetrail/clickhouse/password", "--spool-max-bytes=40GiB", "--redact-key-file=/etc/kubetrail/redact/redact.key"} {
		if !strings.Contains(args, w) {
			t.Errorf("clickhouse: server args %s lack %s", args, w)
		}
	}
	if dig(ss, "spec", "replicas") != float64(3) || strings.Contains(args, "--max-size") {
		t.Errorf("clickhouse: replicas %v, args %s: want 3 collectors without --max-size", dig(ss, "spec", "replicas"), args)
	}
	if env := fmt.Sprint(dig(c, "env")); strings.Contains(env, "secretKeyRef") {
		t.Errorf("clickhouse: server env %s: the password must be a file", env)
	}
}

// checkDryRun reads kubectl apply's output: every object accepted in the
// dry run, and a Pod Security warning for the collector's template only.
func checkDryRun(t *testing.T, what, out string, objs []any) {
	t.Helper()
	for _, o := range objs {
		kind := strings.ToLower(dig(o, "kind").(string))
		name := dig(o, "metadata", "name").(string)
		re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(kind) + `(\.[a-z0-9.]+)?/` + regexp.QuoteMeta(name) + ` (created|configured|unchanged) \(server dry run\)$`)
		if !re.MatchString(out) {
			t.Errorf("%s: kubectl apply --dry-run=server did not accept %s/%s:\n%s", what, kind, name, out)
		}
	}
	warns := regexp.MustCompile(`(?m)^Warning: would violate PodSecurity "restricted:[^"]*": (.*)$`).FindAllStringSubmatch(out, -1)
	if len(warns) != 1 {
		t.Fatalf("%s: %d Pod Security warnings, want one (the collector's):\n%s", what, len(warns), out)
	}
	// The collector breaks restricted by its hostPath volumes and its root
	// user, and by nothing else: its capabilities, escalation and seccomp
	// profile are restricted's.
	w := warns[0][1]
	for _, want := range []string{`volumes "audit-log", "state" use restricted volume type "hostPath"`, "runAsNonRoot != true", "runAsUser=0"} {
		if !strings.Contains(w, want) {
			t.Errorf("%s: the Pod Security warning %q does not say %q", what, w, want)
		}
	}
	for _, not := range []string{"allowPrivilegeEscalation", "unrestricted capabilities", "seccompProfile", "privileged"} {
		if strings.Contains(w, not) {
			t.Errorf("%s: the collector breaks restricted by %s too: %q", what, not, w)
		}
	}
}

// checkDeployObjects asserts, on the parsed objects, the promises of
// docs/deploy.md: all in the namespace, no Namespace and no RBAC; both pods
// without a ServiceAccount token, with the RuntimeDefault seccomp profile,
// no capability, no escalation and a read-only root; the server non-root,
// the collector root on control-plane nodes with the log folder read-only.
func checkDeployObjects(t *testing.T, what string, objs []any) {
	t.Helper()
	for _, o := range objs {
		kind, name := dig(o, "kind").(string), dig(o, "metadata", "name")
		switch kind {
		case "Namespace", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "ServiceAccount":
			t.Errorf("%s: has a %s (%v): want none", what, kind, name)
		}
		if ns := dig(o, "metadata", "namespace"); ns != deployNamespace {
			t.Errorf("%s: %s %v in namespace %v, want %s", what, kind, name, ns, deployNamespace)
		}
	}
	byName := byKindName(objs)
	pods := map[string]any{
		"server":    dig(byName["StatefulSet/kubetrail"], "spec", "template", "spec"),
		"collector": dig(byName["DaemonSet/kubetrail-collector"], "spec", "template", "spec"),
	}
	for role, pod := range pods {
		if pod == nil {
			t.Fatalf("%s: no %s pod template", what, role)
		}
		if dig(pod, "automountServiceAccountToken") != false || dig(pod, "securityContext", "seccompProfile", "type") != "RuntimeDefault" {
			t.Errorf("%s: %s pod: automountServiceAccountToken %v, seccomp %v", what, role,
				dig(pod, "automountServiceAccountToken"), dig(pod, "securityContext", "seccompProfile"))
		}
		sc := dig(pod, "containers", 0, "securityContext")
		if dig(sc, "readOnlyRootFilesystem") != true || dig(sc, "allowPrivilegeEscalation") != false ||
			fmt.Sprint(dig(sc, "capabilities", "drop")) != "[ALL]" || dig(sc, "capabilities", "add") != nil {
			t.Errorf("%s: %s container securityContext %v", what, role, sc)
		}
	}
	if sc := dig(pods["server"], "securityContext"); dig(sc, "runAsNonRoot") != true || dig(sc, "runAsUser") != float64(65532) {
		t.Errorf("%s: server pod securityContext %v: want non-root", what, sc)
	}
	col := pods["collector"]
	if dig(col, "securityContext", "runAsUser") != float64(0) || dig(col, "nodeSelector", "node-role.kubernetes.io/control-plane") != "" ||
		dig(col, "tolerations", 0, "key") != "node-role.kubernetes.io/control-plane" {
		t.Errorf("%s: collector pod %v", what, col)
	}
	if m := dig(col, "containers", 0, "volumeMounts", 0); dig(m, "name") != "audit-log" || dig(m, "readOnly") != true {
		t.Errorf("%s: collector's audit log mount %v: want read-only", what, m)
	}
}

// installServiceMonitorCRD creates a minimal CustomResourceDefinition for
// the Prometheus Operator's ServiceMonitor (its schema left open), for
// real, and waits until the API server serves it.
func installServiceMonitorCRD(t *testing.T, c *cluster) {
	t.Helper()
	const crd = `{"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
  "metadata": {"name": "servicemonitors.monitoring.coreos.com"},
  "spec": {"group": "monitoring.coreos.com", "scope": "Namespaced",
    "names": {"kind": "ServiceMonitor", "listKind": "ServiceMonitorList", "plural": "servicemonitors", "singular": "servicemonitor"},
    "versions": [{"name": "v1", "served": true, "storage": true,
      "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]}}`
	c.kubectlIn(t, userAdmin, crd, "apply", "-f", "-")
	c.kubectl(t, userAdmin, "wait", "--for=condition=Established", "--timeout=30s", "crd/servicemonitors.monitoring.coreos.com")
	// Established is set before kubectl's discovery cache knows the kind.
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := c.runKubectl(t, userAdmin, "", "get", "servicemonitors", "-n", deployNamespace)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the ServiceMonitor CRD is not served after 30s: %s", out)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// byKindName indexes objects as KIND/NAME.
func byKindName(objs []any) map[string]any {
	m := map[string]any{}
	for _, o := range objs {
		m[fmt.Sprintf("%v/%v", dig(o, "kind"), dig(o, "metadata", "name"))] = o
	}
	return m
}

// listItems reads a JSON v1 List.
func listItems(t *testing.T, b string) []any {
	t.Helper()
	var l struct {
		Kind  string
		Items []any
	}
	if err := json.Unmarshal([]byte(b), &l); err != nil || l.Kind != "List" || len(l.Items) == 0 {
		t.Fatalf("want a JSON v1 List with items: %v\n%s", err, b)
	}
	return l.Items
}

// dig walks decoded JSON along keys and list indexes; nil when a step is
// missing.
func dig(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, _ := v.(map[string]any)
			v = m[k]
		case int:
			l, _ := v.([]any)
			if k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

// runOut runs a program and returns its standard output; a failure fails
// the test with its standard error.
func runOut(t *testing.T, bin string, args ...string) string {
	t.Helper()
	var stderr bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(bin), strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

// helmRenderBinary builds helmrender/, a module of its own (Helm's
// dependencies stay out of this module's go.mod, which build.sh builds the
// API server from), into the test's temp folder.
func helmRenderBinary(t *testing.T) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), "helmrender")
	cmd := exec.Command("go", "build", "-o", out, ".")
	cmd.Dir = "helmrender"
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-buildvcs=false")
	start := time.Now()
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build helmrender: %v\n%s", err, b)
	}
	t.Logf("built helmrender in %s", time.Since(start).Round(time.Millisecond))
	return out
}
