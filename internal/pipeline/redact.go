package pipeline

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"

	"github.com/kubetrail/kubetrail/internal/audit"
)

// Redaction replaces secret values in events before they are stored
// (docs/ingest.md, "Redaction"; docs/adr/0011): a value becomes a marker
// that keeps its key name and carries a keyed hash of the value, so that
// equal values can be correlated without being readable.

const (
	// markerPrefix starts every marker: <redacted:hmac-sha256:HEX16>.
	markerPrefix = "<redacted:hmac-sha256:"
	// markerHashBytes is how much of the HMAC a marker keeps: 64 bits tell
	// values apart in any store and give nothing to guess a value with.
	markerHashBytes = 8
	markerLen       = len(markerPrefix) + 2*markerHashBytes + 1

	// RedactedAnnotation marks an event in which kubetrail replaced values.
	RedactedAnnotation = "kubetrail.io/redacted"

	// RedactKeyFile is the name of the key file kubetrail generates in the
	// data folder when no key file is given.
	RedactKeyFile = "redact.key"
	// MinRedactKeyBytes is the shortest key accepted: a short key would
	// let anyone who reads the store test guesses of a value offline.
	MinRedactKeyBytes = 32
)

// Redactor replaces secret values in events with keyed markers. It is safe
// for concurrent use.
type Redactor struct {
	key []byte
	// redacted counts the events redacted and then stored (or found
	// stored already), for /metrics.
	redacted atomic.Int64
}

// NewRedactor returns a Redactor that hashes with key (HMAC-SHA256). Every
// collector writing to one store must use the same key, or the markers of
// equal values differ.
func NewRedactor(key []byte) (*Redactor, error) {
	if len(key) < MinRedactKeyBytes {
		return nil, fmt.Errorf("redaction key: %d bytes, want at least %d", len(key), MinRedactKeyBytes)
	}
	return &Redactor{key: bytes.Clone(key)}, nil
}

// Redacted returns how many events were redacted and handed on
// successfully since the Redactor was made.
func (r *Redactor) Redacted() int64 { return r.redacted.Load() }

func (r *Redactor) marker(v []byte) string {
	m := hmac.New(sha256.New, r.key)
	m.Write(v)
	sum := m.Sum(nil)
	return markerPrefix + hex.EncodeToString(sum[:markerHashBytes]) + ">"
}

