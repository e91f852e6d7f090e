package pipeline

import (
	"encoding/json"
	"testing"

	"github.com/kubetrail/kubetrail/internal/audit"
	"github.com/kubetrail/kubetrail/internal/policy"
)

// FuzzRelevel holds the ingest policy to its promises on any event: it
// never panics nor refuses an event the decoder accepts; what it writes is JSON and decodes to the applied level
// (the lower of the policy's and the recorded one), without the bodies
// that level leaves out when it lowered the event; a second pass changes nothing; and the managedFields
// pre-check never skips an event the walk would change.
// Mutations caught: a pre-check that misses an escaped key; a removed
// member leaving its comma (invalid JSON); a level written unquoted (the
// result no longer decodes: an error).
func FuzzRelevel(f *testing.F) {
	for _, s := range []string{
		event(cmRef, "/x", reqBody+","+respBody, ""),
		event(cmRef, "/x", `"responseObject":{"kind":"List","items":[{"metadata":{`+mf+`}},{"metadata":{"name":"a",`+mf+`}}]}`, ""),
		event(cmRef, "/x", `"responseObject":{"kind":"Table","apiVersion":"meta.k8s.io/v1","rows":[{"object":{"metadata":{`+mf+`,"a":1}}}]}`, ""),
		event(podRef, "/x", `"requestObject":{"metadata":{"m\u0061nagedFields":[]}}`, ""),
		at(event(podRef, "/x", `"requestObject":{"a":1}`, ""), audit.LevelRequest, audit.StageResponseStarted),
	} {
		f.Add([]byte(s))
	}
	p, err := policy.Load("fuzz.yaml", []byte(`apiVersion: audit.k8s.io/v1
kind: Policy
omitManagedFields: true
omitStages: ["RequestReceived"]
rules:
  - level: None
    users: ["noise"]
  - level: Request
    resources: [{group: "", resources: ["configmaps"]}]
    omitStages: ["ResponseStarted"]
  - level: Metadata
    verbs: ["list"]
  - level: RequestResponse
`))
	if err != nil {
		f.Fatal(err)
	}
	r := NewReleveler(p)
	ev := policy.NewEvaluator(p)
	f.Fuzz(func(t *testing.T, data []byte) {
		audit.NewDecoder(audit.Limits{}).DecodeBody("fuzz", data, func(rec audit.Record) {
			out, res, changed, err := r.Apply(rec)
			if err != nil {
				// What the decoder accepts, the walk must read: an
				// error would refuse an event the API server wrote.
				t.Fatalf("%v:\n%s", err, rec.Raw)
			}
			if res.Dropped() {
				return
			}
			if changed && !json.Valid(out.Raw) {
				t.Fatalf("invalid output:\n%s\n%s", rec.Raw, out.Raw)
			}
			d := ev.Evaluate(policy.RequestFromEvent(&rec.Event))
			want := rec.Event.Level
			if levelRank(d.Level) < levelRank(want) {
				want = d.Level
			}
			if out.Event.Level != want {
				t.Fatalf("level %q, want %q:\n%s", out.Event.Level, want, out.Raw)
			}
			// Only a lowered event loses bodies: one recorded with bodies
			// its level does not have (no API server writes that) is kept
			// as recorded.
			if res == PolicyStripped && (levelRank(want) < levelRank(audit.LevelRequest) && out.Event.RequestObject != nil ||
				levelRank(want) < levelRank(audit.LevelRequestResponse) && out.Event.ResponseObject != nil) {
				t.Fatalf("a body above %s kept:\n%s", want, out.Raw)
			}
			if _, _, changed2, err := r.Apply(out); err != nil || changed2 {
				t.Fatalf("second pass: err %v changed %v:\n%s", err, changed2, out.Raw)
			}
			if !mayHoldManagedFields(rec.Raw) {
				if full, changed, err := relevelEvent(rec.Raw, rec.Event.Level, false, true, rec.Event.Verb == "patch"); err == nil && changed {
					t.Fatalf("the pre-check passed an event the walk changes:\n%s\n%s", rec.Raw, full)
				}
			}
		}, func(audit.Problem) {})
	})
}
