package setup

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/kubetrail/kubetrail/internal/suggest"
)

// Severity ranks a Finding.
type Severity string

const (
	// SevError is a mistake that breaks auditing or the API server.
	SevError Severity = "error"
	// SevWarning is a risk or a gap worth fixing.
	SevWarning Severity = "warning"
)

// Finding is one problem in a kube-apiserver static-pod manifest.
type Finding struct {
	File     string   `json:"file"`
	Line     int      `json:"line"`
	Column   int      `json:"column"`
	Severity Severity `json:"severity"`
	Msg      string   `json:"message"`
	Fix      string   `json:"fix,omitempty"`
}

// String formats the finding as FILE:LINE:COL: SEVERITY: MSG; fix: FIX.
func (f Finding) String() string {
	var b strings.Builder
	if f.File != "" {
		b.WriteString(f.File)
		b.WriteByte(':')
	}
	if f.Line > 0 {
		fmt.Fprintf(&b, "%d:%d:", f.Line, f.Column)
	}
	if b.Len() > 0 {
		b.WriteByte(' ')
	}
	b.WriteString(string(f.Severity))
	b.WriteString(": ")
	b.WriteString(f.Msg)
	if f.Fix != "" {
		b.WriteString("; fix: ")
		b.WriteString(f.Fix)
	}
	return b.String()
}

// HasErrors reports whether any finding is an error.
func HasErrors(fs []Finding) bool {
	for _, f := range fs {
		if f.Severity == SevError {
			return true
		}
	}
	return false
}

// CheckOptions tunes CheckManifest.
type CheckOptions struct {
	// Root is the folder the host's paths are looked up under ("/" when
	// empty), so a copy of a node's files can be checked elsewhere.
	Root string
	// NoHost skips the checks against the host's files.
	NoHost bool
}

// CheckManifestFile reads and checks a manifest file.
func CheckManifestFile(file string, opt CheckOptions) ([]Finding, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	return CheckManifest(file, data, opt)
}

// Field names the checker knows, from the Kubernetes core/v1 API.
var (
	volumeFields = []string{"name", "hostPath", "emptyDir", "configMap", "secret", "projected",
		"persistentVolumeClaim", "downwardAPI", "csi", "ephemeral", "image", "nfs", "local"}
	hostPathFields    = []string{"path", "type"}
	volumeMountFields = []string{"name", "mountPath", "readOnly", "subPath", "subPathExpr",
		"mountPropagation", "recursiveReadOnly"}
	containerFields = []string{"name", "image", "command", "args", "workingDir", "ports", "env",
		"envFrom", "resources", "resizePolicy", "restartPolicy", "volumeMounts", "volumeDevices",
		"livenessProbe", "readinessProbe", "startupProbe", "lifecycle", "terminationMessagePath",
		"terminationMessagePolicy", "imagePullPolicy", "securityContext", "stdin", "stdinOnce", "tty"}
	podSpecFields = []string{"volumes", "initContainers", "containers", "ephemeralContainers",
		"restartPolicy", "terminationGracePeriodSeconds", "activeDeadlineSeconds", "dnsPolicy",
		"nodeSelector", "serviceAccountName", "serviceAccount", "automountServiceAccountToken",
		"nodeName", "hostNetwork", "hostPID", "hostIPC", "shareProcessNamespace", "securityContext",
		"imagePullSecrets", "hostname", "subdomain", "affinity", "schedulerName", "tolerations",
		"hostAliases", "priorityClassName", "priority", "dnsConfig", "readinessGates",
		"runtimeClassName", "enableServiceLinks", "preemptionPolicy", "overhead",
		"topologySpreadConstraints", "setHostnameAsFQDN", "os", "hostUsers", "schedulingGates",
		"resourceClaims", "resources"}
	hostPathTypes = []string{"", "DirectoryOrCreate", "Directory", "FileOrCreate", "File",
		"Socket", "CharDevice", "BlockDevice"}
	// auditFlags are the kube-apiserver's --audit-* flags (without batch
	// and truncate tuning, which are matched by prefix).
	auditFlags = []string{"audit-policy-file", "audit-log-path", "audit-log-maxage",
		"audit-log-maxbackup", "audit-log-maxsize", "audit-log-format", "audit-log-compress",
		"audit-log-mode", "audit-log-version", "audit-webhook-config-file", "audit-webhook-mode",
		"audit-webhook-initial-backoff", "audit-webhook-version"}
)

