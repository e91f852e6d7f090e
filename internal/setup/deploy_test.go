package setup

import (
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"
)

// allSettings sets every option away from its default.
func allSettings() DeployOptions {
	o := DefaultDeploy()
	o.Namespace = "audit"
	o.Image = "registry.example/kubetrail:v1.2.3"
	o.StorageClass = "fast-ssd"
	o.StorageGiB = 100
	o.ServiceMonitor = true
	o.AllowFrom = []string{"10.0.0.0/24", "fd00::/64"}
	return o
}

// clickHouseSettings makes the servers three ClickHouse collectors whose
// user has a password.
func clickHouseSettings() DeployOptions {
	o := allSettings()
	o.ClickHouse = "clickhouses://kubetrail@ch.example:8443/audit?cluster=shards"
	o.Replicas = 3
	return o
}

// TestDeployGolden compares the output of setup deploy with testdata, in
// both formats; -update rewrites the files. TestDeploySecurity holds what
// the files must say, so a careless -update cannot bless a wrong answer.
func TestDeployGolden(t *testing.T) {
	for _, c := range []struct {
		golden, format string
		o              DeployOptions
	}{
		{"deploy-default.golden", "yaml", DefaultDeploy()},
		{"deploy-all.golden", "yaml", allSettings()},
		{"deploy-all.json.golden", "json", allSettings()},
		{"deploy-clickhouse.golden", "yaml", clickHouseSettings()},
	} {
		t.Run(c.golden, func(t *testing.T) {
			got, err := RenderDeploy(c.o, c.format)
			if err != nil {
				t.Fatal(err)
			}
			again, _ := RenderDeploy(c.o, c.format)
			if string(again) != string(got) {
				t.Fatal("two renderings of the same settings differ")
			}
			path := filepath.Join("testdata", c.golden)
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(string(want), string(got)); d != "" {
				t.Errorf("%s differs (-want +got; go test -update rewrites it):\n%s", path, d)
			}
		})
	}
}

// TestDeployFormatsAgree: the YAML documents and the JSON List hold the
// same objects.
func TestDeployFormatsAgree(t *testing.T) {
	y, err := RenderDeploy(allSettings(), "yaml")
	if err != nil {
		t.Fatal(err)
	}
	j, err := RenderDeploy(allSettings(), "json")
	if err != nil {
		t.Fatal(err)
	}
	var list struct{ Items []any }
	if err := json.Unmarshal(j, &list); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(list.Items, parseDocs(t, y)); d != "" {
		t.Errorf("JSON and YAML differ (-json +yaml):\n%s", d)
	}
}

// parseDocs reads YAML documents into JSON-typed values (numbers as
// float64), as they are compared with the JSON.
func parseDocs(t *testing.T, b []byte) []any {
	t.Helper()
	var out []any
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	for {
		var v any
		if err := dec.Decode(&v); err != nil {
			if err.Error() == "EOF" {
				break
			}
			t.Fatal(err)
		}
		if v == nil {
			continue
		}
		j, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		var n any
		json.Unmarshal(j, &n)
		out = append(out, n)
	}
	return out
}

// dig walks a decoded object along keys and list indexes.
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

