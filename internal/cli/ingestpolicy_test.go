package cli

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kubetrail/kubetrail/internal/audit"
	"github.com/kubetrail/kubetrail/internal/policy"
)

const incidentGz = "../investigate/testdata/incident/incident.log.gz"

// incidentPolicy is the policy the incident was recorded under
// (internal/investigate/testdata/incident/record.sh).
const incidentPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
  - level: Metadata
    resources:
      - group: ""
        resources: ["secrets", "configmaps"]
      - group: "authentication.k8s.io"
        resources: ["tokenreviews"]
  - level: Metadata
    verbs: ["get", "list", "watch"]
  - level: RequestResponse
    resources:
      - group: "rbac.authorization.k8s.io"
  - level: Request
`

// stricterPolicy differs from incidentPolicy in every way the ingest
// policy acts: requests at None (by user, by URL, by resourceNames on a
// create, which never matches), stages omitted globally and by one rule
// only, levels lowered and raised, managedFields omitted globally and kept
// by one rule.
const stricterPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
omitManagedFields: true
rules:
  - level: None
    users: ["system:apiserver"]
    verbs: ["get", "list", "watch"]
  - level: None
    nonResourceURLs: ["/version"]
  - level: None
    resources: [{group: "", resources: ["configmaps"], resourceNames: ["stolen"]}]
  - level: RequestResponse
    users: ["attacker"]
    omitManagedFields: false
    omitStages: ["ResponseStarted"]
  - level: Request
    resources: [{group: "rbac.authorization.k8s.io", resources: ["clusterrolebindings"]}]
  - level: RequestResponse
    resources: [{group: "rbac.authorization.k8s.io"}]
  - level: Request
    resources: [{group: "", resources: ["pods", "namespaces"]}]
  - level: Metadata
`

func readIncident(t *testing.T) []string {
	t.Helper()
	f, err := os.Open(incidentGz)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

func keyOf(t *testing.T, line string) (string, *audit.Event) {
	t.Helper()
	var ev audit.Event
	if err := audit.DecodeStored([]byte(line), &ev); err != nil {
		t.Fatalf("%v: %s", err, line)
	}
	return ev.AuditID + "/" + string(ev.Stage), &ev
}

func importWithPolicy(t *testing.T, policyText string) (map[string]string, string) {
	t.Helper()
	dir := t.TempDir()
	pf := filepath.Join(t.TempDir(), "policy.yaml")
	os.WriteFile(pf, []byte(policyText), 0o600)
	code, _, summary := run("import", "--data", dir, "--progress", "never", "--no-redact", "--policy", pf, incidentGz)
	if code != 0 {
		t.Fatalf("import: exit %d: %s", code, summary)
	}
	code, out, errOut := run("export", "--data", dir)
	if code != 0 {
		t.Fatalf("export: exit %d: %s", code, errOut)
	}
	got := map[string]string{}
	for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if line == "" {
			continue
		}
		k, _ := keyOf(t, line)
		got[k] = line
	}
	return got, summary
}

var rank = map[audit.Level]int{audit.LevelMetadata: 1, audit.LevelRequest: 2, audit.LevelRequestResponse: 3}

