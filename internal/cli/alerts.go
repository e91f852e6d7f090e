package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/kubetrail/kubetrail/internal/alert"
	"github.com/kubetrail/kubetrail/internal/escape"
	"github.com/kubetrail/kubetrail/internal/server"
	"github.com/kubetrail/kubetrail/internal/timespec"
)

func alertsCmd(e *env) *cobra.Command {
	var (
		dir, since, until, severity, output string
		ruleNames, sources                  []string
		limit                               int
		follow                              bool
		remote                              remoteFlags
		ns                                  nsFlags
	)
	cmd := &cobra.Command{
		Use:   "alerts",
		Short: "List the alerts detection stored",
		Long: `alerts lists the alerts that serve's detection stored (in DATA/alerts/),
oldest first: the newest --limit (1000) that match. It reads the folder
beside a running serve (nothing is locked or written), or asks one with
--server.

-o table prints TIME (the alert's time: its last event's stageTimestamp,
UTC), SEVERITY, RULE, USER (who sent the request), AS (whom they
impersonated, - when nobody), NAMESPACE and MESSAGE. -o wide adds SEQ (the
store's number for the alert), SOURCE (kubetrail, sigma or falco), AUDIT
IDS (every event the alert is about) and STORED (when it was stored).
-o jsonl prints one alert a line in detect's jsonl contract plus seq and
stored (what GET /api/v1/alerts answers); -o json the same as an array.

An empty answer says why on stderr: detection never ran on this data
folder, the store holds no alert yet, or none matches. A damaged stretch
of the store is named on stderr, with exit status 3, after every intact
alert is printed. --follow prints new alerts as they are stored, until
interrupted (damage is then only named).`,
		Example: `  kubetrail alerts --since 24h
  kubetrail alerts --severity high -o wide
  kubetrail alerts --rule "Binding to cluster-admin" --rule "Exec, attach or port-forward into a pod" -o jsonl
  kubetrail alerts -f --server https://kubetrail:8443 --token-file token`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !slices.Contains([]string{"table", "wide", "json", "jsonl"}, output) {
				return fmt.Errorf("-o %q: want table, wide, json or jsonl", output)
			}
			if follow && output == "json" {
				return errors.New("-o json with --follow: a JSON array never ends while it is followed; use -o jsonl")
			}
			if err := ns.check(); err != nil {
				return err
			}
			v := url.Values{"rule": ruleNames, "source": sources, "limit": {strconv.Itoa(limit)}}
			if ns.ns != "" {
				v.Set("namespace", ns.ns)
			}
			if severity != "" {
				v.Set("severity", severity)
			}
			now := time.Now()
			lo, hi, err := timespec.Range("--since", since, "--until", until, now)
			if err != nil {
				return err
			}
			setTimeParams(v, lo, hi)
			q, err := server.ParseAlertQuery(v, now)
			if err != nil {
				return err
			}
			var src alertSource = &localAlerts{dir: dir}
			if remote.url != "" {
				src = &remoteAlerts{r: &remote, v: v}
			}
			p := &alertTable{format: output, w: e.stdout}
			if follow {
				return followAlerts(cmd.Context(), e, src, q, p)
			}
			list, damage, err := src.list(cmd.Context(), q)
			if err != nil {
				return err
			}
			if err := p.print(list, true, true); err != nil {
				return err
			}
			if len(list) == 0 {
				explainNoAlerts(cmd.Context(), e, src)
			}
			return alertDamage(e, damage)
		},
	}
	addDataFlag(cmd, &dir)
	f := cmd.Flags()
	f.StringVar(&since, "since", "", "only alerts whose time (their last event's stageTimestamp) is at or after this (inclusive): a duration before now (2h, 7d, 1d12h), an RFC 3339 time or a date (00:00 UTC)")
	f.StringVar(&until, "until", "", "only alerts whose time is at or before this (inclusive); the same forms as --since")
	f.StringArrayVar(&ruleNames, "rule", nil, "only alerts of this rule, its name exactly as written (Sigma: its title); repeatable")
	f.StringArrayVar(&sources, "source", nil, "only alerts of rules of this format: kubetrail, sigma or falco; repeatable")
	f.StringVar(&severity, "severity", "", "only alerts at least this severe: info, low, medium, high or critical")
	f.IntVar(&limit, "limit", alert.DefaultListLimit, fmt.Sprintf("print the newest this many matching alerts (1 to %d)", server.MaxAlertLimit))
	f.BoolVarP(&follow, "follow", "f", false, "after the matching alerts, print new ones as they are stored, until interrupted")
	f.StringVarP(&output, "output", "o", "table", "table, wide, json or jsonl")
	remote.add(cmd)
	cmd.Flags().StringVarP(&ns.ns, "namespace", "n", "", "only alerts whose last event was in this namespace (alerts about cluster-scoped objects are left out); without it, every namespace")
	cmd.Flags().BoolVarP(&ns.all, "all-namespaces", "A", false, "every namespace: the default, accepted for kubectl habits")
	return cmd
}

