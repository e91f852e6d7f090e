package pipeline

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/kubetrail/kubetrail/internal/audit"
	"github.com/kubetrail/kubetrail/internal/policy"
)

func newTestReleveler(t *testing.T, yaml string) *Releveler {
	t.Helper()
	p, err := policy.Load("test-policy.yaml", []byte("apiVersion: audit.k8s.io/v1\nkind: Policy\n"+yaml))
	if err != nil {
		t.Fatal(err)
	}
	return NewReleveler(p)
}

const (
	cmRef  = `{"resource":"configmaps","namespace":"default","name":"cfg","apiVersion":"v1"}`
	podRef = `{"resource":"pods","namespace":"default","name":"web","apiVersion":"v1"}`
	// Bodies as the API server writes them; a "level" inside a body must
	// never be taken for the event's.
	reqBody  = `"requestObject":{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"cfg","namespace":"default"},"data":{"level":"Metadata"}}`
	respBody = `"responseObject":{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"cfg","namespace":"default","uid":"u1"},"data":{"level":"Metadata"}}`
)

// at returns line with its level and stage replaced.
func at(line string, level audit.Level, stage audit.Stage) string {
	line = strings.Replace(line, `"level":"RequestResponse"`, `"level":"`+string(level)+`"`, 1)
	return strings.Replace(line, `"stage":"ResponseComplete"`, `"stage":"`+string(stage)+`"`, 1)
}

// checkApply applies r to in and compares with want byte for byte; want ""
// means the event is dropped. It returns the result.
func checkApply(t *testing.T, r *Releveler, name, in, want string, wantRes PolicyResult) {
	t.Helper()
	rec := decodeLine(t, in)
	orig := bytes.Clone(rec.Raw)
	out, res, changed, err := r.Apply(rec)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if res != wantRes {
		t.Errorf("%s: result %s, want %s", name, res, wantRes)
	}
	if !bytes.Equal(rec.Raw, orig) {
		t.Errorf("%s: the caller's record was modified", name)
	}
	if want == "" {
		if !res.Dropped() {
			t.Errorf("%s: kept, want dropped", name)
		}
		return
	}
	if res.Dropped() {
		t.Fatalf("%s: dropped, want kept", name)
	}
	if got := string(out.Raw); got != want {
		t.Errorf("%s:\n got %s\nwant %s", name, got, want)
	}
	if changed != (want != in) {
		t.Errorf("%s: changed=%v", name, changed)
	}
	if want == in && &out.Raw[0] != &rec.Raw[0] {
		t.Errorf("%s: an unchanged event was copied", name)
	}
	if changed {
		var ev audit.Event
		if err := audit.DecodeStored(out.Raw, &ev); err != nil || out.Event.Level != ev.Level || out.Event.Level == "" {
			t.Errorf("%s: the decoded event does not match its bytes (%v)", name, err)
		}
	}
}

