package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// policyDiffFiles are the recommended profile and a candidate with four
// changes (secret reads at RequestResponse, deployments.apps without
// ResponseStarted, pods/exec left out, RBAC writes at Metadata).
func policyDiffFiles(t *testing.T) (a, b string) {
	t.Helper()
	dir := filepath.Join("testdata", "policydiff")
	return filepath.Join(dir, "recommended.yaml"), filepath.Join(dir, "candidate.yaml")
}

// TestPolicyDiffTable: the table names real resources and groups, says
// the stages that differ and the levels and rules of each change, worst
// first. The golden file holds the whole output; the list below is what
// must be in it whatever -update writes.
// Mutations it catches: a placeholder group (other.example.com) or the
// core group's "deployments" for deployments.apps; the stages line lost;
// the secret leak not first.
func TestPolicyDiffTable(t *testing.T) {
	a, b := policyDiffFiles(t)
	code, out, errOut := run("policy", "diff", a, b)
	if code != 0 {
		t.Fatalf("exit %d, %s", code, errOut)
	}
	golden := filepath.Join("testdata", "policydiff", "table.golden")
	if *update {
		if err := os.WriteFile(golden, []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if out != string(want) {
		t.Errorf("output differs from %s (-update rewrites it):\n%s", golden, out)
	}
	for _, w := range []string{
		"A = " + a + ", B = " + b + ": 6 differences, worst first\n\n1. CRITICAL: starts logging credentials",
		"   - secrets (core); verbs get, list, watch; any user\n     level Metadata → RequestResponse (A: rule 4, line 59; B: rule 5, line 73)\n",
		"HIGH: exec, attach and port-forward drop below Request\n   - pods/exec (core); verbs get, list, watch; any user\n",
		"HIGH: RBAC changes lose their bodies: what was granted to whom\n   - clusterrolebindings.rbac.authorization.k8s.io, clusterroles.rbac.authorization.k8s.io,",
		"MEDIUM: stops logging stage ResponseStarted\n   stages logged: ResponseStarted, ResponseComplete, Panic → ResponseComplete, Panic\n   - deployments.apps; verbs get, list, watch; any user\n",
		"   - deployments.apps; any other verb; any user\n     level Metadata → RequestResponse (A: rule 9, line 100; B: rule 6, line 80)\n",
	} {
		if !strings.Contains(out, w) {
			t.Errorf("missing %q in:\n%s", w, out)
		}
	}
	for _, bad := range []string{"example", "other.", "(any other)", "deployments (core)", "deployments;", "\\x00"} {
		if strings.Contains(out, bad) {
			t.Errorf("the output says %q:\n%s", bad, out)
		}
	}
}

// TestPolicyDiffJSONAndYAML: -o json and -o yaml give the same fields, with
// the stages logged by each policy per change; - reads standard input.
// Mutation it catches: stagesLogged dropped or a yaml field named
// stageslogged (no yaml tag), -o yaml printing the table.
func TestPolicyDiffJSONAndYAML(t *testing.T) {
	a, b := policyDiffFiles(t)
	src, err := os.ReadFile(a)
	if err != nil {
		t.Fatal(err)
	}
	var docs [2]map[string]any
	for i, format := range []string{"json", "yaml"} {
		var out, errb strings.Builder
		code := Main([]string{"policy", "diff", "-", b, "-o", format}, strings.NewReader(string(src)), &out, &errb)
		if code != 0 {
			t.Fatalf("-o %s: exit %d, %s", format, code, errb.String())
		}
		var err error
		if format == "json" {
			err = json.Unmarshal([]byte(out.String()), &docs[i])
		} else {
			err = yaml.Unmarshal([]byte(out.String()), &docs[i])
		}
		if err != nil {
			t.Fatalf("-o %s: %v:\n%s", format, err, out.String())
		}
	}
	// YAML numbers decode as int, JSON's as float64: compare through JSON.
	j, _ := json.Marshal(docs[1])
	var fromYAML map[string]any
	json.Unmarshal(j, &fromYAML)
	if !reflect.DeepEqual(docs[0], fromYAML) {
		t.Errorf("json and yaml differ:\n%v\n%v", docs[0], fromYAML)
	}
	var got struct {
		A           string `json:"a"`
		Differences []struct {
			Impact  string `json:"impact"`
			Changes []struct {
				Requests struct {
					What  struct{ Only []string } `json:"what"`
					Verbs struct{ Only []string } `json:"verbs"`
					Text  string                  `json:"text"`
				} `json:"requests"`
				A, B struct {
					Level        string   `json:"level"`
					StagesLogged []string `json:"stagesLogged"`
					Rule, Line   int
				}
			} `json:"changes"`
		} `json:"differences"`
	}
	j, _ = json.Marshal(docs[0])
	if err := json.Unmarshal(j, &got); err != nil {
		t.Fatal(err)
	}
	if got.A != "<stdin>" || len(got.Differences) != 6 || got.Differences[0].Impact != "critical" {
		t.Fatalf("a %q, %d differences, first %+v", got.A, len(got.Differences), got.Differences)
	}
	c := got.Differences[0].Changes[0]
	if c.Requests.Text != "secrets (core); verbs get, list, watch; any user" || c.Requests.What.Only[0] != "secrets (core)" ||
		c.A.Level != "Metadata" || c.B.Level != "RequestResponse" || c.B.Rule != 5 || c.B.Line != 73 {
		t.Errorf("first change: %+v", c)
	}
	var deploy bool
	for _, d := range got.Differences {
		for _, c := range d.Changes {
			if c.Requests.What.Only[0] == "deployments.apps" {
				deploy = true
				if strings.Join(c.A.StagesLogged, ",") != "ResponseStarted,ResponseComplete,Panic" || strings.Join(c.B.StagesLogged, ",") != "ResponseComplete,Panic" {
					t.Errorf("deployments.apps stages: %v → %v", c.A.StagesLogged, c.B.StagesLogged)
				}
			}
		}
	}
	if !deploy {
		t.Errorf("no change for deployments.apps: %+v", got.Differences)
	}
}

// TestPolicyDiffLogAndMax: --log counts each difference's events (their
// sum is the events that differ), --max cuts the list and says so, and a
// bad -o is refused.
// Mutation it catches: events counted under the wrong difference (the sum
// no longer matches) or not at all.
func TestPolicyDiffLogAndMax(t *testing.T) {
	a, b := policyDiffFiles(t)
	log := incidentLog(t)
	code, out, errOut := run("policy", "diff", a, b, "--log", log, "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d, %s", code, errOut)
	}
	var got struct {
		Events, EventsDiffering, EventsUnplaced int64
		Differences                             []struct {
			Concern string
			Events  *int64
		}
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatal(err)
	}
	sum := got.EventsUnplaced
	perConcern := map[string]int64{}
	for _, d := range got.Differences {
		if d.Events == nil {
			t.Fatalf("a difference without its events: %s", out)
		}
		sum += *d.Events
		perConcern[d.Concern] += *d.Events
	}
	if got.Events == 0 || got.EventsDiffering == 0 || sum != got.EventsDiffering {
		t.Errorf("events %d, differing %d, sum over the differences %d:\n%s", got.Events, got.EventsDiffering, sum, out)
	}
	// The incident reads secrets and execs into a pod.
	for _, c := range []string{"starts logging credentials: the contents of secrets, configmaps or tokens", "exec, attach and port-forward drop below Request"} {
		if perConcern[c] == 0 {
			t.Errorf("no recorded event for %q: %v", c, perConcern)
		}
	}
	code, out, _ = run("policy", "diff", a, b, "--log", log, "--max", "2")
	if code != 0 || !strings.Contains(out, "\non recorded traffic: ") || !strings.Contains(out, "\n... and 4 more (--max 0 shows all)\n") ||
		strings.Contains(out, "3. ") || !strings.Contains(out, "events recorded)") {
		t.Errorf("--log --max 2: exit %d:\n%s", code, out)
	}
	if code, _, errOut := run("policy", "diff", a, b, "-o", "wide"); code != 1 || !strings.Contains(errOut, `-o "wide": want table, json or yaml`) {
		t.Errorf("-o wide: exit %d, %q", code, errOut)
	}
}
