package sigma

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"

	"github.com/kubetrail/kubetrail/internal/audit"
	"github.com/kubetrail/kubetrail/internal/rules"
)

// How a field path reaches into an audit event.
//
// The fields audit.k8s.io/v1 defines are read from the decoded event
// (rules.Event.Ev) without touching its bytes; present means what the API
// server's JSON says: a field it omits when empty (objectRef.*, userAgent,
// responseStatus.code...) is missing when empty, the others (verb,
// requestURI, stage, level, auditID, user) are always present. The free-form
// parts (requestObject, responseObject, responseStatus.metadata and
// .details, the values of annotations and user.extra) are decoded once per
// event when a rule reads them, and walked as JSON: a path segment that
// reaches an array continues into every element, and the field matches when
// any element matches (as Sigma's backends for JSON logs do: a container
// list matches when one container does). A key may itself hold dots
// (annotations.authorization.k8s.io/decision; metadata.labels.app.kubernetes.io/name
// in a body): every way of splitting the rest of the path at a dot is tried.

// fieldType is what a field holds, for the impossible-value warnings.
type fieldType uint8

const (
	tAny fieldType = iota
	tString
	tInt
	tObject
)

// resolver finds the values of one field path in an event.
type resolver interface {
	// each calls m with every value the field has (missing when it has
	// none) and reports whether m returned true for one; it stops there.
	each(s *state, m matcher) bool
}

// state is one evaluation of an event: the event and the free-form parts
// decoded so far. It is never shared between goroutines.
type state struct {
	e     *rules.Event
	parts [numParts]struct {
		done bool
		v    any
	}
}

// The free-form parts of an event, decoded on demand.
const (
	partRequest = iota
	partResponse
	partStatusMetadata
	partStatusDetails
	partWhole // the whole event, for keyword searches
	numParts
)

func (s *state) part(i int) any {
	p := &s.parts[i]
	if p.done {
		return p.v
	}
	p.done = true
	var raw []byte
	ev := s.e.Ev
	switch i {
	case partRequest:
		raw = ev.RequestObject
	case partResponse:
		raw = ev.ResponseObject
	case partStatusMetadata, partStatusDetails:
		if ev.ResponseStatus != nil {
			raw = ev.ResponseStatus.Metadata
			if i == partStatusDetails {
				raw = ev.ResponseStatus.Details
			}
		}
	case partWhole:
		raw = s.e.Raw
	}
	if len(raw) == 0 {
		p.v = absent{}
		return p.v
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		v = absent{}
	}
	p.v = v
	return v
}

// absent marks a free-form part the event does not have.
type absent struct{}

// fieldInfo is what compiling a field path learned.
type fieldInfo struct {
	r   resolver
	typ fieldType
	// known is false for a path no audit event can have; r then yields
	// only a missing value.
	known bool
	// why says what is wrong with an unknown path.
	why string
}

