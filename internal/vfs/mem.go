package vfs

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ErrCrashed is returned by every call on a MemFS after Crash, and on the
// files opened from it: the process it stood for is dead.
var ErrCrashed = errors.New("vfs: the file system crashed")

// MemFS is a strict in-memory file system. It remembers, for every file,
// the data last synced and, for every folder, the names last synced; Crash
// returns the file system a power loss would leave: only what was synced.
// A file's data survives only if the file was synced after it was written,
// and its name only if its folder was synced after the name was created,
// renamed or removed, so a missing fsync, a missing folder sync or a
// rename not made durable loses data in a test as it would on a disk.
//
// Locks (Lock) are held in memory, by node, as flock holds them by inode;
// a crash drops them all, as a dead process's are.
type MemFS struct {
	mu      sync.Mutex
	root    *node
	crashed bool
	// locks holds the lock state of each locked node; released is
	// signalled whenever a lock is released or the file system crashes.
	locks    map[*node]*memLock
	released *sync.Cond
}

type memLock struct {
	shared    int
	exclusive bool
}

type node struct {
	dir     bool
	mode    os.FileMode
	modTime time.Time
	// A file's current and durable data.
	data, synced []byte
	// A folder's current and durable names.
	children, syncedChildren map[string]*node
}

func newDir(perm os.FileMode) *node {
	return &node{dir: true, mode: fs.ModeDir | perm, modTime: time.Now(), children: map[string]*node{}, syncedChildren: map[string]*node{}}
}

// NewStrictMem returns an empty strict in-memory file system whose root
// folder is durable.
func NewStrictMem() *MemFS { return &MemFS{root: newDir(0o700)} }

// Crash ends m, as a power loss ends a machine, and returns the file
// system a restart finds: every folder with only its synced names, every
// file with only its synced data. m and the files opened from it fail
// with ErrCrashed from then on.
func (m *MemFS) Crash() *MemFS { return m.CrashKeeping(nil) }

// CrashKeeping is Crash where a file whose unsynced data was only appended
// keeps a part of it: keep, when not nil, is told the durable and the
// unsynced lengths and returns how many unsynced bytes reached the disk
// anyway, as a partial flush leaves a torn tail.
func (m *MemFS) CrashKeeping(keep func(synced, unsynced int) int) *MemFS {
	return m.CrashWith(CrashOptions{Appended: keep})
}

// CrashOptions say what a crash keeps beyond what was synced.
type CrashOptions struct {
	// Appended, when not nil, is told the durable and the unsynced lengths
	// of a file whose unsynced data was only appended, and returns how
	// many unsynced bytes reached the disk anyway, as a partial flush
	// leaves a torn tail.
	Appended func(synced, unsynced int) int
	// Names, when not nil, is asked about each change to a folder's names
	// since the folder was last synced ("create NAME", "remove NAME",
	// "replace NAME", "rename OLD NEW"; dir is the folder's path) whether
	// it reached the disk anyway: until its folder is synced, a file
	// system may have written any of them, in any order, and a crash
	// keeps those. A rename within a folder is one change, kept whole or
	// not at all, as rename(2) is atomic; a rename between folders is a
	// removal and a creation, asked about apart.
	Names func(dir, change string) bool
}

// CrashWith is Crash keeping what o says beyond what was synced.
func (m *MemFS) CrashWith(o CrashOptions) *MemFS {
	keep := o.Appended
	m.mu.Lock()
	defer m.mu.Unlock()
	m.crashed = true
	if m.released != nil {
		m.released.Broadcast() // waiting lockers fail with ErrCrashed
	}
	copies := map[*node]*node{}
	var clone func(path string, n *node) *node
	clone = func(path string, n *node) *node {
		if c, ok := copies[n]; ok {
			return c
		}
		c := &node{dir: n.dir, mode: n.mode, modTime: n.modTime}
		copies[n] = c
		if !n.dir {
			d := n.synced
			if keep != nil && len(n.data) > len(n.synced) && string(n.data[:len(n.synced)]) == string(n.synced) {
				d = n.data[:len(n.synced)+min(max(keep(len(n.synced), len(n.data)-len(n.synced)), 0), len(n.data)-len(n.synced))]
			}
			c.data = slices.Clone(d)
			c.synced = slices.Clone(d)
			return c
		}
		c.children, c.syncedChildren = map[string]*node{}, map[string]*node{}
		for name, ch := range crashNames(path, n, o.Names) {
			cc := clone(path+"/"+name, ch)
			c.children[name], c.syncedChildren[name] = cc, cc
		}
		return c
	}
	return &MemFS{root: clone("", m.root)}
}

