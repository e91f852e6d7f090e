package cli

import (
	"bufio"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/kubetrail/kubetrail/internal/escape"
	"github.com/kubetrail/kubetrail/internal/query"
	"github.com/kubetrail/kubetrail/internal/server"
	"github.com/kubetrail/kubetrail/internal/store"
	"github.com/kubetrail/kubetrail/internal/store/local"
	"github.com/kubetrail/kubetrail/internal/timespec"
)

func statsCmd(e *env) *cobra.Command {
	var (
		dir      string
		by       string
		top      int
		interval string
		tf       timeFlags
		bytes    bool
		sortBy   string
		output   string
		remote   remoteFlags
		nsf      nsFlags
		st       storeFlag
	)
	cmd := &cobra.Command{
		Use:   "stats [FILTER]",
		Short: "Count stored events, and their bytes, grouped by fields and time",
		Long: `stats counts the events FILTER selects (all without one), grouped by the
fields in --by and, with --interval, by time bucket. It reads only the
store's columns. Fields: cluster, user, groups, as, verb, resource,
subresource, ns, name, apigroup, apiversion, code, level, stage, ips, ua,
decision, reason, status.

--bytes also adds up the stored size of each group's events (each event's
stored JSON line, newline not counted), its share of the selected bytes and
the average event size, and orders the groups by bytes: which user or
resource fills the log. Segments keep each event's length, so --bytes
costs little more than counts (segments written before format v3 are read
to measure their events). --sort count or bytes chooses
the order (with --top N, the N largest by that).

--interval takes 1s to 366d. Buckets start at multiples of the interval
since 1970-01-01 UTC (1d buckets at midnight UTC), and are labelled to
the minute, or to the second when the interval is not whole minutes.

Without --by or --interval, stats prints the total and the five largest
users, verbs, resources and codes. -o json prints exactly the body of
GET /api/v1/stats for the same question; -o csv the table's rows.

--store clickhouse://HOST:8123/DB counts in a ClickHouse store (made by
kubetrail setup clickhouse) instead of --data, with GROUP BY in ClickHouse.`,
		Example: `  kubetrail stats --by user --top 10
  kubetrail stats --by user --bytes --top 10
  kubetrail stats --by resource,level --bytes --sort count
  kubetrail stats --by verb,resource 'user=alice'
  kubetrail stats --interval 1h 'code>=400'`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !slices.Contains([]string{"table", "json", "csv"}, output) {
				return fmt.Errorf("-o %q: want table, json or csv", output)
			}
			sel := local.Selection{}
			src := ""
			if len(args) == 1 && strings.TrimSpace(args[0]) != "" {
				src = args[0]
				f, err := query.Compile(src)
				if err != nil {
					if qe, ok := err.(*query.Error); ok {
						fmt.Fprintln(e.stderr, qe.Format(src))
						return exitCode(2)
					}
					return err
				}
				sel.Filter = f
				for _, w := range f.Warnings() {
					fmt.Fprintf(e.stderr, "kubetrail: warning: %s\n", escape.Text(w))
				}
			}
			var err error
			if err := nsf.check(); err != nil {
				return err
			}
			if nsf.ns != "" {
				if sel.Filter, err = nsf.apply(sel.Filter, time.Now()); err != nil {
					return err
				}
				src = sel.Filter.String()
			}
			if sel.Since, sel.Until, err = tf.bounds(time.Now()); err != nil {
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
				if step, err = timespec.ParseDuration(interval); err != nil {
					return fmt.Errorf("--interval %q: %w", interval, err)
				}
				if err := local.CheckInterval(step); err != nil {
					return fmt.Errorf("--interval %q: %w", interval, err)
				}
			}
			if top < 0 {
				return fmt.Errorf("--top %d: want 0 (all) or more", top)
			}
			switch sortBy {
			case "":
				sortBy = "count"
				if bytes {
					sortBy = "bytes"
				}
			case "count":
			case "bytes":
				bytes = true
			default:
				return fmt.Errorf("--sort %q: want count or bytes", sortBy)
			}
			o := local.StatsOptions{By: cols, Interval: step.Microseconds(), Bytes: bytes, ByBytes: sortBy == "bytes"}
			var sr store.Reader
			if st.url != "" {
				if sr, err = st.open(cmd.Context(), &remote); err != nil {
					return err
				}
				defer sr.Close()
			}
			ask := func(o local.StatsOptions, top int) (statsResult, error) {
				if sr != nil {
					groups, total, err := sr.Stats(cmd.Context(), sel, o)
					return statsResult{groups: groups, total: total, nGroups: len(groups)}, err
				}
				if remote.url != "" {
					return remoteStats(cmd.Context(), &remote, src, sel, o, top)
				}
				return localStats(dir, sel, o)
			}
			ans, err := ask(o, top)
			var damage *local.DamageError
			if errors.As(err, &damage) {
				err = nil // printed, then reported
			}
			if err != nil {
				return err
			}
			switch {
			case output == "json":
				enc := json.NewEncoder(e.stdout)
				if err := enc.Encode(server.NewStatsAnswer(ans.groups, ans.total, ans.nGroups, o, top)); err != nil {
					return err
				}
			case output == "csv":
				if err := printStatsCSV(e.stdout, ans, o, top); err != nil {
					return err
				}
			case len(o.By) == 0 && o.Interval == 0:
				if err := printStatsSummary(e.stdout, ans, o, ask); err != nil {
					return err
				}
			default:
				if err := printStats(e.stdout, ans, o, top); err != nil {
					return err
				}
			}
			if damage != nil {
				return damage
			}
			return remote.damaged(nil)
		},
	}
	addDataFlag(cmd, &dir)
	remote.add(cmd)
	nsf.add(cmd)
	st.add(cmd)
	f := cmd.Flags()
	f.StringVar(&by, "by", "", "comma-separated fields to group by")
	f.IntVar(&top, "top", 0, "show only the N largest groups (without --interval)")
	f.StringVar(&interval, "interval", "", "also group by time buckets of this size (1h, 1d), from 1s to 366d; buckets start at multiples of it since 1970-01-01 UTC")
	tf.add(cmd)
	f.BoolVar(&bytes, "bytes", false, "also sum each group's stored event bytes, and order by them")
	f.StringVar(&sortBy, "sort", "", "order groups by count or bytes (default: bytes with --bytes, else count)")
	f.StringVarP(&output, "output", "o", "table", "table, json (the body of GET /api/v1/stats) or csv")
	return cmd
}

