package sigma

import (
	"testing"
)

// BenchmarkSigmaHQ: SigmaHQ's 16 rules on a typical Metadata-level event
// (a get of a pod, which no rule matches), on a create of a pod with a
// body (the rules that read requestObject decode it), and on an exec that
// raises an alert.
func BenchmarkSigmaHQ(b *testing.B) {
	rs, _ := Load(sigmaHQFiles(b)...)
	for _, c := range []struct {
		name string
		e    func() []any
	}{
		{"get-pod", func() []any { return nil }},
		{"create-pod-body", func() []any {
			return []any{"level", "Request", "verb", "create", "objectRef.namespace", "kube-system", "requestObject", privilegedPod}
		}},
		{"exec-alert", func() []any { return []any{"verb", "create", "objectRef.subresource", "exec"} }},
	} {
		e := event(b, c.e()...)
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				rs.Eval(e)
			}
		})
	}
}

// BenchmarkReferenceRules adds the rules of testdata/reference, which read
// request bodies, use regular expressions, CIDRs and keyword searches.
func BenchmarkReferenceRules(b *testing.B) {
	rs, _ := Load(referenceFiles(b)...)
	e := event(b, "level", "Request", "verb", "create", "requestObject", hostPathPod)
	b.ReportAllocs()
	for b.Loop() {
		rs.Eval(e)
	}
}
