package audit

import (
	"bytes"
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
)

func addSeeds(f *testing.F) {
	item := itemOf(lineV1)
	for _, s := range []string{
		lineV1,
		lineV1 + "\n" + lineV1,
		`{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[` + item + `]}`,
		`[` + item + `]`,
		`{"records":[{"properties":{"log":` + string(mustJSON(lineV1)) + `}}]}`,
		`{"log_s":` + string(mustJSON(lineV1)) + `}`,
		`{"logEvents":[{"message":` + string(mustJSON(lineV1)) + `}]}`,
		`{"insertId":"a","timestamp":"2026-11-23T10:00:00Z","protoPayload":{"methodName":"io.k8s.core.v1.pods.exec.create","resourceName":"core/v1/namespaces/a/pods/b/exec"}}`,
		"2026-11-23T10:00:00Z " + lineV1,
		lineV1[:100],
		`{"items":[1,"x",{}]}`,
	} {
		f.Add([]byte(s))
	}
}

func mustJSON(s string) []byte { b, _ := json.Marshal(s); return b }

// checkRecord asserts what every emitted record must satisfy, whatever the
// input: its stored form is one line of valid JSON that decodes again to a
// record with the same stored form.
func checkRecord(t *testing.T, r Record) {
	t.Helper()
	if bytes.ContainsAny(r.Raw, "\n\r") {
		t.Fatalf("stored form spans lines: %q", r.Raw)
	}
	if !json.Valid(r.Raw) {
		t.Fatalf("stored form is not JSON: %q", r.Raw)
	}
	var again []Record
	NewDecoder(Limits{}).DecodeBody("again", r.Raw, func(r2 Record) { again = append(again, r2) }, func(p Problem) {
		t.Fatalf("stored form does not decode again: %s: %q", p, r.Raw)
	})
	if len(again) != 1 || !bytes.Equal(again[0].Raw, r.Raw) {
		t.Fatalf("stored form is not stable: %q", r.Raw)
	}
}

func FuzzDecodeBody(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		NewDecoder(Limits{}).DecodeBody("fuzz", data, func(r Record) { checkRecord(t, r) }, func(p Problem) {
			if p.Reason == "" {
				t.Fatal("problem without a reason")
			}
		})
	})
}

func FuzzDecodeLine(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		NewDecoder(Limits{}).DecodeLine("fuzz", 1, data, func(r Record) { checkRecord(t, r) }, func(Problem) {})
	})
}

