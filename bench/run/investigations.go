package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// rowKind says what one row of an investigation's -o jsonl output is, and
// so how every tool's answer is normalized to the same lines.
type rowKind int

const (
	// kindRequests: one request a row (who, activity, history, execs,
	// rbac, from), normalized to "auditID stage stageTimestamp" of the
	// request's last stage.
	kindRequests rowKind = iota
	// kindSecrets: one (user, impersonated user, verb) group a row,
	// normalized to "user<TAB>as<TAB>verb<TAB>requests<TAB>failed".
	kindSecrets
	// kindDenied: one (user, impersonated user) group a row, normalized to
	// "user<TAB>as<TAB>requests".
	kindDenied
	// kindTimeline: rows fold requests; normalized to one line per
	// request, its audit ID, so that the set of requests told is compared
	// (the folding itself is tested in internal/investigate).
	kindTimeline
)

// investigation is one investigation command on a selective question,
// with the same question in jq and SQL. Each side reproduces what the
// command does over the selected events (docs/investigations.md, "What
// every command shares"): a request is its stages grouped by audit ID,
// URI, verb, user and receive time, reported as its last stage, and the
// control plane's requests are left out unless denied (not for who).
type investigation struct {
	what string
	args []string // kubetrail arguments: the command and its own
	kind rowKind
	// jq is a jq condition on one event selecting what the command
	// selects; where is the same as an SQL condition over bench/duckdb's
	// events table.
	jq, where string
	// system keeps the control plane's requests (who shows them).
	system bool
}

// The condition of activity and timeline --user: the user's requests,
// those made as the user, and the role bindings whose body names the user.
const (
	attackerJQ = `(.user.username == "attacker" or .impersonatedUser.username == "attacker" or ` +
		`((.objectRef.resource == "clusterrolebindings" or .objectRef.resource == "rolebindings") and (.verb == "create" or .verb == "update" or .verb == "patch") and (.requestObject | tojson | contains("\"name\":\"attacker\""))))`
	attackerSQL = `(username = 'attacker' OR impersonatedUser = 'attacker' OR ` +
		`(resource IN ('clusterrolebindings', 'rolebindings') AND verb IN ('create', 'update', 'patch') AND contains(CAST(json_extract(raw, '$.requestObject') AS VARCHAR), '"name":"attacker"')))`
	prodJQ  = `.objectRef.namespace == "production"`
	prodSQL = `namespace = 'production'`
)

var investigations = []investigation{
	{"who deleted secret important in production", []string{"who", "delete", "secrets/important", "-n", "production"}, kindRequests,
		`.verb == "delete" and .objectRef.resource == "secrets" and .objectRef.name == "important" and (.objectRef.subresource // "") == "" and ` + prodJQ,
		`verb = 'delete' AND resource = 'secrets' AND name = 'important' AND coalesce(subresource, '') = '' AND ` + prodSQL, true},
	{"what attacker did in production", []string{"activity", "attacker", "-n", "production"}, kindRequests,
		attackerJQ + ` and ` + prodJQ, attackerSQL + ` AND ` + prodSQL, false},
	{"history of secret important in production", []string{"history", "secrets/important", "-n", "production"}, kindRequests,
		`.objectRef.resource == "secrets" and .objectRef.name == "important" and ` + prodJQ +
			` and (.verb | IN("create", "update", "patch", "delete", "deletecollection")) and ((.objectRef.subresource // "") | IN("exec", "attach", "portforward", "proxy") | not)`,
		`resource = 'secrets' AND name = 'important' AND ` + prodSQL +
			` AND verb IN ('create', 'update', 'patch', 'delete', 'deletecollection') AND coalesce(subresource, '') NOT IN ('exec', 'attach', 'portforward', 'proxy')`, false},
	{"secret access in production", []string{"secrets", "-n", "production"}, kindSecrets,
		`.objectRef.resource == "secrets" and (.objectRef.apiGroup // "") == "" and ` + prodJQ,
		`resource = 'secrets' AND coalesce(apiGroup, '') = '' AND ` + prodSQL, false},
	{"exec, attach, port-forward in production", []string{"execs", "-n", "production"}, kindRequests,
		`.objectRef.resource == "pods" and (.objectRef.apiGroup // "") == "" and (.objectRef.subresource | IN("exec", "attach", "portforward")) and ` + prodJQ,
		`resource = 'pods' AND coalesce(apiGroup, '') = '' AND subresource IN ('exec', 'attach', 'portforward') AND ` + prodSQL, false},
	{"denied in production", []string{"denied", "-n", "production"}, kindDenied,
		`(.responseStatus.code == 401 or .responseStatus.code == 403 or .annotations["authorization.k8s.io/decision"] == "forbid") and ` + prodJQ,
		`(code IN (401, 403) OR annotations['authorization.k8s.io/decision'] = 'forbid') AND ` + prodSQL, false},
	{"RBAC changes", []string{"rbac"}, kindRequests,
		`.objectRef.apiGroup == "rbac.authorization.k8s.io" and (.objectRef.resource | IN("roles", "rolebindings", "clusterroles", "clusterrolebindings")) and (.verb | IN("create", "update", "patch", "delete", "deletecollection"))`,
		`apiGroup = 'rbac.authorization.k8s.io' AND resource IN ('roles', 'rolebindings', 'clusterroles', 'clusterrolebindings') AND verb IN ('create', 'update', 'patch', 'delete', 'deletecollection')`, false},
	{"what came from 192.168.1.100 in production", []string{"from", "192.168.1.100", "-n", "production"}, kindRequests,
		`any(.sourceIPs[]?; . == "192.168.1.100") and ` + prodJQ,
		`list_contains(sourceIPs, '192.168.1.100') AND ` + prodSQL, false},
	{"attacker's story in production", []string{"timeline", "--user", "attacker", "-n", "production"}, kindTimeline,
		attackerJQ + ` and ` + prodJQ, attackerSQL + ` AND ` + prodSQL, false},
}

