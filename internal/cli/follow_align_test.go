package cli

import (
	"bytes"
	"strings"
	"testing"
)

// TestFollowedTableAligns: query --follow prints rows as they come, each
// column starting where the header's does (it joined cells with two
// spaces, so columns drifted with every value's length).
// Mutation it catches: writeLive not padding.
func TestFollowedTableAligns(t *testing.T) {
	var buf bytes.Buffer
	p, err := newPrinter("table", &buf)
	if err != nil {
		t.Fatal(err)
	}
	mk := func(user, verb string) row {
		return row{cells: []string{"2026-12-05T00:33:01.658Z", user, "", verb, "secrets", "production", "", "403", "ResponseComplete", "127.0.0.1"}}
	}
	if err := p.printLive([]row{mk("attacker", "list")}, true); err != nil {
		t.Fatal(err)
	}
	for _, r := range []row{mk("bob", "get"), mk("system:anonymous", "watch")} {
		if err := p.printLive([]row{r}, false); err != nil {
			t.Fatal(err)
		}
	}
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 4 {
		t.Fatalf("printed %q", buf.String())
	}
	// The first three lines (header, attacker, bob) put VERB at the same
	// column; the longer user after them widens the column from there on.
	col := strings.Index(lines[0], "VERB")
	for _, l := range lines[1:3] {
		if !strings.HasPrefix(l[col:], "list") && !strings.HasPrefix(l[col:], "get") {
			t.Errorf("VERB does not start at column %d in:\n%s\n%s", col, lines[0], l)
		}
	}
	if !strings.Contains(lines[3], "system:anonymous  -") {
		t.Errorf("a longer value is not followed by two spaces: %q", lines[3])
	}
}
