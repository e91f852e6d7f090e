package native

import (
	"testing"

	"github.com/kubetrail/kubetrail/internal/audit"
	"github.com/kubetrail/kubetrail/internal/rules"
)

// FuzzLoad feeds arbitrary rule files to the loader: it must never panic,
// and a file it accepts must evaluate an event without panicking.
func FuzzLoad(f *testing.F) {
	f.Add([]byte("- name: x\n  condition: verb=get\n"))
	f.Add([]byte("- name: x\n  condition: code in (401,403)\n  threshold: {count: 3, window: 1m, by: [user, ip]}\n"))
	f.Add([]byte("- name: x\n  sequence: {within: 5m, by: user, steps: [code=403, {condition: resource=rolebindings, by: subject}, resource=secrets]}\n"))
	f.Add([]byte("- name: x\n  condition: subresource=exec\n  once: request\n  except: [user=a, user=b]\n  tags: [T1609]\n"))
	f.Add([]byte("- name: x\n  enabled: false\n"))
	f.Add([]byte("[1, 2, {name: 3}]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		e, _ := Load(nil, rules.File{Name: "f.yaml", Data: data})
		ev := &rules.Event{Raw: []byte(`{"requestObject":{"subjects":[{"kind":"User","name":"a"}]}}`)}
		ev.Ev = sampleEvent()
		e.Eval(ev)
		e.Eval(ev)
	})
}

func sampleEvent() *audit.Event {
	e := &audit.Event{Verb: "get", AuditID: "a", Stage: audit.StageResponseComplete}
	e.User.Username = "a"
	return e
}
