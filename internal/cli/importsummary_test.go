package cli

import (
	"bytes"
	"strings"
	"testing"

	"github.com/kubetrail/kubetrail/internal/ingest"
)

// TestImportSummarySaysLost: events a bulk load took but could not write
// are counted as lost, not stored (the summary said all were stored above
// the error that said some were lost).
func TestImportSummarySaysLost(t *testing.T) {
	var b bytes.Buffer
	printSummary(&b, ingest.Summary{Files: 1, Lines: 100, Stored: 95, Lost: 5})
	if !strings.Contains(b.String(), ": 95 events stored, 0 already stored, 5 lost (not written: see the error), 0 lines skipped") {
		t.Errorf("summary: %q", b.String())
	}
	b.Reset()
	printSummary(&b, ingest.Summary{Files: 1, Lines: 100, Stored: 100})
	if strings.Contains(b.String(), "lost") {
		t.Errorf("summary of a complete import speaks of lost events: %q", b.String())
	}
}
