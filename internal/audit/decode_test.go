package audit

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
)

const lineV1 = `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"9b1a2c3d-0000-4000-8000-000000000001","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/production/secrets/important","verb":"delete","user":{"username":"alice","groups":["dev","system:authenticated"]},"sourceIPs":["127.0.0.1"],"userAgent":"kubectl/v1.32.4 (linux/amd64) kubernetes/abc","objectRef":{"resource":"secrets","namespace":"production","name":"important","apiVersion":"v1"},"responseStatus":{"metadata":{},"status":"Success","code":200},"requestReceivedTimestamp":"2026-11-23T10:00:00.123456Z","stageTimestamp":"2026-11-23T10:00:00.125000Z","annotations":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":"RBAC: allowed"}}`

// itemOf returns the webhook form of a log line: the same event without kind
// and apiVersion.
func itemOf(line string) string {
	return "{" + strings.TrimPrefix(line, `{"kind":"Event","apiVersion":"audit.k8s.io/v1",`)
}

func decodeAll(t *testing.T, body string) ([]Record, []Problem) {
	t.Helper()
	var recs []Record
	var probs []Problem
	NewDecoder(Limits{}).DecodeBody("in", []byte(body), func(r Record) { recs = append(recs, r) }, func(p Problem) { probs = append(probs, p) })
	return recs, probs
}

func TestDecodeFormats(t *testing.T) {
	item := itemOf(lineV1)
	jsonString := func(s string) string { b, _ := json.Marshal(s); return string(b) }
	f := func(name, body string, wantN int, wantFormat Format) {
		t.Helper()
		recs, probs := decodeAll(t, body)
		if len(probs) > 0 {
			t.Fatalf("%s: unexpected problems: %v", name, probs)
		}
		if len(recs) != wantN {
			t.Fatalf("%s: got %d records, want %d", name, len(recs), wantN)
		}
		for _, r := range recs {
			if r.Format != wantFormat {
				t.Errorf("%s: format %q, want %q", name, r.Format, wantFormat)
			}
			if string(r.Raw) != lineV1 {
				t.Errorf("%s: raw\n got %s\nwant %s", name, r.Raw, lineV1)
			}
			if r.Event.User.Username != "alice" || r.Event.ObjectRef.Name != "important" || r.Event.ResponseStatus.Code != 200 {
				t.Errorf("%s: decoded wrong: %+v", name, r.Event)
			}
		}
	}
	f("log line", lineV1, 1, FormatEvent)
	f("jsonl", lineV1+"\n\n"+lineV1+"\n", 2, FormatEvent)
	f("eventlist", `{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":[`+item+`,`+item+`]}`, 2, FormatEvent)
	f("array", `[`+lineV1+`, `+item+`]`, 2, FormatEvent)
	f("aks eventhub", `{"records":[{"time":"2026-11-23T10:00:00Z","category":"kube-audit","properties":{"log":`+jsonString(lineV1)+`,"stream":"stdout"}}]}`, 1, FormatAKSEventHub)
	f("aks loganalytics", `{"Category":"kube-audit","log_s":`+jsonString(lineV1)+`}`, 1, FormatAKSLogAnalytics)
	f("eks message", `{"timestamp":1700000000000,"message":`+jsonString(lineV1)+`}`, 1, FormatEKSCloudWatch)
	f("eks subscription", `{"messageType":"DATA_MESSAGE","logEvents":[{"id":"1","timestamp":1,"message":`+jsonString(lineV1)+`}]}`, 1, FormatEKSCloudWatch)
	f("cloudwatch export line", "2026-11-23T10:00:00.125Z "+lineV1, 1, FormatEvent)

	var pretty bytes.Buffer
	json.Indent(&pretty, []byte(lineV1), "", "  ")
	f("pretty event", pretty.String(), 1, FormatEvent)
}

func TestDecodeV1beta1(t *testing.T) {
	in := `{"kind":"EventList","apiVersion":"audit.k8s.io/v1beta1","items":[{"metadata":{"creationTimestamp":"2019-01-01T00:00:00Z"},"level":"Request","timestamp":"2019-01-01T00:00:00Z","auditID":"a","stage":"ResponseComplete","requestURI":"/api","verb":"get","user":{"username":"u"},"requestReceivedTimestamp":"2019-01-01T00:00:00.000001Z","stageTimestamp":"2019-01-01T00:00:00.000002Z"}]}`
	recs, probs := decodeAll(t, in)
	if len(probs) != 0 || len(recs) != 1 {
		t.Fatalf("got %d records, problems %v", len(recs), probs)
	}
	want := `{"kind":"Event","apiVersion":"audit.k8s.io/v1beta1","metadata":{"creationTimestamp":"2019-01-01T00:00:00Z"},"level":"Request"`
	if !strings.HasPrefix(string(recs[0].Raw), want) {
		t.Errorf("raw = %s", recs[0].Raw)
	}
}

