package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestSetupAPIServerAndPolicyEvalAgree takes the audit flags that
// `kubetrail setup apiserver` writes into a kubeadm-style manifest, starts
// the real kube-apiserver with them (host paths mapped into a temporary
// folder) and the recommended policy from `kubetrail policy init`, runs
// the kubectl scenario, and checks that every event in the API server's log
// has the level `kubetrail policy eval --from-log` predicts for it, and no
// event is of a stage the policy omits.
func TestSetupAPIServerAndPolicyEvalAgree(t *testing.T) {
	requireClusterDeps(t)
	bin := kubetrailBinary(t)
	root := t.TempDir()
	run := func(args ...string) []byte {
		t.Helper()
		var stderr bytes.Buffer
		cmd := exec.Command(bin, args...)
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("kubetrail %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
		}
		return out
	}
	policyHost := filepath.Join(root, "etc/kubernetes/audit-policy.yaml")
	os.MkdirAll(filepath.Dir(policyHost), 0o700)
	run("policy", "init", "--profile", "recommended", "-o", policyHost)
	manifest := filepath.Join(root, "kube-apiserver.yaml")
	src, err := os.ReadFile("../../internal/setup/testdata/patch-kubeadm-noaudit.yaml")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, manifest, string(src))
	run("setup", "apiserver", "--manifest", manifest, "--root", root, "--write",
		"--policy", "/etc/kubernetes/audit-policy.yaml", "--log-path", "/var/log/kubernetes/audit/audit.log",
		"--max-age", "7", "--max-backup", "100", "--max-size", "50")

	// The flags exactly as written into the manifest, with their host
	// paths moved under root.
	patched, err := os.ReadFile(manifest)
	if err != nil {
		t.Fatal(err)
	}
	flags := regexp.MustCompile(`--audit-[a-z-]+=\S+`).FindAllString(string(patched), -1)
	var args []string
	var policyFile, logPath string
	for _, f := range flags {
		name, val, _ := strings.Cut(f, "=")
		if strings.HasPrefix(val, "/") {
			val = filepath.Join(root, val)
		}
		switch name {
		case "--audit-policy-file":
			policyFile = val
		case "--audit-log-path":
			logPath = val
		}
		args = append(args, name+"="+val)
	}
	if policyFile == "" || logPath == "" || len(args) < 5 {
		t.Fatalf("setup apiserver wrote %v: want policy, log path and rotation flags", flags)
	}
	t.Logf("flags from setup apiserver: %v", flags)
	os.MkdirAll(filepath.Dir(logPath), 0o700)

	c := startCluster(t, clusterConfig{policyFile: policyFile, auditLogPath: logPath, extraArgs: args})
	runScenario(t, c)
	c.stop(t)

	events, files := readAuditLog(t, logPath)
	logCounts(t, "audit log", events, files)
	// Predict each event's level from the same log.
	var all bytes.Buffer
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		all.Write(b)
	}
	logFile := filepath.Join(root, "all.log")
	writeFile(t, logFile, all.String())
	out := run("policy", "eval", policyFile, "--from-log", logFile)
	type decision struct {
		Level         string   `json:"level"`
		OmitStages    []string `json:"omitStages"`
		Rule          int      `json:"rule"`
		AuditID       string   `json:"auditID"`
		Stage         string   `json:"stage"`
		RecordedLevel string   `json:"recordedLevel"`
		Line          int      `json:"line"`
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 1<<20)
	n, byLevel := 0, map[string]int{}
	for sc.Scan() {
		var d decision
		if err := json.Unmarshal(sc.Bytes(), &d); err != nil {
			t.Fatalf("policy eval line: %v: %s", err, sc.Bytes())
		}
		n++
		byLevel[d.RecordedLevel]++
		if d.Level != d.RecordedLevel {
			t.Errorf("line %d (%s %s): recorded at %s, policy eval predicts %s (rule %d)", d.Line, d.AuditID, d.Stage, d.RecordedLevel, d.Level, d.Rule)
		}
		for _, st := range d.OmitStages {
			if st == d.Stage {
				t.Errorf("line %d: stage %s was logged but the policy omits it", d.Line, d.Stage)
			}
		}
	}
	if n != len(events) || n == 0 {
		t.Fatalf("policy eval answered %d lines for %d events", n, len(events))
	}
	if byLevel["RequestResponse"] == 0 || byLevel["Metadata"] == 0 || byLevel["Request"] == 0 {
		t.Errorf("levels seen %v: the scenario should produce Metadata, Request and RequestResponse events", byLevel)
	}
	t.Logf("%d events, every level as policy eval predicted: %v", n, byLevel)
}