// invJQPrelude turns the events a condition selects into requests, as the
// investigations do: the last stage of each (ties: the later event), the
// control plane's requests left out unless denied (CP), then prints the
// normalized rows (OUT). One pass over the file (jq -n -r).
const invJQPrelude = `def rank: if . == "RequestReceived" then 0 elif . == "ResponseStarted" then 1 elif . == "ResponseComplete" or . == "Panic" then 2 else -1 end;
def cp: .u == "system:apiserver" or .u == "system:kube-controller-manager" or .u == "system:kube-scheduler" or (.u | startswith("system:node:")) or (.u | startswith("system:serviceaccount:kube-system:"));
def denied: .code == 401 or .code == 403 or .dec == "forbid";
reduce (inputs | select(COND) | {k: ([.auditID, .requestURI, .verb, (.user.username // ""), .requestReceivedTimestamp] | tojson), r: (.stage | rank),
  id: .auditID, stage, ts: .stageTimestamp, u: (.user.username // ""), as: (.impersonatedUser.username // ""), verb,
  code: (.responseStatus.code // 0), dec: (.annotations["authorization.k8s.io/decision"] // ""),
  res: (.objectRef.resource // ""), grp: (.objectRef.apiGroup // ""), sub: (.objectRef.subresource // "")}) as $e
  ({}; if .[$e.k] == null or $e.r >= .[$e.k].r then .[$e.k] = $e else . end)
| [.[] | CP] | OUT`

// jqProgram is inv's question as one jq -n -r program printing the
// normalized rows.
func (inv investigation) jqProgram() string {
	cp := `select((cp | not) or denied)`
	if inv.system {
		cp = `.`
	}
	var out string
	switch inv.kind {
	case kindRequests:
		out = `.[] | "\(.id) \(.stage) \(.ts)"`
	case kindSecrets:
		out = `group_by([.u, .as, .verb])[] | "\(.[0].u)\t\(.[0].as)\t\(.[0].verb)\t\(length)\t\(map(select(.code >= 400)) | length)"`
	case kindDenied:
		out = `group_by([.u, .as])[] | "\(.[0].u)\t\(.[0].as)\t\(length)"`
	case kindTimeline:
		// visible (internal/investigate/timeline.go): all but an allowed
		// read by an authenticated user as themselves of anything but
		// secrets, RBAC objects and exec/attach/portforward.
		out = `.[] | select((.verb | IN("get", "list", "watch") | not) or denied or .u == "system:anonymous" or .u == "" or .as != "" or (.res == "secrets" and .grp == "") ` +
			`or .grp == "rbac.authorization.k8s.io" or (.sub | IN("exec", "attach", "portforward"))) | .id`
	}
	r := strings.NewReplacer("COND", inv.jq, "CP", cp, "OUT", out)
	return r.Replace(invJQPrelude)
}

