package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/kubetrail/kubetrail/internal/escape"
	"github.com/kubetrail/kubetrail/internal/store/local"
)

func verifyCmd(e *env) *cobra.Command {
	var (
		dir   string
		quiet bool
	)
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Check every checksum, Merkle root and chain link of a data folder",
		Long: `verify reads every file of a data folder and checks every checksum in it:
each WAL record, each segment's meta, columns and text blocks, the list of
segments that must exist, and the quarantine folder. It prints one line per
file that cannot be trusted, "PATH: reason", and exits 1 when there is any,
0 when the folder is whole. It can run while serve or tail is writing.

It also checks tamper evidence (docs/security.md, "Tamper evidence"): it
recomputes the Merkle root of every sealed WAL segment's events from the
stored bytes and the hash chain across segments, and names any segment
whose events were modified, inserted, deleted or reordered (even with
every checksum recomputed), and any segment deleted, inserted or moved.
Segments deleted by retention are recorded in segments/RETIRED and are not
reported. Events still in the WAL are covered once sealed.

What the lines mean and what to do is in docs/ingest.md ("When a file is
damaged"). A file in DIR/quarantine holds bytes kubetrail kept aside because
they were damaged: every answer leaves their events out, and every reader
reports them, until you have looked at them and removed them.`,
		Example: `  kubetrail verify --data /var/lib/kubetrail`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rep, err := local.Verify(dir, nil)
			if err != nil {
				return err
			}
			for _, d := range rep.Damage {
				fmt.Fprintln(e.stdout, escape.Text(d.String()))
			}
			for _, d := range rep.Tamper {
				fmt.Fprintln(e.stdout, escape.Text(d.String()))
			}
			if !quiet {
				for _, n := range rep.Notes {
					fmt.Fprintln(e.stderr, "note: "+escape.Text(n.String()))
				}
				fmt.Fprintf(e.stderr, "checked %s, %s, %s: ", plural(rep.Files, "file", "files"), humanBytes(rep.Bytes), plural(rep.Events, "event", "events"))
				switch {
				case len(rep.Damage) == 0 && len(rep.Tamper) == 0:
					fmt.Fprintln(e.stderr, "every checksum, Merkle root and chain link holds")
				case len(rep.Tamper) == 0:
					fmt.Fprintf(e.stderr, "%d damaged, missing or quarantined\n", len(rep.Damage))
				default:
					fmt.Fprintf(e.stderr, "%d damaged, missing or quarantined, %d altered\n", len(rep.Damage), len(rep.Tamper))
				}
			}
			if len(rep.Damage) > 0 || len(rep.Tamper) > 0 {
				return exitCode(1)
			}
			return nil
		},
	}
	addDataFlag(cmd, &dir)
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "print only the damaged files")
	return cmd
}
