package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/kubetrail/kubetrail/internal/audit"
	"github.com/kubetrail/kubetrail/internal/escape"
	"github.com/kubetrail/kubetrail/internal/ingest"
	"github.com/kubetrail/kubetrail/internal/policy"
)

func policyDiffCmd(e *env) *cobra.Command {
	var (
		logs   []string
		max    int
		output string
	)
	cmd := &cobra.Command{
		Use:   "diff A B",
		Short: "Which requests two audit policies log differently, worst first",
		Long: `diff compares two policies and lists each change once: the requests it
applies to (resources as kubectl names them, deployments.apps, secrets
(core), pods/exec (core); verbs; users; namespaces and names when not all),
the level each policy logs them at, the stages logged when they differ,
managedFields when that differs, and the rule of each policy that decides
(index and line). Worst first: credentials starting to be logged, exec or
RBAC changes no longer logged, then requests no longer logged, less logged,
more logged.

A policy tells requests apart only by the values it names, so diff tries a
request for each combination of the values either policy names plus one
value neither names, and finds every request the two log differently.
"Any other resource in apps" is a resource of group apps that neither policy
names (and that is not named in the report); "any other user", "any other
verb" likewise. Requests that neither policy logs (level None in both) do
not differ, whatever their stages. A user in three or more groups the
policies name is not tried.

With --log it also counts, on recorded traffic, the events of each change.
A or B (or --log) may be - for standard input. -o json and -o yaml give the
same as fields: a, b, differences (impact, concern, and changes: requests
with what, verbs, users, namespaces and names, each {} for any value or an
only or except list, and text; a and b with level, stagesLogged,
omitManagedFields, rule and line), more (left out by --max), and with --log
events, eventsDiffering, eventsUnplaced and each difference's events.`,
		Example: `  kubetrail policy diff current.yaml candidate.yaml
  kubetrail policy init | kubetrail policy diff - candidate.yaml -o json
  kubetrail policy diff current.yaml candidate.yaml --log /var/log/kubernetes/audit/`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !slices.Contains([]string{"table", "json", "yaml"}, output) {
				return fmt.Errorf("-o %q: want table, json or yaml", output)
			}
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
			rep := policy.Diff(ps[0], ps[1])
			out := diffOutput{A: sourceName(args[0]), B: sourceName(args[1]), Differences: []diffDifference{}}
			for _, d := range rep.Differences {
				out.Differences = append(out.Differences, diffDifference{Difference: d})
			}
			if len(logs) > 0 {
				files, err := ingest.ExpandPaths(logs)
				if err != nil {
					return err
				}
				c := policy.NewDiffCount(ps[0], ps[1], rep)
				_, err = ingest.EachRecord(cmd.Context(), files, e.stdin, audit.Limits{}, func(r *audit.Record) { c.Add(&r.Event) }, func(audit.Problem) {})
				if err == nil {
					err = stopped(cmd.Context())
				}
				if err != nil {
					return err
				}
				out.Events, out.EventsDiffering, out.EventsUnplaced = &c.Total, &c.Differ, c.Unplaced
				for i := range out.Differences {
					n := c.PerDifference[i]
					out.Differences[i].Events = &n
				}
			}
			if max > 0 && len(out.Differences) > max {
				out.More = len(out.Differences) - max
				out.Differences = out.Differences[:max]
			}
			switch output {
			case "json":
				enc := json.NewEncoder(e.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(&out)
			case "yaml":
				enc := yaml.NewEncoder(e.stdout)
				enc.SetIndent(2)
				if err := enc.Encode(&out); err != nil {
					return err
				}
				return enc.Close()
			}
			printDiff(e.stdout, &out)
			return nil
		},
	}
	cmd.Flags().StringSliceVar(&logs, "log", nil, "recorded audit logs to count each difference's events on")
	cmd.Flags().IntVar(&max, "max", 50, "show at most this many differences, worst first (0: all)")
	cmd.Flags().StringVarP(&output, "output", "o", "table", "table, json or yaml")
	return cmd
}

