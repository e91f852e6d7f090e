package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"
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
type AccessLog struct {
	path string

	mu    sync.Mutex
	f     *os.File
	dirty bool
	err   error // the last write's or sync's error; cleared by a good write
}

// OpenAccessLog opens (creating, mode 0600) the access log at path for
// appending.
func OpenAccessLog(path string) (*AccessLog, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("access log: %w", err)
	}
	return &AccessLog{path: path, f: f}, nil
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

// write appends one line in a single write.
func (l *AccessLog) write(e accessEntry) {
	if l == nil {
		return
	}
	b, err := json.Marshal(&e)
	if err != nil {
		panic("BUG: access log entry: " + err.Error())
	}
	b = append(b, '\n')
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		l.err = fmt.Errorf("%s: closed", l.path)
		return
	}
	if _, err := l.f.Write(b); err != nil {
		l.err = fmt.Errorf("%s: %w", l.path, err)
		return
	}
	l.dirty, l.err = true, nil
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
