package local

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/kubetrail/kubetrail/internal/vfs"
)

// Damage is one piece of a data folder that could not be read: a damaged
// WAL record, a segment block whose checksum fails, a file that is missing
// or was quarantined. Readers that skip damage instead of failing report it,
// and the commands print each as "PATH: reason" and exit 3, so an answer
// that leaves something out is never mistaken for a whole one.
type Damage struct {
	// Path is the file the damage is in (or the file that is missing).
	Path string
	// Reason says what is wrong, in words a person can act on.
	Reason string
}

func (d Damage) String() string { return fmt.Sprintf("%s: %s", d.Path, d.Reason) }

// damageList collects Damage from several goroutines, each reported once.
type damageList struct {
	mu   sync.Mutex
	seen map[Damage]bool
	list []Damage
}

func (l *damageList) add(path, reason string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	d := Damage{Path: path, Reason: reason}
	if l.seen[d] {
		return
	}
	if l.seen == nil {
		l.seen = map[Damage]bool{}
	}
	l.seen[d] = true
	l.list = append(l.list, d)
}

// DamageError is returned by a read that went on past damage: every
// intact event was given, and List says what was left out.
type DamageError struct {
	List []Damage
}

func (e *DamageError) Error() string {
	if len(e.List) == 1 {
		return "the answer leaves out damaged data: " + e.List[0].String()
	}
	return fmt.Sprintf("the answer leaves out damaged data in %d places", len(e.List))
}

// err returns a *DamageError listing the damage, or nil when there is none.
func (l *damageList) err() error {
	if all := l.all(); len(all) > 0 {
		return &DamageError{List: all}
	}
	return nil
}

// addQuarantined adds the files kept aside in dir's quarantine folder.
func (l *damageList) addQuarantined(fs vfs.FS, dir string) error {
	q, err := quarantined(fs, dir)
	for _, d := range q {
		l.add(d.Path, d.Reason)
	}
	return err
}

func (l *damageList) all() []Damage {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := append([]Damage(nil), l.list...)
	sort.SliceStable(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out
}

// quarantineDir is where damaged bytes are kept aside: never deleted by
// kubetrail, reported by every reader and by verify until an operator has
// looked at them and removed them.
const quarantineDir = "quarantine"

// quarantined lists the files kept aside in dir's quarantine folder, as
// Damage: every answer leaves their events out.
func quarantined(fs vfs.FS, dir string) ([]Damage, error) {
	qdir := filepath.Join(dir, quarantineDir)
	ents, err := fs.ReadDir(qdir)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list quarantine folder: %w", err)
	}
	var out []Damage
	for _, e := range ents {
		name := e.Name()
		if e.IsDir() || strings.HasPrefix(name, ".") || strings.HasSuffix(name, ".reason") {
			continue
		}
		reason := "quarantined: damaged bytes kept aside; the events in them are left out of every answer"
		if b, err := vfs.ReadFile(fs, filepath.Join(qdir, name+".reason")); err == nil {
			reason = "quarantined: " + strings.TrimSpace(string(b))
		}
		out = append(out, Damage{Path: filepath.Join(qdir, name), Reason: reason})
	}
	return out, nil
}

// quarantine keeps data aside in dir's quarantine folder as name, with a
// name.reason file beside it, durably (both synced, then the folder), and
// returns the path. An existing file of that name is never overwritten:
// a numbered suffix is added.
func quarantine(fs vfs.FS, dir, name string, data []byte, reason string) (string, error) {
	qdir := filepath.Join(dir, quarantineDir)
	// Synced as it is made: a quarantine folder lost in a crash would
	// take the damaged bytes kept in it along.
	if err := vfs.MkdirAllSynced(fs, qdir, 0o700); err != nil {
		return "", fmt.Errorf("create quarantine folder: %w", err)
	}
	path := filepath.Join(qdir, name)
	for i := 1; ; i++ {
		old, err := vfs.ReadFile(fs, path)
		if os.IsNotExist(err) {
			break
		}
		if err != nil {
			// Going on to the next name would spin for ever when no file
			// can be read (the crash test found it).
			return "", fmt.Errorf("quarantine: %w", err)
		}
		if bytes.Equal(old, data) {
			// Kept already, by a run that crashed before it could
			// remove the damaged file.
			return path, nil
		}
		path = filepath.Join(qdir, fmt.Sprintf("%s.%d", name, i))
	}
	if err := writeSynced(fs, path+".reason", []byte(reason+"\n")); err != nil {
		return "", err
	}
	if err := writeSynced(fs, path, data); err != nil {
		return "", err
	}
	if err := fs.SyncDir(qdir); err != nil {
		return "", fmt.Errorf("sync quarantine folder: %w", err)
	}
	return path, nil
}

// writeSynced writes data to path whole or not at all: to a temporary
// name beside it, synced, then renamed. A crash in the middle must leave
// neither a partial copy under the final name, which would be reported as
// a quarantined file of its own, nor a name that makes the next attempt
// fail (the crash test found both when it wrote path in place, O_EXCL).
// A temporary file a crash leaves is hidden (its name starts with a dot)
// and reused by the next attempt.
func writeSynced(fs vfs.FS, path string, data []byte) error {
	tmp := filepath.Join(filepath.Dir(path), ".tmp-"+filepath.Base(path))
	f, err := fs.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("quarantine: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("quarantine %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("quarantine %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("quarantine %s: %w", path, err)
	}
	if err := fs.Rename(tmp, path); err != nil {
		return fmt.Errorf("quarantine: %w", err)
	}
	return nil
}
