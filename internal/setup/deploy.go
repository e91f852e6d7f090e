package setup

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"go.yaml.in/yaml/v3"
)

// DeployOptions are the settings of `kubetrail setup deploy`. The Helm chart
// in deploy/helm/kubetrail has a value for each but the namespace (the
// release's), and its defaults render the same objects as DefaultDeploy.
type DeployOptions struct {
	// Namespace holds every object; it must exist (no Namespace object is
	// printed: the user creates it, with the labels their cluster needs).
	Namespace string
	// Image is the kubetrail container image of both workloads.
	Image string
	// StorageClass names the PersistentVolumeClaim's class; empty leaves
	// it out, so the cluster's default class is used.
	StorageClass string
	// StorageGiB is the size of the server's volume. serve is told to keep
	// the store under 80% of it (--max-size), so a full disk never stops
	// ingest: the oldest segments go first.
	StorageGiB int
	// ServiceMonitor adds a Prometheus Operator ServiceMonitor, whose CRD
	// the cluster must have.
	ServiceMonitor bool
	// AllowFrom are the CIDRs, besides the collectors, that the
	// NetworkPolicy lets reach the server: the control-plane nodes' (the
	// API server's audit webhook), Prometheus's and the analysts'.
	AllowFrom []string
	// ClickHouse, when set, makes the server a ClickHouse collector (serve
	// --store URL): its volume holds only the write-ahead spool of what
	// ClickHouse has not taken yet, bounded like --max-size is otherwise.
	// A user in the URL gets the password from Secret kubetrail-clickhouse
	// as a file, never from the pod's arguments or environment.
	ClickHouse string
	// Replicas is the number of servers; more than one only with
	// ClickHouse (copies count once there), as the embedded store has one
	// writer. Each replica has its own volume, so its own spool.
	Replicas int
}

// DefaultDeploy returns the settings `setup deploy` uses without flags,
// which are also the Helm chart's default values.
func DefaultDeploy() DeployOptions {
	return DeployOptions{Namespace: "kubetrail", Image: "kubetrail:latest", StorageGiB: 20, Replicas: 1}
}

// The fixed names, paths and ports of the deployment. docs/deploy.md tells
// the user to create the two Secrets under these names.
const (
	deployName     = "kubetrail"
	collectorName  = "kubetrail-collector"
	tlsSecret      = "kubetrail-tls"    // kubernetes.io/tls: tls.crt, tls.key, ca.crt
	tokensSecret   = "kubetrail-tokens" // tokens: every accepted token; collector: the collector's
	deployPort     = 8443
	auditLogDir    = "/var/log/kubernetes/audit"
	tailStateDir   = "/var/lib/kubetrail-tail"
	controlPlane   = "node-role.kubernetes.io/control-plane"
	nonRootUID     = 65532                 // distroless "nonroot", the Dockerfile's USER
	volumeMount    = "/var/lib/kubetrail"  // the PersistentVolume's root
	dataDir        = volumeMount + "/data" // serve's --data, a folder in it
	tlsMountPath   = "/etc/kubetrail/tls"
	tokenMountPath = "/etc/kubetrail/tokens"
	caMountPath    = "/etc/kubetrail/ca"
	chSecret       = "kubetrail-clickhouse" // password: the ClickHouse user's password
	chMountPath    = "/etc/kubetrail/clickhouse"
	redactSecret   = "kubetrail-redact" // redact.key: the redaction markers' key, one for every collector
	redactMount    = "/etc/kubetrail/redact"
)

// obj is one Kubernetes object or part of one. Maps marshal with their keys
// sorted, in YAML and in JSON alike, as kubectl prints objects, so the
// output is deterministic without a struct per Kubernetes type.
type obj = map[string]any