// isMarker reports whether s is a marker, which is never redacted again.
func isMarker(s string) bool {
	if len(s) != markerLen || !strings.HasPrefix(s, markerPrefix) || s[len(s)-1] != '>' {
		return false
	}
	for _, c := range []byte(s[len(markerPrefix) : len(s)-1]) {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// secretBytes is what a marker hashes: the decoded bytes of a Secret's
// base64 data value, so that a value written in data and the same value in
// stringData (or in a last-applied annotation) get the same marker.
func secretBytes(s string, base64Data bool) []byte {
	if base64Data {
		if d, err := base64.StdEncoding.DecodeString(s); err == nil {
			return d
		}
	}
	return []byte(s)
}

// Redact returns rec with its secret values replaced, and whether anything
// was; rec itself is not modified. An event that needs nothing (the common
// case, decided from the decoded event and a few byte searches before any
// parsing) is returned as it is, bytes included. An error means the event's
// bytes could not be walked: the caller must not store it.
func (r *Redactor) Redact(rec audit.Record) (audit.Record, bool, error) {
	if !needsRedaction(rec.Raw, &rec.Event) {
		return rec, false, nil
	}
	out, changed, err := r.redactEvent(rec.Raw, hintFor(rec.Event.ObjectRef))
	if err != nil || !changed {
		return rec, false, err
	}
	var ev audit.Event
	if err := audit.DecodeStored(out, &ev); err != nil {
		return rec, false, fmt.Errorf("redacted event does not decode: %w", err)
	}
	return audit.Record{Event: ev, Raw: out, Format: rec.Format}, true, nil
}

// needsRedaction is the pre-check: it must say yes for every event that
// redactEvent would change (a fuzz test holds it to that), and should say
// no, cheaply, for nearly every other event.
func needsRedaction(raw []byte, ev *audit.Event) bool {
	if sensitiveQuery(ev.RequestURI) || hintFor(ev.ObjectRef) != (hint{}) {
		return true
	}
	for k, v := range ev.Annotations {
		if sensitiveAnnotation(k, v) {
			return true
		}
	}
	return suspicious(raw)
}

// suspicious reports whether b may hold a body that names a kind whose
// values are redacted (Secret, SecretList, TokenRequest, TokenReview), also
// inside a last-applied annotation. The API server never writes a letter as
// a \u escape; a body that does is walked in full.
func suspicious(b []byte) bool {
	if bytes.Contains(b, []byte("Secret")) || bytes.Contains(b, []byte("TokenRe")) {
		return true
	}
	for {
		i := bytes.Index(b, []byte(`\u00`))
		if i < 0 || i+4 >= len(b) {
			return false
		}
		if c := b[i+4]; '4' <= c && c <= '7' {
			return true
		}
		b = b[i+4:]
	}
}

// hintFor says what kindless bodies of a request on ref are.
func hintFor(ref *audit.ObjectReference) hint {
	if ref == nil {
		return hint{}
	}
	switch {
	case ref.Resource == "secrets" && ref.Subresource == "":
		return hint{secret: true}
	case ref.Resource == "serviceaccounts" && ref.Subresource == "token":
		return hint{tokenRequest: true}
	case ref.Resource == "tokenreviews":
		return hint{tokenReview: true}
	}
	return hint{}
}

// sensitiveParams are query parameter name endings whose values are
// credentials (access_token, id_token, token, password, api_key...).
var sensitiveParams = []string{"token", "password", "passwd", "secret", "apikey", "api_key", "api-key", "authorization", "bearer"}

// sensitiveParam reports whether a query parameter's value is a credential.
func sensitiveParam(name string) bool {
	if strings.ContainsAny(name, "%+") {
		if n, err := url.QueryUnescape(name); err == nil {
			name = n
		}
	}
	for _, s := range sensitiveParams {
		if len(name) >= len(s) && strings.EqualFold(name[len(name)-len(s):], s) {
			return true
		}
	}
	return false
}

// sensitiveQuery reports whether uri's query string has a credential.
func sensitiveQuery(uri string) bool {
	_, q, ok := strings.Cut(uri, "?")
	for ok {
		var p string
		p, q, ok = cutParam(q)
		if name, v, _ := strings.Cut(p, "="); v != "" && sensitiveParam(name) {
			return true
		}
	}
	return false
}

// cutParam splits a query string at its first & or ; (both separate
// parameters for some servers).
func cutParam(q string) (param, rest string, found bool) {
	if i := strings.IndexAny(q, "&;"); i >= 0 {
		return q[:i], q[i+1:], true
	}
	return q, "", q != ""
}

// redactURI replaces credential values in uri's query string with markers.
// The markers are written as they are, not percent-encoded: Go's and the
// API server's query parsers accept them.
func (r *Redactor) redactURI(uri string) (string, bool) {
	i := strings.IndexByte(uri, '?')
	if i < 0 {
		return uri, false
	}
	var b strings.Builder
	b.WriteString(uri[:i+1])
	changed := false
	for q := uri[i+1:]; q != ""; {
		j := strings.IndexAny(q, "&;")
		p, sep := q, ""
		if j >= 0 {
			p, sep, q = q[:j], q[j:j+1], q[j+1:]
		} else {
			q = ""
		}
		if name, v, _ := strings.Cut(p, "="); v != "" && sensitiveParam(name) {
			if u, err := url.QueryUnescape(v); err == nil {
				v = u
			}
			if !isMarker(v) {
				p, changed = name+"="+r.marker([]byte(v)), true
			}
		}
		b.WriteString(p)
		b.WriteString(sep)
	}
	return b.String(), changed
}

// sensitiveAnnotationNames are annotation names (the part after the last
// "/", compared ignoring case and with _ as -) whose values are credentials.
var sensitiveAnnotationNames = []string{"authorization", "proxy-authorization", "x-authorization",
	"cookie", "set-cookie", "token", "access-token", "id-token", "refresh-token", "auth-token",
	"x-auth-token", "bearer-token", "password", "client-secret", "api-key", "x-api-key", "apikey", "private-key"}

// sensitiveAnnotation reports whether an event annotation holds a
// credential: by its name, or by a value that starts with an HTTP
// credential scheme (Bearer, Basic).
func sensitiveAnnotation(name, value string) bool {
	if hasPrefixFold(value, "bearer ") || hasPrefixFold(value, "basic ") {
		return true
	}
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		name = name[i+1:]
	}
	for _, s := range sensitiveAnnotationNames {
		if len(name) == len(s) && equalFoldDash(name, s) {
			return true
		}
	}
	return false
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

// equalFoldDash compares an ASCII name with a lower-case one, ignoring case
// and taking _ for -.
func equalFoldDash(name, lower string) bool {
	for i := 0; i < len(name); i++ {
		c := name[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		} else if c == '_' {
			c = '-'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// redactEvent walks one event's JSON: its requestURI, annotations and
// request and response bodies. When it changed something it marks the
// event with RedactedAnnotation.
func (r *Redactor) redactEvent(raw []byte, h hint) ([]byte, bool, error) {
	w := &walker{r: r, ed: editor{in: raw}}
	ms, _, err := members(raw, skipWS(raw, 0), 0)
	if err != nil {
		return nil, false, fmt.Errorf("event: %w", err)
	}
	for _, m := range ms {
		key := raw[m.k0:m.k1]
		switch {
		case keyIs(key, "requestURI"):
			if s, ok := w.stringAt(m); ok {
				if u, changed := r.redactURI(s); changed {
					q, _ := json.Marshal(u) // escaped as the API server escapes
					w.ed.replace(m.v0, m.v1, q)
				}
			}
		case keyIs(key, "annotations") && raw[m.v0] == '{':
			as, _, err := members(raw, m.v0, 1)
			if err != nil {
				return nil, false, fmt.Errorf("annotations: %w", err)
			}
			for _, a := range as {
				name, _ := unquote(raw[a.k0:a.k1])
				if v, ok := w.stringAt(a); ok && !isMarker(v) && sensitiveAnnotation(name, v) {
					w.redactOne(a, false)
				}
			}
		case keyIs(key, "requestObject") || keyIs(key, "responseObject"):
			if err := w.value(m.v0, h, 1); err != nil {
				return nil, false, fmt.Errorf("%s: %w", key, err)
			}
		}
	}
	out, changed := w.ed.result()
	if !changed {
		return raw, false, nil
	}
	out, err = markRedacted(out)
	return out, true, err
}

var redactedMember = []byte(`"` + RedactedAnnotation + `":"true"`)

// markRedacted adds RedactedAnnotation to the event's annotations (the
// last annotations member, the one a decoder keeps), creating them when the
// event has none. An event that already carries the mark keeps it as is.
func markRedacted(ev []byte) ([]byte, error) {
	start := skipWS(ev, 0)
	ms, end, err := members(ev, start, 0)
	if err != nil {
		return nil, fmt.Errorf("event: %w", err)
	}
	var ann *member
	for k := range ms {
		if keyIs(ev[ms[k].k0:ms[k].k1], "annotations") {
			ann = &ms[k]
		}
	}
	var ed editor
	ed.in = ev
	switch {
	case ann != nil && ev[ann.v0] == '{':
		as, _, err := members(ev, ann.v0, 1)
		if err != nil {
			return nil, fmt.Errorf("annotations: %w", err)
		}
		for _, a := range as {
			if name, _ := unquote(ev[a.k0:a.k1]); name == RedactedAnnotation {
				return ev, nil
			}
		}
		at := ann.v1 - 1 // the closing brace
		if len(as) > 0 {
			ed.replace(at, at, append([]byte{','}, redactedMember...))
		} else {
			ed.replace(at, at, redactedMember)
		}
	case ann != nil && bytes.Equal(ev[ann.v0:ann.v1], []byte("null")):
		ed.replace(ann.v0, ann.v1, append(append([]byte{'{'}, redactedMember...), '}'))
	default:
		// No annotations (or not an object, which no decoder accepts):
		// add a member at the end of the event.
		at := end - 1
		prefix := `,"annotations":{`
		if len(ms) == 0 {
			prefix = prefix[1:]
		}
		ed.replace(at, at, append(append([]byte(prefix), redactedMember...), '}'))
	}
	out, _ := ed.result()
	return out, nil
}

// redactSink is the decorator: it redacts every event of a batch before
// its delegate sees it.
type redactSink struct {
	next Sink
	r    *Redactor
}

var _ Sink = (*redactSink)(nil)

// NewRedact returns a Sink that hands next every batch with its events'
// secret values replaced by r. Events that need no redaction reach next
// unchanged, bytes included. An event whose bytes cannot be walked is
// rejected (not stored unredacted); the rest of its batch goes on.
func NewRedact(next Sink, r *Redactor) Sink { return &redactSink{next: next, r: r} }

// Append redacts and hands on. See Sink.
func (s *redactSink) Append(ctx context.Context, b *Batch) (Result, error) {
	var redacted int64
	res, err := rewriteBatch(ctx, s.next, b, func(rec audit.Record, out *audit.Record) (bool, bool, string) {
		var changed bool
		var err error
		if *out, changed, err = s.r.Redact(rec); err != nil {
			return false, false, "cannot redact: " + err.Error()
		}
		if changed {
			redacted++
		}
		return true, changed, ""
	})
	if err == nil {
		s.r.redacted.Add(redacted)
	}
	return res, err
}

// LoadRedactKey reads a redaction key file: its content, without
// surrounding white space, is the key. Checking who may read the file is the
// caller's job.
func LoadRedactKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("redaction key: %w", err)
	}
	k := bytes.TrimSpace(b)
	if len(k) < MinRedactKeyBytes {
		return nil, fmt.Errorf("redaction key %s: %d bytes, want at least %d (make one with: head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n' > %s)",
			path, len(k), MinRedactKeyBytes, path)
	}
	return k, nil
}

// LoadOrCreateRedactKey reads the key file at path, first generating one
// (256 random bits as 64 hex digits, mode 0600) when there is none. Two
// processes starting at once agree on one key: the file appears whole, by
// a hard link, or not at all. It reports whether it created the file.
func LoadOrCreateRedactKey(path string) ([]byte, bool, error) {
	if _, err := os.Stat(path); err == nil {
		k, err := LoadRedactKey(path)
		return k, false, err
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, false, fmt.Errorf("redaction key: %w", err)
	}
	var key [32]byte
	if _, err := rand.Read(key[:]); err != nil {
		return nil, false, fmt.Errorf("redaction key: %w", err)
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, ".redact.key-*") // mode 0600
	if err != nil {
		return nil, false, fmt.Errorf("redaction key: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.WriteString(hex.EncodeToString(key[:]) + "\n")
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, false, fmt.Errorf("redaction key %s: %w", tmp.Name(), err)
	}
	created := true
	if err := os.Link(tmp.Name(), path); errors.Is(err, fs.ErrExist) {
		created = false // another process made it first: use theirs
	} else if err != nil {
		return nil, false, fmt.Errorf("redaction key: %w", err)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
	k, err := LoadRedactKey(path)
	return k, created, err
}
