package ingest

import (
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
)

// refusal is an answer decided before anything is stored, with its status
// and, for a condition that passes, the Retry-After to send.
type refusal struct {
	code       int
	retryAfter string
	msg        string
}

func (r *refusal) Error() string { return r.msg }

// refuse writes err's status and Retry-After and returns the status.
func refuse(w http.ResponseWriter, resp *WebhookResponse, err error) int {
	var rf *refusal
	if !errors.As(err, &rf) {
		rf = &refusal{code: http.StatusBadRequest, msg: err.Error()}
	}
	if rf.retryAfter != "" {
		w.Header().Set("Retry-After", rf.retryAfter)
	}
	resp.Error = rf.msg
	return rf.code
}

// budget is the memory all webhook requests may hold at once. Each request
// takes from it as its body grows and as its events are decoded, and gives
// everything back when it is answered. It never waits: a request that does
// not fit is answered 429 at once, so the sender retries later and a burst
// of large bodies cannot take the server's memory.
type budget struct {
	mu   sync.Mutex
	used int64
	max  int64
}

// take adds n bytes to what the request holding held has taken. It fails
// with 429 when the budget is spent by others, and with 413 when the
// request alone would need more than all of it, which waiting cannot fix.
func (b *budget) take(held *int64, n int64) error {
	if n <= 0 {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if *held+n > b.max {
		return &refusal{code: http.StatusRequestEntityTooLarge, msg: fmt.Sprintf(
			"this batch needs more memory than all webhook requests may hold at once (%d bytes, --max-inflight-bytes): "+
				"send smaller batches (the API server's --audit-webhook-batch-max-size)", b.max)}
	}
	if b.used+n > b.max {
		return &refusal{code: http.StatusTooManyRequests, retryAfter: "1", msg: fmt.Sprintf(
			"overloaded: webhook requests in flight hold the whole memory budget (%d bytes, --max-inflight-bytes); nothing was stored, retry", b.max)}
	}
	b.used += n
	*held += n
	return nil
}

// give returns n of the bytes held.
func (b *budget) give(held *int64, n int64) {
	b.mu.Lock()
	b.used -= n
	*held -= n
	b.mu.Unlock()
}

// readBody reads the request body, decompressing it when it is
// gzip-encoded, into a buffer taken from the budget as it grows. It
// returns the bytes read from the wire, for metrics. MaxBodyBytes bounds
// both the bytes on the wire and the decompressed body, so a small
// gzip bomb costs no more than a plain body of the limit.
func (h *Webhook) readBody(w http.ResponseWriter, r *http.Request, held *int64) ([]byte, int64, error) {
	limit := h.cfg.MaxBodyBytes
	var wireBytes int64
	wire := &countingReader{r: http.MaxBytesReader(w, r.Body, limit), n: &wireBytes}
	var src io.Reader = wire
	size, gz := r.ContentLength, false
	switch enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding"))); enc {
	case "", "identity":
		if size > limit {
			return nil, 0, h.tooLarge("")
		}
	case "gzip", "x-gzip":
		zr, err := gzip.NewReader(wire)
		if err != nil {
			return nil, wireBytes, h.readError(err, "gzip")
		}
		defer zr.Close()
		src, size, gz = zr, -1, true
	default:
		return nil, 0, &refusal{code: http.StatusUnsupportedMediaType, msg: fmt.Sprintf(
			"Content-Encoding %q is not supported: send the body as is or gzip-encoded", enc)}
	}
	body, err := h.readAll(src, size, held, gz)
	return body, wireBytes, err
}

// readAll reads src into a buffer it takes from the budget as it grows:
// from 64 KiB, doubling, never past the limit nor past size when the size
// is known. Memory is thus taken for bytes that arrived, not for what a
// Content-Length announces. A body that fills the limit is probed for one
// more byte rather than given a larger buffer.
func (h *Webhook) readAll(src io.Reader, size int64, held *int64, gz bool) ([]byte, error) {
	limit := h.cfg.MaxBodyBytes
	what, op := "", "read body"
	if gz {
		what, op = "decompressed ", "gzip"
	}
	grow := func(c int64) int64 {
		c = min(c, limit)
		if size >= 0 {
			c = min(c, size+1) // one past the size, to see the end without growing
		}
		return c
	}
	// lim is how far the body may fill the buffer before it grows as
	// above; taken is what the budget counts for the buffer, its whole
	// size when it is a reused one with room past lim.
	buf, lim := h.buffer(), grow(64<<10)
	taken := max(lim, int64(cap(buf)))
	if err := h.mem.take(held, taken); err != nil {
		return nil, err
	}
	if int64(cap(buf)) < lim {
		buf = make([]byte, 0, lim)
	}
	for {
		if int64(len(buf)) == lim {
			if lim >= limit {
				var probe [1]byte
				n, err := io.ReadFull(src, probe[:])
				if n > 0 {
					return nil, h.tooLarge(what)
				}
				if errors.Is(err, io.EOF) {
					return buf, nil
				}
				return nil, h.readError(err, op)
			}
			lim = grow(2 * lim)
			if int64(cap(buf)) < lim {
				// A new buffer: the old one is held until it is copied.
				if err := h.mem.take(held, lim); err != nil {
					return nil, err
				}
				buf = append(make([]byte, 0, lim), buf...)
				h.mem.give(held, taken)
				taken = lim
			}
		}
		n, err := src.Read(buf[len(buf):lim])
		buf = buf[:len(buf)+n]
		if errors.Is(err, io.EOF) {
			return buf, nil
		}
		if err != nil {
			return nil, h.readError(err, op)
		}
	}
}

// maxPooledBody bounds the body buffers kept for reuse: the API server's
// batches are well under it, and a rare large body's buffer is left to the
// garbage collector rather than held.
const maxPooledBody = 4 << 20

// buffer returns an empty body buffer, reused when one is free.
func (h *Webhook) buffer() []byte {
	if p, ok := h.bodies.Get().(*[]byte); ok {
		return (*p)[:0]
	}
	return nil
}

// recycle gives a body buffer back for reuse. Nothing may use the body
// afterwards.
func (h *Webhook) recycle(body []byte) {
	if body == nil || cap(body) > maxPooledBody {
		return
	}
	body = body[:0]
	h.bodies.Put(&body)
}

func (h *Webhook) tooLarge(what string) error {
	return &refusal{code: http.StatusRequestEntityTooLarge, msg: fmt.Sprintf(
		"%sbody is over the %d-byte limit (--max-body-bytes); lower the API server's --audit-webhook-batch-max-size", what, h.cfg.MaxBodyBytes)}
}

func (h *Webhook) readError(err error, what string) error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return h.tooLarge("")
	}
	return &refusal{code: http.StatusBadRequest, msg: what + ": " + err.Error()}
}
