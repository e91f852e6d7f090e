package local

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/kubetrail/kubetrail/internal/vfs"
)

// The segments folder's MANIFEST lists the segments that must be there
// (docs/adr/0007-segment-manifest.md), so that a segment deleted or renamed
// behind kubetrail's back is reported instead of silently answering without
// its events. It is text, one segment file name a line after a header line,
// sorted, so that an operator can read it and, to accept the loss of a
// segment, delete its line:
//
//	kubetrail segments manifest 1
//	0000000000000001-0000000000000001.kts
//	0000000000000002-0000000000000007.kts
//
// A name is added once its segment is renamed into place (sealing,
// compaction) and removed before its file is deleted (compaction,
// retention, quarantine), under the exclusive segments lock; readers
// compare it with the folder under the shared lock. So a listed segment
// that is missing was lost, while a segment that is not listed was only
// renamed into place just before a crash (or is being so now): it is read
// normally, and the next Open lists it. The file is replaced atomically:
// written to a temporary name, synced, renamed, and the folder synced.
const (
	manifestName   = "MANIFEST"
	manifestHeader = "kubetrail segments manifest 1"
	manifestTemp   = ".tmp-manifest"
)

// readManifest returns the segment names dir's manifest lists; ok is false
// when there is none. Lines that are not segment names are returned as
// Damage and otherwise ignored.
func readManifest(fs vfs.FS, dir string) (names map[string]bool, ok bool, damage []Damage, err error) {
	path := filepath.Join(dir, manifestName)
	b, ok, err := readListFile(fs, path)
	if !ok || err != nil {
		return nil, false, nil, err
	}
	names = map[string]bool{}
	damage = parseListFile(path, b, manifestHeader, "a segment file name", func(line string) bool {
		if _, _, ok := segmentRange(line); !ok || strings.ContainsAny(line, "/\\") {
			return false
		}
		names[line] = true
		return true
	})
	return names, true, damage, nil
}

// readListFile reads the MANIFEST or the LEDGER; ok is false when there is
// none.
func readListFile(fs vfs.FS, path string) (b []byte, ok bool, err error) {
	b, err = vfs.ReadFile(fs, path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("read %s: %w", path, err)
	}
	return b, true, nil
}

// parseListFile reads a header line, then one entry a line, each given to
// add; an entry add refuses, a wrong header and a file cut short are
// returned as Damage.
func parseListFile(path string, b []byte, header, what string, add func(line string) bool) []Damage {
	var damage []Damage
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		switch {
		case n == 1 && line == header:
		case n == 1:
			damage = append(damage, Damage{Path: path, Reason: fmt.Sprintf("line 1: %q is not the header %q", line, header)})
		case line == "":
		default:
			if !add(line) {
				damage = append(damage, Damage{Path: path, Reason: fmt.Sprintf("line %d: %q is not %s", n, line, what)})
			}
		}
	}
	if len(b) > 0 && b[len(b)-1] != '\n' {
		damage = append(damage, Damage{Path: path, Reason: "it is cut short (no newline at its end)"})
	}
	return damage
}

// writeManifest replaces dir's manifest with names, atomically.
func writeManifest(fs vfs.FS, dir string, names map[string]bool, noSync bool) error {
	list := make([]string, 0, len(names))
	for n := range names {
		list = append(list, n)
	}
	sort.Strings(list)
	var b bytes.Buffer
	b.WriteString(manifestHeader + "\n")
	for _, n := range list {
		b.WriteString(n + "\n")
	}
	tmp := filepath.Join(dir, manifestTemp)
	f, err := fs.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("write segments manifest: %w", err)
	}
	if _, err := f.Write(b.Bytes()); err != nil {
		f.Close()
		return fmt.Errorf("write segments manifest: %w", err)
	}
	if !noSync {
		if err := f.Sync(); err != nil {
			f.Close()
			return fmt.Errorf("sync segments manifest: %w", err)
		}
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write segments manifest: %w", err)
	}
	if err := fs.Rename(tmp, filepath.Join(dir, manifestName)); err != nil {
		return fmt.Errorf("rename segments manifest: %w", err)
	}
	if noSync {
		return nil
	}
	if err := fs.SyncDir(dir); err != nil {
		return fmt.Errorf("sync segments folder: %w", err)
	}
	return nil
}