var dnsLabel = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`) })

// validate reports the first setting the API server would refuse, or that
// would render a broken manifest, naming the flag.
func (o DeployOptions) validate() error {
	if len(o.Namespace) > 63 || !dnsLabel().MatchString(o.Namespace) {
		return fmt.Errorf("--namespace %q: want a DNS label (lowercase letters, digits and '-', at most 63)", o.Namespace)
	}
	if o.Image == "" || strings.ContainsAny(o.Image, " \t\n") {
		return fmt.Errorf("--image %q: want an image reference such as registry.example/kubetrail:v1", o.Image)
	}
	if o.StorageClass != "" && !dnsSubdomain(o.StorageClass) {
		return fmt.Errorf("--storage-class %q: want a StorageClass name", o.StorageClass)
	}
	if o.StorageGiB < 1 {
		return fmt.Errorf("--storage-size %dGi: want at least 1Gi", o.StorageGiB)
	}
	for _, c := range o.AllowFrom {
		if _, err := netip.ParsePrefix(c); err != nil {
			return fmt.Errorf("--allow-from %q: want a CIDR such as 10.0.0.0/24: %w", c, err)
		}
	}
	if o.Replicas < 1 || (o.Replicas > 1 && o.ClickHouse == "") {
		return fmt.Errorf("--replicas %d: want 1, or more with --clickhouse (the embedded store has one writer)", o.Replicas)
	}
	if o.ClickHouse != "" {
		return validateClickHouse(o.ClickHouse)
	}
	return nil
}

// chForm is what --clickhouse may be.
const chForm = "clickhouse://[USER@]HOST[:PORT]/DB[?cluster=NAME] or clickhouses://..."

// chDatabase is a database name the store accepts (it is written into
// statements unquoted).
var chDatabase = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,63}$`) })

// validateClickHouse checks what the manifests depend on: the scheme, a
// host and a database, and no credential in the URL, which would be in
// the pod's arguments for anyone who can read the StatefulSet. serve's
// own parser checks the rest (the options) when the pod starts.
func validateClickHouse(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("--clickhouse: does not parse as a URL; want %s", chForm)
	}
	shown := u.Redacted()
	switch {
	case u.Scheme != "clickhouse" && u.Scheme != "clickhouses":
		return fmt.Errorf("--clickhouse %q: want %s", shown, chForm)
	case u.Hostname() == "":
		return fmt.Errorf("--clickhouse %q: no host; want %s", shown, chForm)
	case !chDatabase().MatchString(strings.TrimPrefix(u.Path, "/")):
		return fmt.Errorf("--clickhouse %q: database %q: want a name of letters, digits and _ (%s)", shown, strings.TrimPrefix(u.Path, "/"), chForm)
	case u.Fragment != "":
		return fmt.Errorf("--clickhouse %q: a #fragment means nothing here", shown)
	}
	if _, ok := u.User.Password(); ok {
		return fmt.Errorf("--clickhouse %q: a password in the URL would be in the pod's arguments; put it in Secret %s, key password (docs/deploy.md)", shown, chSecret)
	}
	for _, k := range []string{"password_file", "ca"} {
		if u.Query().Has(k) {
			return fmt.Errorf("--clickhouse %q: option %s names a file in the pod, which setup deploy does not mount; the password comes from Secret %s (docs/deploy.md)", shown, k, chSecret)
		}
	}
	return nil
}

// serverStore is the server's --store: the URL, and where a user's
// password is read from (the Secret's file). ClickHouse's "default" user
// (no user in the URL) has no password.
func serverStore(o DeployOptions) string {
	u, _ := url.Parse(o.ClickHouse) // validated
	if o.ClickHouse == "" || u.User == nil {
		return o.ClickHouse
	}
	sep := "?"
	if strings.Contains(o.ClickHouse, "?") {
		sep = "&"
	}
	return o.ClickHouse + sep + "password_file=" + chMountPath + "/password"
}

func dnsSubdomain(s string) bool {
	if len(s) > 253 {
		return false
	}
	for l := range strings.SplitSeq(s, ".") {
		if !dnsLabel().MatchString(l) {
			return false
		}
	}
	return true
}

