package local

import (
	"fmt"
	"path/filepath"
	"sort"
	"strings"

	"github.com/kubetrail/kubetrail/internal/vfs"
	"github.com/kubetrail/kubetrail/internal/wal"
)

// scanWAL calls emit for every event of WAL segment path's valid records
// and reports every damaged stretch and every record that is not a batch
// to dl, so that one damaged record costs only itself. A torn tail is not
// reported when the segment is the newest (newest): a writer may be
// appending to it, and what a crash left there was never acknowledged.
//
// It reports whether any record was left out, torn tail included.
func scanWAL(fs vfs.FS, path string, newest bool, dl *damageList, emit func(entry) error) (skipped bool, err error) {
	res, err := wal.ScanFS(fs, path, func(off int64, p []byte) error {
		if err := validBatch(p); err != nil {
			skipped = true
			dl.add(path, fmt.Sprintf("record at byte %d: %v", off, err))
			return nil
		}
		return decodeBatch(p, emit)
	})
	if err != nil {
		return skipped, err
	}
	for _, d := range res.Damage {
		if d.Torn && newest {
			continue
		}
		skipped = true
		dl.add(path, describeWALDamage(d))
	}
	return skipped, nil
}

func describeWALDamage(d wal.Damage) string {
	return fmt.Sprintf("bytes %d-%d: %s", d.Offset, d.Offset+d.Length, d.Reason)
}

// validBatch checks that a WAL record is a whole batch, so that its events
// are emitted all or none.
func validBatch(p []byte) error {
	return decodeBatch(p, func(entry) error { return nil })
}

// scanForSeal reads a closed WAL segment for sealing: it calls emit for
// every event of every valid batch, and returns every stretch that holds
// no event: damaged bytes, a tail cut short (in a closed segment that is
// damage, not a crash), and records whose checksum holds but which are not
// a batch (emitted none of their events).
func scanForSeal(fs vfs.FS, path string, emit func(entry) error) ([]wal.Damage, error) {
	var bad []wal.Damage
	res, err := wal.ScanFS(fs, path, func(off int64, p []byte) error {
		if err := validBatch(p); err != nil {
			// Length is the payload's for now: the header's is added
			// once the scan knows the format.
			bad = append(bad, wal.Damage{Offset: off, Length: int64(len(p)), Reason: err.Error()})
			return nil
		}
		return decodeBatch(p, emit)
	})
	if err != nil {
		return nil, err
	}
	for i := range bad {
		bad[i].Length += int64(wal.HeaderLen(res.Version))
	}
	bad = append(bad, res.Damage...)
	sort.Slice(bad, func(i, j int) bool { return bad[i].Offset < bad[j].Offset })
	return bad, nil
}

// quarantineWAL keeps the damaged stretches of WAL segment path aside,
// durably, before the segment is removed.
func (db *DB) quarantineWAL(path string, bad []wal.Damage) error {
	if len(bad) == 0 {
		return nil
	}
	f, err := db.fs.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	for _, d := range bad {
		buf := make([]byte, d.Length)
		if _, err := f.ReadAt(buf, d.Offset); err != nil {
			return fmt.Errorf("read damaged bytes of %s: %w", path, err)
		}
		name := fmt.Sprintf("wal-%s-at-%d.bad", strings.TrimSuffix(filepath.Base(path), filepath.Ext(path)), d.Offset)
		q, err := quarantine(db.fs, db.dir, name, buf, fmt.Sprintf("%s %s", path, describeWALDamage(d)))
		if err != nil {
			return err
		}
		db.stats.Quarantined.Add(1)
		db.log.Error("quarantined damaged WAL bytes; every valid record around them is kept",
			"segment", path, "offset", d.Offset, "bytes", d.Length, "reason", d.Reason, "kept_in", q)
	}
	return nil
}
