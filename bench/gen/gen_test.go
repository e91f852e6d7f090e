package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os/exec"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/kubetrail/kubetrail/internal/testenv"
)

// The mirror types restate k8s.io/apiserver/pkg/apis/audit/v1.Event (and
// the authentication/v1 and meta/v1 types it embeds) field for field, in
// the same order, with the same JSON tags. Decoding with
// DisallowUnknownFields proves the corpus has no field the real type lacks;
// re-encoding with encoding/json proves order, omitempty and escaping.

type mirrorEvent struct {
	Kind                     string                 `json:"kind,omitempty"`
	APIVersion               string                 `json:"apiVersion,omitempty"`
	Level                    string                 `json:"level"`
	AuditID                  string                 `json:"auditID"`
	Stage                    string                 `json:"stage"`
	RequestURI               string                 `json:"requestURI"`
	Verb                     string                 `json:"verb"`
	User                     mirrorUser             `json:"user"`
	ImpersonatedUser         *mirrorUser            `json:"impersonatedUser,omitempty"`
	AuthenticationMetadata   *mirrorAuthnMeta       `json:"authenticationMetadata,omitempty"`
	SourceIPs                []string               `json:"sourceIPs,omitempty"`
	UserAgent                string                 `json:"userAgent,omitempty"`
	ObjectRef                *mirrorObjectReference `json:"objectRef,omitempty"`
	ResponseStatus           *mirrorStatus          `json:"responseStatus,omitempty"`
	RequestObject            json.RawMessage        `json:"requestObject,omitempty"`
	ResponseObject           json.RawMessage        `json:"responseObject,omitempty"`
	RequestReceivedTimestamp string                 `json:"requestReceivedTimestamp"`
	StageTimestamp           string                 `json:"stageTimestamp"`
	Annotations              map[string]string      `json:"annotations,omitempty"`
}

type mirrorUser struct {
	Username string              `json:"username,omitempty"`
	UID      string              `json:"uid,omitempty"`
	Groups   []string            `json:"groups,omitempty"`
	Extra    map[string][]string `json:"extra,omitempty"`
}

type mirrorAuthnMeta struct {
	ImpersonationConstraint string `json:"impersonationConstraint,omitempty"`
}

type mirrorObjectReference struct {
	Resource        string `json:"resource,omitempty"`
	Namespace       string `json:"namespace,omitempty"`
	Name            string `json:"name,omitempty"`
	UID             string `json:"uid,omitempty"`
	APIGroup        string `json:"apiGroup,omitempty"`
	APIVersion      string `json:"apiVersion,omitempty"`
	ResourceVersion string `json:"resourceVersion,omitempty"`
	Subresource     string `json:"subresource,omitempty"`
}

type mirrorListMeta struct {
	SelfLink           string `json:"selfLink,omitempty"`
	ResourceVersion    string `json:"resourceVersion,omitempty"`
	Continue           string `json:"continue,omitempty"`
	RemainingItemCount *int64 `json:"remainingItemCount,omitempty"`
}

type mirrorStatus struct {
	Kind       string               `json:"kind,omitempty"`
	APIVersion string               `json:"apiVersion,omitempty"`
	Metadata   mirrorListMeta       `json:"metadata"`
	Status     string               `json:"status,omitempty"`
	Message    string               `json:"message,omitempty"`
	Reason     string               `json:"reason,omitempty"`
	Details    *mirrorStatusDetails `json:"details,omitempty"`
	Code       int32                `json:"code,omitempty"`
}

type mirrorStatusDetails struct {
	Name              string              `json:"name,omitempty"`
	Group             string              `json:"group,omitempty"`
	Kind              string              `json:"kind,omitempty"`
	UID               string              `json:"uid,omitempty"`
	Causes            []mirrorStatusCause `json:"causes,omitempty"`
	RetryAfterSeconds int32               `json:"retryAfterSeconds,omitempty"`
}

type mirrorStatusCause struct {
	Type    string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
	Field   string `json:"field,omitempty"`
}