// ParseGiB reads a --storage-size such as 20Gi (whole gibibytes only, so
// that the store's limit is exact).
func ParseGiB(s string) (int, error) {
	n, err := strconv.Atoi(strings.TrimSuffix(s, "Gi"))
	if err != nil || !strings.HasSuffix(s, "Gi") || n < 1 {
		return 0, fmt.Errorf("--storage-size %q: want whole gibibytes such as 20Gi", s)
	}
	return n, nil
}

// DeployObjects returns the objects of an in-cluster deployment, in the
// order they are printed: NetworkPolicy, Service, StatefulSet (the central
// serve), DaemonSet (the collectors), and the ServiceMonitor when asked.
// None needs RBAC: neither workload talks to the Kubernetes API, so no
// ServiceAccount token is mounted and no Role is bound.
func DeployObjects(o DeployOptions) ([]obj, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	objs := []obj{networkPolicy(o), service(o), statefulSet(o), daemonSet(o)}
	if o.ServiceMonitor {
		objs = append(objs, serviceMonitor(o))
	}
	return objs, nil
}

// RenderDeploy prints the objects as YAML documents (format "yaml", with a
// header comment) or as one JSON v1 List ("json"). Both are what kubectl
// apply -f takes.
func RenderDeploy(o DeployOptions, format string) ([]byte, error) {
	objs, err := DeployObjects(o)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	switch format {
	case "json":
		enc := json.NewEncoder(&b)
		enc.SetIndent("", "  ")
		items := make([]any, len(objs))
		for i, x := range objs {
			items[i] = x
		}
		if err := enc.Encode(obj{"apiVersion": "v1", "kind": "List", "items": items}); err != nil {
			return nil, err
		}
	case "yaml", "":
		fmt.Fprintf(&b, deployHeader, o.Namespace)
		if o.ClickHouse != "" {
			fmt.Fprintf(&b, "# With --clickhouse: Secret %s, key \"redact.key\" (the\n# redaction key all collectors of the store share), in namespace %s.\n", redactSecret, o.Namespace)
		}
		if strings.Contains(serverStore(o), "password_file=") {
			fmt.Fprintf(&b, "# With --clickhouse: Secret %s, key \"password\" (the password of\n# the URL's user), also in namespace %s.\n", chSecret, o.Namespace)
		}
		for _, x := range objs {
			b.WriteString("---\n")
			enc := yaml.NewEncoder(&b)
			enc.SetIndent(2)
			if err := enc.Encode(x); err != nil {
				return nil, err
			}
			if err := enc.Close(); err != nil {
				return nil, err
			}
		}
	default:
		return nil, fmt.Errorf("-o %q: want yaml or json", format)
	}
	return b.Bytes(), nil
}

// deployHeader says what the objects need that they do not hold themselves.
const deployHeader = `# kubetrail in-cluster deployment (kubetrail setup deploy; docs/deploy.md).
# Before applying, in namespace %[1]s (not created here):
#   - Secret kubetrail-tls (type kubernetes.io/tls: tls.crt, tls.key, and
#     ca.crt, the CA the collectors verify the server with; the certificate
#     must name kubetrail.%[1]s.svc);
#   - Secret kubetrail-tokens: key "tokens" (every bearer token the server
#     accepts, one a line) and key "collector" (the collectors' token, also
#     a line of "tokens").
# The collector DaemonSet runs as root (uid 0) with no capabilities and a
# read-only root file system: the API server writes audit.log as root with
# mode 0600, which only root can read. Its hostPath volumes need the
# namespace's Pod Security level to be privileged; the server pod meets
# restricted. No RBAC: neither workload uses the Kubernetes API.
`

func labels(component string) obj {
	return obj{"app.kubernetes.io/name": deployName, "app.kubernetes.io/component": component}
}

func metadata(o DeployOptions, name, component string) obj {
	return obj{"name": name, "namespace": o.Namespace, "labels": labels(component)}
}

