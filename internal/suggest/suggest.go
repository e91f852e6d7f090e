// Package suggest finds the likely intended word for a typo, for the
// "did you mean ...?" hints in error messages about policies, manifests and
// other hand-written files.
package suggest

import "strings"

// Closest returns the candidate closest to v by case-insensitive edit
// distance (optimal string alignment: an adjacent transposition is one
// edit), if that distance is within a third of v's length (at least 1, at
// most 3); otherwise "".
func Closest(v string, candidates []string) string {
	lv := strings.ToLower(v)
	best, bestD := "", 1<<30
	for _, c := range candidates {
		if d := Distance(lv, strings.ToLower(c)); d < bestD {
			best, bestD = c, d
		}
	}
	if bestD > min(max(len(v)/3, 1), 3) {
		return ""
	}
	return best
}

// Distance is the optimal string alignment distance between a and b,
// counting bytes.
func Distance(a, b string) int {
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}
