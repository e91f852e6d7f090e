package cli

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/kubetrail/kubetrail/internal/alert"
	"github.com/kubetrail/kubetrail/internal/audit"
	"github.com/kubetrail/kubetrail/internal/escape"
	"github.com/kubetrail/kubetrail/internal/ingest"
	"github.com/kubetrail/kubetrail/internal/rules"
	"github.com/kubetrail/kubetrail/internal/rules/engine"
	"github.com/kubetrail/kubetrail/internal/rules/falco"
	"github.com/kubetrail/kubetrail/internal/rules/ruletest"
	"github.com/kubetrail/kubetrail/internal/store/local"
)

// ruleFlags are the flags that choose the rules.
type ruleFlags struct {
	paths    []string
	builtin  bool
	matching string
}

func (f *ruleFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringArrayVar(&f.paths, "rules", nil, "a rule file, or a folder of .yaml/.yml rule files (kubetrail, Sigma or Falco, told apart by their contents; its subfolders are not read, and each is named in a warning); repeatable. Replaces the built-in pack unless --builtin")
	cmd.Flags().BoolVar(&f.builtin, "builtin", false, "with --rules: keep the built-in pack too (files may change its rules by name)")
	cmd.Flags().StringVar(&f.matching, "falco-rule-matching", "first", "Falco rules: first (Falco's default: one alert per event, the first matching rule) or all")
}

// load loads the rules, printing every problem on stderr. Errors fail the
// command: running without a rule the user asked for would hide attacks.
func (f *ruleFlags) load(e *env) (*engine.Engine, error) {
	files, warns, err := engine.ReadPaths(f.paths)
	if err != nil {
		return nil, err
	}
	m, err := falco.ParseMatching(f.matching)
	if err != nil {
		return nil, fmt.Errorf("--falco-rule-matching: %w", err)
	}
	eng, probs := engine.Load(files, engine.Options{Builtin: len(f.paths) == 0 || f.builtin, Falco: falco.Options{Matching: m}})
	probs = append(warns, probs...)
	errs := 0
	for _, p := range probs {
		fmt.Fprintln(e.stderr, escape.Text(p.String()))
		if !p.Warning {
			errs++
		}
	}
	if errs > 0 {
		return nil, fmt.Errorf("%s in the rule files; no rule of a file with an error is loaded", plural(errs, "error", "errors"))
	}
	return eng, nil
}

