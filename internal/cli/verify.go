package cli

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kubetrail/kubetrail/internal/escape"
	"github.com/kubetrail/kubetrail/internal/server"
	"github.com/kubetrail/kubetrail/internal/store/local"
	"github.com/kubetrail/kubetrail/internal/trust"
)

func verifyCmd(e *env) *cobra.Command {
	var (
		dir, witness string
		pubkeys      []string
		quiet        bool
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
every checksum recomputed), with the event itself (its position
WAL:ORDINAL, for kubetrail prove --pos, and its auditID), and any segment
deleted, inserted or moved.
Segments deleted by retention are recorded in segments/RETIRED and are not
reported. Events still in the WAL are covered once sealed.

It checks the hash chain of DATA/access.log (every line links to the one
before) and names, as FILE:LINE, a line edited, deleted, inserted or
reordered; a torn last line, which a crash leaves, is a note. Alerts in
DATA/alerts are not checked (docs/adr/0018).

With --pubkey (repeatable: after a key rotation, give the old key and the
new) it also checks the signed checkpoints in DATA/checkpoints
(and, with --checkpoint, a copy an external witness kept): each must be
signed by one of the keys, and the store must still extend it (the chain has, at
the checkpoint's event count, the head it signed), as must the access log
(serve's checkpoints sign its line count and last line). A checkpoint the
witness holds and the data folder does not means the file was rolled
back. Only checkpoints held outside the host protect against someone who
rewrites the files and every chain link after them.

What the lines mean and what to do is in docs/ingest.md ("When a file is
damaged"). A file in DIR/quarantine holds bytes kubetrail kept aside because
they were damaged: every answer leaves their events out, and every reader
reports them, until you have looked at them and removed them.`,
		Example: `  kubetrail verify --data /var/lib/kubetrail
  kubetrail verify --pubkey kubetrail-checkpoints.pub --checkpoint /mnt/witness/kubetrail-checkpoints`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if witness != "" && len(pubkeys) == 0 {
				return errors.New("--checkpoint needs --pubkey: a checkpoint is worth its signature")
			}
			rep, err := local.Verify(dir, nil)
			if err != nil {
				return err
			}
			pubs, err := loadPublicKeys(pubkeys)
			if err != nil {
				return err
			}
			bad, notes, err := checkCheckpoints(dir, pubs, witness, rep)
			if err != nil {
				return err
			}
			// Each line starts with the checkpoint's FILE:LINE.
			for _, b := range bad {
				where, why, _ := strings.Cut(b, ": ")
				rep.Tamper = append(rep.Tamper, local.Damage{Path: where, Reason: why})
			}
			for _, n := range notes {
				where, why, _ := strings.Cut(n, ": ")
				rep.Notes = append(rep.Notes, local.Damage{Path: where, Reason: why})
			}
			rep.Tamper = append(rep.Tamper, checkRetired(rep, pubs)...)
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
	cmd.Flags().StringArrayVar(&pubkeys, "pubkey", nil, "public key (PEM, from kubetrail checkpoint pubkey) to check the signed checkpoints and RETIRED records with; repeatable: after a key rotation, the old key and the new")
	cmd.Flags().StringVar(&witness, "checkpoint", "", "checkpoints kept by an external witness (kubetrail checkpoint export), checked too")
	return cmd
}

// loadPublicKeys reads each --pubkey.
func loadPublicKeys(paths []string) ([]ed25519.PublicKey, error) {
	var out []ed25519.PublicKey
	for _, p := range paths {
		k, err := trust.LoadPublicKey(p)
		if err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, nil
}

// checkRetired checks the signatures of the RETIRED records with the
// public key; without one, it notes that they were not checked.
func checkRetired(rep *local.VerifyReport, pubs []ed25519.PublicKey) []local.Damage {
	if len(rep.Retired) == 0 {
		return nil
	}
	if len(pubs) == 0 {
		rep.Notes = append(rep.Notes, local.Damage{Path: rep.RetiredPath, Reason: fmt.Sprintf("%s of segments deleted by retention: their signatures are checked with --pubkey", plural(len(rep.Retired), "record", "records"))})
		return nil
	}
	recs := make([]trust.Retired, len(rep.Retired))
	for i, r := range rep.Retired {
		recs[i] = trust.Retired(r)
	}
	var out []local.Damage
	for _, f := range trust.CheckRetired(recs, pubs) {
		out = append(out, local.Damage{Path: rep.RetiredPath, Reason: f})
	}
	return out
}

// checkCheckpoints checks the access log's chain, and the data folder's
// checkpoints and a witness's against the event chain and the access
// log's; the checkpoints only with a public key. Each line it returns
// starts with FILE:LINE.
func checkCheckpoints(dir string, pubs []ed25519.PublicKey, witness string, rep *local.VerifyReport) (bad, notes []string, err error) {
	var own, wit []trust.Line
	if len(pubs) > 0 {
		if own, err = trust.Read(filepath.Join(dir, checkpointsName)); err != nil {
			return nil, nil, err
		}
		if witness != "" {
			if wit, err = trust.Read(witness); err != nil {
				return nil, nil, err
			}
			if len(wit) == 0 {
				return nil, nil, fmt.Errorf("--checkpoint %s holds no checkpoint", witness)
			}
		}
	}
	acc, err := trust.CheckAccessLog(filepath.Join(dir, server.AccessLogFile), trust.AccessCounts(own, wit))
	if err != nil {
		return nil, nil, err
	}
	if acc.Count > 0 {
		rep.Files++
		rep.Bytes += acc.Bytes
	}
	bad, notes = acc.Findings, acc.Notes
	if len(pubs) == 0 {
		if acc.Lines > 0 {
			notes = append(notes, filepath.Join(dir, server.AccessLogFile)+": its chain was checked line by line; whether it was cut or rewritten as a whole is checked against the signed checkpoints with --pubkey")
		}
		return bad, notes, nil
	}
	points := make([]trust.Point, len(rep.Chain))
	for i, p := range rep.Chain {
		points[i] = trust.Point(p)
	}
	cb, cn := trust.CheckAccess(own, wit, pubs, points, acc)
	return append(bad, cb...), append(notes, cn...), nil
}
