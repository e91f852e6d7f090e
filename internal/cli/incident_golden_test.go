package cli

import (
	"flag"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/kubetrail/kubetrail/internal/investigate/investigatetest"
	"github.com/kubetrail/kubetrail/internal/server"
	"github.com/kubetrail/kubetrail/internal/store/local"
)

var update = flag.Bool("update", false, "rewrite testdata/incident/*.golden from the current output")

// importRecorded imports the incident a real kube-apiserver recorded
// (internal/investigate/testdata/incident) into a fresh data folder.
func importRecorded(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if code, _, errOut := run("import", investigatetest.RecordedLog(), "--data", dir); code != 0 {
		t.Fatalf("import: exit %d: %s", code, errOut)
	}
	return dir
}

// serveDir serves a data folder with a bearer token, and returns the
// server's URL and a token file.
func serveDir(t *testing.T, dir string) (url, tokenFile string) {
	t.Helper()
	db, err := local.Open(dir, local.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	s, err := server.New(server.Config{Listen: "127.0.0.1:0", Tokens: []string{"s3cret"}}, db, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	tokenFile = filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return ts.URL, tokenFile
}

// TestRecordedIncidentGolden runs the investigations over the incident a
// real kube-apiserver recorded, and compares what a user sees — stdout,
// stderr and the exit code — with testdata/incident/NAME.golden
// (`go test -run TestRecordedIncidentGolden -update` rewrites them). Each
// case also lists by hand the lines a user needs, in order, so that
// rewriting the files cannot bless a wrong answer; every case that succeeds
// must print the same through --server.
// Mutations it catches: a timeline row's sentence or order changed (any
// change to the golden text), the AS column left out of denied, the
// backdoor binding hidden from rbac, a typo exiting 0.
func TestRecordedIncidentGolden(t *testing.T) {
	dir := importRecorded(t)
	url, tokenFile := serveDir(t, dir)
	// Lines are matched as regular expressions over runs of spaces, so
	// that a column's width does not matter to the hand-written list.
	cases := []struct {
		name string
		args []string
		code int
		want []string
	}{
		{"timeline", []string{"timeline"}, 0, []string{
			`^RECEIVED +WHAT HAPPENED +AUDIT ID$`,
			`00:33:00.461Z +admin created namespace production `,
			`attacker was denied list secrets in production 6 times in 217 ms +b8a5365b-ec75-4678-a7dd-14b357f9c441 \+5$`,
			`system:anonymous was denied list secrets in production 2 times in 10 ms `,
			`an unauthenticated client failed to authenticate to list secrets in production `,
			`admin created clusterrolebinding backdoor granting cluster-admin to attacker +921593c2-76c6-44a0-ab0a-3ad06eb32b4e$`,
			`attacker listed secrets in production `,
			`attacker read secret db-creds in production `,
			`attacker created configmap stolen in production `,
			`attacker failed to exec into pod web in production over WebSocket: cat /etc/shadow \(400: pod web does not have a host assigned\)`,
			`admin as developer was denied list secrets in production 2 times in 44 ms `,
			`admin as attacker read secret db-creds in production `,
			`attacker deleted clusterrolebinding backdoor `,
			`^33 requests in 25 rows by attacker\(16\), admin\(13\), system:anonymous\(3\), \(unauthenticated\)\(1\)$`,
			`^454 requests by the control plane hidden; --include-system shows them$`,
		}},
		{"timeline-wide", []string{"timeline", "-o", "wide", "--user", "attacker"}, 0, []string{
			`^RECEIVED +LAST +USER +AS +VERB +RESULT +COUNT +WHAT HAPPENED +PEERS +AUDIT IDS$`,
			`00:33:01.657Z +2026-12-05T00:33:01.875Z +attacker +- +list +403 forbid +6 +attacker was denied list secrets in production 6 times in 217 ms +127.0.0.1 +b8a5365b-ec75-4678-a7dd-14b357f9c441,`,
			` admin +- +create +201 allow +1 +admin created clusterrolebinding backdoor granting cluster-admin to attacker `,
			` admin +attacker +get +200 allow +1 +admin as attacker read secret db-creds in production `,
		}},
		{"timeline-json", []string{"timeline", "-o", "json", "--limit", "3"}, 0, []string{
			`^    "time": "2026-12-05T00:33:08.483023Z",$`,
			`^    "actor": "admin",$`,
			`^    "as": "system:serviceaccount:production:default",$`,
			`^    "verb": "list",$`,
			`^      "resource": "pods",$`,
			`^      "namespace": "production"$`,
			`^    "result": "403 forbid",$`,
			`^    "count": 1,$`,
			`^    "auditIDs": \[$`,
			`^    "sentence": "admin as system:serviceaccount:production:default was denied list pods in production"$`,
			`"sentence": "attacker deleted clusterrolebinding backdoor"`,
			`"sentence": "attacker was denied get clusterrolebinding backdoor"`,
		}},
		{"timeline-jsonl", []string{"timeline", "-o", "jsonl", "-n", "production", "--user", "attacker", "--since", "2026-12-05T00:33:01Z", "--until", "2026-12-05T00:33:02Z"}, 0, []string{
			`^\{"time":"2026-12-05T00:33:01.657895Z","actor":"attacker","verb":"list","object":\{"resource":"secrets","namespace":"production"\},"result":"403 forbid","count":6,"first":"2026-12-05T00:33:01.657895Z","last":"2026-12-05T00:33:01.875001Z","auditIDs":\["b8a5365b-ec75-4678-a7dd-14b357f9c441",.*"sentence":"attacker was denied list secrets in production 6 times in 217 ms"\}$`,
			`^\{"time":"2026-12-05T00:33:01.917.*"sentence":"attacker was denied list pods in production"\}$`,
		}},
		{"who", []string{"who", "list", "secrets", "-n", "production"}, 0, []string{
			`^RECEIVED +USER +GROUPS +AS +SOURCE IPS `,
			` attacker +,system:authenticated +- +127.0.0.1\(peer\) .* 403 forbid$`,
			` system:anonymous +system:unauthenticated +- +127.0.0.1\(peer\) +curl/7.88.1 .* 403 forbid$`,
			` admin +system:masters,system:authenticated +developer +127.0.0.1\(peer\) .* 403 forbid$`,
		}},
		{"denied", []string{"denied"}, 0, []string{
			`^USER +AS +REQUESTS +CODES `,
			`^attacker +- +9 +403\(9\) `,
			`^admin +developer +2 +403\(2\) `,
			`^system:anonymous +- +2 +403\(2\) `,
			`^\(unauthenticated\) +- +1 +401\(1\) `,
			`^admin +system:serviceaccount:production:default +1 +403\(1\) `,
		}},
		{"rbac", []string{"rbac"}, 0, []string{
			`^RECEIVED +USER +AS +VERB +KIND +NAMESPACE +NAME +ROLE REF +SUBJECTS +RESULT +FLAGS$`,
			` admin +- +create +ClusterRoleBinding +- +backdoor +ClusterRole/cluster-admin +User/attacker +201 allow +! cluster-admin$`,
			` attacker +- +delete +ClusterRoleBinding +- +backdoor `,
			`^[0-9]+ requests by the control plane hidden; --include-system shows them$`,
		}},
		{"secrets", []string{"secrets"}, 0, []string{
			`^USER +AS +VERB `,
			`^admin +attacker +get +1 +200\(1\) +production/db-creds `,
			`^admin +developer +list +2 +403\(2\) `,
			`^attacker +- +get +1 +200\(1\) +production/db-creds .*! non-system read$`,
			`^attacker +- +list +8 +403\(6\),200\(2\) .*! non-system read$`,
			`^system:anonymous +- +list +2 +403\(2\) .*! anonymous read attempt$`,
		}},
		{"execs", []string{"execs"}, 0, []string{
			` attacker +- +production +web +exec +web +cat /etc/shadow +websocket \(get\) +400 allow: pod web does not have a host assigned `,
			` attacker +- +production +web +exec +web +cat /etc/shadow +spdy \(create\) +400 allow: pod web does not have a host assigned `,
		}},
		{"activity", []string{"activity", "attacker", "--where", "verb!=get or resource!=\"\""}, 0, []string{
			` admin +- +create +- +clusterrolebindings/backdoor +201 allow `,
			` admin +attacker +get +production +secrets/db-creds +200 allow `,
			` attacker +- +delete +- +clusterrolebindings/backdoor +200 allow `,
		}},
		{"query", []string{"query", "user=attacker resource=secrets"}, 0, []string{
			`^TIME +USER +AS +VERB +RESOURCE +NS +NAME +CODE +STAGE +IPS$`,
			`^2026-12-05T00:33:01.658Z +attacker +- +list +secrets +production +- +403 +ResponseComplete +127.0.0.1$`,
			`^2026-12-05T00:33:07.147Z +attacker +- +get +secrets +production +db-creds +200 +ResponseComplete +127.0.0.1$`,
			`^2026-12-05T00:33:07.194Z +attacker +- +list +secrets +- +- +200 +ResponseComplete +127.0.0.1$`,
		}},
		{"query-wide", []string{"query", "-o", "wide", "user=admin as=attacker"}, 0, []string{
			`^TIME +USER +GROUPS +AS +VERB +RESOURCE +NS +NAME +CODE +DECISION +IPS +UA +STAGE +CLUSTER$`,
			` admin +system:masters,system:authenticated +attacker +get +secrets +production +db-creds +200 +allow +127.0.0.1 `,
		}},
		{"query-json", []string{"query", "-o", "json", "resource=clusterrolebindings name=backdoor verb=create"}, 0, []string{
			`^  "auditID": "921593c2-76c6-44a0-ab0a-3ad06eb32b4e",$`,
			`^    "username": "admin",$`,
			`"name": "cluster-admin"`,
		}},
		{"stats", []string{"stats", "--by", "user", "--top", "5"}, 0, []string{
			`^ +USER +COUNT +SHARE$`,
			`^ +system:apiserver +493 +89.2%$`,
			`^ +attacker +33 +6.0%$`,
			`^ +admin +23 +4.2%$`,
			`^553 events in 5 groups$`,
		}},
		// detect reads the folder itself (it has no --server).
		{"detect", []string{"detect"}, 0, []string{
			`^TIME +SEVERITY +SOURCE +RULE +USER +MESSAGE$`,
			` critical +kubetrail +Binding to cluster-admin +admin +Binding to cluster-admin: admin create clusterrolebindings backdoor \(201\)$`,
			` critical +kubetrail +Denied, then granted, then reading secrets +attacker `,
			` high +kubetrail +Changes by a user just granted a powerful role +attacker +.*attacker create configmaps stolen in production \(201\)`,
			` medium +kubetrail +Exec, attach or port-forward into a pod +attacker `,
		}},
		// A typo never passes for success.
		{"typo-command", []string{"timelin"}, 1, []string{`unknown command "timelin" for "kubetrail"`, `^\ttimeline$`}},
		{"typo-flag", []string{"timeline", "--gpa", "1s"}, 1, []string{`unknown flag: --gpa \(did you mean --gap\?\)`}},
		{"bad-gap", []string{"timeline", "--gap", "-1s"}, 1, []string{`--gap -1s: want 0 or more`}},
		{"bad-output", []string{"timeline", "-o", "yml"}, 1, []string{`-o "yml": want table, wide, json, jsonl`}},
		{"bad-where", []string{"denied", "--where", "usr=attacker"}, 2, []string{`--where: column 1: unknown field "usr"`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, out, errOut := run(append(c.args, "--data", dir)...)
			got := fmt.Sprintf("$ kubetrail %s\nexit %d\n%s", strings.Join(c.args, " "), code, out)
			if errOut != "" {
				got += "--- stderr\n" + errOut
			}
			if code != c.code {
				t.Errorf("exit %d, want %d; stderr %q", code, c.code, errOut)
			}
			checkLines(t, got, c.want)
			golden := filepath.Join("testdata", "incident", c.name+".golden")
			if *update {
				if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to write it)", err)
			}
			if got != string(want) {
				t.Errorf("the output differs from %s (-update rewrites it):\n--- got\n%s\n--- want\n%s", golden, got, want)
			}
			if code != 0 || c.args[0] == "detect" {
				return
			}
			rc, rout, rerr := run(append(c.args, "--server", url, "--token-file", tokenFile)...)
			if rc != 0 || rout != out {
				t.Errorf("--server: exit %d (%s), prints\n%s\nwhere --data prints\n%s", rc, rerr, rout, out)
			}
		})
	}
}

// TestDocsShowTheRecordedTimeline: docs/investigations.md works the
// recorded incident with the timeline's real output, which must be what
// the command prints today (testdata/incident/timeline.golden, which
// TestRecordedIncidentGolden holds to the command).
func TestDocsShowTheRecordedTimeline(t *testing.T) {
	golden, err := os.ReadFile(filepath.Join("testdata", "incident", "timeline.golden"))
	if err != nil {
		t.Fatal(err)
	}
	_, out, _ := strings.Cut(string(golden), "\nexit 0\n")
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "investigations.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(doc), "$ kubetrail timeline --data ./case\n"+out+"```") {
		t.Errorf("docs/investigations.md does not show the timeline as it prints today:\n%s", out)
	}
}

// checkLines checks that each pattern matches a line of out, each on a
// later line than the one before.
func checkLines(t *testing.T, out string, patterns []string) {
	t.Helper()
	lines := strings.Split(out, "\n")
	at := 0
	for _, p := range patterns {
		re := regexp.MustCompile(p)
		found := false
		for ; at < len(lines); at++ {
			if re.MatchString(lines[at]) {
				found, at = true, at+1
				break
			}
		}
		if !found {
			t.Errorf("no line matching %q (after the lines matched before it) in:\n%s", p, out)
			return
		}
	}
}