// TestDeploySecurity reads the golden files' promises from the objects
// themselves: every object in the namespace and no Namespace, no RBAC, no
// ServiceAccount token, the server non-root on a read-only root with no
// capability, the collector root but equally confined, seeing the log
// folder read-only, on control-plane nodes only, TLS and tokens from the
// Secrets, probes on /healthz and /readyz, the NetworkPolicy's one port.
// (Mutations tried: readOnly dropped from the audit-log mount, runAsNonRoot
// false on the server, the toleration's effect NoExecute, the collector
// mounting the whole TLS Secret: each fails here.)
func TestDeploySecurity(t *testing.T) {
	for _, o := range []DeployOptions{DefaultDeploy(), allSettings(), clickHouseSettings()} {
		b, err := RenderDeploy(o, "yaml")
		if err != nil {
			t.Fatal(err)
		}
		objs := parseDocs(t, b)
		kinds := map[string]any{}
		for _, x := range objs {
			kind := dig(x, "kind").(string)
			kinds[kind] = x
			if ns := dig(x, "metadata", "namespace"); ns != o.Namespace {
				t.Errorf("%s in namespace %v, want %s", kind, ns, o.Namespace)
			}
		}
		want := []string{"DaemonSet", "NetworkPolicy", "Service", "StatefulSet"}
		if o.ServiceMonitor {
			want = append(want, "ServiceMonitor")
		}
		slices.Sort(want)
		if got := slices.Sorted(maps.Keys(kinds)); !slices.Equal(got, want) {
			t.Errorf("kinds %v, want %v (no Namespace, no RBAC, no ServiceAccount)", got, want)
		}
		checkServer(t, o, dig(kinds["StatefulSet"], "spec"))
		checkCollector(t, o, dig(kinds["DaemonSet"], "spec", "template", "spec"))
		np := dig(kinds["NetworkPolicy"], "spec")
		if dig(np, "policyTypes", 0) != "Ingress" || dig(np, "ingress", 0, "ports", 0, "port") != float64(8443) ||
			len(dig(np, "ingress").([]any)) != 1 || len(dig(np, "ingress", 0, "ports").([]any)) != 1 {
			t.Errorf("NetworkPolicy %v: want one ingress rule on port 8443", np)
		}
		if from := dig(np, "ingress", 0, "from").([]any); len(from) != 1+len(o.AllowFrom) ||
			dig(from[0], "podSelector", "matchLabels", "app.kubernetes.io/component") != "collector" {
			t.Errorf("NetworkPolicy from %v: want the collectors and %v", from, o.AllowFrom)
		}
	}
}

func checkPod(t *testing.T, what string, pod any) {
	t.Helper()
	if dig(pod, "automountServiceAccountToken") != false {
		t.Errorf("%s: automountServiceAccountToken is not false", what)
	}
	if dig(pod, "securityContext", "seccompProfile", "type") != "RuntimeDefault" {
		t.Errorf("%s: no RuntimeDefault seccomp profile", what)
	}
	for _, k := range []string{"hostNetwork", "hostPID", "hostIPC"} {
		if dig(pod, k) != nil {
			t.Errorf("%s: %s set", what, k)
		}
	}
	c := dig(pod, "containers", 0, "securityContext")
	if dig(c, "readOnlyRootFilesystem") != true || dig(c, "allowPrivilegeEscalation") != false ||
		dig(c, "privileged") != false || !slices.Equal(dig(c, "capabilities", "drop").([]any), []any{"ALL"}) ||
		dig(c, "capabilities", "add") != nil {
		t.Errorf("%s: container securityContext %v", what, c)
	}
}

func checkServer(t *testing.T, o DeployOptions, spec any) {
	pod := dig(spec, "template", "spec")
	checkPod(t, "server", pod)
	if r := dig(spec, "replicas"); (o.ClickHouse == "" && r != float64(1)) || r != float64(o.Replicas) {
		t.Errorf("server replicas %v, want %d (the embedded store has one writer)", r, o.Replicas)
	}
	sc := dig(pod, "securityContext")
	if dig(sc, "runAsNonRoot") != true || dig(sc, "runAsUser") != float64(65532) || dig(sc, "fsGroup") != float64(65532) {
		t.Errorf("server pod securityContext %v: want non-root 65532 with fsGroup", sc)
	}
	c := dig(pod, "containers", 0)
	args := strings.Join(toStrings(dig(c, "args")), " ")
	for _, w := range []string{"serve ", "--data=/var/lib/kubetrail/data ", "--listen=:8443 ", "--tls-cert=/etc/kubetrail/tls/tls.crt", "--tls-key=/etc/kubetrail/tls/tls.key", "--token-file=/etc/kubetrail/tokens/tokens"} {
		if !strings.Contains(args, w) {
			t.Errorf("server args %q lack %q", args, w)
		}
	}
	// serve chmods its data folder 0700: were it the volume's root, the
	// kubelet would find the root unlike fsGroup wants at each start and
	// make every file group-readable, the redaction key too.
	if m := dig(c, "volumeMounts", 0); dig(m, "name") != "data" || dig(m, "mountPath") != "/var/lib/kubetrail" {
		t.Errorf("server data mount %v: want the volume at /var/lib/kubetrail, --data a folder in it", m)
	}
	if dig(c, "livenessProbe", "httpGet", "path") != "/healthz" || dig(c, "readinessProbe", "httpGet", "path") != "/readyz" ||
		dig(c, "livenessProbe", "httpGet", "scheme") != "HTTPS" {
		t.Errorf("server probes: liveness %v, readiness %v", dig(c, "livenessProbe"), dig(c, "readinessProbe"))
	}
	for _, r := range []string{"requests", "limits"} {
		if dig(c, "resources", r, "memory") == nil || dig(c, "resources", r, "cpu") == nil {
			t.Errorf("server resources %v: want cpu and memory %s", dig(c, "resources"), r)
		}
	}
	pvc := dig(spec, "volumeClaimTemplates", 0, "spec")
	if sc := dig(pvc, "storageClassName"); (o.StorageClass == "") != (sc == nil) || (sc != nil && sc != o.StorageClass) {
		t.Errorf("PVC storageClassName %v, want %q", sc, o.StorageClass)
	}
	vols := volumes(pod)
	if dig(vols["tls"], "secret", "secretName") != "kubetrail-tls" || dig(vols["tokens"], "secret", "secretName") != "kubetrail-tokens" {
		t.Errorf("server volumes %v: want the TLS and tokens Secrets", vols)
	}
}

