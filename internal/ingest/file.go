package ingest

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/kubetrail/kubetrail/internal/audit"
	"github.com/kubetrail/kubetrail/internal/pipeline"
)

// ImportConfig configures Import.
type ImportConfig struct {
	// Cluster tags the imported events.
	Cluster string
	// Limits bound each event.
	Limits audit.Limits
	// BatchEvents is how many events go to the sink at once.
	BatchEvents int
	// Progress, when set, is called now and then and once at the end.
	Progress func(Progress)
	// MaxProblems is how many problems the summary keeps in full; the rest
	// are only counted.
	MaxProblems int
	// Waiting, when set, makes a batch the sink refuses as unavailable
	// (pipeline.ErrUnavailable: a collector's full spool) wait and try
	// again, with backoff up to 5 s, until it is taken or the context
	// ends, as tail does; Waiting is called with the refusal before each
	// wait, for a progress message. Unset, the refusal ends the import.
	Waiting func(err error, retryIn time.Duration)
}

// Progress is a running count of an import.
type Progress struct {
	File       string
	Files      int
	Bytes      int64 // bytes read so far, over all files (compressed bytes for .gz)
	TotalBytes int64 // bytes of all files, when known
	Events     int64
	Done       bool
}

// Summary is what an import did.
type Summary struct {
	Files      int
	Lines      int64
	Bytes      int64
	Stored     int64
	Duplicates int64
	// Lost counts events the sink took as stored but could not make
	// durable (a bulk load's segment that could not be written); the
	// caller that learns of them moves them out of Stored.
	Lost int64
	// Problems holds the first MaxProblems problems; ProblemCount counts all.
	Problems     []audit.Problem
	ProblemCount int64
	Elapsed      time.Duration
}

// ExpandPaths turns command-line arguments (files, folders, globs, "-") into
// the files to read, in an order that keeps each rotated log's backups
// oldest first and its live file last.
func ExpandPaths(args []string) ([]string, error) {
	var out []string
	for _, a := range args {
		if a == "-" {
			out = append(out, a)
			continue
		}
		st, err := os.Stat(a)
		switch {
		case err == nil && st.IsDir():
			ents, err := os.ReadDir(a)
			if err != nil {
				return nil, err
			}
			var files []string
			for _, e := range ents {
				if e.Type().IsRegular() && !strings.HasPrefix(e.Name(), ".") {
					files = append(files, filepath.Join(a, e.Name()))
				}
			}
			out = append(out, SortRotated(files)...)
		case err == nil:
			out = append(out, a)
		default:
			matches, gerr := filepath.Glob(a)
			if gerr != nil || len(matches) == 0 {
				return nil, fmt.Errorf("%s: %w", a, err)
			}
			out = append(out, SortRotated(matches)...)
		}
	}
	return out, nil
}

// lumberjack (used by the API server) names backups NAME-2006-01-02T15-04-05.000.EXT.
var backupName = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`^(.*)-(\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}(?:\.\d{3})?)(\.[^.]*)?(\.gz)?$`)
})

// SortRotated orders files so that each log's rotated backups come oldest
// first and the live file after them.
func SortRotated(files []string) []string {
	type key struct{ base, stamp, name string }
	keys := make([]key, len(files))
	for i, f := range files {
		dir, name := filepath.Split(f)
		if m := backupName().FindStringSubmatch(name); m != nil {
			keys[i] = key{dir + m[1] + m[3], m[2], f}
		} else {
			base := strings.TrimSuffix(name, ".gz")
			keys[i] = key{dir + base, "~", f} // '~' sorts after every timestamp
		}
	}
	sort.SliceStable(keys, func(i, j int) bool {
		if keys[i].base != keys[j].base {
			return keys[i].base < keys[j].base
		}
		return keys[i].stamp < keys[j].stamp
	})
	out := make([]string, len(files))
	for i, k := range keys {
		out[i] = k.name
	}
	return out
}