func detectCmd(e *env) *cobra.Command {
	var (
		dir, output string
		limit       int
		tf          timeFlags
		rf          ruleFlags
		nsf         nsFlags
		ff          followFlags
	)
	cmd := &cobra.Command{
		Use:   "detect [FILE...]",
		Short: "Run detection rules over stored events or audit log files",
		Long: `detect runs detection rules over the events stored in --data, or over the
audit log FILEs given (any format import reads; the store is then not
opened), and prints one alert per line.

Rules: the built-in pack (docs/detection.md) unless --rules names rule
files or folders: kubetrail's own rules, Sigma rules and Falco rule files,
told apart by their contents. --builtin keeps the pack beside them. A rule
file with an error stops the command (FILE:LINE:COL: error: ...);
warnings (a Sigma field that audit events lack) are printed and the rule
still loads.

Threshold and sequence rules count events in the order they are read:
stored order (the order they arrived), or file order. An event the FILEs
give twice (the same bytes, among the newest 262,144 read) is evaluated
once, as import stores it once.

-o table heads the alert's time TIME: the stageTimestamp of the event that
fired it, as in query. -o jsonl is a contract: one alert per line with rule, severity (info, low,
medium, high, critical), source (kubetrail, sigma, falco), auditIDs, user,
impersonatedUser when set, message, time (RFC 3339 UTC of the last event)
and, for Falco rules, priority. -o falco prints Falco's own JSON alerts
(output, priority, rule, time, output_fields, tags) for Falcosidekick and
other Falco consumers. The exit status is 0 whether or not alerts fire.

--follow --store clickhouse://HOST:8123/DB is detection for a store that
several collectors (serve --store) fill: it evaluates every event they
store, once, in the store's arrival order, from a durable cursor in
DATA/alerts, keeps the alerts in DATA/alerts (kubetrail alerts --data) and
sends them at least once to each --alert-output, as serve does for its
own store, until stopped. Run one such reader per store: rules then run
once per event whatever the number of collectors (the folder is locked,
so a second reader on it is refused). Its first start evaluates what the
store holds already (docs/clickhouse.md).`,
		Example: `  kubetrail detect --since 24h
  kubetrail detect --follow --store clickhouse://ch:8123/kubetrail --data /var/lib/kubetrail-detect --alert-output file:///var/log/kubetrail/alerts.jsonl
  kubetrail detect /var/log/kubernetes/audit/audit.log -o jsonl
  kubetrail detect --rules falco/k8s_audit_rules.yaml --rules sigma/ --builtin`,
		RunE: func(cmd *cobra.Command, args []string) (err error) {
			if err := ff.check(cmd, args); err != nil {
				return err
			}
			if ff.follow {
				return detectFollow(cmd.Context(), e, &rf, &ff, dir)
			}
			if !slices.Contains([]string{"table", "json", "jsonl", "falco"}, output) {
				return fmt.Errorf("-o %q: want table, json, jsonl or falco", output)
			}
			if err := nsf.check(); err != nil {
				return err
			}
			lo, hi, err := tf.bounds(time.Now())
			if err != nil {
				return err
			}
			eng, err := rf.load(e)
			if err != nil {
				return err
			}
			w := bufio.NewWriter(e.stdout)
			defer w.Flush()
			out := newAlertPrinter(w, output)
			eval := func(ev *rules.Event) error {
				alerts := eng.Eval(ev)
				if ev.Lazy != nil && ev.Lazy.Err != nil {
					return ev.Lazy.Err
				}
				for _, a := range alerts {
					if limit > 0 && out.n >= limit {
						return errEnough // stops the reading
					}
					if err := out.print(a); err != nil {
						return err
					}
				}
				return nil
			}
			if len(args) > 0 {
				err = detectFiles(cmd, e, args, func(ev *audit.Event, raw []byte, cluster string) error {
					if nsf.ns != "" && (ev.ObjectRef == nil || ev.ObjectRef.Namespace != nsf.ns) {
						return nil
					}
					if t := ev.Time().UnixMicro(); (lo != 0 && t < lo) || (hi != 0 && t >= hi) {
						return nil // a file's event outside --since/--until
					}
					return eval(&rules.Event{Ev: ev, Raw: raw, Cluster: cluster})
				})
			} else {
				err = detectStore(cmd, eng, &nsf, dir, lo, hi, eval)
			}
			if errors.Is(err, errEnough) {
				err = nil
			}
			if ferr := out.finish(); err == nil {
				err = ferr
			}
			return err
		},
	}
	addDataFlag(cmd, &dir)
	rf.add(cmd)
	nsf.add(cmd)
	ff.add(cmd)
	f := cmd.Flags()
	tf.add(cmd)
	f.StringVarP(&output, "output", "o", "table", "table, json, jsonl or falco")
	f.IntVar(&limit, "limit", 0, "stop after N alerts, the first in the order events are read; 0 means all")
	return cmd
}

func detectFiles(cmd *cobra.Command, e *env, args []string, eval func(*audit.Event, []byte, string) error) error {
	files, err := ingest.ExpandPaths(args)
	if err != nil {
		return err
	}
	var evalErr error
	seen := newSeenEvents(seenMax)
	for _, name := range files {
		n := 0
		skipped, err := ingest.EachRecord(cmd.Context(), []string{name}, e.stdin, audit.Limits{}, func(r *audit.Record) {
			n++
			if evalErr == nil && seen.add(local.KeyOf("default", r.Raw)) {
				evalErr = eval(&r.Event, r.Raw, "default")
			}
		}, func(p audit.Problem) {
			fmt.Fprintln(e.stderr, escape.Text(p.String()))
		})
		if err != nil {
			return err
		}
		if evalErr != nil {
			return evalErr
		}
		if err := stopped(cmd.Context()); err != nil {
			return err
		}
		if n == 0 {
			fmt.Fprintf(e.stderr, "%s: holds no audit event (%d lines skipped)\n", escape.Text(name), skipped)
		}
	}
	return nil
}