func checkCollector(t *testing.T, o DeployOptions, pod any) {
	checkPod(t, "collector", pod)
	sc := dig(pod, "securityContext")
	if dig(sc, "runAsUser") != float64(0) || dig(sc, "runAsNonRoot") != false {
		t.Errorf("collector securityContext %v: want root, said explicitly", sc)
	}
	if dig(pod, "nodeSelector", "node-role.kubernetes.io/control-plane") != "" {
		t.Errorf("collector nodeSelector %v", dig(pod, "nodeSelector"))
	}
	tol := dig(pod, "tolerations", 0)
	if dig(tol, "key") != "node-role.kubernetes.io/control-plane" || dig(tol, "effect") != "NoSchedule" || dig(tol, "operator") != "Exists" {
		t.Errorf("collector toleration %v", tol)
	}
	c := dig(pod, "containers", 0)
	args := toStrings(dig(c, "args"))
	wantArgs := []string{"tail", "/var/log/kubernetes/audit/audit.log", "--server=https://kubetrail." + o.Namespace + ".svc:8443", "--state=/var/lib/kubetrail-tail"}
	if len(args) < len(wantArgs) || !slices.Equal(args[:len(wantArgs)], wantArgs) {
		t.Errorf("collector args %q, want them to start with %q", args, wantArgs)
	}
	mounts := map[string]any{}
	for _, m := range dig(c, "volumeMounts").([]any) {
		mounts[dig(m, "name").(string)] = m
	}
	vols := volumes(pod)
	if dig(mounts["audit-log"], "readOnly") != true || dig(vols["audit-log"], "hostPath", "path") != "/var/log/kubernetes/audit" {
		t.Errorf("audit log: mount %v, volume %v: want the host folder read-only", mounts["audit-log"], vols["audit-log"])
	}
	if dig(vols["state"], "hostPath", "path") != "/var/lib/kubetrail-tail" || dig(mounts["state"], "mountPath") != "/var/lib/kubetrail-tail" {
		t.Errorf("checkpoint: mount %v, volume %v: want a hostPath", mounts["state"], vols["state"])
	}
	if items := dig(vols["ca"], "secret", "items").([]any); len(items) != 1 || dig(items[0], "key") != "ca.crt" {
		t.Errorf("collector CA volume %v: want only ca.crt of the TLS Secret, never its key", vols["ca"])
	}
	if items := dig(vols["token"], "secret", "items").([]any); len(items) != 1 || dig(items[0], "key") != "collector" {
		t.Errorf("collector token volume %v: want only its own token", vols["token"])
	}
	for name, v := range vols {
		if dig(v, "hostPath") != nil && name != "audit-log" && name != "state" {
			t.Errorf("collector mounts host path %v", v)
		}
	}
}

func volumes(pod any) map[string]any {
	m := map[string]any{}
	for _, v := range dig(pod, "volumes").([]any) {
		m[dig(v, "name").(string)] = v
	}
	return m
}

func toStrings(v any) []string {
	var s []string
	for _, x := range v.([]any) {
		s = append(s, x.(string))
	}
	return s
}

