package cli

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/kubetrail/kubetrail/internal/setup"
)

func setupCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "setup",
		Short: "Configure the kube-apiserver for auditing",
	}
	cmd.AddCommand(webhookConfigCmd(e))
	return cmd
}

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
a token or key: it is written with mode 0600.`,
		Example: `  kubetrail setup webhook-config --url https://10.0.0.5:8443/ingest/webhook --ca ca.crt --token-file token --out /etc/kubernetes/audit-webhook.yaml
  kubetrail setup webhook-config --url http://127.0.0.1:8443 --out audit-webhook.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
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