// TestRelevelLevels: a request the policy logs at None is dropped; bodies
// above the policy's level are removed and the level field set to it,
// every other byte as it was; an event recorded below the policy's level,
// or at it, stays as it is, bytes included.
// Mutations caught: not dropping level None (the configmap is kept);
// dropping requestObject at Request (the Request case); keeping
// responseObject at Request; not rewriting the level; re-marshalling the
// event (the timestamps and spacing change); raising a below-level event's
// level to the policy's.
func TestRelevelLevels(t *testing.T) {
	r := newTestReleveler(t, `rules:
  - level: None
    resources: [{group: "", resources: ["configmaps"], resourceNames: ["noise"]}]
  - level: Metadata
    users: ["meta"]
  - level: Request
    users: ["req"]
  - level: RequestResponse
`)
	full := event(cmRef, "/api/v1/namespaces/default/configmaps/cfg", reqBody+","+respBody, "")
	as := func(line, user string) string {
		return strings.Replace(line, `"username":"admin"`, `"username":"`+user+`"`, 1)
	}
	checkApply(t, r, "RequestResponse policy", full, full, PolicyKept)
	noise := strings.Replace(full, `"name":"cfg","apiVersion"`, `"name":"noise","apiVersion"`, 1)
	noise = strings.Replace(noise, "configmaps/cfg", "configmaps/noise", 1)
	checkApply(t, r, "level None", noise, "", PolicyDroppedLevelNone)
	checkApply(t, r, "RequestResponse to Request", as(full, "req"),
		at(as(event(cmRef, "/api/v1/namespaces/default/configmaps/cfg", reqBody, ""), "req"), audit.LevelRequest, audit.StageResponseComplete), PolicyStripped)
	checkApply(t, r, "RequestResponse to Metadata", as(full, "meta"),
		at(as(event(cmRef, "/api/v1/namespaces/default/configmaps/cfg", "", ""), "meta"), audit.LevelMetadata, audit.StageResponseComplete), PolicyStripped)
	reqOnly := at(as(event(cmRef, "/api/v1/namespaces/default/configmaps/cfg", reqBody, ""), "meta"), audit.LevelRequest, audit.StageResponseComplete)
	checkApply(t, r, "Request to Metadata", reqOnly,
		at(as(event(cmRef, "/api/v1/namespaces/default/configmaps/cfg", "", ""), "meta"), audit.LevelMetadata, audit.StageResponseComplete), PolicyStripped)
	reqAtReq := at(as(event(cmRef, "/api/v1/namespaces/default/configmaps/cfg", reqBody, ""), "req"), audit.LevelRequest, audit.StageResponseComplete)
	checkApply(t, r, "Request at Request", reqAtReq, reqAtReq, PolicyKept)
	meta := at(event(cmRef, "/api/v1/namespaces/default/configmaps/cfg", "", ""), audit.LevelMetadata, audit.StageResponseComplete)
	checkApply(t, r, "Metadata under RequestResponse", meta, meta, PolicyBelowLevel)
	// A level lowered on an event without bodies: only the level changes.
	get := at(as(event(podRef, "/api/v1/namespaces/default/pods/web", "", ""), "meta"), audit.LevelRequest, audit.StageResponseComplete)
	checkApply(t, r, "Request get to Metadata", get, strings.Replace(get, `"level":"Request"`, `"level":"Metadata"`, 1), PolicyStripped)
	// Bodies written first, and pretty-printed JSON (not the API server's,
	// but a reader must not break it).
	odd := `{"requestObject":{"a":1}, "responseObject" : {"b":2} ,"level":"RequestResponse","kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"x","stage":"ResponseComplete","verb":"get","user":{"username":"meta"},"requestURI":"/version","stageTimestamp":"2026-11-23T10:00:00.012345Z"}`
	checkApply(t, r, "bodies first", odd, `{"level":"Metadata","kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"x","stage":"ResponseComplete","verb":"get","user":{"username":"meta"},"requestURI":"/version","stageTimestamp":"2026-11-23T10:00:00.012345Z"}`, PolicyStripped)
	onlyBodies := `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":"x","stage":"ResponseComplete","verb":"get","user":{"username":"req"},"requestURI":"/version","stageTimestamp":"2026-11-23T10:00:00.012345Z","requestObject":{"a":1},"responseObject":{"b":2}}`
	checkApply(t, r, "bodies last", onlyBodies, strings.Replace(strings.Replace(onlyBodies, `,"responseObject":{"b":2}`, "", 1), "RequestResponse", "Request", 1), PolicyStripped)
}

// TestRelevelStages: stages in the policy's omitStages are dropped for
// every request, a rule's only for the requests it decides.
// Mutations caught: ignoring omitStages; applying a rule's omitStages to
// requests another rule decides (the pod's ResponseStarted is kept).
func TestRelevelStages(t *testing.T) {
	r := newTestReleveler(t, `omitStages: ["RequestReceived"]
rules:
  - level: RequestResponse
    resources: [{group: "", resources: ["configmaps"]}]
    omitStages: ["ResponseStarted"]
  - level: RequestResponse
`)
	cm := event(cmRef, "/api/v1/namespaces/default/configmaps/cfg", "", "")
	pod := event(podRef, "/api/v1/namespaces/default/pods/web", "", "")
	checkApply(t, r, "global RequestReceived", at(pod, audit.LevelRequestResponse, audit.StageRequestReceived), "", PolicyDroppedStage)
	checkApply(t, r, "global RequestReceived, rule's request", at(cm, audit.LevelRequestResponse, audit.StageRequestReceived), "", PolicyDroppedStage)
	checkApply(t, r, "rule's ResponseStarted", at(cm, audit.LevelRequestResponse, audit.StageResponseStarted), "", PolicyDroppedStage)
	podStarted := at(pod, audit.LevelRequestResponse, audit.StageResponseStarted)
	checkApply(t, r, "other rule's ResponseStarted", podStarted, podStarted, PolicyKept)
	checkApply(t, r, "rule's ResponseComplete", cm, cm, PolicyKept)
}

// mf is a managedFields list as the API server writes it.
const mf = `"managedFields":[{"manager":"kubectl","operation":"Update","apiVersion":"v1","time":"2026-11-23T10:00:00Z","fieldsType":"FieldsV1","fieldsV1":{"f:data":{}}}]`