// crashNames returns the names folder n holds after a crash: its synced
// names, changed by those of the changes since that keep says reached the
// disk.
func crashNames(path string, n *node, keep func(dir, change string) bool) map[string]*node {
	out := maps(n.syncedChildren)
	if keep == nil {
		return out
	}
	var changed []string
	for name, c := range n.children {
		if n.syncedChildren[name] != c {
			changed = append(changed, name)
		}
	}
	for name := range n.syncedChildren {
		if _, ok := n.children[name]; !ok {
			changed = append(changed, name)
		}
	}
	slices.Sort(changed)
	// Where each node that changed names now is: a node whose synced name
	// is gone and that has a new one was renamed.
	newName := map[*node]string{}
	for _, name := range changed {
		if c, ok := n.children[name]; ok {
			newName[c] = name
		}
	}
	renamed := map[string]string{} // old name: new name
	target := map[string]bool{}
	for _, name := range changed {
		if old, ok := n.syncedChildren[name]; ok {
			if to, ok := newName[old]; ok && to != name && !target[to] {
				renamed[name], target[to] = to, true
			}
		}
	}
	if path == "" {
		path = "/"
	}
	for _, name := range changed {
		if target[name] {
			continue // changed with the name it was renamed from
		}
		old, wasThere := n.syncedChildren[name]
		cur, isThere := n.children[name]
		if to, ok := renamed[name]; ok {
			// A rename: both names change together.
			if keep(path, "rename "+name+" "+to) {
				out[to] = old
				if isThere {
					out[name] = cur
				} else {
					delete(out, name)
				}
			}
			continue
		}
		change := "create " + name
		switch {
		case wasThere && isThere:
			change = "replace " + name
		case wasThere:
			change = "remove " + name
		}
		if !keep(path, change) {
			continue
		}
		if isThere {
			out[name] = cur
		} else {
			delete(out, name)
		}
	}
	return out
}

func split(name string) []string {
	name = filepath.ToSlash(filepath.Clean(name))
	name = strings.TrimPrefix(name, "/")
	if name == "" || name == "." {
		return nil
	}
	return strings.Split(name, "/")
}

// lookup returns the node at name; m.mu must be held.
func (m *MemFS) lookup(name string) (*node, error) {
	n := m.root
	for _, p := range split(name) {
		if !n.dir {
			return nil, syscall.ENOTDIR
		}
		c, ok := n.children[p]
		if !ok {
			return nil, os.ErrNotExist
		}
		n = c
	}
	return n, nil
}

// parent returns the folder holding name and name's last element.
func (m *MemFS) parent(name string) (*node, string, error) {
	parts := split(name)
	if len(parts) == 0 {
		return nil, "", os.ErrInvalid
	}
	dir, err := m.lookup(strings.Join(parts[:len(parts)-1], "/"))
	if err != nil {
		return nil, "", err
	}
	if !dir.dir {
		return nil, "", syscall.ENOTDIR
	}
	return dir, parts[len(parts)-1], nil
}

func (m *MemFS) lock() error {
	m.mu.Lock()
	if m.crashed {
		m.mu.Unlock()
		return ErrCrashed
	}
	return nil
}

