package query

import (
	"slices"
	"testing"
	"time"

	"github.com/kubetrail/kubetrail/internal/audit"
)

// TestFieldValuesAgreeWithMatch checks FieldValues against the filter
// language itself: for every field and every value FieldValues gives,
// FIELD="VALUE" must match the event; and a field with no value must not
// match FIELD exists-style comparisons with any of the event's strings.
func TestFieldValuesAgreeWithMatch(t *testing.T) {
	ts := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	ev := &audit.Event{
		Level: audit.LevelRequest, AuditID: "a-1", Stage: audit.StageResponseComplete, RequestURI: "/api/v1/namespaces/prod/secrets/x",
		Verb: "get", User: audit.UserInfo{Username: "alice", Groups: []string{"dev", "system:authenticated"}},
		ImpersonatedUser: &audit.UserInfo{Username: "bob"}, SourceIPs: []string{"10.0.0.1", "192.168.1.100"}, UserAgent: "kubectl/v1.37",
		ObjectRef:                &audit.ObjectReference{Resource: "secrets", Namespace: "prod", Name: "x", APIVersion: "v1"},
		ResponseStatus:           &audit.Status{Code: 200},
		RequestReceivedTimestamp: audit.MicroTime{Time: ts}, StageTimestamp: audit.MicroTime{Time: ts.Add(time.Millisecond)},
		Annotations: map[string]string{"authorization.k8s.io/decision": "allow"},
	}
	checked := 0
	for _, fi := range Fields() {
		f := Field{Name: fi.Name}
		if fi.Keyed {
			f.Key = "authorization.k8s.io/decision"
		}
		vals := FieldValues(f, ev, "prod-cluster")
		for _, v := range vals {
			src := f.Name
			if fi.Keyed {
				src += "[" + f.Key + "]"
			}
			flt, err := Compile(src + "=" + quote(v))
			if err != nil {
				t.Fatalf("%s: %v", src, err)
			}
			if !flt.Match(ev, "prod-cluster") {
				t.Errorf("%s: FieldValues gave %q, but %s does not match", src, v, flt)
			}
			checked++
		}
	}
	if checked < 15 {
		t.Fatalf("only %d values checked", checked)
	}
	if got := FieldValues(Field{Name: "user"}, ev, ""); !slices.Equal(got, []string{"alice"}) {
		t.Errorf("user: %q", got)
	}
	if got := FieldValues(Field{Name: "ip"}, ev, ""); len(got) != 2 {
		t.Errorf("ip: %q", got)
	}
	if got := FieldValues(Field{Name: "code"}, ev, ""); !slices.Equal(got, []string{"200"}) {
		t.Errorf("code: %q", got)
	}
}

func quote(s string) string {
	b := []byte{'"'}
	for _, c := range []byte(s) {
		if c == '"' || c == '\\' {
			b = append(b, '\\')
		}
		b = append(b, c)
	}
	return string(append(b, '"'))
}