// invSQLPrelude is invJQPrelude in SQL: the selected events (rid keeps
// file order for ties), the last stage of each request, the control plane
// left out unless denied; SELECT_OUT follows.
const invSQLPrelude = `WITH e AS (SELECT rowid AS rid, auditID AS id, stage, stageTimestamp AS ts, requestURI AS uri, verb, requestReceivedTimestamp AS rr,
  coalesce(username, '') AS u, coalesce(impersonatedUser, '') AS imp, coalesce(code, 0) AS code,
  coalesce(annotations['authorization.k8s.io/decision'], '') AS dec, coalesce(resource, '') AS res, coalesce(apiGroup, '') AS grp, coalesce(subresource, '') AS sub,
  CASE stage WHEN 'RequestReceived' THEN 0 WHEN 'ResponseStarted' THEN 1 WHEN 'ResponseComplete' THEN 2 WHEN 'Panic' THEN 2 ELSE -1 END AS r
  FROM events WHERE COND),
q AS (SELECT * FROM e QUALIFY row_number() OVER (PARTITION BY id, uri, verb, u, rr ORDER BY r DESC, rid DESC) = 1),
k AS (SELECT * FROM q WHERE CP)
`

// sql is inv's question as one SQL statement returning the normalized
// rows' columns.
func (inv investigation) sql() string {
	cp := `NOT (u IN ('system:apiserver', 'system:kube-controller-manager', 'system:kube-scheduler') OR starts_with(u, 'system:node:') OR starts_with(u, 'system:serviceaccount:kube-system:')) OR code IN (401, 403) OR dec = 'forbid'`
	if inv.system {
		cp = `true`
	}
	var out string
	switch inv.kind {
	case kindRequests:
		out = `SELECT id, stage, ts FROM k`
	case kindSecrets:
		out = `SELECT u, imp, verb, count(*), count(*) FILTER (WHERE code >= 400) FROM k GROUP BY u, imp, verb`
	case kindDenied:
		out = `SELECT u, imp, count(*) FROM k GROUP BY u, imp`
	case kindTimeline:
		out = `SELECT id FROM k WHERE verb NOT IN ('get', 'list', 'watch') OR code IN (401, 403) OR dec = 'forbid' OR u IN ('system:anonymous', '') OR imp <> '' ` +
			`OR (res = 'secrets' AND grp = '') OR grp = 'rbac.authorization.k8s.io' OR sub IN ('exec', 'attach', 'portforward')`
	}
	// Ordered, as duckbench requires every run of a statement to return
	// the same rows in the same order.
	return strings.NewReplacer("COND", inv.where, "CP", cp).Replace(invSQLPrelude) + out + " ORDER BY ALL"
}

// sep is how each tool's columns are joined in a normalized line.
func (k rowKind) sep() string {
	if k == kindRequests {
		return " "
	}
	return "\t"
}

// microTime rewrites an RFC 3339 time with its fraction as six digits, as
// the log and DuckDB write it (Go's JSON trims trailing zeros).
func microTime(s string) (string, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return "", err
	}
	return t.UTC().Format("2006-01-02T15:04:05.000000Z"), nil
}

// normalizeReport turns an investigation's -o jsonl output into sorted
// normalized lines (see rowKind).
func normalizeReport(k rowKind, r io.Reader) ([]string, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	var lines []string
	for n := 1; sc.Scan(); n++ {
		var rec struct {
			AuditID   string   `json:"auditID"`
			Stage     string   `json:"stage"`
			StageTime string   `json:"stageTime"`
			User      *string  `json:"user"`
			As        string   `json:"impersonatedUser"`
			Verb      string   `json:"verb"`
			Requests  *int     `json:"requests"`
			Failed    int      `json:"failed"`
			AuditIDs  []string `json:"auditIDs"`
		}
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		switch k {
		case kindRequests:
			if rec.AuditID == "" || rec.Stage == "" {
				return nil, fmt.Errorf("line %d: not a request record (no auditID or stage)", n)
			}
			ts, err := microTime(rec.StageTime)
			if err != nil {
				return nil, fmt.Errorf("line %d: stageTime: %w", n, err)
			}
			lines = append(lines, rec.AuditID+" "+rec.Stage+" "+ts)
		case kindSecrets, kindDenied:
			if rec.User == nil || rec.Requests == nil {
				return nil, fmt.Errorf("line %d: not a group record (no user or requests)", n)
			}
			l := *rec.User + "\t" + rec.As
			if k == kindSecrets {
				l += "\t" + rec.Verb + "\t" + strconv.Itoa(*rec.Requests) + "\t" + strconv.Itoa(rec.Failed)
			} else {
				l += "\t" + strconv.Itoa(*rec.Requests)
			}
			lines = append(lines, l)
		case kindTimeline:
			if len(rec.AuditIDs) == 0 {
				return nil, fmt.Errorf("line %d: a timeline row without auditIDs", n)
			}
			lines = append(lines, rec.AuditIDs...)
		}
	}
	sort.Strings(lines)
	return lines, sc.Err()
}