// TestImportPolicyDifferential imports the recorded incident (a real API
// server's log, recorded at Metadata, Request and RequestResponse) with
// `import --policy` and checks every event against what the policy
// evaluator (proven equal to the API server's) decides for its request:
// dropped exactly when the level is None or the stage omitted; the level
// the lower of the policy's and the recorded one; a body kept exactly when
// recorded and allowed by that level, equal to the recorded body as JSON,
// without metadata.managedFields (in the object and list items) exactly
// when the policy omits them; every other field as recorded; and an event
// with nothing to change stored as the same bytes. The summary line counts
// each case.
// Mutations caught (planted in internal/pipeline/relevel.go): any of
// those in its own tests, and RequestFromEvent taking a create's name
// from objectRef (the configmap "stolen" is then dropped by a rule the API
// server never applies to creates).
func TestImportPolicyDifferential(t *testing.T) {
	in := readIncident(t)
	got, summary := importWithPolicy(t, stricterPolicy)
	p, err := policy.Load("stricter.yaml", []byte(stricterPolicy))
	if err != nil {
		t.Fatal(err)
	}
	ev := policy.NewEvaluator(p)
	var kept, noneDrops, stageDrops, stripped, below, mfRemoved, identical, stolen int
	for _, line := range in {
		key, e := keyOf(t, line)
		// The API server matches resourceNames with the URL's name, which
		// a create has not: rule 2 never drops the create of "stolen".
		if e.Verb == "create" && e.ObjectRef != nil && e.ObjectRef.Name == "stolen" {
			if _, ok := got[key]; !ok {
				t.Errorf("%s: the create of configmap stolen was dropped by resourceNames", key)
			}
			stolen++
		}
		d := ev.Evaluate(policy.RequestFromEvent(e))
		out, ok := got[key]
		delete(got, key)
		if d.Level == audit.LevelNone || slices.Contains(d.OmitStages, e.Stage) {
			if ok {
				t.Errorf("%s: stored, but the policy decides %s omitting %v (rule %d)", key, d.Level, d.OmitStages, d.Rule)
			}
			if d.Level == audit.LevelNone {
				noneDrops++
			} else {
				stageDrops++
			}
			continue
		}
		if !ok {
			t.Errorf("%s: missing, but the policy decides %s (rule %d)", key, d.Level, d.Rule)
			continue
		}
		want := e.Level
		switch {
		case rank[d.Level] < rank[e.Level]:
			want = d.Level
			stripped++
		case rank[d.Level] > rank[e.Level]:
			below++
		default:
			kept++
		}
		var a, b map[string]any
		json.Unmarshal([]byte(line), &a)
		json.Unmarshal([]byte(out), &b)
		if b["level"] != string(want) {
			t.Errorf("%s: level %v, want %s (recorded %s, policy %s)", key, b["level"], want, e.Level, d.Level)
		}
		for _, body := range []struct {
			name string
			min  audit.Level
		}{{"requestObject", audit.LevelRequest}, {"responseObject", audit.LevelRequestResponse}} {
			rec, had := a[body.name]
			kept, has := b[body.name]
			wantBody := had && rank[want] >= rank[body.min]
			if has != wantBody {
				t.Errorf("%s: %s present=%v, want %v (level %s)", key, body.name, has, wantBody, want)
				continue
			}
			if !has {
				continue
			}
			if d.OmitManagedFields && e.Verb != "patch" && dropManagedFields(rec) {
				mfRemoved++
			}
			if !reflect.DeepEqual(rec, kept) {
				t.Errorf("%s: %s is not the recorded one less managedFields (omitManagedFields %v)", key, body.name, d.OmitManagedFields)
			}
		}
		for _, k := range []string{"level", "requestObject", "responseObject"} {
			delete(a, k)
			delete(b, k)
		}
		if !reflect.DeepEqual(a, b) {
			t.Errorf("%s: fields other than the level and bodies changed:\n got %s\nwant %s", key, out, line)
		}
		if out == line {
			identical++
		} else if want == e.Level && !(d.OmitManagedFields && strings.Contains(line, "managedFields")) {
			t.Errorf("%s: nothing to change, but stored as other bytes:\n got %s\nwant %s", key, out, line)
		}
	}
	for k := range got {
		t.Errorf("%s: stored, but not in the log", k)
	}
	// Every case must occur, or this test proves less than it says.
	t.Logf("kept %d, stripped %d, below %d, dropped None %d, dropped stage %d; bodies without managedFields %d; identical %d",
		kept, stripped, below, noneDrops, stageDrops, mfRemoved, identical)
	if kept == 0 || stolen == 0 || stripped == 0 || below == 0 || noneDrops == 0 || stageDrops == 0 || mfRemoved == 0 || identical == 0 {
		t.Fatal("the policy does not exercise every case on this log")
	}
	wantSummary := "policy " // the file name is a temp path
	for _, s := range []string{
		itoa(kept) + " events kept at their recorded level", itoa(stripped) + " stripped", itoa(noneDrops) + " dropped (level None)",
		itoa(stageDrops) + " dropped (omitted stage)", itoa(below) + " recorded below the policy's level",
	} {
		if !strings.Contains(summary, wantSummary) || !strings.Contains(summary, s) {
			t.Errorf("summary lacks %q:\n%s", s, summary)
		}
	}
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

// dropManagedFields removes metadata.managedFields from a decoded body and
// from its items, reporting whether there were any.
func dropManagedFields(body any) bool {
	found := false
	drop := func(o any) {
		if m, ok := o.(map[string]any); ok {
			if md, ok := m["metadata"].(map[string]any); ok {
				if _, ok := md["managedFields"]; ok {
					delete(md, "managedFields")
					found = true
				}
			}
		}
	}
	drop(body)
	if m, ok := body.(map[string]any); ok {
		if items, ok := m["items"].([]any); ok {
			for _, it := range items {
				drop(it)
			}
		}
	}
	return found
}

// TestImportUnderItsOwnPolicy: the incident imported with the policy it
// was recorded under is stored as the log's own bytes, every event kept.
// Mutation caught: rewriting events the policy leaves alone (re-encoding,
// or setting a level field that is already right).
func TestImportUnderItsOwnPolicy(t *testing.T) {
	in := readIncident(t)
	got, summary := importWithPolicy(t, incidentPolicy)
	if len(got) != len(in) {
		t.Fatalf("stored %d events of %d", len(got), len(in))
	}
	for _, line := range in {
		k, _ := keyOf(t, line)
		if got[k] != line {
			t.Errorf("%s changed:\n got %s\nwant %s", k, got[k], line)
		}
	}
	if !strings.Contains(summary, itoa(len(in))+" events kept at their recorded level, 0 stripped") {
		t.Errorf("summary, want %d kept:\n%s", len(in), summary)
	}
}

// TestPolicyFlagErrors: a policy that does not load strictly refuses to
// start, naming file:line:column; lint findings are warnings only.
// Mutation caught: loading as the API server does (the typo'd field
// ignored, the import run).
func TestPolicyFlagErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n  - level: Metadata\n    omitStage: [\"RequestReceived\"]\n"), 0o600)
	for _, cmd := range [][]string{
		{"import", "--data", filepath.Join(dir, "d1"), "--policy", bad, incidentGz},
		{"tail", "--data", filepath.Join(dir, "d2"), "--policy", bad, filepath.Join(dir, "nothing.log")},
		{"serve", "--data", filepath.Join(dir, "d3"), "--listen", "127.0.0.1:0", "--policy", bad},
	} {
		code, _, errOut := run(cmd...)
		if code == 0 || !strings.Contains(errOut, bad+":5:5: rules[0].omitStage: unknown field") {
			t.Errorf("%s: exit %d, stderr:\n%s", cmd[0], code, errOut)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "d1")); err == nil {
		entries, _ := os.ReadDir(filepath.Join(dir, "d1"))
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), "wal") || strings.HasSuffix(e.Name(), ".seg") {
				t.Errorf("import with a bad policy wrote %s", e.Name())
			}
		}
	}
	warn := filepath.Join(dir, "warn.yaml")
	os.WriteFile(warn, []byte("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n  - level: RequestResponse\n"), 0o600)
	code, _, errOut := run("import", "--data", filepath.Join(dir, "d4"), "--progress", "never", "--policy", warn, incidentGz)
	if code != 0 || !strings.Contains(errOut, "secrets-above-metadata") || !bytes.Contains([]byte(errOut), []byte("warn.yaml:4")) {
		t.Errorf("lint findings: exit %d, stderr:\n%s", code, errOut)
	}
}