// alertSource is where the alerts command reads: a data folder or a
// server.
type alertSource interface {
	// list returns the alerts q selects and the damage the answer left
	// out, one line each.
	list(ctx context.Context, q alert.Query) ([]alert.Alert, []string, error)
	// newest returns the newest stored alert, nil when none is; a data
	// folder without an alert store is errNoAlertStore.
	newest(ctx context.Context) (*alert.Alert, error)
	// tail calls fn with the alerts q selects numbered above after, then
	// with new ones as they are stored, and damage with damage lines,
	// until ctx ends (nil) or the source fails.
	tail(ctx context.Context, q alert.Query, after uint64, fn func([]alert.Alert) error, damage func(string)) error
}

// errNoAlertStore says a data folder has no alert store.
type errNoAlertStore struct{ dir string }

func (e errNoAlertStore) Error() string {
	return fmt.Sprintf("no alert store in %s: detection has not run on this data folder (serve keeps alerts there when it runs rules)", e.dir)
}

type localAlerts struct{ dir string }

func (l *localAlerts) path() (string, error) {
	p := filepath.Join(l.dir, alert.StoreDir)
	if _, err := os.Stat(p); errors.Is(err, os.ErrNotExist) {
		return p, errNoAlertStore{dir: p}
	}
	return p, nil
}

func (l *localAlerts) list(_ context.Context, q alert.Query) ([]alert.Alert, []string, error) {
	p, err := l.path()
	if errors.As(err, new(errNoAlertStore)) {
		return nil, nil, nil // explainNoAlerts says so
	}
	list, damage, err := alert.ListDir(nil, p, q)
	var lines []string
	for _, d := range damage {
		lines = append(lines, d.String())
	}
	return list, lines, err
}

func (l *localAlerts) newest(context.Context) (*alert.Alert, error) {
	p, err := l.path()
	if err != nil {
		return nil, err
	}
	list, _, err := alert.ListDir(nil, p, alert.Query{Limit: 1})
	if err != nil || len(list) == 0 {
		return nil, err
	}
	return &list[0], nil
}

// tail looks for new alerts every second: it reads only the segments
// that hold alerts above the last one read (ListDir skips the others) and
// filters them here, so that the cursor moves on whether or not they
// match.
func (l *localAlerts) tail(ctx context.Context, q alert.Query, cursor uint64, fn func([]alert.Alert) error, damage func(string)) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
		for {
			p, err := l.path()
			if err != nil {
				break // detection may start later
			}
			page, dmg, err := alert.ListDir(nil, p, alert.Query{After: cursor, Oldest: true, Limit: alert.DefaultListLimit})
			if err != nil {
				return err
			}
			for _, d := range dmg {
				damage(d.String())
			}
			var keep []alert.Alert
			for i := range page {
				if q.Match(&page[i]) {
					keep = append(keep, page[i])
				}
			}
			if err := fn(keep); err != nil {
				return err
			}
			if len(page) == 0 {
				break
			}
			cursor = page[len(page)-1].Seq
		}
	}
}

type remoteAlerts struct {
	r *remoteFlags
	v url.Values
}