// Import reads files (or stdin for "-") into sink. A bad line is reported
// and skipped; it never costs the good lines around it.
//
// Reading, decoding and storing overlap: one goroutine reads the files into
// chunks of whole lines, one decoder per CPU decodes chunks, and the calling
// goroutine stores their events in file order, so that the store keeps the
// order of the files.
func Import(ctx context.Context, sink pipeline.Sink, files []string, stdin io.Reader, cfg ImportConfig) (Summary, error) {
	if cfg.BatchEvents <= 0 {
		cfg.BatchEvents = 4096
	}
	if cfg.MaxProblems <= 0 {
		cfg.MaxProblems = 100
	}
	if cfg.Cluster == "" {
		cfg.Cluster = "default"
	}
	start := time.Now()
	imp := &importer{sink: sink, cfg: cfg, dec: audit.NewDecoder(cfg.Limits)}
	for _, f := range files {
		if f != "-" {
			if st, err := os.Stat(f); err == nil {
				imp.prog.TotalBytes += st.Size()
			}
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	imp.ctx = ctx
	work := make(chan *chunk, 4)
	ordered := make(chan *chunk, 8)
	readErr := make(chan error, 1)
	go func() {
		readErr <- imp.readAll(ctx, files, stdin, work, ordered)
		close(work)
		close(ordered)
	}()
	for range max(1, runtime.GOMAXPROCS(0)) {
		go func() {
			for c := range work {
				imp.decode(c)
			}
		}()
	}
	var err error
	for c := range ordered {
		<-c.done
		if err != nil {
			continue // drain after a failure
		}
		imp.sum.Lines += int64(c.lines)
		imp.prog.Bytes, imp.prog.Files, imp.prog.File = c.bytesRead, c.file, c.name
		for _, p := range c.probs {
			imp.problem(p)
		}
		imp.sum.ProblemCount += int64(c.moreProbs)
		if imp.batch == nil {
			imp.batch = make([]audit.Record, 0, imp.cfg.BatchEvents+len(c.recs))
		}
		imp.batch = append(imp.batch, c.recs...)
		if len(imp.batch) >= imp.cfg.BatchEvents {
			if err = imp.flush(); err != nil {
				cancel()
			}
		}
		imp.report(false)
	}
	if rerr := <-readErr; err == nil && rerr != nil && ctx.Err() == nil {
		err = rerr
	}
	if err == nil {
		err = imp.flush()
	}
	imp.sum.Files = imp.prog.Files
	imp.sum.Bytes = imp.prog.Bytes
	imp.sum.Elapsed = time.Since(start)
	imp.prog.Done = true
	imp.report(true)
	return imp.sum, err
}

// chunk is a run of whole lines of one file, decoded by a worker.
type chunk struct {
	name      string
	file      int   // 1-based index of the file
	firstLine int   // number of the first line in data
	lines     int   // lines in data
	bytesRead int64 // bytes read from all files when this chunk was cut
	data      []byte
	pre       []audit.Problem // problems found while reading (over-long lines)
	recs      []audit.Record
	probs     []audit.Problem // the first MaxProblems problems of the chunk
	moreProbs int             // problems beyond them, only counted
	done      chan struct{}
}

const chunkBytes = 1 << 20

type importer struct {
	ctx      context.Context
	sink     pipeline.Sink
	cfg      ImportConfig
	dec      *audit.Decoder
	sum      Summary
	prog     Progress
	batch    []audit.Record
	lastProg time.Time
}

func (imp *importer) readAll(ctx context.Context, files []string, stdin io.Reader, work, ordered chan<- *chunk) error {
	var read int64
	for i, path := range files {
		if err := imp.readFile(ctx, i+1, path, stdin, &read, work, ordered); err != nil {
			return err
		}
	}
	return nil
}

func (imp *importer) readFile(ctx context.Context, fileNo int, path string, stdin io.Reader, read *int64, work, ordered chan<- *chunk) error {
	name := path
	var r io.Reader
	if path == "-" {
		name, r = "stdin", stdin
	} else {
		f, err := os.Open(path)
		if err != nil {
			return fmt.Errorf("open %s: %w", path, err)
		}
		defer f.Close()
		r = f
	}
	br := bufio.NewReaderSize(&countingReader{r: r, n: read}, 1<<20)
	if head, _ := br.Peek(2); len(head) == 2 && head[0] == 0x1f && head[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return fmt.Errorf("%s: gzip: %w", name, err)
		}
		defer zr.Close()
		br = bufio.NewReaderSize(zr, 1<<20)
	}
	lr := newLineReader(br, imp.cfg.Limits)
	c := &chunk{name: name, file: fileNo, firstLine: 1, done: make(chan struct{})}
	send := func(next int) error {
		c.bytesRead = *read
		for _, ch := range []chan<- *chunk{ordered, work} {
			select {
			case ch <- c:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		c = &chunk{name: name, file: fileNo, firstLine: next, done: make(chan struct{})}
		return nil
	}
	for {
		line, lineNo, tooLong, err := lr.next()
		if err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return fmt.Errorf("%s:%d: read: %w", name, lineNo, err)
		}
		c.lines++
		if tooLong > 0 {
			// An empty line keeps the numbering of the lines after it.
			c.pre = append(c.pre, audit.Problem{Source: name, Line: lineNo, Item: -1, Reason: fmt.Sprintf("line of %d bytes is over the %d-byte event limit", tooLong, lr.limit)})
			line = nil
		}
		if c.data == nil {
			// Allocated at its full size once, at its first line: grown
			// from nothing, its copies cost a tenth of an import's CPU.
			// (The decoded records point into it, so it is not reused.)
			c.data = make([]byte, 0, chunkBytes+64<<10)
		}
		c.data = append(c.data, line...)
		c.data = append(c.data, '\n')
		if len(c.data) >= chunkBytes {
			if err := send(lineNo + 1); err != nil {
				return err
			}
		}
	}
	// Always send the last chunk, even empty, so the file is counted.
	return send(0)
}

func (imp *importer) decode(c *chunk) {
	defer close(c.done)
	c.probs = c.pre
	line := c.firstLine
	data := c.data
	// A Record is 392 bytes: growing the slice copied each several times.
	// An event takes a few hundred bytes at least; a chunk of millions of
	// short bad lines must not get room for a Record each.
	c.recs = make([]audit.Record, 0, min(c.lines, len(c.data)/256+16))
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		// The chunk's bytes are never written again: the records keep
		// them as they are.
		imp.dec.DecodeOwnedLine(c.name, line, data[:i], func(r audit.Record) { c.recs = append(c.recs, r) }, func(p audit.Problem) {
			// A chunk of short bad lines, or one line holding a list of
			// millions of bad items, must not hold a Problem for each:
			// the summary keeps only the first MaxProblems anyway.
			if len(c.probs) < imp.cfg.MaxProblems {
				c.probs = append(c.probs, p)
			} else {
				c.moreProbs++
			}
		})
		data = data[i+1:]
		line++
	}
	if len(c.pre) > 0 {
		sort.SliceStable(c.probs, func(i, j int) bool { return c.probs[i].Line < c.probs[j].Line })
		if extra := len(c.probs) - imp.cfg.MaxProblems; extra > 0 {
			c.probs, c.moreProbs = c.probs[:imp.cfg.MaxProblems], c.moreProbs+extra
		}
	}
	c.data = nil
}

func (imp *importer) problem(p audit.Problem) {
	imp.sum.ProblemCount++
	if len(imp.sum.Problems) < imp.cfg.MaxProblems {
		imp.sum.Problems = append(imp.sum.Problems, p)
	}
}

func (imp *importer) flush() error {
	if len(imp.batch) == 0 {
		return nil
	}
	b := &pipeline.Batch{Cluster: imp.cfg.Cluster, Received: time.Now(), Records: imp.batch}
	backoff := 100 * time.Millisecond
	for attempt := 0; ; attempt++ {
		res, err := imp.sink.Append(imp.ctx, b)
		if errors.Is(err, pipeline.ErrOverloaded) && attempt < 100 {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		if errors.Is(err, pipeline.ErrUnavailable) && imp.cfg.Waiting != nil && imp.ctx.Err() == nil {
			imp.cfg.Waiting(err, backoff)
			select {
			case <-imp.ctx.Done():
				return fmt.Errorf("store batch: %w", err)
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		if err != nil {
			return fmt.Errorf("store batch: %w", err)
		}
		imp.sum.Stored += int64(res.Stored)
		imp.sum.Duplicates += int64(res.Duplicates)
		imp.prog.Events += int64(len(imp.batch))
		break
	}
	imp.batch = nil
	return nil
}

func (imp *importer) report(force bool) {
	if imp.cfg.Progress == nil {
		return
	}
	if now := time.Now(); force || now.Sub(imp.lastProg) > 200*time.Millisecond {
		imp.lastProg = now
		imp.cfg.Progress(imp.prog)
	}
}

type countingReader struct {
	r io.Reader
	n *int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	*c.n += int64(n)
	return n, err
}

// lineReader splits a stream into lines without holding more than the event
// size limit of any one line.
type lineReader struct {
	br    *bufio.Reader
	limit int
	line  int
	long  []byte
}

func newLineReader(br *bufio.Reader, l audit.Limits) *lineReader {
	limit := l.MaxEventBytes
	if limit <= 0 {
		limit = audit.DefaultMaxEventBytes
	}
	return &lineReader{br: br, limit: limit}
}

// next returns the next line (without its newline; valid until the next
// call) and its number. A line over the limit is consumed and reported by
// its length in tooLong. The last line may lack a newline.
func (lr *lineReader) next() (line []byte, lineNo int, tooLong int, err error) {
	lr.long = lr.long[:0]
	total := 0
	for {
		frag, err := lr.br.ReadSlice('\n')
		total += len(frag)
		if err == nil || (errors.Is(err, io.EOF) && total > 0) {
			lr.line++
			if total > lr.limit+2 {
				return nil, lr.line, total, nil
			}
			if len(lr.long) > 0 {
				lr.long = append(lr.long, frag...)
				frag = lr.long
			}
			return bytes.TrimRight(frag, "\r\n"), lr.line, 0, nil
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			if total <= lr.limit+2 {
				lr.long = append(lr.long, frag...)
			}
			continue
		}
		return nil, lr.line + 1, 0, err
	}
}

// EachRecord decodes files (or stdin for "-") and calls fn for every event,
// in file order, without storing anything. bad is told of the first 100
// unusable lines or items; skipped counts them all. (Keeping every problem
// took 5.5 GB for a 40 MB file of 20 million bad lines.)
func EachRecord(ctx context.Context, files []string, stdin io.Reader, limits audit.Limits, fn func(*audit.Record), bad func(audit.Problem)) (skipped int64, err error) {
	sink := &funcSink{fn: fn}
	sum, err := Import(ctx, sink, files, stdin, ImportConfig{Limits: limits})
	for _, p := range sum.Problems {
		bad(p)
	}
	return sum.ProblemCount, err
}

// funcSink hands each batch's records to a function.
type funcSink struct{ fn func(*audit.Record) }

func (s *funcSink) Append(_ context.Context, b *pipeline.Batch) (pipeline.Result, error) {
	for i := range b.Records {
		s.fn(&b.Records[i])
	}
	return pipeline.Result{Stored: len(b.Records)}, nil
}