// Documented key orders (Go struct order upstream).
var (
	eventKeys = []string{"kind", "apiVersion", "level", "auditID", "stage", "requestURI", "verb", "user",
		"impersonatedUser", "authenticationMetadata", "sourceIPs", "userAgent", "objectRef", "responseStatus",
		"requestObject", "responseObject", "requestReceivedTimestamp", "stageTimestamp", "annotations"}
	userKeys    = []string{"username", "uid", "groups", "extra"}
	refKeys     = []string{"resource", "namespace", "name", "uid", "apiGroup", "apiVersion", "resourceVersion", "subresource"}
	statusKeys  = []string{"kind", "apiVersion", "metadata", "status", "message", "reason", "details", "code"}
	detailsKeys = []string{"name", "group", "kind", "uid", "causes", "retryAfterSeconds"}
)

var testStart = time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)

// corpus generates a corpus for a test (20 000 lines take a fraction of a
// second, so there is no cache shared between tests).
func corpus(t *testing.T, events int, seed uint64) ([]byte, *stats) {
	t.Helper()
	var b bytes.Buffer
	st, err := generate(&b, config{events: events, seed: seed, start: testStart, days: 3})
	if err != nil {
		t.Fatal(err)
	}
	return b.Bytes(), st
}

func lines(b []byte) [][]byte {
	ls := bytes.SplitAfter(b, []byte("\n"))
	if len(ls) > 0 && len(ls[len(ls)-1]) == 0 {
		ls = ls[:len(ls)-1]
	}
	return ls
}

func TestDeterministic(t *testing.T) {
	a, _ := corpus(t, 5000, 7)
	var b bytes.Buffer
	if _, err := generate(&b, config{events: 5000, seed: 7, start: testStart, days: 3}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b.Bytes()) {
		t.Fatal("two runs with the same flags differ")
	}
	var c bytes.Buffer
	if _, err := generate(&c, config{events: 5000, seed: 8, start: testStart, days: 3}); err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(a, c.Bytes()) {
		t.Fatal("different seeds give the same corpus")
	}
	if n := len(lines(a)); n != 5000 {
		t.Fatalf("got %d lines, want 5000", n)
	}
}