// updateManifest removes the segments remove from dir's manifest and adds
// add (paths or names) that are there, creating the manifest when there is
// none. The caller must hold the exclusive segments lock (lockSegments).
func updateManifest(fs vfs.FS, dir string, add, remove []string, noSync bool) error {
	names, _, _, err := readManifest(fs, dir)
	if err != nil {
		return err
	}
	if names == nil {
		names = map[string]bool{}
	}
	changed := false
	for _, p := range remove {
		if n := filepath.Base(p); names[n] {
			delete(names, n)
			changed = true
		}
	}
	for _, p := range add {
		n := filepath.Base(p)
		if names[n] {
			continue
		}
		// Only a file that is there: retention may have deleted a segment
		// sealed a moment ago before its sealer came to list it.
		if _, err := fs.Stat(filepath.Join(dir, n)); err != nil {
			continue
		}
		names[n] = true
		changed = true
	}
	if _, err := fs.Stat(filepath.Join(dir, manifestName)); err == nil && !changed {
		return nil
	}
	return writeManifest(fs, dir, names, noSync)
}

// compareManifest compares the segment files of dir (all, superseded ones
// included) with its manifest: a listed segment that is missing is
// Damage. Without a manifest (a folder no kubetrail of this version has
// opened for writing) there is nothing to compare.
func compareManifest(fs vfs.FS, dir string, files []segmentFile) ([]Damage, error) {
	names, ok, damage, err := readManifest(fs, dir)
	if err != nil || !ok {
		return nil, err
	}
	present := map[string]bool{}
	for _, f := range files {
		present[filepath.Base(f.path)] = true
	}
	var missing []string
	for n := range names {
		if !present[n] {
			missing = append(missing, n)
		}
	}
	sort.Strings(missing)
	for _, n := range missing {
		damage = append(damage, Damage{Path: filepath.Join(dir, n), Reason: "missing: listed in " + manifestName + "; its events are left out (restore the file, or delete its line from " + manifestName + " to accept the loss)"})
	}
	return damage, nil
}

// checkManifest reports what is wrong with dir's segments folder as a
// whole, for verify: no manifest, lines that are not segment names,
// listed segments that are missing, and segments present but not listed
// (which a crash can leave, and which the next Open lists: reported so
// that verify shows every difference).
func checkManifest(fs vfs.FS, dir string) []Damage {
	segDir := filepath.Join(dir, segmentDir)
	files, err := listSegmentFiles(fs, segDir)
	if err != nil {
		return []Damage{{Path: segDir, Reason: fmt.Sprintf("cannot list: %v", err)}}
	}
	names, ok, damage, err := readManifest(fs, segDir)
	if err != nil {
		return []Damage{{Path: filepath.Join(segDir, manifestName), Reason: err.Error()}}
	}
	if !ok {
		if len(files) == 0 {
			return nil
		}
		return []Damage{{Path: filepath.Join(segDir, manifestName), Reason: "missing: deleted segments cannot be noticed (kubetrail serve writes it when it opens the folder)"}}
	}
	missing, err := compareManifest(fs, segDir, files)
	if err != nil {
		return []Damage{{Path: filepath.Join(segDir, manifestName), Reason: err.Error()}}
	}
	// compareManifest repeats the line damage readManifest gave.
	damage = missing
	live, superseded := splitSuperseded(files)
	isSuperseded := map[string]bool{}
	for _, s := range superseded {
		isSuperseded[s.path] = true
	}
	for _, f := range files {
		if !names[filepath.Base(f.path)] && !isSuperseded[f.path] {
			damage = append(damage, Damage{Path: f.path, Reason: "not listed in " + manifestName + " (left by a crash; the next start lists it)"})
		}
	}
	damage = append(damage, overlaps(live)...)
	return damage
}