// OpenFile implements FS.
func (m *MemFS) OpenFile(name string, flag int, perm os.FileMode) (File, error) {
	if err := m.lock(); err != nil {
		return nil, &os.PathError{Op: "open", Path: name, Err: err}
	}
	defer m.mu.Unlock()
	dir, base, err := m.parent(name)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: name, Err: err}
	}
	n, ok := dir.children[base]
	switch {
	case ok && flag&os.O_CREATE != 0 && flag&os.O_EXCL != 0:
		return nil, &os.PathError{Op: "open", Path: name, Err: os.ErrExist}
	case !ok && flag&os.O_CREATE == 0:
		return nil, &os.PathError{Op: "open", Path: name, Err: os.ErrNotExist}
	case !ok:
		n = &node{mode: perm, modTime: time.Now()}
		dir.children[base] = n
	case n.dir && flag&(os.O_WRONLY|os.O_RDWR) != 0:
		return nil, &os.PathError{Op: "open", Path: name, Err: syscall.EISDIR}
	}
	if flag&os.O_TRUNC != 0 && !n.dir {
		n.data = nil
	}
	return &memFile{fs: m, n: n, name: name, flag: flag}, nil
}

// Open implements FS.
func (m *MemFS) Open(name string) (File, error) { return m.OpenFile(name, os.O_RDONLY, 0) }

// Remove implements FS.
func (m *MemFS) Remove(name string) error {
	if err := m.lock(); err != nil {
		return &os.PathError{Op: "remove", Path: name, Err: err}
	}
	defer m.mu.Unlock()
	dir, base, err := m.parent(name)
	if err != nil {
		return &os.PathError{Op: "remove", Path: name, Err: err}
	}
	n, ok := dir.children[base]
	if !ok {
		return &os.PathError{Op: "remove", Path: name, Err: os.ErrNotExist}
	}
	if n.dir && len(n.children) > 0 {
		return &os.PathError{Op: "remove", Path: name, Err: syscall.ENOTEMPTY}
	}
	delete(dir.children, base)
	return nil
}

// Rename implements FS.
func (m *MemFS) Rename(oldname, newname string) error {
	if err := m.lock(); err != nil {
		return &os.LinkError{Op: "rename", Old: oldname, New: newname, Err: err}
	}
	defer m.mu.Unlock()
	od, ob, err := m.parent(oldname)
	if err != nil {
		return &os.LinkError{Op: "rename", Old: oldname, New: newname, Err: err}
	}
	nd, nb, err := m.parent(newname)
	if err != nil {
		return &os.LinkError{Op: "rename", Old: oldname, New: newname, Err: err}
	}
	n, ok := od.children[ob]
	if !ok {
		return &os.LinkError{Op: "rename", Old: oldname, New: newname, Err: os.ErrNotExist}
	}
	if t, ok := nd.children[nb]; ok && t.dir != n.dir {
		return &os.LinkError{Op: "rename", Old: oldname, New: newname, Err: syscall.EISDIR}
	}
	delete(od.children, ob)
	nd.children[nb] = n
	return nil
}

// MkdirAll implements FS.
func (m *MemFS) MkdirAll(dir string, perm os.FileMode) error {
	if err := m.lock(); err != nil {
		return &os.PathError{Op: "mkdir", Path: dir, Err: err}
	}
	defer m.mu.Unlock()
	n := m.root
	for _, p := range split(dir) {
		c, ok := n.children[p]
		if !ok {
			c = newDir(perm)
			n.children[p] = c
		} else if !c.dir {
			return &os.PathError{Op: "mkdir", Path: dir, Err: syscall.ENOTDIR}
		}
		n = c
	}
	return nil
}

