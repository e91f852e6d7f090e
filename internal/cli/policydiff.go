package cli

import (
	"fmt"
	"slices"

	"github.com/spf13/cobra"

	"github.com/kubetrail/kubetrail/internal/audit"
	"github.com/kubetrail/kubetrail/internal/escape"
	"github.com/kubetrail/kubetrail/internal/ingest"
	"github.com/kubetrail/kubetrail/internal/policy"
)

func policyDiffCmd(e *env) *cobra.Command {
	var (
		logs []string
		max  int
	)
	cmd := &cobra.Command{
		Use:   "diff A B",
		Short: "Which requests two audit policies log differently",
		Long: `diff compares two policies. A policy tells requests apart only by the values
it names (users, groups, verbs, resources, namespaces, names, URLs), so diff
builds a request for each combination of the values either policy names plus
one value neither names, and reports every kind of request whose level,
omitted stages or omitManagedFields differ, with "*" where a field does not
matter. Groups are tried one at a time.

With --log it also counts, on recorded traffic, the events the two policies
treat differently, most frequent first.`,
		Example: `  kubetrail policy diff current.yaml candidate.yaml
  kubetrail policy diff current.yaml candidate.yaml --log /var/log/kubernetes/audit/`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			var ps [2]*policy.Policy
			if args[0] == "-" && args[1] == "-" || (args[0] == "-" || args[1] == "-") && slices.Contains(logs, "-") {
				return fmt.Errorf("only one input can come from standard input (-)")
			}
			for i, f := range args {
				p, err := loadPolicyArg(e, f)
				if err != nil {
					return err
				}
				ps[i] = p
			}
			diffs := policy.Diff(ps[0], ps[1])
			fmt.Fprintf(e.stdout, "%d kinds of request are logged differently (A = %s, B = %s)\n", len(diffs), args[0], args[1])
			for i, d := range diffs {
				if max > 0 && i >= max {
					fmt.Fprintf(e.stdout, "  ... and %d more (--max 0 shows all)\n", len(diffs)-max)
					break
				}
				fmt.Fprintf(e.stdout, "  %s\n", escape.Line(fmt.Sprint(d)))
			}
			if len(logs) == 0 {
				return nil
			}
			files, err := ingest.ExpandPaths(logs)
			if err != nil {
				return err
			}
			c := policy.NewDiffCount(ps[0], ps[1])
			_, err = ingest.EachRecord(cmd.Context(), files, e.stdin, audit.Limits{}, func(r *audit.Record) { c.Add(&r.Event) }, func(audit.Problem) {})
			if err == nil {
				err = stopped(cmd.Context())
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stdout, "\non recorded traffic: %d of %d events are logged differently\n", c.Differ, c.Total)
			for _, t := range c.Top(20) {
				fmt.Fprintf(e.stdout, "  %9d  %s\n", t.Count, escape.Line(t.What))
			}
			return nil
		},
	}
	cmd.Flags().StringSliceVar(&logs, "log", nil, "recorded audit logs to count differences on")
	cmd.Flags().IntVar(&max, "max", 50, "show at most this many kinds of difference (0: all)")
	return cmd
}
