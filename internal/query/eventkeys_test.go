package query

import (
	"slices"
	"strings"
	"testing"

	"github.com/kubetrail/kubetrail/internal/audit"
)

// fullEvent has a value in every field of the filter language.
const fullEvent = `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":"a-1","stage":"ResponseComplete",` +
	`"requestURI":"/api/v1/namespaces/ns1/pods/p1?x=1","verb":"create",` +
	`"user":{"username":"u1","uid":"uid1","groups":["g1","g2"],"extra":{"k":["e1"]}},` +
	`"impersonatedUser":{"username":"system:admin","uid":"uid2","groups":["system:masters"],"extra":{"k":["e2"]}},` +
	`"authenticationMetadata":{"impersonationConstraint":"c1"},"sourceIPs":["10.0.0.1","10.0.0.2"],"userAgent":"ua1",` +
	`"objectRef":{"resource":"pods","namespace":"ns1","name":"p1","uid":"ouid","apiGroup":"g","apiVersion":"v1","resourceVersion":"7","subresource":"exec"},` +
	`"responseStatus":{"metadata":{},"status":"Failure","message":"m1","reason":"Forbidden","code":403},` +
	`"requestObject":{"a":1},"responseObject":{"b":2},` +
	`"requestReceivedTimestamp":"2026-11-23T10:00:00.123456Z","stageTimestamp":"2026-11-23T10:00:01.000000Z",` +
	`"annotations":{"authorization.k8s.io/decision":"forbid","k":"v"}}`

// TestEventKeysCoverEveryField checks, field by field, that the keys
// EventKeys names are enough: the field's values in an event decoded from
// those keys alone are its values in the whole event. Only the cluster,
// which no key holds, is refused.
func TestEventKeysCoverEveryField(t *testing.T) {
	var whole audit.Event
	if err := audit.DecodeStored([]byte(fullEvent), &whole); err != nil {
		t.Fatal(err)
	}
	for _, fi := range Fields() {
		name := fi.Name
		if fi.Keyed {
			name += "[k]"
		}
		src := name + "=x"
		switch fi.Name {
		case "time", "received":
			src = name + ">2020-01-01T00:00:00Z"
		case "code":
			src = "code=403"
		case "level":
			src = "level=Metadata"
		case "stage":
			src = "stage=Panic"
		case "ip", "peer":
			src = name + "=10.0.0.1"
		}
		f, err := Compile(src)
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		keys, ok := f.EventKeys()
		if fi.Name == "cluster" {
			if ok {
				t.Errorf("EventKeys(%s) = %v, true; the cluster is in no key", src, keys)
			}
			continue
		}
		if !ok || len(keys) == 0 {
			t.Errorf("EventKeys(%s) = %v, %v", src, keys, ok)
			continue
		}
		var part audit.Event
		if !audit.StoredFields([]byte(fullEvent), keys, false, &part) {
			t.Fatalf("StoredFields(%v) gave up on the full event", keys)
		}
		field := Field{Name: fi.Name}
		if fi.Keyed {
			field.Key = "k"
		}
		want, got := FieldValues(field, &whole, ""), FieldValues(field, &part, "")
		if len(want) == 0 {
			t.Fatalf("the full event has no %s", name)
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s from keys %v = %q, from the whole event %q", name, keys, got, want)
		}
	}
}

// TestEventKeysFreeText checks free text against each place it is looked
// for: matched from the keys alone as on the whole event.
func TestEventKeysFreeText(t *testing.T) {
	f, err := Compile(`"needle"`)
	if err != nil {
		t.Fatal(err)
	}
	keys, ok := f.EventKeys()
	if !ok {
		t.Fatal("free text: no keys")
	}
	for _, old := range []string{`"/api/v1/namespaces/ns1/pods/p1?x=1"`, `"ua1"`, `"u1"`, `"system:admin"`, `"ns1"`, `"p1"`,
		`"m1"`, `"forbid"`, `{"a":1}`, `{"b":2}`} {
		repl := `"needle"`
		if strings.HasPrefix(old, "{") {
			repl = `{"needle":1}`
		}
		line := strings.Replace(fullEvent, old, repl, 1)
		var whole, part audit.Event
		if err := audit.DecodeStored([]byte(line), &whole); err != nil {
			t.Fatal(err)
		}
		if !f.Match(&whole, "") {
			t.Fatalf("free text not found in the whole event with %s replaced", old)
		}
		if !audit.StoredFields([]byte(line), keys, false, &part) || !f.Match(&part, "") {
			t.Errorf("free text in place of %s: not found from keys %v", old, keys)
		}
	}
}

// TestEventKeysCompound checks that a filter's keys are those of all its
// fields, however nested, and that one cluster term refuses all.
func TestEventKeysCompound(t *testing.T) {
	f, err := Compile(`(as~"^system:" or as.group=system:masters) and not user~"^system:" and stage=ResponseComplete`)
	if err != nil {
		t.Fatal(err)
	}
	keys, ok := f.EventKeys()
	slices.Sort(keys)
	if !ok || !slices.Equal(keys, []string{"impersonatedUser", "stage", "user"}) {
		t.Errorf("EventKeys = %v, %v", keys, ok)
	}
	f, err = Compile(`verb=get or not (cluster=c1 and uri~x)`)
	if err != nil {
		t.Fatal(err)
	}
	if keys, ok := f.EventKeys(); ok {
		t.Errorf("EventKeys with a cluster term = %v, true", keys)
	}
}
