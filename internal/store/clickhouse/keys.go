package clickhouse

import "slices"

// appendSortedKeys appends m's keys to dst, sorted. encodeRow passes a
// small array's slice, so that a row's few annotation or extra keys are
// sorted without an allocation.
func appendSortedKeys[V any](dst []string, m map[string]V) []string {
	for k := range m {
		dst = append(dst, k)
	}
	slices.Sort(dst)
	return dst
}