// ReadDir implements FS.
func (m *MemFS) ReadDir(dir string) ([]os.DirEntry, error) {
	if err := m.lock(); err != nil {
		return nil, &os.PathError{Op: "readdir", Path: dir, Err: err}
	}
	defer m.mu.Unlock()
	n, err := m.lookup(dir)
	if err != nil {
		return nil, &os.PathError{Op: "readdir", Path: dir, Err: err}
	}
	if !n.dir {
		return nil, &os.PathError{Op: "readdir", Path: dir, Err: syscall.ENOTDIR}
	}
	var out []os.DirEntry
	for name, c := range n.children {
		out = append(out, fs.FileInfoToDirEntry(info(name, c)))
	}
	slices.SortFunc(out, func(a, b os.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	return out, nil
}

// Stat implements FS.
func (m *MemFS) Stat(name string) (os.FileInfo, error) {
	if err := m.lock(); err != nil {
		return nil, &os.PathError{Op: "stat", Path: name, Err: err}
	}
	defer m.mu.Unlock()
	n, err := m.lookup(name)
	if err != nil {
		return nil, &os.PathError{Op: "stat", Path: name, Err: err}
	}
	return info(filepath.Base(name), n), nil
}

// SyncDir implements FS.
func (m *MemFS) SyncDir(dir string) error {
	if err := m.lock(); err != nil {
		return &os.PathError{Op: "sync", Path: dir, Err: err}
	}
	defer m.mu.Unlock()
	n, err := m.lookup(dir)
	if err != nil {
		return &os.PathError{Op: "sync", Path: dir, Err: err}
	}
	if !n.dir {
		return &os.PathError{Op: "sync", Path: dir, Err: syscall.ENOTDIR}
	}
	n.syncedChildren = maps(n.children)
	return nil
}

// Chmod implements FS. Modes are kept as they are set, with no notion of
// durability: nothing in kubetrail depends on one surviving a crash.
func (m *MemFS) Chmod(name string, mode os.FileMode) error {
	if err := m.lock(); err != nil {
		return &os.PathError{Op: "chmod", Path: name, Err: err}
	}
	defer m.mu.Unlock()
	n, err := m.lookup(name)
	if err != nil {
		return &os.PathError{Op: "chmod", Path: name, Err: err}
	}
	n.mode = n.mode&^os.ModePerm | mode&os.ModePerm
	return nil
}

// Lock implements FS.
func (m *MemFS) Lock(name string, mode LockMode) (func() error, error) {
	if err := m.lock(); err != nil {
		return nil, &os.PathError{Op: "open", Path: name, Err: err}
	}
	defer m.mu.Unlock()
	n, err := m.lookup(name)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: name, Err: err}
	}
	if m.locks == nil {
		m.locks = map[*node]*memLock{}
		m.released = sync.NewCond(&m.mu)
	}
	l := m.locks[n]
	if l == nil {
		l = &memLock{}
		m.locks[n] = l
	}
	exclusive := mode != LockShared
	for l.exclusive || (exclusive && l.shared > 0) {
		if mode == LockExclusiveNow {
			return nil, syscall.EWOULDBLOCK
		}
		m.released.Wait()
		if m.crashed {
			return nil, &os.PathError{Op: "flock", Path: name, Err: ErrCrashed}
		}
	}
	if exclusive {
		l.exclusive = true
	} else {
		l.shared++
	}
	var once sync.Once
	return func() error {
		once.Do(func() {
			m.mu.Lock()
			defer m.mu.Unlock()
			if exclusive {
				l.exclusive = false
			} else {
				l.shared--
			}
			m.released.Broadcast()
		})
		return nil
	}, nil
}

