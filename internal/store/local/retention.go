package local

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"time"

	"github.com/kubetrail/kubetrail/internal/pipeline"
	"github.com/kubetrail/kubetrail/internal/vfs"
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
	// Sign, when not nil, signs each record retention appends to
	// segments/RETIRED (trust.SignRetired with the checkpoint key), so
	// that verify --pubkey tells a deletion by retention from a deletion
	// with a forged record.
	Sign func(record string) string
}

// Enforce deletes the segments the retention rules say to drop and returns
// how many it deleted and their bytes. Readers that have a deleted segment
// open keep reading it (the file goes when they close it). It runs one at a
// time with Compact.
func (db *DB) Enforce(r Retention, now time.Time) (int, int64, error) {
	if r.MaxAge <= 0 && r.MaxBytes <= 0 {
		return 0, 0, nil
	}
	db.maintMu.Lock()
	defer db.maintMu.Unlock()
	if db.closed.Load() {
		return 0, 0, pipeline.ErrClosed
	}
	segDir := filepath.Join(db.dir, segmentDir)
	segs, err := listSegments(db.fs, segDir)
	if err != nil {
		return 0, 0, err
	}
	all, err := db.segInfos(segs)
	if err != nil {
		return 0, 0, err
	}
	var total int64
	for _, s := range all {
		total += s.size
	}
	// Oldest data first: by newest event, then by arrival.
	sort.SliceStable(all, func(i, j int) bool { return all[i].maxT < all[j].maxT })
	cutoff := now.Add(-r.MaxAge).UnixMicro()
	var drop []segInfo
	var freed int64
	for _, s := range all {
		tooOld := r.MaxAge > 0 && s.maxT < cutoff
		tooBig := r.MaxBytes > 0 && total-freed > r.MaxBytes
		if !tooOld && !tooBig {
			continue
		}
		drop = append(drop, s)
		freed += s.size
	}
	if len(drop) == 0 {
		return 0, 0, nil
	}
	// Under the folder lock, so that a reader listing meanwhile still sees
	// every segment it does not see deleted.
	unlock := lockSegments(db.fs, segDir, vfs.LockExclusive)
	// Out of the manifest first: a segment deleted but still listed would
	// be reported missing.
	gone := make([]string, len(drop))
	recs := make([]retiredSeg, len(drop))
	for i, s := range drop {
		gone[i] = s.path
		if recs[i], err = retiredOf(db.fs, s.path); err != nil {
			unlock()
			return 0, 0, fmt.Errorf("retention: %w", err)
		}
	}
	// Recorded before the segments leave the manifest: a segment gone but
	// not recorded would be reported as deleted by an attacker.
	if err := retire(db.fs, segDir, recs, r.Sign, db.opts.NoSync); err != nil {
		unlock()
		return 0, 0, err
	}
	if err := updateManifest(db.fs, segDir, nil, gone, db.opts.NoSync); err != nil {
		unlock()
		return 0, 0, err
	}
	n, freed := 0, int64(0)
	for _, s := range drop {
		db.dd.removeSegment(s.path)
		delete(db.infos, s.path)
		if err := db.fs.Remove(s.path); err != nil {
			unlock()
			return n, freed, err
		}
		n++
		freed += s.size
	}
	unlock()
	db.log.Info("retention deleted segments", "segments", n, "bytes", freed, "max_age", r.MaxAge, "max_bytes", r.MaxBytes)
	if err := db.fs.SyncDir(segDir); err != nil {
		return n, freed, fmt.Errorf("sync segments folder: %w", err)
	}
	return n, freed, nil
}

// RunRetention enforces r every interval until ctx ends.
func (db *DB) RunRetention(ctx context.Context, r Retention, interval time.Duration) {
	if r.MaxAge <= 0 && r.MaxBytes <= 0 {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if _, _, err := db.Enforce(r, time.Now()); err != nil && !errors.Is(err, pipeline.ErrClosed) {
			db.log.Error("retention", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
