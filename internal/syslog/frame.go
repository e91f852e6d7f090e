package syslog

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// maxCountDigits is the longest octet count read as one: ten digits
// (about 9 GB) still name a frame to skip; more is garbage.
const maxCountDigits = 10

// FrameReader splits a syslog stream into messages, detecting the framing
// of each frame by its first byte (RFC 6587): a digit starts an octet
// count (section 3.4.1), '<' starts a newline-terminated message
// (non-transparent framing, section 3.4.2). Bytes between frames that are
// '\n', '\r', NUL or ' ' are ignored.
//
// Bad input costs only itself. A frame over the maximum size is read past
// without being held and reported; bytes that start no frame (binary
// garbage, a count that is not one, the rest of a frame longer than its
// count) are skipped up to the next "<PRI>" or "COUNT <PRI>" and
// reported. A newline-framed message is also ended by '}' followed by
// "<PRI>" or "COUNT <PRI>": the end of a JSON message whose sender left
// out the count or the newline, followed by the next frame, so that one
// bad frame does not swallow the good ones after it on a stream without
// newlines.
//
// A FrameReader is not safe for concurrent use.
type FrameReader struct {
	r       *bufio.Reader
	max     int
	buf     []byte
	inFrame bool
}

// Frame is what one call to Next found.
type Frame struct {
	// Msg is the message without its framing, nil when only a skip is
	// reported. It is valid until the next call to Next.
	Msg []byte
	// Skipped counts the bytes skipped before Msg, or instead of it.
	Skipped int64
	// Reason says why they were skipped, "" when none were.
	Reason string
}

// NewFrameReader reads frames of at most max bytes from r through a
// buffer of bufSize bytes.
func NewFrameReader(r io.Reader, bufSize, max int) *FrameReader {
	return &FrameReader{r: bufio.NewReaderSize(r, bufSize), max: max}
}

// InFrame reports whether Next is in the middle of a frame (as opposed to
// waiting for one to start): callers use it to bound how long a frame may
// take to arrive.
func (f *FrameReader) InFrame() bool { return f.inFrame || f.r.Buffered() > 0 }

// Ready reports whether a whole frame is already buffered, so that Next
// will not read from the stream. Callers store what they have before
// reading on when it is not.
func (f *FrameReader) Ready() bool {
	b, _ := f.r.Peek(f.r.Buffered())
	b = bytes.TrimLeft(b, "\n\r\x00 ")
	if len(b) == 0 {
		return false
	}
	if b[0] == '<' {
		end, _ := newlineEnd(b)
		return end >= 0
	}
	n, hdr, ok := parseCount(b)
	return ok && hdr > 0 && n <= int64(f.max) && int64(len(b)-hdr) >= n
}

// Next returns the next frame. At the end of the stream between frames
// it returns io.EOF; a stream that ends inside a frame gives
// io.ErrUnexpectedEOF, and a read error is returned as it is, with the
// frame's bytes lost.
func (f *FrameReader) Next() (Frame, error) {
	f.inFrame = false
	if err := f.skipSeparators(); err != nil {
		return Frame{}, err
	}
	f.inFrame = true
	defer func() { f.inFrame = false }()
	b, _ := f.r.Peek(f.r.Buffered())
	switch {
	case b[0] == '<':
		return f.readLine(Frame{})
	case b[0] >= '1' && b[0] <= '9':
		n, hdr, ok := parseCount(b)
		if ok && hdr == 0 {
			// The count may go on in bytes not yet here.
			b, _ = f.r.Peek(maxCountDigits + 1)
			n, hdr, ok = parseCount(b)
		}
		switch {
		case ok && hdr > 0:
			f.r.Discard(hdr)
			return f.readCounted(Frame{}, n)
		case ok:
			return f.resync("the stream ended inside an octet count")
		default:
			return f.resync(fmt.Sprintf("octet count %q is not a number followed by a space", clip(b, maxCountDigits+1)))
		}
	default:
		return f.resync(fmt.Sprintf("not a syslog frame: starts with %q, neither an octet count nor a <PRI>", clip(b, 1)))
	}
}