type volume struct {
	node     *yaml.Node // the item
	name     string
	nameNode *yaml.Node
	hostPath string // "" when not a hostPath volume
	hpType   string
	typeNode *yaml.Node
}

type mount struct {
	node      *yaml.Node
	name      string
	nameNode  *yaml.Node
	mountPath string
	readOnly  bool
	roNode    *yaml.Node
	subPath   string
}

type cliFlag struct {
	value string
	node  *yaml.Node
}

type checker struct {
	file     string
	opt      CheckOptions
	findings []Finding
}

func (c *checker) add(n *yaml.Node, sev Severity, fix, format string, args ...any) {
	f := Finding{File: c.file, Severity: sev, Msg: fmt.Sprintf(format, args...), Fix: fix}
	if n != nil {
		f.Line, f.Column = n.Line, n.Column
	}
	c.findings = append(c.findings, f)
}

// CheckManifest checks a kube-apiserver static-pod manifest for every audit
// misconfiguration it can see: malformed volumes and mounts, misspelled
// fields, the audit flags and whether their files are mounted, and (unless
// opt.NoHost) whether the policy file exists on the host. name labels the
// findings. The findings come in file order; an error is returned only
// when the manifest cannot be read as YAML.
func CheckManifest(name string, data []byte, opt CheckOptions) ([]Finding, error) {
	c := &checker{file: name, opt: opt}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s: empty manifest", name)
		}
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	root := deref(&doc)
	if root.Kind == yaml.DocumentNode && len(root.Content) > 0 {
		root = deref(root.Content[0])
	}
	if root.Kind != yaml.MappingNode {
		c.add(root, SevError, "", "a Pod manifest must be a mapping")
		return c.findings, nil
	}
	if k := get(root, "kind"); k != nil && k.Value != "Pod" {
		c.add(k, SevError, "check the right file: /etc/kubernetes/manifests/kube-apiserver.yaml", "kind is %q, want Pod", k.Value)
	}
	spec := get(root, "spec")
	if spec == nil || spec.Kind != yaml.MappingNode {
		c.add(root, SevError, "", "no spec: mapping")
		return c.sorted(), nil
	}
	c.fields(spec, "pod spec", podSpecFields)
	vols := c.volumes(get(spec, "volumes"))
	ctr := c.apiserverContainer(get(spec, "containers"))
	if ctr == nil {
		c.add(spec, SevError, "", "no kube-apiserver container in spec.containers")
		return c.sorted(), nil
	}
	mounts := c.mounts(get(ctr, "volumeMounts"), vols)
	flags := c.flags(ctr)
	c.audit(ctr, flags, mounts, vols)
	return c.sorted(), nil
}

func (c *checker) sorted() []Finding {
	slices.SortStableFunc(c.findings, func(a, b Finding) int {
		if a.Line != b.Line {
			return a.Line - b.Line
		}
		return a.Column - b.Column
	})
	return c.findings
}

func deref(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 100; i++ {
		n = n.Alias
	}
	return n
}

// get returns the value of key in mapping n, or nil.
func get(n *yaml.Node, key string) *yaml.Node {
	n = deref(n)
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return deref(n.Content[i+1])
		}
	}
	return nil
}

