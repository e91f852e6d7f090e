package cli

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/kubetrail/kubetrail/internal/query"
	"github.com/kubetrail/kubetrail/internal/store/local"
)

func queryCmd(e *env) *cobra.Command {
	var (
		dir                    string
		since, until, from, to string
		output, sortBy         string
		limit                  int
		count                  bool
		follow                 bool
		remote                 remoteFlags
	)
	cmd := &cobra.Command{
		Use:   "query [FILTER]",
		Short: "Find stored events with the filter language",
		Long: `query prints the stored events that FILTER selects (all events without one).
The filter language is documented in docs/query.md; for example:

  verb=delete resource=secrets ns=production name=important
  user=attacker or ip in 192.168.0.0/16
  subresource in (exec,attach)
  code>=400 not user~"^system:"

Conditions on user, group, as, verb, resource, subresource, ns, name,
apigroup, apiversion, code, level, stage, ip, peer, ua, decision, reason,
status, cluster and time are answered from the store's columns; others
(free text, uri, auditid, annotations, bodies) read the matching events.`,
		Example: `  kubetrail query 'verb=delete resource=secrets' --since 24h
  kubetrail query 'subresource in (exec,attach,portforward)' -o wide
  kubetrail query 'user=alice' -o jsonl | jq .requestURI`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			src := ""
			if len(args) == 1 {
				src = args[0]
			}
			now := time.Now()
			sel := local.Selection{}
			if strings.TrimSpace(src) != "" {
				f, err := query.CompileAt(src, now)
				if err != nil {
					var qe *query.Error
					if ok := asQueryError(err, &qe); ok {
						fmt.Fprintln(e.stderr, qe.Format(src))
						return exitCode(2)
					}
					return err
				}
				sel.Filter = f
			}
			var err error
			if from != "" {
				since = from
			}
			if to != "" {
				until = to
			}
			if sel.Since, err = parseTimeFlag("--since", since); err != nil {
				return err
			}
			if sel.Until, err = parseTimeFlag("--until", until); err != nil {
				return err
			}
			out, err := newPrinter(output, e.stdout)
			if err != nil {
				return err
			}
			sel.NeedEvent = out.needsEvent()
			if sortBy != "time" && sortBy != "-time" {
				return fmt.Errorf("--sort %q: want time or -time", sortBy)
			}
			if remote.url != "" {
				return remoteQuery(cmd.Context(), e, &remote, src, since, until, sortBy, limit, follow, count, out)
			}
			if follow {
				return followLocal(cmd.Context(), dir, sel, out)
			}
			r, err := local.OpenReader(dir)
			if err != nil {
				return err
			}
			defer r.Close()
			if count {
				n, err := r.CountMatching(sel)
				if err != nil {
					return err
				}
				fmt.Fprintln(e.stdout, n)
				return nil
			}
			var rows []row
			err = r.Select(sel, func(h *local.Hit) error {
				rows = append(rows, out.row(h))
				return nil
			})
			if err != nil {
				return err
			}
			sort.SliceStable(rows, func(i, j int) bool {
				if sortBy == "-time" {
					return rows[i].time > rows[j].time
				}
				return rows[i].time < rows[j].time
			})
			if limit > 0 && len(rows) > limit {
				rows = rows[:limit]
			}
			return out.print(rows)
		},
	}
	addDataFlag(cmd, &dir)
	f := cmd.Flags()
	f.StringVar(&since, "since", "", "only events at or after this time: RFC 3339, or a duration ago such as 2h or 7d")
	f.StringVar(&until, "until", "", "only events before this time: RFC 3339, or a duration ago")
	f.StringVar(&from, "from", "", "same as --since")
	f.StringVar(&to, "to", "", "same as --until")
	f.StringVarP(&output, "output", "o", "table", "table, wide, json, jsonl, yaml or csv")
	f.StringVar(&sortBy, "sort", "time", "time (oldest first) or -time (newest first)")
	f.IntVar(&limit, "limit", 0, "print at most this many events (after sorting); 0 means all")
	f.BoolVar(&count, "count", false, "print only the number of matching events")
	f.BoolVarP(&follow, "follow", "f", false, "after the matching events, print new ones as they are stored, until interrupted")
	remote.add(cmd)
	return cmd
}

func asQueryError(err error, qe **query.Error) bool {
	e, ok := err.(*query.Error)
	if ok {
		*qe = e
	}
	return ok
}

// row is one event as a printer keeps it until sorting is done.
type row struct {
	time  int64
	cells []string
	raw   []byte
}

type printer struct {
	format string
	w      io.Writer
	cols   []local.Column
	heads  []string
}