// seenMax is how many of the newest events detect FILE remembers to
// evaluate a copy of one once (a few MiB of keys).
const seenMax = 1 << 18

// seenEvents remembers the keys (local.KeyOf) of the newest events read,
// at most max: an event given twice (a file named twice, rotated logs that
// overlap) is evaluated once, as import stores it once.
type seenEvents struct {
	set  map[local.Key]struct{}
	ring []local.Key
	next int
}

func newSeenEvents(max int) *seenEvents {
	return &seenEvents{set: map[local.Key]struct{}{}, ring: make([]local.Key, 0, max)}
}

// add reports whether k is new, and remembers it.
func (s *seenEvents) add(k local.Key) bool {
	if _, ok := s.set[k]; ok {
		return false
	}
	if len(s.ring) < cap(s.ring) {
		s.ring = append(s.ring, k)
	} else {
		delete(s.set, s.ring[s.next])
		s.ring[s.next] = k
		s.next = (s.next + 1) % len(s.ring)
	}
	s.set[k] = struct{}{}
	return true
}

// detectStore runs the rules over the store. The store decides the
// kubetrail rules' conditions and the Sigma and Falco rules' prefilters
// on its columns and reads an event's text only when a rule needs it
// (rules.Lazy); a Sigma or Falco rule with no prefilter makes it read
// every event whole.
func detectStore(cmd *cobra.Command, eng *engine.Engine, nsf *nsFlags, dir string, lo, hi int64, eval func(*rules.Event) error) (err error) {
	sel := local.Selection{Since: lo, Until: hi}
	if sel.Filter, err = nsf.apply(nil, time.Now()); err != nil {
		return err
	}
	r, err := local.OpenReader(dir)
	if err != nil {
		return err
	}
	defer r.Close()
	defer func() { err = withDamage(r, err) }()
	ctx := cmd.Context()
	plan, lazy := eng.Lazy()
	if !lazy {
		sel.NeedEvent = true
		return r.Select(sel, func(h *local.Hit) error {
			if err := stopped(ctx); err != nil {
				return err
			}
			return eval(&rules.Event{Ev: h.Event, Raw: h.Raw, Cluster: h.Cluster})
		})
	}
	opts := local.LazyOptions{Filters: plan.Filters, Fields: plan.Fields, ReadAhead: plan.WillRead}
	// One event, one lazy state and one reader serve every hit: most of
	// the store's events go by, and each allocation showed.
	var (
		ev  rules.Event
		lz  rules.Lazy
		hit *local.Hit
	)
	read := func() (*audit.Event, []byte, error) {
		err := hit.Load()
		return hit.Event, hit.Raw, err
	}
	readRaw := func() ([]byte, error) { return hit.LoadRaw() }
	groups := func() (string, byte, bool) {
		g, ok := hit.JoinedGroups()
		return g, local.ListSep[0], ok
	}
	return r.SelectFilters(sel, opts, func(h *local.Hit) error {
		if err := stopped(ctx); err != nil {
			return err
		}
		hit = h
		ev = rules.Event{Ev: h.Event, Raw: h.Raw, Cluster: h.Cluster}
		if h.Partial {
			lz = rules.Lazy{Fields: h.Fields, Known: h.Known, Read: read, ReadRaw: readRaw, Groups: groups}
			ev.Lazy = &lz
		}
		return eval(&ev)
	})
}

