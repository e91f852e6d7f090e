package audit

import (
	"bufio"
	"os"
	"strings"
	"testing"

	"github.com/kubetrail/kubetrail/internal/testenv"
)

// benchLines are realistic log lines: Metadata-level controller traffic,
// a human's request, and a RequestResponse event with a body.
var benchLines = []string{
	lineV1,
	`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"0b6b4b3e-6c1e-4d5e-9f3a-2f1b7c9d8e01","stage":"ResponseComplete","requestURI":"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/node-07?timeout=10s","verb":"update","user":{"username":"system:node:node-07","groups":["system:nodes","system:authenticated"],"extra":{"authentication.kubernetes.io/credential-id":["X509SHA256=4f9c"]}},"sourceIPs":["10.0.1.7"],"userAgent":"kubelet/v1.37.2 (linux/amd64) kubernetes/abcdef0","objectRef":{"resource":"leases","namespace":"kube-node-lease","name":"node-07","uid":"3c2d","apiGroup":"coordination.k8s.io","apiVersion":"v1","resourceVersion":"918273"},"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"2026-11-01T00:00:00.123456Z","stageTimestamp":"2026-11-01T00:00:00.125678Z","annotations":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":""}}`,
	`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"RequestResponse","auditID":"7d1c","stage":"ResponseComplete","requestURI":"/api/v1/namespaces/web/configmaps?fieldManager=kubectl-create","verb":"create","user":{"username":"alice","groups":["dev","system:authenticated"]},"sourceIPs":["10.20.3.14"],"userAgent":"kubectl/v1.36.1 (darwin/arm64) kubernetes/9c04e1b","objectRef":{"resource":"configmaps","namespace":"web","name":"settings","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":201},"requestObject":{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"settings","namespace":"web","creationTimestamp":null},"data":{"mode":"production","replicas":"3","log":"` + strings.Repeat("x", 600) + `"}},"responseObject":{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"settings","namespace":"web","uid":"8f1e","resourceVersion":"1234","creationTimestamp":"2026-11-01T00:00:01Z","managedFields":[{"manager":"kubectl-create","operation":"Update","apiVersion":"v1","time":"2026-11-01T00:00:01Z","fieldsType":"FieldsV1","fieldsV1":{"f:data":{".":{},"f:log":{},"f:mode":{},"f:replicas":{}}}}]},"data":{"mode":"production","replicas":"3","log":"` + strings.Repeat("x", 600) + `"}},"requestReceivedTimestamp":"2026-11-01T00:00:01.000001Z","stageTimestamp":"2026-11-01T00:00:01.004001Z","annotations":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":"RBAC: allowed by RoleBinding \"dev\" of Role \"edit\" to Group \"dev\""}}`,
}

// BenchmarkDecodeLine is the decoder's hot path: one log line to a Record.
func BenchmarkDecodeLine(b *testing.B) {
	d := NewDecoder(Limits{})
	lines := make([][]byte, len(benchLines))
	n := 0
	for i, l := range benchLines {
		lines[i] = []byte(l)
		n += len(l)
	}
	b.SetBytes(int64(n))
	b.ReportAllocs()
	emit := func(Record) {}
	bad := func(p Problem) { b.Fatal(p.String()) }
	for b.Loop() {
		for i, l := range lines {
			d.DecodeLine("bench", i+1, l, emit, bad)
		}
	}
}

// BenchmarkDecodeEventList is the webhook's path: one EventList of 400
// items (the API server's default batch) split and decoded.
func BenchmarkDecodeEventList(b *testing.B) {
	items := make([]string, 400)
	for i := range items {
		items[i] = itemOf(benchLines[i%len(benchLines)])
	}
	body := []byte(`{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":[` + strings.Join(items, ",") + `]}`)
	d := NewDecoder(Limits{})
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	n := 0
	emit := func(Record) { n++ }
	bad := func(p Problem) { b.Fatal(p.String()) }
	cpu0 := testenv.CPUTime()
	for b.Loop() {
		d.DecodeBody("bench", body, emit, bad)
	}
	// CPU time, beside wall time: the machine's other work stretches the
	// wall time of a run, not the CPU time it costs.
	b.ReportMetric(float64(testenv.CPUTime()-cpu0)/float64(b.N), "cpu-ns/op")
	if n != 400*b.N {
		b.Fatalf("%d records", n)
	}
}

// BenchmarkDecodeCorpusEventList is BenchmarkDecodeEventList over real
// events: the first 8000 lines of the audit log named by
// KUBETRAIL_BENCH_CORPUS (make bench's corpus), as 20 EventLists of 400
// items without kind and apiVersion, as the API server sends them. The
// synthetic lines above have few, long strings; a real log has many short
// ones, and what speeds up one can slow down the other.
func BenchmarkDecodeCorpusEventList(b *testing.B) {
	path := os.Getenv("KUBETRAIL_BENCH_CORPUS")
	if path == "" {
		b.Skip("KUBETRAIL_BENCH_CORPUS is not set")
	}
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<24)
	var items []string
	for len(items) < 8000 && sc.Scan() {
		items = append(items, itemOf(sc.Text()))
	}
	var bodies [][]byte
	size := 0
	for i := 0; i < len(items); i += 400 {
		body := []byte(`{"kind":"EventList","apiVersion":"audit.k8s.io/v1","metadata":{},"items":[` + strings.Join(items[i:min(i+400, len(items))], ",") + `]}`)
		bodies = append(bodies, body)
		size += len(body)
	}
	d := NewDecoder(Limits{})
	b.SetBytes(int64(size))
	b.ReportAllocs()
	n := 0
	emit := func(Record) { n++ }
	bad := func(p Problem) { b.Fatal(p.String()) }
	cpu0 := testenv.CPUTime()
	for b.Loop() {
		for _, body := range bodies {
			d.DecodeBody("bench", body, emit, bad)
		}
	}
	b.ReportMetric(float64(testenv.CPUTime()-cpu0)/float64(b.N), "cpu-ns/op")
	if n != len(items)*b.N {
		b.Fatalf("%d records", n)
	}
}
