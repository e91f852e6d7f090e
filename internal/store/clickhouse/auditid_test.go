package clickhouse

import (
	"testing"

	"github.com/kubetrail/kubetrail/internal/query"
	"github.com/kubetrail/kubetrail/internal/store/local"
)

// TestAuditIDIsAColumnCondition: the web UI's event page and alert links
// look events up by audit ID (GET /api/v1/events?filter=auditid="..."),
// which ADR 0022 answers from a table per segment on the embedded store.
// On ClickHouse it must be a condition on the audit_id column, escaped by
// quote and decided in SQL (exact), so that ClickHouse reads that one
// column, not every event's text back into kubetrail.
//
// Planted: dropping "auditid" from the column map (where.go) makes the
// condition a residual over the stored text: exact is false.
func TestAuditIDIsAColumnCondition(t *testing.T) {
	f := func(src, want string) {
		t.Helper()
		flt, err := query.Compile(src)
		if err != nil {
			t.Fatal(err)
		}
		w, exact, err := selectionWhere(local.Selection{Filter: flt})
		if err != nil || !exact || w != want {
			t.Errorf("%s: WHERE %s (exact %v, %v); want WHERE %s, exact", src, w, exact, err, want)
		}
	}
	f(`auditid="6a16f2c1-7041-441b-9507-5b1b2e1c0b1a"`, `1 AND (audit_id = '6a16f2c1-7041-441b-9507-5b1b2e1c0b1a')`)
	f(`auditid="a'b"`, `1 AND (audit_id = 'a\'b')`)
	f(`auditid in (x, "y\\z")`, `1 AND (audit_id IN ('x', 'y\\z'))`)
}