// alertPrinter prints alerts in one of detect's formats.
type alertPrinter struct {
	w      io.Writer
	format string
	tw     *tabwriter.Writer
	n      int
}

func newAlertPrinter(w io.Writer, format string) *alertPrinter {
	p := &alertPrinter{w: w, format: format}
	switch format {
	case "table":
		p.tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(p.tw, "TIME\tSEVERITY\tSOURCE\tRULE\tUSER\tMESSAGE")
	case "json":
		io.WriteString(w, "[")
	}
	return p
}

func (p *alertPrinter) print(a rules.Alert) error {
	defer func() { p.n++ }()
	switch p.format {
	case "table":
		user := a.User
		if a.ImpersonatedUser != "" {
			user += " as " + a.ImpersonatedUser
		}
		_, err := fmt.Fprintf(p.tw, "%s\t%s\t%s\t%s\t%s\t%s\n", a.Time.UTC().Format(time.RFC3339), a.Severity, a.Source,
			escape.Line(a.Rule), escape.Line(user), escape.Line(a.Message))
		return err
	case "falco":
		return writeJSONLine(p.w, falcoAlert(a))
	case "json":
		if p.n > 0 {
			io.WriteString(p.w, ",")
		}
		io.WriteString(p.w, "\n  ")
		b, err := json.Marshal(alert.Alert{Alert: a})
		if err != nil {
			return err
		}
		_, err = p.w.Write(b)
		return err
	default:
		b, err := alert.AppendJSONLine(nil, &alert.Alert{Alert: a})
		if err != nil {
			return err
		}
		_, err = p.w.Write(b)
		return err
	}
}

func (p *alertPrinter) finish() error {
	switch p.format {
	case "table":
		return p.tw.Flush()
	case "json":
		if p.n > 0 {
			io.WriteString(p.w, "\n")
		}
		_, err := io.WriteString(p.w, "]\n")
		return err
	}
	return nil
}