func networkPolicy(o DeployOptions) obj {
	from := []any{obj{"podSelector": obj{"matchLabels": labels("collector")}}}
	for _, c := range o.AllowFrom {
		from = append(from, obj{"ipBlock": obj{"cidr": c}})
	}
	return obj{
		"apiVersion": "networking.k8s.io/v1",
		"kind":       "NetworkPolicy",
		"metadata":   metadata(o, deployName, "server"),
		"spec": obj{
			"podSelector": obj{"matchLabels": labels("server")},
			"policyTypes": []any{"Ingress"},
			"ingress": []any{obj{
				"from":  from,
				"ports": []any{obj{"port": deployPort, "protocol": "TCP"}},
			}},
		},
	}
}

func service(o DeployOptions) obj {
	return obj{
		"apiVersion": "v1",
		"kind":       "Service",
		"metadata":   metadata(o, deployName, "server"),
		"spec": obj{
			"type":     "ClusterIP",
			"selector": labels("server"),
			"ports": []any{obj{
				"name": "https", "port": deployPort, "targetPort": "https", "protocol": "TCP",
			}},
		},
	}
}

// containerSecurity is both containers' securityContext: no privilege
// escalation, no capability, nothing written outside the volumes.
func containerSecurity() obj {
	return obj{
		"allowPrivilegeEscalation": false,
		"privileged":               false,
		"readOnlyRootFilesystem":   true,
		"capabilities":             obj{"drop": []any{"ALL"}},
	}
}

// goMemLimit lets the Go runtime collect garbage before the container's
// memory limit is reached, instead of being killed at it.
func goMemLimit() []any {
	return []any{obj{
		"name":      "GOMEMLIMIT",
		"valueFrom": obj{"resourceFieldRef": obj{"resource": "limits.memory"}},
	}}
}

func resources(reqCPU, reqMem, limCPU, limMem string) obj {
	return obj{
		"requests": obj{"cpu": reqCPU, "memory": reqMem},
		"limits":   obj{"cpu": limCPU, "memory": limMem},
	}
}

func probe(path string, period, failures int) obj {
	return obj{
		"httpGet":          obj{"path": path, "port": "https", "scheme": "HTTPS"},
		"periodSeconds":    period,
		"failureThreshold": failures,
	}
}

// storeArgs are serve's store flags, bounded at 80% of the volume: the
// embedded store deletes its oldest segments before the disk fills and
// ingest would have to refuse batches; a collector answers 503 (the API
// server keeps its batch) before its spool fills the disk. Collectors
// share one redaction key from a Secret: with a key each (DATA/redact.key
// on each volume) a redacted event retried on another collector would get
// other markers, so other bytes, and count twice.
func storeArgs(o DeployOptions) []any {
	bound := o.StorageGiB * 4 / 5
	if o.ClickHouse != "" {
		return []any{"--store=" + serverStore(o), fmt.Sprintf("--spool-max-bytes=%dGiB", bound),
			"--redact-key-file=" + redactMount + "/redact.key"}
	}
	return []any{fmt.Sprintf("--max-size=%dGiB", bound)}
}

