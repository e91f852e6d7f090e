package cli

import (
	"strings"
	"testing"
)

// TestTyposFail: a misspelled subcommand or flag exits non-zero with the
// nearest names, for every command that groups others, so a typo in a CI
// gate ("kubetrail policy chek") cannot pass; the group alone still prints
// its help and exits 0.
// Mutation it catches: the group commands without strictCommands (cobra
// prints help and exits 0 on "policy chek").
func TestTyposFail(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"policy", "chek", "p.yaml"}, `unknown command "chek" for "kubetrail policy" (did you mean check?)`},
		{[]string{"setup", "chck"}, `unknown command "chck" for "kubetrail setup" (did you mean check?)`},
		{[]string{"rules", "lst"}, `unknown command "lst" for "kubetrail rules" (did you mean list or test?)`},
		{[]string{"quer"}, `unknown command "quer" for "kubetrail"`},
		{[]string{"query", "--lmit", "3"}, `unknown flag: --lmit (did you mean --limit?)`},
		{[]string{"policy", "check", "--strictt", "p.yaml"}, `unknown flag: --strictt (did you mean --strict?)`},
		{[]string{"detect", "--rule", "x"}, `unknown flag: --rule (did you mean --rules?)`},
	} {
		code, _, errOut := run(c.args...)
		if code == 0 || !strings.Contains(errOut, c.want) {
			t.Errorf("kubetrail %s: exit %d, stderr %q; want non-zero and %q", strings.Join(c.args, " "), code, errOut, c.want)
		}
	}
	for _, group := range []string{"policy", "setup", "rules"} {
		if code, out, _ := run(group); code != 0 || !strings.Contains(out, "Available Commands") {
			t.Errorf("kubetrail %s alone: exit %d, %q", group, code, out)
		}
	}
}

// TestFirstSteps: serve's first words say where to point the API server
// and how to ask questions, with the real address and folder.
func TestFirstSteps(t *testing.T) {
	s := firstSteps("10.0.0.5:8443", "/var/lib/kubetrail", true, 21)
	for _, want := range []string{
		"https://10.0.0.5:8443/ingest/webhook",
		"kubetrail setup webhook-config --url https://10.0.0.5:8443/ingest/webhook",
		"kubetrail query --server https://10.0.0.5:8443",
		"--data /var/lib/kubetrail",
		"Detection runs 21 rules",
		"kubetrail alerts --data /var/lib/kubetrail",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("first steps lack %q:\n%s", want, s)
		}
	}
}

// TestFirstStepsDetectionOff: with detection off, the first words say so.
func TestFirstStepsDetectionOff(t *testing.T) {
	if s := firstSteps("127.0.0.1:8443", "d", false, 0); !strings.Contains(s, "Detection is off") || strings.Contains(s, "kubetrail alerts") {
		t.Errorf("first steps with detection off:\n%s", s)
	}
}

// TestVersion: the version command and --version print the same line,
// and -o json names its fields.
func TestVersion(t *testing.T) {
	_, line, _ := run("version")
	_, flag, _ := run("--version")
	if line != flag || !strings.HasPrefix(line, "kubetrail ") || len(strings.Fields(line)) != 4 {
		t.Fatalf("version %q, --version %q", line, flag)
	}
	code, out, _ := run("version", "-o", "json")
	if code != 0 || !strings.Contains(out, `"version":`) || !strings.Contains(out, `"commit":`) || !strings.Contains(out, `"goVersion":"go`) {
		t.Fatalf("version -o json: %d %q", code, out)
	}
}
