package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/kubetrail/kubetrail/internal/escape"
	"github.com/kubetrail/kubetrail/internal/policy"
	"github.com/kubetrail/kubetrail/internal/policy/profiles"
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
	cmd.AddCommand(policyCheckCmd(e), policyEvalCmd(e), policyInitCmd(e), policyExplainCmd(e), policySimulateCmd(e), policyDiffCmd(e))
	return cmd
}

func policyEvalCmd(e *env) *cobra.Command {
	var policyFile, requestsFile, logFile string
	cmd := &cobra.Command{
		Use:   "eval POLICY (--requests FILE.jsonl | --from-log audit.log)",
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
Use - for standard input, for the policy or for the requests (not both).
POLICY was --policy FILE, which still works.`,
		Example: `  kubetrail policy eval audit-policy.yaml --requests requests.jsonl
  echo '{"user":"alice","verb":"get","resource":"secrets","namespace":"prod","name":"db"}' |
    kubetrail policy eval audit-policy.yaml --requests -
  kubetrail policy eval audit-policy.yaml --from-log /var/log/kubernetes/audit/audit.log`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			policyFile, err := fileArg(e, args, "--policy", policyFile)
			if err != nil {
				return err
			}
			if (requestsFile == "") == (logFile == "") {
				return errors.New("give exactly one of --requests and --from-log")
			}
			if policyFile == "-" && (requestsFile == "-" || logFile == "-") {
				return errors.New("the policy and the requests cannot both come from standard input")
			}
			src, err := readFileArg(policyFile, e.stdin)
			if err != nil {
				return fmt.Errorf("policy file: %w", err)
			}
			p, err := policy.Load(sourceName(policyFile), src)
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
			nbad, err := eval(ev, name, in, e.stdout, func(msg string) { fmt.Fprintln(e.stderr, escape.Line(msg)) })
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
	deprecateFileFlag(cmd, "policy")
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

func policyInitCmd(e *env) *cobra.Command {
	var profile, out string
	var force bool
	cmd := &cobra.Command{
		Use:   "init [--profile minimal|recommended|cks|compliance] [-o FILE]",
		Short: "Write a well-commented starting audit policy",
		Long: `init writes a starting audit.k8s.io/v1 Policy, commented rule by rule:

  minimal      every request at Metadata, nothing else
  recommended  drops health checks and system watches, secrets/configmaps/tokens
               at Metadata only, exec/attach/portforward/proxy and RBAC writes at
               RequestResponse, other writes at Request, reads at Metadata
  cks          what the CKS exam asks for: secrets at Metadata, exec and RBAC
               changes at RequestResponse, namespace-scoped changes at Request
  compliance   nothing dropped, every change at RequestResponse except
               secrets/configmaps/tokens at Metadata

Every profile omits the RequestReceived stage and never logs secret values.
Without -o the policy goes to standard output; -o FILE writes FILE (not a
format: -o yaml is refused), and does not overwrite an existing file unless
--force is given.`,
		Example: `  kubetrail policy init --profile recommended -o /etc/kubernetes/audit-policy.yaml
  kubetrail policy init --profile cks | less`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			data, err := profiles.Get(profile)
			if err != nil {
				return err
			}
			if out == "" || out == "-" {
				_, err := e.stdout.Write(data)
				return err
			}
			if slices.Contains(outputFormats, out) {
				// Elsewhere -o is a format: "-o yaml" here once wrote a
				// file named yaml.
				return fmt.Errorf("-o %q: policy init's -o names the file to write (the policy is always YAML, on standard output without -o); write ./%s for a file of that name", out, out)
			}
			flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
			if force {
				flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
			}
			f, err := os.OpenFile(out, flags, 0o644)
			if err != nil {
				if errors.Is(err, os.ErrExist) {
					return fmt.Errorf("%s exists; use --force to overwrite it", out)
				}
				return err
			}
			if _, err := f.Write(data); err != nil {
				f.Close()
				return err
			}
			if err := f.Close(); err != nil {
				return err
			}
			fmt.Fprintf(e.stderr, "wrote the %s audit policy to %s\n", profile, out)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&profile, "profile", "recommended", "profile: minimal, recommended, cks or compliance")
	f.StringVarP(&out, "output", "o", "", "write the policy to FILE instead of standard output")
	f.BoolVar(&force, "force", false, "overwrite FILE if it exists")
	return cmd
}

func policyExplainCmd(e *env) *cobra.Command {
	var (
		policyFile, user, verb, resource, apiGroup, namespace, name, url string
		output                                                           string
		groups                                                           []string
		unauth                                                           bool
	)
	cmd := &cobra.Command{
		Use:   "explain POLICY (--user U [--group G]... | --unauthenticated) (--verb V --resource RES[/SUB] [-n NS] [--name X] | --url PATH)",
		Short: "Say which rule decides one request's audit level, and why the earlier ones do not",
		Long: `explain decides the audit level of one request, given by flags, and shows
the rule that matched, quoted from the file with its line numbers, the level,
the stages no event is written for and whether managedFields are dropped.
For each earlier rule (every rule when none matched) it says which criterion
excluded the request, in the order the API server checks them: users,
userGroups, verbs, the kind of request (resource or non-resource URL),
namespaces, resources (group, resource, resourceNames), nonResourceURLs.

--resource takes RES, RES/SUB, or kubectl's RES.GROUP form
(deployments.apps, clusterrolebindings.rbac.authorization.k8s.io/status);
without a group the request is in the core group, unless --api-group says
otherwise. For --url the verb is the lowercase HTTP method (default get).

POLICY is a file, or - for standard input (--policy FILE, the old form,
still works). -o json and -o yaml print the same as fields: request, rule
(-1 when none matched), ruleLine, ruleText, level, omitStages,
omitManagedFields and misses (rule, line, criterion, reason).`,
		Example: `  kubetrail policy explain audit-policy.yaml --user alice --group dev \
    --verb create --resource pods/exec -n prod --name web
  kubetrail policy explain audit-policy.yaml --user bob --verb create \
    --resource deployments.apps -n dev -o json
  kubetrail policy init | kubetrail policy explain - --unauthenticated --url /healthz`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			policyFile, err := fileArg(e, args, "--policy", policyFile)
			if err != nil {
				return err
			}
			if !slices.Contains([]string{"text", "json", "yaml"}, output) {
				return fmt.Errorf("-o %q: want text, json or yaml", output)
			}
			spec := policy.RequestSpec{User: user, Groups: groups, Unauthenticated: unauth, Verb: verb,
				Resource: resource, APIGroup: apiGroup, Namespace: namespace, Name: name, URL: url}
			r, err := spec.Request("--")
			if err != nil {
				return err
			}
			src, err := readFileArg(policyFile, e.stdin)
			if err != nil {
				return fmt.Errorf("policy file: %w", err)
			}
			p, err := policy.Load(sourceName(policyFile), src)
			if err != nil {
				var list policy.ErrorList
				if errors.As(err, &list) {
					fmt.Fprintln(e.stderr, err)
					return exitCode(1)
				}
				return err
			}
			x := policy.Explain(p, src, r)
			if output != "text" {
				return writeExplanation(e.stdout, output, r, x)
			}
			printExplanation(e.stdout, sourceName(policyFile), r, x)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&policyFile, "policy", "", "audit policy file (YAML or JSON)")
	deprecateFileFlag(cmd, "policy")
	f.StringVarP(&output, "output", "o", "text", "text, json or yaml")
	f.StringVar(&user, "user", "", "authenticated user name")
	f.StringArrayVar(&groups, "group", nil, "a group of the user (repeat for more)")
	f.BoolVar(&unauth, "unauthenticated", false, "the request carries no user information")
	f.StringVar(&verb, "verb", "get", "verb: get, list, watch, create, update, patch, delete, deletecollection; for --url the lowercase HTTP method")
	f.StringVar(&resource, "resource", "", "resource, as RES, RES/SUB or RES.GROUP[/SUB]: pods/exec, deployments.apps")
	f.StringVar(&apiGroup, "api-group", "", `API group of --resource ("" = core)`)
	f.StringVarP(&namespace, "namespace", "n", "", "namespace (none: a cluster-scoped request)")
	f.StringVar(&name, "name", "", "object name (none: list, watch of a collection, or create)")
	f.StringVar(&url, "url", "", "non-resource URL path, such as /healthz")
	return cmd
}

// outputFormats are the values -o takes as a format in some command.
var outputFormats = []string{"table", "wide", "json", "jsonl", "yaml", "csv", "text", "falco"}

// writeExplanation writes x as JSON or YAML (format).
func writeExplanation(w io.Writer, format string, r *policy.Request, x *policy.Explanation) error {
	out := policy.NewReport(r, x)
	if format == "yaml" {
		enc := yaml.NewEncoder(w)
		enc.SetIndent(2)
		if err := enc.Encode(out); err != nil {
			return err
		}
		return enc.Close()
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

// printExplanation writes x for people.
func printExplanation(w io.Writer, file string, r *policy.Request, x *policy.Explanation) {
	who := "no user information (unauthenticated)"
	if r.User != nil {
		who = fmt.Sprintf("user %q", r.User.Name)
		if len(r.User.Groups) > 0 {
			who += fmt.Sprintf(" in groups %s", strings.Join(r.User.Groups, ", "))
		}
	}
	if r.ResourceRequest {
		res := r.Resource
		if r.Subresource != "" {
			res += "/" + r.Subresource
		}
		group := `core group ""`
		if r.APIGroup != "" {
			group = "group " + r.APIGroup
		}
		where := "cluster-scoped"
		if r.Namespace != "" {
			where = "namespace " + r.Namespace
		}
		name := "no name"
		if r.Name != "" {
			name = "name " + r.Name
		}
		fmt.Fprintf(w, "request: %s, verb %s, resource %s (%s), %s, %s\n", who, r.Verb, res, group, where, name)
	} else {
		fmt.Fprintf(w, "request: %s, verb %s, non-resource URL %s\n", who, r.Verb, r.Path)
	}
	d := x.Decision
	if d.Rule < 0 {
		fmt.Fprintf(w, "\nno rule matches: the request is not logged (level None)\n")
	} else {
		fmt.Fprintf(w, "\nrule %d matches", d.Rule)
		if len(x.Lines) > 0 {
			fmt.Fprintf(w, " (%s:%d)", file, x.Lines[0].Line)
		}
		fmt.Fprintln(w, ":")
		for _, l := range x.Lines {
			width := len(fmt.Sprint(x.Lines[len(x.Lines)-1].Line))
			fmt.Fprintf(w, "  %*d | %s\n", width, l.Line, l.Text)
		}
	}
	stages := "none"
	if len(d.OmitStages) > 0 {
		s := make([]string, len(d.OmitStages))
		for i, st := range d.OmitStages {
			s[i] = string(st)
		}
		stages = strings.Join(s, ", ")
	}
	fmt.Fprintf(w, "\nlevel:             %s\nomitStages:        %s\nomitManagedFields: %t\n", d.Level, stages, d.OmitManagedFields)
	if len(x.Misses) == 0 {
		return
	}
	if d.Rule < 0 {
		fmt.Fprintln(w, "\nwhy no rule matches:")
	} else {
		fmt.Fprintln(w, "\nearlier rules that do not match:")
	}
	for _, m := range x.Misses {
		at := ""
		if m.Pos.Line > 0 {
			at = fmt.Sprintf(" (line %d)", m.Pos.Line)
		}
		fmt.Fprintf(w, "  rule %d%s: %s: %s\n", m.Rule, at, m.Criterion, m.Reason)
	}
}
