package cli

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/kubetrail/kubetrail/internal/audit"
	"github.com/kubetrail/kubetrail/internal/escape"
	"github.com/kubetrail/kubetrail/internal/ingest"
	"github.com/kubetrail/kubetrail/internal/policy"
	"github.com/kubetrail/kubetrail/internal/store/local"
)

func policySimulateCmd(e *env) *cobra.Command {
	var (
		logs     []string
		dir      string
		baseline string
	)
	cmd := &cobra.Command{
		Use:   "simulate POLICY (--log FILE... | --data DIR)",
		Short: "Replay a recorded audit log under a candidate policy: volume, levels, secrets",
		Long: `simulate replays recorded events under POLICY and reports what it would
log: events and bytes per rule and per level, projected bytes per day,
events dropped by omitStages, and secrets, configmaps or tokens it would
write with their contents. With --baseline it does the same for another
policy, side by side.

A log recorded at a higher level than the candidate asks for is cut down
exactly (the bodies the lower level leaves out are subtracted). Where the
candidate asks for more than was recorded, the bodies are not in the log:
those events are counted as "unknown" and their size is a lower bound.`,
		Example: `  kubetrail policy simulate new-policy.yaml --log /var/log/kubernetes/audit/
  kubetrail policy simulate new-policy.yaml --data ./kubetrail-data --baseline current.yaml`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if (len(logs) == 0) == (dir == "") {
				return fmt.Errorf("give recorded events with --log FILE... or --data DIR (one of them)")
			}
			if (args[0] == "-" || baseline == "-") && (slices.Contains(logs, "-") || args[0] == baseline) {
				return fmt.Errorf("only one input can come from standard input (-)")
			}
			load := func(path string) (*policy.Policy, error) { return loadPolicyArg(e, path) }
			cand, err := load(args[0])
			if err != nil {
				return err
			}
			sims := []*policy.Simulator{policy.NewSimulator(cand)}
			names := []string{args[0]}
			if baseline != "" {
				base, err := load(baseline)
				if err != nil {
					return err
				}
				sims = append(sims, policy.NewSimulator(base))
				names = append(names, baseline)
			}
			add := func(ev *audit.Event, size int) {
				for _, s := range sims {
					s.Add(ev, size)
				}
			}
			skipped := 0
			if dir != "" {
				var ev audit.Event
				err = local.Scan(dir, local.ScanOptions{}, func(s local.Stored) error {
					if err := stopped(cmd.Context()); err != nil {
						return err
					}
					if err := audit.DecodeStored(s.Raw, &ev); err != nil {
						return err
					}
					add(&ev, len(s.Raw)+1)
					return nil
				})
			} else {
				files, ferr := ingest.ExpandPaths(logs)
				if ferr != nil {
					return ferr
				}
				var n int64
				n, err = ingest.EachRecord(cmd.Context(), files, e.stdin, audit.Limits{}, func(r *audit.Record) {
					add(&r.Event, len(r.Raw)+1)
				}, func(audit.Problem) {})
				skipped = int(n)
			}
			var damage *local.DamageError
			if errors.As(err, &damage) {
				err = nil // the simulation of every intact event is printed, then the damage
			}
			if err == nil {
				err = stopped(cmd.Context()) // a report on part of the log would mislead
			}
			if err != nil {
				return err
			}
			printSimulation(e, names, sims, skipped)
			if damage != nil {
				return damage
			}
			return nil
		},
	}
	cmd.Flags().StringSliceVar(&logs, "log", nil, "recorded audit log files, folders or globs (JSON lines, .gz)")
	addDataFlag(cmd, &dir)
	cmd.Flags().Lookup("data").DefValue = ""
	dir = ""
	cmd.Flags().StringVar(&baseline, "baseline", "", "another policy to compare with (the one in force)")
	return cmd
}

func printSimulation(e *env, names []string, sims []*policy.Simulator, skipped int) {
	s0 := &sims[0].Sim
	span := time.Duration(s0.LastTime-s0.FirstTime) * time.Microsecond
	fmt.Fprintf(e.stdout, "recorded: %s, %s over %s", plural(int(s0.Events), "event", "events"), humanBytes(s0.Bytes), recordingLength(span))
	if skipped > 0 {
		fmt.Fprintf(e.stdout, " (%d unusable lines skipped)", skipped)
	}
	fmt.Fprintln(e.stdout)
	// A day's volume projected from minutes of log is mostly noise (a
	// burst of kubectl, a controller's resync): say so instead of
	// printing it as a figure to plan disks with.
	shortLog := span < time.Hour
	if shortLog {
		fmt.Fprintf(e.stderr, "kubetrail: warning: the recording covers %s, less than an hour: the per-day figures are not projected (record at least a few hours, ideally a day, for them)\n", recordingLength(span))
	}
	for k, sim := range sims {
		s := &sim.Sim
		fmt.Fprintf(e.stdout, "\npolicy %s:\n", names[k])
		w := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', tabwriter.AlignRight)
		perDay := humanBytes(int64(s.PerDay())) + "/day"
		if shortLog {
			perDay = "-/day"
		}
		fmt.Fprintf(w, "  logged\t%d events\t%s\t%s\t\n", s.Kept, humanBytes(s.KeptBytes), perDay)
		levels := make([]string, 0, len(s.ByLevel))
		for l := range s.ByLevel {
			levels = append(levels, string(l))
		}
		sort.Strings(levels)
		for _, l := range levels {
			t := s.ByLevel[audit.Level(l)]
			fmt.Fprintf(w, "  level %s\t%d events\t%s\t\t\n", escape.Line(l), t.Events, humanBytes(t.Bytes))
		}
		for _, r := range s.Rules() {
			t := s.ByRule[r]
			name := fmt.Sprintf("rule %d", r)
			if r < 0 {
				name = "no rule (None)"
			}
			fmt.Fprintf(w, "  %s\t%d events\t%s\t\t\n", name, t.Events, humanBytes(t.Bytes))
		}
		for st, n := range s.StagesDropped {
			fmt.Fprintf(w, "  dropped stage %s\t%d events\t\t\t\n", escape.Line(string(st)), n)
		}
		w.Flush()
		if s.Unknown > 0 {
			fmt.Fprintf(e.stdout, "  note: %d events are asked at a higher level than they were recorded at; their bodies are not in the log, so sizes are lower bounds\n", s.Unknown)
		}
		if s.SecretsExposed > 0 {
			fmt.Fprintf(e.stdout, "  SECRETS: %d events on secrets, configmaps or tokens would be logged with their contents, for example:\n", s.SecretsExposed)
			for _, ex := range s.Examples {
				times := ""
				if ex.Count > 1 {
					times = fmt.Sprintf(" (%d times)", ex.Count)
				}
				fmt.Fprintf(e.stdout, "    %s%s\n", escape.Line(ex.What), times)
			}
		}
	}
}

// recordingLength says how long a recording is, in the largest unit that
// reads well: 6.2 seconds, 1 minute 21 seconds, 45 minutes, 3.5 hours,
// 2.0 days.
func recordingLength(d time.Duration) string {
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%.1f seconds", d.Seconds())
	case d < 10*time.Minute:
		m, sec := int(d/time.Minute), int(d%time.Minute/time.Second)
		return plural(m, "minute", "minutes") + " " + plural(sec, "second", "seconds")
	case d < time.Hour:
		return fmt.Sprintf("%.0f minutes", d.Minutes())
	case d < 48*time.Hour:
		return fmt.Sprintf("%.1f hours", d.Hours())
	}
	return fmt.Sprintf("%.1f days", d.Hours()/24)
}
