package pipeline

import (
	"context"
	"testing"

	"github.com/kubetrail/kubetrail/internal/audit"
)

type discardSink struct{}

func (discardSink) Append(_ context.Context, b *Batch) (Result, error) {
	return Result{Stored: len(b.Records)}, nil
}

// BenchmarkRedactSink is the redaction decorator's cost on a webhook
// batch of 400 events: "plain" holds no secret (the batch is handed on as
// it is), "one-secret" has a Secret create in the middle (the batch is
// copied around it).
func BenchmarkRedactSink(b *testing.B) {
	r := newTestRedactor(b, testKey)
	plain := decodeLine(b, event(`{"resource":"pods","namespace":"default","name":"web","apiVersion":"v1"}`, "/api/v1/namespaces/default/pods/web", "", ""))
	secret := decodeLine(b, event(secretRef, "/api/v1/namespaces/default/secrets",
		`"requestObject":{"kind":"Secret","apiVersion":"v1","metadata":{"name":"db","namespace":"default"},"data":{"password":"aHVudGVyMg=="},"type":"Opaque"}`, ""))
	for _, c := range []struct {
		name   string
		secret bool
	}{{"plain", false}, {"one-secret", true}} {
		batch := &Batch{Cluster: "c", Records: make([]audit.Record, 400)}
		for i := range batch.Records {
			batch.Records[i] = plain
		}
		if c.secret {
			batch.Records[200] = secret
		}
		s := NewRedact(discardSink{}, r)
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.Append(context.Background(), batch); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