var (
	tableCols = []local.Column{local.ColUser, local.ColVerb, local.ColResource, local.ColNamespace, local.ColName, local.ColCode, local.ColSourceIPs}
	wideCols  = []local.Column{local.ColUser, local.ColGroups, local.ColAs, local.ColVerb, local.ColResource, local.ColNamespace, local.ColName,
		local.ColCode, local.ColDecision, local.ColSourceIPs, local.ColUserAgent, local.ColStage, local.ColCluster}
)

func newPrinter(format string, w io.Writer) (*printer, error) {
	p := &printer{format: format, w: w}
	switch format {
	case "table", "csv":
		p.cols = tableCols
	case "wide":
		p.cols = wideCols
	case "json", "jsonl", "yaml":
	default:
		return nil, fmt.Errorf("-o %q: want table, wide, json, jsonl, yaml or csv", format)
	}
	p.heads = []string{"TIME"}
	for _, c := range p.cols {
		p.heads = append(p.heads, strings.ToUpper(c.String()))
	}
	return p, nil
}

func (p *printer) needsEvent() bool { return p.cols == nil }

func (p *printer) row(h *local.Hit) row {
	r := row{time: h.Time}
	if p.cols == nil {
		r.raw = append([]byte(nil), h.Raw...)
		return r
	}
	r.cells = []string{time.UnixMicro(h.Time).UTC().Format("2006-01-02T15:04:05.000Z")}
	for _, c := range p.cols {
		v := h.Column(c)
		switch c {
		case local.ColResource:
			if sub := h.Column(local.ColSubresource); sub != "" {
				v += "/" + sub
			}
		case local.ColGroups, local.ColSourceIPs:
			v = strings.ReplaceAll(v, local.ListSep, ",")
		}
		r.cells = append(r.cells, v)
	}
	return r
}

// printLive prints rows as they come: the header only before the first.
func (p *printer) printLive(rows []row, first bool) error {
	if p.cols == nil || p.format == "csv" {
		if p.format == "csv" && !first {
			cw := csv.NewWriter(p.w)
			for _, r := range rows {
				cw.Write(r.cells)
			}
			cw.Flush()
			return cw.Error()
		}
		return p.print(rows)
	}
	bw := bufio.NewWriter(p.w)
	defer bw.Flush()
	if first {
		bw.WriteString(strings.Join(p.heads, "  ") + "\n")
	}
	for _, r := range rows {
		for i, c := range r.cells {
			if c == "" {
				r.cells[i] = "-"
			}
		}
		bw.WriteString(strings.Join(r.cells, "  ") + "\n")
	}
	return nil
}

func (p *printer) print(rows []row) error {
	bw := bufio.NewWriterSize(p.w, 1<<16)
	defer bw.Flush()
	switch p.format {
	case "jsonl":
		for _, r := range rows {
			bw.Write(r.raw)
			bw.WriteByte('\n')
		}
	case "json":
		for _, r := range rows {
			var buf bytes.Buffer
			if err := json.Indent(&buf, r.raw, "", "  "); err != nil {
				return err
			}
			buf.WriteByte('\n')
			bw.Write(buf.Bytes())
		}
	case "yaml":
		for i, r := range rows {
			if i > 0 {
				bw.WriteString("---\n")
			}
			var n yaml.Node
			if err := yaml.Unmarshal(r.raw, &n); err != nil {
				return err
			}
			blockStyle(&n)
			enc := yaml.NewEncoder(bw)
			enc.SetIndent(2)
			if err := enc.Encode(&n); err != nil {
				return err
			}
			enc.Close()
		}
	case "csv":
		cw := csv.NewWriter(bw)
		cw.Write(p.heads)
		for _, r := range rows {
			cw.Write(r.cells)
		}
		cw.Flush()
		return cw.Error()
	default:
		tw := tabwriter.NewWriter(bw, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, strings.Join(p.heads, "\t"))
		for _, r := range rows {
			for i, c := range r.cells {
				if c == "" {
					r.cells[i] = "-"
				}
			}
			fmt.Fprintln(tw, strings.Join(r.cells, "\t"))
		}
		return tw.Flush()
	}
	return nil
}

// blockStyle turns the flow style that JSON parses into YAML's block style,
// keeping the key order of the event.
func blockStyle(n *yaml.Node) {
	n.Style &^= yaml.FlowStyle
	if n.Kind == yaml.ScalarNode && n.Style&yaml.DoubleQuotedStyle != 0 {
		n.Style = 0
	}
	for _, c := range n.Content {
		blockStyle(c)
	}
}