func TestDecodeGKE(t *testing.T) {
	in := `{"insertId":"abc","logName":"projects/p/logs/cloudaudit.googleapis.com%2Factivity","operation":{"id":"11111111-2222-3333-4444-555555555555","producer":"k8s.io","first":true,"last":true},"protoPayload":{"@type":"type.googleapis.com/google.cloud.audit.AuditLog","authenticationInfo":{"principalEmail":"alice@example.com"},"authorizationInfo":[{"granted":true,"permission":"io.k8s.core.v1.secrets.delete","resource":"core/v1/namespaces/production/secrets/important"}],"methodName":"io.k8s.core.v1.secrets.delete","requestMetadata":{"callerIp":"10.0.0.7","callerSuppliedUserAgent":"kubectl/v1.32.4"},"resourceName":"core/v1/namespaces/production/secrets/important","serviceName":"k8s.io","status":{"code":0}},"resource":{"type":"k8s_cluster","labels":{"cluster_name":"c"}},"timestamp":"2026-11-23T10:00:00.123456789Z","labels":{"authorization.k8s.io/decision":"allow"}}`
	recs, probs := decodeAll(t, in)
	if len(probs) != 0 || len(recs) != 1 {
		t.Fatalf("got %d records, problems %v", len(recs), probs)
	}
	ev := recs[0].Event
	if ev.Verb != "delete" || ev.ObjectRef.Resource != "secrets" || ev.ObjectRef.Namespace != "production" || ev.ObjectRef.Name != "important" ||
		ev.User.Username != "alice@example.com" || ev.LastSourceIP() != "10.0.0.7" || ev.ResponseStatus.Code != 200 ||
		ev.AuditID != "11111111-2222-3333-4444-555555555555" || ev.RequestURI != "/api/v1/namespaces/production/secrets/important" ||
		ev.Annotations["authorization.k8s.io/decision"] != "allow" {
		t.Errorf("mapped wrong: %+v %+v", ev, ev.ObjectRef)
	}
	// The stored form must itself decode to the same event.
	again, probs := decodeAll(t, string(recs[0].Raw))
	if len(probs) != 0 || string(again[0].Raw) != string(recs[0].Raw) {
		t.Errorf("stored form does not round-trip: %v %s", probs, again[0].Raw)
	}

}

