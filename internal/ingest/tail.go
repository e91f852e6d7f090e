package ingest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/kubetrail/kubetrail/internal/audit"
	"github.com/kubetrail/kubetrail/internal/pipeline"
)

// TailConfig configures Tail.
type TailConfig struct {
	// Path is the live log file, e.g. /var/log/kubernetes/audit/audit.log.
	Path string
	// StateDir holds the checkpoint (file identity and offset), so that a
	// restart resumes exactly where the last durable batch ended.
	StateDir string
	// Cluster tags the events.
	Cluster string
	// Limits bound each event.
	Limits audit.Limits
	// Poll is how often to look for new lines and rotation.
	Poll time.Duration
	// BatchEvents is the most events sent at once.
	BatchEvents int
	// Logger receives rotation notices and bad lines.
	Logger *slog.Logger
	// OnBatch, when set, is told each stored batch (for progress and tests).
	OnBatch func(pipeline.Result)
}

// checkpoint is where tailing stands, stored (encodeCheckpoint) after every durable
// batch. A crash between the batch and the checkpoint re-sends that batch,
// which the store drops as duplicates: no gap, no double.
type checkpoint struct {
	Path   string `json:"path"`
	Dev    uint64 `json:"dev"`
	Ino    uint64 `json:"ino"`
	Offset int64  `json:"offset"`
	Line   int    `json:"line"`
}

// Tail follows cfg.Path until ctx ends: it survives rotation by rename (the
// API server's own, lumberjack) and by copytruncate, and resumes after a
// restart from its checkpoint, reading the rest of a file rotated while it
// was down when it can still find it.
func Tail(ctx context.Context, sink pipeline.Sink, cfg TailConfig) error {
	if cfg.Poll <= 0 {
		cfg.Poll = 200 * time.Millisecond
	}
	if cfg.BatchEvents <= 0 {
		cfg.BatchEvents = 2000
	}
	if cfg.Cluster == "" {
		cfg.Cluster = "default"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	abs, err := filepath.Abs(cfg.Path)
	if err != nil {
		return err
	}
	cfg.Path = abs
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return fmt.Errorf("create state folder: %w", err)
	}
	t := &tailer{cfg: cfg, sink: sink, dec: audit.NewDecoder(cfg.Limits)}
	sum := sha256.Sum256([]byte(abs))
	t.cpPath = filepath.Join(cfg.StateDir, "tail-"+hex.EncodeToString(sum[:8])+".json")
	return t.run(ctx)
}

type tailer struct {
	cfg    TailConfig
	sink   pipeline.Sink
	dec    *audit.Decoder
	cpPath string
	cp     checkpoint

	f    *os.File
	name string // the file's name as opened, for messages
	buf  []byte // bytes read past cp.Offset, not yet consumed
	recs []audit.Record
	// pendingOffset/Line: position after the last line decoded into recs.
	pendingOffset int64
	pendingLine   int
}

func fileID(st os.FileInfo) (dev, ino uint64) {
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		return uint64(s.Dev), s.Ino
	}
	return 0, 0
}

func (t *tailer) loadCheckpoint() (checkpoint, bool) {
	b, err := os.ReadFile(t.cpPath)
	if err != nil {
		return checkpoint{}, false
	}
	cp, err := decodeCheckpoint(b)
	if err != nil {
		// Reading the file again from its start loses nothing: the store
		// keeps one copy of every event. Trusting a damaged offset could
		// skip events.
		t.cfg.Logger.Warn("ignoring a damaged tail checkpoint; reading the file from its start (nothing is stored twice)", "file", t.cpPath, "reason", err)
		return checkpoint{}, false
	}
	return cp, true
}

// A checkpoint file is the checkpoint's JSON, a newline, and the CRC-32C of
// the JSON in hex: a damaged offset that still reads as JSON must not make
// tail skip events. A file without the checksum line (written before it
// existed) is read as JSON alone.
func encodeCheckpoint(cp *checkpoint) []byte {
	b, _ := json.Marshal(cp)
	return fmt.Appendf(b, "\n%08x\n", crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli)))
}

