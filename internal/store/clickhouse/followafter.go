package clickhouse

import (
	"context"
	"io"

	"github.com/kubetrail/kubetrail/internal/store/local"
)

// LastSeq returns the newest arrival stamp in the store, 0 when it is
// empty: where a tail that starts after a snapshot of the store begins
// (FollowAfter).
func (s *Store) LastSeq(ctx context.Context) (uint64, error) {
	var seq uint64
	err := s.c.query(ctx, "SELECT max(seq) FROM "+s.db+".events FORMAT RowBinary", func(body io.Reader) error {
		r := newRowReader(body)
		seq = r.u64()
		return r.err
	})
	return seq, err
}

// FollowAfter starts a live tail whose first Poll gives the selected
// events inserted after seq, and those inserted up to FollowMargin before
// it (which the caller may have seen already: the tail does not know
// them).
func (s *Store) FollowAfter(sel local.Selection, seq uint64) *Follow {
	f := s.Follow(sel)
	f.last = seq
	return f
}
