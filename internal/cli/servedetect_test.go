package cli

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kubetrail/kubetrail/internal/audit"
	"github.com/kubetrail/kubetrail/internal/pipeline"
	"github.com/kubetrail/kubetrail/internal/store/local"
)

// TestServeRefusesBadRules: serve must not start without a rule the user
// asked for: a rule file with an error stops it, naming FILE:LINE, and so
// do rules or outputs with detection off.
func TestServeRefusesBadRules(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("- name: x\n  severity: high\n  condition: verb=\n"), 0o600)
	code, _, errOut := run("serve", "--data", filepath.Join(dir, "data"), "--listen", "127.0.0.1:0", "--rules", bad)
	if code != 1 || !strings.Contains(errOut, bad+":3:") {
		t.Fatalf("serve with a bad rule file: exit %d, stderr %q; want 1 and %s:3:...", code, errOut, bad)
	}
	code, _, errOut = run("serve", "--data", filepath.Join(dir, "data"), "--listen", "127.0.0.1:0", "--detect=false", "--alert-output", "file:///tmp/x.jsonl")
	if code != 1 || !strings.Contains(errOut, "--detect=false") {
		t.Fatalf("serve --detect=false --alert-output: exit %d, stderr %q", code, errOut)
	}
	code, _, errOut = run("serve", "--data", filepath.Join(dir, "data"), "--listen", "127.0.0.1:0", "--alert-output", "smtp://mail")
	if code != 1 || !strings.Contains(errOut, `unknown scheme "smtp"`) {
		t.Fatalf("serve with an unknown output scheme: exit %d, stderr %q", code, errOut)
	}
}

// TestServeDetectionDelivers wires what serve runs: an event stored after
// detection started reaches a file output as the built-in pack's alert,
// and stopping after the store closes leaves the cursor past it.
func TestServeDetectionDelivers(t *testing.T) {
	dir := t.TempDir()
	db, err := local.Open(filepath.Join(dir, "data"), local.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "alerts.jsonl")
	e := &env{stderr: os.Stderr}
	x, err := openDetection(e, db, &ruleFlags{matching: "first"}, []string{"file://" + out}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	x.start(func() { t.Error("detection failed") })
	raw := `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Request","auditID":"b1","stage":"ResponseComplete","requestURI":"/apis/rbac.authorization.k8s.io/v1/clusterrolebindings","verb":"create","user":{"username":"admin"},"objectRef":{"resource":"clusterrolebindings","name":"backdoor","apiGroup":"rbac.authorization.k8s.io","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":201},"requestObject":{"kind":"ClusterRoleBinding","subjects":[{"kind":"User","name":"attacker"}],"roleRef":{"kind":"ClusterRole","name":"cluster-admin"}},"requestReceivedTimestamp":"2026-12-01T10:00:00.000000Z","stageTimestamp":"2026-12-01T10:00:00.100000Z"}`
	var recs []audit.Record
	audit.NewDecoder(audit.Limits{}).DecodeBody("t", []byte(raw), func(r audit.Record) { recs = append(recs, r) }, func(p audit.Problem) { t.Fatal(p) })
	if _, err := db.Append(context.Background(), &pipeline.Batch{Cluster: "c", Records: recs}); err != nil {
		t.Fatal(err)
	}
	var got []byte
	for i := 0; i < 500 && !strings.Contains(string(got), "Binding to cluster-admin"); i++ {
		time.Sleep(10 * time.Millisecond)
		got, _ = os.ReadFile(out)
	}
	if !strings.Contains(string(got), `"rule":"Binding to cluster-admin","severity":"critical"`) || !strings.Contains(string(got), `"auditIDs":["b1"]`) {
		t.Fatalf("file output holds %q", got)
	}
	db.Close()
	if err := x.stop(); err != nil {
		t.Fatal(err)
	}
	if st := x.det.Stats(); st.Events != 1 || st.Cursor.Ord != 1 {
		t.Errorf("detector stats after stop: %+v", st)
	}
}
