package cli

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// convention is what the conventions test expects of one command, beyond
// what every command gets from the generic rules (see
// TestEveryCommandFollowsTheConventions).
type convention struct {
	// formats are the values -o takes, exactly; nil for no -o.
	formats []string
	// limit: the command lists things and takes --limit.
	limit bool
	// ns: the command shows namespaced things and takes -n and -A.
	ns bool
	// why says why the command departs from the kubectl habits (no -o, no
	// --limit, no -n/-A), for each departure; required when it does.
	why string
}

var (
	investigation = convention{formats: []string{"table", "wide", "json", "jsonl"}, limit: true, ns: true}
	report        = []string{"text", "json"}
	// conventions has every command but those with --since, which follow
	// the generic rule (investigation's conventions, at least). A new
	// command without --since fails the test until it is added here.
	conventions = map[string]convention{
		"kubetrail activity": investigation, "kubetrail denied": investigation, "kubetrail execs": investigation,
		"kubetrail from": investigation, "kubetrail history": investigation, "kubetrail rbac": investigation,
		"kubetrail secrets": investigation, "kubetrail who": investigation,
		"kubetrail query":                {formats: []string{"table", "wide", "json", "jsonl", "yaml", "csv"}, limit: true, ns: true},
		"kubetrail stats":                {formats: []string{"table", "json", "csv"}, ns: true, why: "--top N is its limit: the N largest groups, then 'other'"},
		"kubetrail detect":               {formats: []string{"table", "json", "jsonl", "falco"}, limit: true, ns: true},
		"kubetrail export":               {why: "a copy of the store: every event as the API server's own JSON line, byte for byte (a contract); query -n, -o jsonl and --limit select and format"},
		"kubetrail forward":              {why: "sends the stored events to a destination and prints no results (a summary goes to stderr); its FILTER argument selects, ns=... included"},
		"kubetrail migrate":              {why: "moves every stored event to another store and prints no results (progress and a summary go to stderr); it selects nothing"},
		"kubetrail import":               {why: "stores events and prints no results (progress and problems go to stderr)"},
		"kubetrail tail":                 {why: "stores events and prints no results"},
		"kubetrail serve":                {why: "a server: prints no results"},
		"kubetrail verify":               {why: "prints the damaged files for people, one a line (-q: names only); the exit status is the answer"},
		"kubetrail checkpoint export":    {why: "a copy of DATA/checkpoints for a witness: signed JSON lines whose bytes are the contract; --since only skips older ones"},
		"kubetrail checkpoint pubkey":    {why: "prints one PEM public key"},
		"kubetrail prove":                {why: "one proof per event, as JSON lines whose bytes prove --check reads back; --check prints one verdict line per proof"},
		"kubetrail version":              {formats: report, why: "one line about the build"},
		"kubetrail policy check":         {formats: report, why: "a report on one file, not a listing"},
		"kubetrail policy explain":       {formats: []string{"text", "json", "yaml"}, why: "one decision; its -n is the namespace of the request explained, not a scope"},
		"kubetrail policy eval":          {why: "one JSON line per request in, one out: the output is a contract, not a view"},
		"kubetrail policy init":          {why: "-o names the FILE to write: the policy is YAML only (a format name is refused)"},
		"kubetrail policy simulate":      {why: "a report for people (volume per rule, secrets exposed); policy eval --from-log gives each request's decision as JSON"},
		"kubetrail policy diff":          {formats: []string{"table", "json", "yaml"}, why: "a comparison of two files, not a listing; --max bounds the differences shown"},
		"kubetrail rules list":           {why: "the catalogue of loaded rules, a few dozen, for people"},
		"kubetrail rules check":          {why: "problems with FILE:LINE for people; the exit status is the answer"},
		"kubetrail rules test":           {why: "test results for people; the exit status is the answer"},
		"kubetrail setup check":          {formats: report, why: "findings on one manifest, not a listing"},
		"kubetrail setup apiserver":      {why: "prints the manifest's diff, or writes it (--write): the output is the manifest"},
		"kubetrail setup webhook-config": {why: "its output is a kubeconfig file (--out)"},
		"kubetrail setup clickhouse":     {why: "creates a store's tables and prints one line: nothing to list"},
		"kubetrail setup deploy":         {formats: []string{"yaml", "json"}, why: "prints manifests, not a listing; -n is the namespace they go in, so no -A"},
	}
	// fileFlags are the flags that name a file and are not the command's
	// input, which is an argument: why each is a flag.
	fileFlags = map[string]string{
		"token-file": "a credential", "ca": "a credential", "client-ca": "a credential", "client-cert": "a credential",
		"client-key": "a credential", "tls-cert": "a credential", "tls-key": "a credential",
		"data": "the store's folder", "state": "a checkpoint folder", "out": "where to write",
		"rules":           "rule files beside the command's arguments (detect's are audit logs); repeatable",
		"log":             "the recorded events a policy (the argument) is replayed over",
		"baseline":        "a second policy, beside the candidate (the argument)",
		"requests":        "policy eval's requests, one of two kinds (--requests or --from-log); - reads stdin",
		"from-log":        "policy eval's requests, one of two kinds (--requests or --from-log); - reads stdin",
		"manifest":        "setup apiserver patches this file in place (--write): an output as much as an input",
		"policy":          "setup apiserver writes this path on the node into the manifest",
		"log-path":        "setup apiserver writes this path on the node into the manifest",
		"webhook-config":  "setup apiserver writes this path on the node into the manifest",
		"root":            "the folder a node's paths are looked up under",
		"output":          "policy init's -o names the file to write (see conventions)",
		"alert-output":    "a URL, of which file:// is one scheme among several; repeatable",
		"redact-key-file": "a credential (the redaction key)",
		"checkpoint":      "a witness's copy of the checkpoints, beside the data folder the command reads",
		"check":           "prove's argument is an auditID; --check switches it to checking a file of proofs, without the store",
	}
	// fileArgs are the commands whose arguments are files, with a
	// standard input to read for "-" and what the output must then hold.
	// The input and the arguments come from stdinCase.
	knownFormats = []string{"table", "wide", "json", "jsonl", "yaml", "csv", "text", "falco"}
)

