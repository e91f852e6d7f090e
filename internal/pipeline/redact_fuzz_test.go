package pipeline

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/kubetrail/kubetrail/internal/audit"
)

// FuzzRedact holds the redactor to its promises on any input: it never
// panics; what it writes is JSON when the input was; a second pass changes
// nothing (idempotence); and the pre-check never waves through an event
// the full walk would change (so the fast path hides no secret).
// Mutations caught: a pre-check that forgets a case the walker handles
// (e.g. dropping the TokenRe search), markers that get re-hashed.
func FuzzRedact(f *testing.F) {
	for _, s := range []string{
		event(secretRef, "/api/v1/namespaces/default/secrets?token=abc", `"requestObject":{"kind":"Secret","data":{"a":"YQ=="},"metadata":{"annotations":{"kubectl.kubernetes.io/last-applied-configuration":"{\"kind\":\"Secret\",\"stringData\":{\"p\":\"x\"}}\n"}}}`, ""),
		event(`{"resource":"secrets"}`, "/x", `"requestObject":[{"op":"add","path":"/data/x","value":"eQ=="}]`, ""),
		event(`{"resource":"serviceaccounts","subresource":"token"}`, "/x", `"responseObject":{"kind":"TokenRequest","status":{"token":"t"}}`, `{"a/authorization":"x"}`),
		event(`{"resource":"pods"}`, "/x?watch=1", `"responseObject":{"kind":"SecretList","items":[{"data":{"k":"dg=="}}]}`, ""),
		event(`{"resource":"configmaps"}`, "/x", `"requestObject":{"kind":"TokenReview","spec":{"token":"t"}}`, ""),
		event(`{"resource":"configmaps"}`, "/x", "", `{"n":"Bearer x"}`),
	} {
		f.Add([]byte(s))
	}
	r, err := NewRedactor(testKey)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		// The walker alone, on any bytes.
		if out, changed, err := r.redactEvent(data, hint{secret: true}); err == nil && changed {
			if json.Valid(data) && !json.Valid(out) {
				t.Fatalf("valid input, invalid output:\n%s\n%s", data, out)
			}
			again, changed2, err := r.redactEvent(out, hint{secret: true})
			if err != nil || changed2 {
				t.Fatalf("second pass: err %v, changed:\n%s\n%s", err, out, again)
			}
		}
		// Whole events, as ingest decodes them.
		audit.NewDecoder(audit.Limits{}).DecodeBody("fuzz", data, func(rec audit.Record) {
			out, changed, err := r.Redact(rec)
			if err != nil {
				return
			}
			if changed && !json.Valid(out.Raw) {
				t.Fatalf("invalid output:\n%s\n%s", rec.Raw, out.Raw)
			}
			if _, changed2, err := r.Redact(out); err != nil || changed2 {
				t.Fatalf("second pass: err %v changed %v:\n%s", err, changed2, out.Raw)
			}
			if !needsRedaction(rec.Raw, &rec.Event) && uniqueKeys(rec.Raw) {
				if full, changed, err := r.redactEvent(rec.Raw, hintFor(rec.Event.ObjectRef)); err == nil && changed {
					t.Fatalf("the pre-check passed an event the walk changes:\n%s\n%s", rec.Raw, full)
				}
			}
		}, func(audit.Problem) {})
	})
}

// uniqueKeys reports whether the event's top-level members that redaction
// reads, and its annotations, each appear once. With duplicates the
// decoded event (which the pre-check reads) holds only the last; the
// API server never writes them.
func uniqueKeys(raw []byte) bool {
	ms, _, err := members(raw, skipWS(raw, 0), 0)
	if err != nil {
		return false
	}
	seen := map[string]int{}
	for _, m := range ms {
		for _, k := range []string{"requestURI", "annotations", "requestObject", "responseObject", "objectRef"} {
			if keyIs(raw[m.k0:m.k1], k) {
				seen[k]++
				if k == "annotations" && raw[m.v0] == '{' {
					as, _, err := members(raw, m.v0, 1)
					if err != nil {
						return false
					}
					names := map[string]bool{}
					for _, a := range as {
						n, _ := unquote(raw[a.k0:a.k1])
						if names[n] {
							return false
						}
						names[n] = true
					}
				}
			}
		}
	}
	for _, n := range seen {
		if n > 1 {
			return false
		}
	}
	return !bytes.Contains(raw, []byte{0}) // keep the corpus printable
}
