package pipeline

import (
	"testing"
)

// BenchmarkRedact measures the cost redaction adds per event: "plain" is a
// typical event with nothing to redact (the pre-check alone), "pod" a
// RequestResponse body with nothing to redact, "secret" a Secret created
// with kubectl apply (data and last-applied redacted).
func BenchmarkRedact(b *testing.B) {
	r := newTestRedactor(b, testKey)
	podBody := `"requestObject":{"kind":"Pod","apiVersion":"v1","metadata":{"name":"web","namespace":"default","labels":{"app":"web"}},"spec":{"containers":[{"name":"web","image":"nginx:1.27","ports":[{"containerPort":80}],"env":[{"name":"MODE","value":"prod"}],"volumeMounts":[{"name":"kube-api-access","mountPath":"/var/run/secrets/kubernetes.io/serviceaccount","readOnly":true}]}],"volumes":[{"name":"kube-api-access","projected":{"sources":[{"serviceAccountToken":{"expirationSeconds":3607,"path":"token"}},{"configMap":{"name":"kube-root-ca.crt","items":[{"key":"ca.crt","path":"ca.crt"}]}}]}}],"tolerations":[{"key":"node.kubernetes.io/not-ready","operator":"Exists","effect":"NoExecute","tolerationSeconds":300}]}}`
	for _, c := range []struct{ name, line string }{
		{"plain", event(`{"resource":"pods","namespace":"default","name":"web","apiVersion":"v1"}`, "/api/v1/namespaces/default/pods/web?resourceVersion=0\\u0026limit=500", "", "")},
		{"pod", event(`{"resource":"pods","namespace":"default","name":"web","apiVersion":"v1"}`, "/api/v1/namespaces/default/pods", podBody, "")},
		{"secret", event(secretRef, "/api/v1/namespaces/default/secrets?fieldManager=kubectl-client-side-apply",
			`"requestObject":{"kind":"Secret","apiVersion":"v1","metadata":{"name":"db","namespace":"default","annotations":{"kubectl.kubernetes.io/last-applied-configuration":"{\"apiVersion\":\"v1\",\"data\":{\"password\":\"aHVudGVyMg==\"},\"kind\":\"Secret\",\"metadata\":{\"annotations\":{},\"name\":\"db\",\"namespace\":\"default\"},\"type\":\"Opaque\"}\n"}},"data":{"password":"aHVudGVyMg=="},"type":"Opaque"},"responseObject":{"kind":"Secret","apiVersion":"v1","metadata":{"name":"db","namespace":"default","uid":"0b8c","resourceVersion":"42"},"data":{"password":"aHVudGVyMg=="},"type":"Opaque"}`, "")},
	} {
		rec := decodeLine(b, c.line)
		b.Run(c.name, func(b *testing.B) {
			b.SetBytes(int64(len(rec.Raw)))
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := r.Redact(rec); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
