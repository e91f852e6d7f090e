package trust

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
)

// The access log (DATA/access.log, docs/security.md "Access log") is a
// hash chain of its own: every line is one JSON object that ends with
// "seq" (its number in the log, from 1) and "prev" (the hash of the line
// before it, in hex; zeros for the first). A line's hash is plain SHA-256
// of its bytes without the newline, so `sha256sum` can check the chain by
// hand. Editing, deleting, inserting or reordering a line breaks a link;
// truncating the log or rewriting it consistently changes the head
// (seq and hash of the last line) that signed checkpoints carry
// (docs/adr/0018, "The access log").

// AccessHead is the access log's chain head: how many lines it holds and
// the hash of the last one.
type AccessHead struct {
	Lines int64
	Hash  [32]byte
}

// AccessLineHash is the chain hash of one access log line, given without
// its newline.
func AccessLineHash(line []byte) [32]byte { return sha256.Sum256(line) }

// AccessLink is a line's place in the chain: the fields the writer adds
// to every line.
type AccessLink struct {
	Seq  int64  `json:"seq"`
	Prev string `json:"prev"`
}

// ParseAccessLink reads a line's link. ok is false for a line that has
// none (written before the access log was chained, or with its link
// removed); err is set for a line that is not a JSON object.
func ParseAccessLink(line []byte) (seq int64, prev [32]byte, ok bool, err error) {
	var l struct {
		Seq  *int64  `json:"seq"`
		Prev *string `json:"prev"`
	}
	if err := json.Unmarshal(line, &l); err != nil {
		return 0, prev, false, err
	}
	if l.Seq == nil || l.Prev == nil {
		return 0, prev, false, nil
	}
	b, herr := hex.DecodeString(*l.Prev)
	if herr != nil || len(b) != len(prev) {
		return 0, prev, false, fmt.Errorf("prev %q is not a SHA-256 in hex", *l.Prev)
	}
	copy(prev[:], b)
	return *l.Seq, prev, true, nil
}

// AccessPoint is where the chain stood after one line: its hash and the
// FILE:LINE that holds it.
type AccessPoint struct {
	Hash  [32]byte
	Where string
}

// AccessReport is what CheckAccessLog found.
type AccessReport struct {
	// Findings are "FILE:LINE: reason" lines: a line edited, deleted,
	// inserted or reordered, or not a JSON object.
	Findings []string
	// Notes lose nothing: a torn last line (a crash while it was
	// written), lines written before the chain.
	Notes []string
	// Lines is the highest seq in the chain (0: no chained line).
	Lines int64
	// Heads holds the chain after each line whose seq was asked for
	// (the access counts of the checkpoints).
	Heads map[int64]AccessPoint
	// Bytes and Count count what was read.
	Bytes, Count int64
}

// accessLine is one line as the checker sees it.
type accessLine struct {
	where   string
	seq     int64
	prev    [32]byte
	hash    [32]byte
	chained bool
	bad     string // why the line is not a JSON object, when it is not
	// reported is set once a finding names this line, so that the link
	// after it does not name it again.
	reported bool
}

// accessChecker walks the chain with two lines of lookahead, enough to
// tell an inserted line (the line after it links past it, or, for a
// forged line that links to the line before it, the line after that
// links to the line it displaced) and two lines that exchanged places
// from an edit or a deletion.
type accessChecker struct {
	rep     *AccessReport
	want    map[int64]bool
	tail    accessLine // the last line in chain order; seq 0 before any
	started bool       // a chained line was read
	// unchained counts the lines before the first chained one.
	unchained int64
	firstFile string
	win       []accessLine
}

// CheckAccessLog checks the hash chain of the access log at path (a
// missing file holds no line) and returns the chain's points at the seqs
// in want, for checkpoints.
func CheckAccessLog(path string, want map[int64]bool) (*AccessReport, error) {
	c := &accessChecker{rep: &AccessReport{Heads: map[int64]AccessPoint{}}, want: want}
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return c.rep, nil
	}
	if err != nil {
		return nil, fmt.Errorf("access log: %w", err)
	}
	defer f.Close()
	if err := c.read(path, f); err != nil {
		return nil, err
	}
	c.finish()
	return c.rep, nil
}

