package local

import (
	"io/fs"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/kubetrail/kubetrail/internal/vfs"
)

// segCache shares the sealed segments that the readers of one DB open. A
// segment file never changes once it has its name (sealing, compaction and
// migration write a temporary file and rename it), so the process that
// serves the API opens each segment and checks and decodes its meta once,
// not on every request: at 2M events that was a fifth of a warm count's
// time (issue 12). An entry is known by the file's identity (size,
// modification time, inode where the file system has one): a file
// replaced under the same name is opened anew. A listing that no longer
// has a path drops its entry; readers that hold it keep reading it, and
// the last to close it closes the file.
//
// A segCache is safe for concurrent use.
type segCache struct {
	mu   sync.Mutex
	segs map[string]*sharedSeg
	// held finds the entry of each open segment, cached or not, for hold.
	held map[*segmentReader]*sharedSeg
	// left is what decodedBudget has left for the segments' decoded chunks.
	left atomic.Int64
}

// sharedSeg is one cached segment.
type sharedSeg struct {
	r  *segmentReader
	id fileID
	// refs counts the readers holding r, plus one while it is cached.
	refs int
}

// fileID is what tells a file from another at the same path.
type fileID struct {
	size int64
	mod  time.Time
	ino  uint64
}

func fileIDOf(st fs.FileInfo) fileID {
	id := fileID{size: st.Size(), mod: st.ModTime()}
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		id.ino = s.Ino
	}
	return id
}

func newSegCache() *segCache {
	c := &segCache{segs: map[string]*sharedSeg{}, held: map[*segmentReader]*sharedSeg{}}
	c.left.Store(decodedBudget)
	return c
}

// open returns the segment at path, opened now or shared with earlier
// readers. The caller must close it once (segmentReader.close), as any
// segment.
func (c *segCache) open(fsys vfs.FS, path string) (*segmentReader, error) {
	st, err := fsys.Stat(path)
	if err != nil {
		return nil, err
	}
	id := fileIDOf(st)
	c.mu.Lock()
	if e := c.segs[path]; e != nil {
		if e.id == id {
			e.refs++
			c.mu.Unlock()
			return e.r, nil
		}
		c.dropLocked(path, e)
	}
	c.mu.Unlock()
	// Opened outside the lock: other readers go on meanwhile, and two
	// that race both open it; the second to arrive keeps the first's.
	r, err := openSegment(fsys, path)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.segs[path]; e != nil && e.id == id {
		r.close()
		e.refs++
		return e.r, nil
	}
	if e := c.segs[path]; e != nil {
		c.dropLocked(path, e)
	}
	e := &sharedSeg{r: r, id: id, refs: 2}
	r.release = func() error { return c.release(e) }
	r.decoded = &decodedChunks{left: &c.left}
	c.segs[path] = e
	c.held[r] = e
	return r, nil
}

// hold takes one more reference on each of segs, opened by the cache and
// kept open meanwhile by their holder (a DB's folder view). The caller
// must close each once more.
func (c *segCache) hold(segs []segmentFile) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range segs {
		e := c.held[s.r]
		if e == nil {
			panic("BUG: a folder view holds a segment its cache closed: " + s.path)
		}
		e.refs++
	}
}

// keep drops the entries whose paths are not in live, the segment
// listing just read: deleted by compaction or retention.
func (c *segCache) keep(live []segmentFile) {
	in := make(map[string]bool, len(live))
	for _, s := range live {
		in[s.path] = true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for p, e := range c.segs {
		if !in[p] {
			c.dropLocked(p, e)
		}
	}
}

// dropLocked removes e, cached at path, from the cache; c.mu is held.
func (c *segCache) dropLocked(path string, e *sharedSeg) {
	delete(c.segs, path)
	c.unrefLocked(e)
}

// unrefLocked drops one reference on e, closing it after the last; c.mu
// is held.
func (c *segCache) unrefLocked(e *sharedSeg) error {
	if e.refs--; e.refs == 0 {
		delete(c.held, e.r)
		return e.closeLocked()
	}
	return nil
}

// closeLocked closes e's file and gives its decoded chunks' bytes back to
// the budget.
func (e *sharedSeg) closeLocked() error {
	e.r.decoded.mu.Lock()
	e.r.decoded.left.Add(e.r.decoded.held)
	e.r.decoded.chunks, e.r.decoded.dicts, e.r.decoded.idCols, e.r.decoded.idFrames, e.r.decoded.held = nil, [NumColumns]*dictData{}, [NumColumns][]uint32{}, [NumColumns][]byte{}, 0
	e.r.decoded.rares = [NumColumns]*rareData{}
	e.r.decoded.mu.Unlock()
	return e.r.f.Close()
}

// release is a reader closing e.
func (c *segCache) release(e *sharedSeg) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.unrefLocked(e)
}

