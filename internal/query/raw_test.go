package query

import (
	"encoding/json"
	"math/rand/v2"
	"testing"

	"github.com/kubetrail/kubetrail/internal/audit"
)

// TestRawRejecter: whenever the test of stored bytes rejects an event,
// the filter does not match it; over the built-in pack's body conditions
// and generated ones, on bodies holding one alternative, another, parts
// of them, escapes, or nothing; and it rejects most events that do not
// match (it is not always nil or always false).
// Mutations it catches: an alternation giving only its first branch's
// literals; a repetition that may match nothing (x*) taken as required; a
// negated conjunct (not requestObject~...) used to reject.
func TestRawRejecter(t *testing.T) {
	exprs := []string{
		`requestObject~"\"privileged\":true|\"hostNetwork\":true|\"hostPID\":true|\"hostIPC\":true|\"hostPath\":\\{"`,
		`requestObject~"\"roleRef\":\\{[^}]*\"name\":\"(cluster-admin|admin|edit)\"" verb=create`,
		`requestObject~"\"verbs\":\\[[^]]*\"(\\*|escalate|bind|impersonate)\"|\"resources\":\\[[^]]*\"(\\*|pods/exec|pods/attach|nodes/proxy)\""`,
		`requestObject~"\"type\":\"NodePort\""`,
		`responseObject~"(ab)+c{2,3}"`,
		`requestObject~"x*y?"`,
		`requestObject~"(?i)secret"`,
		`requestObject~"^$"`,
		`not requestObject~"privileged"`,
		`requestObject~"priv" or verb=get`,
	}
	pieces := []string{`"privileged":true`, `"hostNetwork":true`, `"hostPath":{`, `"roleRef":{"kind":"ClusterRole","name":"edit"}`,
		`"roleRef":{"name":"cluster-admin"}`, `"verbs":["get","bind"]`, `"resources":["pods/exec"]`, `"type":"NodePort"`,
		`"abab":"ccc"`, `ababccc`, `"SECRET"`, `"host\u0050ID":true`, `"x":"y"`, `privileged`}
	rng := rand.New(rand.NewPCG(1, 2))
	rejected, nonMatching := 0, 0
	for _, src := range exprs {
		f, err := Compile(src)
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		test := RawRejecter(f)
		for k := 0; k < 300; k++ {
			ev := &audit.Event{Verb: []string{"get", "create"}[rng.IntN(2)], AuditID: "a"}
			body := "{"
			for p := 0; p < rng.IntN(3); p++ {
				if p > 0 {
					body += ","
				}
				body += pieces[rng.IntN(len(pieces))]
			}
			body += "}"
			if rng.IntN(5) > 0 && json.Valid([]byte(body)) {
				ev.RequestObject = json.RawMessage(body)
				if rng.IntN(2) == 0 {
					ev.ResponseObject = json.RawMessage(body)
				}
			}
			raw, err := json.Marshal(ev)
			if err != nil {
				t.Fatal(err)
			}
			m := f.Match(ev, "")
			if !m {
				nonMatching++
			}
			if test != nil && test(raw) {
				rejected++
				if m {
					t.Fatalf("%s rejects %s, which matches", src, raw)
				}
			}
		}
	}
	if rejected < nonMatching/2 {
		t.Errorf("%d rejected of %d not matching: the test tells too little", rejected, nonMatching)
	}
}