// normalizeLines sorts a tool's printed normalized lines (jq's).
func normalizeLines(out string) []string {
	var lines []string
	for _, l := range strings.Split(out, "\n") {
		if l != "" {
			lines = append(lines, l)
		}
	}
	sort.Strings(lines)
	return lines
}

// normalizeRows joins DuckDB's columns as the kind's lines, sorted.
func normalizeRows(k rowKind, rows [][]string) []string {
	lines := make([]string, 0, len(rows))
	for _, r := range rows {
		lines = append(lines, strings.Join(r, k.sep()))
	}
	sort.Strings(lines)
	return lines
}

// invRow is one investigation's figures.
type invRow struct {
	rows       int
	kt         row
	jq, gojq   time.Duration
	duck       row
	duckWarmMS float64
}

// investigate runs every investigation beside jq, gojq and DuckDB giving
// the same rows, each compared (sorted normalized lines) before a time is
// written.
func (s *suite) investigate(ci int, c corpus) error {
	w := &s.out
	kt := filepath.Join(s.bin, "kubetrail")
	dir := filepath.Join(s.work, "data-import")
	runs := max(5, s.runs)

	var reqs []duckRequest
	for i, inv := range investigations {
		reqs = append(reqs, duckRequest{Name: fmt.Sprintf("inv %d", i), SQL: inv.sql(), Runs: runs})
	}
	duck, err := s.duckQuery(c, reqs)
	if err != nil {
		return err
	}
	if ci == 0 {
		s.investigationForms()
	}
	fmt.Fprintf(w, "## Investigations, %s events\n\n", c.name)
	fmt.Fprintf(w, "Each investigation command on a selective question, `kubetrail COMMAND -o jsonl > out` as a new process over the store `kubetrail import` wrote (median of %d; peak RSS its largest), "+
		"beside the same question asked of the raw log in one pass by `jq -n -r 'PROGRAM' audit.log` and gojq (one run each), and of DuckDB's table by one SQL statement returning the same rows "+
		"as a new `duckbench query` process (start, open the file, answer; median of %d), and warm, in one session that had the file open (median of %d). "+
		"The jq and SQL forms (listed above) do what the command does with the events it selects: one row per request, its last stage (the audit ID is not unique, so a request is its audit ID, URI, verb, user and receive time), "+
		"the control plane's requests left out unless denied (not for who), then the command's rows. "+
		"Before a row is written, every tool's rows are normalized to the same sorted lines and compared, and a mismatch stops the run with the first differing line: "+
		"a request as `auditID stage stageTimestamp` of its last stage; a group of secrets or denied as its user, impersonated user (and verb) and request count (and failed count); "+
		"a timeline row as the audit IDs of the requests it folds (the folding itself is tested in internal/investigate). "+
		"rows: the command's rows (lines compared, for timeline: requests). vs jq, vs DuckDB: the other tool's time over kubetrail's. "+
		"Above %s events gojq is not run (\"-\"): a pass takes a minute or more there.\n\n", runs, runs, runs, sizeName(slowPassesAbove))
	fmt.Fprintf(w, "| investigation | kubetrail command | rows | kubetrail | peak RSS | jq | gojq | DuckDB | DuckDB warm | vs jq | vs DuckDB |\n|---|---|---|---|---|---|---|---|---|---|---|\n")
	for i, inv := range investigations {
		r, err := s.investigateOne(kt, dir, c, inv, duck.results[fmt.Sprintf("inv %d", i)], runs)
		if err != nil {
			return fmt.Errorf("%s (kubetrail %s): %w", inv.what, strings.Join(inv.args, " "), err)
		}
		fmt.Fprintf(w, "| %s | %s | %d | %s | %s | %s | %s | %s | %s | %s | %s |\n", inv.what, code("kubetrail "+strings.Join(inv.args, " ")), r.rows,
			dur(r.kt.median), human(r.kt.rss), dur(r.jq), durOrDash(r.gojq), dur(r.duck.median), dur(ms(r.duckWarmMS)), ratio(r.jq, r.kt.median), ratio(r.duck.median, r.kt.median))
		s.fig.add("investigation: "+inv.what, ci, fig{kt: r.kt.median, rss: r.kt.rss, jq: r.jq, duck: r.duck.median})
	}
	fmt.Fprintf(w, "\nTargets (issue 12, at 2M events): every investigation on a selective question under 30 ms, and at least 1000x jq answering the same question.\n\n")
	return nil
}