// fields reports the keys of mapping n that are not in known.
func (c *checker) fields(n *yaml.Node, what string, known []string) {
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		if k.Kind != yaml.ScalarNode || slices.Contains(known, k.Value) {
			continue
		}
		fix := ""
		if s := suggest.Closest(k.Value, known); s != "" {
			fix = "did you mean " + s + "?"
		}
		c.add(k, SevError, fix, "unknown %s field %q, which the kubelet silently ignores", what, k.Value)
	}
}

func (c *checker) volumes(seq *yaml.Node) []*volume {
	if seq == nil || seq.Kind != yaml.SequenceNode {
		return nil
	}
	var out []*volume
	seen := map[string]bool{}
	for _, it := range seq.Content {
		it = deref(it)
		if it.Kind != yaml.MappingNode {
			c.add(it, SevError, "", "a volume must be a mapping")
			continue
		}
		c.fields(it, "volume", volumeFields)
		v := &volume{node: it}
		if n := get(it, "name"); n != nil {
			v.name, v.nameNode = n.Value, n
		}
		if hp := get(it, "hostPath"); hp != nil && hp.Kind == yaml.MappingNode {
			c.fields(hp, "hostPath", hostPathFields)
			if p := get(hp, "path"); p != nil {
				v.hostPath = p.Value
			}
			if t := get(hp, "type"); t != nil {
				v.hpType, v.typeNode = t.Value, t
				if !slices.Contains(hostPathTypes, t.Value) {
					fix := "use one of " + strings.Join(hostPathTypes[1:], ", ")
					if s := suggest.Closest(t.Value, hostPathTypes[1:]); s != "" {
						fix = "did you mean " + s + "?"
					}
					c.add(t, SevError, fix, "unknown hostPath type %q", t.Value)
				}
			}
		}
		switch {
		case v.name == "":
			c.add(it, SevError, "add a name: line that the volumeMount refers to", "volume without a name: the kubelet rejects the pod and the API server does not start")
		case seen[v.name]:
			c.add(v.nameNode, SevError, "give each volume its own name", "volume name %q used twice", v.name)
		}
		seen[v.name] = true
		out = append(out, v)
	}
	return out
}

func (c *checker) apiserverContainer(seq *yaml.Node) *yaml.Node {
	if seq == nil || seq.Kind != yaml.SequenceNode {
		return nil
	}
	var found *yaml.Node
	for _, it := range seq.Content {
		it = deref(it)
		if it.Kind != yaml.MappingNode {
			continue
		}
		c.fields(it, "container", containerFields)
		if found != nil {
			continue
		}
		if n := get(it, "name"); n != nil && n.Value == "kube-apiserver" {
			found = it
			continue
		}
		if cmd := get(it, "command"); cmd != nil && cmd.Kind == yaml.SequenceNode && len(cmd.Content) > 0 &&
			path.Base(cmd.Content[0].Value) == "kube-apiserver" {
			found = it
		}
	}
	if found == nil && len(seq.Content) == 1 {
		found = deref(seq.Content[0])
	}
	return found
}

func (c *checker) mounts(seq *yaml.Node, vols []*volume) []*mount {
	if seq == nil || seq.Kind != yaml.SequenceNode {
		return nil
	}
	var names []string
	for _, v := range vols {
		if v.name != "" {
			names = append(names, v.name)
		}
	}
	var out []*mount
	for _, it := range seq.Content {
		it = deref(it)
		if it.Kind != yaml.MappingNode {
			c.add(it, SevError, "", "a volumeMount must be a mapping")
			continue
		}
		c.fields(it, "volumeMount", volumeMountFields)
		m := &mount{node: it}
		if n := get(it, "name"); n != nil {
			m.name, m.nameNode = n.Value, n
		}
		if n := get(it, "mountPath"); n != nil {
			m.mountPath = n.Value
		}
		if n := get(it, "subPath"); n != nil {
			m.subPath = n.Value
		}
		if n := get(it, "readOnly"); n != nil {
			m.readOnly, m.roNode = n.Value == "true", n
		}
		switch {
		case m.name == "":
			c.add(it, SevError, "add name: with the volume's name", "volumeMount without a name")
		case !slices.Contains(names, m.name):
			fix := fmt.Sprintf("add a volume named %q to spec.volumes", m.name)
			if v := nameless(vols, m.mountPath); v != nil {
				fix = fmt.Sprintf("add name: %s to the volume at line %d", m.name, v.node.Line)
			} else if s := suggest.Closest(m.name, names); s != "" {
				fix = "did you mean " + s + "?"
			}
			c.add(m.nameNode, SevError, fix, "volumeMount %q has no matching volume: the kubelet rejects the pod", m.name)
		}
		if m.mountPath == "" {
			c.add(it, SevError, "add mountPath:", "volumeMount %q without a mountPath", m.name)
		}
		out = append(out, m)
	}
	return out
}

