package local

import (
	"errors"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/kubetrail/kubetrail/internal/vfs"
	"github.com/kubetrail/kubetrail/internal/wal"
)

// folderView is what a reader takes of a data folder before it reads the
// WAL's events: the live segments, open, the WAL segments on disk, and the
// damage found listing them (segments or WAL segments listed and missing,
// a damaged ledger, files in quarantine).
type folderView struct {
	segs    []segmentFile
	walSegs []uint64
	damage  []Damage
}

// readFolder lists dir and opens its live segments (through cache, when
// not nil). The WAL first: a WAL segment sealed after this listing is read
// from the WAL, or, once its file is gone, from the segment that holds it,
// which is not among those listed next. The ledger before the listings,
// and again after (missingWAL). The caller must close the segments.
func readFolder(fs vfs.FS, dir string, cache *segCache) (*folderView, error) {
	walPath := filepath.Join(dir, walDir)
	segPath := filepath.Join(dir, segmentDir)
	ledger, _, ldamage, err := readLedger(fs, walPath)
	if err != nil {
		return nil, err
	}
	walSegs, err := wal.ListSegmentsFS(fs, walPath)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	segs, damage, err := openSnapshot(fs, segPath, cache)
	if err != nil {
		return nil, err
	}
	missing, err := missingWAL(fs, walPath, ledger, walSegs, segs)
	if err != nil {
		closeSnapshot(segs)
		return nil, err
	}
	q, err := quarantined(fs, dir)
	if err != nil {
		closeSnapshot(segs)
		return nil, err
	}
	v := &folderView{segs: segs, walSegs: walSegs}
	for _, l := range [][]Damage{damage, ldamage, missing, q} {
		v.damage = append(v.damage, l...)
	}
	return v, nil
}

// sharedView is the folderView a DB's readers share until the folder
// changes: at 2M events, listing the folders, reading the manifest and
// the ledger and checking every segment file on each request was two
// thirds of a warm count's time (issue 12). gen is the DB's change count
// when the view's listing began; the view serves only while the count is
// unchanged. The view holds one reference on each of its segments,
// released when a newer view replaces it or the DB closes.
type sharedView struct {
	*folderView
	gen uint64
}

// views is a DB's shared folder view.
type views struct {
	// changes counts the DB's changes to its folder: every one goes
	// through the DB's FS, which counts them (vfs.CountChanges).
	changes atomic.Uint64
	// mu is held while a view is taken or replaced: one request lists the
	// folder after a change, the others wait for its view.
	mu  sync.Mutex
	cur *sharedView
}

// takeView returns the folder view of the DB's readers, listed anew when the
// folder changed since the current one was listed, with one reference
// taken on each segment for the caller, which must close them.
func (db *DB) takeView() (*folderView, error) {
	v := &db.views
	gen := v.changes.Load()
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.cur == nil || v.cur.gen != gen {
		fv, err := readFolder(db.fs, db.dir, db.segs)
		if err != nil {
			return nil, err
		}
		if old := v.cur; old != nil {
			closeSnapshot(old.segs)
		}
		v.cur = &sharedView{folderView: fv, gen: gen}
	}
	db.segs.hold(v.cur.segs)
	return v.cur.folderView, nil
}

// closeView releases the current view's segments; the DB is closing.
func (db *DB) closeView() {
	db.views.mu.Lock()
	defer db.views.mu.Unlock()
	if v := db.views.cur; v != nil {
		closeSnapshot(v.segs)
		db.views.cur = nil
	}
}
