package audit

import (
	"encoding/json"
	"math/rand/v2"
	"testing"
)

// TestUnquoteAsUnmarshal: unquote, which takes a string of plain ASCII
// as its bytes, gives what json.Unmarshal gives, and refuses what it
// refuses, for quoted runs of random bytes: escapes, control bytes,
// quotes, UTF-8 and invalid UTF-8 (which Unmarshal replaces), a missing
// quote. Mutation caught: taking bytes above 0x7e as they are.
func TestUnquoteAsUnmarshal(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	const alphabet = "Event\"\\/u0aA\x00\x1f\x7e\x7f é\xff\xc3"
	qs := []string{`"Event"`, `"EventList"`, `""`, `"`, `x`, `"a`, `"\u0045vent"`, `"a\"b"`, `"é"`, "\"\xff\""}
	for range 50000 {
		b := make([]byte, rng.IntN(8))
		for i := range b {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		q := `"` + string(b) + `"`
		if rng.IntN(10) == 0 {
			q = q[:len(q)-1]
		}
		qs = append(qs, q)
	}
	for _, q := range qs {
		var want string
		werr := json.Unmarshal([]byte(q), &want)
		got, ok := unquote([]byte(q))
		if ok != (werr == nil) || got != want {
			t.Fatalf("unquote(%q) = %q, %v; Unmarshal gives %q, %v", q, got, ok, want, werr)
		}
	}
}
