package sigma

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/kubetrail/kubetrail/internal/audit"
	"github.com/kubetrail/kubetrail/internal/rules"
	"github.com/kubetrail/kubetrail/internal/testenv"
)

func sharedDir(t testing.TB) string { return testenv.SharedDir(t) }

// sigmaHQFiles reads SigmaHQ's kubernetes/audit rules, sorted by file name.
func sigmaHQFiles(t testing.TB) []rules.File {
	t.Helper()
	dir := filepath.Join(sharedDir(t), "rulesets", "sigma")
	names, err := filepath.Glob(filepath.Join(dir, "*.yml"))
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(names)
	var files []rules.File
	for _, n := range names {
		data, err := os.ReadFile(n)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, rules.File{Name: filepath.Base(n), Data: data})
	}
	if len(files) != 16 {
		t.Fatalf("%s holds %d rules, want SigmaHQ's 16", dir, len(files))
	}
	return files
}

// baseEvent is a typical ResponseComplete event at Metadata level.
const baseEvent = `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"a-1","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/default/pods/web","verb":"get","user":{"username":"alice","groups":["system:authenticated","dev"]},"sourceIPs":["10.1.2.3"],"userAgent":"kubectl/v1.30.0 (linux/amd64)","objectRef":{"resource":"pods","namespace":"default","name":"web","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"2024-05-01T10:00:00.000000Z","stageTimestamp":"2024-05-01T10:00:00.100000Z","annotations":{"authorization.k8s.io/decision":"allow"}}`

// event builds an audit event from baseEvent with changes: pairs of a
// dotted path ("objectRef.subresource") and a value; nil deletes the key.
func event(t testing.TB, changes ...any) *rules.Event {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(baseEvent), &m); err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(changes); i += 2 {
		setPath(m, strings.Split(changes[i].(string), "."), changes[i+1])
	}
	raw, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return decoded(t, raw)
}

func decoded(t testing.TB, raw []byte) *rules.Event {
	t.Helper()
	ev := &audit.Event{}
	if err := audit.DecodeStored(raw, ev); err != nil {
		t.Fatalf("%s: %v", raw, err)
	}
	return &rules.Event{Ev: ev, Raw: raw, Cluster: "test"}
}

func setPath(m map[string]any, path []string, v any) {
	if len(path) == 1 {
		if v == nil {
			delete(m, path[0])
		} else {
			m[path[0]] = v
		}
		return
	}
	next, ok := m[path[0]].(map[string]any)
	if !ok {
		next = map[string]any{}
		m[path[0]] = next
	}
	setPath(next, path[1:], v)
}

// ruleYAML wraps a detection (written at column 0) into a whole rule.
func ruleYAML(detection string) string {
	var b strings.Builder
	b.WriteString("title: Test rule\nlevel: high\nlogsource:\n  product: kubernetes\n  service: audit\ndetection:\n")
	for _, l := range strings.Split(strings.TrimRight(detection, "\n"), "\n") {
		b.WriteString("  " + l + "\n")
	}
	return b.String()
}

// compile loads one rule and fails on any error.
func compile(t testing.TB, detection string) *Ruleset {
	t.Helper()
	rs, probs := Load(rules.File{Name: "test.yml", Data: []byte(ruleYAML(detection))})
	for _, p := range probs {
		if !p.Warning {
			t.Fatalf("%s\n%s", p, ruleYAML(detection))
		}
	}
	if len(rs.rules) != 1 {
		t.Fatalf("loaded %d rules, want 1", len(rs.rules))
	}
	return rs
}