func decodeCheckpoint(b []byte) (checkpoint, error) {
	var cp checkpoint
	body, sum, found := bytes.Cut(bytes.TrimRight(b, "\n"), []byte("\n"))
	if found {
		want := fmt.Sprintf("%08x", crc32.Checksum(body, crc32.MakeTable(crc32.Castagnoli)))
		if string(sum) != want {
			return cp, errors.New("checksum does not match")
		}
	}
	if err := json.Unmarshal(body, &cp); err != nil {
		return cp, err
	}
	if cp.Offset < 0 || cp.Line < 0 {
		return cp, errors.New("negative offset")
	}
	return cp, nil
}

func (t *tailer) saveCheckpoint() error {
	b := encodeCheckpoint(&t.cp)
	tmp := t.cpPath + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	f.Close()
	return os.Rename(tmp, t.cpPath)
}

func (t *tailer) run(ctx context.Context) error {
	defer func() {
		if t.f != nil {
			t.f.Close()
		}
	}()
	saved, ok := t.loadCheckpoint()
	// Wait for the file to exist.
	for {
		f, err := os.Open(t.cfg.Path)
		if err == nil {
			t.f = f
			break
		}
		if !errors.Is(err, os.ErrNotExist) {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(t.cfg.Poll):
		}
	}
	st, err := t.f.Stat()
	if err != nil {
		return err
	}
	dev, ino := fileID(st)
	t.name = t.cfg.Path
	t.cp = checkpoint{Path: t.cfg.Path, Dev: dev, Ino: ino}
	if ok {
		switch {
		case saved.Dev == dev && saved.Ino == ino && st.Size() >= saved.Offset:
			t.cp = saved
		case saved.Dev == dev && saved.Ino == ino:
			t.cfg.Logger.Warn("file is shorter than the checkpoint: it was truncated (copytruncate); reading from its start", "file", t.cfg.Path)
		default:
			if err := t.catchUpRotated(ctx, saved); err != nil {
				return err
			}
		}
	}
	if _, err := t.f.Seek(t.cp.Offset, io.SeekStart); err != nil {
		return err
	}
	t.pendingOffset, t.pendingLine = t.cp.Offset, t.cp.Line
	if err := t.saveCheckpoint(); err != nil {
		return fmt.Errorf("save tail checkpoint: %w", err)
	}
	for {
		n, err := t.readAvailable(false)
		if err != nil {
			return err
		}
		if err := t.flush(ctx); err != nil {
			return err
		}
		if n > 0 {
			continue
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(t.cfg.Poll):
		}
		if err := t.checkRotation(ctx); err != nil {
			return err
		}
	}
}

// catchUpRotated reads the rest of the file the checkpoint points at when
// it was rotated away while kubetrail was not running, then every file
// rotated after it.
func (t *tailer) catchUpRotated(ctx context.Context, saved checkpoint) error {
	live := t.f
	p, ok := t.findByID(saved.Dev, saved.Ino)
	if !ok {
		t.cfg.Logger.Warn("the file the checkpoint points at was rotated away and cannot be found; events after its checkpoint may be missing: import its backups with `kubetrail import` (duplicates are dropped)",
			"checkpoint_offset", saved.Offset)
		return nil
	}
	t.cfg.Logger.Info("finishing a file rotated while tail was stopped", "file", p, "offset", saved.Offset)
	if err := t.drainFile(ctx, p, saved); err != nil {
		return err
	}
	st, err := live.Stat()
	if err != nil {
		return err
	}
	ld, li := fileID(st)
	if err := t.drainRotatedAfter(ctx, saved.Dev, saved.Ino, ld, li); err != nil {
		return err
	}
	t.f, t.name, t.buf = live, t.cfg.Path, t.buf[:0]
	t.cp = checkpoint{Path: t.cfg.Path, Dev: ld, Ino: li}
	return nil
}