// read feeds the lines of one file to the checker.
func (c *accessChecker) read(path string, r io.Reader) error {
	br := bufio.NewReaderSize(r, 64<<10)
	var n int
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 {
			n++
			c.rep.Bytes += int64(len(line))
			if line[len(line)-1] != '\n' {
				// The writer writes a line and its newline in one write:
				// a line without one is the part of a write a crash left
				// (or one being written now). serve cuts it when it starts.
				c.rep.Notes = append(c.rep.Notes, fmt.Sprintf("%s:%d: torn last line (%d bytes without a newline): a crash while it was written, or a line being written now; serve cuts it at its next start", path, n, len(line)))
				break
			}
			c.add(path, n, line[:len(line)-1])
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", path, err)
		}
	}
	return nil
}

// add reads one complete line into the window and checks what the
// lookahead allows.
func (c *accessChecker) add(path string, n int, line []byte) {
	c.rep.Count++
	l := accessLine{where: fmt.Sprintf("%s:%d", path, n), hash: AccessLineHash(line)}
	seq, prev, ok, err := ParseAccessLink(line)
	switch {
	case err != nil && !json.Valid(line):
		l.bad = "not a JSON object: edited or damaged"
	case err != nil:
		l.bad = "its chain link is not valid (" + err.Error() + "): edited"
	case ok:
		l.seq, l.prev, l.chained = seq, prev, true
	}
	if c.firstFile == "" {
		c.firstFile = path
	}
	c.win = append(c.win, l)
	for len(c.win) >= 3 {
		c.step()
	}
}

// finish checks the lines left in the window and notes the unchained
// prefix.
func (c *accessChecker) finish() {
	for len(c.win) > 0 {
		c.step()
	}
	if c.unchained > 0 {
		c.rep.Notes = append(c.rep.Notes, fmt.Sprintf("%s:1-%d: %d lines written before the access log was chained (by a kubetrail without its tamper evidence): not covered", c.firstFile, c.unchained, c.unchained))
	}
}

// link reports whether b follows a in the chain; a missing b does not.
func link(a, b *accessLine) bool {
	return b != nil && b.chained && b.seq == a.seq+1 && b.prev == a.hash
}

// step checks the window's first line against the chain's tail, using
// the second when there is one, and drops what it checked.
func (c *accessChecker) step() {
	b := &c.win[0]
	var next *accessLine
	if len(c.win) > 1 {
		next = &c.win[1]
	}
	var after *accessLine
	if len(c.win) > 2 {
		after = &c.win[2]
	}
	t := &c.tail
	drop := 1
	switch {
	case !c.started && !b.chained && b.bad == "":
		// Written before the chain: counted, so that the first chained
		// line's seq is its number in the log.
		c.unchained++
		c.accept(accessLine{where: b.where, seq: t.seq + 1, hash: b.hash})
	case link(t, b) && link(t, next) && after == nil:
		c.finding(b, fmt.Sprintf("two lines claim seq %d, this one and %s: one was inserted", b.seq, next.where))
		c.accept(*b)
		drop = 2
	case link(t, b) && !(link(t, next) && link(next, after)):
		c.accept(*b)
	case next != nil && b.chained && next.chained && b.seq == t.seq+2 && next.seq == t.seq+1 && next.prev == t.hash && b.prev == next.hash:
		c.finding(b, fmt.Sprintf("reordered: seq %d stands before seq %d (%s): the two lines exchanged places", b.seq, next.seq, next.where))
		c.accept(*next)
		c.accept(*b)
		drop = 2
	case link(t, next) && b.chained && b.seq <= t.seq:
		c.finding(b, fmt.Sprintf("out of order: seq %d after seq %d (%s): inserted, or moved from an earlier place", b.seq, t.seq, t.where))
	case link(t, next):
		// A forged line may even link to the line before it: the line
		// after it, whose link does too, tells.
		c.finding(b, "inserted: the line after it links to the line before it")
		c.accept(*next)
		drop = 2
	case !b.chained:
		why := b.bad
		if why == "" {
			why = "no chain link (seq, prev) after chained lines: edited, or inserted"
		}
		c.finding(b, why)
		c.accept(accessLine{where: b.where, seq: t.seq + 1, hash: b.hash, reported: true})
	case b.seq == t.seq+1 && t.seq == 0:
		c.finding(b, "the first line links to a line the log does not hold: lines before it were deleted, or it was edited")
		c.accept(*b)
	case b.seq == t.seq+1 && next != nil && next.chained && next.seq == b.seq+1 && next.prev != b.hash:
		// Neither link around it holds: it changed (its link, or
		// more), and the line before it may have too.
		c.finding(b, fmt.Sprintf("edited: its link does not match the line before it (%s) and the next line records another hash for it", t.where))
		b.reported = true
		c.accept(*b)
	case b.seq == t.seq+1:
		// In its place but linked to another line: the line before it
		// changed after this one was written.
		if !t.reported {
			c.finding(t, fmt.Sprintf("edited: its hash is not the one the next line (%s) records for it", b.where))
		}
		c.accept(*b)
	case b.seq > t.seq+1 && b.prev == t.hash:
		c.finding(b, fmt.Sprintf("edited: its seq is %d, the line before it is seq %d", b.seq, t.seq))
		b.seq, b.reported = t.seq+1, true
		c.accept(*b)
	case b.seq > t.seq+1:
		c.finding(b, fmt.Sprintf("%d lines deleted before it: seq jumps from %d to %d", b.seq-t.seq-1, t.seq, b.seq))
		c.accept(*b)
	default:
		// Not accepted: the chain goes on from the tail.
		c.finding(b, fmt.Sprintf("out of order: seq %d after seq %d (%s): inserted, or moved from an earlier place", b.seq, t.seq, t.where))
	}
	c.win = c.win[drop:]
}

