package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kubetrail/kubetrail/internal/policy"
)

func policyCheckCmd(e *env) *cobra.Command {
	var (
		output string
		strict bool
	)
	cmd := &cobra.Command{
		Use:   "check FILE|-",
		Short: "Find errors and security problems in an audit policy",
		Long: `check loads an audit policy strictly (unknown or misspelled fields, wrong
types and invalid values are errors with file:line:column, as the API server's
validation would reject them or, worse, silently ignore them) and then lints
it for what makes an audit log leak or miss things:

  error    secrets-above-metadata     secrets, configmaps, tokenreviews or tokens at Request or above
  warning  exec-not-covered           pods/exec, attach or portforward below Request (create or get)
  warning  rbac-writes-below-request  role and binding writes below Request
  warning  resource-without-group     e.g. deployments in the core group: never matches
  warning  star-verb                  "*" in verbs is not a wildcard
  warning  resourcenames-without-name resourceNames with only list/create/watch verbs
  warning  unreachable-rule           a rule an earlier rule always matches first
  warning  no-catch-all               no final rule for requests nothing else matches
  warning  request-received-logged    omitStages lacks RequestReceived
  info     health-checks-logged       /healthz, /readyz, /livez logged
  info     system-watches-logged      kube-proxy's watches logged

A field the API server does not know (a typo such as omitStage) is an
error, but the API server loads such a policy anyway, without the field: the
lint then checks the policy it would apply, so the typo cannot hide what
that policy logs. The exit status is 1 when the policy does not load, has
such fields or has errors, and with --strict also when it has warnings.`,
		Example: `  kubetrail policy check /etc/kubernetes/audit-policy.yaml
  kubetrail policy check policy.yaml -o json --strict`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "text" && output != "json" {
				return fmt.Errorf("-o %q: want text or json", output)
			}
			// Lint what the API server would apply: a field it ignores is
			// reported, and the rest of the policy is still checked, so a
			// typo cannot hide a secret leak behind it.
			src, err := readFileArg(args[0], e.stdin)
			if err != nil {
				return fmt.Errorf("policy file: %w", err)
			}
			name := sourceName(args[0])
			p, ignored, err := policy.LoadAsAPIServer(name, src)
			if err != nil {
				var list policy.ErrorList
				if errors.As(err, &list) || output == "text" {
					if output == "json" {
						json.NewEncoder(e.stdout).Encode(map[string]any{"file": name, "errors": err.Error()})
					} else {
						fmt.Fprintln(e.stderr, err)
					}
					return exitCode(1)
				}
				return err
			}
			var ignoredMsgs []string
			for _, ie := range ignored {
				ignoredMsgs = append(ignoredMsgs, ie.Error())
			}
			findings := policy.Lint(p)
			errs, warns := 0, 0
			for _, f := range findings {
				switch f.Severity {
				case policy.SevError:
					errs++
				case policy.SevWarning:
					warns++
				}
			}
			if output == "json" {
				if findings == nil {
					findings = []policy.Finding{}
				}
				ans := map[string]any{"file": name, "findings": findings}
				if len(ignoredMsgs) > 0 {
					ans["errors"] = strings.Join(ignoredMsgs, "\n")
				}
				json.NewEncoder(e.stdout).Encode(ans)
			} else {
				for _, m := range ignoredMsgs {
					fmt.Fprintln(e.stdout, m)
				}
				if len(ignoredMsgs) > 0 {
					fmt.Fprintf(e.stdout, "%s: the API server would load this policy without the %s above; what it would apply is checked below\n", name, plural(len(ignoredMsgs), "field", "fields"))
				}
				for _, f := range findings {
					where := name
					if f.Line > 0 {
						where = fmt.Sprintf("%s:%d", name, f.Line)
					}
					rule := "policy"
					if f.Rule >= 0 {
						rule = fmt.Sprintf("rule %d", f.Rule)
					}
					fmt.Fprintf(e.stdout, "%s: %s: %s (%s): %s\n    fix: %s\n", where, f.Severity, f.Code, rule, f.Message, f.Fix)
				}
				fmt.Fprintf(e.stdout, "%s: %s, %s, %s, %s\n", name, plural(len(p.Rules), "rule", "rules"), plural(errs+len(ignored), "error", "errors"),
					plural(warns, "warning", "warnings"), plural(len(findings)-errs-warns, "note", "notes"))
			}
			if errs > 0 || len(ignored) > 0 || (strict && warns > 0) {
				return exitCode(1)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "text or json")
	cmd.Flags().BoolVar(&strict, "strict", false, "exit 1 on warnings too")
	return cmd
}

// plural writes "1 rule", "2 rules".
func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
