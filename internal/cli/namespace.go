package cli

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/kubetrail/kubetrail/internal/query"
)

// nsFlags are kubectl's -n/--namespace and -A/--all-namespaces. No
// kubeconfig is read: without -n a command covers every namespace, and -A
// says so explicitly.
type nsFlags struct {
	ns  string
	all bool
}

func (n *nsFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVarP(&n.ns, "namespace", "n", "", "only events in this namespace (the filter ns=NS: cluster-scoped events are left out); without it, every namespace")
	cmd.Flags().BoolVarP(&n.all, "all-namespaces", "A", false, "every namespace: the default, accepted for kubectl habits")
}

func (n *nsFlags) check() error {
	if n.ns != "" && n.all {
		return fmt.Errorf("-n %s and -A: choose one namespace or all", n.ns)
	}
	return nil
}

// cond is the namespace condition in the filter language, "" without -n.
func (n *nsFlags) cond() string {
	if n.ns == "" {
		return ""
	}
	return "ns=" + quoteFilterValue(n.ns)
}

// apply adds ns=NS to f (nil: every event).
func (n *nsFlags) apply(f *query.Filter, now time.Time) (*query.Filter, error) {
	if n.ns == "" {
		return f, nil
	}
	c := &query.Cmp{Field: query.Field{Name: "ns"}, Op: query.OpEq, Values: []query.Value{{Text: n.ns}}}
	if f == nil {
		return query.CompileExpr(c, now)
	}
	terms := []query.Expr{c}
	if and, ok := f.Expr().(*query.And); ok {
		terms = append(terms, and.Terms...)
	} else {
		terms = append(terms, f.Expr())
	}
	return query.CompileExpr(&query.And{Terms: terms}, now)
}

// quoteFilterValue writes v as a quoted value of the filter language.
func quoteFilterValue(v string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(v) + `"`
}