func (s *remoteAlerts) list(ctx context.Context, _ alert.Query) ([]alert.Alert, []string, error) {
	var list []alert.Alert
	err := s.stream(ctx, s.v, func(a []alert.Alert) error { list = append(list, a...); return nil })
	return list, s.damage(), err
}

func (s *remoteAlerts) damage() []string {
	var lines []string
	for _, d := range s.r.damage {
		lines = append(lines, d.String())
	}
	return lines
}

func (s *remoteAlerts) newest(ctx context.Context) (*alert.Alert, error) {
	var list []alert.Alert
	err := s.stream(ctx, url.Values{"limit": {"1"}}, func(a []alert.Alert) error { list = append(list, a...); return nil })
	if err != nil || len(list) == 0 {
		return nil, err
	}
	return &list[0], nil
}

// tail asks the server to follow: the matches above after, then the
// new ones as they are stored.
func (s *remoteAlerts) tail(ctx context.Context, _ alert.Query, after uint64, fn func([]alert.Alert) error, damage func(string)) error {
	v := url.Values{}
	for k, vals := range s.v {
		v[k] = vals
	}
	v.Set("after", strconv.FormatUint(after, 10))
	v.Set("limit", strconv.Itoa(server.MaxAlertLimit))
	v.Set("follow", "1")
	n := len(s.r.damage)
	err := s.stream(ctx, v, func(a []alert.Alert) error {
		for _, d := range s.r.damage[n:] {
			damage(d.String())
		}
		n = len(s.r.damage)
		return fn(a)
	})
	if ctx.Err() != nil {
		return nil // --follow runs until stopped
	}
	if err == nil {
		// Any other end (the server went away without a word) must not
		// look like the user's stop.
		return errors.New("the server ended the stream without saying why; the alerts after this point were not shown")
	}
	return err
}

// stream asks GET /api/v1/alerts and calls fn with the alerts of each
// read from the body (one call per alert while following); an error line
// from the server is returned as an error.
func (s *remoteAlerts) stream(ctx context.Context, v url.Values, fn func([]alert.Alert) error) error {
	resp, err := s.r.do(ctx, "/api/v1/alerts", v)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(sc.Bytes(), &e) == nil && e.Error != "" {
			return fmt.Errorf("server: %s", e.Error)
		}
		a, err := alert.ParseStoredJSON(sc.Bytes())
		if err != nil {
			return fmt.Errorf("server sent a line that is not an alert: %v", err)
		}
		if err := fn([]alert.Alert{a}); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil && ctx.Err() == nil {
		return err
	}
	return nil
}

// followAlerts prints the alerts q selects, then new ones as src stores
// them: the table's header once, then rows without column alignment
// (later rows are not known yet). Damage lines go to stderr as they are
// met; the follow goes on.
func followAlerts(ctx context.Context, e *env, src alertSource, q alert.Query, p *alertTable) error {
	seen := map[string]bool{}
	damage := func(d string) {
		if !seen[d] {
			seen[d] = true
			fmt.Fprintln(e.stderr, escape.Text(d))
		}
	}
	// The newest seq before listing: alerts above it that the list shows
	// were stored meanwhile, and the tail must not show them again.
	var cursor uint64
	n, err := src.newest(ctx)
	switch {
	case err == nil && n != nil:
		cursor = n.Seq
	case err != nil && !errors.As(err, new(errNoAlertStore)):
		return err
	}
	list, dmg, err := src.list(ctx, q)
	if err != nil {
		return err
	}
	for _, d := range dmg {
		damage(d)
	}
	if err := p.print(list, true, false); err != nil {
		return err
	}
	if len(list) == 0 {
		explainNoAlerts(ctx, e, src)
	}
	sent := map[uint64]bool{}
	for _, a := range list {
		if a.Seq > cursor {
			sent[a.Seq] = true
		}
	}
	return src.tail(ctx, q, cursor, func(batch []alert.Alert) error {
		batch = slices.DeleteFunc(batch, func(a alert.Alert) bool { return sent[a.Seq] })
		return p.print(batch, false, false)
	}, damage)
}

