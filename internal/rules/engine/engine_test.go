package engine

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kubetrail/kubetrail/internal/audit"
	"github.com/kubetrail/kubetrail/internal/rules"
	"github.com/kubetrail/kubetrail/internal/testenv"
)

// TestRealRulesetsLoadTogether loads Falco's k8s-audit rules, SigmaHQ's
// kubernetes/audit rules (unchanged, from the shared folder) and the
// built-in pack in one engine: every file is told apart by its contents,
// nothing fails, and an exec over WebSocket is caught by the built-in
// pack while SigmaHQ's exec rule (create only) stays silent.
func TestRealRulesetsLoadTogether(t *testing.T) {
	shared := testenv.SharedDir(t)
	files, warns, err := ReadPaths([]string{filepath.Join(shared, "rulesets", "falco", "k8s_audit_rules.yaml"), filepath.Join(shared, "rulesets", "sigma")})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 17 || len(warns) != 0 {
		t.Fatalf("%d files, warnings %v", len(files), warns)
	}
	for _, f := range files {
		want := FormatSigma
		if strings.HasSuffix(f.Name, "k8s_audit_rules.yaml") {
			want = FormatFalco
		}
		if got, err := Detect(f.Data); got != want {
			t.Errorf("%s: detected %q (%v), want %q", f.Name, got, err, want)
		}
	}
	e, probs := Load(files, Options{Builtin: true})
	for _, p := range probs {
		if !p.Warning {
			t.Errorf("%s", p)
		}
	}
	bySource := map[string]int{}
	for _, r := range e.Rules() {
		bySource[r.Source]++
	}
	if bySource[rules.SourceFalco] != 48 || bySource[rules.SourceSigma] != 16 || bySource[rules.SourceKubetrail] < 15 {
		t.Fatalf("rules by source %v", bySource)
	}
	raw := []byte(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"x-1","stage":"ResponseStarted","requestURI":"/api/v1/namespaces/prod/pods/web/exec?command=sh\u0026stdin=true\u0026tty=true","verb":"get","user":{"username":"alice","groups":["system:authenticated"]},"sourceIPs":["10.0.0.7"],"userAgent":"kubectl/v1.37.0","objectRef":{"resource":"pods","namespace":"prod","name":"web","apiVersion":"v1","subresource":"exec"},"responseStatus":{"metadata":{},"code":101},"requestReceivedTimestamp":"2026-12-01T10:00:00.000000Z","stageTimestamp":"2026-12-01T10:00:00.010000Z"}`)
	ev := &audit.Event{}
	if err := audit.DecodeStored(raw, ev); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, a := range e.Eval(&rules.Event{Ev: ev, Raw: raw, Cluster: "prod"}) {
		got = append(got, a.Source+": "+a.Rule)
	}
	joined := strings.Join(got, "\n")
	if !strings.Contains(joined, "kubetrail: Exec, attach or port-forward into a pod") || strings.Contains(joined, "sigma: ") {
		t.Fatalf("alerts on an exec over WebSocket:\n%s", joined)
	}
}

func TestNotARuleFile(t *testing.T) {
	_, probs := Load([]rules.File{{Name: "x.yaml", Data: []byte("apiVersion: v1\nkind: ConfigMap\n")}}, Options{})
	if len(probs) != 1 || probs[0].Warning || !strings.Contains(probs[0].String(), "x.yaml: error: not a rule file") {
		t.Fatalf("problems %v", probs)
	}
}

// TestReadPathsNamesSubfolders: a folder's own .yaml and .yml files are
// read, its subfolders are not, and each is named in a warning (a rule
// left in one must not be missed without a word); a folder starting with
// '.' (.git) is passed over silently.
// Mutation it catches: skipping subfolders without the warning.
func TestReadPathsNamesSubfolders(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"a.yaml", "notes.txt", "sub/b.yaml", ".git/c.yaml"} {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("- name: r\n  condition: verb=get\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	files, warns, err := ReadPaths([]string{dir})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 1 || files[0].Name != filepath.Join(dir, "a.yaml") {
		t.Errorf("files %v; want a.yaml alone", files)
	}
	if len(warns) != 1 || !warns[0].Warning || warns[0].File != filepath.Join(dir, "sub") || !strings.Contains(warns[0].Msg, "not read") {
		t.Errorf("warnings %v; want one naming %s", warns, filepath.Join(dir, "sub"))
	}
}
