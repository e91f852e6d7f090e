package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/kubetrail/kubetrail/internal/store/local"
	"github.com/kubetrail/kubetrail/internal/timespec"
	"github.com/kubetrail/kubetrail/internal/trust"
)

// Paths in a data folder for signed checkpoints (docs/security.md).
const (
	checkpointsName = "checkpoints"
	signingKeyName  = "checkpoint.key"
)

const signingKeyUsage = "Ed25519 private key (PEM) that signs checkpoints of the hash chain (default DATA/checkpoint.key, created 0600 on first use)"

// signingKeyPath is --signing-key, or the data folder's key.
func signingKeyPath(dir, flag string) string {
	if flag != "" {
		return flag
	}
	return filepath.Join(dir, signingKeyName)
}

// newSigner opens the signing key (creating the default one) for db.
func newSigner(dir, keyFlag string, db *local.DB, log *slog.Logger) (*trust.Signer, error) {
	key, err := trust.LoadOrCreateKey(signingKeyPath(dir, keyFlag), keyFlag == "")
	if err != nil {
		return nil, err
	}
	return &trust.Signer{Key: key, Path: filepath.Join(dir, checkpointsName), Log: log, Head: func() (trust.Point, bool) {
		p, ok := db.ChainHead()
		return trust.Point(p), ok
	}}, nil
}

// closeAndSign closes db, which seals every event it holds, then signs a
// checkpoint of the whole chain.
func closeAndSign(db *local.DB, s *trust.Signer) error {
	err := db.Close()
	if s != nil {
		err = errors.Join(err, s.Checkpoint(time.Now()))
	}
	return err
}

func checkpointCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "checkpoint",
		Short: "Signed checkpoints of the hash chain, for an external witness",
		Long: `serve, import and tail sign checkpoints of the data folder's hash chain
(events covered, chain head, time) with an Ed25519 key and append them to
DATA/checkpoints. Copy them somewhere an attacker on this host cannot
write (a file, a git repository, a transparency log) and later run
kubetrail verify --pubkey KEY.pub --checkpoint THAT-COPY (docs/security.md,
"Tamper evidence").`,
	}
	var dir, since, key string
	export := &cobra.Command{
		Use:   "export",
		Short: "Print the signed checkpoints, one JSON line each",
		Example: `  kubetrail checkpoint export --since 24h >> /mnt/witness/kubetrail-checkpoints
  kubetrail checkpoint export --data /var/lib/kubetrail | ssh witness 'cat >> checkpoints'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			lo, _, err := timespec.Range("--since", since, "--until", "", time.Now())
			if err != nil {
				return err
			}
			lines, err := trust.Read(filepath.Join(dir, checkpointsName))
			if err != nil {
				return err
			}
			for _, l := range lines {
				if lo != 0 && l.Time.UnixMicro() < lo {
					continue
				}
				b, err := json.Marshal(l.Checkpoint)
				if err != nil {
					return err
				}
				fmt.Fprintln(e.stdout, string(b))
			}
			return nil
		},
	}
	addDataFlag(export, &dir)
	export.Flags().StringVar(&since, "since", "", "only checkpoints signed at or after this: a duration before now (2h, 7d), an RFC 3339 time or a date")
	pub := &cobra.Command{
		Use:     "pubkey",
		Short:   "Print the public key (PEM) that checks the checkpoints, for verify --pubkey",
		Example: `  kubetrail checkpoint pubkey > kubetrail-checkpoints.pub`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			k, err := trust.LoadOrCreateKey(signingKeyPath(dir, key), false)
			if err != nil {
				return err
			}
			_, err = e.stdout.Write(trust.PublicPEM(k))
			return err
		},
	}
	addDataFlag(pub, &dir)
	pub.Flags().StringVar(&key, "signing-key", "", signingKeyUsage)
	cmd.AddCommand(export, pub)
	return cmd
}