// explainNoAlerts tells a person, on stderr, why an answer is empty, so
// that a folder where detection never ran, or a --since that misses every
// alert, is not mistaken for "no attack".
func explainNoAlerts(ctx context.Context, e *env, src alertSource) {
	n, err := src.newest(ctx)
	switch {
	case err != nil:
		fmt.Fprintln(e.stderr, "kubetrail:", escape.Text(err.Error()))
	case n == nil:
		fmt.Fprintln(e.stderr, "kubetrail: no alert matches: the alert store holds no alert yet")
	default:
		fmt.Fprintf(e.stderr, "kubetrail: no alert matches; the newest stored alert (seq %d) is from %s\n", n.Seq, n.Time.UTC().Format("2006-01-02 15:04 UTC"))
	}
}

// alertDamage names the damaged stretches an answer left out and returns
// exit status 3: a partial answer never passes for a whole one.
func alertDamage(e *env, damage []string) error {
	if len(damage) == 0 {
		return nil
	}
	for _, d := range damage {
		fmt.Fprintln(e.stderr, escape.Text(d))
	}
	fmt.Fprintf(e.stderr, "kubetrail: the answer leaves out the damaged alert records above (%d); every intact alert was listed. Retention removes a damaged segment with its others.\n", len(damage))
	return exitCode(3)
}

// alertTable prints alerts in the alerts command's formats.
type alertTable struct {
	format string
	w      io.Writer
}

func (p *alertTable) heads() []string {
	if p.format == "wide" {
		return []string{"SEQ", "TIME", "SEVERITY", "SOURCE", "RULE", "USER", "AS", "NAMESPACE", "AUDIT IDS", "STORED", "MESSAGE"}
	}
	return []string{"TIME", "SEVERITY", "RULE", "USER", "AS", "NAMESPACE", "MESSAGE"}
}

// cells is one alert's row; every value escaped (it cannot drive the
// terminal nor forge a row or a column), "-" for an empty one.
func (p *alertTable) cells(a *alert.Alert) []string {
	when := func(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }
	var c []string
	if p.format == "wide" {
		c = []string{strconv.FormatUint(a.Seq, 10), when(a.Time), a.Severity.String(), a.Source, a.Rule, a.User, a.ImpersonatedUser,
			a.Namespace, strings.Join(a.AuditIDs, ","), when(a.Stored), a.Message}
	} else {
		c = []string{when(a.Time), a.Severity.String(), a.Rule, a.User, a.ImpersonatedUser, a.Namespace, a.Message}
	}
	for i, v := range c {
		if c[i] = escape.Line(v); c[i] == "" {
			c[i] = "-"
		}
	}
	return c
}

// print prints alerts: the table's header first when head is set, its
// columns aligned when aligned is (a --follow prints rows as they come).
// -o json prints a whole array (never followed).
func (p *alertTable) print(list []alert.Alert, head, aligned bool) error {
	bw := bufio.NewWriter(p.w)
	defer bw.Flush()
	switch p.format {
	case "jsonl", "json":
		raws := make([]json.RawMessage, 0, len(list))
		for i := range list {
			b, err := alert.AppendStoredJSONLine(nil, &list[i])
			if err != nil {
				return err
			}
			raws = append(raws, b[:len(b)-1])
		}
		if p.format == "json" {
			// Indented for people; C1 and bidi controls as \u escapes
			// (the same value), as every JSON output of kubetrail.
			b, err := json.MarshalIndent(raws, "", "  ")
			if err != nil {
				return err
			}
			bw.Write(escape.JSON(b))
			bw.WriteByte('\n')
			return nil
		}
		for _, r := range raws {
			bw.Write(escape.JSON(r))
			bw.WriteByte('\n')
		}
		return nil
	}
	if !aligned {
		if head {
			bw.WriteString(strings.Join(p.heads(), "  ") + "\n")
		}
		for i := range list {
			bw.WriteString(strings.Join(p.cells(&list[i]), "  ") + "\n")
		}
		return nil
	}
	tw := tabwriter.NewWriter(bw, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(p.heads(), "\t"))
	for i := range list {
		fmt.Fprintln(tw, strings.Join(p.cells(&list[i]), "\t"))
	}
	return tw.Flush()
}