// compileField resolves a Sigma field path against the audit event model.
func compileField(path string) fieldInfo {
	head, rest, _ := strings.Cut(path, ".")
	str := func(get func(*audit.Event) string, omitEmpty bool) fieldInfo {
		if rest != "" {
			return unknown(head + " is a string and has no field " + strconv.Quote(rest))
		}
		return fieldInfo{r: scalar(func(ev *audit.Event) leaf {
			v := get(ev)
			if v == "" && omitEmpty {
				return missing
			}
			return stringLeaf(v)
		}), typ: tString, known: true}
	}
	switch head {
	case "kind":
		return str(func(ev *audit.Event) string { return ev.Kind }, true)
	case "apiVersion":
		return str(func(ev *audit.Event) string { return ev.APIVersion }, true)
	case "level":
		return str(func(ev *audit.Event) string { return string(ev.Level) }, false)
	case "auditID":
		return str(func(ev *audit.Event) string { return ev.AuditID }, false)
	case "stage":
		return str(func(ev *audit.Event) string { return string(ev.Stage) }, false)
	case "requestURI":
		return str(func(ev *audit.Event) string { return ev.RequestURI }, false)
	case "verb":
		return str(func(ev *audit.Event) string { return ev.Verb }, false)
	case "userAgent":
		return str(func(ev *audit.Event) string { return ev.UserAgent }, true)
	case "requestReceivedTimestamp", "stageTimestamp":
		if rest != "" {
			return unknown(head + " is a timestamp and has no field " + strconv.Quote(rest))
		}
		stage := head == "stageTimestamp"
		return fieldInfo{r: scalar(func(ev *audit.Event) leaf {
			t := ev.RequestReceivedTimestamp
			if stage {
				t = ev.StageTimestamp
			}
			if t.IsZero() {
				return leaf{k: kNull}
			}
			return stringLeaf(t.UTC().Format(audit.MicroTimeLayout))
		}), typ: tString, known: true}
	case "sourceIPs":
		return strs(head, rest, func(ev *audit.Event) []string { return ev.SourceIPs })
	case "user":
		return userField(head, rest, func(ev *audit.Event) *audit.UserInfo { return &ev.User })
	case "impersonatedUser":
		return userField(head, rest, func(ev *audit.Event) *audit.UserInfo { return ev.ImpersonatedUser })
	case "authenticationMetadata":
		return objectField(head, rest, func(ev *audit.Event) bool { return ev.AuthenticationMetadata != nil }, map[string]func(*audit.Event) leaf{
			"impersonationConstraint": func(ev *audit.Event) leaf {
				return omitEmpty(ev.AuthenticationMetadata.ImpersonationConstraint)
			},
		})
	case "objectRef":
		ref := func(get func(*audit.ObjectReference) string) func(*audit.Event) leaf {
			return func(ev *audit.Event) leaf { return omitEmpty(get(ev.ObjectRef)) }
		}
		return objectField(head, rest, func(ev *audit.Event) bool { return ev.ObjectRef != nil }, map[string]func(*audit.Event) leaf{
			"resource":        ref(func(o *audit.ObjectReference) string { return o.Resource }),
			"namespace":       ref(func(o *audit.ObjectReference) string { return o.Namespace }),
			"name":            ref(func(o *audit.ObjectReference) string { return o.Name }),
			"uid":             ref(func(o *audit.ObjectReference) string { return o.UID }),
			"apiGroup":        ref(func(o *audit.ObjectReference) string { return o.APIGroup }),
			"apiVersion":      ref(func(o *audit.ObjectReference) string { return o.APIVersion }),
			"resourceVersion": ref(func(o *audit.ObjectReference) string { return o.ResourceVersion }),
			"subresource":     ref(func(o *audit.ObjectReference) string { return o.Subresource }),
		})
	case "responseStatus":
		sub, subRest, _ := strings.Cut(rest, ".")
		switch sub {
		case "metadata":
			return fieldInfo{r: rawPath{part: partStatusMetadata, path: subRest}, known: true}
		case "details":
			return fieldInfo{r: rawPath{part: partStatusDetails, path: subRest}, known: true}
		case "code":
			if subRest != "" {
				return unknown("responseStatus.code is a number and has no field " + strconv.Quote(subRest))
			}
			return fieldInfo{r: scalar(func(ev *audit.Event) leaf {
				if ev.ResponseStatus == nil || ev.ResponseStatus.Code == 0 {
					return missing
				}
				return intLeaf(int64(ev.ResponseStatus.Code))
			}), typ: tInt, known: true}
		}
		st := func(get func(*audit.Status) string) func(*audit.Event) leaf {
			return func(ev *audit.Event) leaf { return omitEmpty(get(ev.ResponseStatus)) }
		}
		return objectField(head, rest, func(ev *audit.Event) bool { return ev.ResponseStatus != nil }, map[string]func(*audit.Event) leaf{
			"status":  st(func(s *audit.Status) string { return s.Status }),
			"message": st(func(s *audit.Status) string { return s.Message }),
			"reason":  st(func(s *audit.Status) string { return s.Reason }),
		})
	case "requestObject":
		return fieldInfo{r: rawPath{part: partRequest, path: rest}, known: true}
	case "responseObject":
		return fieldInfo{r: rawPath{part: partResponse, path: rest}, known: true}
	case "annotations":
		if rest == "" {
			return fieldInfo{r: scalar(func(ev *audit.Event) leaf { return objectLeaf(len(ev.Annotations) > 0) }), typ: tObject, known: true}
		}
		return fieldInfo{r: scalar(func(ev *audit.Event) leaf {
			v, ok := ev.Annotations[rest]
			if !ok {
				return missing
			}
			return stringLeaf(v)
		}), typ: tString, known: true}
	}
	return unknown("no such field in audit events" + hint(head))
}

func unknown(why string) fieldInfo {
	return fieldInfo{r: none{}, why: why}
}

// none is a field no audit event has.
type none struct{}

func (none) each(_ *state, m matcher) bool { return m.match(missing) }

// hint names the audit event field a rule probably meant.
func hint(head string) string {
	switch head {
	case "apiGroup", "resource", "subresource", "namespace", "name":
		return " (did you mean objectRef." + head + "?)"
	case "username", "groups", "uid":
		return " (did you mean user." + head + "?)"
	case "code":
		return " (did you mean responseStatus.code?)"
	case "hostPath":
		return " (a pod's hostPath volumes are requestObject.spec.volumes.hostPath)"
	case "capabilities", "privileged":
		return " (a container's are requestObject.spec.containers.securityContext." + head + ")"
	case "hostNetwork", "hostPID", "hostIPC":
		return " (a pod's is requestObject.spec." + head + ")"
	}
	return ""
}

func omitEmpty(s string) leaf {
	if s == "" {
		return missing
	}
	return stringLeaf(s)
}

func objectLeaf(present bool) leaf {
	if present {
		return leaf{k: kObject}
	}
	return missing
}

// objectField resolves a path into one of the event's fixed objects.
func objectField(head, rest string, present func(*audit.Event) bool, fields map[string]func(*audit.Event) leaf) fieldInfo {
	if rest == "" {
		return fieldInfo{r: scalar(func(ev *audit.Event) leaf { return objectLeaf(present(ev)) }), typ: tObject, known: true}
	}
	get, ok := fields[rest]
	if !ok {
		return unknown(head + " has no field " + strconv.Quote(rest))
	}
	return fieldInfo{r: scalar(func(ev *audit.Event) leaf {
		if !present(ev) {
			return missing
		}
		return get(ev)
	}), typ: tString, known: true}
}

