package clickhouse

import (
	"strings"
	"testing"
	"time"

	"github.com/kubetrail/kubetrail/internal/jq"
	"github.com/kubetrail/kubetrail/internal/store/local"
)

// TestJQPushdownIsInTheSQL: the conditions a --jq program's select gives
// away (jq.Program.Filter, which query --jq joins to the filter) become
// the SQL condition ClickHouse runs, exact where the columns decide them,
// so only the events they select come back over HTTP; the program itself
// then runs in kubetrail.
func TestJQPushdownIsInTheSQL(t *testing.T) {
	now := time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		prog  string
		wants []string
	}{
		{`select(.verb == "list") | .objectRef`, []string{"verb", "'list'"}},
		{`select(.objectRef.resource == "secrets" and .user.username == "it's")`, []string{"resource", "'secrets'", `'it\'s'`}},
		{`select(.responseStatus.code >= 400)`, []string{"code", "400"}},
	} {
		p, err := jq.Compile(c.prog, now)
		if err != nil {
			t.Fatal(err)
		}
		if p.Filter() == nil {
			t.Fatalf("%s: gives away no condition", c.prog)
		}
		sql, exact, err := selectionWhere(local.Selection{Filter: p.Filter()})
		if err != nil {
			t.Fatalf("%s: %v", c.prog, err)
		}
		for _, w := range c.wants {
			if !strings.Contains(sql, w) {
				t.Errorf("%s: SQL %q lacks %q", c.prog, sql, w)
			}
		}
		if !exact {
			t.Errorf("%s: SQL %q is not exact; the columns decide these conditions", c.prog, sql)
		}
	}
}