// FuzzFastDecode is the differential test of the fast decoder: whenever it
// accepts an input, encoding/json must accept it too and decode the same
// event.
func FuzzFastDecode(f *testing.F) {
	addSeeds(f)
	f.Add([]byte(`{"user":{"username":"a\u00e9\ud83d\ude00\ud800x","groups":[]},"USER":{},"annotations":{"k\"":"v\\n"}}`))
	f.Add([]byte(`{"responseStatus":{"code":-0,"metadata":{ }},"sourceIPs":[ "1" ],"stageTimestamp":"2026-02-30T00:00:00.000000Z"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		if !utf8.Valid(data) {
			return // rejected before either decoder runs
		}
		var fast Event
		if _, ok := fastDecodeEvent(data, &fast); !ok {
			return
		}
		var slow Event
		if err := json.Unmarshal(data, &slow); err != nil {
			t.Fatalf("fast decoder accepted what encoding/json rejects (%v): %q", err, data)
		}
		if diff := cmp.Diff(slow, fast, cmp.Comparer(func(a, b MicroTime) bool { return a.Equal(b.Time) })); diff != "" {
			t.Fatalf("fast decoder disagrees with encoding/json on %q (-json +fast):\n%s", data, diff)
		}
	})
}

// FuzzStoredUser is the differential test of StoredUser: on an input
// DecodeStored decodes, an ok answer is the decoded event's User; and
// wherever the fast decoder decodes the whole event, StoredUser answers.
func FuzzStoredUser(f *testing.F) {
	addSeeds(f)
	f.Add([]byte(`{"user":{"username":"a","groups":["g1"]},"user":{"groups":["g2"],"uid":"u"},"verb":"get"}`))
	f.Add([]byte(`{"User":{"username":"a"},"user":{"username":"b"}}`))
	f.Add([]byte(`{"verb":"get","user":null}`))
	f.Add([]byte(`{"requestObject":{"user":{"username":"x"}},"user":{"username":"a\"\u00e9","groups":["system:masters"],"extra":{"k":["v"]}}}`))
	f.Add([]byte(`{"items":[],"user":{"username":"a"}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		if !utf8.Valid(data) {
			return // rejected before either decoder runs
		}
		u, ok := StoredUser(data)
		var fast Event
		if _, fok := fastDecodeEvent(data, &fast); fok && !ok {
			t.Fatalf("the fast decoder decodes %q, StoredUser does not", data)
		}
		var ev Event
		if err := DecodeStored(data, &ev); err != nil || !ok {
			return
		}
		if diff := cmp.Diff(ev.User, u); diff != "" {
			t.Fatalf("StoredUser disagrees with DecodeStored on %q (-whole +user):\n%s", data, diff)
		}
	})
}

// TestStoredUser pins what StoredUser answers and where it gives up.
func TestStoredUser(t *testing.T) {
	if eventFields[plainEventFields-1] != "annotations" || eventFields[plainEventFields] != "items" {
		t.Fatalf("plainEventFields %d does not end the Event's own fields in %v", plainEventFields, eventFields)
	}
	for _, c := range []struct {
		in     string
		ok     bool
		user   string
		groups []string
	}{
		{lineV1, true, "alice", []string{"dev", "system:authenticated"}},
		// A second user object merges into the first, as encoding/json does.
		{`{"user":{"username":"a","groups":["g1"]},"user":{"groups":["g2"]},"verb":"get"}`, true, "a", []string{"g2"}},
		{`{"requestObject":{"user":{"username":"x"}},"user":{"username":"b"}}`, true, "b", nil},
		{`{"User":{"username":"a"}}`, false, "", nil},
		{`{"user":null}`, false, "", nil},
		{`{"items":[],"user":{"username":"a"}}`, false, "", nil},
		{`{"user":{"username":"a"}} x`, false, "", nil},
		{`{"user":{"username":"a"},"verb":`, false, "", nil},
	} {
		u, ok := StoredUser([]byte(c.in))
		if ok != c.ok || ok && (u.Username != c.user || !slices.Equal(u.Groups, c.groups)) {
			t.Errorf("StoredUser(%.60q) = %q %q %v, want %q %q %v", c.in, u.Username, u.Groups, ok, c.user, c.groups, c.ok)
		}
	}
}

// FuzzStoredFields checks StoredFields against DecodeStored, for every key
// alone and for all of them: where the fast decoder decodes an event,
// StoredFields does too, and where both decode it, they agree on the
// fields of the keys asked for.
func FuzzStoredFields(f *testing.F) {
	addSeeds(f)
	f.Add([]byte(`{"impersonatedUser":{"username":"a"},"impersonatedUser":{"groups":["g"]},"verb":"get"}`))
	f.Add([]byte(`{"IMPERSONATEDUSER":{"username":"system:admin"},"verb":"get"}`))
	f.Add([]byte(`{"impersonatedUse\u0072":{"username":"system:admin"}}`))
	f.Add([]byte(`{"requestURI":"/a","requestURI":null,"annotations":{"k":"v"}}`))
	f.Add([]byte(`{"requestObject":{"impersonatedUser":{"username":"x"}},"sourceIPs":["1.2.3.4"]}`))
	sets := [][]string{eventFields[:plainEventFields]}
	for _, k := range eventFields[:plainEventFields] {
		sets = append(sets, []string{k})
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if !utf8.Valid(data) {
			return // rejected before either decoder runs
		}
		var fast, whole Event
		_, fok := fastDecodeEvent(data, &fast)
		err := DecodeStored(data, &whole)
		for _, keys := range sets {
			for _, alias := range []bool{false, true} {
				var part Event
				ok := StoredFields(data, keys, alias, &part)
				if fok && !ok {
					t.Fatalf("the fast decoder decodes %q, StoredFields(%v) does not", data, keys)
				}
				if err != nil || !ok {
					continue
				}
				if diff := cmp.Diff(projectKeys(&whole, keys), part); diff != "" {
					t.Fatalf("StoredFields(%v) disagrees with DecodeStored on %q (-whole +part):\n%s", keys, data, diff)
				}
			}
		}
	})
}

