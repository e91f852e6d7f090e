package falco

import (
	"path/filepath"
	"testing"

	"github.com/kubetrail/kubetrail/internal/rules"
)

// BenchmarkFalcoRules evaluates Falco's 48 k8saudit rules on typical
// events: a controller's lease update (the bulk of a cluster's log, which
// matches nothing), a human's configmap create with a body, and a pod
// create; events/s is reported.
func BenchmarkFalcoRules(b *testing.B) {
	ev := loadOK(b, Options{}, falcoRulesFile(b))
	lease := event(b, `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"0b6b4b3e-6c1e-4d5e-9f3a-2f1b7c9d8e01","stage":"ResponseComplete","requestURI":"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/node-07?timeout=10s","verb":"update","user":{"username":"system:node:node-07","groups":["system:nodes","system:authenticated"]},"sourceIPs":["10.0.1.7"],"userAgent":"kubelet/v1.37.2 (linux/amd64) kubernetes/abcdef0","objectRef":{"resource":"leases","namespace":"kube-node-lease","name":"node-07","uid":"3c2d","apiGroup":"coordination.k8s.io","apiVersion":"v1","resourceVersion":"918273"},"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"2026-11-01T00:00:00.123456Z","stageTimestamp":"2026-11-01T00:00:00.125678Z","annotations":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":""}}`)
	cms, _ := decodeFile(b, filepath.Join("testdata", "k8saudit", "configmaps.jsonl"))
	pod := event(b, podEvent)
	for _, bc := range []struct {
		name string
		e    *rules.Event
	}{{"lease", lease}, {"configmap", cms[6]}, {"pod", pod}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				ev.Eval(bc.e)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