// nameless returns a volume without a name whose hostPath is p, the usual
// partner of a mount without a volume.
func nameless(vols []*volume, p string) *volume {
	for _, v := range vols {
		if v.name == "" && v.hostPath != "" && path.Clean(v.hostPath) == path.Clean(p) {
			return v
		}
	}
	return nil
}

// flags collects the --audit-* flags from command and args, in both the
// --flag=value and the --flag value forms.
func (c *checker) flags(ctr *yaml.Node) map[string]cliFlag {
	out := map[string]cliFlag{}
	for _, key := range []string{"command", "args"} {
		seq := get(ctr, key)
		if seq == nil || seq.Kind != yaml.SequenceNode {
			continue
		}
		for i := 0; i < len(seq.Content); i++ {
			n := deref(seq.Content[i])
			if !strings.HasPrefix(n.Value, "--audit-") {
				continue
			}
			name, val, ok := strings.Cut(strings.TrimPrefix(n.Value, "--"), "=")
			if !ok && i+1 < len(seq.Content) && !strings.HasPrefix(seq.Content[i+1].Value, "-") {
				i++
				val = seq.Content[i].Value
			}
			if !knownAuditFlag(name) {
				known := slices.Clone(auditFlags)
				fix := ""
				if s := suggest.Closest(name, known); s != "" {
					fix = "did you mean --" + s + "?"
				}
				c.add(n, SevError, fix, "unknown flag --%s: the API server refuses to start", name)
				continue
			}
			if prev, dup := out[name]; dup {
				c.add(n, SevWarning, "remove one of them", "--%s given twice (line %d too); the last one wins", name, prev.node.Line)
			}
			out[name] = cliFlag{value: val, node: n}
		}
	}
	return out
}

