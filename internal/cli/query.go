package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"sync/atomic"
	"text/tabwriter"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"

	"github.com/kubetrail/kubetrail/internal/audit"
	"github.com/kubetrail/kubetrail/internal/escape"
	"github.com/kubetrail/kubetrail/internal/jq"
	"github.com/kubetrail/kubetrail/internal/query"
	"github.com/kubetrail/kubetrail/internal/store/local"
	"github.com/kubetrail/kubetrail/internal/timespec"
)

func queryCmd(e *env) *cobra.Command {
	var (
		dir            string
		tf             timeFlags
		from, to       string
		output, sortBy string
		limit          int
		count          bool
		follow         bool
		jqSrc          string
		rawOutput      bool
		jqLimits       = jq.Limits{Timeout: jq.DefaultTimeout, MaxMemory: jq.DefaultMaxMemory}
		jqMaxMemory    string
		remote         remoteFlags
		nsf            nsFlags
		st             storeFlag
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
(free text, uri, auditid, annotations, bodies) read the matching events.

-o table prints one row per event: TIME (the event's stageTimestamp, UTC),
USER (who sent the request), AS (whom they impersonated, - when nobody),
VERB, RESOURCE[/SUBRESOURCE], NS, NAME, CODE, STAGE (a request logged at
two stages is two rows) and IPS (sourceIPs, the last one the address the
API server saw). -o wide adds groups, the authorization decision, the user
agent and the cluster.

--jq EXPR runs a jq program on each matching event and prints what it
yields exactly as 'jq -c EXPR' prints it over the raw audit log: the same
bytes, in the order the events were stored (the log's order). Conditions
inside select(...) that the store can answer (==, test, startswith,
endswith, contains, IN, >= on .responseStatus.code, and/or, .sourceIPs[],
.user.groups[]) narrow the events through the indexes first; everything
else is evaluated on every event and is still correct. jq's input, inputs
and input_line_number are not available: pipe -o jsonl into jq for
whole-stream programs.

A jq program can ask for unbounded time and memory ([range(1e12)],
def f: 1+f; f). --jq-timeout bounds the time it may take on one event
(default 10s) and --jq-max-memory the memory the process may hold while
it runs (default 2GiB); past either the query stops with exit status 5
and a message naming the flag to raise. 0 turns a limit off.

--follow prints the matching events (sorted by time, as without it), then
looks every half second and prints each matching event stored since,
once, in the order they were stored, until interrupted. It follows the
store's positions, not receive times: a batch stored late with an earlier
receive time is printed too, and a look at an idle store reads nothing
(docs/query.md).

--store clickhouse://HOST:8123/DB reads a ClickHouse store (made by
kubetrail setup clickhouse) instead of --data, with the same answers;
--follow asks it for newly inserted events every second, each event once
(docs/clickhouse.md).`,
		Example: `  kubetrail query 'verb=delete resource=secrets' --since 24h
  kubetrail query 'subresource in (exec,attach,portforward)' -o wide
  kubetrail query 'user=alice' -o jsonl | jq .requestURI
  kubetrail query --jq 'select(.objectRef.resource == "secrets") | {user: .user.username, verb}'
  kubetrail query --since 7d --jq 'select(.sourceIPs[] == "192.168.1.100") | .requestURI' -r`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) (err error) {
			defer func() { err = remote.damaged(err) }()
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
				for _, w := range f.Warnings() {
					fmt.Fprintf(e.stderr, "kubetrail: warning: %s\n", escape.Text(w))
				}
			}
			if err := nsf.check(); err != nil {
				return err
			}
			if nsf.ns != "" {
				if sel.Filter, err = nsf.apply(sel.Filter, now); err != nil {
					return err
				}
				src = sel.Filter.String()
			}
			var prog *jq.Program
			if jqSrc != "" {
				if cmd.Flags().Changed("output") {
					return fmt.Errorf("--jq prints JSON lines as jq -c does; -o does not apply")
				}
				var err error
				if prog, err = jq.Compile(jqSrc, now); err != nil {
					var je *jq.Error
					if errors.As(err, &je) {
						fmt.Fprintln(e.stderr, je.Format(jqSrc))
						return exitCode(2)
					}
					return err
				}
				prog.Raw = rawOutput
				if cmd.Flags().Changed("jq-max-memory") {
					if jqLimits.MaxMemory, err = parseLimitSize(jqMaxMemory); err != nil {
						return fmt.Errorf("--jq-max-memory: %w", err)
					}
				}
				if jqLimits.Timeout < 0 {
					return fmt.Errorf("--jq-timeout %s: want a duration such as 30s, or 0 for no limit", jqLimits.Timeout)
				}
				for _, w := range prog.Warnings {
					fmt.Fprintf(e.stderr, "kubetrail: warning: --jq: %s; the output may differ in order from jq's\n", w)
				}
				if sel.Filter, err = withPushdown(sel.Filter, prog, now); err != nil {
					return err
				}
				if sel.Filter != nil {
					src = sel.Filter.String()
				}
				output = "jq"
			} else if rawOutput {
				return fmt.Errorf("-r applies to --jq output only")
			}
			sinceName, untilName := "--since", "--until"
			if from != "" {
				tf.since, sinceName = from, "--from"
			}
			if to != "" {
				tf.until, untilName = to, "--to"
			}
			if sel.Since, sel.Until, err = timespec.Range(sinceName, tf.since, untilName, tf.until, now); err != nil {
				return err
			}
			out, err := newPrinter(output, e.stdout)
			if err != nil {
				return err
			}
			out.jq, out.errw, out.ctx = prog, e.stderr, cmd.Context()
			if prog != nil {
				w := jq.Watch(cmd.Context(), jqLimits)
				defer w.Stop()
				out.watch = w
			}
			// Printing events needs their bytes only; so does --jq,
			// which reads an event's audit ID from them when the
			// program fails on it.
			sel.NeedRaw = out.needsEvent()
			if sortBy != "time" && sortBy != "-time" {
				return fmt.Errorf("--sort %q: want time or -time", sortBy)
			}
			if prog != nil && !cmd.Flags().Changed("sort") {
				sortBy = "stored" // the log's order, as jq over the log
			}
			if remote.url != "" && st.url == "" {
				return remoteQuery(cmd.Context(), e, &remote, src, sel.Since, sel.Until, sortBy, limit, follow, count, out)
			}
			var r eventSource
			if st.url != "" {
				sr, err := st.open(cmd.Context(), &remote)
				if err != nil {
					return err
				}
				defer sr.Close()
				if follow {
					return followStore(cmd.Context(), sr, sel, out)
				}
				r = storeSource{ctx: cmd.Context(), r: sr}
			} else {
				if follow {
					return followLocal(cmd.Context(), dir, sel, out)
				}
				// err, not a new one: the deferred withDamage must see
				// the command's result.
				var lr *local.Reader
				if lr, err = local.OpenReader(dir); err != nil {
					return err
				}
				defer lr.Close()
				defer func() { err = withDamage(lr, err) }()
				r = lr
			}
			if sortBy == "stored" {
				// The log's order, streamed: nothing is held but one event.
				return out.streamJQ(r, sel, limit, count)
			}
			if count && prog == nil {
				n, err := r.CountMatching(sel)
				if err != nil {
					return err
				}
				fmt.Fprintln(e.stdout, n)
				return nil
			}
			if prog == nil && sortBy == "time" {
				return out.printInTime(e, r, sel, limit)
			}
			var rows []row
			err = r.Select(sel, func(h *local.Hit) error {
				rw, err := out.row(h)
				rows = append(rows, rw)
				return err
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
			if prog != nil {
				return out.printJQ(rows, limit, count)
			}
			if limit > 0 && len(rows) > limit {
				rows = rows[:limit]
			}
			if len(rows) == 0 {
				explainEmpty(e, r, sel)
			}
			return out.print(rows)
		},
	}
	addDataFlag(cmd, &dir)
	f := cmd.Flags()
	tf.add(cmd)
	f.StringVar(&from, "from", "", "same as --since")
	f.StringVar(&to, "to", "", "same as --until")
	f.StringVarP(&output, "output", "o", "table", "table, wide, json, jsonl, yaml or csv")
	f.StringVar(&sortBy, "sort", "time", "time (oldest first) or -time (newest first); with --jq the default is the order events were stored in")
	f.IntVar(&limit, "limit", 0, "print at most this many events (after sorting); 0 means all")
	f.BoolVar(&count, "count", false, "print only the number of matching events")
	f.BoolVarP(&follow, "follow", "f", false, "after the matching events, print each one stored since, once, in stored order, until interrupted")
	f.StringVar(&jqSrc, "jq", "", "run this jq program on each matching event and print its results as 'jq -c' does (see above)")
	f.BoolVarP(&rawOutput, "raw-output", "r", false, "with --jq: print strings without quotes, as 'jq -r' does")
	f.DurationVar(&jqLimits.Timeout, "jq-timeout", jq.DefaultTimeout, "with --jq: the longest the program may run on one event (0: no limit)")
	f.StringVar(&jqMaxMemory, "jq-max-memory", "2GiB", "with --jq: the most memory the process may hold while the program runs (0: no limit)")
	remote.add(cmd)
	nsf.add(cmd)
	st.add(cmd)
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
	time    int64
	cells   []string
	raw     []byte
	results int // --jq: the number of results raw holds
}

type printer struct {
	format string
	w      io.Writer
	cols   []local.Column
	heads  []string
	jq     *jq.Program // the program for format "jq"
	errw   io.Writer   // where jq's runtime errors go
	jqErrs int         // events the program failed on
	jqN    int         // results in each row, for --limit and --count
	watch  *jq.Watchdog
	// ctx stops the printing of rows when cancelled (a signal).
	ctx context.Context
	// slab holds the copies of events (keep).
	slab []byte
	// live are the column widths of a followed table: set by the header
	// and the first rows, widened by a longer value (later rows then
	// shift, as kubectl get --watch's do), never narrowed.
	live []int
}

var (
	tableCols = []local.Column{local.ColUser, local.ColAs, local.ColVerb, local.ColResource, local.ColNamespace, local.ColName, local.ColCode, local.ColStage, local.ColSourceIPs}
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
	case "json", "jsonl", "yaml", "jq":
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

// row keeps what the printer prints of a hit. The error is the signal or
// --jq limit that stops the command.
func (p *printer) row(h *local.Hit) (row, error) {
	r := row{time: h.Time}
	if err := stopped(p.ctx); err != nil {
		return r, err
	}
	if p.format == "jq" {
		var err error
		r.raw, r.results, err = p.runHit(h, nil)
		return r, err
	}
	if p.cols == nil {
		r.raw = p.keep(h.Raw)
		return r, nil
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
		r.cells = append(r.cells, p.cell(v))
	}
	return r, nil
}

// printInTime prints the selected events oldest first (stable: events of
// one time in stored order), at most limit of them when limit > 0. The
// store gives events in stored order with a floor (local.Hit.Floor):
// rows kept from before at or below it are settled, in time order, and
// -o jsonl and json print them at once, so that printing overlaps
// reading, memory holds what is not settled yet, and --limit stops the
// reading once it has its rows. Without floors (another store) every row
// settles at the end, as a sort would.
func (p *printer) printInTime(e *env, r eventSource, sel local.Selection, limit int) error {
	var pending, settled []row
	printed := 0
	stream := p.format == "jsonl" || p.format == "json"
	byTime := func(i, j int) bool { return pending[i].time < pending[j].time }
	settle := func(floor int64, all bool) error {
		sort.SliceStable(pending, byTime)
		n := len(pending)
		if !all {
			n = sort.Search(len(pending), func(i int) bool { return pending[i].time > floor })
		}
		done := pending[:n]
		if limit > 0 && printed+len(done) > limit {
			done = done[:limit-printed]
		}
		printed += len(done)
		if stream && len(done) > 0 {
			if err := p.print(done); err != nil {
				return err
			}
		} else {
			settled = append(settled, done...)
		}
		pending = append(pending[:0], pending[n:]...)
		if limit > 0 && printed >= limit {
			return errEnough
		}
		return nil
	}
	floor, floored := int64(math.MinInt64), false
	err := r.Select(sel, func(h *local.Hit) error {
		if f, ok := h.Floor(); ok && (!floored || f > floor) {
			floor, floored = f, true
			if err := settle(f, false); err != nil {
				return err
			}
		}
		rw, err := p.row(h)
		pending = append(pending, rw)
		return err
	})
	if err == nil {
		err = settle(0, true)
	}
	if err != nil && !errors.Is(err, errEnough) {
		return err
	}
	if printed == 0 {
		explainEmpty(e, r, sel)
	}
	if stream {
		return nil
	}
	return p.print(settled)
}

// slabBytes is the size of the slabs a printer copies events into.
const slabBytes = 1 << 20

// keep copies raw into the printer's slab: the events of a question are
// kept until they are sorted, and one allocation per event cost more
// than copying them (a fifth of printing one user's 72k events).
func (p *printer) keep(raw []byte) []byte {
	if cap(p.slab)-len(p.slab) < len(raw) {
		if len(raw) > slabBytes/4 {
			return append([]byte(nil), raw...)
		}
		p.slab = make([]byte, 0, slabBytes)
	}
	n := len(p.slab)
	p.slab = append(p.slab, raw...)
	return p.slab[n:len(p.slab):len(p.slab)]
}

// cell makes an event's value safe to print: control characters, bidi
// controls and bad bytes escaped (a value stays on its row and cannot
// drive the terminal), and in CSV a value a spreadsheet would run as a
// formula (=, +, -, @ first) made text by a leading quote, as OWASP
// advises. -o json, jsonl and yaml keep the exact values.
func (p *printer) cell(v string) string {
	if p.format == "csv" {
		return csvCell(v)
	}
	return escape.Line(v)
}

// csvCell is an event's value as a CSV cell: escaped as cell does, and a
// value a spreadsheet would run as a formula (=, +, -, @ first) made text
// by a leading quote.
func csvCell(v string) string {
	v = escape.Line(v)
	if v != "" && strings.ContainsRune("=+-@", rune(v[0])) {
		v = "'" + v
	}
	return v
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
	for _, r := range rows {
		for i, c := range r.cells {
			if c == "" {
				r.cells[i] = "-"
			}
		}
	}
	if first {
		p.live = make([]int, len(p.heads))
		for i, h := range p.heads {
			p.live[i] = utf8.RuneCountInString(h)
		}
		for _, r := range rows {
			p.widen(r.cells)
		}
		p.writeLive(bw, p.heads)
	}
	for _, r := range rows {
		p.widen(r.cells)
		p.writeLive(bw, r.cells)
	}
	return nil
}

func (p *printer) widen(cells []string) {
	for i, c := range cells {
		if i < len(p.live) {
			p.live[i] = max(p.live[i], utf8.RuneCountInString(c))
		}
	}
}

// writeLive writes one followed row, each cell padded to its column's
// width but the last.
func (p *printer) writeLive(w *bufio.Writer, cells []string) {
	for i, c := range cells {
		w.WriteString(c)
		if i == len(cells)-1 {
			break
		}
		pad := 2
		if i < len(p.live) {
			pad += p.live[i] - utf8.RuneCountInString(c)
		}
		w.WriteString(strings.Repeat(" ", pad))
	}
	w.WriteByte('\n')
}

func (p *printer) print(rows []row) error {
	bw := bufio.NewWriterSize(p.w, 1<<16)
	defer bw.Flush()
	switch p.format {
	case "jq":
		for _, r := range rows {
			bw.Write(r.raw)
		}
	case "jsonl":
		for _, r := range rows {
			bw.Write(r.raw)
			bw.WriteByte('\n')
		}
	case "json":
		for _, r := range rows {
			var buf bytes.Buffer
			// Indented for people: C1 and bidi controls as \u escapes
			// (the same value); -o jsonl keeps the stored bytes.
			if err := json.Indent(&buf, escape.JSON(r.raw), "", "  "); err != nil {
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
			// The YAML parser refuses C1 controls in its input: as \u
			// escapes they are the same JSON value.
			if err := yaml.Unmarshal(escape.JSON(r.raw), &n); err != nil {
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

// withPushdown adds the filter a jq program gives away to the user's.
func withPushdown(f *query.Filter, prog *jq.Program, now time.Time) (*query.Filter, error) {
	pd := prog.Pushdown()
	switch {
	case pd == nil:
		return f, nil
	case f == nil:
		return prog.Filter(), nil
	}
	terms := append(query.Conjuncts(f.Expr()), query.Conjuncts(pd)...)
	return query.CompileExpr(&query.And{Terms: terms}, now)
}

// maxJQErrors is how many runtime errors --jq reports one by one: a
// program that fails on every event would otherwise print one line per
// stored event.
const maxJQErrors = 10

// runJQ runs the printer's program on one event, reporting a runtime error
// as jq does (on standard error, going on with the next event). The error
// it returns stops the command: a signal, or a --jq limit passed.
func (p *printer) runJQ(raw []byte, t int64, buf []byte) ([]byte, int, error) {
	p.watch.Begin()
	out, n, err := p.jq.Run(p.watch.Context(), raw, buf)
	p.watch.End()
	if stop := p.watch.Err(); stop != nil {
		return out, n, p.jqStopped(stop, raw, t)
	}
	if err != nil && err != jq.ErrHalt {
		p.jqErrs++
		if p.jqErrs > maxJQErrors {
			return out, n, nil
		}
		id := auditIDOf(raw)
		fmt.Fprintf(p.errw, "kubetrail: --jq: error (event%s at %s): %s\n", escape.Line(id),
			time.UnixMicro(t).UTC().Format(time.RFC3339Nano), escape.Line(err.Error()))
		if p.jqErrs == maxJQErrors {
			fmt.Fprintf(p.errw, "kubetrail: --jq: %d errors shown; further ones are only counted\n", maxJQErrors)
		}
	}
	return out, n, nil
}

// jqStopped reports a --jq limit passed on an event, naming the flag that
// raises it, and returns the error that ends the command (exit status 5,
// jq's for a program that failed). Any other cause (a signal) is returned
// as it is.
func (p *printer) jqStopped(cause error, raw []byte, t int64) error {
	var le *jq.LimitError
	if !errors.As(cause, &le) {
		return cause
	}
	flag, raise := "--jq-timeout", "a longer --jq-timeout"
	if le.Memory {
		flag, raise = "--jq-max-memory", "a larger --jq-max-memory"
	}
	id := auditIDOf(raw)
	fmt.Fprintf(p.errw, "kubetrail: --jq: stopped: %v (%s; event%s at %s); give it %s (0: no limit) or a cheaper program\n",
		le, flag, escape.Line(id), time.UnixMicro(t).UTC().Format(time.RFC3339Nano), raise)
	return exitCode(5)
}

// auditIDOf returns, for a message, " " and the audit ID of an event's
// stored text, or "" when it has none: read only when a message needs it,
// so that --jq decodes no event of its own.
func auditIDOf(raw []byte) string {
	var ev audit.Event
	if !audit.StoredFields(raw, []string{"auditID"}, false, &ev) && audit.DecodeStored(raw, &ev) != nil {
		return ""
	}
	if ev.AuditID == "" {
		return ""
	}
	return " " + ev.AuditID
}

// runHit is runJQ on a hit.
func (p *printer) runHit(h *local.Hit, buf []byte) ([]byte, int, error) {
	return p.runJQ(h.Raw, h.Time, buf)
}

// jqDone ends a --jq run: jq exits 5 when the program failed on an input.
func (p *printer) jqDone() error {
	if p.jqErrs > 0 {
		fmt.Fprintf(p.errw, "kubetrail: --jq: the program failed on %d events\n", p.jqErrs)
		return exitCode(5)
	}
	return nil
}

var errEnough = errors.New("enough results")

// jqBatch is a run of selected events handed from the reading goroutine to
// the one running the program: their text (copied, since a hit's slices
// last only its callback), and the time an error message names.
type jqBatch struct {
	text  []byte
	ends  []int // event i is text[ends[i-1]:ends[i]]
	times []int64
}

// streamJQ runs the program over the selected events in the order they were
// stored and prints results as they come: the order jq gives over the log.
// Reading (decompressing, selecting) and running the program overlap on
// two goroutines; the order is kept, since one goroutine runs the program.
func (p *printer) streamJQ(r eventSource, sel local.Selection, limit int, count bool) error {
	bw := bufio.NewWriterSize(p.w, 1<<16)
	batches := make(chan *jqBatch, 4)
	free := make(chan *jqBatch, 6)
	var enough atomic.Bool
	var fatal error // set by the program's goroutine before enough; read after done
	total := 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		var buf []byte
		for b := range batches {
			for i, end := range b.ends {
				if enough.Load() {
					break
				}
				begin := 0
				if i > 0 {
					begin = b.ends[i-1]
				}
				var n int
				var err error
				buf, n, err = p.runJQ(b.text[begin:end], b.times[i], buf[:0])
				if err != nil {
					fatal = err
					enough.Store(true)
				}
				if limit > 0 && total+n > limit {
					buf, n = firstResults(buf, limit-total), limit-total
				}
				total += n
				if !count {
					bw.Write(buf)
				}
				if limit > 0 && total >= limit {
					enough.Store(true)
				}
			}
			select {
			case free <- b:
			default:
			}
		}
	}()
	cur := &jqBatch{}
	flush := func() {
		batches <- cur
		select {
		case cur = <-free:
			cur.text, cur.ends, cur.times = cur.text[:0], cur.ends[:0], cur.times[:0]
		default:
			cur = &jqBatch{}
		}
	}
	err := r.Select(sel, func(h *local.Hit) error {
		if enough.Load() {
			return errEnough
		}
		if err := stopped(p.ctx); err != nil {
			return err
		}
		cur.text = append(cur.text, h.Raw...)
		cur.ends = append(cur.ends, len(cur.text))
		cur.times = append(cur.times, h.Time)
		if len(cur.ends) >= 256 || len(cur.text) >= 1<<20 {
			flush()
		}
		return nil
	})
	if len(cur.ends) > 0 {
		batches <- cur
	}
	close(batches)
	<-done
	if fatal != nil {
		err = fatal
	}
	if err != nil && err != errEnough {
		bw.Flush()
		return err
	}
	if count {
		fmt.Fprintln(bw, total)
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	return p.jqDone()
}

// printJQ prints the results of sorted rows, at most limit of them.
func (p *printer) printJQ(rows []row, limit int, count bool) error {
	total := 0
	kept := rows[:0]
	for _, r := range rows {
		if limit > 0 && total+r.results > limit {
			r.raw, r.results = firstResults(r.raw, limit-total), limit-total
		}
		total += r.results
		kept = append(kept, r)
		if limit > 0 && total >= limit {
			break
		}
	}
	if count {
		fmt.Fprintln(p.w, total)
	} else if err := p.print(kept); err != nil {
		return err
	}
	return p.jqDone()
}

// firstResults keeps the first n lines of a program's results.
func firstResults(b []byte, n int) []byte {
	end := 0
	for range n {
		i := bytes.IndexByte(b[end:], '\n')
		if i < 0 {
			return b
		}
		end += i + 1
	}
	return b[:end]
}

// parseLimitSize is parseSize that also takes 0, for no limit.
func parseLimitSize(v string) (uint64, error) {
	if strings.TrimSpace(v) == "0" {
		return 0, nil
	}
	n, err := parseSize(v)
	return uint64(n), err
}

// explainEmpty tells a person, on stderr, what the store holds when an
// answer is empty, so that a --since window that misses every event (the
// log ends 11 days ago) is not mistaken for "nothing happened".
func explainEmpty(e *env, r eventSource, sel local.Selection) {
	n, minT, maxT := r.Span()
	if n == 0 {
		fmt.Fprintln(e.stderr, "kubetrail: no event matches: the store holds no event yet")
		return
	}
	when := func(us int64) string { return time.UnixMicro(us).UTC().Format("2006-01-02 15:04 UTC") }
	msg := fmt.Sprintf("kubetrail: no event matches; the store holds %s from %s to %s", plural(n, "event", "events"), when(minT), when(maxT))
	if ago := time.Since(time.UnixMicro(maxT)); ago > time.Hour {
		msg += fmt.Sprintf(" (the newest %s ago)", humanAge(ago))
	}
	if sel.Since != 0 && sel.Since > maxT {
		msg += "; --since starts after the newest"
	}
	if sel.Until != 0 && sel.Until <= minT {
		msg += "; --until ends before the oldest"
	}
	fmt.Fprintln(e.stderr, msg)
}

// humanAge says a duration the way a person would: 11 days, 3 hours.
func humanAge(d time.Duration) string {
	switch {
	case d >= 48*time.Hour:
		return fmt.Sprintf("%d days", int(d/(24*time.Hour)))
	case d >= 2*time.Hour:
		return fmt.Sprintf("%d hours", int(d/time.Hour))
	default:
		return fmt.Sprintf("%d minutes", int(d/time.Minute))
	}
}