// TestServeAndTailPolicy: serve applies --policy to its webhook's events
// before redaction and counts each result on /metrics; tail applies it to
// the log it follows. A Secret logged at RequestResponse under a policy
// that logs secrets at Metadata is stored without its bodies and without a
// redaction mark: the API server under that policy would have written no
// secret, so there is nothing to redact.
// Mutations caught: redaction before the policy (the stored event carries
// kubetrail.io/redacted); serve not wrapping its ingest sink; the metric
// not registered; tail without the policy.
func TestServeAndTailPolicy(t *testing.T) {
	pf := filepath.Join(t.TempDir(), "policy.yaml")
	os.WriteFile(pf, []byte(`apiVersion: audit.k8s.io/v1
kind: Policy
rules:
  - level: None
    users: ["alice"]
  - level: Metadata
`), 0o600)
	e := &env{stdin: strings.NewReader(""), stdout: io.Discard, stderr: io.Discard, logLevel: "error"}
	secretLine, plainLine := secretEvents("pol") // admin's secret at RequestResponse; alice's list at Metadata
	check := func(t *testing.T, dir string) {
		t.Helper()
		code, out, errOut := run("export", "--data", dir)
		if code != 0 {
			t.Fatalf("export: %s", errOut)
		}
		if strings.Count(out, "\n") != 1 || strings.Contains(out, `"alice"`) {
			t.Fatalf("want only admin's event, got:\n%s", out)
		}
		if strings.Contains(out, "requestObject") || strings.Contains(out, "kubetrail.io/redacted") || !strings.Contains(out, `"level":"Metadata"`) {
			t.Errorf("want the secret event at Metadata, unmarked:\n%s", out)
		}
		if found := scanData(t, dir, e2eSecret, e2eSecretB64); len(found) > 0 {
			t.Errorf("the secret is in the data folder: %v", found)
		}
	}

	t.Run("serve", func(t *testing.T) {
		dir, addr := t.TempDir(), freeAddr(t)
		ctx, cancel := context.WithCancel(context.Background())
		cmd := serveCmd(e)
		cmd.SetArgs([]string{"--data", dir, "--listen", addr, "--detect=false", "--policy", pf})
		done := make(chan error, 1)
		go func() { done <- cmd.ExecuteContext(ctx) }()
		var items []string
		for _, l := range []string{secretLine, plainLine} {
			items = append(items, strings.Replace(l, `"kind":"Event","apiVersion":"audit.k8s.io/v1",`, "", 1))
		}
		body := `{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":[` + strings.Join(items, ",") + `]}`
		var resp *http.Response
		var err error
		for start := time.Now(); time.Since(start) < 10*time.Second; time.Sleep(50 * time.Millisecond) {
			if resp, err = http.Post("http://"+addr+"/ingest/webhook", "application/json", strings.NewReader(body)); err == nil {
				break
			}
		}
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("webhook answered %s", resp.Status)
		}
		resp, err = http.Get("http://" + addr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		m, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, want := range []string{
			`kubetrail_policy_events_total{result="stripped"} 1`, `kubetrail_policy_events_total{result="dropped_level_none"} 1`,
			`kubetrail_policy_events_total{result="kept"} 0`, `kubetrail_policy_events_total{result="dropped_stage"} 0`,
			`kubetrail_policy_events_total{result="below_level"} 0`,
		} {
			if !bytes.Contains(m, []byte("\n"+want+"\n")) {
				t.Errorf("/metrics lacks %s", want)
			}
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
		check(t, dir)
	})

	t.Run("tail", func(t *testing.T) {
		dir := t.TempDir()
		log := filepath.Join(t.TempDir(), "audit.log")
		os.WriteFile(log, []byte(plainLine+"\n"+secretLine+"\n"), 0o600)
		ctx, cancel := context.WithCancel(context.Background())
		cmd := tailCmd(e)
		cmd.SetArgs([]string{"--data", dir, "--poll", "20ms", "--policy", pf, log})
		done := make(chan error, 1)
		go func() { done <- cmd.ExecuteContext(ctx) }()
		for start := time.Now(); !scanData(t, dir, `"auditID":"pol-1"`)[`"auditID":"pol-1"`]; time.Sleep(50 * time.Millisecond) {
			if time.Since(start) > 10*time.Second {
				t.Fatal("tail stored nothing in 10 s")
			}
		}
		cancel()
		<-done
		check(t, dir)
	})
}
