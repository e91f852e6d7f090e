package output

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kubetrail/kubetrail/internal/rules"
	"github.com/kubetrail/kubetrail/internal/testenv"
)

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// start runs a peer until the test ends and returns its log.
func start(t *testing.T, name string, args ...string) *strings.Builder {
	t.Helper()
	var log strings.Builder
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return &log
}

func lookPath(t *testing.T, name, pkg string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		testenv.Unavailable(t, "%s is not on PATH: apt-get install -y %s (Debian 12)", name, pkg)
	}
	return p
}

// TestAlertmanagerReceivesAlerts sends alerts to Debian's Alertmanager
// (prometheus-alertmanager) and reads them back from its v2 API: one per
// rule and label set, with the labels and annotations the docs promise.
func TestAlertmanagerReceivesAlerts(t *testing.T) {
	bin := lookPath(t, "prometheus-alertmanager", "prometheus-alertmanager")
	dir := t.TempDir()
	cfg := filepath.Join(dir, "am.yml")
	os.WriteFile(cfg, []byte("route:\n  receiver: none\nreceivers:\n- name: none\n"), 0o600)
	port := freePort(t)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	log := start(t, bin, "--config.file="+cfg, "--storage.path="+filepath.Join(dir, "data"),
		fmt.Sprintf("--web.listen-address=127.0.0.1:%d", port), "--cluster.listen-address=")
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(base + "/-/ready")
		if err == nil && resp.StatusCode == 200 {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("alertmanager not ready: %v\n%s", err, log)
		}
		time.Sleep(50 * time.Millisecond)
	}

	p := newPipeline(t, NewRegistry(Env{GeneratorURL: "http://kubetrail.example/api/v1/alerts"}), "alertmanager+"+base+"#throttle=0")
	a := mkAlert(0, "alice")
	b := mkAlert(1, "bob")
	b.Rule, b.Severity, b.Namespace, b.ImpersonatedUser = "secret read", rules.Critical, "", "system:admin"
	if _, err := p.store.Append([]rules.Alert{a, b}); err != nil {
		t.Fatal(err)
	}
	stop := p.run(t)
	defer stop()
	type amAlert struct {
		Labels       map[string]string `json:"labels"`
		Annotations  map[string]string `json:"annotations"`
		StartsAt     time.Time         `json:"startsAt"`
		GeneratorURL string            `json:"generatorURL"`
	}
	var got []amAlert
	waitFor(t, "2 alerts in Alertmanager", func() bool {
		resp, err := http.Get(base + "/api/v2/alerts")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		got = nil
		json.NewDecoder(resp.Body).Decode(&got)
		return len(got) == 2
	})
	byName := map[string]amAlert{}
	for _, g := range got {
		byName[g.Labels["alertname"]] = g
	}
	ex := byName["exec into pod"]
	for k, v := range map[string]string{"severity": "high", "cluster": "prod", "user": "alice", "namespace": "payments", "source": "kubetrail"} {
		if ex.Labels[k] != v {
			t.Errorf("label %s = %q, want %q (%v)", k, ex.Labels[k], v, ex.Labels)
		}
	}
	if ex.Annotations["summary"] != "exec into pod (high) by alice" || ex.Annotations["description"] != "alice ran a shell 0" ||
		!ex.StartsAt.Equal(t0) || ex.GeneratorURL != "http://kubetrail.example/api/v1/alerts?seq=1" {
		t.Errorf("alert %+v", ex)
	}
	sr := byName["secret read"]
	if _, ok := sr.Labels["namespace"]; ok || sr.Labels["severity"] != "critical" || sr.Labels["impersonated_user"] != "system:admin" {
		t.Errorf("alert without a namespace: labels %v", sr.Labels)
	}
	// amtool sees them too, as an operator would.
	if amtool, err := exec.LookPath("amtool"); err == nil {
		out, err := exec.Command(amtool, "--alertmanager.url="+base, "alert", "query", "user=alice", "-o", "simple").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "exec into pod") {
			t.Errorf("amtool alert query: %v\n%s", err, out)
		}
	}
}

// TestRsyslogReceivesAlerts sends alerts over syslog+tcp to Debian's
// rsyslog (imtcp, octet-counted framing) writing to a file, and checks
// the lines: one per alert, with the structured data and the message.
func TestRsyslogReceivesAlerts(t *testing.T) {
	bin := lookPath(t, "rsyslogd", "rsyslog")
	dir := t.TempDir()
	port := freePort(t)
	out := filepath.Join(dir, "out.log")
	conf := filepath.Join(dir, "rsyslog.conf")
	os.WriteFile(conf, []byte(fmt.Sprintf(`global(workDirectory=%q)
module(load="imtcp")
input(type="imtcp" port="%d" address="127.0.0.1")
template(name="t" type="string" string="%%pri%%|%%hostname%%|%%app-name%%|%%msgid%%|%%structured-data%%|%%msg%%\n")
*.* action(type="omfile" file=%q template="t")
`, dir, port, out)), 0o600)
	log := start(t, bin, "-n", "-f", conf, "-i", filepath.Join(dir, "rsyslogd.pid"))
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("rsyslogd not listening: %v\n%s", err, log)
		}
		time.Sleep(50 * time.Millisecond)
	}
	p := newPipeline(t, NewRegistry(Env{Hostname: "kt-node"}), "syslog+tcp://"+addr+"#facility=local4")
	in := []rules.Alert{mkAlert(0, "alice"), mkAlert(1, `bob "the ]admin\"`)}
	in[1].Message = "two\nlines"
	if _, err := p.store.Append(in); err != nil {
		t.Fatal(err)
	}
	stop := p.run(t)
	defer stop()
	var lines []string
	waitFor(t, "2 lines from rsyslog", func() bool {
		b, _ := os.ReadFile(out)
		lines = strings.Split(strings.TrimSpace(string(b)), "\n")
		return len(lines) == 2 && lines[0] != ""
	})
	// local4 (20) * 8 + err (3) = 163: high alerts are errors.
	want0 := `163|kt-node|kubetrail|alert|[alert@32473 rule="exec into pod" severity="high" source="kubetrail" user="alice" cluster="prod" namespace="payments" auditIDs="id-0" time="2026-05-01T12:00:00Z" seq="1"]|[HIGH] exec into pod: alice ran a shell 0`
	if lines[0] != want0 {
		t.Errorf("line 1\n got %s\nwant %s", lines[0], want0)
	}
	if !strings.Contains(lines[1], `user="bob \"the \]admin\\\""`) || !strings.Contains(lines[1], `seq="2"`) || !strings.HasSuffix(lines[1], "two#012lines") {
		t.Errorf("line 2 (escaped structured data, a newline kept inside one message): %s", lines[1])
	}
}