func (f *FrameReader) skipSeparators() error {
	for {
		b, err := f.r.Peek(1)
		if err != nil {
			return err
		}
		if c := b[0]; c != '\n' && c != '\r' && c != 0 && c != ' ' {
			return nil
		}
		f.r.Discard(1)
	}
}

// parseCount reads "COUNT " at the start of b. ok is false when b does
// not start with one; hdr is 0 when b ends before the space.
func parseCount(b []byte) (n int64, hdr int, ok bool) {
	i := 0
	for i < len(b) && i < maxCountDigits && b[i] >= '0' && b[i] <= '9' {
		n = n*10 + int64(b[i]-'0')
		i++
	}
	if i == 0 || b[0] == '0' {
		return 0, 0, false
	}
	if i == len(b) {
		return n, 0, true
	}
	if b[i] != ' ' {
		return 0, 0, false
	}
	return n, i + 1, true
}

// readCounted reads a frame of n bytes, or skips it when it is over the
// maximum.
func (f *FrameReader) readCounted(fr Frame, n int64) (Frame, error) {
	if n > int64(f.max) {
		skipped, err := f.r.Discard(int(min(n, 1<<62)))
		fr.Skipped += int64(skipped)
		fr.Reason = joinReason(fr.Reason, fmt.Sprintf("a frame of %d bytes is over the %d-byte message limit; skipped", n, f.max))
		if err != nil {
			return fr, unexpected(err)
		}
		return fr, nil
	}
	f.buf = f.buf[:0]
	for int64(len(f.buf)) < n {
		b, err := f.r.Peek(max(1, min(f.r.Buffered(), int(n)-len(f.buf))))
		if len(b) > 0 {
			k := min(len(b), int(n)-len(f.buf))
			f.buf = append(f.buf, b[:k]...)
			f.r.Discard(k)
		}
		if err != nil && int64(len(f.buf)) < n {
			return fr, unexpected(err)
		}
	}
	fr.Msg = f.buf
	return fr, nil
}

// readLine reads a newline-framed message (see FrameReader for how it
// ends), or skips it when it is over the maximum.
func (f *FrameReader) readLine(fr Frame) (Frame, error) {
	f.buf = f.buf[:0]
	var over int64 // bytes dropped once the message passed the maximum
	take := func(n int) {
		b, _ := f.r.Peek(n)
		if over == 0 && len(f.buf)+n <= f.max {
			f.buf = append(f.buf, b...)
		} else {
			over += int64(len(f.buf)) + int64(n)
			f.buf = f.buf[:0]
		}
	}
	for {
		b, err := f.r.Peek(max(1, f.r.Buffered())) // blocks only when nothing is buffered
		if end, next := newlineEnd(b); end >= 0 {
			take(end)
			f.r.Discard(next)
			break
		}
		if err == nil {
			// Keep back what could begin "}COUNT <PRI>" until more
			// bytes tell.
			keep := pendingTail(b)
			if keep < len(b) {
				take(len(b) - keep)
				f.r.Discard(len(b) - keep)
				continue
			}
			if _, err = f.r.Peek(len(b) + 1); err == nil {
				continue
			}
			b, _ = f.r.Peek(f.r.Buffered())
		}
		take(len(b))
		f.r.Discard(len(b))
		if errors.Is(err, io.EOF) && (over > 0 || len(f.buf) > 0) {
			break // the last message of a stream need not end in '\n'
		}
		return fr, unexpected(err)
	}
	if over > 0 {
		fr.Skipped += over
		fr.Reason = joinReason(fr.Reason, fmt.Sprintf("a newline-framed message of %d bytes is over the %d-byte message limit; skipped", over, f.max))
		return fr, nil
	}
	fr.Msg = bytes.TrimRight(f.buf, "\r")
	return fr, nil
}

// newlineEnd finds the end of a newline-framed message in b: end is where
// the message ends and next where the next frame starts; both are -1
// when b holds no end.
func newlineEnd(b []byte) (end, next int) {
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '\n':
			return i, i + 1
		case '}':
			if countedStart(b[i+1:]) || priStart(b[i+1:]) {
				return i + 1, i + 1
			}
		}
	}
	return -1, -1
}

// countedStart reports whether b starts with "COUNT <DIGITS>".
func countedStart(b []byte) bool {
	_, hdr, ok := parseCount(b)
	if !ok || hdr == 0 {
		return false
	}
	return priStart(b[hdr:])
}