// overlaps reports live segments whose WAL ranges overlap without one
// holding the other: their events would be counted twice. Compaction and
// sealing never leave that; renamed or copied files do.
func overlaps(live []segmentFile) []Damage {
	var out []Damage
	for i := 1; i < len(live); i++ {
		if p := live[i-1]; live[i].first <= p.last {
			out = append(out, Damage{Path: live[i].path, Reason: fmt.Sprintf("its WAL range %d-%d overlaps that of %s (%d-%d): files were renamed or copied", live[i].first, live[i].last, filepath.Base(p.path), p.first, p.last)})
		}
	}
	return out
}

// reconcileManifest, on Open, lists every live segment in the manifest,
// creating it for a folder written before it existed and adding segments
// renamed into place just before a crash. A listed segment that is missing
// stays listed, so that every reader keeps reporting it, and is logged.
func (db *DB) reconcileManifest() error {
	dir := filepath.Join(db.dir, segmentDir)
	unlock := lockSegments(db.fs, dir, vfs.LockExclusive)
	defer unlock()
	all, err := listSegmentFiles(db.fs, dir)
	if err != nil {
		return err
	}
	live, _ := splitSuperseded(all)
	missing, err := compareManifest(db.fs, dir, all)
	if err != nil {
		return err
	}
	for _, d := range missing {
		db.log.Error("segment damaged or missing; its events are left out of every answer", "path", d.Path, "reason", d.Reason)
	}
	add := make([]string, len(live))
	for i, s := range live {
		add[i] = s.path
	}
	return updateManifest(db.fs, dir, add, nil, db.opts.NoSync)
}

// listInManifest adds a segment just sealed to the manifest. When that
// fails the segment is still read (a segment not listed is), and the next
// Open lists it: the failure is only logged.
func (db *DB) listInManifest(path string) {
	dir := filepath.Dir(path)
	unlock := lockSegments(db.fs, dir, vfs.LockExclusive)
	defer unlock()
	if err := updateManifest(db.fs, dir, []string{path}, nil, db.opts.NoSync); err != nil {
		db.log.Error("cannot list a sealed segment in the manifest; the next start lists it", "segment", path, "err", err)
	}
}

// quarantineSegment moves a segment that cannot be opened (why) into the
// quarantine folder, out of the manifest, so that the store starts without
// it: its bytes are kept for an operator, and every reader reports it. An
// error that is not damage (the file cannot be read at all) is returned.
func (db *DB) quarantineSegment(path string, why error) error {
	var se *SegmentError
	if !errors.As(why, &se) {
		return fmt.Errorf("%w (move the file away to start without it)", why)
	}
	data, err := vfs.ReadFile(db.fs, path)
	if err != nil {
		return fmt.Errorf("quarantine %s: %w", path, err)
	}
	q, err := quarantine(db.fs, db.dir, filepath.Base(path), data, se.Damage().Reason)
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	unlock := lockSegments(db.fs, dir, vfs.LockExclusive)
	defer unlock()
	if err := updateManifest(db.fs, dir, nil, []string{path}, db.opts.NoSync); err != nil {
		return err
	}
	// The removal needs no folder sync: a copy is durable in quarantine,
	// and a file a crash brings back is the same bytes, quarantined again
	// by the next Open as "kept already" (the crash test found this sync
	// to be one nothing depends on).
	if err := db.fs.Remove(path); err != nil {
		return fmt.Errorf("quarantine %s: %w", path, err)
	}
	db.stats.Quarantined.Add(1)
	db.log.Error("damaged segment moved into quarantine; its events are left out of every answer", "segment", path, "quarantine", q, "err", why)
	return nil
}
