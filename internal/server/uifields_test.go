package server

import (
	"os"
	"regexp"
	"slices"
	"testing"

	"github.com/kubetrail/kubetrail/internal/query"
	"github.com/kubetrail/kubetrail/internal/store/local"
)

// TestUIFieldList holds the filter input's completion list
// (web/src/fields.js) to the filter language: every field, by its
// canonical name, in documentation order, and a stats column only where
// GET /api/v1/stats can group by it.
func TestUIFieldList(t *testing.T) {
	src, err := os.ReadFile("../../web/src/fields.js")
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`\{ name: '([^']+)'[^}]*?(?:stats: '([^']+)')?[^}]*\}`)
	var names []string
	for _, m := range re.FindAllStringSubmatch(string(src), -1) {
		names = append(names, m[1])
		if m[2] == "" {
			continue
		}
		if _, ok := local.ColumnByName(m[2]); !ok {
			t.Errorf("fields.js: %s: stats column %q is not one stats groups by", m[1], m[2])
		}
		f, ok := query.LookupField(m[2])
		if c, _ := query.LookupField(m[1]); !ok || f.Name != c.Name {
			t.Errorf("fields.js: %s: stats column %q is the field %q", m[1], m[2], f.Name)
		}
	}
	var want []string
	for _, f := range query.Fields() {
		want = append(want, f.Name)
	}
	if !slices.Equal(names, want) {
		t.Errorf("fields.js lists %v\nthe filter language has %v", names, want)
	}
}