// priStart reports whether b starts with "<1-3 digits>".
func priStart(b []byte) bool {
	if len(b) < 3 || b[0] != '<' {
		return false
	}
	for i := 1; i < len(b) && i <= 4; i++ {
		if b[i] == '>' {
			return i > 1
		}
		if b[i] < '0' || b[i] > '9' {
			return false
		}
	}
	return false
}

// pendingTail is how many bytes at the end of b could begin "}COUNT <PRI>"
// and need more input to be told apart.
func pendingTail(b []byte) int {
	const longest = 1 + maxCountDigits + 1 + 5 // "}" COUNT " " "<191>"
	for i := max(0, len(b)-longest); i < len(b); i++ {
		if b[i] != '}' {
			continue
		}
		if t := b[i+1:]; couldBeCountedStart(t) {
			return len(b) - i
		}
	}
	return 0
}

// couldBeCountedStart reports whether b is a prefix of some "COUNT <PRI>"
// or "<PRI>".
func couldBeCountedStart(b []byte) bool {
	if len(b) > 0 && b[0] == '<' {
		return couldBePRI(b)
	}
	i := 0
	for i < len(b) && i < maxCountDigits && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	if i < len(b) && b[0] == '0' {
		return false
	}
	if i == len(b) {
		return true
	}
	if b[i] != ' ' || i == 0 {
		return false
	}
	return len(b) == i+1 || couldBePRI(b[i+1:])
}

// couldBePRI reports whether b is a prefix of some "<PRI>".
func couldBePRI(b []byte) bool {
	if b[0] != '<' {
		return false
	}
	for j := 1; j < len(b); j++ {
		if b[j] == '>' {
			return j > 1
		}
		if b[j] < '0' || b[j] > '9' || j > 3 {
			return false
		}
	}
	return true
}

// resync skips bytes up to the next frame start: a "<PRI>", taken as
// octet-counted when "COUNT " came just before it. The bytes skipped are
// reported, with why, together with the frame found after them.
func (f *FrameReader) resync(why string) (Frame, error) {
	var fr Frame
	// The last bytes skipped, to find "COUNT " before '<'; trimmed once
	// it has dropped bytes from its front.
	var window []byte
	trimmed := false
	skip := func(n int) {
		b, _ := f.r.Peek(n)
		window = append(window, b...)
		if keep := maxCountDigits + 2; len(window) > keep {
			window = append(window[:0], window[len(window)-keep:]...)
			trimmed = true
		}
		f.r.Discard(n)
		fr.Skipped += int64(n)
	}
	done := func() { fr.Reason = fmt.Sprintf("%s: %d bytes skipped", why, fr.Skipped) }
	skip(1)
	for {
		b, err := f.r.Peek(max(1, f.r.Buffered()))
		i := bytes.IndexByte(b, '<')
		if i < 0 {
			if len(b) > 0 {
				skip(len(b))
				continue
			}
			done()
			if errors.Is(err, io.EOF) {
				return fr, nil
			}
			return fr, err
		}
		skip(i)
		if head, _ := f.r.Peek(5); !priStart(head) {
			skip(1)
			continue
		}
		if n, cut := trailingCount(window, trimmed); cut > 0 {
			fr.Skipped -= int64(cut)
			done()
			return f.readCounted(fr, n)
		}
		done()
		return f.readLine(fr)
	}
}

// trailingCount reads "COUNT " at the end of b; cut is its length, 0 when
// there is none. Digits must not run to the start of b when b was cut
// from a longer stretch: the count could be longer than what is seen.
func trailingCount(b []byte, trimmed bool) (n int64, cut int) {
	if len(b) < 2 || b[len(b)-1] != ' ' {
		return 0, 0
	}
	i := len(b) - 1
	for i > 0 && b[i-1] >= '0' && b[i-1] <= '9' {
		i--
	}
	if i == len(b)-1 || b[i] == '0' || len(b)-1-i > maxCountDigits || (i == 0 && trimmed) {
		return 0, 0
	}
	n, _, _ = parseCount(b[i:])
	return n, len(b) - i
}

func joinReason(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