// TestRelevelManagedFields: omitManagedFields removes metadata.managedFields
// from the bodies kept, wherever it is in metadata, from list items and
// Table rows' objects, as the API server does; not from a patch's request
// body (logged as sent), nor elsewhere in a body; a list with an item that
// is not an object is left whole, as the API server leaves it. A rule's
// setting overrides the policy's, false included.
// Mutations caught: leaving list items or rows alone; removing
// managedFields from a patch; removing a managedFields key outside
// metadata; ignoring a rule's omitManagedFields: false; leaving a comma
// behind (the output would not be the expected bytes, nor JSON).
func TestRelevelManagedFields(t *testing.T) {
	r := newTestReleveler(t, `omitManagedFields: true
rules:
  - level: RequestResponse
    users: ["keeper"]
    omitManagedFields: false
  - level: RequestResponse
`)
	f := func(name, verb, bodies, wantBodies string) {
		t.Helper()
		in := strings.Replace(event(cmRef, "/api/v1/namespaces/default/configmaps/cfg", bodies, ""), `"verb":"create"`, `"verb":"`+verb+`"`, 1)
		want := strings.Replace(event(cmRef, "/api/v1/namespaces/default/configmaps/cfg", wantBodies, ""), `"verb":"create"`, `"verb":"`+verb+`"`, 1)
		res := PolicyKept
		checkApply(t, r, name, in, want, res)
	}
	f("last in metadata", "create",
		`"requestObject":{"kind":"ConfigMap","metadata":{"name":"cfg",`+mf+`},"data":{"a":"b"}}`,
		`"requestObject":{"kind":"ConfigMap","metadata":{"name":"cfg"},"data":{"a":"b"}}`)
	f("first in metadata, both bodies", "update",
		`"requestObject":{"kind":"ConfigMap","metadata":{`+mf+`,"name":"cfg"}},"responseObject":{"kind":"ConfigMap","metadata":{"name":"cfg","uid":"u",`+mf+`,"resourceVersion":"7"}}`,
		`"requestObject":{"kind":"ConfigMap","metadata":{"name":"cfg"}},"responseObject":{"kind":"ConfigMap","metadata":{"name":"cfg","uid":"u","resourceVersion":"7"}}`)
	f("alone in metadata", "create",
		`"responseObject":{"metadata":{`+mf+`}}`,
		`"responseObject":{"metadata":{}}`)
	f("list items", "list",
		`"responseObject":{"kind":"ConfigMapList","apiVersion":"v1","metadata":{"resourceVersion":"9"},"items":[{"metadata":{"name":"a",`+mf+`}},{"metadata":{"name":"b"}},{"metadata":{`+mf+`,"name":"c"},"data":{`+mf+`}}]}`,
		`"responseObject":{"kind":"ConfigMapList","apiVersion":"v1","metadata":{"resourceVersion":"9"},"items":[{"metadata":{"name":"a"}},{"metadata":{"name":"b"}},{"metadata":{"name":"c"},"data":{`+mf+`}}]}`)
	f("table rows", "list",
		`"responseObject":{"kind":"Table","apiVersion":"meta.k8s.io/v1","metadata":{"resourceVersion":"9"},"columnDefinitions":[],"rows":[{"cells":["a"],"object":{"kind":"PartialObjectMetadata","metadata":{"name":"a",`+mf+`}}},{"cells":["b"]}]}`,
		`"responseObject":{"kind":"Table","apiVersion":"meta.k8s.io/v1","metadata":{"resourceVersion":"9"},"columnDefinitions":[],"rows":[{"cells":["a"],"object":{"kind":"PartialObjectMetadata","metadata":{"name":"a"}}},{"cells":["b"]}]}`)
	notObjects := `"responseObject":{"metadata":{"name":"x",` + mf + `},"items":[{"metadata":{` + mf + `}},"a string"]}`
	f("list with an item not an object", "list", notObjects, notObjects)
	patch := `"requestObject":{"metadata":{` + mf + `}},"responseObject":{"metadata":{"name":"cfg",` + mf + `}}`
	f("patch", "patch", patch, `"requestObject":{"metadata":{`+mf+`}},"responseObject":{"metadata":{"name":"cfg"}}`)
	outside := `"responseObject":{"spec":{` + mf + `},"metadata":{"name":"cfg"}}`
	f("outside metadata", "get", outside, outside)

	keeper := strings.Replace(event(cmRef, "/x", `"responseObject":{"metadata":{"name":"cfg",`+mf+`}}`, ""), `"username":"admin"`, `"username":"keeper"`, 1)
	checkApply(t, r, "rule's omitManagedFields: false", keeper, keeper, PolicyKept)

	// A rule's true under a policy without omitManagedFields.
	r = newTestReleveler(t, `rules:
  - level: RequestResponse
    users: ["admin"]
    omitManagedFields: true
  - level: RequestResponse
`)
	in := event(cmRef, "/x", `"responseObject":{"metadata":{"name":"cfg",`+mf+`}}`, "")
	checkApply(t, r, "rule's omitManagedFields: true", in, event(cmRef, "/x", `"responseObject":{"metadata":{"name":"cfg"}}`, ""), PolicyKept)
	other := strings.Replace(in, `"username":"admin"`, `"username":"bob"`, 1)
	checkApply(t, r, "other rule", other, other, PolicyKept)
	// Stripped and omitManagedFields together: the body kept loses it.
	r = newTestReleveler(t, "omitManagedFields: true\nrules:\n  - level: Request\n")
	in = event(cmRef, "/x", `"requestObject":{"metadata":{"name":"cfg",`+mf+`}},"responseObject":{"metadata":{"name":"cfg",`+mf+`}}`, "")
	checkApply(t, r, "stripped and omitted", in, at(event(cmRef, "/x", `"requestObject":{"metadata":{"name":"cfg"}}`, ""), audit.LevelRequest, audit.StageResponseComplete), PolicyStripped)
}