// close closes every segment no reader holds and forgets the rest, which
// their readers close.
func (c *segCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for p, e := range c.segs {
		c.dropLocked(p, e)
	}
}

// decodedBudget bounds the bytes of decoded chunks a DB's segCache keeps
// (its segments' together): at 2M events the postings a day of questions
// touches fit; past the budget, chunks are decoded per reader as before.
const decodedBudget = 64 << 20

// decodedChunks keeps, for a shared segment, the postings chunks and the
// chunk indexes its readers decoded: a warm count then decompresses
// nothing (decoding them was four fifths of a warm count's time at 2M).
// What it holds is never modified (chunkData.starts is computed before a
// chunk is kept). A nil *decodedChunks keeps nothing.
type decodedChunks struct {
	mu     sync.Mutex
	chunks map[chunkKey]*chunkData
	refs   [NumColumns][]chunkRef
	// dicts are the dictionaries of ids columns (parseDict copies them
	// out of the reader's scratch buffer).
	dicts [NumColumns]*dictData
	// ids are decoded ids columns, one id per event.
	idCols [NumColumns][]uint32
	// idFrames are the ids frames of one-byte ids columns, as stored.
	idFrames [NumColumns][]byte
	// rares are the rare values' postings of ids columns: read from the
	// file and decompressed on every request, they were half of a warm
	// count of a selective question (who deleted secret important) at 2M.
	rares [NumColumns]*rareData
	// held is the size of chunks; left is the cache's remaining budget,
	// shared by its segments.
	held int64
	left *atomic.Int64
}

type chunkKey struct {
	c   Column
	off int64
}

func (d *decodedChunks) chunk(c Column, off int64) *chunkData {
	if d == nil {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.chunks[chunkKey{c, off}]
}

func (d *decodedChunks) keepChunk(c Column, off int64, ch *chunkData) {
	size := int64(len(ch.post) + 8*len(ch.starts) + 4*len(ch.counts) + 16*len(ch.values))
	for _, v := range ch.values {
		size += int64(len(v))
	}
	d.admit(size, func() bool {
		if d.chunks == nil {
			d.chunks = map[chunkKey]*chunkData{}
		}
		if d.chunks[chunkKey{c, off}] != nil {
			return false
		}
		d.chunks[chunkKey{c, off}] = ch
		return true
	})
}

// admit charges size to the cache's budget and, under d.mu, has put keep
// the value unless another reader kept it first (put says false); it
// says whether the value was kept. Past the budget nothing is kept.
func (d *decodedChunks) admit(size int64, put func() bool) bool {
	if d == nil {
		return false
	}
	if d.left.Add(-size) < 0 {
		d.left.Add(size)
		return false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if !put() {
		d.left.Add(size)
		return false
	}
	d.held += size
	return true
}

func (d *decodedChunks) index(c Column) []chunkRef {
	if d == nil {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.refs[c]
}

func (d *decodedChunks) keepIndex(c Column, refs []chunkRef) {
	if d == nil {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.refs[c] = refs
}

func (d *decodedChunks) dict(c Column) *dictData {
	if d == nil {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.dicts[c]
}

func (d *decodedChunks) keepDict(c Column, dd *dictData) {
	if d == nil {
		return
	}
	size := int64(20 * len(dd.values))
	for _, v := range dd.values {
		size += int64(len(v))
	}
	d.admit(size, func() bool {
		if d.dicts[c] != nil {
			return false
		}
		d.dicts[c] = dd
		return true
	})
}

func (d *decodedChunks) ids(c Column) []uint32 {
	if d == nil {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.idCols[c]
}

// keepIDs keeps ids, which the caller must not modify from now on, when
// the budget allows, and says whether it did.
func (d *decodedChunks) keepIDs(c Column, ids []uint32) bool {
	if d == nil {
		return false
	}
	return d.admit(int64(4*cap(ids)), func() bool {
		if d.idCols[c] != nil {
			return false
		}
		d.idCols[c] = ids
		return true
	})
}

func (d *decodedChunks) idBytes(c Column) []byte {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.idFrames[c]
}

func (d *decodedChunks) keepIDBytes(c Column, raw []byte) {
	d.admit(int64(cap(raw)), func() bool {
		if d.idFrames[c] != nil {
			return false
		}
		d.idFrames[c] = raw
		return true
	})
}

func (d *decodedChunks) rare(c Column) *rareData {
	if d == nil {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.rares[c]
}

// keepRare keeps rd, which is never modified, when the budget allows.
func (d *decodedChunks) keepRare(c Column, rd *rareData) {
	if d == nil {
		return
	}
	size := int64(8*len(rd.at) + 4*len(rd.count) + 24*len(rd.lists))
	for _, l := range rd.lists {
		size += int64(len(l))
	}
	d.admit(size, func() bool {
		if d.rares[c] != nil {
			return false
		}
		d.rares[c] = rd
		return true
	})
}
