package policy

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"

	"github.com/kubetrail/kubetrail/internal/audit"
)

// requestLine is one request of `policy eval --requests`, one JSON object
// per line.
type requestLine struct {
	// User is the user name; a missing key or null means the request had
	// no user information (failed authentication).
	User            *string  `json:"user"`
	Groups          []string `json:"groups"`
	Verb            string   `json:"verb"`
	APIGroup        string   `json:"apiGroup"`
	APIVersion      string   `json:"apiVersion"`
	Resource        string   `json:"resource"`
	Subresource     string   `json:"subresource"`
	Namespace       string   `json:"namespace"`
	Name            string   `json:"name"`
	Path            string   `json:"path"`
	ResourceRequest *bool    `json:"resourceRequest"`
}

// decisionLine is one answer of `policy eval`.
type decisionLine struct {
	Level             audit.Level   `json:"level"`
	OmitStages        []audit.Stage `json:"omitStages"`
	OmitManagedFields bool          `json:"omitManagedFields"`
	Rule              int           `json:"rule"`
}

// logDecisionLine is one answer of `policy eval --from-log`: the recorded
// event it was made for, then the decision.
type logDecisionLine struct {
	Line          int         `json:"line"`
	AuditID       string      `json:"auditID"`
	Stage         audit.Stage `json:"stage"`
	RecordedLevel audit.Level `json:"recordedLevel"`
	decisionLine
}

type errorLine struct {
	Line  int    `json:"line"`
	Error string `json:"error"`
}

// ParseRequest decodes one request of the JSON-lines format that `policy
// eval --requests` reads. Unknown keys are errors. When resourceRequest
// is missing, a request with a resource is a resource request.
func ParseRequest(line []byte) (*Request, error) {
	var in requestLine
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		return nil, describeRequestError(err)
	}
	if dec.More() {
		return nil, errors.New("more than one JSON value on the line; want one request object per line")
	}
	r := &Request{
		Verb:        in.Verb,
		APIGroup:    in.APIGroup,
		APIVersion:  in.APIVersion,
		Resource:    in.Resource,
		Subresource: in.Subresource,
		Namespace:   in.Namespace,
		Name:        in.Name,
		Path:        in.Path,
	}
	if in.ResourceRequest != nil {
		r.ResourceRequest = *in.ResourceRequest
	} else {
		r.ResourceRequest = in.Resource != ""
	}
	if in.User != nil {
		r.User = &UserInfo{Name: *in.User, Groups: in.Groups}
	} else if len(in.Groups) > 0 {
		return nil, errors.New(`"groups" without "user": a request without user information has no groups; add "user" ("" is allowed) or drop "groups"`)
	}
	return r, nil
}

var requestKeys = []string{"user", "groups", "verb", "apiGroup", "apiVersion", "resource", "subresource", "namespace", "name", "path", "resourceRequest"}

func describeRequestError(err error) error {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te):
		want := "a string"
		switch te.Field {
		case "groups":
			want = "a list of strings"
		case "resourceRequest":
			want = "true or false"
		}
		return fmt.Errorf("%q must be %s, got a JSON %s", te.Field, want, te.Value)
	case errors.As(err, &se):
		return fmt.Errorf("not JSON: %v (at byte %d)", se, se.Offset)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return errors.New("not JSON: the object is cut short")
	}
	msg := err.Error()
	if key, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
		key = strings.Trim(key, `"`)
		hint := didYouMean(key, requestKeys)
		if hint == "" {
			hint = "valid keys: " + strings.Join(requestKeys, ", ")
		}
		return fmt.Errorf("unknown key %q (%s)", key, hint)
	}
	return errors.New(strings.TrimPrefix(msg, "json: "))
}

// RequestFromEvent rebuilds the request an audit event was recorded for,
// as the API server saw it when it chose the level: the authenticated
// user (not the impersonated one: the level is chosen before
// impersonation), the verb, objectRef for resource requests (an event has
// one exactly when the request was a resource request) and the path of
// requestURI. An event whose user has no name, uid or groups is taken as
// a request without user information: that is how the API server records
// a failed authentication.
//
// For a create, the name and namespace come from requestURI, not from
// objectRef: the API server chose the level with the URL's (a create
// names no object: the name is ""), and only then filled objectRef's
// empty name and namespace in from the request body. With objectRef's, a
// rule with resourceNames would match creates, which it never does.
func RequestFromEvent(ev *audit.Event) *Request {
	r := &Request{Verb: ev.Verb}
	u := &ev.User
	if u.Username != "" || u.UID != "" || len(u.Groups) > 0 || len(u.Extra) > 0 {
		r.User = &UserInfo{Name: u.Username, Groups: u.Groups}
	}
	if o := ev.ObjectRef; o != nil {
		r.ResourceRequest = true
		r.APIGroup, r.APIVersion = o.APIGroup, o.APIVersion
		r.Resource, r.Subresource = o.Resource, o.Subresource
		r.Namespace, r.Name = o.Namespace, o.Name
	}
	path, _, _ := strings.Cut(ev.RequestURI, "?")
	if strings.Contains(path, "%") {
		if p, err := url.PathUnescape(path); err == nil {
			path = p
		}
	}
	r.Path = path
	if r.ResourceRequest && r.Verb == "create" {
		if ns, name, ok := urlNamespaceName(path); ok {
			r.Namespace, r.Name = ns, name
		}
	}
	return r
}

