package local

import (
	"context"
	"os"
	"path/filepath"
	"sort"
	"time"
)

// Retention bounds what the store keeps. Whole segments go, oldest first;
// the WAL is never cut, so an event is dropped only once it is sealed.
type Retention struct {
	// MaxAge drops segments whose newest event is older than this; 0 keeps
	// every age.
	MaxAge time.Duration
	// MaxBytes drops the oldest segments while all segments together take
	// more than this; 0 sets no limit.
	MaxBytes int64
}

// Enforce deletes the segments the retention rules say to drop and returns
// how many it deleted and their bytes. Readers that have a deleted segment
// open keep reading it (the file goes when they close it).
func (db *DB) Enforce(r Retention, now time.Time) (int, int64, error) {
	if r.MaxAge <= 0 && r.MaxBytes <= 0 {
		return 0, 0, nil
	}
	segs, err := listSegments(filepath.Join(db.dir, segmentDir))
	if err != nil {
		return 0, 0, err
	}
	type seg struct {
		segmentFile
		size, maxT int64
	}
	var all []seg
	var total int64
	for _, s := range segs {
		st, err := os.Stat(s.path)
		if err != nil {
			continue // sealed and compacted away meanwhile
		}
		rd, err := openSegment(s.path)
		if err != nil {
			return 0, 0, err
		}
		all = append(all, seg{s, st.Size(), rd.meta.MaxTime})
		rd.close()
		total += st.Size()
	}
	// Oldest data first: by newest event, then by arrival.
	sort.SliceStable(all, func(i, j int) bool { return all[i].maxT < all[j].maxT })
	cutoff := now.Add(-r.MaxAge).UnixMicro()
	n, freed := 0, int64(0)
	for _, s := range all {
		tooOld := r.MaxAge > 0 && s.maxT < cutoff
		tooBig := r.MaxBytes > 0 && total-freed > r.MaxBytes
		if !tooOld && !tooBig {
			continue
		}
		db.dd.removeSegment(s.path)
		if err := os.Remove(s.path); err != nil {
			return n, freed, err
		}
		n++
		freed += s.size
	}
	if n > 0 {
		db.log.Info("retention deleted segments", "segments", n, "bytes", freed, "max_age", r.MaxAge, "max_bytes", r.MaxBytes)
	}
	return n, freed, syncDir(filepath.Join(db.dir, segmentDir))
}

// RunRetention enforces r every interval until ctx ends.
func (db *DB) RunRetention(ctx context.Context, r Retention, interval time.Duration) {
	if r.MaxAge <= 0 && r.MaxBytes <= 0 {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if _, _, err := db.Enforce(r, time.Now()); err != nil {
			db.log.Error("retention", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