// TestGKERequest covers every shape of GKE method name: the core group, the
// dotless built-in groups, dotted groups under k8s.io (rbac), CRDs outside
// k8s.io, subresources, a namespace itself, and resource names with and
// without the group in front. The method names are ones GKE writes (seen in
// exported Cloud Audit Logs and in GKE's documentation).
func TestGKERequest(t *testing.T) {
	cases := []struct {
		method, resource string
		verb             string
		ref              ObjectReference
		uri              string
	}{
		{"io.k8s.core.v1.pods.create", "core/v1/namespaces/default/pods/nginx", "create",
			ObjectReference{Resource: "pods", Namespace: "default", Name: "nginx", APIVersion: "v1"},
			"/api/v1/namespaces/default/pods/nginx"},
		{"io.k8s.core.v1.pods.exec.create", "core/v1/namespaces/opa/pods/opa-1/exec", "create",
			ObjectReference{Resource: "pods", Namespace: "opa", Name: "opa-1", APIVersion: "v1", Subresource: "exec"},
			"/api/v1/namespaces/opa/pods/opa-1/exec"},
		{"io.k8s.core.v1.namespaces.delete", "core/v1/namespaces/production", "delete",
			ObjectReference{Resource: "namespaces", Name: "production", APIVersion: "v1"},
			"/api/v1/namespaces/production"},
		{"io.k8s.core.v1.pods.list", "core/v1/namespaces/default/pods", "list",
			ObjectReference{Resource: "pods", Namespace: "default", APIVersion: "v1"},
			"/api/v1/namespaces/default/pods"},
		{"io.k8s.apps.v1.deployments.scale.update", "apps/v1/namespaces/web/deployments/front/scale", "update",
			ObjectReference{Resource: "deployments", Namespace: "web", Name: "front", APIGroup: "apps", APIVersion: "v1", Subresource: "scale"},
			"/apis/apps/v1/namespaces/web/deployments/front/scale"},
		{"io.k8s.authorization.rbac.v1.clusterrolebindings.create", "rbac.authorization.k8s.io/v1/clusterrolebindings/x", "create",
			ObjectReference{Resource: "clusterrolebindings", Name: "x", APIGroup: "rbac.authorization.k8s.io", APIVersion: "v1"},
			"/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/x"},
		{"io.k8s.authorization.rbac.v1.roles.patch", "rbac.authorization.k8s.io/v1/namespaces/production/roles/reader", "patch",
			ObjectReference{Resource: "roles", Namespace: "production", Name: "reader", APIGroup: "rbac.authorization.k8s.io", APIVersion: "v1"},
			"/apis/rbac.authorization.k8s.io/v1/namespaces/production/roles/reader"},
		{"io.k8s.apiextensions.v1.customresourcedefinitions.patch", "apiextensions.k8s.io/v1/customresourcedefinitions/storagestates.migration.k8s.io", "patch",
			ObjectReference{Resource: "customresourcedefinitions", Name: "storagestates.migration.k8s.io", APIGroup: "apiextensions.k8s.io", APIVersion: "v1"},
			"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/storagestates.migration.k8s.io"},
		{"io.k8s.app.v1alpha1.applications.create", "app.k8s.io/v1alpha1/namespaces/shop/applications/cart", "create",
			ObjectReference{Resource: "applications", Namespace: "shop", Name: "cart", APIGroup: "app.k8s.io", APIVersion: "v1alpha1"},
			"/apis/app.k8s.io/v1alpha1/namespaces/shop/applications/cart"},
		{"io.gke.networking.v1.gcpinferencepoolimports.list", "networking.gke.io/v1/namespaces/ml/gcpinferencepoolimports", "list",
			ObjectReference{Resource: "gcpinferencepoolimports", Namespace: "ml", APIGroup: "networking.gke.io", APIVersion: "v1"},
			"/apis/networking.gke.io/v1/namespaces/ml/gcpinferencepoolimports"},
		{"io.cert-manager.v1.certificates.status.update", "cert-manager.io/v1/namespaces/web/certificates/tls/status", "update",
			ObjectReference{Resource: "certificates", Namespace: "web", Name: "tls", APIGroup: "cert-manager.io", APIVersion: "v1", Subresource: "status"},
			"/apis/cert-manager.io/v1/namespaces/web/certificates/tls/status"},
	}
	for _, c := range cases {
		check := func(what, resource string) {
			t.Helper()
			verb, ref, uri := gkeRequest(c.method, resource)
			if verb != c.verb || ref == nil || *ref != c.ref || uri != c.uri {
				t.Errorf("%s, %s %q:\n got %s %+v %s\nwant %s %+v %s", c.method, what, resource, verb, ref, uri, c.verb, c.ref, c.uri)
			}
		}
		check("resource name", c.resource)
		// Without the group in the resource name, the group comes from the
		// method name alone and must be the same.
		check("group dropped from the resource name", strings.SplitN(c.resource, "/", 3)[2])
	}

	verb, ref, uri := gkeRequest("io.k8s.get", "/healthz")
	if verb != "get" || ref != nil || uri != "/healthz" {
		t.Errorf("non-resource request: %s %+v %s", verb, ref, uri)
	}
}