// statefulSet is the central kubetrail serve on a PersistentVolumeClaim:
// one replica with the embedded store (it has one writer), or
// o.Replicas ClickHouse collectors, each with its own spool.
func statefulSet(o DeployOptions) obj {
	pvcSpec := obj{
		"accessModes": []any{"ReadWriteOnce"},
		"resources":   obj{"requests": obj{"storage": fmt.Sprintf("%dGi", o.StorageGiB)}},
	}
	if o.StorageClass != "" {
		pvcSpec["storageClassName"] = o.StorageClass
	}
	args := []any{
		"serve",
		// Not the volume's root: serve makes its data folder 0700,
		// and a root without the group's rwx and setgid would make the
		// kubelet (fsGroupChangePolicy OnRootMismatch) chmod g+rw every
		// file at each start, the redaction key included, which serve
		// then refuses as readable by its group.
		"--data=" + dataDir,
		"--listen=:" + strconv.Itoa(deployPort),
		"--tls-cert=" + tlsMountPath + "/tls.crt",
		"--tls-key=" + tlsMountPath + "/tls.key",
		"--token-file=" + tokenMountPath + "/tokens",
	}
	args = append(append(args, storeArgs(o)...), "--log-json")
	container := obj{
		"name":            "serve",
		"image":           o.Image,
		"imagePullPolicy": "IfNotPresent",
		"args":            args,
		"env":             goMemLimit(),
		"ports":           []any{obj{"name": "https", "containerPort": deployPort, "protocol": "TCP"}},
		// Opening the store replays the write-ahead log, which may take
		// minutes after a crash: the startup probe gives it 10 before the
		// liveness probe may restart the pod.
		"startupProbe":    probe("/healthz", 10, 60),
		"livenessProbe":   probe("/healthz", 10, 3),
		"readinessProbe":  probe("/readyz", 5, 3),
		"resources":       resources("500m", "1Gi", "2", "2Gi"),
		"securityContext": containerSecurity(),
		"volumeMounts": []any{
			obj{"name": "data", "mountPath": volumeMount},
			obj{"name": "tls", "mountPath": tlsMountPath, "readOnly": true},
			obj{"name": "tokens", "mountPath": tokenMountPath, "readOnly": true},
		},
	}
	pod := obj{
		"automountServiceAccountToken": false,
		"enableServiceLinks":           false,
		// fsGroup makes the volume writable by the non-root user; it also
		// makes the Secret files 0440 root:65532, which serve takes (a
		// root-owned file shared with its group only).
		"securityContext": obj{
			"runAsNonRoot":        true,
			"runAsUser":           nonRootUID,
			"runAsGroup":          nonRootUID,
			"fsGroup":             nonRootUID,
			"fsGroupChangePolicy": "OnRootMismatch",
			"seccompProfile":      obj{"type": "RuntimeDefault"},
		},
		// serve seals the write-ahead log on SIGTERM.
		"terminationGracePeriodSeconds": 60,
		"containers":                    []any{container},
		"volumes": []any{
			obj{"name": "tls", "secret": obj{"secretName": tlsSecret, "defaultMode": 0o400, "items": []any{
				obj{"key": "tls.crt", "path": "tls.crt"}, obj{"key": "tls.key", "path": "tls.key"},
			}}},
			obj{"name": "tokens", "secret": obj{"secretName": tokensSecret, "defaultMode": 0o400, "items": []any{
				obj{"key": "tokens", "path": "tokens"},
			}}},
		},
	}
	if o.ClickHouse != "" {
		container["volumeMounts"] = append(container["volumeMounts"].([]any),
			obj{"name": "redact", "mountPath": redactMount, "readOnly": true})
		pod["volumes"] = append(pod["volumes"].([]any),
			obj{"name": "redact", "secret": obj{"secretName": redactSecret, "defaultMode": 0o400, "items": []any{
				obj{"key": "redact.key", "path": "redact.key"},
			}}})
	}
	if strings.Contains(serverStore(o), "password_file=") {
		// The password as a file only serve's group can read: not in the
		// arguments (ps, the StatefulSet) nor the environment (/proc).
		container["volumeMounts"] = append(container["volumeMounts"].([]any),
			obj{"name": "clickhouse", "mountPath": chMountPath, "readOnly": true})
		pod["volumes"] = append(pod["volumes"].([]any),
			obj{"name": "clickhouse", "secret": obj{"secretName": chSecret, "defaultMode": 0o400, "items": []any{
				obj{"key": "password", "path": "password"},
			}}})
	}
	return obj{
		"apiVersion": "apps/v1",
		"kind":       "StatefulSet",
		"metadata":   metadata(o, deployName, "server"),
		"spec": obj{
			"replicas":    o.Replicas,
			"serviceName": deployName,
			"selector":    obj{"matchLabels": labels("server")},
			"template":    obj{"metadata": obj{"labels": labels("server")}, "spec": pod},
			"volumeClaimTemplates": []any{obj{
				"metadata": obj{"name": "data", "labels": labels("server")},
				"spec":     pvcSpec,
			}},
		},
	}
}

