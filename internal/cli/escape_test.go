package cli

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"

	"github.com/kubetrail/kubetrail/internal/audit"
	"github.com/kubetrail/kubetrail/internal/investigate"
	"github.com/kubetrail/kubetrail/internal/investigate/investigatetest"
	"github.com/kubetrail/kubetrail/internal/pipeline"
	"github.com/kubetrail/kubetrail/internal/store/local"
)

// hostile is what an attacker appends to every value it controls: a
// colour, a title change ending in BEL, a newline to forge a row, a
// carriage return to overwrite it, a tab to forge a column, C1 controls
// (NEL, CSI), bidi overrides, DEL and NUL. A CSV cell starting with = is
// a spreadsheet formula.
const hostile = "\x1b[31m\x1b]0;pwned\x07\n\rFORGED\t\u0085\u009b\u202eevil\u2066\x7f\x00"

// hostileIncident is investigatetest's incident with hostile text in every
// value a request can choose: user, groups, impersonated user and groups,
// user agent, audit ID, namespace, name, status, reason, annotations, the
// exec command, the bodies (diffs, RBAC subjects), a source IP entry,
// verb, resource, subresource, API group and version (on an event of their
// own, so that the investigations still find theirs), and the cluster.
func hostileIncident(t *testing.T) (dir string, logPath string) {
	t.Helper()
	h := func(s string) string { return s + hostile }
	evs := investigatetest.Incident()
	for i, b := range evs {
		ev := &b.Ev
		if ev.User.Username != "" {
			ev.User.Username = h(ev.User.Username)
		}
		ev.User.Groups = append(ev.User.Groups, h("team"))
		if ev.ImpersonatedUser != nil {
			ev.ImpersonatedUser.Username = h(ev.ImpersonatedUser.Username)
			ev.ImpersonatedUser.Groups = []string{h("imp")}
		}
		ev.UserAgent = h(ev.UserAgent)
		ev.AuditID = h(ev.AuditID)
		ev.SourceIPs = append([]string{h("1.2.3.4")}, ev.SourceIPs...)
		if o := ev.ObjectRef; o != nil {
			if o.Namespace != "" {
				o.Namespace = h(o.Namespace)
			}
			if o.Name != "" {
				o.Name = h(o.Name)
			}
		}
		if s := ev.ResponseStatus; s != nil {
			s.Status, s.Reason, s.Message = h(s.Status), h("Reason"), h("message")
		}
		if ev.Annotations == nil {
			ev.Annotations = map[string]string{}
		}
		ev.Annotations["authorization.k8s.io/reason"] = h("reason")
		ev.Annotations[h("key")] = h("value")
		if strings.Contains(ev.RequestURI, "command=") {
			ev.RequestURI += "&command=" + url.QueryEscape(h("rm -rf /"))
		}
		for _, body := range []*json.RawMessage{&ev.RequestObject, &ev.ResponseObject} {
			if len(*body) > 0 {
				*body = json.RawMessage(strings.ReplaceAll(string(*body), `:"evil:6.6.6"`, `:`+jsonString(h("evil:6.6.6"))))
				*body = json.RawMessage(strings.ReplaceAll(string(*body), `"name":"eve"`, `"name":`+jsonString(h("eve"))))
			}
		}
		evs[i] = b
	}
	odd := investigatetest.Req(90, h("carol"), h("get"), "/apis/"+h("g")).Obj(h("things")+"/"+h("sub"), h("ns"), h("n")).Group(h("group")).Code(200, "allow")
	odd.Ev.ObjectRef.APIVersion = h("v1")
	evs = append(evs, odd)
	recs, err := investigatetest.Records(evs)
	if err != nil {
		t.Fatal(err)
	}
	dir = t.TempDir()
	db, err := local.Open(dir, local.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Append(context.Background(), &pipeline.Batch{Cluster: h("prod"), Received: time.Now(), Records: recs}); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	for _, r := range recs {
		log.Write(r.Raw)
		log.WriteByte('\n')
	}
	logPath = filepath.Join(t.TempDir(), "audit.log")
	if err := os.WriteFile(logPath, log.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir, logPath
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// checkPrintable fails when out holds a byte a terminal would act on: a
// C0 control other than the newline ending each line, DEL, a C1 control,
// a bidi control, or a byte that is not UTF-8. It returns the lines.
func checkPrintable(t *testing.T, what, out string) []string {
	t.Helper()
	if !utf8.ValidString(out) {
		t.Errorf("%s: output is not UTF-8:\n%q", what, out)
	}
	for _, r := range out {
		if (r < 0x20 && r != '\n') || (r >= 0x7f && r <= 0x9f) || r == 0x061c || r == 0x200e || r == 0x200f || (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069) {
			t.Errorf("%s: %U printed raw:\n%q", what, r, out)
			break
		}
	}
	return strings.Split(strings.TrimSuffix(out, "\n"), "\n")
}

// TestHostileValuesStayOnTheirRows runs every human output of every
// command that prints event values over events with control characters in
// every field: nothing a terminal acts on is printed, every row is one
// line (the number of lines is the number of rows), the escapes show
// (\x1b, \n, \u202e), and CSV cells cannot start a formula. The JSON, JSON
// lines and YAML outputs keep the exact values, escaped by their
// encoders. (Mutations tried: printer.cell returning v as it is, and
// cellText of internal/investigate only replacing \n and \t as it did,
// each fail here; so does stats printing keys unescaped.)
func TestHostileValuesStayOnTheirRows(t *testing.T) {
	dir, logPath := hostileIncident(t)
	rd, err := local.OpenReader(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	total, err := rd.CountMatching(local.Selection{})
	if err != nil {
		t.Fatal(err)
	}
	mustRun := func(args ...string) (string, string) {
		t.Helper()
		code, out, errs := run(args...)
		if code != 0 {
			t.Fatalf("%v: exit %d\n%s", args, code, errs)
		}
		return out, errs
	}
	shows := func(what, out string) {
		t.Helper()
		for _, esc := range []string{`\x1b[31m`, `\x1b]0;pwned\x07\n\rFORGED\t\u0085\u009b\u202eevil\u2066\x7f\x00`} {
			if !strings.Contains(out, esc) {
				t.Errorf("%s: the escaped value %s is not shown:\n%s", what, esc, out)
			}
		}
	}

	// query: one line per event after the header, in table and wide.
	for _, o := range []string{"table", "wide"} {
		out, _ := mustRun("query", "--data", dir, "-o", o)
		lines := checkPrintable(t, "query -o "+o, out)
		if int64(len(lines)) != total+1 {
			t.Errorf("query -o %s: %d lines for %d events", o, len(lines), total)
		}
		shows("query -o "+o, out)
	}
	out, _ := mustRun("query", "--data", dir, "-o", "csv")
	lines := checkPrintable(t, "query -o csv", out)
	recs, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	if err != nil || int64(len(recs)) != total+1 || len(lines) != len(recs) {
		t.Errorf("query -o csv: %d records (%v) on %d lines for %d events", len(recs), err, len(lines), total)
	}
	shows("query -o csv", out)
	for _, r := range recs[1:] {
		for _, c := range r {
			if c != "" && strings.ContainsRune("=+-@", rune(c[0])) {
				t.Errorf("query -o csv: a cell a spreadsheet runs: %q", c)
			}
		}
	}
	// A value that starts like a formula gets a quote; the others not.
	p := &printer{format: "csv"}
	for in, want := range map[string]string{"=HYPERLINK(\"x\")": "'=HYPERLINK(\"x\")", "+1": "'+1", "-1": "'-1", "@SUM(A1)": "'@SUM(A1)", "alice": "alice", "": ""} {
		if got := p.cell(in); got != want {
			t.Errorf("csv cell %q: %q, want %q", in, got, want)
		}
	}

	// The machine formats keep the exact values, and decode back to the
	// stored event. Their encoders escape C0 controls; -o json also
	// writes C1 and bidi controls as \u escapes, and YAML C1 controls
	// (it prints bidi controls as characters); -o jsonl is the stored
	// bytes, with C1 and bidi controls as the API server wrote them.
	for _, o := range []string{"json", "jsonl", "yaml"} {
		out, _ := mustRun("query", "--data", dir, "-o", o)
		for _, c := range out {
			c1 := c >= 0x7f && c <= 0x9f
			bidi := c == 0x202e || c == 0x2066
			if (c < 0x20 && c != '\n') || (c1 && o != "jsonl") || (bidi && o == "json") {
				t.Fatalf("query -o %s: %U printed raw", o, c)
			}
		}
		var users []string
		switch o {
		case "yaml":
			dec := yaml.NewDecoder(strings.NewReader(out))
			for {
				var ev struct {
					User struct{ Username string } `yaml:"user"`
				}
				if dec.Decode(&ev) != nil {
					break
				}
				users = append(users, ev.User.Username)
			}
		default:
			dec := json.NewDecoder(strings.NewReader(out))
			for {
				var ev audit.Event
				if dec.Decode(&ev) != nil {
					break
				}
				users = append(users, ev.User.Username)
			}
		}
		if int64(len(users)) != total || !strings.HasSuffix(users[1], hostile) {
			t.Errorf("query -o %s: %d events, user %q; want %d with the exact hostile name", o, len(users), users[1], total)
		}
	}

	// stats by every column it groups by: a line per group, the header
	// and the total.
	for _, by := range []string{"cluster", "user", "groups", "as", "verb", "resource", "subresource", "ns", "name", "apigroup", "apiversion", "code", "level", "stage", "ips", "ua", "decision", "reason", "status"} {
		out, _ := mustRun("stats", "--data", dir, "--by", by)
		lines := checkPrintable(t, "stats --by "+by, out)
		var n, groups int
		fmt.Sscanf(lines[len(lines)-1], "%d events in %d groups", &n, &groups)
		if int64(n) != total || len(lines) != groups+2 {
			t.Errorf("stats --by %s: %d lines for %d groups of %d events:\n%s", by, len(lines), groups, n, out)
		}
		if by != "code" && by != "level" && by != "stage" && by != "decision" {
			shows("stats --by "+by, out)
		}
	}

	// Every investigation in table and wide: its rows, their detail lines
	// and its notes, one line each, as investigate lays them out.
	invs := []struct {
		args []string
		p    url.Values
	}{
		{[]string{"who", "delete", "secrets"}, url.Values{"verb": {"delete"}, "resource": {"secrets"}}},
		{[]string{"who", "*", "pods/web*/exec", "-n", "prod*"}, url.Values{"verb": {"*"}, "resource": {"pods/web*/exec"}, "namespace": {"prod*"}}},
		{[]string{"activity", "*"}, url.Values{"user": {"*"}}},
		{[]string{"history", "deploy/web*", "-n", "production*"}, url.Values{"resource": {"deploy/web*"}, "namespace": {"production*"}, "reads": {"false"}, "diff": {"true"}}},
		{[]string{"secrets"}, url.Values{}},
		{[]string{"execs"}, url.Values{}},
		{[]string{"denied"}, url.Values{}},
		{[]string{"rbac"}, url.Values{}},
		{[]string{"from", "10.0.0.0/8"}, url.Values{"addr": {"10.0.0.0/8"}}},
		{[]string{"timeline", "--reads"}, url.Values{"reads": {"1"}}},
	}
	for _, inv := range invs {
		for _, o := range []string{"table", "wide"} {
			what := strings.Join(inv.args, " ") + " -o " + o
			out, _ := mustRun(append(inv.args, "--data", dir, "-o", o)...)
			lines := checkPrintable(t, what, out)
			p := url.Values{}
			for k, v := range inv.p {
				p[k] = v
			}
			if o == "wide" && contains(investigate.Params(inv.args[0]), "stages") {
				p.Set("stages", "all")
			}
			rep, err := investigate.Run(context.Background(), rd, inv.args[0], p, time.Now())
			if err != nil {
				t.Fatalf("%s: %v", what, err)
			}
			tb := rep.Table(o == "wide")
			want := len(tb.Notes)
			if len(tb.Rows) == 0 {
				t.Errorf("%s: no rows: the case tests nothing", what)
				want++
			} else {
				want += 1 + len(tb.Rows)
				for _, r := range tb.Rows {
					want += len(r.Detail)
				}
			}
			if len(lines) != want {
				t.Errorf("%s: %d lines, want %d:\n%s", what, len(lines), want, out)
			}
			if !strings.Contains(out, `\x1b[31m`) {
				t.Errorf("%s: no escaped value shown:\n%s", what, out)
			}
		}
	}

	// policy simulate and policy diff report on recorded events.
	pol := filepath.Join(t.TempDir(), "policy.yaml")
	os.WriteFile(pol, []byte("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: RequestResponse\n  resources:\n  - group: \"\"\n    resources: [secrets]\n- level: Metadata\n"), 0o600)
	base := filepath.Join(t.TempDir(), "base.yaml")
	os.WriteFile(base, []byte("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n"), 0o600)
	out, _ = mustRun("policy", "simulate", pol, "--data", dir)
	checkPrintable(t, "policy simulate", out)
	shows("policy simulate", out)
	out, _ = mustRun("policy", "diff", pol, base, "--log", logPath)
	checkPrintable(t, "policy diff", out)

	// Messages that quote event values: --jq runtime errors, and import's
	// skipped lines and file names.
	code, _, errs := run("query", "--data", dir, "--jq", "error(.user.username)")
	if code != 5 {
		t.Errorf("--jq error(...): exit %d", code)
	}
	lines = checkPrintable(t, "--jq error(...) on stderr", errs)
	if len(lines) != 12 {
		t.Errorf("--jq error(...): %d lines on stderr, want 10 errors, a note and the total:\n%s", len(lines), errs)
	}
	shows("--jq error(...) on stderr", errs)
	bad := filepath.Join(t.TempDir(), "audit"+hostile[:len(hostile)-1]+"\xff.log") // no NUL in a file name
	os.WriteFile(bad, []byte(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","verb":`+jsonString(hostile)+"\n"+"\x1b[2J{not json\n"), 0o600)
	code, _, errs = run("import", "--data", t.TempDir(), "--progress", "always", bad)
	if code != 3 {
		t.Errorf("import of bad lines: exit %d\n%s", code, errs)
	}
	errs = strings.ReplaceAll(errs, "\r", "\n") // the progress bar's own returns
	checkPrintable(t, "import's summary", errs)
	if n := strings.Count(errs, "\n  skipped "); n != 2 {
		t.Errorf("import: %d skipped lines reported, want 2:\n%s", n, errs)
	}
	if !strings.Contains(errs, `\xff.log`) {
		t.Errorf("import: the file name's bad byte is not shown escaped:\n%s", errs)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
