package cli

import (
	"fmt"
	"io"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/kubetrail/kubetrail/internal/pipeline"
	"github.com/kubetrail/kubetrail/internal/policy"
)

// policyFlags choose the audit policy a command that stores events applies
// to them (docs/ingest.md, "Policy at ingest").
type policyFlags struct {
	file string
	// p is the policy load read; nil without --policy.
	p *policy.Policy
}

func (f *policyFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.file, "policy", "", "apply this audit policy (audit.k8s.io/v1) to every event before it is stored, as the API server would have: requests it logs at None and stages it omits are dropped, bodies above its level removed, managedFields removed when it says so; it cannot add what the source did not log")
}

// load reads the policy, before anything is opened: a policy that does not
// load strictly (as policy check loads it) is an error naming
// file:line:column, and the command must not start. Lint findings are
// logged as warnings.
func (f *policyFlags) load(log *slog.Logger) error {
	if f.file == "" {
		return nil
	}
	p, err := policy.LoadFile(f.file)
	if err != nil {
		return fmt.Errorf("--policy: %w", err)
	}
	for _, fd := range policy.Lint(p) {
		if fd.Severity == policy.SevInfo {
			continue
		}
		where := f.file
		if fd.Line > 0 {
			where = fmt.Sprintf("%s:%d", f.file, fd.Line)
		}
		log.Warn("ingest policy: "+fd.Message, "where", where, "severity", fd.Severity, "code", fd.Code, "fix", fd.Fix)
	}
	f.p = p
	return nil
}

// wrap puts the loaded policy in front of sink, which must already hold
// the redaction stage: the policy decides first, so that a body it removes
// is never redacted (an event the policy leaves without secrets carries no
// redaction mark, as the API server would have written it), and redaction
// sees only what will be stored.
func (f *policyFlags) wrap(sink pipeline.Sink) (pipeline.Sink, *pipeline.Releveler) {
	if f.p == nil {
		return sink, nil
	}
	r := pipeline.NewReleveler(f.p)
	return pipeline.NewRelevel(sink, r), r
}

// printPolicySummary tells what the ingest policy did in an import.
func printPolicySummary(w io.Writer, file string, c pipeline.PolicyCounts) {
	fmt.Fprintf(w, "policy %s: %d events kept at their recorded level, %d stripped to the policy's lower level, %d dropped (level None), %d dropped (omitted stage), %d recorded below the policy's level (kept as recorded)\n",
		file, c[pipeline.PolicyKept], c[pipeline.PolicyStripped], c[pipeline.PolicyDroppedLevelNone], c[pipeline.PolicyDroppedStage], c[pipeline.PolicyBelowLevel])
}