// statsResult is a statistics answer, from the store or from a server.
type statsResult struct {
	groups []local.Group
	total  local.Totals
	// nGroups is the number of groups before --top.
	nGroups int
}

func localStats(dir string, sel local.Selection, o local.StatsOptions) (statsResult, error) {
	r, err := local.OpenReader(dir)
	if err != nil {
		return statsResult{}, err
	}
	defer r.Close()
	groups, total, err := r.StatsOf(sel, o)
	return statsResult{groups: groups, total: total, nGroups: len(groups)}, withDamage(r, err)
}

// remoteStats asks a server's /api/v1/stats. The time bounds go as the
// absolute times they mean here, so both ends agree on "2h ago".
func remoteStats(ctx context.Context, r *remoteFlags, src string, sel local.Selection, o local.StatsOptions, top int) (statsResult, error) {
	q := url.Values{}
	if src != "" {
		q.Set("filter", src)
	}
	var by []string
	for _, c := range o.By {
		by = append(by, c.String())
	}
	if len(by) > 0 {
		q.Set("by", strings.Join(by, ","))
	}
	if o.Interval > 0 {
		q.Set("interval", (time.Duration(o.Interval) * time.Microsecond).String())
	}
	setTimeParams(q, sel.Since, sel.Until)
	if top > 0 {
		q.Set("top", strconv.Itoa(top))
	}
	if o.Bytes {
		q.Set("bytes", "1")
	}
	if o.ByBytes {
		q.Set("sort", "bytes")
	}
	resp, err := r.do(ctx, "/api/v1/stats", q)
	if err != nil {
		return statsResult{}, err
	}
	defer resp.Body.Close()
	var ans struct {
		Total       int64 `json:"total"`
		TotalBytes  int64 `json:"totalBytes"`
		TotalGroups int   `json:"totalGroups"`
		Groups      []struct {
			Key   map[string]string `json:"key"`
			Time  time.Time         `json:"time"`
			Count int64             `json:"count"`
			Bytes int64             `json:"bytes"`
		} `json:"groups"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<30)).Decode(&ans); err != nil {
		return statsResult{}, fmt.Errorf("server sent an answer that is not stats JSON: %w", err)
	}
	res := statsResult{total: local.Totals{Count: ans.Total, Bytes: ans.TotalBytes}, nGroups: ans.TotalGroups}
	for _, g := range ans.Groups {
		lg := local.Group{Count: g.Count, Bytes: g.Bytes}
		if o.Interval > 0 {
			lg.Bucket = g.Time.UnixMicro()
		}
		for _, c := range by {
			v, ok := g.Key[c]
			if !ok {
				return statsResult{}, fmt.Errorf("server sent a group without %s", c)
			}
			lg.Key = append(lg.Key, v)
		}
		res.groups = append(res.groups, lg)
	}
	return res, nil
}

// printStats prints the groups as a table, the N largest with top.
func printStats(w io.Writer, ans statsResult, o local.StatsOptions, top int) error {
	return printStatsTable(w, ans, o, top, true)
}

// printStatsTable prints the groups, and the totals line when footer.
func printStatsTable(w io.Writer, ans statsResult, o local.StatsOptions, top int, footer bool) error {
	bw := bufio.NewWriter(w)
	tw := tabwriter.NewWriter(bw, 0, 4, 2, ' ', tabwriter.AlignRight)
	var head []string
	if o.Interval > 0 {
		head = append(head, "TIME")
	}
	for _, c := range o.By {
		head = append(head, strings.ToUpper(c.String()))
	}
	head = append(head, "COUNT", "SHARE")
	if o.Bytes {
		head = append(head, "BYTES", "BYTES SHARE", "AVG")
	}
	fmt.Fprintln(tw, strings.Join(head, "\t")+"\t")
	share := func(n, of int64) string { return fmt.Sprintf("%.1f%%", 100*float64(n)/float64(max(of, 1))) }
	for i, g := range ans.groups {
		if top > 0 && o.Interval == 0 && i >= top {
			break
		}
		var cells []string
		if o.Interval > 0 {
			cells = append(cells, time.UnixMicro(g.Bucket).UTC().Format(bucketLayout(o.Interval)))
		}
		for _, v := range g.Key {
			if v == "" {
				v = "-"
			}
			cells = append(cells, escape.Line(strings.ReplaceAll(v, local.ListSep, ",")))
		}
		cells = append(cells, fmt.Sprint(g.Count), share(g.Count, ans.total.Count))
		if o.Bytes {
			cells = append(cells, humanBytes(g.Bytes), share(g.Bytes, ans.total.Bytes), humanBytes(g.Bytes/max(g.Count, 1)))
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t")+"\t")
	}
	tw.Flush()
	if !footer {
		return bw.Flush()
	}
	if o.Bytes {
		fmt.Fprintf(bw, "%s (%s) in %s\n", plural(int(ans.total.Count), "event", "events"), humanBytes(ans.total.Bytes), plural(ans.nGroups, "group", "groups"))
	} else {
		fmt.Fprintf(bw, "%s in %s\n", plural(int(ans.total.Count), "event", "events"), plural(ans.nGroups, "group", "groups"))
	}
	return bw.Flush()
}

// bucketLayout prints a bucket's start to the minute, or to the second
// when the interval is not whole minutes (1s up to 59s, 90s).
func bucketLayout(interval int64) string {
	if interval%int64(time.Minute/time.Microsecond) != 0 {
		return "2006-01-02T15:04:05Z"
	}
	return "2006-01-02T15:04Z"
}

// printStatsSummary answers a plain `stats` (no --by, no --interval): the total,
// then the five largest users, verbs, resources and codes, each asked of
// the store (or the server) as its own question.
func printStatsSummary(w io.Writer, ans statsResult, o local.StatsOptions, ask func(local.StatsOptions, int) (statsResult, error)) error {
	if o.Bytes {
		fmt.Fprintf(w, "%s (%s)\n", plural(int(ans.total.Count), "event", "events"), humanBytes(ans.total.Bytes))
	} else {
		fmt.Fprintf(w, "%s\n", plural(int(ans.total.Count), "event", "events"))
	}
	if ans.total.Count == 0 {
		return nil
	}
	for _, c := range []local.Column{local.ColUser, local.ColVerb, local.ColResource, local.ColCode} {
		oc := o
		oc.By = []local.Column{c}
		part, err := ask(oc, 5)
		var damage *local.DamageError
		if err != nil && !errors.As(err, &damage) {
			return err
		}
		fmt.Fprintf(w, "\nlargest by %s (of %d):\n", c, part.nGroups)
		if err := printStatsTable(w, part, oc, 5, false); err != nil {
			return err
		}
	}
	return nil
}

// printStatsCSV prints the table's rows as CSV: a header, then one row a
// group, values as stored (guarded against spreadsheet formulas).
func printStatsCSV(w io.Writer, ans statsResult, o local.StatsOptions, top int) error {
	cw := csv.NewWriter(w)
	var head []string
	if o.Interval > 0 {
		head = append(head, "time")
	}
	for _, c := range o.By {
		head = append(head, c.String())
	}
	head = append(head, "count")
	if o.Bytes {
		head = append(head, "bytes")
	}
	cw.Write(head)
	for i, g := range ans.groups {
		if top > 0 && o.Interval == 0 && i >= top {
			break
		}
		var row []string
		if o.Interval > 0 {
			row = append(row, time.UnixMicro(g.Bucket).UTC().Format(time.RFC3339))
		}
		for _, v := range g.Key {
			row = append(row, csvCell(strings.ReplaceAll(v, local.ListSep, ",")))
		}
		row = append(row, strconv.FormatInt(g.Count, 10))
		if o.Bytes {
			row = append(row, strconv.FormatInt(g.Bytes, 10))
		}
		cw.Write(row)
	}
	cw.Flush()
	return cw.Error()
}