func TestDecodeBadInput(t *testing.T) {
	item := itemOf(lineV1)
	long := `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Request","auditID":"x","stage":"ResponseComplete","requestObject":{"data":"` + strings.Repeat("A", 20000) + `"},"stageTimestamp":"2026-11-23T10:00:00.000000Z"}`
	deep := `{"level":"Request","auditID":"x","stage":"ResponseComplete","stageTimestamp":"2026-11-23T10:00:00.000000Z","requestObject":` + strings.Repeat(`{"a":`, 200) + "1" + strings.Repeat("}", 200) + "}"
	f := func(name, body string, wantGood int, wantReason ...string) {
		t.Helper()
		recs, probs := decodeAll(t, body)
		if len(recs) != wantGood {
			t.Errorf("%s: %d good records, want %d (problems %v)", name, len(recs), wantGood, probs)
		}
		if len(probs) != len(wantReason) {
			t.Fatalf("%s: problems %v, want %d", name, probs, len(wantReason))
		}
		for i, w := range wantReason {
			if !strings.Contains(probs[i].String(), w) {
				t.Errorf("%s: problem %q does not contain %q", name, probs[i], w)
			}
		}
	}
	f("empty", "  \n", 0, "empty body")
	f("truncated line among good", lineV1+"\n"+lineV1[:100]+"\n"+lineV1, 2, "in:2: truncated JSON")
	f("cut at 16KiB", long[:16384]+"\n"+lineV1, 1, "in:1: truncated JSON: input ends after 16384 bytes (exactly 16 KiB")
	f("invalid utf8", strings.Replace(lineV1, "alice", "al\xffce", 1)+"\n"+lineV1, 1, "in:1: invalid UTF-8 at byte")
	f("deep", deep, 0, "nested deeper than 100")
	f("list with one bad item", `{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[`+item+`,{"level":"Metadata"},`+item+`]}`, 2, "item 1: not an audit event: missing auditID, stage, stageTimestamp")
	f("wrong type", strings.Replace(lineV1, `"verb":"delete"`, `"verb":5`, 1), 0, `field "verb": expected a string, found a JSON number`)
	f("not json", "hello world\n"+lineV1, 1, `in:1: not JSON`)
	f("array item not object", `[1,`+item+`]`, 1, "item 0: expected a JSON object")
	f("bad level", strings.Replace(lineV1, `"level":"Metadata"`, `"level":"Everything"`, 1), 0, `level "Everything"`)
	f("wrong kind", `{"kind":"Pod","apiVersion":"v1","level":"None","auditID":"a","stage":"Panic","stageTimestamp":"2026-11-23T10:00:00.000000Z"}`, 0, `kind "Pod"`)
}

func TestDecodeLimits(t *testing.T) {
	var probs []Problem
	n := 0
	d := NewDecoder(Limits{MaxEventBytes: 1000})
	d.DecodeBody("b", []byte(lineV1+"\n"+strings.Replace(lineV1, "alice", strings.Repeat("a", 2000), 1)), func(Record) { n++ }, func(p Problem) { probs = append(probs, p) })
	if n != 1 || len(probs) != 1 || !strings.Contains(probs[0].String(), "b:2: event is "+strconv.Itoa(len(lineV1)+1995)+" bytes, over the 1000-byte limit") {
		t.Errorf("n=%d problems=%v", n, probs)
	}
}

func TestMicroTime(t *testing.T) {
	var mt MicroTime
	if err := json.Unmarshal([]byte(`"2026-11-23T10:00:00.1234567Z"`), &mt); err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(mt)
	if string(b) != `"2026-11-23T10:00:00.123456Z"` {
		t.Errorf("got %s", b)
	}
}