// TestDeployRefusesBadSettings: each setting the API server would refuse
// is reported with its flag.
func TestDeployRefusesBadSettings(t *testing.T) {
	f := func(change func(*DeployOptions), want string) {
		t.Helper()
		o := DefaultDeploy()
		change(&o)
		_, err := RenderDeploy(o, "yaml")
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("got %v, want an error with %q", err, want)
		}
	}
	f(func(o *DeployOptions) { o.Namespace = "Audit" }, `--namespace "Audit"`)
	f(func(o *DeployOptions) { o.Namespace = "" }, `--namespace ""`)
	f(func(o *DeployOptions) { o.Image = "" }, `--image`)
	f(func(o *DeployOptions) { o.StorageClass = "fast_ssd" }, `--storage-class "fast_ssd"`)
	f(func(o *DeployOptions) { o.StorageGiB = 0 }, `--storage-size`)
	f(func(o *DeployOptions) { o.AllowFrom = []string{"10.0.0.1"} }, `--allow-from "10.0.0.1"`)
	f(func(o *DeployOptions) { o.Replicas = 2 }, `--replicas 2: want 1, or more with --clickhouse`)
	f(func(o *DeployOptions) { o.Replicas = 0; o.ClickHouse = "clickhouse://ch/k" }, `--replicas 0`)
	ch := func(url, want string) {
		t.Helper()
		f(func(o *DeployOptions) { o.ClickHouse = url }, want)
	}
	ch("http://ch:8123/k", `--clickhouse "http://ch:8123/k": want clickhouse://`)
	ch("ch:8123/k", `--clickhouse "ch:8123/k": want clickhouse://`)
	ch("clickhouse:///k", `--clickhouse "clickhouse:///k": no host`)
	ch("clickhouse://ch:8123", `database "": want a name`)
	ch("clickhouse://ch/k-t", `database "k-t": want a name`)
	ch("clickhouse://ch/k/t", `database "k/t": want a name`)
	ch("clickhouse://ch/k#x", `#fragment`)
	ch("clickhouse://ch/k?password_file=/p", `option password_file names a file in the pod`)
	ch("clickhouses://ch/k?cluster=c&ca=/ca.pem", `option ca names a file in the pod`)
	ch("clickhouse://%zz/k", `--clickhouse: does not parse as a URL`)
	// A password would be in the pod's arguments: refused, and the error
	// does not print it either.
	for _, url := range []string{"clickhouse://bob:s3cret@ch/k", "clickhouse://bob:@ch/k"} {
		o := DefaultDeploy()
		o.ClickHouse = url
		_, err := RenderDeploy(o, "yaml")
		if err == nil || !strings.Contains(err.Error(), "Secret kubetrail-clickhouse") || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("--clickhouse %s: %v, want a refusal pointing at the Secret, without the password", url, err)
		}
	}
	if _, err := RenderDeploy(DefaultDeploy(), "xml"); err == nil || !strings.Contains(err.Error(), `-o "xml"`) {
		t.Errorf("-o xml: %v", err)
	}
	for in, want := range map[string]int{"20Gi": 20, "1Gi": 1} {
		if n, err := ParseGiB(in); err != nil || n != want {
			t.Errorf("ParseGiB(%q) = %d, %v", in, n, err)
		}
	}
	for _, in := range []string{"20", "20G", "0Gi", "1.5Gi", "-1Gi"} {
		if _, err := ParseGiB(in); err == nil {
			t.Errorf("ParseGiB(%q) took it", in)
		}
	}
}

