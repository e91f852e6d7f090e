package cli

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/kubetrail/kubetrail/internal/store"
	"github.com/kubetrail/kubetrail/internal/store/local"
)

// storeFlag is --store: the store a command reads instead of the embedded
// one in --data. query, stats, export and the investigations take it.
type storeFlag struct{ url string }

func (s *storeFlag) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&s.url, "store", "", "read the store at this URL instead of --data: "+store.URLForms+" (after kubetrail setup clickhouse)")
}

// open opens the store --store names. Only meaningful when url is set.
func (s *storeFlag) open(ctx context.Context, remote *remoteFlags) (store.Reader, error) {
	if remote != nil && remote.url != "" {
		return nil, errors.New("--store and --server name two places to read: give one")
	}
	r, err := store.OpenReader(ctx, s.url, "")
	if err != nil {
		return nil, fmt.Errorf("--store: %w", err)
	}
	return r, nil
}

// eventSource is what query needs of a store: local.Reader has it, and
// storeSource gives it to any store.Reader.
type eventSource interface {
	Select(sel local.Selection, fn func(*local.Hit) error) error
	CountMatching(sel local.Selection) (int64, error)
	Span() (n int, minT, maxT int64)
}

// storeSource binds a store.Reader to the command's context.
type storeSource struct {
	ctx context.Context
	r   store.Reader
}

func (s storeSource) Select(sel local.Selection, fn func(*local.Hit) error) error {
	return s.r.Select(s.ctx, sel, fn)
}

func (s storeSource) CountMatching(sel local.Selection) (int64, error) { return s.r.Count(s.ctx, sel) }

// Span says what the store holds; it serves only to explain an empty
// answer, so a failure reads as an empty store.
func (s storeSource) Span() (int, int64, int64) {
	n, lo, hi, err := s.r.Span(s.ctx)
	if err != nil {
		return 0, 0, 0
	}
	return n, lo, hi
}
