package cli

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kubetrail/kubetrail/internal/ingest"
	"github.com/kubetrail/kubetrail/internal/server"
	"github.com/kubetrail/kubetrail/internal/store/local"
	"github.com/kubetrail/kubetrail/internal/testenv"
)

// TestRsyslogForwardsToSyslogListener runs Debian's rsyslogd as the
// docs configure it: imfile tails a file of audit log lines and omfwd
// forwards each line over TCP to serve's syslog listeners, once
// octet-counted as RFC 5424 with the cluster in the structured data, once
// newline-framed in rsyslog's traditional format (the listener's
// --syslog-cluster). Every line must arrive once per action, and export
// must give back the file byte for byte for each cluster, including a
// line over rsyslog's default 8 KiB message size (maxMessageSize is
// raised in the config) and one with non-ASCII text.
func TestRsyslogForwardsToSyslogListener(t *testing.T) {
	bin, err := exec.LookPath("rsyslogd")
	if err != nil {
		testenv.Unavailable(t, "rsyslogd is not on PATH: apt-get install -y rsyslog (Debian 12)")
		return
	}
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	var lines []string
	for i := range 300 {
		ua := "kubectl/v1.37.2"
		switch i {
		case 7:
			ua = "ünïcødé ✓ client"
		case 150:
			ua = strings.Repeat("big", 7000) // a 21 KB event
		}
		lines = append(lines, fmt.Sprintf(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"id-%04d","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/default/pods?limit=%d","verb":"list","user":{"username":"alice","groups":["system:authenticated"]},"sourceIPs":["10.0.0.1"],"userAgent":%q,"objectRef":{"resource":"pods","namespace":"default","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"2026-11-23T10:00:00.%06dZ","stageTimestamp":"2026-11-23T10:00:01.%06dZ","annotations":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":""}}`, i, i, ua, i, i))
	}
	logFile := filepath.Join(dir, "audit.log")
	if err := os.WriteFile(logFile, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	db, err := local.Open(data, local.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Config{Listen: "127.0.0.1:0", Syslog: ingest.SyslogConfig{
		Listen: []string{"tcp://127.0.0.1:0", "tcp://127.0.0.1:0"}, DefaultCluster: "newline", Logger: slog.New(slog.NewTextHandler(os.Stderr, nil))}},
		db, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan []string, 1)
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx, func(string) { ready <- srv.SyslogAddrs() }) }()
	addrs := <-ready
	port := func(u string) string { return u[strings.LastIndexByte(u, ':')+1:] }

	conf := filepath.Join(dir, "rsyslog.conf")
	os.WriteFile(conf, []byte(fmt.Sprintf(`global(workDirectory=%q maxMessageSize="256k")
module(load="imfile")
template(name="kubetrail5424" type="string" string="<%%PRI%%>1 %%TIMESTAMP:::date-rfc3339%% %%HOSTNAME%% %%APP-NAME%% - - [kubetrail@32473 cluster=\"octet\"] %%msg%%")
input(type="imfile" file=%q tag="kube-audit:" ruleset="kubetrail")
ruleset(name="kubetrail") {
  action(type="omfwd" target="127.0.0.1" port="%s" protocol="tcp" tcp_framing="octet-counted" template="kubetrail5424"
         queue.type="LinkedList" action.resumeRetryCount="-1")
  action(type="omfwd" target="127.0.0.1" port="%s" protocol="tcp"
         queue.type="LinkedList" action.resumeRetryCount="-1")
}
`, dir, logFile, port(addrs[0]), port(addrs[1]))), 0o600)
	var rlog strings.Builder
	cmd := exec.Command(bin, "-n", "-f", conf, "-i", filepath.Join(dir, "rsyslogd.pid"))
	cmd.Stdout, cmd.Stderr = &rlog, &rlog
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()

	want := int64(2 * len(lines))
	for deadline := time.Now().Add(60 * time.Second); db.Stats().Stored.Load() < want; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("stored %d of %d events after 60 s\nrsyslogd:\n%s", db.Stats().Stored.Load(), want, rlog.String())
		}
	}
	time.Sleep(300 * time.Millisecond) // anything sent twice would be counted by now
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n, d := db.Stats().Stored.Load(), db.Stats().Duplicates.Load(); n != want || d != 0 {
		t.Errorf("stored %d events and %d duplicates, want %d and none", n, d, want)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	for _, cluster := range []string{"octet", "newline"} {
		code, out, errOut := run("export", "--data", data, "--cluster", cluster)
		if code != 0 {
			t.Fatalf("export --cluster %s: exit %d: %s", cluster, code, errOut)
		}
		if got := strings.Split(strings.TrimSuffix(out, "\n"), "\n"); strings.Join(got, "\n") != strings.Join(lines, "\n") {
			for i := range min(len(got), len(lines)) {
				if got[i] != lines[i] {
					t.Errorf("export --cluster %s: line %d differs:\n got %.300s\nwant %.300s", cluster, i+1, got[i], lines[i])
					break
				}
			}
			t.Fatalf("export --cluster %s: %d lines, want the file's %d byte for byte", cluster, len(got), len(lines))
		}
	}
}
