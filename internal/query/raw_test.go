package query

import (
	"bytes"
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
// negated conjunct (not requestObject~...) used to reject; an optional
// part (x?) whose strings leave out ""; a case-insensitive literal taken
// as exact; runs of exact parts not joined (the pack's privileged rule
// then looks for Path":{, in every pod's managedFields).
func TestRawRejecter(t *testing.T) {
	exprs := []string{
		`requestObject~"\"privileged\":true|\"hostNetwork\":true|\"hostPID\":true|\"hostIPC\":true|\"hostPath\":\\{"`,
		`requestObject~"\"roleRef\":\\{[^}]*\"name\":\"(cluster-admin|admin|edit)\"" verb=create`,
		`requestObject~"\"verbs\":\\[[^]]*\"(\\*|escalate|bind|impersonate)\"|\"resources\":\\[[^]]*\"(\\*|pods/exec|pods/attach|nodes/proxy)\""`,
		`requestObject~"\"type\":\"NodePort\""`,
		`responseObject~"(ab)+c{2,3}"`,
		`requestObject~"x*y?"`,
		`requestObject~"(?i)secret"`,
		`requestObject~"\"(?i:secret)\":1"`,
		`requestObject~"^$"`,
		`not requestObject~"privileged"`,
		`requestObject~"priv" or verb=get`,
		`requestObject~"(\"ab|x)?\"(c|d)(e|f)(g|h)(i|j)(k|l)(m|n)\":(true|{)"`,
		`requestObject~"\\b\"host(Path|PID)\":[{t]"`,
	}
	pieces := []string{`"privileged":true`, `"hostNetwork":true`, `"hostPath":{`, `"roleRef":{"kind":"ClusterRole","name":"edit"}`,
		`"roleRef":{"name":"cluster-admin"}`, `"verbs":["get","bind"]`, `"resources":["pods/exec"]`, `"type":"NodePort"`,
		`"abab":"ccc"`, `ababccc`, `"Secret":1`, `"host\u0050ID":true`, `"x":"y"`, `"privileged":"yes"`,
		`"f:terminationMessagePath":{}`, `"hostPID":false`, `"cegikm":true`, `"dfhjln":{}`, `"abcegikm":{}`}
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
	// Simplify factors "host out of the alternation above; the literal
	// left, Path":{, must not be all the rejecter looks for, or a pod's
	// managedFields (f:terminationMessagePath) keep it from rejecting.
	f, err := Compile(exprs[0])
	if err != nil {
		t.Fatal(err)
	}
	pod := []byte(`{"verb":"create","requestObject":{"metadata":{"managedFields":[{"fieldsV1":{"f:terminationMessagePath":{}}}]}}}`)
	if !RawRejecter(f)(pod) {
		t.Errorf("%s does not reject %s, which holds none of its alternatives", exprs[0], pod)
	}
	if rejected < nonMatching/2 {
		t.Errorf("%d rejected of %d not matching: the test tells too little", rejected, nonMatching)
	}
}

// TestNeedle: a needle finds its literal exactly where bytes.Contains
// does, over random texts of a few letters (so that the anchor byte
// occurs often, also where the literal does not), with the literal at the
// start, in the middle, at the very end or cut short by it.
// Mutations it catches: the last place the literal fits left out (i <
// end); the literal compared from its anchor instead of its start.
func TestNeedle(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	letters := []byte(`"aPD:`)
	word := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = letters[rng.IntN(len(letters))]
		}
		return b
	}
	found := 0
	for k := 0; k < 20000; k++ {
		lit := word(1 + rng.IntN(4))
		raw := word(rng.IntN(12))
		switch rng.IntN(4) {
		case 0:
			raw = append(append([]byte(nil), lit...), raw...)
		case 1:
			raw = append(raw, lit...)
		case 2:
			raw = append(raw, lit[:len(lit)-1]...)
		}
		want := bytes.Contains(raw, lit)
		if got := newNeedle(string(lit)).in(raw); got != want {
			t.Fatalf("needle %q in %q: %v, want %v", lit, raw, got, want)
		}
		if want {
			found++
		}
	}
	if found < 5000 {
		t.Errorf("the literal was in only %d texts of 20000", found)
	}
}