// TestDeployClickHouse: with --clickhouse the servers are collectors
// storing into the URL, with the spool on their volume bounded at 80% of
// it, one redaction key for all from a Secret, the user's password read
// from the Secret's file (never in the
// arguments or the environment), as many as asked; the Service, the
// NetworkPolicy (ingress only, so egress to ClickHouse is open) and the
// DaemonSet shipping to the Service are those of the embedded store.
// (Mutations tried: the redaction key left to each volume, the password
// passed as an env secretKeyRef, the
// Secret mounted whole, --max-size kept beside --store, the spool bound
// taken as the whole volume, password_file added for a URL without a
// user, Egress added to policyTypes: each fails here.)
func TestDeployClickHouse(t *testing.T) {
	server := func(o DeployOptions) (objs map[string]any, c, pod any) {
		t.Helper()
		b, err := RenderDeploy(o, "json")
		if err != nil {
			t.Fatal(err)
		}
		var list struct{ Items []any }
		if err := json.Unmarshal(b, &list); err != nil {
			t.Fatal(err)
		}
		objs = map[string]any{}
		for _, x := range list.Items {
			objs[dig(x, "kind").(string)] = x
		}
		pod = dig(objs["StatefulSet"], "spec", "template", "spec")
		return objs, dig(pod, "containers", 0), pod
	}
	embedded, _, _ := server(allSettings())
	o := clickHouseSettings()
	objs, c, pod := server(o)

	args := toStrings(dig(c, "args"))
	want := []string{
		"--store=clickhouses://kubetrail@ch.example:8443/audit?cluster=shards&password_file=/etc/kubetrail/clickhouse/password",
		"--spool-max-bytes=80GiB", // 80% of 100Gi
		"--redact-key-file=/etc/kubetrail/redact/redact.key",
		"--data=/var/lib/kubetrail/data",
	}
	for _, w := range want {
		if !slices.Contains(args, w) {
			t.Errorf("server args %q lack %q", args, w)
		}
	}
	for _, a := range args {
		if strings.HasPrefix(a, "--max-size") {
			t.Errorf("server args %q: --max-size is the embedded store's, refused with --store", args)
		}
	}
	if d := dig(objs["StatefulSet"], "spec", "replicas"); d != float64(3) {
		t.Errorf("replicas %v, want 3", d)
	}
	// The password: a file of Secret kubetrail-clickhouse, key password,
	// only serve's group may read, and nothing else of the Secret.
	for _, e := range dig(c, "env").([]any) {
		if dig(e, "name") != "GOMEMLIMIT" || dig(e, "valueFrom", "secretKeyRef") != nil {
			t.Errorf("server env %v: the password must come as a file, not the environment", e)
		}
	}
	if dig(c, "envFrom") != nil {
		t.Errorf("server envFrom %v", dig(c, "envFrom"))
	}
	vol := volumes(pod)["clickhouse"]
	items, _ := dig(vol, "secret", "items").([]any)
	if dig(vol, "secret", "secretName") != "kubetrail-clickhouse" || dig(vol, "secret", "defaultMode") != float64(0o400) ||
		len(items) != 1 || dig(items[0], "key") != "password" || dig(items[0], "path") != "password" {
		t.Errorf("clickhouse volume %v: want key password of Secret kubetrail-clickhouse, mode 0400", vol)
	}
	// One redaction key for every collector: with one each, a redacted
	// event retried on another collector gets other markers and counts
	// twice.
	vol = volumes(pod)["redact"]
	items, _ = dig(vol, "secret", "items").([]any)
	if dig(vol, "secret", "secretName") != "kubetrail-redact" || dig(vol, "secret", "defaultMode") != float64(0o400) ||
		len(items) != 1 || dig(items[0], "key") != "redact.key" {
		t.Errorf("redact volume %v: want key redact.key of Secret kubetrail-redact, mode 0400", vol)
	}
	mounted := map[string]bool{}
	for _, m := range dig(c, "volumeMounts").([]any) {
		mounted[dig(m, "name").(string)+" "+dig(m, "mountPath").(string)] = dig(m, "readOnly") == true
	}
	if !mounted["clickhouse /etc/kubetrail/clickhouse"] || !mounted["redact /etc/kubetrail/redact"] {
		t.Errorf("server mounts %v: want the clickhouse and redact volumes read-only", dig(c, "volumeMounts"))
	}
	for _, k := range []string{"Service", "NetworkPolicy", "DaemonSet"} {
		if d := cmp.Diff(embedded[k], objs[k]); d != "" {
			t.Errorf("%s differs from the embedded store's (-embedded +clickhouse):\n%s", k, d)
		}
	}
	if pt := dig(objs["NetworkPolicy"], "spec", "policyTypes"); !slices.Equal(pt.([]any), []any{"Ingress"}) {
		t.Errorf("NetworkPolicy policyTypes %v: egress to ClickHouse must stay open", pt)
	}

	// ClickHouse's default user (no user in the URL) has no password: no
	// Secret to create, no password_file; the spool bound follows the size.
	o.ClickHouse, o.StorageGiB, o.Replicas = "clickhouse://ch:8123/kubetrail", 10, 1
	_, c, pod = server(o)
	args = toStrings(dig(c, "args"))
	if !slices.Contains(args, "--store=clickhouse://ch:8123/kubetrail") || !slices.Contains(args, "--spool-max-bytes=8GiB") {
		t.Errorf("server args %q: want the URL as given and an 8GiB spool", args)
	}
	if v, ok := volumes(pod)["clickhouse"]; ok {
		t.Errorf("a URL without a user mounts %v", v)
	}
}