// commands walks the command tree: every runnable command but cobra's
// own (help, completion).
func commands(c *cobra.Command) []*cobra.Command {
	var out []*cobra.Command
	for _, sub := range c.Commands() {
		if sub.Name() == "help" || sub.Name() == "completion" {
			continue
		}
		if sub.Runnable() && !sub.HasSubCommands() {
			out = append(out, sub)
		}
		out = append(out, commands(sub)...)
	}
	return out
}

// formatsIn lists the known format names an -o usage text names.
func formatsIn(usage string) []string {
	var out []string
	for _, w := range regexp.MustCompile(`[a-z]+`).FindAllString(usage, -1) {
		if slices.Contains(knownFormats, w) && !slices.Contains(out, w) {
			out = append(out, w)
		}
	}
	slices.Sort(out)
	return out
}

// TestEveryCommandFollowsTheConventions walks every command and checks the
// shared conventions, so that a new command cannot forget them:
//   - every command is in conventions, or reads stored events (--since)
//     and then takes -o with at least table, json and jsonl, --limit, -n
//     and -A, as the investigations do;
//   - -o names exactly the formats the table gives (in its usage) and
//     nothing else; a command without -o, --limit or -n/-A where the
//     table does not expect them says why;
//   - a flag that names a file is deprecated in favour of an argument, or
//     is in fileFlags with the reason it is a flag.
//
// Mutations it catches: --limit removed from detect or secrets, -A from
// who, -o from policy explain; a new command without --since and without
// an entry; a new --file flag.
func TestEveryCommandFollowsTheConventions(t *testing.T) {
	root := newRoot(&env{stdin: strings.NewReader(""), stdout: io.Discard, stderr: io.Discard}, nil)
	seen := map[string]bool{}
	for _, c := range commands(root) {
		path := c.CommandPath()
		seen[path] = true
		want, listed := conventions[path]
		if !listed {
			if c.Flags().Lookup("since") == nil {
				t.Errorf("%s: not in conventions (conventions_test.go): add it with its -o formats, --limit, -n/-A and the reason for what it lacks", path)
				continue
			}
			want = investigation
		}
		departs := false
		o := c.Flags().Lookup("output")
		switch {
		case want.formats == nil && o != nil && path != "kubetrail policy init":
			t.Errorf("%s: has -o (%s), the table expects none", path, o.Usage)
		case want.formats == nil:
			departs = true
		case o == nil || o.Shorthand != "o":
			t.Errorf("%s: no -o/--output; want %s", path, strings.Join(want.formats, "|"))
		case listed:
			if got, w := formatsIn(o.Usage), slices.Sorted(slices.Values(want.formats)); !slices.Equal(got, w) {
				t.Errorf("%s: -o takes %v by its usage %q; want %v", path, got, o.Usage, w)
			}
		default:
			for _, f := range []string{"table", "json", "jsonl"} {
				if !slices.Contains(formatsIn(o.Usage), f) {
					t.Errorf("%s: reads stored events, but its -o (%q) does not take %s", path, o.Usage, f)
				}
			}
		}
		if l := c.Flags().Lookup("limit"); want.limit && l == nil {
			t.Errorf("%s: lists things without --limit", path)
		} else if !want.limit {
			departs = departs || l == nil
		}
		n, a := c.Flags().Lookup("namespace"), c.Flags().Lookup("all-namespaces")
		if want.ns && (n == nil || n.Shorthand != "n" || a == nil || a.Shorthand != "A") {
			t.Errorf("%s: shows namespaced things without -n/--namespace and -A/--all-namespaces", path)
		} else if !want.ns {
			departs = true
		}
		if departs && want.why == "" {
			t.Errorf("%s: departs from the conventions (no -o, --limit or -n/-A) without a reason in conventions", path)
		}
		c.Flags().VisitAll(func(f *pflag.Flag) {
			if f.Deprecated != "" || f.Hidden {
				return
			}
			names := regexp.MustCompile(`(^|[^-])\b(file|FILE)\b`).MatchString(f.Usage)
			if f.Value.Type() != "bool" && names && fileFlags[f.Name] == "" {
				t.Errorf("%s --%s (%q) names a file: take it as an argument (keep the flag, deprecated), or add it to fileFlags with the reason", path, f.Name, f.Usage)
			}
		})
	}
	for path := range conventions {
		if !seen[path] {
			t.Errorf("conventions lists %s, which is no command", path)
		}
	}
}

