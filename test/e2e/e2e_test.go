package e2e

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// requireClusterDeps checks for kube-apiserver, etcd and kubectl before
// anything is built or started, so that a machine without them skips (or,
// under CI, fails) at once.
func requireClusterDeps(t *testing.T) {
	t.Helper()
	kubeAPIServerBinary(t)
	etcdBinary(t)
	kubectlBinary(t)
}

// TestScenarioInAPIServerLog checks the harness itself: the scenario runs
// against the real API server and its own audit log holds every event the
// other tests then look for in kubetrail. When this fails, the environment
// is at fault, not kubetrail.
func TestScenarioInAPIServerLog(t *testing.T) {
	requireClusterDeps(t)
	c := startCluster(t, clusterConfig{})
	runScenario(t, c)
	c.stop(t)

	events, files := readAuditLog(t, c.auditLogPath)
	logCounts(t, "audit log", events, files)
	assertScenarioEvents(t, "audit log", events)
}

// TestWebhookAndLogAgree sends the API server's audit webhook to
// `kubetrail serve` while the API server also writes its own log file, and
// checks that kubetrail stored exactly the events of the log file, each as
// the file's line byte for byte; then imports the file into the same data
// folder and checks that no event is stored twice.
func TestWebhookAndLogAgree(t *testing.T) {
	requireClusterDeps(t)
	bin := kubetrailBinary(t)

	data := filepath.Join(t.ArtifactDir(), "kubetrail-data")
	serve, addr := startServe(t, bin, data)
	hook := filepath.Join(t.ArtifactDir(), "audit-webhook.kubeconfig")
	writeWebhookConfig(t, bin, "http://"+addr+"/ingest/webhook", hook)

	c := startCluster(t, clusterConfig{webhookConfig: hook})
	runScenario(t, c)
	// A clean stop makes the API server send what its webhook buffer holds.
	c.stop(t)

	want, files := readAuditLog(t, c.auditLogPath)
	logCounts(t, "audit log", want, files)
	if drops := c.webhookShutdownDrops(t); len(drops) > 0 {
		want = withoutEvents(t, want, drops)
		t.Logf("the API server reported %d events it could not give its webhook backend after that "+
			"backend shut down (ends of its own watches); comparing the other %d", len(drops), len(want))
	}

	waitExport(t, bin, data, len(want), 30*time.Second)
	if err := serve.stop(30 * time.Second); err != nil {
		t.Errorf("kubetrail serve must exit 0 on SIGTERM: %v", err)
	}
	got := exportEvents(t, bin, data)
	logCounts(t, "kubetrail export", got, nil)

	assertEventKind(t, got)
	assertScenarioEvents(t, "kubetrail export", got)
	assertSameEvents(t, "kubetrail export", got, "audit log", want)

	// The same API server's log file, imported into the same data folder,
	// adds only the events the webhook never carried: every event the
	// webhook delivered has the same bytes in the file and is stored once.
	all, files := readAuditLog(t, c.auditLogPath)
	distinct := map[string]bool{}
	for _, e := range all {
		distinct[e.raw] = true
	}
	if len(distinct) != len(all) {
		t.Fatalf("the audit log holds %d lines but only %d different ones: the count below assumes no line repeats", len(all), len(distinct))
	}
	stored, already := importFiles(t, bin, data, files...)
	if already != len(got) || stored != len(all)-len(got) {
		t.Errorf("import of the audit log after the webhook: %d stored, %d already stored; want %d stored (the events the webhook never carried), %d already stored (every event it did)",
			stored, already, len(all)-len(got), len(got))
	}
	both := exportEvents(t, bin, data)
	if len(both) != len(distinct) {
		t.Errorf("after the webhook and the import of the log file, export holds %d events; the log file has %d distinct events", len(both), len(distinct))
	}
	assertSameEvents(t, "kubetrail export after webhook and import", both, "audit log", all)
}

// TestTailAcrossRotationAgrees lets the API server rotate a small audit log
// (--audit-log-maxsize=1, in MB) while `kubetrail tail` follows it, and
// checks that kubetrail stored exactly the events of all the log files.
func TestTailAcrossRotationAgrees(t *testing.T) {
	requireClusterDeps(t)
	bin := kubetrailBinary(t)

	logPath := filepath.Join(t.ArtifactDir(), "audit", "audit.log")
	// The file exists before the tail starts and before the API server
	// writes to it (the API server appends to an existing file), so the
	// tail sees every event from the first one.
	if err := os.MkdirAll(filepath.Dir(logPath), 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, logPath, "")
	data := filepath.Join(t.ArtifactDir(), "kubetrail-data")
	tail := startTail(t, bin, logPath, data)

	c := startCluster(t, clusterConfig{auditLogPath: logPath, logMaxSizeMB: 1, logMaxBackup: 100})
	runScenario(t, c)
	makeTrafficUntilRotated(t, c, logPath, 3)
	c.stop(t)

	want, files := readAuditLog(t, c.auditLogPath)
	logCounts(t, "audit log", want, files)
	if len(files) < 2 {
		t.Fatalf("the audit log never rotated: only %v", files)
	}

	waitExport(t, bin, data, len(want), 60*time.Second)
	if err := tail.stop(30 * time.Second); err != nil {
		t.Errorf("kubetrail tail must exit 0 on SIGTERM: %v", err)
	}
	got := exportEvents(t, bin, data)
	logCounts(t, "kubetrail export", got, nil)

	assertEventKind(t, got)
	assertScenarioEvents(t, "kubetrail export", got)
	assertSameEvents(t, "kubetrail export", got, "audit log", want)
}

// makeTrafficUntilRotated sends requests as admin until the audit log has
// rotated `rotations` times, so that many events are written around each
// rotation: mostly small gets, and a list of cluster roles now and then,
// which the policy logs with its whole response body (about 80 KiB). The
// loop is bounded.
func makeTrafficUntilRotated(t *testing.T, c *cluster, logPath string, rotations int) {
	t.Helper()
	start := time.Now()
	ext := filepath.Ext(logPath)
	pattern := strings.TrimSuffix(logPath, ext) + "-*" + ext
	requests := 0
	for requests < 5000 {
		backups, _ := filepath.Glob(pattern)
		if len(backups) >= rotations {
			break
		}
		path := "/api/v1/namespaces/kube-system"
		if requests%20 == 0 {
			path = "/apis/rbac.authorization.k8s.io/v1/clusterroles"
		}
		if code := c.do(t, userAdmin, http.MethodGet, path); code != http.StatusOK {
			t.Fatalf("GET %s: HTTP %d", path, code)
		}
		requests++
	}
	st, _ := os.Stat(logPath)
	var size int64
	if st != nil {
		size = st.Size()
	}
	t.Logf("made %d requests in %s to rotate the audit log %d times (current file %d bytes)",
		requests, time.Since(start).Round(time.Millisecond), rotations, size)
}

func logCounts(t *testing.T, name string, events []event, files []string) {
	t.Helper()
	if files != nil {
		base := make([]string, len(files))
		for i, f := range files {
			base[i] = filepath.Base(f)
		}
		t.Logf("%s: %d events in %d files %v", name, len(events), len(files), base)
	} else {
		t.Logf("%s: %d events", name, len(events))
	}
	t.Logf("%s by stage: %s", name, countBy(events, "stage"))
	t.Logf("%s by user: %s", name, countBy(events, "user.username"))
}