var microTime = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$`)

// TestSchema decodes every line strictly into the mirror of the v1 Event,
// re-encodes it with encoding/json and requires the very same bytes, and
// checks the invariants the real API server keeps.
func TestSchema(t *testing.T) {
	out, _ := corpus(t, 20000, 1)
	prev := ""
	end := testStart.Add(72 * time.Hour)
	for i, line := range lines(out) {
		var e mirrorEvent
		dec := json.NewDecoder(bytes.NewReader(line))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&e); err != nil {
			t.Fatalf("line %d: %v\n%s", i+1, err, line)
		}
		var re bytes.Buffer
		if err := json.NewEncoder(&re).Encode(&e); err != nil {
			t.Fatalf("line %d: re-encode: %v", i+1, err)
		}
		if !bytes.Equal(re.Bytes(), line) {
			t.Fatalf("line %d: encoding/json re-encodes it differently:\n got %s\nwant %s", i+1, line, re.Bytes())
		}
		if e.Kind != "Event" || e.APIVersion != "audit.k8s.io/v1" {
			t.Fatalf("line %d: kind/apiVersion %q %q", i+1, e.Kind, e.APIVersion)
		}
		if !microTime.MatchString(e.RequestReceivedTimestamp) || !microTime.MatchString(e.StageTimestamp) {
			t.Fatalf("line %d: timestamps %q %q", i+1, e.RequestReceivedTimestamp, e.StageTimestamp)
		}
		if e.StageTimestamp < prev {
			t.Fatalf("line %d: stageTimestamp %s before the previous line's %s", i+1, e.StageTimestamp, prev)
		}
		prev = e.StageTimestamp
		if e.RequestReceivedTimestamp > e.StageTimestamp {
			t.Fatalf("line %d: received after stage", i+1)
		}
		if ts, _ := time.Parse(time.RFC3339Nano, e.StageTimestamp); ts.Before(testStart) || !ts.Before(end) {
			t.Fatalf("line %d: stageTimestamp %s outside the period", i+1, e.StageTimestamp)
		}
		if len(e.AuditID) != 36 || e.AuditID[14] != '4' {
			t.Fatalf("line %d: auditID %q is not a UUIDv4", i+1, e.AuditID)
		}
		switch e.Stage {
		case stageRequestReceived:
			if e.ResponseStatus != nil || e.Annotations != nil || e.RequestObject != nil || e.ImpersonatedUser != nil {
				t.Fatalf("line %d: RequestReceived with response data", i+1)
			}
			if e.StageTimestamp != e.RequestReceivedTimestamp {
				t.Fatalf("line %d: RequestReceived stage time differs from received time", i+1)
			}
		case stageResponseStarted, stageResponseComplete:
			if e.ResponseStatus == nil || e.ResponseStatus.Code == 0 {
				t.Fatalf("line %d: no response code", i+1)
			}
		default:
			t.Fatalf("line %d: stage %q", i+1, e.Stage)
		}
		switch e.Level {
		case levelMetadata:
			if e.RequestObject != nil || e.ResponseObject != nil {
				t.Fatalf("line %d: body at Metadata level", i+1)
			}
		case levelRequest:
			if e.ResponseObject != nil {
				t.Fatalf("line %d: response body at Request level", i+1)
			}
		case levelRequestResponse:
		default:
			t.Fatalf("line %d: level %q", i+1, e.Level)
		}
		if s := e.ResponseStatus; s != nil && s.Code >= 400 {
			if s.Status != "Failure" || s.Reason == "" || s.Message == "" {
				t.Fatalf("line %d: failure status incomplete: %+v", i+1, s)
			}
			if e.RequestObject != nil || e.ResponseObject != nil {
				t.Fatalf("line %d: bodies on a failed request", i+1)
			}
		}
		if e.ResponseStatus != nil && e.ResponseStatus.Code == 401 {
			if e.User.Username != "" || e.User.Groups != nil || e.Stage != stageResponseStarted || e.Annotations != nil {
				t.Fatalf("line %d: 401 must have an empty user, stage ResponseStarted, no annotations", i+1)
			}
		} else if e.User.Username == "" {
			t.Fatalf("line %d: no username on an authenticated request", i+1)
		}
		if e.ObjectRef == nil && strings.HasPrefix(e.RequestURI, "/api/") {
			t.Fatalf("line %d: resource request without objectRef", i+1)
		}
		if e.ObjectRef != nil && !strings.HasPrefix(e.RequestURI, "/api/") && !strings.HasPrefix(e.RequestURI, "/apis/") {
			t.Fatalf("line %d: non-resource request with objectRef", i+1)
		}
		if strings.ContainsAny(e.RequestURI, " \"") {
			t.Fatalf("line %d: unescaped request URI %q", i+1, e.RequestURI)
		}
	}
}

// keysOf returns the keys of a compact JSON object in the order they
// appear. (A scanner, because json.Decoder.Token is slow on 20 000 lines.)
func keysOf(t *testing.T, raw []byte) []string {
	t.Helper()
	if len(raw) < 2 || raw[0] != '{' {
		t.Fatalf("not an object: %s", raw)
	}
	var keys []string
	depth := 0
	for i := 0; i < len(raw); i++ {
		switch raw[i] {
		case '{', '[':
			depth++
		case '}', ']':
			depth--
		case '"':
			j := i + 1
			for ; raw[j] != '"'; j++ {
				if raw[j] == '\\' {
					j++
				}
			}
			if depth == 1 && j+1 < len(raw) && raw[j+1] == ':' {
				var k string
				if err := json.Unmarshal(raw[i:j+1], &k); err != nil {
					t.Fatal(err)
				}
				keys = append(keys, k)
			}
			i = j
		}
	}
	return keys
}

// inOrder reports whether keys is a subsequence of order.
func inOrder(keys, order []string) bool {
	j := 0
	for _, k := range keys {
		for j < len(order) && order[j] != k {
			j++
		}
		if j == len(order) {
			return false
		}
		j++
	}
	return true
}

// TestFieldOrder checks the key order of each object against the Go
// struct order, and that map keys (annotations, extra) are sorted.
func TestFieldOrder(t *testing.T) {
	out, _ := corpus(t, 20000, 1)
	check := func(i int, what string, raw json.RawMessage, order []string) {
		t.Helper()
		if raw == nil {
			return
		}
		if keys := keysOf(t, raw); !inOrder(keys, order) {
			t.Fatalf("line %d: %s keys %v not in order %v", i+1, what, keys, order)
		}
	}
	sorted := func(i int, what string, raw json.RawMessage) {
		t.Helper()
		if raw == nil {
			return
		}
		if keys := keysOf(t, raw); !sort.StringsAreSorted(keys) {
			t.Fatalf("line %d: %s keys %v not sorted", i+1, what, keys)
		}
	}
	for i, line := range lines(out) {
		var top map[string]json.RawMessage
		if err := json.Unmarshal(line, &top); err != nil {
			t.Fatal(err)
		}
		check(i, "event", line, eventKeys)
		for _, u := range []string{"user", "impersonatedUser"} {
			check(i, u, top[u], userKeys)
			var m map[string]json.RawMessage
			if top[u] != nil {
				json.Unmarshal(top[u], &m)
				sorted(i, u+".extra", m["extra"])
			}
		}
		check(i, "objectRef", top["objectRef"], refKeys)
		check(i, "responseStatus", top["responseStatus"], statusKeys)
		if top["responseStatus"] != nil {
			var m map[string]json.RawMessage
			json.Unmarshal(top["responseStatus"], &m)
			check(i, "responseStatus.details", m["details"], detailsKeys)
		}
		sorted(i, "annotations", top["annotations"])
		for _, body := range []string{"requestObject", "responseObject"} {
			if raw := top[body]; bytes.HasPrefix(raw, []byte(`{"kind"`)) {
				// API objects start with TypeMeta then ObjectMeta.
				keys := keysOf(t, raw)
				if keys[1] != "apiVersion" || (sliceIndex(keys, "metadata") > 0 && keys[2] != "metadata") {
					t.Fatalf("line %d: %s starts with keys %v", i+1, body, keys)
				}
			}
		}
	}
}

func sliceIndex(ss []string, s string) int {
	for i, x := range ss {
		if x == s {
			return i
		}
	}
	return -1
}

// classify derives the user class from the user alone, as a reader of the
// corpus would.
func classify(e *mirrorEvent) class {
	u := e.User.Username
	switch {
	case u == "":
		return classUnauthenticated
	case u == "system:anonymous":
		return classAnonymous
	case strings.HasPrefix(u, "system:node:"):
		return classKubelet
	case u == "system:kube-scheduler":
		return classScheduler
	case u == "system:kube-controller-manager", u == "system:apiserver",
		strings.HasPrefix(u, "system:serviceaccount:kube-system:") && (strings.HasSuffix(u, "-controller") ||
			strings.HasSuffix(u, "-collector") || strings.HasSuffix(u, "-publisher") || strings.HasSuffix(u, "-autoscaler")):
		return classController
	case strings.HasPrefix(u, "system:serviceaccount:"):
		return classServiceAccount
	}
	return classHuman
}

// wantShares are the documented line shares per user class (README.md),
// with the tolerance allowed at 20 000 lines.
var wantShares = map[class][2]float64{
	classKubelet:         {0.366, 0.030},
	classController:      {0.260, 0.030},
	classServiceAccount:  {0.125, 0.020},
	classHuman:           {0.124, 0.025},
	classScheduler:       {0.091, 0.015},
	classAnonymous:       {0.029, 0.012},
	classUnauthenticated: {0.007, 0.008},
}

func TestMix(t *testing.T) {
	out, st := corpus(t, 20000, 1)
	var counts [numClasses]int
	n := 0
	has := map[string]bool{}
	var metaBytes, metaLines int
	ids := map[string]string{}
	for _, line := range lines(out) {
		var e mirrorEvent
		if err := json.Unmarshal(line, &e); err != nil {
			t.Fatal(err)
		}
		n++
		c := classify(&e)
		counts[c]++
		if e.Level == levelMetadata {
			metaBytes += len(line)
			metaLines++
		}
		r := e.ObjectRef
		sub := ""
		if r != nil {
			sub = r.Subresource
		}
		mark := func(k string, ok bool) {
			if ok {
				has[k] = true
			}
		}
		for _, v := range []string{"get", "list", "watch", "update", "patch", "create", "delete"} {
			mark("verb "+v, e.Verb == v)
		}
		for _, p := range []string{"/healthz", "/readyz", "/livez", "/metrics", "/api", "/apis", "/openapi/v2"} {
			mark("path "+p, r == nil && strings.SplitN(e.RequestURI, "?", 2)[0] == p)
		}
		if r != nil {
			for _, res := range []string{"leases", "endpoints", "endpointslices", "pods", "nodes", "configmaps", "events",
				"deployments", "secrets", "roles", "rolebindings", "clusterroles", "clusterrolebindings"} {
				mark("resource "+res, r.Resource == res)
			}
			mark("pods/status", r.Resource == "pods" && sub == "status")
			mark("nodes/status", r.Resource == "nodes" && sub == "status")
		}
		mark("exec as create", sub == "exec" && e.Verb == "create" && strings.Contains(e.RequestURI, "command="))
		mark("exec as get", sub == "exec" && e.Verb == "get")
		mark("exec ResponseStarted", sub == "exec" && e.Stage == stageResponseStarted)
		mark("attach", sub == "attach")
		mark("portforward", sub == "portforward")
		mark("watch ResponseStarted", e.Verb == "watch" && e.Stage == stageResponseStarted)
		mark("watch ResponseComplete", e.Verb == "watch" && e.Stage == stageResponseComplete)
		mark("401", e.ResponseStatus != nil && e.ResponseStatus.Code == 401 && e.ResponseStatus.Reason == "Unauthorized")
		mark("403 from 192.168.1.100", e.ResponseStatus != nil && e.ResponseStatus.Code == 403 &&
			e.SourceIPs[len(e.SourceIPs)-1] == "192.168.1.100")
		mark("impersonation", e.ImpersonatedUser != nil)
		mark("two source IPs", len(e.SourceIPs) == 2)
		mark("Request body", e.Level == levelRequest && e.RequestObject != nil)
		mark("RequestResponse bodies", e.Level == levelRequestResponse && e.RequestObject != nil && e.ResponseObject != nil)
		mark("managedFields", bytes.Contains(e.ResponseObject, []byte(`"managedFields"`)))
		mark("Deployment body", bytes.Contains(e.ResponseObject, []byte(`{"kind":"Deployment"`)))
		mark("ConfigMap body", bytes.Contains(e.ResponseObject, []byte(`{"kind":"ConfigMap"`)))
		mark("Pod body", bytes.Contains(e.ResponseObject, []byte(`{"kind":"Pod"`)))
		mark("RequestReceived", e.Stage == stageRequestReceived)
		mark("important deleted by a human", r != nil && e.Verb == "delete" && r.Resource == "secrets" &&
			r.Namespace == "production" && r.Name == "important" && c == classHuman &&
			e.Stage == stageResponseComplete && e.ResponseStatus.Code == 200)
		mark("cluster-admin binding", r != nil && r.Resource == "clusterrolebindings" && e.Verb == "create" &&
			bytes.Contains(e.RequestObject, []byte(`"roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"cluster-admin"}`)))
		mark("kubectl user agent", strings.HasPrefix(e.UserAgent, "kubectl/v1."))
		for _, u := range []string{"admin", "alice", "bob", "attacker"} {
			mark("user "+u, e.User.Username == u)
		}
		key := e.RequestURI + " " + e.Verb + " " + e.RequestReceivedTimestamp
		if prev, ok := ids[e.AuditID]; ok && prev != key {
			has["auditID reused by another request"] = true
		}
		ids[e.AuditID] = key
	}
	for _, k := range []string{
		"verb get", "verb list", "verb watch", "verb update", "verb patch", "verb create", "verb delete",
		"path /healthz", "path /readyz", "path /livez", "path /metrics", "path /api", "path /apis", "path /openapi/v2",
		"resource leases", "resource endpoints", "resource endpointslices", "resource pods", "resource nodes",
		"resource configmaps", "resource events", "resource deployments", "resource secrets", "resource roles",
		"resource rolebindings", "resource clusterroles", "resource clusterrolebindings", "pods/status", "nodes/status",
		"exec as create", "exec as get", "exec ResponseStarted", "attach", "portforward",
		"watch ResponseStarted", "watch ResponseComplete", "401", "403 from 192.168.1.100", "impersonation",
		"two source IPs", "Request body", "RequestResponse bodies", "managedFields", "Deployment body",
		"ConfigMap body", "Pod body", "RequestReceived", "important deleted by a human", "cluster-admin binding",
		"kubectl user agent", "user admin", "user alice", "user bob", "user attacker", "auditID reused by another request",
	} {
		if !has[k] {
			t.Errorf("corpus of 20000 lines has no %s", k)
		}
	}
	for c := class(0); c < numClasses; c++ {
		if int64(counts[c]) != st.class[c] {
			t.Errorf("class %s: the generator counted %d, the user names say %d", c, st.class[c], counts[c])
		}
		got := float64(counts[c]) / float64(n)
		want := wantShares[c]
		if got < want[0]-want[1] || got > want[0]+want[1] {
			t.Errorf("class %s: share %.4f, want %.3f ± %.3f", c, got, want[0], want[1])
		}
	}
	bodies := 1 - float64(st.levels[levelMetadata])/float64(n)
	if bodies < 0.07 || bodies > 0.14 {
		t.Errorf("Request and RequestResponse lines are %.3f of the corpus, want about 0.10", bodies)
	}
	if avg := metaBytes / metaLines; avg < 900 || avg > 1200 {
		t.Errorf("average Metadata line is %d bytes, want about 1 KiB", avg)
	}
}

// TestSmallCorpora checks the edge sizes: nothing, one line, and a corpus
// just below and at the size that carries the incident.
func TestSmallCorpora(t *testing.T) {
	for _, n := range []int{0, 1, 2, minIncidentEvents - 1, minIncidentEvents} {
		var b bytes.Buffer
		st, err := generate(&b, config{events: n, seed: 3, start: testStart, days: 0.5})
		if err != nil {
			t.Fatal(err)
		}
		if got := len(lines(b.Bytes())); got != n || st.lines != int64(n) {
			t.Fatalf("events %d: wrote %d lines (stats %d)", n, got, st.lines)
		}
		incident := bytes.Contains(b.Bytes(), []byte(`"attacker-debug"`))
		if incident != (n >= minIncidentEvents) {
			t.Fatalf("events %d: incident present = %v", n, incident)
		}
	}
}

// TestJQ is the differential test against jq: jq -c . must give back every
// line, except that jq writes <, > and & as they are where encoding/json
// (and so the API server) writes \u003c, \u003e and \u0026.
func TestJQ(t *testing.T) {
	jq := testenv.JQ(t)
	out, _ := corpus(t, 5000, 1)
	cmd := exec.Command(jq, "-c", ".")
	cmd.Stdin = bytes.NewReader(out)
	got, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	unescape := strings.NewReplacer(`\u003c`, "<", `\u003e`, ">", `\u0026`, "&")
	want := bufio.NewScanner(bytes.NewReader(out))
	want.Buffer(nil, 1<<20)
	have := bufio.NewScanner(bytes.NewReader(got))
	have.Buffer(nil, 1<<20)
	for i := 1; want.Scan(); i++ {
		if !have.Scan() {
			t.Fatalf("jq output ends at line %d", i)
		}
		if w := unescape.Replace(want.Text()); w != have.Text() {
			t.Fatalf("line %d differs:\n  jq %s\ngen %s", i, have.Text(), w)
		}
	}
	if have.Scan() {
		t.Fatal("jq output has extra lines")
	}
}

func TestAppendString(t *testing.T) {
	for _, s := range []string{
		"", "plain", `quote " backslash \ slash /`, "<html>&amp;</html>", "\b\f\n\r\t\x00\x01\x1f\x7f",
		"é ü 日本 😀", "\u2028\u2029", "bad \xff\xfe utf8 \xc3", "a\u00a0b", "k:{\"uid\":\"x\"}",
	} {
		want, _ := json.Marshal(s)
		if got := appendString(nil, s); string(got) != string(want) {
			t.Errorf("appendString(%q) = %s, want %s", s, got, want)
		}
	}
}

func TestMicroTime(t *testing.T) {
	var c stampCache
	for _, us := range []int64{0, 1, 999_999, 1_000_000, 1_793_491_200_123_456, 1_793_491_201_000_001, -1} {
		want := `"` + time.UnixMicro(us).UTC().Format("2006-01-02T15:04:05.000000Z07:00") + `"`
		if got := c.appendMicroTime(nil, us); string(got) != want {
			t.Errorf("appendMicroTime(%d) = %s, want %s", us, got, want)
		}
	}
}

func TestRun(t *testing.T) {
	var out, errb bytes.Buffer
	if err := run([]string{"--events", "50", "--seed", "2", "--days", "1", "--stats"}, &out, &errb); err != nil {
		t.Fatal(err)
	}
	if n := len(lines(out.Bytes())); n != 50 {
		t.Fatalf("wrote %d lines, want 50", n)
	}
	for _, want := range []string{"events 50", "user class", "verb", "level", "stage"} {
		if !strings.Contains(errb.String(), want) {
			t.Errorf("stats miss %q:\n%s", want, errb.String())
		}
	}
	for _, bad := range [][]string{{"--events", "-1"}, {"--days", "0"}, {"--days", "NaN"}, {"--days", "4000"}, {"--start", "yesterday"}, {"extra"}} {
		if err := run(bad, &out, &errb); err == nil {
			t.Errorf("run %v: no error", bad)
		}
	}
}