// daemonSet runs kubetrail tail on every control-plane node. It runs as
// root because the API server writes audit.log as root with mode 0600:
// fsGroup or a supplementary group cannot help, as the file grants its
// group nothing. Root here has no capability (so no CAP_DAC_OVERRIDE: it
// reads only files root owns), cannot escalate, and sees the log folder
// read-only; the one host folder it writes is its checkpoint's.
func daemonSet(o DeployOptions) obj {
	container := obj{
		"name":            "tail",
		"image":           o.Image,
		"imagePullPolicy": "IfNotPresent",
		"args": []any{
			"tail", auditLogDir + "/audit.log",
			fmt.Sprintf("--server=https://%s.%s.svc:%d", deployName, o.Namespace, deployPort),
			"--state=" + tailStateDir,
			"--token-file=" + tokenMountPath + "/collector",
			"--ca=" + caMountPath + "/ca.crt",
			"--log-json",
		},
		"env":             goMemLimit(),
		"resources":       resources("50m", "64Mi", "500m", "256Mi"),
		"securityContext": containerSecurity(),
		"volumeMounts": []any{
			obj{"name": "audit-log", "mountPath": auditLogDir, "readOnly": true},
			obj{"name": "state", "mountPath": tailStateDir},
			obj{"name": "token", "mountPath": tokenMountPath, "readOnly": true},
			obj{"name": "ca", "mountPath": caMountPath, "readOnly": true},
		},
	}
	pod := obj{
		"automountServiceAccountToken": false,
		"enableServiceLinks":           false,
		"nodeSelector":                 obj{controlPlane: ""},
		"tolerations": []any{obj{
			"key": controlPlane, "operator": "Exists", "effect": "NoSchedule",
		}},
		"securityContext": obj{
			"runAsNonRoot":   false,
			"runAsUser":      0,
			"runAsGroup":     0,
			"seccompProfile": obj{"type": "RuntimeDefault"},
		},
		"containers": []any{container},
		"volumes": []any{
			obj{"name": "audit-log", "hostPath": obj{"path": auditLogDir, "type": "Directory"}},
			obj{"name": "state", "hostPath": obj{"path": tailStateDir, "type": "DirectoryOrCreate"}},
			obj{"name": "token", "secret": obj{"secretName": tokensSecret, "defaultMode": 0o400, "items": []any{
				obj{"key": "collector", "path": "collector"},
			}}},
			// Only the CA of the TLS Secret: the collectors never see the
			// server's key.
			obj{"name": "ca", "secret": obj{"secretName": tlsSecret, "defaultMode": 0o444, "items": []any{
				obj{"key": "ca.crt", "path": "ca.crt"},
			}}},
		},
	}
	return obj{
		"apiVersion": "apps/v1",
		"kind":       "DaemonSet",
		"metadata":   metadata(o, collectorName, "collector"),
		"spec": obj{
			"selector": obj{"matchLabels": labels("collector")},
			"template": obj{"metadata": obj{"labels": labels("collector")}, "spec": pod},
		},
	}
}

func serviceMonitor(o DeployOptions) obj {
	return obj{
		"apiVersion": "monitoring.coreos.com/v1",
		"kind":       "ServiceMonitor",
		"metadata":   metadata(o, deployName, "server"),
		"spec": obj{
			"selector": obj{"matchLabels": labels("server")},
			"endpoints": []any{obj{
				"port":   "https",
				"scheme": "https",
				"path":   "/metrics",
				"tlsConfig": obj{
					"serverName": fmt.Sprintf("%s.%s.svc", deployName, o.Namespace),
					"ca":         obj{"secret": obj{"name": tlsSecret, "key": "ca.crt"}},
				},
			}},
		},
	}
}
