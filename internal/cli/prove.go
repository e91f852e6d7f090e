package cli

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/kubetrail/kubetrail/internal/escape"
	"github.com/kubetrail/kubetrail/internal/store/local"
	"github.com/kubetrail/kubetrail/internal/trust"
)

func proveCmd(e *env) *cobra.Command {
	var dir, pos, witness, check, pubkey string
	cmd := &cobra.Command{
		Use:   "prove (AUDITID | --pos WAL:ORDINAL | --check PROOFS --pubkey KEY)",
		Short: "Print, or check, the proof that an event is in a signed checkpoint's history",
		Long: `prove prints, for each stored event with that auditID (audit IDs are not
unique: every stage of a request shares one, and a client may choose it)
or for the event at one position (the WAL:ORDINAL that verify names), an
inclusion proof as one JSON line: the event's stored bytes, its RFC 6962
audit path in its WAL segment's Merkle tree, the hash chain from that
tree to the first signed checkpoint after it, and that checkpoint
(DATA/checkpoints, or the witness's copy given with --checkpoint).

prove --check PROOFS --pubkey KEY checks proofs without the store: anyone
holding the public key can tell that the event, byte for byte, is in the
history the key signed (docs/security.md, "Tamper evidence"). It prints one
line per proof and exits 1 when any does not hold.

An event still in the WAL, or sealed after the newest checkpoint, has no
proof yet: serve signs a checkpoint every --checkpoint-every.`,
		Example: `  kubetrail prove 5f1c2a9e-0d7b-4c1e-9a55-3b2f7c8e4d10 > proof.jsonl
  kubetrail prove --pos 12:345 --checkpoint /mnt/witness/kubetrail-checkpoints
  kubetrail prove --check proof.jsonl --pubkey kubetrail-checkpoints.pub`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if check != "" {
				if pubkey == "" || len(args) > 0 || pos != "" {
					return errors.New("--check takes only --pubkey: a proof is checked without the store")
				}
				return checkProofs(e, check, pubkey)
			}
			if (len(args) == 1) == (pos != "") {
				return errors.New("give an auditID or --pos WAL:ORDINAL")
			}
			positions, err := provePositions(dir, args, pos)
			if err != nil {
				return err
			}
			cps := filepath.Join(dir, checkpointsName)
			if witness != "" {
				cps = witness
			}
			lines, err := trust.Read(cps)
			if err != nil {
				return err
			}
			if len(lines) == 0 {
				return fmt.Errorf("%s holds no checkpoint: serve, import and tail sign them", cps)
			}
			for _, p := range positions {
				var at trust.Checkpoint
				proof, err := local.Prove(dir, p, func(wal uint64, head [32]byte) bool {
					h := hex.EncodeToString(head[:])
					for _, l := range lines {
						if l.WAL == wal && l.Head == h {
							at = l.Checkpoint
							return true
						}
					}
					return false
				})
				if err != nil {
					return err
				}
				proof.Checkpoint = at
				b, err := json.Marshal(proof)
				if err != nil {
					return err
				}
				fmt.Fprintln(e.stdout, string(b))
			}
			return nil
		},
	}
	addDataFlag(cmd, &dir)
	cmd.Flags().StringVar(&pos, "pos", "", "the event at this position, WAL:ORDINAL (as verify names it)")
	cmd.Flags().StringVar(&witness, "checkpoint", "", "prove against the checkpoints in this file (a witness's copy) instead of DATA/checkpoints")
	cmd.Flags().StringVar(&check, "check", "", "check the proofs in this file (JSON lines from prove) instead; needs --pubkey, not the store")
	cmd.Flags().StringVar(&pubkey, "pubkey", "", "public key (PEM, from kubetrail checkpoint pubkey) for --check")
	return cmd
}

// provePositions returns the position given, or those of every event with
// the auditID given.
func provePositions(dir string, args []string, pos string) ([]local.Pos, error) {
	if pos != "" {
		w, o, err := trust.ParsePos(pos)
		return []local.Pos{{WAL: w, Ord: o}}, err
	}
	var out []local.Pos
	want := []byte(`"` + args[0] + `"`)
	// The segments' audit ID tables leave out most events (docs/adr/0022).
	err := local.Scan(dir, local.ScanOptions{AuditIDs: []string{args[0]}}, func(s local.Stored) error {
		// The bytes first: decoding every event would cost the scan its
		// speed.
		if bytes.Contains(s.Raw, want) && auditIDIs(s.Raw, args[0]) {
			out = append(out, s.Pos)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no stored event has auditID %q", args[0])
	}
	return out, nil
}

func auditIDIs(raw []byte, id string) bool {
	var ev struct {
		AuditID string `json:"auditID"`
	}
	return json.Unmarshal(raw, &ev) == nil && ev.AuditID == id
}

// checkProofs checks each proof of the JSON lines file path with the key.
func checkProofs(e *env, path, pubkey string) error {
	pub, err := trust.LoadPublicKey(pubkey)
	if err != nil {
		return err
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 256<<20)
	bad, n := 0, 0
	for line := 1; sc.Scan(); line++ {
		if len(sc.Bytes()) == 0 {
			continue
		}
		n++
		var p trust.Proof
		if err := json.Unmarshal(sc.Bytes(), &p); err != nil {
			return fmt.Errorf("%s:%d: not a proof: %w", path, line, err)
		}
		if err := p.Check(pub); err != nil {
			bad++
			fmt.Fprintln(e.stdout, escape.Text(fmt.Sprintf("%s:%d: event %s (auditID %q) NOT proved: %v", path, line, p.Pos, p.AuditID(), err)))
			continue
		}
		fmt.Fprintln(e.stdout, escape.Text(fmt.Sprintf("%s:%d: event %s (auditID %q) is in the history signed %s (checkpoint of %d events, key %s)", path, line, p.Pos, p.AuditID(), p.Checkpoint.Time.Format(time.RFC3339), p.Checkpoint.Events, p.Checkpoint.Key)))
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read %s: %w", path, err)
	}
	if n == 0 {
		return fmt.Errorf("%s holds no proof", path)
	}
	if bad > 0 {
		return exitCode(1)
	}
	return nil
}