// accept makes l the chain's tail.
func (c *accessChecker) accept(l accessLine) {
	c.started = c.started || l.chained
	c.tail = l
	c.rep.Lines = max(c.rep.Lines, l.seq)
	if c.want[l.seq] {
		c.rep.Heads[l.seq] = AccessPoint{Hash: l.hash, Where: l.where}
	}
}

func (c *accessChecker) finding(l *accessLine, why string) {
	l.reported = true
	c.rep.Findings = append(c.rep.Findings, l.where+": "+why)
}

// AccessTail reads the end of an access log: the chain head of its
// complete lines, and how many bytes after the last newline a crash left
// (a torn line, which the writer must cut before appending). Only the
// last line is read, unless it carries no link (a log written before the
// chain): then every line is counted.
func AccessTail(f io.ReaderAt, size int64) (head AccessHead, torn int64, err error) {
	end, err := lastNewline(f, size)
	if err != nil || end < 0 {
		return head, size - end - 1, err
	}
	torn = size - end - 1
	start, err := lastNewline(f, end)
	if err != nil {
		return head, torn, err
	}
	line := make([]byte, end-start-1)
	if _, err := f.ReadAt(line, start+1); err != nil {
		return head, torn, err
	}
	head.Hash = AccessLineHash(line)
	if seq, _, ok, _ := ParseAccessLink(line); ok {
		head.Lines = seq
		return head, torn, nil
	}
	head.Lines, err = countLines(io.NewSectionReader(f, 0, end+1))
	return head, torn, err
}

// lastNewline returns the offset of the last '\n' before off, -1 when
// there is none.
func lastNewline(f io.ReaderAt, off int64) (int64, error) {
	buf := make([]byte, 64<<10)
	for off > 0 {
		n := min(int64(len(buf)), off)
		off -= n
		if _, err := f.ReadAt(buf[:n], off); err != nil {
			return 0, err
		}
		if i := bytes.LastIndexByte(buf[:n], '\n'); i >= 0 {
			return off + int64(i), nil
		}
	}
	return -1, nil
}

func countLines(r io.Reader) (int64, error) {
	buf := make([]byte, 64<<10)
	var n int64
	for {
		k, err := r.Read(buf)
		n += int64(bytes.Count(buf[:k], []byte{'\n'}))
		if err == io.EOF {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}