// investigateOne measures one investigation and checks that every tool
// gives its rows.
func (s *suite) investigateOne(kt, dir string, c corpus, inv investigation, dres duckResult, runs int) (invRow, error) {
	var r invRow
	args := append(append([]string{}, inv.args...), "--data", dir, "-o", "jsonl")
	cmd := exec.Command(kt, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return r, fmt.Errorf("%v: %s", err, errb.String())
	}
	want, err := normalizeReport(inv.kind, &out)
	if err != nil {
		return r, err
	}
	r.rows = len(want)
	if err := sameKeys(want, normalizeRows(inv.kind, dres.Rows)); err != nil {
		return r, fmt.Errorf("kubetrail and DuckDB: %w", err)
	}
	r.kt, err = s.measure(runs, func() *exec.Cmd { return exec.Command(kt, args...) }, func(out string) error {
		got, err := normalizeReport(inv.kind, strings.NewReader(out))
		if err != nil {
			return err
		}
		return sameKeys(want, got)
	})
	if err != nil {
		return r, err
	}
	prog := inv.jqProgram()
	tools := []string{"jq", "gojq"}
	if c.events > slowPassesAbove {
		// A pass takes a minute or more there: nine investigations with
		// both tools would add some 20 minutes to make bench.
		tools = tools[:1]
	}
	for j, tool := range tools {
		cmd := exec.Command(tool, "-n", "-r", prog, c.path)
		var o, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &o, &errb
		t0 := time.Now()
		if err := cmd.Run(); err != nil {
			return r, fmt.Errorf("%s: %v: %s", tool, err, errb.String())
		}
		d := time.Since(t0)
		if err := sameKeys(want, normalizeLines(o.String())); err != nil {
			return r, fmt.Errorf("kubetrail and %s: %w", tool, err)
		}
		if j == 0 {
			r.jq = d
		} else {
			r.gojq = d
		}
	}
	r.duck, err = s.duckProcess(c, inv.sql(), runs, func(rows [][]string) error {
		return sameKeys(want, normalizeRows(inv.kind, rows))
	})
	if err != nil {
		return r, err
	}
	r.duckWarmMS = dres.MedianMS
	return r, nil
}

// investigationForms writes each investigation's jq and SQL form.
func (s *suite) investigationForms() {
	w := &s.out
	fmt.Fprintf(w, "## The investigations in each tool's language\n\n")
	fmt.Fprintf(w, "Each investigation's question as an event condition; around it, jq and SQL group the selected events into requests as the command does (the whole programs are built by bench/run/investigations.go: `jq -n -r` with one `reduce` over the file, and one SQL statement with a window function).\n\n")
	fmt.Fprintf(w, "| investigation | kubetrail | jq condition | SQL condition |\n|---|---|---|---|\n")
	for _, inv := range investigations {
		fmt.Fprintf(w, "| %s | %s | %s | %s |\n", inv.what, code("kubetrail "+strings.Join(inv.args, " ")), code(inv.jq), code(inv.where))
	}
	fmt.Fprintf(w, "\n<details><summary>The whole programs</summary>\n\n")
	for _, inv := range investigations {
		fmt.Fprintf(w, "%s: `jq -n -r` program\n\n```\n%s\n```\n\nSQL\n\n```sql\n%s\n```\n\n", inv.what, inv.jqProgram(), inv.sql())
	}
	fmt.Fprintf(w, "</details>\n\n")
}

// durOrDash is dur, or "-" for a tool that was not run.
func durOrDash(d time.Duration) string {
	if d <= 0 {
		return "-"
	}
	return dur(d)
}
