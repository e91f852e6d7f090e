package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"time"

	"github.com/kubetrail/kubetrail/internal/store"
	"github.com/kubetrail/kubetrail/internal/store/clickhouse"
	"github.com/kubetrail/kubetrail/internal/store/local"
)

// reader is one request's read of the store, which every read endpoint
// (events, stats, investigations, policy simulation) asks through. On the
// embedded store it is a *local.Reader: one snapshot of the folder for the
// whole request (the windows of readEvents see the same events), which
// also lists the damaged data the answer left out, for DamageHeader. On
// ClickHouse it is the store.Reader bound to the request's context
// (storeReader). Hits are valid only during a callback.
type reader interface {
	Select(sel local.Selection, fn func(*local.Hit) error) error
	Span() (count int, minT, maxT int64)
	StatsOf(sel local.Selection, o local.StatsOptions) ([]local.Group, local.Totals, error)
	// Damaged lists what the answers so far left out; nil when nothing
	// was. On ClickHouse: the serve's collector's damaged WAL segments.
	Damaged() []local.Damage
	Close() error
}

var (
	_ reader = (*local.Reader)(nil)
	_ reader = storeReader{}
)

// openReader opens the request's read of the store: a snapshot of the
// embedded store, or the store.Reader of cfg.Store.
func (s *Server) openReader(ctx context.Context) (reader, error) {
	if s.db != nil {
		rd, err := s.db.OpenReader()
		if err != nil {
			return nil, err
		}
		return rd, nil
	}
	rd := storeReader{ctx: ctx, r: s.cfg.Store}
	if s.cfg.Collector != nil {
		rd.damage = s.cfg.Collector.Damage
	}
	return rd, nil
}

// storeReader gives a store.Reader (ClickHouse) the shape of a reader,
// bound to the request's context: a client that goes away cancels the
// query it asked.
type storeReader struct {
	ctx context.Context
	r   store.Reader
	// damage lists what the serve's collector lost (CollectorMode.Damage).
	damage func() []local.Damage
}

func (s storeReader) Select(sel local.Selection, fn func(*local.Hit) error) error {
	return s.r.Select(s.ctx, sel, fn)
}

func (s storeReader) StatsOf(sel local.Selection, o local.StatsOptions) ([]local.Group, local.Totals, error) {
	return s.r.Stats(s.ctx, sel, o)
}

// Span serves readEvents' choice of windows only; a failure reads as an
// empty store, which makes it read the selection whole, and a store that
// fails will say so in that read.
func (s storeReader) Span() (int, int64, int64) {
	n, lo, hi, err := s.r.Span(s.ctx)
	if err != nil {
		return 0, 0, 0
	}
	return n, lo, hi
}

// Damaged is what the serve's own collector lost before ClickHouse had
// it; ClickHouse's own damage is its to report (docs/clickhouse.md).
func (s storeReader) Damaged() []local.Damage {
	if s.damage == nil {
		return nil
	}
	return s.damage()
}

// Close leaves the store open: it is the server's, closed by its owner.
func (storeReader) Close() error { return nil }

// storeFollower is a store whose new events a follow=1 answer can poll
// for (ClickHouse): its newest arrival stamp before the snapshot is read,
// then a tail from there.
type storeFollower interface {
	LastSeq(ctx context.Context) (uint64, error)
	FollowAfter(sel local.Selection, seq uint64) *clickhouse.Follow
}

var _ storeFollower = (*clickhouse.Store)(nil)

// errNoFollow answers follow=1 on a store that cannot be tailed.
var errNoFollow = errors.New("follow=1: this server's store cannot be followed")

// followStore starts the tail of a follow=1 answer on a store other than
// the embedded one, from the store's newest event before the snapshot is
// read: an event inserted meanwhile is in the snapshot or in the tail
// (and, in both, sent once: pollStore skips the snapshot's keys).
func (s *Server) followStore(ctx context.Context, sel local.Selection) (*clickhouse.Follow, error) {
	f, ok := s.cfg.Store.(storeFollower)
	if !ok {
		return nil, errNoFollow
	}
	seq, err := f.LastSeq(ctx)
	if err != nil {
		return nil, err
	}
	return f.FollowAfter(sel, seq), nil
}

// followErrorCode is the status of a follow that cannot start.
func followErrorCode(err error) int {
	if errors.Is(err, errNoFollow) {
		return http.StatusNotImplemented
	}
	return http.StatusInternalServerError
}

// storePollEvery is how often a follow=1 answer on ClickHouse asks for
// new events, as query --follow --store does.
const storePollEvery = time.Second

// pollStore is the live part of a follow=1 answer on ClickHouse: every
// storePollEvery, the events inserted since, in time order within a poll,
// each once (seen holds the keys already sent), until the client goes,
// the server stops, or the store fails (said in a last error line).
func (s *Server) pollStore(w http.ResponseWriter, r *http.Request, tail *clickhouse.Follow, seen map[local.Key]bool,
	write func(cluster string, received int64, raw []byte) error) {
	flusher, _ := w.(http.Flusher)
	flush := func() {
		if flusher != nil {
			flusher.Flush()
		}
	}
	flush()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-s.stopping:
			w.Write([]byte(`{"error":"the server is shutting down; the stream ends here"}` + "\n"))
			flush()
			return
		case <-time.After(storePollEvery):
		}
		var hits []storedHit
		err := tail.Poll(r.Context(), func(h *local.Hit) error {
			if k := local.KeyOf(h.Cluster, h.Raw); !seen[k] {
				seen[k] = true
				hits = append(hits, storedHit{h.Cluster, h.Time, h.Received, append([]byte(nil), h.Raw...)})
			}
			return nil
		})
		if r.Context().Err() != nil {
			return
		}
		if err != nil {
			fmt.Fprintf(w, "{\"error\":%q}\n", "reading the store: "+err.Error())
			flush()
			return
		}
		sort.SliceStable(hits, func(i, j int) bool { return hits[i].time < hits[j].time })
		for _, h := range hits {
			if err := write(h.cluster, h.received, h.raw); err != nil {
				return
			}
		}
		flush()
	}
}