// checkRotation looks at the path: a new file there means the old one was
// renamed (finish it, then every file rotated after it, then switch); a
// shorter one means it was truncated.
func (t *tailer) checkRotation(ctx context.Context) error {
	st, err := os.Stat(t.cfg.Path)
	if err != nil {
		return nil // between rename and create: look again next time
	}
	dev, ino := fileID(st)
	if dev != t.cp.Dev || ino != t.cp.Ino {
		// Renamed: our descriptor still reads the old file. Drain it.
		if err := t.drain(ctx); err != nil {
			return err
		}
		old := t.cp
		nf, err := os.Open(t.cfg.Path)
		if err != nil {
			return nil
		}
		nst, err := nf.Stat()
		if err != nil {
			nf.Close()
			return nil
		}
		t.f.Close()
		d, i := fileID(nst)
		// The log may have rotated more than once since we looked: read
		// the files rotated after the old one before the new live file.
		if err := t.drainRotatedAfter(ctx, old.Dev, old.Ino, d, i); err != nil {
			nf.Close()
			return err
		}
		t.f, t.name, t.buf = nf, t.cfg.Path, t.buf[:0]
		t.cp = checkpoint{Path: t.cfg.Path, Dev: d, Ino: i}
		t.pendingOffset, t.pendingLine = 0, 0
		t.cfg.Logger.Info("log file rotated; following the new file", "file", t.cfg.Path)
		return t.saveCheckpoint()
	}
	if st.Size() < t.pendingOffset {
		t.cfg.Logger.Warn("log file truncated (copytruncate); reading from its start", "file", t.cfg.Path)
		if _, err := t.f.Seek(0, io.SeekStart); err != nil {
			return err
		}
		t.buf = t.buf[:0]
		t.cp.Offset, t.cp.Line = 0, 0
		t.pendingOffset, t.pendingLine = 0, 0
		return t.saveCheckpoint()
	}
	return nil
}

// rotatedSiblings returns the live log's rotated backups (lumberjack names:
// BASE-TIMESTAMP.EXT next to BASE.EXT), oldest first. Compressed backups
// are left out: they are rewritten files, not the ones tail was reading.
func (t *tailer) rotatedSiblings() []string {
	dir, live := filepath.Split(t.cfg.Path)
	ext := filepath.Ext(live)
	base := strings.TrimSuffix(live, ext)
	ents, _ := os.ReadDir(dir)
	var out []string
	for _, e := range ents {
		m := backupName().FindStringSubmatch(e.Name())
		if m == nil || m[1] != base || m[3] != ext || m[4] != "" {
			continue
		}
		out = append(out, filepath.Join(dir, e.Name()))
	}
	return SortRotated(out)
}

// findByID finds the file with this identity among the live log and its
// rotated backups.
func (t *tailer) findByID(dev, ino uint64) (string, bool) {
	for _, p := range append(t.rotatedSiblings(), t.cfg.Path) {
		if st, err := os.Stat(p); err == nil {
			if d, i := fileID(st); d == dev && i == ino {
				return p, true
			}
		}
	}
	return "", false
}

// drainRotatedAfter reads, whole and in order, every rotated backup newer
// than the file (dev, ino), except the live file (ld, li), looking again
// after each round in case the log rotated meanwhile.
func (t *tailer) drainRotatedAfter(ctx context.Context, dev, ino, ld, li uint64) error {
	for round := 0; round < 100; round++ {
		sibs := t.rotatedSiblings()
		after := -1
		for i, p := range sibs {
			if st, err := os.Stat(p); err == nil {
				if d, n := fileID(st); d == dev && n == ino {
					after = i
				}
			}
		}
		if after < 0 {
			return nil // the old file was not a backup (or is gone): nothing is known to be newer
		}
		var todo []string
		for _, p := range sibs[after+1:] {
			if st, err := os.Stat(p); err == nil {
				if d, n := fileID(st); !(d == ld && n == li) {
					todo = append(todo, p)
				}
			}
		}
		if len(todo) == 0 {
			return nil
		}
		for _, p := range todo {
			st, err := os.Stat(p)
			if err != nil {
				continue
			}
			d, n := fileID(st)
			t.cfg.Logger.Info("reading a file that rotated before tail reached it", "file", p)
			if err := t.drainFile(ctx, p, checkpoint{Path: p, Dev: d, Ino: n}); err != nil {
				return err
			}
			dev, ino = d, n
		}
	}
	return nil
}

