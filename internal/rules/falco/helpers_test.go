package falco

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/kubetrail/kubetrail/internal/audit"
	"github.com/kubetrail/kubetrail/internal/rules"
	"github.com/kubetrail/kubetrail/internal/testenv"
)

func sharedDir(t testing.TB) string { return testenv.SharedDir(t) }

// falcoRulesFile is Falco's k8saudit rule file, unchanged.
func falcoRulesFile(t testing.TB) rules.File {
	t.Helper()
	name := filepath.Join(sharedDir(t), "rulesets", "falco", "k8s_audit_rules.yaml")
	data, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return rules.File{Name: name, Data: data}
}

// loadOK loads files and fails the test on any error.
func loadOK(t testing.TB, opts Options, files ...rules.File) *Evaluator {
	t.Helper()
	ev, problems := Load(files, opts)
	for _, p := range problems {
		if !p.Warning {
			t.Fatalf("unexpected problem: %s", p)
		}
	}
	return ev
}

// decodeFile reads audit events the way import does.
func decodeFile(t testing.TB, name string) ([]*rules.Event, []audit.Problem) {
	t.Helper()
	data, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	var evs []*rules.Event
	var bad []audit.Problem
	audit.NewDecoder(audit.Limits{}).DecodeBody(name, data, func(r audit.Record) {
		ev := r.Event
		evs = append(evs, &rules.Event{Ev: &ev, Raw: r.Raw, Cluster: "test"})
	}, func(p audit.Problem) { bad = append(bad, p) })
	return evs, bad
}

// event decodes one audit event line.
func event(t testing.TB, line string) *rules.Event {
	t.Helper()
	var out *rules.Event
	audit.NewDecoder(audit.Limits{}).DecodeLine("test", 1, []byte(line), func(r audit.Record) {
		ev := r.Event
		out = &rules.Event{Ev: &ev, Raw: r.Raw, Cluster: "prod"}
	}, func(p audit.Problem) { t.Fatalf("bad test event: %s", p) })
	return out
}

// ruleFile is a rule file written in a test.
func ruleFile(name, text string) rules.File { return rules.File{Name: name, Data: []byte(text)} }
