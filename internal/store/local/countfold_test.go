package local

import (
	"math/rand/v2"
	"testing"

	"github.com/kubetrail/kubetrail/internal/audit"
)

// TestCountFoldAsEveryByte: countFold, which jumps between the
// occurrences of one of the key's letters, any one, counts what testing
// every byte counts, over random texts made of the key's letters in both
// cases and a few others (overlaps, a key cut by the end, the letter
// first or last). Mutations caught: looking for one case of the letter
// only; testing the key from the letter rather than from at bytes before
// it.
func TestCountFoldAsEveryByte(t *testing.T) {
	everyByte := func(b []byte, lower string) int {
		n := 0
		for i := 0; i+len(lower) <= len(b); i++ {
			k := 0
			for k < len(lower) && b[i+k]|0x20 == lower[k] {
				k++
			}
			if k == len(lower) {
				n++
			}
		}
		return n
	}
	r := rand.New(rand.NewPCG(1, 2))
	const alphabet = `auditAUDITx"{:` + "\x00\xff"
	for range 200000 {
		b := make([]byte, r.IntN(24))
		for i := range b {
			b[i] = alphabet[r.IntN(len(alphabet))]
		}
		if r.IntN(4) == 0 {
			at := r.IntN(len(b) + 1)
			b = append(b[:at], append([]byte("AuDiTiD"[:r.IntN(8)]), b[at:]...)...)
		}
		for _, lower := range []string{"auditid", "a", "aa"} {
			for at := range lower {
				if got, want := countFold(b, lower, at), everyByte(b, lower); got != want {
					t.Fatalf("countFold(%q, %q, %d) = %d, want %d", b, lower, at, got, want)
				}
			}
		}
	}
}

// BenchmarkStoredAuditID finds the audit ID of a 1.3 KB event of the
// bench's corpus in its bytes, as sealing does for every event.
func BenchmarkStoredAuditID(b *testing.B) {
	raw := []byte(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Request","auditID":"5c8e3b9e-9d0a-4e43-8b6f-1f0c2d3e4f50","stage":"ResponseComplete","requestURI":"/apis/apps/v1/namespaces/payments/deployments/api?fieldManager=kubectl-client-side-apply","verb":"patch","user":{"username":"system:serviceaccount:argocd:argocd-application-controller","uid":"0b8d7c6e-5f4a-4b3c-9d2e-1f0a9b8c7d6e","groups":["system:serviceaccounts","system:serviceaccounts:argocd","system:authenticated"]},"sourceIPs":["10.244.1.17"],"userAgent":"argocd-application-controller/v2.9.3 (linux/amd64) kubernetes/6a31e9b","objectRef":{"resource":"deployments","namespace":"payments","name":"api","apiGroup":"apps","apiVersion":"v1"},"responseStatus":{"metadata":{},"code":200},"requestObject":{"spec":{"template":{"metadata":{"annotations":{"kubectl.kubernetes.io/restartedAt":"2026-11-23T10:00:00Z"}},"spec":{"containers":[{"name":"api","image":"registry.example.com/payments/api:1.42.0","resources":{"limits":{"cpu":"500m","memory":"512Mi"}}}]}}}},"requestReceivedTimestamp":"2026-11-23T10:00:00.123456Z","stageTimestamp":"2026-11-23T10:00:00.145678Z","annotations":{"authorization.k8s.io/decision":"allow","authorization.k8s.io/reason":"RBAC: allowed by ClusterRoleBinding \"argocd-application-controller\" of ClusterRole \"argocd-application-controller\" to ServiceAccount \"argocd-application-controller/argocd\""}}`)
	var ev audit.Event
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		if id, err := storedAuditID(raw, &ev); err != nil || id != "5c8e3b9e-9d0a-4e43-8b6f-1f0c2d3e4f50" {
			b.Fatal(id, err)
		}
	}
}