// diffOutput is what policy diff prints, in every format.
type diffOutput struct {
	A           string           `json:"a" yaml:"a"`
	B           string           `json:"b" yaml:"b"`
	Differences []diffDifference `json:"differences" yaml:"differences"`
	// More is the number of differences --max left out.
	More            int    `json:"more,omitempty" yaml:"more,omitempty"`
	Events          *int64 `json:"events,omitempty" yaml:"events,omitempty"`
	EventsDiffering *int64 `json:"eventsDiffering,omitempty" yaml:"eventsDiffering,omitempty"`
	// EventsUnplaced differ but fall in no difference (users in three or
	// more listed groups).
	EventsUnplaced int64 `json:"eventsUnplaced,omitempty" yaml:"eventsUnplaced,omitempty"`
}

// diffDifference is a policy.Difference with, under --log, the recorded
// events it applies to.
type diffDifference struct {
	policy.Difference `yaml:",inline"`
	Events            *int64 `json:"events,omitempty" yaml:"events,omitempty"`
}

// printDiff writes the differences for people, one block each.
func printDiff(w io.Writer, out *diffOutput) {
	n := len(out.Differences) + out.More
	line := func(format string, a ...any) { fmt.Fprintln(w, escape.Line(fmt.Sprintf(format, a...))) }
	if n == 0 {
		line("A = %s, B = %s: no request is logged differently", out.A, out.B)
	} else {
		line("A = %s, B = %s: %s, worst first", out.A, out.B, plural(n, "difference", "differences"))
	}
	if out.Events != nil {
		line("on recorded traffic: %d of %d events are logged differently", *out.EventsDiffering, *out.Events)
	}
	for i, d := range out.Differences {
		fmt.Fprintln(w)
		head := fmt.Sprintf("%d. %s: %s", i+1, strings.ToUpper(string(d.Impact)), d.Concern)
		if d.Events != nil {
			head += fmt.Sprintf(" (%s recorded)", plural(int(*d.Events), "event", "events"))
		}
		line("%s", head)
		c0 := d.Changes[0]
		if !slices.Equal(c0.A.StagesLogged, c0.B.StagesLogged) {
			line("   stages logged: %s → %s", stagesPhrase(c0.A), stagesPhrase(c0.B))
		}
		if c0.A.OmitManagedFields != c0.B.OmitManagedFields {
			line("   managedFields: %s → %s", managedPhrase(c0.A), managedPhrase(c0.B))
		}
		for _, c := range d.Changes {
			line("   - %s", c.Requests)
			level := fmt.Sprintf("%s → %s", c.A.Level, c.B.Level)
			if c.A.Level == c.B.Level {
				level = fmt.Sprintf("%s in both", c.A.Level)
			}
			line("     level %s (A: %s; B: %s)", level, rulePhrase(c.A), rulePhrase(c.B))
		}
	}
	if out.More > 0 {
		fmt.Fprintln(w)
		line("... and %d more (--max 0 shows all)", out.More)
	}
	if out.EventsUnplaced > 0 {
		fmt.Fprintln(w)
		line("%d recorded events differ from users in three or more groups the policies name, which no difference above stands for", out.EventsUnplaced)
	}
}

func stagesPhrase(o policy.Outcome) string {
	if len(o.StagesLogged) == 0 {
		return "none"
	}
	s := make([]string, len(o.StagesLogged))
	for i, st := range o.StagesLogged {
		s[i] = string(st)
	}
	return strings.Join(s, ", ")
}

func managedPhrase(o policy.Outcome) string {
	if o.OmitManagedFields {
		return "dropped"
	}
	return "kept"
}

func rulePhrase(o policy.Outcome) string {
	if o.Rule < 0 {
		return "no rule"
	}
	if o.Line > 0 {
		return fmt.Sprintf("rule %d, line %d", o.Rule, o.Line)
	}
	return fmt.Sprintf("rule %d", o.Rule)
}
