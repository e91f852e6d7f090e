package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/kubetrail/kubetrail/internal/setup"
)

func setupCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "setup",
		Short: "Configure the kube-apiserver for auditing, or deploy kubetrail in the cluster",
	}
	cmd.AddCommand(webhookConfigCmd(e), setupCheckCmd(e), setupAPIServerCmd(e), setupClickHouseCmd(e), setupDeployCmd(e))
	return cmd
}

func setupCheckCmd(e *env) *cobra.Command {
	var (
		manifest, root, output string
		noHost                 bool
	)
	cmd := &cobra.Command{
		Use:   "check [MANIFEST]",
		Short: "Report every audit misconfiguration in the kube-apiserver static-pod manifest",
		Long: `check reads the kube-apiserver static-pod manifest and reports, with
FILE:LINE:COLUMN and a fix, what would stop auditing from working: a volume
without a name, a volumeMount without a matching volume, misspelled fields
(readonly for readOnly), unknown --audit-* flags, the policy file or the log
folder not mounted (or mounted the wrong way), a hostPath type that does not
fit, no rotation flags, and auditing not enabled at all.

The policy file and the webhook kubeconfig are also looked up on this host
(under --root, "/" by default); a missing file is only a warning, as the
manifest may be checked on another machine. The exit status is 1 when any finding is an error.

MANIFEST is a file, or - for standard input; without it, the kubeadm
path ` + defaultManifest + `. (--manifest FILE, the old form, still works.)`,
		Example: `  kubetrail setup check /etc/kubernetes/manifests/kube-apiserver.yaml
  kubetrail setup check kube-apiserver.yaml --root /mnt/node1 -o json
  ssh node1 cat /etc/kubernetes/manifests/kube-apiserver.yaml | kubetrail setup check - --no-host`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 && manifest == "" {
				manifest = defaultManifest
			}
			manifest, err := fileArg(e, args, "--manifest", manifest)
			if err != nil {
				return err
			}
			if output != "" && output != "text" && output != "json" {
				return fmt.Errorf("-o %q: want text or json", output)
			}
			data, err := readFileArg(manifest, e.stdin)
			if err != nil {
				return err
			}
			manifest = sourceName(manifest)
			fs, err := setup.CheckManifest(manifest, data, setup.CheckOptions{Root: root, NoHost: noHost})
			if err != nil {
				return err
			}
			if output == "json" {
				if fs == nil {
					fs = []setup.Finding{}
				}
				enc := json.NewEncoder(e.stdout)
				enc.SetIndent("", "  ")
				if err := enc.Encode(fs); err != nil {
					return err
				}
			} else {
				for _, f := range fs {
					fmt.Fprintln(e.stdout, f.String())
				}
				if len(fs) == 0 {
					fmt.Fprintf(e.stderr, "%s: no audit misconfiguration found\n", manifest)
				}
			}
			if setup.HasErrors(fs) {
				return exitCode(1)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&manifest, "manifest", "", "the kube-apiserver static-pod manifest")
	deprecateFileFlag(cmd, "manifest")
	f.StringVar(&root, "root", "/", "folder the host's paths (the policy file) are looked up under")
	f.BoolVar(&noHost, "no-host", false, "do not look at the host's files")
	f.StringVarP(&output, "output", "o", "text", "output format: text or json")
	return cmd
}

// defaultManifest is where kubeadm writes the kube-apiserver's manifest.
const defaultManifest = "/etc/kubernetes/manifests/kube-apiserver.yaml"

func webhookConfigCmd(e *env) *cobra.Command {
	var (
		c         setup.WebhookConfig
		tokenFile string
		out       string
	)
	cmd := &cobra.Command{
		Use:   "webhook-config",
		Short: "Write the kubeconfig for the API server's --audit-webhook-config-file",
		Long: `webhook-config writes the kubeconfig file that tells the kube-apiserver where
to send audit batches (--audit-webhook-config-file). Certificates are embedded,
so the file needs no further volume mounts in the static pod. The file may hold
a token or key: it is written with mode 0600, and --token-file and
--client-key are refused when anyone but their owner may read them.`,
		Example: `  kubetrail setup webhook-config --url https://10.0.0.5:8443/ingest/webhook --ca ca.crt --token-file token --out /etc/kubernetes/audit-webhook.yaml
  kubetrail setup webhook-config --url http://127.0.0.1:8443 --out audit-webhook.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if c.ClientKey != "" {
				if err := checkSecretFile("--client-key", c.ClientKey); err != nil {
					return err
				}
			}
			if tokenFile != "" {
				toks, err := readTokens(tokenFile)
				if err != nil {
					return err
				}
				c.Token = toks[0]
			}
			b, err := setup.WebhookKubeconfig(c)
			if err != nil {
				return err
			}
			if out == "" || out == "-" {
				_, err = e.stdout.Write(b)
				return err
			}
			if err := os.WriteFile(out, b, 0o600); err != nil {
				return err
			}
			fmt.Fprintf(e.stderr, "wrote %s; point kube-apiserver at it with --audit-webhook-config-file=%s\n", out, out)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&c.URL, "url", "", "kubetrail's webhook URL (required), e.g. https://HOST:8443/ingest/webhook")
	f.StringVar(&c.CAFile, "ca", "", "CA bundle (PEM) that signed kubetrail's serving certificate")
	f.StringVar(&tokenFile, "token-file", "", "file holding the bearer token kubetrail accepts")
	f.StringVar(&c.Token, "token", "", "bearer token (prefer --token-file: a flag shows in ps)")
	f.StringVar(&c.ClientCert, "client-cert", "", "client certificate (PEM) for mTLS")
	f.StringVar(&c.ClientKey, "client-key", "", "client key (PEM) for mTLS")
	f.StringVar(&c.Cluster, "cluster", "", "cluster name to tag this API server's events with")
	f.BoolVar(&c.InsecureSkipTLSVerify, "insecure-skip-tls-verify", false, "do not verify kubetrail's certificate (testing only)")
	f.StringVar(&out, "out", "", "file to write (default: stdout)")
	cmd.MarkFlagRequired("url")
	return cmd
}

func setupAPIServerCmd(e *env) *cobra.Command {
	var (
		manifest, root string
		opt            setup.PatchOptions
		write, noHost  bool
	)
	cmd := &cobra.Command{
		Use:   "apiserver --policy PATH --log-path PATH [--write]",
		Short: "Enable auditing in the kube-apiserver static-pod manifest",
		Long: `apiserver patches the kube-apiserver static-pod manifest to enable auditing:
it sets the --audit-policy-file, --audit-log-path, --audit-log-maxage,
--audit-log-maxbackup, --audit-log-maxsize and (with --webhook-config)
--audit-webhook-config-file flags, replacing them when they are already there,
and adds hostPath volumes and volumeMounts for the policy and the webhook
config (type File, readOnly) and for the log folder (type DirectoryOrCreate,
writable), reusing those already there for the same paths. Comments and key
order are kept. Running it again changes nothing.

It prints a unified diff of the change and the findings of setup check on the
result. The file is written only with --write: the original is copied to
.FILE.kubetrail-backup-TIMESTAMP beside it (mode 0600; the leading dot keeps
the kubelet from running it as a second pod) and the new file replaces it
atomically, with the same mode. The exit status is 1 when setup check finds
an error in the result (nothing is written then).`,
		Example: `  kubetrail setup apiserver --policy /etc/kubernetes/audit-policy.yaml --log-path /var/log/kubernetes/audit/audit.log
  sudo kubetrail setup apiserver --policy /etc/kubernetes/audit-policy.yaml --log-path /var/log/kubernetes/audit/audit.log --write`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if manifest == "" || opt.Policy == "" || opt.LogPath == "" {
				return errors.New("--manifest, --policy and --log-path are required")
			}
			old, err := os.ReadFile(manifest)
			if err != nil {
				return err
			}
			patched, notes, err := setup.PatchManifest(old, opt)
			if err != nil {
				return fmt.Errorf("%s: %w", manifest, err)
			}
			for _, n := range notes {
				fmt.Fprintf(e.stderr, "%s: note: %s\n", manifest, n)
			}
			diff := setup.UnifiedDiff(manifest, manifest+" (patched)", old, patched)
			if diff == "" {
				fmt.Fprintf(e.stderr, "%s: auditing is already set up as asked; nothing to change\n", manifest)
			} else {
				fmt.Fprint(e.stdout, diff)
			}
			fs, err := setup.CheckManifest(manifest, patched, setup.CheckOptions{Root: root, NoHost: noHost})
			if err != nil {
				return err
			}
			for _, f := range fs {
				fmt.Fprintln(e.stderr, "setup check: "+f.String())
			}
			if setup.HasErrors(fs) {
				if write && diff != "" {
					fmt.Fprintf(e.stderr, "%s: not written: setup check finds errors in the result\n", manifest)
				}
				return exitCode(1)
			}
			if diff == "" {
				return nil
			}
			if !write {
				fmt.Fprintf(e.stderr, "%s: not written; run again with --write to apply\n", manifest)
				return nil
			}
			backup, err := setup.WriteManifest(manifest, patched, time.Now())
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stderr, "wrote %s (backup in %s); the kubelet restarts the API server\n", manifest, backup)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&manifest, "manifest", "/etc/kubernetes/manifests/kube-apiserver.yaml", "the kube-apiserver static-pod manifest")
	f.StringVar(&opt.Policy, "policy", "", "audit policy file on the node (--audit-policy-file), required")
	f.StringVar(&opt.LogPath, "log-path", "", "audit log file on the node (--audit-log-path), required")
	f.IntVar(&opt.MaxAge, "max-age", 30, "days to keep rotated log files (--audit-log-maxage)")
	f.IntVar(&opt.MaxBackup, "max-backup", 10, "rotated log files to keep (--audit-log-maxbackup)")
	f.IntVar(&opt.MaxSize, "max-size", 100, "megabytes before the log rotates (--audit-log-maxsize)")
	f.StringVar(&opt.WebhookConfig, "webhook-config", "", "webhook kubeconfig (--audit-webhook-config-file), see setup webhook-config")
	f.BoolVar(&write, "write", false, "write the patched manifest (with a backup)")
	f.StringVar(&root, "root", "/", "folder the host's paths (the policy file) are looked up under by the check")
	f.BoolVar(&noHost, "no-host", false, "do not look at the host's files in the check")
	return cmd
}

func setupDeployCmd(e *env) *cobra.Command {
	o := setup.DefaultDeploy()
	var size, output string
	cmd := &cobra.Command{
		Use:   "deploy [--namespace NS] [--image IMG] [--storage-class SC] [--clickhouse URL [--replicas N]] [--service-monitor] [-o yaml|json]",
		Short: "Print the manifests of an in-cluster deployment (central serve and a collector per control-plane node)",
		Long: `deploy prints the Kubernetes objects of an in-cluster kubetrail, all in
namespace --namespace (which it does not create): a StatefulSet running
kubetrail serve on a PersistentVolumeClaim, with TLS and bearer tokens from
Secrets, probes on /healthz and /readyz, resource requests and limits, and a
non-root, read-only, capability-free security context; its Service; a
NetworkPolicy that admits only the collectors and --allow-from on the
server's port; a DaemonSet running kubetrail tail on every control-plane node
(the audit log folder mounted read-only, the checkpoint in
/var/lib/kubetrail-tail on the node), shipping to the Service; and with
--service-monitor a Prometheus Operator ServiceMonitor. No RBAC is needed:
neither workload uses the Kubernetes API, so no token is mounted.

The collector runs as root, with no capabilities and a read-only root file
system: the API server writes audit.log as root with mode 0600, and only root
can read it. The Secrets kubetrail-tls and kubetrail-tokens are created by
you (docs/deploy.md). The Helm chart deploy/helm/kubetrail renders the same
objects.

With --clickhouse URL (clickhouse://[USER@]HOST[:PORT]/DB[?cluster=NAME], or
clickhouses:// for HTTPS) the servers are ClickHouse collectors (serve
--store URL, docs/clickhouse.md): --replicas of them, each acknowledging into
the write-ahead spool on its own volume (--spool-max-bytes 80% of
--storage-size) and shipping to ClickHouse; copies count once. A USER's
password is read from Secret kubetrail-clickhouse, key "password", mounted as
a file: a password in the URL is refused, as it would be in the pod's
arguments. The collectors share one redaction key, Secret kubetrail-redact,
key "redact.key" (--redact-key-file), so a copy gets the same markers. The Service, the NetworkPolicy (ingress only: egress to ClickHouse
is not restricted) and the collector DaemonSet stay as they are.`,
		Example: `  kubectl create namespace kubetrail
  kubectl label namespace kubetrail pod-security.kubernetes.io/enforce=privileged
  kubetrail setup deploy --image registry.example/kubetrail:v1 --allow-from 10.0.0.0/24 | kubectl apply -f -
  kubetrail setup deploy --namespace audit --storage-class fast --storage-size 100Gi --service-monitor -o json
  kubetrail setup deploy --clickhouse clickhouses://kubetrail@ch.example:8443/kubetrail --replicas 3`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			n, err := setup.ParseGiB(size)
			if err != nil {
				return err
			}
			o.StorageGiB = n
			b, err := setup.RenderDeploy(o, output)
			if err != nil {
				return err
			}
			_, err = e.stdout.Write(b)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.Namespace, "namespace", "n", o.Namespace, "namespace of every object (create it first)")
	f.StringVar(&o.Image, "image", o.Image, "kubetrail container image (make image builds it)")
	f.StringVar(&o.StorageClass, "storage-class", "", "StorageClass of the server's volume (default: the cluster's default class)")
	f.StringVar(&size, "storage-size", strconv.Itoa(o.StorageGiB)+"Gi", "size of the server's volume, in whole Gi; the store is kept under 80% of it")
	f.BoolVar(&o.ServiceMonitor, "service-monitor", false, "add a Prometheus Operator ServiceMonitor (needs its CRD)")
	f.StringArrayVar(&o.AllowFrom, "allow-from", nil, "CIDR allowed to reach the server besides the collectors (repeatable): the control-plane nodes for the audit webhook, Prometheus, the analysts")
	f.StringVar(&o.ClickHouse, "clickhouse", "", "make the servers ClickHouse collectors storing into this URL: clickhouse://[USER@]HOST[:PORT]/DB (clickhouses:// for HTTPS); USER's password from Secret kubetrail-clickhouse")
	f.IntVar(&o.Replicas, "replicas", o.Replicas, "number of servers; more than 1 only with --clickhouse")
	f.StringVarP(&output, "output", "o", "yaml", "output format: yaml or json")
	return cmd
}