// TestRelevelSink: the decorator leaves out dropped events, hands on the
// re-levelled copies, passes an untouched batch as it is (the same
// batch), refuses an event it cannot walk rather than storing it as it
// was, maps the delegate's rejections back to the caller's indexes, does
// not call the delegate for a batch it drops whole, and counts only
// batches the delegate accepted.
// Mutations caught: counting before the delegate succeeded; handing on a
// dropped event; not remapping Rejected indexes.
func TestRelevelSink(t *testing.T) {
	r := newTestReleveler(t, `omitStages: ["RequestReceived"]
rules:
  - level: None
    users: ["noise"]
  - level: Metadata
`)
	meta := decodeLine(t, at(event(podRef, "/api/v1/namespaces/default/pods/web", "", ""), audit.LevelMetadata, audit.StageResponseComplete))
	full := decodeLine(t, event(cmRef, "/x", reqBody, ""))
	noise := decodeLine(t, strings.Replace(event(podRef, "/x", "", ""), `"username":"admin"`, `"username":"noise"`, 1))
	received := decodeLine(t, at(event(podRef, "/x", "", ""), audit.LevelMetadata, audit.StageRequestReceived))
	broken := full
	broken.Raw = []byte(`{"kind":"Event","requestObject":{"a":1`) // cut short

	fs := &fakeSink{}
	b := &Batch{Cluster: "c", Received: time.Now(), Records: []audit.Record{meta, meta}}
	if _, err := NewRelevel(fs, r).Append(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	if fs.got[0] != b {
		t.Error("a batch the policy leaves alone was copied")
	}

	fs = &fakeSink{reject: []Rejection{{Index: 1, Reason: "too big"}}}
	b = &Batch{Cluster: "c", Received: time.Now(), Records: []audit.Record{noise, meta, broken, full, received, meta}}
	res, err := NewRelevel(fs, r).Append(context.Background(), b)
	if err != nil {
		t.Fatal(err)
	}
	got := fs.got[0].Records
	if len(got) != 3 || !bytes.Equal(got[0].Raw, meta.Raw) || !bytes.Equal(got[2].Raw, meta.Raw) {
		t.Fatalf("handed on %d records, want meta, full stripped, meta", len(got))
	}
	if bytes.Contains(got[1].Raw, []byte("requestObject")) || got[1].Event.Level != audit.LevelMetadata || !bytes.Contains(b.Records[3].Raw, []byte("requestObject")) {
		t.Errorf("body handed on, or the caller's record modified:\n%s", got[1].Raw)
	}
	if len(res.Rejected) != 2 || res.Rejected[0].Index != 2 || !strings.Contains(res.Rejected[0].Reason, "cannot apply the ingest policy") ||
		res.Rejected[1].Index != 3 || res.Rejected[1].Reason != "too big" {
		t.Errorf("rejected %+v, want index 2 (cannot apply) and 3 (too big)", res.Rejected)
	}
	want := PolicyCounts{PolicyKept: 4, PolicyDroppedLevelNone: 1, PolicyDroppedStage: 1, PolicyStripped: 1}
	if c := r.Counts(); c != want {
		t.Errorf("counts %v, want %v", c, want)
	}

	// A batch dropped whole never reaches the delegate; a failing
	// delegate's batch is not counted.
	fs = &fakeSink{}
	if res, err := NewRelevel(fs, r).Append(context.Background(), &Batch{Records: []audit.Record{noise, received}}); err != nil || len(fs.got) != 0 || res.Stored != 0 {
		t.Errorf("dropped batch: %+v %v, delegate called %d times", res, err, len(fs.got))
	}
	want[PolicyDroppedLevelNone]++
	want[PolicyDroppedStage]++
	fs = &fakeSink{err: errors.New("disk full")}
	if _, err := NewRelevel(fs, r).Append(context.Background(), &Batch{Records: []audit.Record{full, meta}}); err == nil {
		t.Error("the delegate's error was lost")
	}
	if c := r.Counts(); c != want {
		t.Errorf("counts after a failed batch %v, want %v", c, want)
	}
}