// projectKeys returns the fields of ev whose JSON keys are keys.
func projectKeys(ev *Event, keys []string) Event {
	var out Event
	src, dst := reflect.ValueOf(ev).Elem(), reflect.ValueOf(&out).Elem()
	for i := range src.NumField() {
		name, _, _ := strings.Cut(src.Type().Field(i).Tag.Get("json"), ",")
		if slices.Contains(keys, name) {
			dst.Field(i).Set(src.Field(i))
		}
	}
	return out
}

// TestStoredFields pins what StoredFields answers and where it gives up:
// a key decoded must be the event's own, spelled exactly.
func TestStoredFields(t *testing.T) {
	as := []string{"impersonatedUser"}
	for _, c := range []struct {
		in   string
		keys []string
		ok   bool
		want Event
	}{
		{lineV1, []string{"verb", "requestURI"}, true, Event{Verb: "delete", RequestURI: "/api/v1/namespaces/production/secrets/important"}},
		{`{"verb":"get","impersonatedUser":{"username":"a"},"impersonatedUser":{"groups":["g"]}}`, as, true,
			Event{ImpersonatedUser: &UserInfo{Username: "a", Groups: []string{"g"}}}},
		// Inside a body a key is a body's: skipped whole.
		{`{"requestObject":{"impersonatedUser":{"username":"x"}},"verb":"get"}`, as, true, Event{}},
		// encoding/json would decode these as impersonatedUser: give up.
		{`{"IMPERSONATEDUSER":{"username":"system:admin"}}`, as, false, Event{}},
		{`{"impersonatedUse\u0072":{"username":"system:admin"}}`, as, false, Event{}},
		{`{"impersonatedUser":null}`, as, false, Event{}},
		{`{"items":[]}`, as, false, Event{}},
		{`{"verb":"get"} x`, as, false, Event{}},
	} {
		var got Event
		ok := StoredFields([]byte(c.in), c.keys, false, &got)
		if ok != c.ok || ok && !reflect.DeepEqual(got, c.want) {
			t.Errorf("StoredFields(%.60q, %v) = %+v %v, want %+v %v", c.in, c.keys, got, ok, c.want, c.ok)
		}
	}
}

// FuzzPass: wherever skip passes over a value (it checks the JSON) that
// ends where a value may end in JSON (the input's end, white space, a
// comma or a closing bracket), pass ends at the same byte; elsewhere it
// stays within the input.
func FuzzPass(f *testing.F) {
	for _, s := range []string{
		`"a"`, `"a\\"`, `"a\\\"b"`, `"\\\\"`, `"\""`, `{"a":["}",{"b":"]\\"}"}]}`, `[1,2.5e3,-0,true,false,null]`,
		`123 `, `{}`, `[]`, `{"k:{\"name\":\"app\"}":{}}`, ` "x" , 1`, lineV1,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		a := fastDec{b: data, common: common()}
		_, ok := a.skip()
		b := fastDec{b: data, common: common()}
		pok := b.pass()
		if b.i > len(data) || b.i < 0 {
			t.Fatalf("pass(%q) ended at %d of %d", data, b.i, len(data))
		}
		ends := a.i == len(data) || bytes.IndexByte([]byte(" \t\n\r,}]"), data[a.i]) >= 0
		if ok && ends && (!pok || a.i != b.i) {
			t.Fatalf("pass(%q) = %v at %d, skip ended at %d", data, pok, b.i, a.i)
		}
	})
}
