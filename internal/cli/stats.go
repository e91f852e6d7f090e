package cli

import (
	"bufio"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/kubetrail/kubetrail/internal/query"
	"github.com/kubetrail/kubetrail/internal/store/local"
)

func statsCmd(e *env) *cobra.Command {
	var (
		dir          string
		by           string
		top          int
		interval     string
		since, until string
	)
	cmd := &cobra.Command{
		Use:   "stats [FILTER]",
		Short: "Count stored events grouped by fields and time",
		Long: `stats counts the events FILTER selects (all without one), grouped by the
fields in --by and, with --interval, by time bucket. It reads only the
store's columns. Fields: cluster, user, groups, as, verb, resource,
subresource, ns, name, apigroup, apiversion, code, level, stage, ips, ua,
decision, reason, status.`,
		Example: `  kubetrail stats --by user --top 10
  kubetrail stats --by verb,resource 'user=alice'
  kubetrail stats --interval 1h 'code>=400'`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			sel := local.Selection{}
			if len(args) == 1 && strings.TrimSpace(args[0]) != "" {
				f, err := query.Compile(args[0])
				if err != nil {
					if qe, ok := err.(*query.Error); ok {
						fmt.Fprintln(e.stderr, qe.Format(args[0]))
						return exitCode(2)
					}
					return err
				}
				sel.Filter = f
			}
			var err error
			if sel.Since, err = parseTimeFlag("--since", since); err != nil {
				return err
			}
			if sel.Until, err = parseTimeFlag("--until", until); err != nil {
				return err
			}
			var cols []local.Column
			if by != "" {
				for _, name := range strings.Split(by, ",") {
					c, ok := local.ColumnByName(strings.TrimSpace(name))
					if !ok {
						return fmt.Errorf("--by %q: not a field stats can group by (see --help)", name)
					}
					cols = append(cols, c)
				}
			}
			var step time.Duration
			if interval != "" {
				if step, err = parseDuration(interval); err != nil || step <= 0 {
					return fmt.Errorf("--interval %q: want a duration such as 1h or 1d", interval)
				}
			}
			r, err := local.OpenReader(dir)
			if err != nil {
				return err
			}
			defer r.Close()
			groups, total, err := r.Stats(sel, cols, step.Microseconds())
			if err != nil {
				return err
			}
			bw := bufio.NewWriter(e.stdout)
			defer bw.Flush()
			tw := tabwriter.NewWriter(bw, 0, 4, 2, ' ', tabwriter.AlignRight)
			var head []string
			if step > 0 {
				head = append(head, "TIME")
			}
			for _, c := range cols {
				head = append(head, strings.ToUpper(c.String()))
			}
			head = append(head, "COUNT", "SHARE")
			fmt.Fprintln(tw, strings.Join(head, "\t")+"\t")
			shown := 0
			for _, g := range groups {
				if top > 0 && step == 0 && shown >= top {
					break
				}
				shown++
				var cells []string
				if step > 0 {
					cells = append(cells, time.UnixMicro(g.Bucket).UTC().Format("2006-01-02T15:04Z"))
				}
				for _, v := range g.Key {
					if v == "" {
						v = "-"
					}
					cells = append(cells, strings.ReplaceAll(v, local.ListSep, ","))
				}
				cells = append(cells, fmt.Sprint(g.Count), fmt.Sprintf("%.1f%%", 100*float64(g.Count)/float64(max(total, 1))))
				fmt.Fprintln(tw, strings.Join(cells, "\t")+"\t")
			}
			tw.Flush()
			fmt.Fprintf(bw, "%d events in %d groups\n", total, len(groups))
			return nil
		},
	}
	addDataFlag(cmd, &dir)
	f := cmd.Flags()
	f.StringVar(&by, "by", "", "comma-separated fields to group by")
	f.IntVar(&top, "top", 0, "show only the N largest groups (without --interval)")
	f.StringVar(&interval, "interval", "", "also group by time buckets of this size (1h, 1d)")
	f.StringVar(&since, "since", "", "only events at or after this time: RFC 3339, or a duration ago")
	f.StringVar(&until, "until", "", "only events before this time")
	return cmd
}
