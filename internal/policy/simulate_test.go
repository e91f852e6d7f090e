package policy

import (
	"encoding/json"
	"testing"

	"github.com/kubetrail/kubetrail/internal/audit"
)

func TestSimulate(t *testing.T) {
	p, err := Load("p.yaml", []byte(`apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: None
  nonResourceURLs: ["/healthz*"]
- level: Request
  resources:
  - group: ""
    resources: ["secrets"]
- level: Metadata
`))
	if err != nil {
		t.Fatal(err)
	}
	s := NewSimulator(p)
	mk := func(level audit.Level, stage audit.Stage, resource string, body string, uri string) (*audit.Event, int) {
		ev := &audit.Event{Level: level, Stage: stage, Verb: "get", RequestURI: uri, User: audit.UserInfo{Username: "alice"}}
		ev.StageTimestamp.Time = ev.StageTimestamp.Time.AddDate(2026, 0, 0)
		if resource != "" {
			ev.ObjectRef = &audit.ObjectReference{Resource: resource, Namespace: "ns", Name: "x"}
		}
		if body != "" {
			ev.RequestObject = json.RawMessage(body)
			ev.ResponseObject = json.RawMessage(body)
		}
		raw, _ := json.Marshal(ev)
		return ev, len(raw)
	}
	body := `{"data":{"k":"dmFsdWU="}}`
	// A pod read recorded at RequestResponse, logged at Metadata: both
	// bodies come off.
	ev, size := mk(audit.LevelRequestResponse, audit.StageResponseComplete, "pods", body, "/api/v1/namespaces/ns/pods/x")
	s.Add(ev, size)
	if want := int64(size - 2*len(body)); s.Sim.KeptBytes != want || s.Sim.ByLevel[audit.LevelMetadata].Events != 1 {
		t.Fatalf("downgrade: kept %d bytes, want %d (%+v)", s.Sim.KeptBytes, want, s.Sim.ByLevel)
	}
	// A secret read recorded at Metadata, asked at Request: unknown bodies,
	// and the secret is exposed.
	ev, size = mk(audit.LevelMetadata, audit.StageResponseComplete, "secrets", "", "/api/v1/namespaces/ns/secrets/x")
	s.Add(ev, size)
	if s.Sim.Unknown != 1 || s.Sim.SecretsExposed != 1 || len(s.Sim.Examples) != 1 {
		t.Fatalf("upgrade: %+v", s.Sim)
	}
	// The same read again is counted on its sample line, not repeated.
	// (Mutation caught: appending every exposed event as a new example.)
	s.Add(mk(audit.LevelMetadata, audit.StageResponseComplete, "secrets", "", "/api/v1/namespaces/ns/secrets/x"))
	if s.Sim.SecretsExposed != 2 || len(s.Sim.Examples) != 1 || s.Sim.Examples[0].Count != 2 {
		t.Fatalf("a repeated secret read: %d exposed, examples %+v; want 2 exposed, one example seen twice", s.Sim.SecretsExposed, s.Sim.Examples)
	}
	// A health check is dropped by rule 0; a RequestReceived stage by omitStages.
	ev, size = mk(audit.LevelMetadata, audit.StageResponseComplete, "", "", "/healthz")
	s.Add(ev, size)
	ev, size = mk(audit.LevelMetadata, audit.StageRequestReceived, "pods", "", "/api/v1/namespaces/ns/pods/x")
	s.Add(ev, size)
	if s.Sim.ByRule[0].Events != 1 || s.Sim.StagesDropped[audit.StageRequestReceived] != 1 || s.Sim.Kept != 3 || s.Sim.Events != 5 {
		t.Fatalf("drops: %+v %+v", s.Sim, s.Sim.ByRule)
	}
}
