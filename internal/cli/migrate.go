package cli

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/kubetrail/kubetrail/internal/escape"
	"github.com/kubetrail/kubetrail/internal/migrate"
	"github.com/kubetrail/kubetrail/internal/pipeline"
	"github.com/kubetrail/kubetrail/internal/store"
	"github.com/kubetrail/kubetrail/internal/store/clickhouse"
	"github.com/kubetrail/kubetrail/internal/store/local"
)

func migrateCmd(e *env) *cobra.Command {
	var from, to, cursor, progress string
	var batch, segmentFormat int
	cmd := &cobra.Command{
		Use:   "migrate --from DATA --to clickhouse://HOST:8123/DB",
		Short: "Move stored events between a data folder and ClickHouse, resumably",
		Long: `migrate moves every stored event from one store to the other: from a data
folder to a ClickHouse store (made by kubetrail setup clickhouse), or from
ClickHouse to a data folder. Each event keeps its bytes, its cluster and
the time kubetrail received it, and the destination holds them in the
source's arrival order, so export prints the same on both.

It is resumable. The source is read in arrival order from a cursor that
moves past a batch only once the destination has stored it durably.
Killed at any moment and run again, it goes on from the cursor; the batch
it was storing is sent again, and both stores count an event stored twice
once. Run again after more events were stored in the source, it moves
those. The cursor is kept in the data folder (DATA/migrate/), named after
the ClickHouse store, or where --cursor says.

Progress goes to stderr (a line a second; --progress), and a summary at
the end. The data folder's lock is taken only when it is the destination:
migrating from a folder works while kubetrail serve writes to it, and
moves what was stored when each part was read.`,
		Example: `  kubetrail migrate --from /var/lib/kubetrail --to clickhouse://ch:8123/kubetrail
  kubetrail migrate --from 'clickhouses://kubetrail@ch:8443/kubetrail?password_file=/etc/kubetrail/ch-password' --to ./restored`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if progress != "auto" && progress != "always" && progress != "never" {
				return fmt.Errorf("--progress %q: want auto, always or never", progress)
			}
			if batch < 1 {
				return fmt.Errorf("--batch %d: want at least 1", batch)
			}
			m, err := openMigration(cmd.Context(), e, from, to, cursor, segmentFormat)
			if err != nil {
				return err
			}
			defer m.close()
			show := progress == "always" || progress == "auto" && isTerminal(e.stderr)
			opts := migrate.Options{Cursor: m.cursor, To: m.toName, BatchSize: batch}
			var last time.Time
			opts.Progress = func(p migrate.Progress) {
				if show && !p.Done && time.Since(last) >= time.Second {
					last = time.Now()
					fmt.Fprintf(e.stderr, "migrate: %d events read this run, %d moved in all, %.0f/s\n", p.ThisRun, p.Moved, rate(p.ThisRun, p.Elapsed))
				}
			}
			fmt.Fprintf(e.stderr, "migrate: from %s to %s (cursor %s)\n", escape.Line(m.src.Name()), escape.Line(m.toName), escape.Line(m.cursor))
			p, err := migrate.Run(cmd.Context(), m.src, m.dst, opts)
			resumed := ""
			if p.Resumed {
				resumed = ", resumed at the cursor"
			}
			fmt.Fprintf(e.stderr, "migrate: %d events read this run in %s (%.0f/s%s); %d moved in all, %d of them already in the destination\n",
				p.ThisRun, p.Elapsed.Round(time.Millisecond), rate(p.ThisRun, p.Elapsed), resumed, p.Moved, p.Duplicates)
			if err != nil {
				return err
			}
			return m.close()
		},
	}
	f := cmd.Flags()
	f.StringVar(&from, "from", "", "the store to read: a data folder, or "+store.URLForms)
	f.StringVar(&to, "to", "", "the store to write: a ClickHouse URL when --from is a data folder, a data folder when --from is ClickHouse")
	f.StringVar(&cursor, "cursor", "", "the cursor's path (default: in the data folder, DATA/migrate/, named after the ClickHouse store)")
	f.IntVar(&batch, "batch", 5000, "events per batch at most (a batch also ends where the received time or cluster changes); into ClickHouse, batches are gathered into inserts of up to 32 MiB, and the cursor moves after each insert")
	f.StringVar(&progress, "progress", "auto", "progress lines on stderr: auto (on a terminal), always, never")
	addSegmentFormatFlag(f, &segmentFormat)
	return cmd
}

func rate(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// migration is a source and a destination, opened.
type migration struct {
	src    migrate.Source
	dst    pipeline.Sink
	toName string
	cursor string
	closer func() error
}

func (m *migration) close() error {
	if m.closer == nil {
		return nil
	}
	c := m.closer
	m.closer = nil
	return c()
}

// openMigration opens the two stores --from and --to name: one a data
// folder, the other ClickHouse.
func openMigration(ctx context.Context, e *env, from, to, cursor string, segmentFormat int) (*migration, error) {
	if from == "" || to == "" {
		return nil, errors.New("--from and --to are both required: a data folder and " + store.URLForms)
	}
	fromCH, toCH := store.IsClickHouse(from), store.IsClickHouse(to)
	if fromCH == toCH {
		return nil, fmt.Errorf("--from %q and --to %q: one must be a data folder and the other a ClickHouse store (%s)", clickhouse.Redact(from), clickhouse.Redact(to), store.URLForms)
	}
	url, dir := to, from
	if fromCH {
		url, dir = from, to
	}
	cfg, err := clickhouse.ParseURL(url)
	if err != nil {
		return nil, err
	}
	ch, err := clickhouse.Open(ctx, cfg)
	if err != nil {
		return nil, err
	}
	chName := cfg.Endpoint + "/" + cfg.Database
	sum := sha256.Sum256([]byte(chName))
	m := &migration{cursor: cursor}
	if fromCH {
		db, err := store.OpenLocal(dir, local.Options{Logger: e.logger(), SegmentFormat: segmentFormat})
		if err != nil {
			ch.Close()
			return nil, err
		}
		m.src = migrate.ClickHouse{Store: ch, ID: chName}
		m.dst, m.toName = db, "data folder "+dir
		m.closer = func() error { return errors.Join(db.Close(), ch.Close()) }
		if m.cursor == "" {
			m.cursor = filepath.Join(dir, "migrate", "from-clickhouse-"+hex.EncodeToString(sum[:8])+".cursor")
		}
	} else {
		r, err := local.OpenReader(dir)
		if err != nil {
			ch.Close()
			return nil, fmt.Errorf("--from: %w", err)
		}
		r.Close()
		m.src = migrate.Local{Dir: dir}
		m.dst, m.toName = ch.Bulk(), "ClickHouse "+chName
		m.closer = ch.Close
		if m.cursor == "" {
			m.cursor = filepath.Join(dir, "migrate", "to-clickhouse-"+hex.EncodeToString(sum[:8])+".cursor")
		}
	}
	if err := os.MkdirAll(filepath.Dir(m.cursor), 0o700); err != nil {
		m.close()
		return nil, fmt.Errorf("--cursor: %w", err)
	}
	return m, nil
}
