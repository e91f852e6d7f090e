package forward

import (
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
)

// TestValidTopicIsKafkasRule: validTopic accepts exactly what Kafka's own
// rule for topic names, written as a regexp, accepts.
func TestValidTopicIsKafkasRule(t *testing.T) {
	rule := regexp.MustCompile(`^[A-Za-z0-9._-]{1,249}$`)
	cases := []string{"", "a", "k8s-audit", "a.b_c-D9", strings.Repeat("a", 249), strings.Repeat("a", 250), "a/b", "a b", "ä", "a\x00"}
	rng := rand.New(rand.NewPCG(1, 2))
	const alphabet = "aZ09._-/ :\x00\xff"
	for range 2000 {
		b := make([]byte, rng.IntN(6))
		for i := range b {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		cases = append(cases, string(b))
	}
	for _, c := range cases {
		if got, want := validTopic(c), rule.MatchString(c); got != want {
			t.Errorf("validTopic(%q) = %t, Kafka's rule says %t", c, got, want)
		}
	}
}
