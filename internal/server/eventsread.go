package server

import (
	"errors"
	"sort"

	"github.com/kubetrail/kubetrail/internal/store/local"
)

// eventSource is what readEvents needs of a store reader (*local.Reader).
type eventSource interface {
	Select(sel local.Selection, fn func(*local.Hit) error) error
	Span() (count int, minT, maxT int64)
}

// storedHit is a selected event, copied out of the reader's buffers.
type storedHit struct {
	cluster        string
	time, received int64
	raw            []byte
}

// errEnough stops a Select once enough events were kept.
var errEnough = errors.New("enough events")

// readEvents returns the events of sel in the order sortBy (time, -time or
// stored, as GET /api/v1/events takes it): all of them with limit 0, else
// the first limit of that order, or with tail the last limit (a follower's
// snapshot, like tail -n). It stops reading once it holds them: for
// stored, after limit matches; for a time order, it selects windows of
// time from the end it needs, the first as wide as limit events would
// take if they were spread evenly, each next one four times wider, until
// limit matches are held or the range is read. The answer is what
// reading every match, sorting stably and cutting would give: windows do
// not overlap, so events of equal time are in one window, in stored order.
func readEvents(rd eventSource, sel local.Selection, sortBy string, limit int, tail bool) ([]storedHit, error) {
	var hits []storedHit
	keep := func(h *local.Hit) error {
		hits = append(hits, storedHit{h.Cluster, h.Time, h.Received, append([]byte(nil), h.Raw...)})
		return nil
	}
	count, minT, _ := rd.Span()
	switch {
	case limit == 0 || limit >= count || minT <= 0 || sortBy == "stored" && tail:
		// All of them; or the last of the stored order, which only the
		// whole read finds; or times a window cannot bound (0 leaves a
		// side of a selection open).
		if err := rd.Select(sel, keep); err != nil {
			return nil, err
		}
	case sortBy == "stored":
		err := rd.Select(sel, func(h *local.Hit) error {
			keep(h)
			if len(hits) >= limit {
				return errEnough
			}
			return nil
		})
		if err != nil && err != errEnough {
			return nil, err
		}
	default:
		// The first of -time, or the last of time, are the newest.
		newest := (sortBy == "-time") != tail
		if err := readWindows(rd, sel, limit, newest, keep, func() int { return len(hits) }); err != nil {
			return nil, err
		}
	}
	if sortBy != "stored" { // Select gives the stored order
		sort.SliceStable(hits, func(i, j int) bool {
			if sortBy == "-time" {
				return hits[i].time > hits[j].time
			}
			return hits[i].time < hits[j].time
		})
	}
	if limit > 0 && len(hits) > limit {
		if tail {
			hits = hits[len(hits)-limit:]
		} else {
			hits = hits[:limit]
		}
	}
	return hits, nil
}

// readWindows selects sel in windows of time from its newest (or oldest)
// end, giving each hit to keep, until held() reaches limit or the whole
// range was read. The store must hold more than limit events, all at
// positive times.
func readWindows(rd eventSource, sel local.Selection, limit int, newest bool, keep func(*local.Hit) error, held func() int) error {
	count, minT, maxT := rd.Span()
	// [lo, hi) is the range to read: the store's, cut by the selection's.
	lo, hi := minT, maxT+1
	if sel.Since != 0 && sel.Since > lo {
		lo = sel.Since
	}
	if sel.Until != 0 && sel.Until < hi {
		hi = sel.Until
	}
	width := max((hi-lo)/int64(count)*int64(limit), 1_000_000) // at least a second
	for from, to := lo, hi; from < to; width *= 4 {
		w := sel
		if newest {
			w.Since, w.Until = max(to-width, from), to
			to = w.Since
		} else {
			w.Since, w.Until = from, min(from+width, to)
			from = w.Until
		}
		if err := rd.Select(w, keep); err != nil {
			return err
		}
		if held() >= limit {
			break
		}
	}
	return nil
}
