package pipeline

import (
	"context"
	"sort"

	"github.com/kubetrail/kubetrail/internal/audit"
)

// recordFunc rewrites one record for a decorator: it sets *out to the
// record to hand on, or returns keep false to leave it out (a policy
// dropping it), and says whether it changed; a reject reason refuses the
// record instead. (The record is written through out rather than
// returned: an audit.Record is large, and a second copy of it per event
// cost the webhook's batches 13% in BenchmarkRedactSink.)
type recordFunc func(in audit.Record, out *audit.Record) (keep, changed bool, reject string)

// rewriteBatch hands next the records of b as fn rewrites them. A batch fn
// leaves whole reaches next as it is (the same records, bytes included);
// otherwise a copy holds what fn kept. The rejections next reports are
// mapped back to b's indexes and fn's refusals added, in index order. A
// batch fn leaves empty does not reach next.
func rewriteBatch(ctx context.Context, next Sink, b *Batch, fn recordFunc) (Result, error) {
	var (
		recs    []audit.Record // nil while every record is handed on unchanged
		orig    []int          // orig[j] is the index in b.Records of recs[j]
		refused []Rejection
	)
	var out audit.Record
	for i := range b.Records {
		keep, changed, reject := fn(b.Records[i], &out)
		if reject == "" && keep && !changed && recs == nil {
			continue
		}
		if recs == nil {
			recs = make([]audit.Record, i, len(b.Records))
			copy(recs, b.Records[:i])
			orig = make([]int, i, len(b.Records))
			for k := range orig {
				orig[k] = k
			}
		}
		switch {
		case reject != "":
			refused = append(refused, Rejection{Index: i, Reason: reject})
		case keep:
			recs = append(recs, out)
			orig = append(orig, i)
		}
	}
	if recs == nil {
		return next.Append(ctx, b)
	}
	var res Result
	if len(recs) > 0 {
		nb := *b
		nb.Records = recs
		var err error
		if res, err = next.Append(ctx, &nb); err != nil {
			return res, err
		}
	}
	for k := range res.Rejected {
		res.Rejected[k].Index = orig[res.Rejected[k].Index]
	}
	res.Rejected = append(res.Rejected, refused...)
	sort.Slice(res.Rejected, func(a, b int) bool { return res.Rejected[a].Index < res.Rejected[b].Index })
	return res, nil
}
