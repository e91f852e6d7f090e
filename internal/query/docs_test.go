package query

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestDocs keeps docs/query.md true: every field has a row in the fields
// table, and every example in the tables and in the filter blocks parses.
func TestDocs(t *testing.T) {
	b, err := os.ReadFile("../../docs/query.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	span := regexp.MustCompile("`([^`]+)`")
	checked := 0
	check := func(where, src string) {
		t.Helper()
		checked++
		if _, err := Parse(src); err != nil {
			t.Errorf("docs/query.md %s: example %q does not parse: %v", where, src, err)
		}
	}

	rows := map[string]string{} // first cell -> last cell
	var section string
	for _, line := range strings.Split(doc, "\n") {
		if strings.HasPrefix(line, "## ") || strings.HasPrefix(line, "### ") {
			section = line
		}
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), " | ")
		first := span.FindStringSubmatch(cells[0])
		rows[first[1]] = cells[len(cells)-1]
		if section == "## Fields" || section == "## Comparisons" {
			for _, m := range span.FindAllStringSubmatch(cells[len(cells)-1], -1) {
				check(section, m[1])
			}
		}
	}
	for _, f := range Fields() {
		name := f.Name
		if f.Keyed {
			name += "[KEY]"
		}
		if _, ok := rows[name]; !ok {
			t.Errorf("docs/query.md: no row for field %s in the fields table", name)
		}
	}

	blocks := regexp.MustCompile("(?s)```filter\n(.*?)```").FindAllStringSubmatch(doc, -1)
	if len(blocks) < 4 {
		t.Fatalf("found %d filter blocks", len(blocks))
	}
	for _, blk := range blocks {
		for _, line := range strings.Split(blk[1], "\n") {
			if i := strings.Index(line, "  #"); i >= 0 {
				line = line[:i]
			}
			if line = strings.TrimSpace(line); line != "" {
				check("filter block", line)
			}
		}
	}
	t.Logf("%d examples", checked)
	if checked < 60 {
		t.Errorf("checked only %d examples; did the layout of docs/query.md change?", checked)
	}
}