func writeJSONLine(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// falcoAlert is Falco's JSON alert (json_output: true): what Falcosidekick
// and other Falco consumers read.
func falcoAlert(a rules.Alert) map[string]any {
	priority := a.Priority
	if priority == "" {
		priority = falcoPriority(a.Severity)
	}
	fields := a.OutputFields
	if fields == nil {
		fields = map[string]any{"ka.auditid": strings.Join(a.AuditIDs, ","), "ka.user.name": a.User}
	}
	tags := a.Tags
	if tags == nil {
		tags = []string{}
	}
	t := a.Time.UTC().Format(time.RFC3339Nano)
	return map[string]any{
		"output": t + ": " + falcoTitle(priority) + " " + a.Message, "priority": falcoTitle(priority), "rule": a.Rule,
		"time": t, "output_fields": fields, "tags": tags, "source": "k8s_audit",
	}
}

// falcoPriority maps a severity onto Falco's priorities, the reverse of
// how Falco's are mapped onto severities.
func falcoPriority(s rules.Severity) string {
	return [...]string{"Informational", "Notice", "Warning", "Error", "Critical"}[s]
}

func falcoTitle(p string) string {
	if p == "" {
		return p
	}
	return strings.ToUpper(p[:1]) + strings.ToLower(p[1:])
}

func rulesCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rules",
		Short: "List, check and test detection rules",
		Long: `rules lists the detection rules detect would run, checks rule files
(kubetrail's own rules, Sigma rules and Falco rule files), and runs rule
unit tests (docs/detection.md).`,
	}
	var lf ruleFlags
	list := &cobra.Command{
		Use:   "list",
		Short: "List the rules: the built-in pack, or those of --rules",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			eng, err := lf.load(e)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SOURCE\tSEVERITY\tENABLED\tRULE\tTAGS\tFILE")
			for _, r := range eng.Rules() {
				where := r.File
				if r.Line > 0 {
					where = fmt.Sprintf("%s:%d", r.File, r.Line)
				}
				fmt.Fprintf(tw, "%s\t%s\t%v\t%s\t%s\t%s\n", r.Source, r.Severity, r.Enabled, escape.Line(r.Name), escape.Line(strings.Join(r.Tags, ",")), escape.Line(where))
			}
			return tw.Flush()
		},
	}
	lf.add(list)
	var checkBuiltin bool
	check := &cobra.Command{
		Use:   "check PATH...",
		Short: "Load rule files and report every problem with FILE:LINE:COL",
		Long: `check loads rule files (or folders of them) as detect --rules would and
prints every problem as FILE:LINE:COL: error|warning: message. It exits 1
when there is an error (the file would not load), 0 otherwise: warnings,
such as a Sigma field that audit events do not have, never stop a rule from
loading. A file that changes built-in rules by name is checked with
--builtin, as detect --builtin loads it.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			files, readWarns, err := engine.ReadPaths(args)
			if err != nil {
				return err
			}
			eng, probs := engine.Load(files, engine.Options{Builtin: checkBuiltin})
			probs = append(readWarns, probs...)
			errs, warns := 0, 0
			for _, p := range probs {
				fmt.Fprintln(e.stdout, escape.Text(p.String()))
				if p.Warning {
					warns++
				} else {
					errs++
				}
			}
			fmt.Fprintf(e.stderr, "%s, %s loaded, %s, %s\n", plural(len(files), "file", "files"), plural(len(eng.Rules()), "rule", "rules"), plural(errs, "error", "errors"), plural(warns, "warning", "warnings"))
			if errs > 0 {
				return exitCode(1)
			}
			return nil
		},
	}
	check.Flags().BoolVar(&checkBuiltin, "builtin", false, "load the built-in pack first, as detect --builtin does, so that a file may change its rules by name")
	cmd.AddCommand(list, check, rulesTestCmd(e))
	return cmd
}

func rulesTestCmd(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "test FILE...",
		Short: "Run rule unit tests: audit events in, expected alerts out",
		Long: `test runs rule unit tests, as promtool test rules does for Prometheus. Each
FILE is a YAML fixture:

  rules: [my-rules.yaml, builtin]   # rule files or folders, relative to FILE;
                                    # builtin: the built-in pack (the default)
  tests:
  - name: exec into production alerts once
    events: |                       # audit events, one JSON object a line
      {"kind":"Event","apiVersion":"audit.k8s.io/v1",...}
    # or: events_file: exec.jsonl   # relative to FILE: JSON lines, an
    #                               # EventList or a JSON array
    alerts:
    - rule: Exec into production    # the rule's name (Sigma: its title)
      severity: high                # optional
      auditIDs: [e-1]               # optional: the alert's audit IDs, in order
      count: 1                      # optional, default 1; 0: must not fire

Each test runs its events, in order, through freshly loaded rules (so
thresholds and sequences start empty). It checks only the rules its alerts
name: every alert those rules raise must be expected, and every expected
alert raised. Each mismatch is printed as FILE:LINE: test "NAME": ...,
at the line of the expectation it breaks. A fixture that cannot run (YAML,
a rule file with an error, an event that does not decode, a rule name no
rule file defines) is reported as FILE:LINE:COL: error: ... on stderr.
The exit status is 1 when any test fails or any fixture cannot run.`,
		Example: `  kubetrail rules test rules/tests/*.yaml`,
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			bad := false
			for _, name := range args {
				rep, err := ruletest.RunFile(name)
				if err != nil {
					fmt.Fprintln(e.stderr, escape.Text(err.Error()))
					bad = true
					continue
				}
				for _, f := range rep.Failures {
					fmt.Fprintln(e.stdout, escape.Text(f.String()))
				}
				fmt.Fprintf(e.stdout, "%s: %d tests, %d failed\n", escape.Line(name), rep.Tests, rep.Failed)
				bad = bad || rep.Failed > 0
			}
			if bad {
				return exitCode(1)
			}
			return nil
		},
	}
}
