package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
)

// alert is one line of `kubetrail detect -o jsonl`.
type alert struct {
	Rule     string   `json:"rule"`
	Severity string   `json:"severity"`
	Source   string   `json:"source"`
	AuditIDs []string `json:"auditIDs"`
	User     string   `json:"user"`
	Message  string   `json:"message"`
	Time     string   `json:"time"`
}

func detect(t *testing.T, bin string, args ...string) []alert {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), bin, append([]string{"detect", "-o", "jsonl"}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("kubetrail detect %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	var out []alert
	sc := bufio.NewScanner(&stdout)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var a alert
		if err := json.Unmarshal(sc.Bytes(), &a); err != nil {
			t.Fatalf("detect printed a line that is not an alert: %q", sc.Text())
		}
		out = append(out, a)
	}
	return out
}

func describe(as []alert) string {
	var b strings.Builder
	for _, a := range as {
		b.WriteString("  " + a.Severity + " " + a.Rule + ": " + a.Message + "\n")
	}
	return b.String()
}

// TestDetectOnRealAPIServer runs the built-in pack over the real API
// server's own audit log: its bootstrap (the API server starting and
// writing its RBAC policy as system:apiserver) raises no high or critical
// alert, and the seed's incident played with the real kubectl (bob is
// refused, admin binds bob to cluster-admin, bob reads secrets, admin
// execs into a pod) raises each alert it must, at its severity.
func TestDetectOnRealAPIServer(t *testing.T) {
	requireClusterDeps(t)
	bin := kubetrailBinary(t)
	c := startCluster(t, clusterConfig{})

	// Everything the API server logged while starting, up to the last
	// whole line.
	boot, err := os.ReadFile(c.auditLogPath)
	if err != nil {
		t.Fatal(err)
	}
	boot = boot[:bytes.LastIndexByte(boot, '\n')+1]
	bootLog := filepath.Join(t.TempDir(), "bootstrap.log")
	if err := os.WriteFile(bootLog, boot, 0o600); err != nil {
		t.Fatal(err)
	}
	bootAlerts := detect(t, bin, bootLog)
	for _, a := range bootAlerts {
		if a.Severity == "high" || a.Severity == "critical" {
			t.Errorf("the API server's bootstrap (%d lines) raised a %s alert: %s: %s", bytes.Count(boot, []byte("\n")), a.Severity, a.Rule, a.Message)
		}
	}
	t.Logf("bootstrap: %d events, %d alerts\n%s", bytes.Count(boot, []byte("\n")), len(bootAlerts), describe(bootAlerts))

	c.kubectl(t, userAdmin, "create", "namespace", "production")
	c.kubectlIn(t, userAdmin, rbacManifest, "apply", "-f", "-")
	c.kubectl(t, userAdmin, "create", "secret", "generic", "db", "-n", "production", "--from-literal=password=hunter2")
	c.kubectlFails(t, userBob, "Forbidden", "get", "secrets", "-n", "production")
	c.kubectl(t, userAdmin, "create", "clusterrolebinding", "bob-admin", "--clusterrole=cluster-admin", "--user="+userBob)
	c.waitCanI(t, userBob, "get", "secrets", "-n", "production")
	c.kubectl(t, userBob, "get", "secret", "db", "-n", "production", "-o", "name")
	c.kubectl(t, userAdmin, "run", "web", "-n", "production", "--restart=Never", "--image=registry.example/web:1.0")
	c.kubectlFails(t, userAdmin, "", "exec", "web", "-n", "production", "--", "cat", "/etc/shadow")
	c.stop(t)

	all := detect(t, bin, c.auditLogPath)
	t.Logf("whole log: %d alerts\n%s", len(all), describe(all))
	find := func(rule, user, severity string) {
		t.Helper()
		for _, a := range all {
			if a.Rule == rule && a.User == user {
				if a.Severity != severity {
					t.Errorf("%s for %s: severity %s, want %s", rule, user, a.Severity, severity)
				}
				return
			}
		}
		t.Errorf("no %q alert for %s", rule, user)
	}
	find("Binding to cluster-admin", userAdmin, "critical")
	find("Denied, then granted, then reading secrets", userBob, "critical")
	find("Secret read by a person", userBob, "medium")
	find("Exec, attach or port-forward into a pod", userAdmin, "medium")

	// The only high or critical alerts are the incident's, and the role
	// the scenario's RBAC manifest writes with the impersonate verb.
	var serious []string
	for _, a := range all {
		if a.Severity == "high" || a.Severity == "critical" {
			serious = append(serious, a.Rule)
		}
	}
	sort.Strings(serious)
	if want := []string{"Binding to cluster-admin", "Denied, then granted, then reading secrets", "Powerful ClusterRole written"}; !slices.Equal(serious, want) {
		t.Errorf("high and critical alerts %q, want exactly %q", serious, want)
	}
	// Each exec request is alerted once, however many stages the policy
	// logged (kubectl tries WebSocket, a get, then falls back to SPDY, a
	// create: two requests for one command when the first fails).
	events, _ := readAuditLog(t, c.auditLogPath)
	requests := map[string]bool{}
	for _, e := range events {
		if e.str("objectRef.subresource") == "exec" {
			requests[e.str("auditID")] = true
		}
	}
	alerted := map[string]int{}
	for _, a := range all {
		if a.Rule == "Exec, attach or port-forward into a pod" {
			alerted[a.AuditIDs[0]]++
		}
	}
	if len(requests) == 0 || len(alerted) != len(requests) {
		t.Errorf("%d exec requests in the log, %d alerted", len(requests), len(alerted))
	}
	for id, n := range alerted {
		if n != 1 || !requests[id] {
			t.Errorf("exec request %s alerted %d times", id, n)
		}
	}
}
