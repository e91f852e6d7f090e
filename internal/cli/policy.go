package cli

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/kubetrail/kubetrail/internal/policy"
)

func policyCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Check and evaluate audit policies with the API server's exact semantics",
		Long: `policy works with audit.k8s.io/v1 Policy files, the file the kube-apiserver
reads with --audit-policy-file. It decides levels exactly as the API server
does, and it rejects what the API server silently ignores (a misspelled field
such as omitStage), with file:line:column and a suggestion.`,
	}
	cmd.AddCommand(policyEvalCmd(e))
	return cmd
}

func policyEvalCmd(e *env) *cobra.Command {
	var policyFile, requestsFile, logFile string
	cmd := &cobra.Command{
		Use:   "eval --policy FILE (--requests FILE.jsonl | --from-log audit.log)",
		Short: "Decide the audit level of requests, one JSON line in, one out",
		Long: `eval reads requests, one JSON object per line, and writes for each, in the
same order, what the policy decides: the level, the stages no event is
written for, whether managedFields are dropped, and the 0-based index of
the rule that matched (-1 for none).

In (--requests; a missing "user" means a request without user information,
a missing "resourceRequest" means true when "resource" is set):
  {"user":"alice","groups":["dev"],"verb":"get","apiGroup":"","apiVersion":"v1",
   "resource":"pods","subresource":"exec","namespace":"default","name":"web",
   "path":"/api/v1/namespaces/default/pods/web/exec","resourceRequest":true}
Out:
  {"level":"RequestResponse","omitStages":["RequestReceived"],"omitManagedFields":false,"rule":3}

With --from-log, the requests are those of recorded audit events (JSON lines,
plain or gzip), and each answer also gives the event's line, auditID, stage
and recorded level.

A line that is not a valid request is reported on stderr as FILE:LINE and
answered with {"line":N,"error":"..."} in its place; the exit status is then 1.
Use - for standard input.`,
		Example: `  kubetrail policy eval --policy audit-policy.yaml --requests requests.jsonl
  echo '{"user":"alice","verb":"get","resource":"secrets","namespace":"prod","name":"db"}' |
    kubetrail policy eval --policy audit-policy.yaml --requests -
  kubetrail policy eval --policy audit-policy.yaml --from-log /var/log/kubernetes/audit/audit.log`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if policyFile == "" {
				return errors.New("--policy is required")
			}
			if (requestsFile == "") == (logFile == "") {
				return errors.New("give exactly one of --requests and --from-log")
			}
			p, err := policy.LoadFile(policyFile)
			if err != nil {
				var list policy.ErrorList
				if errors.As(err, &list) {
					fmt.Fprintln(e.stderr, err)
					return exitCode(1)
				}
				return err
			}
			ev := policy.NewEvaluator(p)
			name, eval := requestsFile, policy.EvalRequests
			if logFile != "" {
				name, eval = logFile, policy.EvalLog
			}
			in, closeIn, err := policyInput(name, e.stdin)
			if err != nil {
				return err
			}
			defer closeIn()
			nbad, err := eval(ev, name, in, e.stdout, func(msg string) { fmt.Fprintln(e.stderr, msg) })
			if err != nil {
				return err
			}
			if nbad > 0 {
				fmt.Fprintf(e.stderr, "%d bad input lines\n", nbad)
				return exitCode(1)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&policyFile, "policy", "", "audit policy file (YAML or JSON)")
	f.StringVar(&requestsFile, "requests", "", "requests as JSON lines, or - for stdin")
	f.StringVar(&logFile, "from-log", "", "take the requests from a recorded audit log (JSON lines, plain or gzip), or - for stdin")
	return cmd
}

// policyInput opens a file, or stdin for "-".
func policyInput(name string, stdin io.Reader) (io.Reader, func(), error) {
	if name == "-" {
		return stdin, func() {}, nil
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, nil, err
	}
	return f, func() { f.Close() }, nil
}