// userField resolves user.* and impersonatedUser.*.
func userField(head, rest string, get func(*audit.Event) *audit.UserInfo) fieldInfo {
	sub, subRest, _ := strings.Cut(rest, ".")
	switch sub {
	case "groups":
		if subRest != "" {
			return unknown(head + ".groups is a list of strings and has no field " + strconv.Quote(subRest))
		}
		return strs(head, "", func(ev *audit.Event) []string {
			if u := get(ev); u != nil {
				return u.Groups
			}
			return nil
		})
	case "extra":
		if subRest == "" {
			return fieldInfo{r: scalar(func(ev *audit.Event) leaf {
				u := get(ev)
				return objectLeaf(u != nil && len(u.Extra) > 0)
			}), typ: tObject, known: true}
		}
		return fieldInfo{r: stringList(func(ev *audit.Event) []string {
			if u := get(ev); u != nil {
				return u.Extra[subRest]
			}
			return nil
		}), typ: tString, known: true}
	}
	uf := func(f func(*audit.UserInfo) string) func(*audit.Event) leaf {
		return func(ev *audit.Event) leaf { return omitEmpty(f(get(ev))) }
	}
	return objectField(head, rest, func(ev *audit.Event) bool { return get(ev) != nil }, map[string]func(*audit.Event) leaf{
		"username": uf(func(u *audit.UserInfo) string { return u.Username }),
		"uid":      uf(func(u *audit.UserInfo) string { return u.UID }),
	})
}

func strs(head, rest string, get func(*audit.Event) []string) fieldInfo {
	if rest != "" {
		return unknown(head + " is a list of strings and has no field " + strconv.Quote(rest))
	}
	return fieldInfo{r: stringList(get), typ: tString, known: true}
}

// scalar is a field with one value.
type scalar func(*audit.Event) leaf

func (f scalar) each(s *state, m matcher) bool {
	return m.match(f(s.e.Ev))
}

// stringList is a field holding a list of strings; an empty list is
// missing.
type stringList func(*audit.Event) []string

func (f stringList) each(s *state, m matcher) bool {
	v := f(s.e.Ev)
	if len(v) == 0 {
		return m.match(missing)
	}
	for _, x := range v {
		if m.match(stringLeaf(x)) {
			return true
		}
	}
	return false
}

// rawPath is a path into a free-form part of the event.
type rawPath struct {
	part int
	path string
}

func (r rawPath) each(s *state, m matcher) bool {
	v := s.part(r.part)
	if _, ok := v.(absent); ok {
		return m.match(missing)
	}
	return walk(v, r.path, m)
}

// walk follows path through a decoded JSON value.
func walk(v any, path string, m matcher) bool {
	if path == "" {
		return emit(v, m)
	}
	switch x := v.(type) {
	case map[string]any:
		found := false
		if c, ok := x[path]; ok {
			found = true
			if emit(c, m) {
				return true
			}
		}
		for i := 0; i < len(path); i++ {
			if path[i] != '.' {
				continue
			}
			if c, ok := x[path[:i]]; ok {
				found = true
				if walk(c, path[i+1:], m) {
					return true
				}
			}
		}
		return !found && m.match(missing)
	case []any:
		if len(x) == 0 {
			return m.match(missing)
		}
		for _, el := range x {
			if walk(el, path, m) {
				return true
			}
		}
		return false
	}
	return m.match(missing)
}

// emit hands a decoded JSON value to m: arrays element by element.
func emit(v any, m matcher) bool {
	switch x := v.(type) {
	case nil:
		return m.match(leaf{k: kNull})
	case string:
		return m.match(stringLeaf(x))
	case json.Number:
		f, _ := x.Float64()
		return m.match(leaf{k: kNumber, s: x.String(), n: f})
	case bool:
		return m.match(leaf{k: kBool, b: x, s: strconv.FormatBool(x)})
	case map[string]any:
		return m.match(leaf{k: kObject})
	case []any:
		if len(x) == 0 {
			return m.match(missing)
		}
		for _, el := range x {
			if emit(el, m) {
				return true
			}
		}
		return false
	}
	return m.match(missing)
}

// keywords is a keyword search: every string, number and boolean anywhere
// in the event, at any depth.
type keywords struct{}

func (keywords) each(s *state, m matcher) bool {
	v := s.part(partWhole)
	if _, ok := v.(absent); ok {
		return false
	}
	return everyValue(v, m)
}

func everyValue(v any, m matcher) bool {
	switch x := v.(type) {
	case map[string]any:
		for _, c := range x {
			if everyValue(c, m) {
				return true
			}
		}
		return false
	case []any:
		for _, c := range x {
			if everyValue(c, m) {
				return true
			}
		}
		return false
	case nil:
		return false
	}
	return emit(v, m)
}