func maps(m map[string]*node) map[string]*node {
	c := make(map[string]*node, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

type memInfo struct {
	name string
	size int64
	mode os.FileMode
	mod  time.Time
}

func info(name string, n *node) memInfo {
	return memInfo{name: name, size: int64(len(n.data)), mode: n.mode, mod: n.modTime}
}

func (i memInfo) Name() string       { return i.name }
func (i memInfo) Size() int64        { return i.size }
func (i memInfo) Mode() os.FileMode  { return i.mode }
func (i memInfo) ModTime() time.Time { return i.mod }
func (i memInfo) IsDir() bool        { return i.mode.IsDir() }
func (i memInfo) Sys() any           { return nil }

type memFile struct {
	fs     *MemFS
	n      *node
	name   string
	flag   int
	pos    int64
	closed bool
}

func (f *memFile) op(op string) error {
	if err := f.fs.lock(); err != nil {
		return &os.PathError{Op: op, Path: f.name, Err: err}
	}
	if f.closed {
		f.fs.mu.Unlock()
		return &os.PathError{Op: op, Path: f.name, Err: os.ErrClosed}
	}
	return nil
}

func (f *memFile) Name() string { return f.name }

func (f *memFile) Read(p []byte) (int, error) {
	n, err := f.ReadAt(p, f.pos)
	f.pos += int64(n)
	if err == io.EOF && n > 0 {
		err = nil
	}
	return n, err
}

func (f *memFile) ReadAt(p []byte, off int64) (int, error) {
	if err := f.op("read"); err != nil {
		return 0, err
	}
	defer f.fs.mu.Unlock()
	if f.n.dir {
		return 0, &os.PathError{Op: "read", Path: f.name, Err: syscall.EISDIR}
	}
	if off < 0 {
		return 0, &os.PathError{Op: "read", Path: f.name, Err: os.ErrInvalid}
	}
	if off >= int64(len(f.n.data)) {
		return 0, io.EOF
	}
	n := copy(p, f.n.data[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (f *memFile) Write(p []byte) (int, error) {
	if f.flag&os.O_APPEND != 0 {
		if err := f.op("write"); err != nil {
			return 0, err
		}
		f.pos = int64(len(f.n.data))
		f.fs.mu.Unlock()
	}
	n, err := f.WriteAt(p, f.pos)
	f.pos += int64(n)
	return n, err
}

func (f *memFile) WriteAt(p []byte, off int64) (int, error) {
	if err := f.op("write"); err != nil {
		return 0, err
	}
	defer f.fs.mu.Unlock()
	if f.flag&(os.O_WRONLY|os.O_RDWR) == 0 {
		return 0, &os.PathError{Op: "write", Path: f.name, Err: os.ErrPermission}
	}
	if end := off + int64(len(p)); end > int64(len(f.n.data)) {
		f.n.data = append(f.n.data, make([]byte, end-int64(len(f.n.data)))...)
	}
	copy(f.n.data[off:], p)
	f.n.modTime = time.Now()
	return len(p), nil
}

func (f *memFile) Seek(offset int64, whence int) (int64, error) {
	if err := f.op("seek"); err != nil {
		return 0, err
	}
	defer f.fs.mu.Unlock()
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += f.pos
	case io.SeekEnd:
		offset += int64(len(f.n.data))
	}
	if offset < 0 {
		return 0, &os.PathError{Op: "seek", Path: f.name, Err: os.ErrInvalid}
	}
	f.pos = offset
	return offset, nil
}

func (f *memFile) Stat() (os.FileInfo, error) {
	if err := f.op("stat"); err != nil {
		return nil, err
	}
	defer f.fs.mu.Unlock()
	return info(filepath.Base(f.name), f.n), nil
}

func (f *memFile) Sync() error {
	if err := f.op("sync"); err != nil {
		return err
	}
	defer f.fs.mu.Unlock()
	if f.n.dir {
		f.n.syncedChildren = maps(f.n.children)
		return nil
	}
	f.n.synced = slices.Clone(f.n.data)
	return nil
}

func (f *memFile) Truncate(size int64) error {
	if err := f.op("truncate"); err != nil {
		return err
	}
	defer f.fs.mu.Unlock()
	if f.flag&(os.O_WRONLY|os.O_RDWR) == 0 {
		return &os.PathError{Op: "truncate", Path: f.name, Err: os.ErrPermission}
	}
	if size < int64(len(f.n.data)) {
		f.n.data = f.n.data[:size:size]
	} else {
		f.n.data = append(f.n.data, make([]byte, size-int64(len(f.n.data)))...)
	}
	return nil
}

func (f *memFile) Close() error {
	if err := f.op("close"); err != nil {
		return err
	}
	defer f.fs.mu.Unlock()
	f.closed = true
	return nil
}

var _ FS = (*MemFS)(nil)

// String describes the file system's durable and current names, for test
// failures.
func (m *MemFS) String() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var b strings.Builder
	var walk func(path string, n *node)
	walk = func(path string, n *node) {
		names := make([]string, 0, len(n.children))
		for name := range n.children {
			names = append(names, name)
		}
		slices.Sort(names)
		for _, name := range names {
			c := n.children[name]
			_, durable := n.syncedChildren[name]
			fmt.Fprintf(&b, "%s/%s durable=%v", path, name, durable)
			if !c.dir {
				fmt.Fprintf(&b, " size=%d synced=%d", len(c.data), len(c.synced))
			}
			b.WriteByte('\n')
			if c.dir {
				walk(path+"/"+name, c)
			}
		}
	}
	walk("", m.root)
	return b.String()
}