// drainFile reads a rotated file from the checkpoint's offset to its end.
// The checkpoint follows it, so a crash meanwhile resumes inside it.
func (t *tailer) drainFile(ctx context.Context, path string, from checkpoint) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.Seek(from.Offset, io.SeekStart); err != nil {
		return err
	}
	t.f, t.name, t.cp, t.buf = f, path, from, t.buf[:0]
	t.pendingOffset, t.pendingLine = from.Offset, from.Line
	return t.drain(ctx)
}

// drain reads and stores the rest of a file that will not grow any more.
func (t *tailer) drain(ctx context.Context) error {
	for {
		n, err := t.readAvailable(true)
		if err != nil {
			return err
		}
		if err := t.flush(ctx); err != nil {
			return err
		}
		if n == 0 && len(t.buf) == 0 || ctx.Err() != nil {
			return nil
		}
	}
}

// readAvailable reads what the file holds now and decodes its complete
// lines. With final, a last line without newline counts too (the file will
// not grow any more).
func (t *tailer) readAvailable(final bool) (int, error) {
	total := 0
	chunk := make([]byte, 1<<20)
	for {
		n, err := t.f.Read(chunk)
		total += n
		t.buf = append(t.buf, chunk[:n]...)
		t.consumeLines(false)
		if len(t.recs) >= t.cfg.BatchEvents {
			return total, nil
		}
		if err == io.EOF || n == 0 {
			break
		}
		if err != nil {
			return total, err
		}
	}
	if final {
		t.consumeLines(true)
	}
	return total, nil
}

func (t *tailer) consumeLines(final bool) {
	emit := func(r audit.Record) { t.recs = append(t.recs, r) }
	bad := func(p audit.Problem) {
		t.cfg.Logger.Warn("skipped a line that is not a usable audit event", "problem", p.String())
	}
	for {
		i := bytes.IndexByte(t.buf, '\n')
		var line []byte
		adv := 0
		if i < 0 {
			if !final || len(t.buf) == 0 {
				if len(t.buf) > t.limit() {
					// A line longer than any event: skip what we have.
					t.pendingOffset += int64(len(t.buf))
					t.buf = t.buf[:0]
				}
				return
			}
			line, adv = t.buf, len(t.buf)
		} else {
			line, adv = t.buf[:i], i+1
		}
		t.pendingLine++
		t.dec.DecodeLine(t.name, t.pendingLine, line, emit, bad)
		t.pendingOffset += int64(adv)
		t.buf = t.buf[adv:]
		if len(t.recs) >= t.cfg.BatchEvents {
			// Keep the rest for the next call; compact the buffer.
			t.buf = append(make([]byte, 0, len(t.buf)+4096), t.buf...)
			return
		}
	}
}

func (t *tailer) limit() int {
	if t.cfg.Limits.MaxEventBytes > 0 {
		return t.cfg.Limits.MaxEventBytes
	}
	return audit.DefaultMaxEventBytes
}

// flush stores decoded events and then moves the checkpoint past them.
func (t *tailer) flush(ctx context.Context) error {
	if len(t.recs) > 0 {
		b := &pipeline.Batch{Cluster: t.cfg.Cluster, Received: time.Now(), Records: t.recs}
		for backoff := 50 * time.Millisecond; ; backoff = min(backoff*2, 5*time.Second) {
			res, err := t.sink.Append(ctx, b)
			if err == nil {
				for _, rj := range res.Rejected {
					r := &t.recs[rj.Index]
					t.cfg.Logger.Error("the server refused an event for good; it is skipped so that the events after it are not held up",
						"file", t.name, "auditID", r.Event.AuditID, "stage", r.Event.Stage, "bytes", len(r.Raw), "reason", rj.Reason)
				}
				if t.cfg.OnBatch != nil {
					t.cfg.OnBatch(res)
				}
				break
			}
			if ctx.Err() != nil {
				return nil
			}
			t.cfg.Logger.Warn("storing a batch failed; retrying", "err", err, "retry_in", backoff)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(backoff):
			}
		}
		t.recs = t.recs[:0:0]
	}
	if t.cp.Offset != t.pendingOffset {
		t.cp.Offset, t.cp.Line = t.pendingOffset, t.pendingLine
		if err := t.saveCheckpoint(); err != nil {
			return fmt.Errorf("save tail checkpoint: %w", err)
		}
	}
	return nil
}