// TestDecodeOwnedLine: a line given away (DecodeOwnedLine) decodes to the
// same records as DecodeLine, in every format, and a plain event keeps
// the line's own bytes as its stored form instead of a copy. Mutations
// caught: copying the owned bytes anyway (the aliasing check), and
// keeping in place an item that needs the kind/apiVersion header (the
// stored form of the webhook item and the list lacks it).
func TestDecodeOwnedLine(t *testing.T) {
	item := itemOf(lineV1)
	jsonString := func(s string) string { b, _ := json.Marshal(s); return string(b) }
	lines := []string{
		lineV1,
		item,
		`{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[` + item + `,` + lineV1 + `]}`,
		`[` + lineV1 + `, ` + item + `]`,
		`{"timestamp":1700000000000,"message":` + jsonString(lineV1) + `}`,
		"2026-11-23T10:00:00.125Z " + lineV1,
		strings.Replace(lineV1, `"audit.k8s.io/v1"`, `"audit.k8s.io/v1beta1"`, 1),
		`{"kind":"Event","apiVersion":"audit.k8s.io/v1","auditID":"x"}`,
		`{"kind":"Event",`,
		"not json",
		lineV1[:len(lineV1)-1] + `,"bad":"` + "\xff" + `"}`,
	}
	dec := NewDecoder(Limits{})
	decode := func(owned bool, line string) (recs []Record, probs []Problem) {
		b := []byte(line)
		fn := dec.DecodeLine
		if owned {
			fn = dec.DecodeOwnedLine
		}
		fn("in", 7, b, func(r Record) { recs = append(recs, r) }, func(p Problem) { probs = append(probs, p) })
		return recs, probs
	}
	for _, line := range lines {
		want, wantProbs := decode(false, line)
		got, gotProbs := decode(true, line)
		if len(got) != len(want) || len(gotProbs) != len(wantProbs) {
			t.Fatalf("%.60s: owned gives %d records %v, copied %d %v", line, len(got), gotProbs, len(want), wantProbs)
		}
		for i := range want {
			if string(got[i].Raw) != string(want[i].Raw) || got[i].Format != want[i].Format {
				t.Errorf("%.60s: record %d stored as\n%s\nwant\n%s", line, i, got[i].Raw, want[i].Raw)
			}
			gj, _ := json.Marshal(got[i].Event)
			wj, _ := json.Marshal(want[i].Event)
			if string(gj) != string(wj) {
				t.Errorf("%.60s: record %d decoded as\n%s\nwant\n%s", line, i, gj, wj)
			}
		}
		for i := range wantProbs {
			if gotProbs[i] != wantProbs[i] {
				t.Errorf("%.60s: problem %v, want %v", line, gotProbs[i], wantProbs[i])
			}
		}
	}
	b := []byte(lineV1)
	var rec Record
	dec.DecodeOwnedLine("in", 1, b, func(r Record) { rec = r }, func(p Problem) { t.Fatal(p) })
	if len(rec.Raw) != len(b) || &rec.Raw[0] != &b[0] {
		t.Error("an owned log line was copied: its record does not keep the line's bytes")
	}
}

// TestDecodeLongList: a list longer than the boundaries a first scan
// keeps (maxKeptItems) is decoded whole, in order, by a second scan; a
// shorter one from the boundaries kept. Mutation caught: decoding only
// the kept boundaries of a long list.
func TestDecodeLongList(t *testing.T) {
	for _, n := range []int{3, maxKeptItems, maxKeptItems + 3} {
		items := make([]string, n)
		for i := range items {
			items[i] = itemOf(strings.Replace(lineV1, "000000000001", fmt.Sprintf("%012d", i), 1))
		}
		for _, body := range []string{
			`{"kind":"EventList","apiVersion":"audit.k8s.io/v1","items":[` + strings.Join(items, ",") + `]}`,
			`[` + strings.Join(items, ",") + `]`,
		} {
			recs, probs := decodeAll(t, body)
			if len(probs) > 0 || len(recs) != n {
				t.Fatalf("%d items: %d records, problems %v", n, len(recs), probs)
			}
			for i, r := range recs {
				if want := fmt.Sprintf("9b1a2c3d-0000-4000-8000-%012d", i); r.Event.AuditID != want {
					t.Fatalf("%d items: record %d is %s, want %s", n, i, r.Event.AuditID, want)
				}
			}
		}
	}
}

// TestDecodeBodySizedCounts: DecodeBodySized tells the item count of a
// body that is one list (bad items included) once, before the first
// record, and says nothing for other bodies, nor for a list inside an
// item. Planted bugs: count after decoding the items (the first record
// comes before the count), or not at all for an EventList.
func TestDecodeBodySizedCounts(t *testing.T) {
	good, other := itemOf(lineV1), itemOf(strings.Replace(lineV1, "9b1a2c3d", "77777777", 1))
	f := func(name, body string, want []int) {
		t.Helper()
		var counts []int
		emitted := 0
		NewDecoder(Limits{}).DecodeBodySized("in", []byte(body), func(n int) {
			if emitted > 0 {
				t.Errorf("%s: count %d after %d records", name, n, emitted)
			}
			counts = append(counts, n)
		}, func(Record) { emitted++ }, func(Problem) {})
		if !equalInts(counts, want) {
			t.Errorf("%s: counts %v, want %v", name, counts, want)
		}
	}
	list := func(items ...string) string {
		return `{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":[` + strings.Join(items, ",") + `]}`
	}
	f("EventList", list(good, `{"level":"x"}`, other), []int{3})
	f("array", "["+lineV1+","+lineV1+"]", []int{2})
	f("empty EventList", list(), []int{0})
	f("a list in a list", "["+list(good, other)+"]", []int{1})
	f("one event", lineV1, nil)
	f("JSON lines", lineV1+"\n"+lineV1+"\n", nil)
}
