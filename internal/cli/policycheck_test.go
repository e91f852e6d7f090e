package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPolicyCheckLintsPastTypos: a policy with a field the API server
// ignores (omitStage) still gets the lint of what the API server would
// apply, in the same run: the typo and the secret leak behind it are both
// reported, and the RequestReceived warning names the rules that log it.
// Mutation it catches: stopping at the load errors (the old behaviour: the
// leak was never reported while the typo stayed).
func TestPolicyCheckLintsPastTypos(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.yaml")
	os.WriteFile(path, []byte(`apiVersion: audit.k8s.io/v1
kind: Policy
omitStage:
  - RequestReceived
rules:
  - level: RequestResponse
    resources:
      - group: ""
        resources: ["secrets"]
  - level: None
    nonResourceURLs: ["/healthz*"]
  - level: Metadata
`), 0o600)
	code, out, _ := run("policy", "check", path)
	for _, want := range []string{
		`policy.yaml:3:1: omitStage: unknown field "omitStage", which the API server would silently ignore; did you mean omitStages?`,
		"the API server would load this policy without the 1 field above",
		"policy.yaml:6: error: secrets-above-metadata (rule 0)",
		"RequestReceived is not omitted: rules 0 (line 6) and 2 (line 12) log every request they match twice",
		"3 rules, 2 errors,",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("policy check output lacks %q:\n%s", want, out)
		}
	}
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	code, out, _ = run("policy", "check", path, "-o", "json")
	var ans struct {
		Errors   string           `json:"errors"`
		Findings []map[string]any `json:"findings"`
	}
	if err := json.Unmarshal([]byte(out), &ans); err != nil || code != 1 || !strings.Contains(ans.Errors, "omitStage") || len(ans.Findings) == 0 {
		t.Errorf("-o json: exit %d, %v, %s", code, err, out)
	}
	// A policy the API server would reject (a wrong type) is not linted.
	os.WriteFile(path, []byte("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n  - level: [Metadata]\n"), 0o600)
	if code, out, errOut := run("policy", "check", path); code != 1 || strings.Contains(out, "secrets-above") || errOut == "" {
		t.Errorf("a rejected policy: exit %d, %q %q", code, out, errOut)
	}
}

// TestSimulateShortRecording: a recording of under an hour gets a warning
// and no per-day projection (the review saw GB/day projected from 6 s).
// Mutation it catches: printing PerDay whatever the recording's length.
func TestSimulateShortRecording(t *testing.T) {
	log := incidentLog(t) // 81 seconds of events
	policyFile := filepath.Join(t.TempDir(), "p.yaml")
	os.WriteFile(policyFile, []byte("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n"), 0o600)
	code, out, errOut := run("policy", "simulate", policyFile, "--log", log)
	if code != 0 || !strings.Contains(errOut, "less than an hour: the per-day figures are not projected") || !strings.Contains(out, "over 1 minute 20 seconds") || !strings.Contains(out, "-/day") || strings.Contains(out, "B/day") {
		t.Errorf("exit %d, stderr %q:\n%s", code, errOut, out)
	}
	// The SECRETS sample names each kind of request once, with a count.
	// (Mutation caught: one example line per exposed event.)
	os.WriteFile(policyFile, []byte("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: RequestResponse\n"), 0o600)
	_, out, _ = run("policy", "simulate", policyFile, "--log", log)
	i := strings.Index(out, "SECRETS:")
	if i < 0 {
		t.Fatalf("no SECRETS sample:\n%s", out)
	}
	seen := map[string]bool{}
	for _, l := range strings.Split(strings.TrimSpace(out[i:]), "\n")[1:] {
		if seen[l] {
			t.Errorf("the SECRETS sample repeats %q:\n%s", l, out)
		}
		seen[l] = true
	}
}
