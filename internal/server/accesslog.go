package server

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/kubetrail/kubetrail/internal/trust"
)

// AccessLogFile is the access log's name in the data folder.
const AccessLogFile = "access.log"

// AccessLogSyncInterval is how often the access log is fsync'd when lines
// were added: a process crash loses no line (each is written to the file
// as one write), a machine crash at most this much.
const AccessLogSyncInterval = time.Second

// AccessLog is DATA/access.log: one JSON line (accessEntry) for every
// request to the read API, whatever its answer, and for every request
// refused with 401 or 403 on any route, written when the answer ends.
// Token values are never in it. Its methods are safe for concurrent use,
// and a nil *AccessLog logs nothing.
//
// Lines form a hash chain (trust.AccessLink: each ends with its seq and the
// hash of the line before it), whose head signed checkpoints carry
// (trust.Signer.Access), so that kubetrail verify finds a line edited,
// deleted, inserted or reordered, and the log cut or rewritten.
type AccessLog struct {
	path string
	// TornBytes were cut from the end when it was opened: a line a crash
	// left without its newline.
	TornBytes int64

	mu    sync.Mutex
	f     *os.File
	head  trust.AccessHead // the chain after the last line written
	size  int64            // the file's size after the last line written
	dirty bool
	err   error // the last write's or sync's error; cleared by a good write
}

// OpenAccessLog opens (creating, mode 0600) the access log at path for
// appending. It continues the chain from the last complete line, and cuts
// what follows it: a line a crash tore (written with its newline in one
// write, a line without one was never whole), which would otherwise glue
// onto the next line and leave a line jq cannot read.
func OpenAccessLog(path string) (*AccessLog, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("access log: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("access log: %w", err)
	}
	head, torn, err := trust.AccessTail(f, st.Size())
	if err == nil && torn > 0 {
		err = f.Truncate(st.Size() - torn)
		if err == nil {
			err = f.Sync()
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("access log %s: %w", path, err)
	}
	return &AccessLog{path: path, TornBytes: torn, f: f, head: head, size: st.Size() - torn}, nil
}

// accessEntry is one line of the access log (docs/security.md, "Access
// log"). Field order is the documented one.
type accessEntry struct {
	Time string `json:"time"`
	// Who is the token's name or the certificate's CN; empty when the
	// request carried no valid credential.
	Who string `json:"who"`
	// Credential is token, certificate, none or open.
	Credential string              `json:"credential"`
	Role       string              `json:"role"`
	Scope      *Scope              `json:"scope,omitempty"`
	Remote     string              `json:"remote,omitempty"`
	Method     string              `json:"method,omitempty"`
	Endpoint   string              `json:"endpoint"`
	Path       string              `json:"path,omitempty"`
	Params     map[string][]string `json:"params,omitempty"`
	Status     int                 `json:"status"`
	Results    int64               `json:"results"`
	DurationMs float64             `json:"durationMs"`
	Error      string              `json:"error,omitempty"`
	// Seq and Prev link the line into the chain (trust.AccessLink); they
	// are last, so the documented fields come first.
	Seq  int64  `json:"seq"`
	Prev string `json:"prev"`
}

// credentialParam reports whether a query parameter's name looks like it
// carries a credential; its values are not logged.
func credentialParam(name string) bool {
	n := strings.ToLower(name)
	for _, w := range []string{"token", "password", "secret", "authorization", "apikey", "api_key", "api-key"} {
		if strings.Contains(n, w) {
			return true
		}
	}
	return false
}

// logAccess writes the line of one request.
func (s *Server) logAccess(r *http.Request, ra *requestAccess, code int, reason string, start time.Time) {
	if s.cfg.AccessLog == nil {
		return
	}
	e := accessEntry{
		Time: start.UTC().Format(time.RFC3339Nano), Who: ra.p.name, Credential: ra.p.cred, Role: ra.p.roleName(),
		Remote: r.RemoteAddr, Method: r.Method, Endpoint: r.Pattern, Path: r.URL.Path,
		Status: code, Results: ra.results, Error: reason,
		DurationMs: float64(time.Since(start).Microseconds()) / 1000,
	}
	if !ra.p.grant.Scope.empty() {
		e.Scope = &ra.p.grant.Scope
	}
	if q, err := url.ParseQuery(r.URL.RawQuery); err == nil && len(q) > 0 {
		for k := range q {
			if credentialParam(k) {
				q[k] = []string{"<redacted>"}
			}
		}
		e.Params = q
	} else if err != nil {
		e.Params = map[string][]string{"": {"<unparsable query string>"}}
	}
	s.cfg.AccessLog.write(e)
	if err := s.cfg.AccessLog.Err(); err != nil {
		s.log.Error("access log: cannot write; reads are refused until it can", "path", s.cfg.AccessLog.path, "err", err)
	}
}

// write appends one line, linked to the one before, in a single write.
func (l *AccessLog) write(e accessEntry) {
	if l == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		l.err = fmt.Errorf("%s: closed", l.path)
		return
	}
	e.Seq, e.Prev = l.head.Lines+1, hex.EncodeToString(l.head.Hash[:])
	b, err := json.Marshal(&e)
	if err != nil {
		panic("BUG: access log entry: " + err.Error())
	}
	if _, err := l.f.Write(append(b, '\n')); err != nil {
		// A part of the line may be in the file: cut it, or the next
		// line would glue onto it. If that fails too, the next start
		// cuts it (it has no newline) or verify names it.
		l.f.Truncate(l.size)
		l.err = fmt.Errorf("%s: %w", l.path, err)
		return
	}
	l.head = trust.AccessHead{Lines: e.Seq, Hash: trust.AccessLineHash(b)}
	l.size += int64(len(b)) + 1
	l.dirty, l.err = true, nil
}

// Head makes the lines written so far durable and returns the chain's
// head after them, for a signed checkpoint (trust.Signer.Access): a
// checkpoint must not sign a line that a machine crash can take back.
// The sync holds the lock (new lines wait for it), so that no line
// slips in between the sync and the head.
func (l *AccessLog) Head() (trust.AccessHead, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.syncLocked(); err != nil {
		return trust.AccessHead{}, err
	}
	return l.head, nil
}

// Err returns why the last line could not be written, or nil.
func (l *AccessLog) Err() error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// Sync makes the lines written so far durable.
func (l *AccessLog) Sync() error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.syncLocked()
}

func (l *AccessLog) syncLocked() error {
	if l.f == nil || !l.dirty {
		return nil
	}
	if err := l.f.Sync(); err != nil {
		l.err = fmt.Errorf("%s: sync: %w", l.path, err)
		return l.err
	}
	l.dirty = false
	return nil
}

// Run syncs the log every AccessLogSyncInterval until ctx ends, then once
// more.
func (l *AccessLog) Run(ctx context.Context) {
	if l == nil {
		return
	}
	t := time.NewTicker(AccessLogSyncInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			l.Sync()
			return
		case <-t.C:
			l.Sync()
		}
	}
}

// Close syncs and closes the log; lines written after it are refused.
func (l *AccessLog) Close() error {
	if l == nil {
		return nil
	}
	err := l.Sync()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return err
	}
	if cerr := l.f.Close(); err == nil {
		err = cerr
	}
	l.f = nil
	return err
}
