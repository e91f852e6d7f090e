package store

import (
	"context"
	"errors"

	"github.com/kubetrail/kubetrail/internal/pipeline"
	"github.com/kubetrail/kubetrail/internal/store/local"
)

// Local is the embedded store behind the Store interface. Each question
// opens a fresh view of the folder, so it sees every event durable when it
// began. A Local made by OpenReader takes no lock and cannot Append.
type Local struct {
	dir string
	db  *local.DB // set when the folder is held open for writing
}

// OpenLocal opens the embedded store in dir for writing (it takes the
// folder's lock, as serve and import do).
func OpenLocal(dir string, opts local.Options) (*Local, error) {
	db, err := local.Open(dir, opts)
	if err != nil {
		return nil, err
	}
	return &Local{dir: dir, db: db}, nil
}

var errReadOnly = errors.New("BUG: Append on a store opened for reading")

// Append stores a batch durably (local.DB.Append).
func (l *Local) Append(ctx context.Context, b *pipeline.Batch) (pipeline.Result, error) {
	if l.db == nil {
		return pipeline.Result{}, errReadOnly
	}
	return l.db.Append(ctx, b)
}

// view opens a reader of the folder: the writer's own when held open.
func (l *Local) view() (*local.Reader, error) {
	if l.db != nil {
		return l.db.OpenReader()
	}
	return local.OpenReader(l.dir)
}

// withDamage turns what a reader skipped into the error a command reports
// (exit status 3), once the answer is complete.
func withDamage(r *local.Reader, err error) error {
	if err != nil {
		return err
	}
	if d := r.Damaged(); len(d) > 0 {
		return &local.DamageError{List: d}
	}
	return nil
}

// Select calls fn for every selected event (local.Reader.Select).
func (l *Local) Select(ctx context.Context, sel local.Selection, fn func(*local.Hit) error) error {
	r, err := l.view()
	if err != nil {
		return err
	}
	defer r.Close()
	return withDamage(r, r.Select(sel, func(h *local.Hit) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		return fn(h)
	}))
}

// Count counts the selected events (local.Reader.CountMatching).
func (l *Local) Count(ctx context.Context, sel local.Selection) (int64, error) {
	r, err := l.view()
	if err != nil {
		return 0, err
	}
	defer r.Close()
	n, err := r.CountMatching(sel)
	return n, withDamage(r, err)
}

// Stats groups the selected events (local.Reader.StatsOf).
func (l *Local) Stats(ctx context.Context, sel local.Selection, o local.StatsOptions) ([]local.Group, local.Totals, error) {
	r, err := l.view()
	if err != nil {
		return nil, local.Totals{}, err
	}
	defer r.Close()
	g, t, err := r.StatsOf(sel, o)
	return g, t, withDamage(r, err)
}

// Export calls fn for every stored event in arrival order (local.Scan).
func (l *Local) Export(ctx context.Context, o local.ScanOptions, fn func(local.Stored) error) error {
	return local.Scan(l.dir, o, func(s local.Stored) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		return fn(s)
	})
}

// Span returns what the folder holds (local.Reader.Span).
func (l *Local) Span(ctx context.Context) (int, int64, int64, error) {
	r, err := l.view()
	if err != nil {
		return 0, 0, 0, err
	}
	defer r.Close()
	n, lo, hi := r.Span()
	return n, lo, hi, nil
}

// Close closes the folder when it was opened for writing.
func (l *Local) Close() error {
	if l.db != nil {
		return l.db.Close()
	}
	return nil
}