func knownAuditFlag(name string) bool {
	if slices.Contains(auditFlags, name) {
		return true
	}
	for _, p := range []string{"audit-log-batch-", "audit-log-truncate-", "audit-webhook-batch-", "audit-webhook-truncate-"} {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// covering returns the mount whose mountPath is p or one of its folders,
// the deepest one when several are.
func covering(mounts []*mount, p string) *mount {
	p = path.Clean(p)
	var best *mount
	for _, m := range mounts {
		if m.mountPath == "" {
			continue
		}
		mp := path.Clean(m.mountPath)
		if mp == p || mp == "/" || strings.HasPrefix(p, mp+"/") {
			if best == nil || len(mp) > len(path.Clean(best.mountPath)) {
				best = m
			}
		}
	}
	return best
}

func volumeFor(vols []*volume, m *mount) *volume {
	for _, v := range vols {
		if v.name != "" && v.name == m.name {
			return v
		}
	}
	return nil
}

func (c *checker) audit(ctr *yaml.Node, flags map[string]cliFlag, mounts []*mount, vols []*volume) {
	at := get(ctr, "name")
	if at == nil {
		at = ctr
	}
	policy, hasPolicy := flags["audit-policy-file"]
	logPath, hasLog := flags["audit-log-path"]
	webhook, hasWebhook := flags["audit-webhook-config-file"]
	switch {
	case !hasLog && !hasWebhook && !hasPolicy:
		c.add(at, SevError, "add --audit-policy-file=/etc/kubernetes/audit-policy.yaml and --audit-log-path=/var/log/kubernetes/audit/audit.log (kubetrail policy init writes a policy)",
			"auditing is not enabled: no --audit-log-path or --audit-webhook-config-file")
		return
	case !hasLog && !hasWebhook:
		c.add(policy.node, SevError, "add --audit-log-path=/var/log/kubernetes/audit/audit.log or --audit-webhook-config-file",
			"--audit-policy-file without --audit-log-path or --audit-webhook-config-file: no audit event is written anywhere")
	case !hasPolicy:
		n := logPath.node
		if !hasLog {
			n = webhook.node
		}
		c.add(n, SevError, "add --audit-policy-file=/etc/kubernetes/audit-policy.yaml (kubetrail policy init writes one)",
			"no --audit-policy-file: without a policy the API server records no events")
	}
	if hasPolicy {
		c.inputFile("policy", policy, mounts, vols, true)
	}
	if hasWebhook {
		c.inputFile("webhook config", webhook, mounts, vols, true)
	}
	if hasLog {
		c.logPath(logPath, flags, mounts, vols)
	}
	for _, name := range []string{"audit-log-maxage", "audit-log-maxbackup", "audit-log-maxsize"} {
		if f, ok := flags[name]; ok {
			if n, err := strconv.Atoi(f.value); err != nil || n < 0 {
				c.add(f.node, SevError, "give a whole number", "--%s=%q is not a non-negative integer: the API server refuses to start", name, f.value)
			}
		}
	}
}

// inputFile checks a file the API server reads: mounted, read-only, with a
// suitable hostPath type, and present on the host.
func (c *checker) inputFile(what string, f cliFlag, mounts []*mount, vols []*volume, checkHost bool) {
	p := f.value
	if p == "" {
		c.add(f.node, SevError, "give the file's path", "--%s flag without a value", strings.SplitN(strings.TrimPrefix(f.node.Value, "--"), "=", 2)[0])
		return
	}
	if !path.IsAbs(p) {
		c.add(f.node, SevWarning, "use an absolute path", "%s file %q is relative to the API server's working directory", what, p)
	}
	hostFile := p // where the file is on the host, assuming the same path when not mounted
	m := covering(mounts, p)
	if m == nil {
		c.add(f.node, SevError,
			fmt.Sprintf("add a volumeMount {mountPath: %s, readOnly: true} and a hostPath volume {path: %s, type: File}", p, p),
			"%s file %s is not in any volumeMount: the API server container cannot read it", what, p)
	} else {
		if !m.readOnly {
			n := m.roNode
			if n == nil {
				n = m.node
			}
			c.add(n, SevWarning, "add readOnly: true", "the mount %q holding the %s file is writable; the API server only reads it", m.name, what)
		}
		if v := volumeFor(vols, m); v != nil && v.hostPath != "" {
			rel := strings.TrimPrefix(strings.TrimPrefix(path.Clean(p), path.Clean(m.mountPath)), "/")
			if m.subPath != "" {
				rel = path.Join(m.subPath, rel)
			}
			hostFile = path.Join(v.hostPath, rel)
			exact := path.Clean(m.mountPath) == path.Clean(p) && m.subPath == ""
			tn := v.typeNode
			if tn == nil {
				tn = v.node
			}
			switch {
			case exact && (v.hpType == "Directory" || v.hpType == "DirectoryOrCreate"):
				c.add(tn, SevError, "use type: File", "the %s file is mounted from a hostPath of type %s", what, v.hpType)
			case exact && v.hpType == "FileOrCreate":
				c.add(tn, SevWarning, "use type: File so a missing file stops the pod with a clear message", "hostPath type FileOrCreate creates an empty %s file when it is missing", what)
			case exact && v.hpType == "":
				c.add(tn, SevWarning, "add type: File", "hostPath volume %q has no type: if %s is missing, the container runtime creates a folder in its place", v.name, v.hostPath)
			case !exact && (v.hpType == "File" || v.hpType == "FileOrCreate"):
				c.add(tn, SevError, "use type: DirectoryOrCreate or Directory", "hostPath volume %q is of type %s but is mounted as the folder holding the %s file", v.name, v.hpType, what)
			}
		}
	}
	if checkHost && !c.opt.NoHost && path.IsAbs(hostFile) {
		root := c.opt.Root
		if root == "" {
			root = "/"
		}
		st, err := os.Stat(filepath.Join(root, filepath.FromSlash(hostFile)))
		switch {
		case err != nil:
			fix := "create it, e.g. kubetrail policy init --profile recommended -o " + hostFile
			if what != "policy" {
				fix = "write it with kubetrail setup webhook-config --url ... --out " + hostFile
			}
			c.add(f.node, SevWarning, fix, "%s file %s does not exist on this host", what, hostFile)
		case st.IsDir():
			c.add(f.node, SevError, "remove the folder and put the file there", "%s file %s is a folder on this host", what, hostFile)
		}
	}
}

func (c *checker) logPath(f cliFlag, flags map[string]cliFlag, mounts []*mount, vols []*volume) {
	p := f.value
	if p == "" {
		c.add(f.node, SevError, "give the log file's path", "--audit-log-path without a value")
		return
	}
	if p == "-" {
		c.add(f.node, SevWarning, "read it with kubectl logs or the node's container log; rotation flags do not apply",
			"--audit-log-path=- writes audit events to the API server's standard output, mixed with its own log")
		return
	}
	if !path.IsAbs(p) {
		c.add(f.node, SevWarning, "use an absolute path", "log path %q is relative to the API server's working directory", p)
	}
	dir := path.Dir(path.Clean(p))
	m := covering(mounts, p)
	if m == nil || path.Clean(m.mountPath) == path.Clean(p) {
		if m == nil {
			c.add(f.node, SevError,
				fmt.Sprintf("add a volumeMount {mountPath: %s, readOnly: false} and a hostPath volume {path: %s, type: DirectoryOrCreate}", dir, dir),
				"the log folder %s is not in any volumeMount: the log stays inside the container and is lost when it restarts", dir)
		} else {
			c.add(m.node, SevWarning, fmt.Sprintf("mount the folder %s instead (type: DirectoryOrCreate)", dir),
				"the log file itself is mounted, not its folder: rotated files stay inside the container")
		}
	}
	if m != nil {
		if m.readOnly {
			c.add(m.roNode, SevError, "set readOnly: false or remove the line", "the mount %q holding the audit log is readOnly: the API server cannot write the log", m.name)
		}
		if v := volumeFor(vols, m); v != nil && v.hostPath != "" && path.Clean(m.mountPath) != path.Clean(p) {
			tn := v.typeNode
			if tn == nil {
				tn = v.node
			}
			switch v.hpType {
			case "File", "FileOrCreate":
				c.add(tn, SevError, "use type: DirectoryOrCreate", "hostPath volume %q holding the log folder is of type %s", v.name, v.hpType)
			case "":
				c.add(tn, SevWarning, "add type: DirectoryOrCreate", "hostPath volume %q for the log folder has no type: a missing folder is not created", v.name)
			}
		}
	}
	_, age := flags["audit-log-maxage"]
	_, backup := flags["audit-log-maxbackup"]
	_, size := flags["audit-log-maxsize"]
	switch {
	case !age && !backup && !size:
		c.add(f.node, SevWarning, "add --audit-log-maxage=30 --audit-log-maxbackup=10 --audit-log-maxsize=100",
			"no rotation flags: the log rotates at 100 MB but every old file is kept until the disk fills")
	case !age && !backup:
		c.add(f.node, SevWarning, "add --audit-log-maxage=30 --audit-log-maxbackup=10",
			"no --audit-log-maxage or --audit-log-maxbackup: rotated files are kept until the disk fills")
	}
}
