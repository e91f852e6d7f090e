package pipeline

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kubetrail/kubetrail/internal/audit"
)

var testKey = []byte("0123456789abcdef0123456789abcdef")

func newTestRedactor(t testing.TB, key []byte) *Redactor {
	t.Helper()
	r, err := NewRedactor(key)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// decodeLine decodes one line as ingest does.
func decodeLine(t testing.TB, line string) audit.Record {
	t.Helper()
	var recs []audit.Record
	audit.NewDecoder(audit.Limits{}).DecodeBody("test", []byte(line), func(r audit.Record) { recs = append(recs, r) },
		func(p audit.Problem) { t.Fatalf("decode: %s", p) })
	if len(recs) != 1 {
		t.Fatalf("decoded %d events, want 1", len(recs))
	}
	return recs[0]
}

// event builds an API-server-shaped event line around the given members.
func event(objectRef, uri, bodies, annotations string) string {
	s := `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":"5f0c1a9e-1111-4bb7-9c63-5bd2a3e2d7a1","stage":"ResponseComplete","requestURI":"` + uri +
		`","verb":"create","user":{"username":"admin","groups":["system:masters","system:authenticated"]},"sourceIPs":["127.0.0.1"],"userAgent":"kubectl/v1.37.0 (linux/amd64) kubernetes/abcdef0"`
	if objectRef != "" {
		s += `,"objectRef":` + objectRef
	}
	s += `,"responseStatus":{"metadata":{},"code":201}`
	if bodies != "" {
		s += "," + bodies
	}
	s += `,"requestReceivedTimestamp":"2026-11-23T10:00:00.000000Z","stageTimestamp":"2026-11-23T10:00:00.012345Z"`
	if annotations == "" {
		annotations = `{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":"RBAC: allowed by ClusterRoleBinding \"cluster-admin\" of ClusterRole \"cluster-admin\" to Group \"system:masters\""}`
	}
	return s + `,"annotations":` + annotations + `}`
}

const secretRef = `{"resource":"secrets","namespace":"default","name":"db","apiVersion":"v1"}`

var markerRE = regexp.MustCompile(`<redacted:hmac-sha256:[0-9a-f]{16}>`)

// checkOnlyValuesReplaced compares the redacted event with the original
// as JSON trees: every difference must be a value replaced by a marker
// (also inside a last-applied annotation and a query string), or the
// redacted mark added. It returns the number of values replaced.
func checkOnlyValuesReplaced(t *testing.T, orig, red []byte) int {
	t.Helper()
	var a, b any
	if err := json.Unmarshal(orig, &a); err != nil {
		t.Fatalf("original: %v", err)
	}
	if err := json.Unmarshal(red, &b); err != nil {
		t.Fatalf("redacted event is not JSON: %v\n%s", err, red)
	}
	n := 0
	var cmp func(path string, a, b any)
	cmp = func(path string, a, b any) {
		switch av := a.(type) {
		case map[string]any:
			bv, ok := b.(map[string]any)
			if !ok {
				t.Errorf("%s: object became %T", path, b)
				return
			}
			for k := range bv {
				if _, ok := av[k]; !ok && !(path == "/annotations" && k == RedactedAnnotation) {
					t.Errorf("%s: key %q added", path, k)
				}
			}
			for k, v := range av {
				w, ok := bv[k]
				if !ok {
					t.Errorf("%s: key %q removed", path, k)
					continue
				}
				cmp(path+"/"+k, v, w)
			}
		case []any:
			bv, ok := b.([]any)
			if !ok || len(bv) != len(av) {
				t.Errorf("%s: array changed shape", path)
				return
			}
			for i := range av {
				cmp(path+"/"+string(rune('0'+i)), av[i], bv[i])
			}
		case string:
			bs, ok := b.(string)
			switch {
			case !ok:
				t.Errorf("%s: string became %T", path, b)
			case av == bs:
			case markerRE.MatchString(bs) && markerRE.FindString(bs) == bs:
				n++
			case strings.HasPrefix(av, "{") && json.Valid([]byte(av)):
				// JSON in a string: a last-applied annotation, or a
				// JSON patch writing one.
				n += checkOnlyValuesReplaced(t, []byte(av), []byte(bs))
			case path == "/requestURI":
				qa, _ := url.ParseQuery(av[strings.IndexByte(av, '?')+1:])
				qb, _ := url.ParseQuery(bs[strings.IndexByte(bs, '?')+1:])
				if av[:strings.IndexByte(av, '?')] != bs[:strings.IndexByte(bs, '?')] || len(qa) != len(qb) {
					t.Errorf("requestURI: %q became %q", av, bs)
				}
				for k, v := range qa {
					if w := qb.Get(k); w != v[0] {
						if markerRE.FindString(w) != w {
							t.Errorf("requestURI: %s=%q became %q", k, v[0], w)
						}
						n++
					}
				}
			default:
				t.Errorf("%s: %q became %q, not a marker", path, av, bs)
			}
		default:
			if bs, ok := b.(string); ok && markerRE.FindString(bs) == bs {
				n++
			} else if !jsonEqual(a, b) {
				t.Errorf("%s: %v became %v", path, a, b)
			}
		}
	}
	cmp("", a, b)
	return n
}

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// TestRedactCases runs one event per case through Redact: the secret
// values (plain and base64) must be gone, the key names and markers there,
// the event marked, and nothing else changed.
// Mutations caught: dropping any one case of object() or patchOp (its
// values stay), marking nothing (markRedacted skipped), a marker that
// drops the key (replacing the member instead of the value).
func TestRedactCases(t *testing.T) {
	r := newTestRedactor(t, testKey)
	f := func(name, line string, replaced int, secrets []string, keep []string) {
		t.Helper()
		t.Run(name, func(t *testing.T) {
			rec := decodeLine(t, line)
			orig := bytes.Clone(rec.Raw)
			out, changed, err := r.Redact(rec)
			if err != nil {
				t.Fatal(err)
			}
			if !changed {
				t.Fatalf("not redacted:\n%s", out.Raw)
			}
			if !bytes.Equal(rec.Raw, orig) {
				t.Fatal("Redact modified its input")
			}
			for _, s := range secrets {
				for _, form := range []string{s, b64(s)} {
					if bytes.Contains(out.Raw, []byte(form)) {
						t.Errorf("secret %q still in the event:\n%s", form, out.Raw)
					}
				}
			}
			for _, k := range keep {
				if !bytes.Contains(out.Raw, []byte(k)) {
					t.Errorf("%q is gone from the event:\n%s", k, out.Raw)
				}
			}
			if got := checkOnlyValuesReplaced(t, orig, out.Raw); got != replaced {
				t.Errorf("%d values replaced, want %d:\n%s", got, replaced, out.Raw)
			}
			if out.Event.Annotations[RedactedAnnotation] != "true" {
				t.Errorf("event not marked: annotations %v", out.Event.Annotations)
			}
			if out.Event.AuditID != rec.Event.AuditID || out.Event.Kind != "Event" {
				t.Errorf("decoded event not kept: %+v", out.Event)
			}
		})
	}
	la := func(obj string) string { // a last-applied annotation holding obj
		q, _ := json.Marshal(obj + "\n")
		return `"annotations":{"kubectl.kubernetes.io/last-applied-configuration":` + string(q) + `}`
	}
	f("secret data base64, with last-applied", event(secretRef, "/api/v1/namespaces/default/secrets?fieldManager=kubectl-client-side-apply\\u0026fieldValidation=Strict",
		`"requestObject":{"kind":"Secret","apiVersion":"v1","metadata":{"name":"db","namespace":"default",`+
			la(`{"apiVersion":"v1","data":{"password":"`+b64("hunter2")+`","user":"`+b64("admin-user")+`"},"kind":"Secret","metadata":{"annotations":{},"name":"db","namespace":"default"},"type":"Opaque"}`)+
			`},"data":{"password":"`+b64("hunter2")+`","user":"`+b64("admin-user")+`"},"type":"Opaque"},`+
			`"responseObject":{"kind":"Secret","apiVersion":"v1","metadata":{"name":"db","uid":"u1"},"data":{"password":"`+b64("hunter2")+`","user":"`+b64("admin-user")+`"},"type":"Opaque"}`, ""),
		6, []string{"hunter2", "admin-user"}, []string{`"password":"<redacted:hmac-sha256:`, `"user":"<redacted:`, `\"password\":\"\u003credacted:hmac-sha256:`, `"type":"Opaque"`, `"name":"db"`})
	f("secret stringData plain", event(secretRef, "/api/v1/namespaces/default/secrets",
		`"requestObject":{"kind":"Secret","apiVersion":"v1","metadata":{"name":"db"},"stringData":{"password":"hunter2","empty":""}}`, ""),
		2, []string{"hunter2"}, []string{`"password":"<redacted:`, `"empty":"<redacted:`})
	f("SecretList items carry no kind", event(`{"resource":"secrets","namespace":"default","apiVersion":"v1"}`, "/api/v1/namespaces/default/secrets?limit=500",
		`"responseObject":{"kind":"SecretList","apiVersion":"v1","metadata":{"resourceVersion":"42"},"items":[{"metadata":{"name":"a"},"data":{"k":"`+b64("first-value")+`"}},{"metadata":{"name":"b"},"data":{"k":"`+b64("second-value")+`","l":null}}]}`, ""),
		2, []string{"first-value", "second-value"}, []string{`"l":null`, `"name":"b"`})
	f("List of Secrets, found by kind under another resource", event(`{"resource":"configmaps","namespace":"default","apiVersion":"v1"}`, "/api/v1/namespaces/default/configmaps",
		`"requestObject":{"kind":"List","apiVersion":"v1","items":[{"kind":"ConfigMap","data":{"k":"not-secret"}},{"kind":"Secret","apiVersion":"v1","data":{"k":"`+b64("in-a-list")+`"}}]}`, ""),
		1, []string{"in-a-list"}, []string{`"k":"not-secret"`})
	f("Table rows holding whole Secrets", event(`{"resource":"secrets","namespace":"default","apiVersion":"v1"}`, "/api/v1/namespaces/default/secrets?includeObject=Object",
		`"responseObject":{"kind":"Table","apiVersion":"meta.k8s.io/v1","rows":[{"cells":["a","Opaque",1],"object":{"kind":"Secret","apiVersion":"v1","data":{"k":"`+b64("row-value")+`"}}}]}`, ""),
		1, []string{"row-value"}, nil)
	f("merge patch of a secret", event(secretRef, "/api/v1/namespaces/default/secrets/db",
		`"requestObject":{"data":{"password":"`+b64("patched-pw")+`"},"metadata":{"labels":{"a":"b"}}}`, ""),
		1, []string{"patched-pw"}, []string{`"a":"b"`})
	f("JSON patch of a secret", event(secretRef, "/api/v1/namespaces/default/secrets/db",
		`"requestObject":[{"op":"replace","path":"/data/password","value":"`+b64("json-patched")+`"},{"op":"add","path":"/stringData","value":{"x":"plain-patched"}},{"op":"replace","path":"/metadata/labels/a","value":"keep-me"}]`, ""),
		2, []string{"json-patched", "plain-patched"}, []string{`"value":"keep-me"`, `"path":"/data/password"`})
	f("JSON patch of a last-applied annotation", event(secretRef, "/api/v1/namespaces/default/secrets/db",
		`"requestObject":[{"op":"add","path":"/metadata/annotations/kubectl.kubernetes.io~1last-applied-configuration","value":"{\"kind\":\"Secret\",\"stringData\":{\"p\":\"in-patch-la\"}}"}]`, ""),
		1, []string{"in-patch-la"}, nil)
	f("TokenRequest response", event(`{"resource":"serviceaccounts","namespace":"default","name":"build","apiVersion":"v1","subresource":"token"}`, "/api/v1/namespaces/default/serviceaccounts/build/token",
		`"requestObject":{"kind":"TokenRequest","apiVersion":"authentication.k8s.io/v1","metadata":{"creationTimestamp":null},"spec":{"audiences":null,"expirationSeconds":3600,"boundObjectRef":null},"status":{"token":"","expirationTimestamp":null}},`+
			`"responseObject":{"kind":"TokenRequest","apiVersion":"authentication.k8s.io/v1","metadata":{"name":"build","namespace":"default"},"spec":{"audiences":["https://kubernetes.default.svc"],"expirationSeconds":3600},"status":{"token":"eyJhbGciOiJSUzI1NiJ9.payload.signature","expirationTimestamp":"2026-11-23T11:00:00Z"}}`, ""),
		2, []string{"eyJhbGciOiJSUzI1NiJ9"}, []string{`"expirationTimestamp":"2026-11-23T11:00:00Z"`, `"token":"<redacted:`})
	f("kindless token subresource body", event(`{"resource":"serviceaccounts","namespace":"default","name":"build","apiVersion":"v1","subresource":"token"}`, "/api/v1/namespaces/default/serviceaccounts/build/token",
		`"responseObject":{"status":{"token":"eyJ-kindless-token"}}`, ""),
		1, []string{"eyJ-kindless-token"}, nil)
	f("TokenReview", event(`{"resource":"tokenreviews","apiGroup":"authentication.k8s.io","apiVersion":"v1"}`, "/apis/authentication.k8s.io/v1/tokenreviews",
		`"requestObject":{"kind":"TokenReview","apiVersion":"authentication.k8s.io/v1","spec":{"token":"reviewed-token-value"},"status":{"user":{}}},`+
			`"responseObject":{"kind":"TokenReview","apiVersion":"authentication.k8s.io/v1","spec":{"token":"reviewed-token-value"},"status":{"authenticated":true,"user":{"username":"alice"}}}`, ""),
		2, []string{"reviewed-token-value"}, []string{`"username":"alice"`})
	f("tokens in the query string", event(`{"resource":"pods","namespace":"default","name":"web","apiVersion":"v1","subresource":"exec"}`,
		"/api/v1/namespaces/default/pods/web/exec?command=sh\\u0026access_token=query-token-1\\u0026stdin=true\\u0026Token=query-token-2\\u0026id%5Ftoken=query-token-3", "", ""),
		3, []string{"query-token-1", "query-token-2", "query-token-3"}, []string{`command=sh\u0026access_token=\u003credacted:hmac-sha256:`, `stdin=true`})
	f("authorization-like annotations", event(`{"resource":"pods","namespace":"default","apiVersion":"v1"}`, "/api/v1/namespaces/default/pods",
		"", `{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":"","example.com/Authorization":"Digest header-secret","webhook.example.com/x_api_key":"key-secret","mutation.example.com/note":"Bearer bearer-secret"}`),
		3, []string{"header-secret", "key-secret", "bearer-secret"}, []string{`"authorization.k8s.io/decision":"allow"`, `"example.com/Authorization":"<redacted:`})
	f("escaped kind is still found", event(`{"resource":"configmaps","namespace":"default","apiVersion":"v1"}`, "/api/v1/namespaces/default/configmaps",
		`"requestObject":{"kind":"\u0053ecret","data":{"k":"`+b64("escaped-kind")+`"}}`, ""),
		1, []string{"escaped-kind"}, nil)
}

// TestRedactLeavesOtherEventsAlone: events with nothing to redact come
// back as the very same bytes (the store keeps the API server's line),
// including ones that look close.
// Mutation caught: redacting ConfigMap data, or redacting the
// authorization.k8s.io annotations, or re-encoding an unchanged event.
func TestRedactLeavesOtherEventsAlone(t *testing.T) {
	r := newTestRedactor(t, testKey)
	for _, line := range []string{
		event(`{"resource":"configmaps","namespace":"default","name":"c","apiVersion":"v1"}`, "/api/v1/namespaces/default/configmaps?fieldManager=kubectl\\u0026dryRun=All",
			`"requestObject":{"kind":"ConfigMap","apiVersion":"v1","data":{"password":"not-a-secret-kind"}}`, ""),
		event(`{"resource":"deployments","namespace":"default","name":"web","apiGroup":"apps","apiVersion":"v1"}`, "/apis/apps/v1/namespaces/default/deployments/web",
			`"requestObject":{"kind":"Deployment","metadata":{"annotations":{"kubectl.kubernetes.io/last-applied-configuration":"{\"kind\":\"Deployment\",\"spec\":{\"template\":{\"spec\":{\"volumes\":[{\"secret\":{\"secretName\":\"x\"}}]}}}}\n"}}}`, ""),
		event(`{"resource":"pods","namespace":"default","apiVersion":"v1"}`, "/api/v1/namespaces/default/pods?watch=true\\u0026resourceVersion=10\\u0026continue=abc", "",
			`{"authorization.k8s.io/decision":"allow","authentication.k8s.io/stale-token":"subject: system:serviceaccount:x:y","pod-security.kubernetes.io/enforce-policy":"privileged:latest"}`),
		event("", "/healthz?verbose", "", ""),
	} {
		rec := decodeLine(t, line)
		out, changed, err := r.Redact(rec)
		if err != nil || changed || &out.Raw[0] != &rec.Raw[0] {
			t.Errorf("changed=%v err=%v, or new bytes, for\n%s\ngot\n%s", changed, err, line, out.Raw)
		}
	}
}

// TestRedactCorrelates: equal values get equal markers wherever they are
// (base64 data, plain stringData, other events), different values and
// different keys give different markers, and a second pass changes nothing.
// Mutations caught: hashing the base64 text instead of the decoded value;
// a marker that ignores the key (plain SHA-256); re-hashing markers.
func TestRedactCorrelates(t *testing.T) {
	one := newTestRedactor(t, testKey)
	other := newTestRedactor(t, []byte("another-key-another-key-another-key"))
	markers := func(r *Redactor, body string) []string {
		t.Helper()
		rec := decodeLine(t, event(secretRef, "/api/v1/namespaces/default/secrets", body, ""))
		out, _, err := r.Redact(rec)
		if err != nil {
			t.Fatal(err)
		}
		again, changed, err := r.Redact(out)
		if err != nil || changed || !bytes.Equal(again.Raw, out.Raw) {
			t.Errorf("second pass changed the event (err %v):\n%s\n%s", err, out.Raw, again.Raw)
		}
		return markerRE.FindAllString(string(out.Raw), -1)
	}
	a := markers(one, `"requestObject":{"kind":"Secret","data":{"a":"`+b64("same")+`","b":"`+b64("other")+`"},"stringData":{"c":"same"}}`)
	b := markers(one, `"requestObject":{"kind":"Secret","stringData":{"z":"same"}}`)
	c := markers(other, `"requestObject":{"kind":"Secret","stringData":{"z":"same"}}`)
	if len(a) != 3 || len(b) != 1 || len(c) != 1 {
		t.Fatalf("markers: %v %v %v", a, b, c)
	}
	if a[0] != a[2] || a[0] != b[0] {
		t.Errorf("equal values, different markers: %v %v", a, b)
	}
	if a[0] == a[1] {
		t.Errorf("different values, equal markers: %v", a)
	}
	if b[0] == c[0] {
		t.Errorf("different keys, equal markers: %v %v", b, c)
	}
}

// TestRedactKeepsAMarkAlreadyThere: an event that arrives marked (an
// export imported again) is not marked twice.
func TestRedactKeepsAMarkAlreadyThere(t *testing.T) {
	r := newTestRedactor(t, testKey)
	rec := decodeLine(t, event(secretRef, "/api/v1/namespaces/default/secrets",
		`"requestObject":{"kind":"Secret","stringData":{"z":"new-secret"}}`, `{"kubetrail.io/redacted":"true"}`))
	out, changed, err := r.Redact(rec)
	if err != nil || !changed || bytes.Count(out.Raw, []byte(RedactedAnnotation)) != 1 {
		t.Errorf("changed=%v err=%v:\n%s", changed, err, out.Raw)
	}
	// And an event with no annotations at all gets them.
	line := strings.Replace(event(secretRef, "/x", `"requestObject":{"kind":"Secret","stringData":{"z":"s"}}`, "{}"), `,"annotations":{}`, "", 1)
	out, _, err = r.Redact(decodeLine(t, line))
	if err != nil || out.Event.Annotations[RedactedAnnotation] != "true" || !json.Valid(out.Raw) {
		t.Errorf("err %v:\n%s", err, out.Raw)
	}
}

// TestNeedsRedaction pins the pre-check to the cases it must catch; the
// fuzz test holds it to redactEvent in general.
// Mutations caught: dropping the letter-escape search, the TokenRe
// search or the resource hint.
func TestNeedsRedaction(t *testing.T) {
	f := func(want bool, line string) {
		t.Helper()
		rec := decodeLine(t, line)
		if got := needsRedaction(rec.Raw, &rec.Event); got != want {
			t.Errorf("needsRedaction = %v, want %v for\n%s", got, want, line)
		}
	}
	f(false, event(`{"resource":"pods","namespace":"default","apiVersion":"v1"}`, "/api/v1/namespaces/default/pods?limit=500", "", ""))
	f(true, event(secretRef, "/api/v1/namespaces/default/secrets/db", "", ""))
	f(true, event(`{"resource":"configmaps"}`, "/x", `"requestObject":{"kind":"\u0053ecret"}`, ""))
	f(true, event(`{"resource":"configmaps"}`, "/x", `"requestObject":{"kind":"Secret"}`, ""))
	f(true, event(`{"resource":"configmaps"}`, "/x?api_key=1", "", ""))
	f(true, event(`{"resource":"tokenreviews"}`, "/x", "", ""))
	f(true, event(`{"resource":"configmaps"}`, "/x", `"responseObject":{"kind":"List","items":[{"kind":"TokenRequest","status":{"token":"t"}}]}`, ""))
}

// fakeSink records what it is given.
type fakeSink struct {
	got    []*Batch
	reject []Rejection
	err    error
}

func (f *fakeSink) Append(_ context.Context, b *Batch) (Result, error) {
	f.got = append(f.got, b)
	return Result{Stored: len(b.Records) - len(f.reject), Rejected: f.reject}, f.err
}

// TestRedactSink: the decorator hands on redacted copies (never the
// original secret, never modifying the caller's batch), passes an
// untouched batch as it is, refuses an event it cannot walk rather than
// storing it, maps the delegate's rejections back to the caller's indexes,
// and counts what it redacted.
// Mutations caught: handing on b instead of the copy; not remapping
// Rejected indexes; storing an event whose walk failed.
func TestRedactSink(t *testing.T) {
	r := newTestRedactor(t, testKey)
	plain := decodeLine(t, event(`{"resource":"pods"}`, "/api/v1/pods", "", ""))
	secret := decodeLine(t, event(secretRef, "/x", `"requestObject":{"kind":"Secret","stringData":{"p":"sink-secret"}}`, ""))
	broken := secret
	broken.Raw = []byte(`{"kind":"Event","requestObject":{"kind":"Secret"`) // cut short

	fs := &fakeSink{}
	b := &Batch{Cluster: "c", Received: time.Now(), Records: []audit.Record{plain, plain}}
	if _, err := NewRedact(fs, r).Append(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	if fs.got[0] != b {
		t.Error("a batch with nothing to redact was copied")
	}

	fs = &fakeSink{reject: []Rejection{{Index: 2, Reason: "too big"}}}
	b = &Batch{Cluster: "c", Received: time.Now(), Records: []audit.Record{plain, broken, secret, plain}}
	res, err := NewRedact(fs, r).Append(context.Background(), b)
	if err != nil {
		t.Fatal(err)
	}
	got := fs.got[0].Records
	if len(got) != 3 || !bytes.Equal(got[0].Raw, plain.Raw) || !bytes.Equal(got[2].Raw, plain.Raw) {
		t.Fatalf("handed on %d records", len(got))
	}
	if bytes.Contains(got[1].Raw, []byte("sink-secret")) || !bytes.Contains(b.Records[2].Raw, []byte("sink-secret")) {
		t.Errorf("secret handed on, or the caller's record modified")
	}
	if len(res.Rejected) != 2 || res.Rejected[0].Index != 1 || !strings.Contains(res.Rejected[0].Reason, "cannot redact") ||
		res.Rejected[1].Index != 3 || res.Rejected[1].Reason != "too big" {
		t.Errorf("rejected %+v, want index 1 (cannot redact) and 3 (too big)", res.Rejected)
	}
	if r.Redacted() != 1 {
		t.Errorf("Redacted() = %d, want 1", r.Redacted())
	}
}

// TestRedactKeyFile: the key is generated once, 0600, and read back the
// same; a short key is refused.
// Mutation caught: creating the file with the default 0644, or
// regenerating the key on each start (markers would stop correlating).
func TestRedactKeyFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, RedactKeyFile)
	k1, created, err := LoadOrCreateRedactKey(path)
	if err != nil || !created || len(k1) != 64 {
		t.Fatalf("first: %q created=%v err=%v", k1, created, err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %v, err %v; want 0600", fi.Mode(), err)
	}
	k2, created, err := LoadOrCreateRedactKey(path)
	if err != nil || created || !bytes.Equal(k1, k2) {
		t.Fatalf("second: created=%v err=%v, same=%v", created, err, bytes.Equal(k1, k2))
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("left %d files behind", len(ents))
	}
	short := filepath.Join(dir, "short")
	os.WriteFile(short, []byte("too short\n"), 0o600)
	if _, err := LoadRedactKey(short); err == nil || !strings.Contains(err.Error(), "at least 32") {
		t.Errorf("short key: %v", err)
	}
}