// urlNamespaceName parses a resource request's path as the API server's
// RequestInfoFactory does (k8s.io/apiserver/pkg/endpoints/request) and
// returns the namespace and name it names; ok is false for a path that is
// not under /api/VERSION or /apis/GROUP/VERSION.
func urlNamespaceName(path string) (ns, name string, ok bool) {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	switch {
	case len(parts) >= 3 && parts[0] == "api":
		parts = parts[2:]
	case len(parts) >= 4 && parts[0] == "apis":
		parts = parts[3:]
	default:
		return "", "", false
	}
	if parts[0] == "watch" || parts[0] == "proxy" {
		parts = parts[1:]
	}
	if len(parts) > 0 && parts[0] == "namespaces" && len(parts) > 1 {
		ns = parts[1]
		// namespaces/NAME/status and /finalize are subresources of the
		// namespace; anything else after the name is a resource in it.
		if len(parts) > 2 && parts[2] != "status" && parts[2] != "finalize" {
			parts = parts[2:]
		}
	}
	if len(parts) >= 2 {
		name = parts[1]
	}
	return ns, name, true
}

// EvalRequests reads requests as JSON lines (see ParseRequest) from in and
// writes one decision per request to out, in the same order. A line that
// is not a valid request is reported to bad as "NAME:LINE: reason" and
// answered with {"line":N,"error":"..."} in its place, so that the output
// stays aligned with the input; blank lines are skipped. It returns the
// number of bad lines; the error is for reading and writing only.
func EvalRequests(e *Evaluator, name string, in io.Reader, out io.Writer, bad func(msg string)) (int, error) {
	w := bufio.NewWriterSize(out, 64<<10)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	nbad := 0
	err := eachLine(in, func(lineNo int, line []byte) error {
		r, err := ParseRequest(line)
		if err != nil {
			nbad++
			msg := fmt.Sprintf("%s:%d: %v", name, lineNo, err)
			bad(msg)
			return enc.Encode(errorLine{Line: lineNo, Error: msg})
		}
		return enc.Encode(toLine(e.Evaluate(r)))
	})
	if ferr := w.Flush(); err == nil {
		err = ferr
	}
	return nbad, err
}

// EvalLog reads recorded audit events (JSON lines of audit.k8s.io Events or
// EventLists, plain or gzip-compressed) from in and writes, for each
// event, the decision the policy makes for its request next to the level
// it was recorded at. Bad lines are reported as in EvalRequests.
func EvalLog(e *Evaluator, name string, in io.Reader, out io.Writer, bad func(msg string)) (int, error) {
	w := bufio.NewWriterSize(out, 64<<10)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	dec := audit.NewDecoder(audit.Limits{})
	nbad := 0
	var werr error
	err := eachLine(in, func(lineNo int, line []byte) error {
		dec.DecodeLine(name, lineNo, line, func(rec audit.Record) {
			d := e.Evaluate(RequestFromEvent(&rec.Event))
			if err := enc.Encode(logDecisionLine{Line: lineNo, AuditID: rec.Event.AuditID, Stage: rec.Event.Stage, RecordedLevel: rec.Event.Level, decisionLine: toLine(d)}); err != nil && werr == nil {
				werr = err
			}
		}, func(p audit.Problem) {
			nbad++
			bad(p.String())
			if err := enc.Encode(errorLine{Line: lineNo, Error: p.String()}); err != nil && werr == nil {
				werr = err
			}
		})
		return werr
	})
	if ferr := w.Flush(); err == nil {
		err = ferr
	}
	return nbad, err
}

func toLine(d Decision) decisionLine {
	return decisionLine{Level: d.Level, OmitStages: d.OmitStages, OmitManagedFields: d.OmitManagedFields, Rule: d.Rule}
}

// eachLine calls f for every non-blank line of in, numbering lines from 1.
// Input that starts with the gzip magic number is decompressed.
func eachLine(in io.Reader, f func(lineNo int, line []byte) error) error {
	br := bufio.NewReaderSize(in, 1<<20)
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return fmt.Errorf("gzip: %w", err)
		}
		defer zr.Close()
		br = bufio.NewReaderSize(zr, 1<<20)
	}
	var long []byte
	for lineNo := 1; ; lineNo++ {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			long = append(long[:0], line...)
			for errors.Is(err, bufio.ErrBufferFull) {
				line, err = br.ReadSlice('\n')
				long = append(long, line...)
			}
			line = long
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		if t := bytes.TrimSpace(line); len(t) > 0 {
			if ferr := f(lineNo, t); ferr != nil {
				return ferr
			}
		}
		if err != nil {
			return nil
		}
	}
}