// TestFilesAsArgumentsAndStdin: the commands that read a file take it as
// an argument and read standard input for "-"; the flags that used to
// name the file still work, deprecated.
// Mutations it catches: readFileArg ignoring "-" (open ./-), setup check
// or policy explain without their argument.
func TestFilesAsArgumentsAndStdin(t *testing.T) {
	_, pol, _ := run("policy", "init", "--profile", "recommended")
	manifest, err := os.ReadFile(filepath.Join("..", "setup", "testdata", "kubeadm.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	polFile := filepath.Join(dir, "policy.yaml")
	manFile := filepath.Join(dir, "kube-apiserver.yaml")
	os.WriteFile(polFile, []byte(pol), 0o600)
	os.WriteFile(manFile, manifest, 0o600)
	log := incidentLog(t)
	logData, _ := os.ReadFile(log)
	req := filepath.Join(dir, "req.jsonl")
	os.WriteFile(req, []byte(`{"user":"alice","verb":"get","resource":"secrets","namespace":"prod"}`+"\n"), 0o600)
	for _, c := range []struct {
		stdin string
		args  []string
		want  string // on stdout
	}{
		{pol, []string{"policy", "check", "-"}, "<stdin>: "},
		{pol, []string{"policy", "explain", "-", "--user", "alice", "--resource", "secrets", "-n", "prod"}, "rule "},
		{pol, []string{"policy", "eval", "-", "--requests", req}, `"level":"Metadata"`},
		{pol, []string{"policy", "simulate", "-", "--log", log}, "events"},
		{pol, []string{"policy", "diff", "-", polFile}, "A = <stdin>, B = " + polFile + ": no request is logged differently"},
		{string(manifest), []string{"setup", "check", "-", "--no-host", "-o", "json"}, "["},
		{string(logData), []string{"detect", "-", "-o", "jsonl"}, `"rule":`},
		{string(logData), []string{"import", "-", "--data", t.TempDir(), "--progress", "never"}, ""},
		// The old flags, deprecated, and the argument agree.
		{"", []string{"policy", "explain", "--policy", polFile, "--user", "alice", "--resource", "secrets", "-n", "prod"}, "rule "},
		{"", []string{"policy", "explain", polFile, "--user", "alice", "--resource", "secrets", "-n", "prod", "-o", "json"}, `"level": "Metadata"`},
		{"", []string{"policy", "eval", "--policy", polFile, "--requests", req}, `"level":"Metadata"`},
		{"", []string{"setup", "check", "--manifest", manFile, "--no-host", "-o", "json"}, "["},
		{"", []string{"setup", "check", manFile, "--no-host", "-o", "json"}, "["},
	} {
		var out, errb bytes.Buffer
		code := Main(c.args, strings.NewReader(c.stdin), &out, &errb)
		if code > 1 || !strings.Contains(out.String(), c.want) || strings.Contains(errb.String(), "no such file") || strings.Contains(out.String(), "deprecated") {
			t.Errorf("kubetrail %s: exit %d, stderr %q, stdout:\n%s\nwant %q", strings.Join(c.args, " "), code, errb.String(), out.String(), c.want)
		}
	}
	if code, _, errOut := run("policy", "explain", polFile, "--policy", manFile, "--user", "a", "--resource", "pods"); code != 1 || !strings.Contains(errOut, "the file is given twice") {
		t.Errorf("explain with an argument and another --policy: exit %d, %q", code, errOut)
	}
	if code, _, errOut := run("policy", "init", "-o", "yaml"); code != 1 || !strings.Contains(errOut, "names the file to write") {
		t.Errorf("policy init -o yaml: exit %d, %q; want a refusal, not a file named yaml", code, errOut)
	}
}

// TestSinceJunkIsAnErrorEverywhere: every command with --since or --until
// rejects a value timespec does not read (33abcd once read as 33 days),
// with exit 1 and a message naming the flag. The walk finds the commands,
// so a new one is checked too; args gives the arguments a command needs
// to get as far as reading its flags (none by default).
func TestSinceJunkIsAnErrorEverywhere(t *testing.T) {
	args := map[string][]string{
		"kubetrail who": {"delete", "secrets"}, "kubetrail activity": {"alice"},
		"kubetrail history": {"deploy/web"}, "kubetrail from": {"10.0.0.1"},
		"kubetrail forward": {"--to", "webhook+http://127.0.0.1:1"},
	}
	root := newRoot(&env{stdin: strings.NewReader(""), stdout: io.Discard, stderr: io.Discard}, nil)
	dir := t.TempDir()
	n := 0
	for _, c := range commands(root) {
		for _, flag := range []string{"--since", "--until", "--from", "--to"} {
			// from's --from, forward's --to and migrate's are not times.
			if c.Flags().Lookup(flag[2:]) == nil || (flag == "--from" && c.Name() == "from") || (flag == "--to" && c.Name() == "forward") || c.Name() == "migrate" {
				continue
			}
			n++
			argv := append(strings.Fields(strings.TrimPrefix(c.CommandPath(), "kubetrail ")), args[c.CommandPath()]...)
			argv = append(argv, "--data", dir, flag, "33abcd")
			code, out, errOut := run(argv...)
			want := flag + ` "33abcd": unknown duration unit "a"`
			if code != 1 || out != "" || !strings.Contains(errOut, want) {
				t.Errorf("kubetrail %s: exit %d, stdout %q, stderr %q; want exit 1 and %q", strings.Join(argv, " "), code, out, errOut, want)
			}
		}
	}
	if n < 20 {
		t.Errorf("only %d --since/--until flags found; the walk is broken", n)
	}
}

// TestTimeBoundsAreInclusive: --since T --until T keeps the events at
// exactly T (their stageTimestamp), in query and through the API.
// Mutation it catches: --until exclusive (timespec.Range without the
// microsecond added).
func TestTimeBoundsAreInclusive(t *testing.T) {
	dir, url, tokenFile := serveIncident(t)
	_, out, _ := run("query", "--data", dir, "-o", "jsonl", "--limit", "1")
	m := regexp.MustCompile(`"stageTimestamp":"([^"]+)"`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no stageTimestamp in %q", out)
	}
	for _, where := range [][]string{{"--data", dir}, {"--server", url, "--token-file", tokenFile}} {
		code, out, errOut := run(append([]string{"query", "--since", m[1], "--until", m[1], "--count"}, where...)...)
		if code != 0 || strings.TrimSpace(out) == "0" || out == "" {
			t.Errorf("%v --since %s --until %s: exit %d, %q %q; want the events at that time", where, m[1], m[1], code, out, errOut)
		}
	}
}

// TestDetectLimit: detect --limit N prints the first N alerts.
func TestDetectLimit(t *testing.T) {
	log := incidentLog(t)
	_, all, _ := run("detect", log, "-o", "jsonl")
	code, two, errOut := run("detect", log, "-o", "jsonl", "--limit", "2")
	lines := strings.Split(strings.TrimSpace(all), "\n")
	if code != 0 || len(lines) < 3 || two != strings.Join(lines[:2], "\n")+"\n" {
		t.Errorf("detect --limit 2: exit %d, %q:\n%s\nwant the first 2 of:\n%s", code, errOut, two, all)
	}
}
