package audit

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"slices"
	"strconv"
	"sync"
	"time"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"
)

// fastDecodeEvent decodes one plain Event object without reflection. It is
// the hot path of every ingest: encoding/json spends most of its time
// finding out, per field, what it already knows here.
//
// It gives up (ok false) on anything it does not handle exactly like
// encoding/json: a key that is not an Event field but matches one ignoring
// case, a null, a type mismatch, a number that is not a plain int32, a
// wrapper (EventList, cloud envelopes). The caller then uses the general
// decoder, which also words the errors. FuzzFastDecode checks that whenever
// it succeeds, it agrees with encoding/json.
//
// depth is the deepest nesting seen.
func fastDecodeEvent(raw []byte, ev *Event) (depth int, ok bool) {
	d := fastDec{b: raw, common: common()}
	ok = d.event(ev)
	if ok {
		d.ws()
		ok = d.i == len(d.b)
	}
	return d.maxDepth, ok
}

// fastMaxDepth is the deepest nesting the fast decoder follows; it gives
// deeper input to encoding/json, which does not recurse to check it. The
// fast decoder recurses once per level: without this bound, 20 MiB of '['
// in one request overflowed the goroutine's stack and killed the process.
const fastMaxDepth = 1000

type fastDec struct {
	// alias makes strings and bodies point into b instead of copying:
	// only for a b that nobody modifies afterwards.
	alias    bool
	b        []byte
	i        int
	depth    int
	maxDepth int
	// common is the table of recurring values (see common), looked up
	// once per decoder.
	common map[string]string
}

func (d *fastDec) ws() {
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

// consume skips whitespace and then expects byte c.
func (d *fastDec) consume(c byte) bool {
	d.ws()
	if d.i < len(d.b) && d.b[d.i] == c {
		d.i++
		return true
	}
	return false
}

func (d *fastDec) peek() byte {
	d.ws()
	if d.i < len(d.b) {
		return d.b[d.i]
	}
	return 0
}

// object iterates an object's members, calling member with each key (valid
// only during the call) positioned at its value.
func (d *fastDec) object(member func(key []byte) bool) bool {
	if !d.consume('{') {
		return false
	}
	d.depth++
	if d.depth > d.maxDepth {
		d.maxDepth = d.depth
		if d.depth > fastMaxDepth {
			return false
		}
	}
	if d.consume('}') {
		d.depth--
		return true
	}
	for {
		d.ws()
		key, ok := d.rawString()
		if !ok || !d.consume(':') {
			return false
		}
		d.ws()
		if !member(key) {
			return false
		}
		if d.consume(',') {
			continue
		}
		if d.consume('}') {
			d.depth--
			return true
		}
		return false
	}
}

// rawString reads a string's contents between the quotes, escapes intact.
// It checks the string is well formed.
func (d *fastDec) rawString() ([]byte, bool) {
	if d.i >= len(d.b) || d.b[d.i] != '"' {
		return nil, false
	}
	start := d.i + 1
	for j := start; j < len(d.b); j++ {
		// Skip eight plain bytes at a time: none a quote, a backslash or
		// a control character.
		for j+8 <= len(d.b) && plain8(binary.LittleEndian.Uint64(d.b[j:])) {
			j += 8
		}
		if j >= len(d.b) {
			break
		}
		c := d.b[j]
		switch {
		case c == '"':
			d.i = j + 1
			return d.b[start:j], true
		case c == '\\':
			j++
			if j >= len(d.b) {
				return nil, false
			}
			switch d.b[j] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if j+4 >= len(d.b) {
					return nil, false
				}
				for k := 1; k <= 4; k++ {
					if !isHex(d.b[j+k]) {
						return nil, false
					}
				}
				j += 4
			default:
				return nil, false
			}
		case c < 0x20:
			return nil, false
		}
	}
	return nil, false
}

// plain8 reports whether none of the eight bytes in x is '"', '\\' or
// below 0x20, with the usual SWAR tricks: hasZero(v) is non-zero exactly
// when some byte of v is zero, and hasLess(x, n) when some byte is below n.
func plain8(x uint64) bool {
	const lo, hi = 0x0101010101010101, 0x8080808080808080
	q := x ^ (lo * '"')
	b := x ^ (lo * '\\')
	quote := (q - lo) &^ q
	backslash := (b - lo) &^ b
	control := (x - lo*0x20) &^ x
	return (quote|backslash|control)&hi == 0
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// str reads a string value.
func (d *fastDec) str(dst *string) bool {
	raw, ok := d.rawString()
	if !ok {
		return false
	}
	if bytes.IndexByte(raw, '\\') < 0 {
		switch {
		case len(raw) == 0:
			*dst = ""
		case d.alias:
			*dst = unsafe.String(&raw[0], len(raw))
		default:
			if v, ok := d.common[string(raw)]; ok {
				*dst = v
			} else {
				*dst = string(raw)
			}
		}
		return true
	}
	s, ok := unescape(raw)
	*dst = s
	return ok
}

// unescape decodes JSON string escapes as encoding/json does, including its
// handling of unpaired surrogates (U+FFFD).
func unescape(raw []byte) (string, bool) {
	out := make([]byte, 0, len(raw))
	for i := 0; i < len(raw); {
		c := raw[i]
		if c != '\\' {
			out = append(out, c)
			i++
			continue
		}
		i++
		switch raw[i] {
		case '"', '\\', '/':
			out = append(out, raw[i])
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r := hex4(raw[i+1 : i+5])
			i += 5
			if utf16.IsSurrogate(r) {
				if i+6 <= len(raw) && raw[i] == '\\' && raw[i+1] == 'u' {
					if dec := utf16.DecodeRune(r, hex4(raw[i+2:i+6])); dec != utf8.RuneError {
						out = utf8.AppendRune(out, dec)
						i += 6
						continue
					}
				}
				r = utf8.RuneError
			}
			out = utf8.AppendRune(out, r)
			continue
		default:
			return "", false
		}
		i++
	}
	return string(out), true
}

func hex4(b []byte) rune {
	var r rune
	for _, c := range b {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c - 'a' + 10)
		default:
			r |= rune(c - 'A' + 10)
		}
	}
	return r
}

// skip skips any value, checking its syntax, and returns its bytes.
func (d *fastDec) skip() ([]byte, bool) {
	d.ws()
	start := d.i
	if d.i >= len(d.b) {
		return nil, false
	}
	switch c := d.b[d.i]; {
	case c == '"':
		if _, ok := d.rawString(); !ok {
			return nil, false
		}
	case c == '{':
		if !d.object(func([]byte) bool { _, ok := d.skip(); return ok }) {
			return nil, false
		}
	case c == '[':
		if !d.array(func() bool { _, ok := d.skip(); return ok }) {
			return nil, false
		}
	case c == 't':
		return d.literal("true", start)
	case c == 'f':
		return d.literal("false", start)
	case c == 'n':
		return d.literal("null", start)
	default:
		if !d.number() {
			return nil, false
		}
	}
	return d.b[start:d.i], true
}

func (d *fastDec) literal(lit string, start int) ([]byte, bool) {
	if !bytes.HasPrefix(d.b[d.i:], []byte(lit)) {
		return nil, false
	}
	d.i += len(lit)
	return d.b[start:d.i], true
}

// number checks JSON number grammar.
func (d *fastDec) number() bool {
	b, i := d.b, d.i
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	default:
		return false
	}
	if i < len(b) && b[i] == '.' {
		i++
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			return false
		}
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			return false
		}
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	}
	d.i = i
	return true
}

func (d *fastDec) array(elem func() bool) bool {
	if !d.consume('[') {
		return false
	}
	d.depth++
	if d.depth > d.maxDepth {
		d.maxDepth = d.depth
		if d.depth > fastMaxDepth {
			return false
		}
	}
	if d.consume(']') {
		d.depth--
		return true
	}
	for {
		if !elem() {
			return false
		}
		if d.consume(',') {
			continue
		}
		if d.consume(']') {
			d.depth--
			return true
		}
		return false
	}
}

func (d *fastDec) strings(dst *[]string) bool {
	if d.peek() != '[' {
		return false
	}
	out := (*dst)[:0]
	ok := d.array(func() bool {
		d.ws()
		var s string
		if !d.str(&s) {
			return false
		}
		out = append(out, s)
		return true
	})
	if out == nil {
		out = []string{}
	}
	*dst = out
	return ok
}

// rawValue keeps an object or array as raw JSON (for bodies and details).
func (d *fastDec) rawValue(dst *json.RawMessage) bool {
	if c := d.peek(); c == 'n' {
		return false // encoding/json semantics for null differ per type
	}
	v, ok := d.skip()
	if !ok {
		return false
	}
	if d.alias {
		*dst = v
		return true
	}
	*dst = append((*dst)[:0], v...)
	return true
}

func (d *fastDec) microTime(dst *MicroTime) bool {
	raw, ok := d.rawString()
	if !ok {
		return false
	}
	if t, ok := parseMicro(raw); ok {
		dst.Time = t
		return true
	}
	if bytes.IndexByte(raw, '\\') >= 0 {
		return false
	}
	t, err := time.Parse(time.RFC3339Nano, string(raw))
	if err != nil || len(raw) == 0 {
		return false
	}
	dst.Time = t
	return true
}

// parseMicro parses exactly 2006-01-02T15:04:05.000000Z, the API server's
// own layout, without allocating.
func parseMicro(b []byte) (time.Time, bool) {
	if len(b) != 27 || b[4] != '-' || b[7] != '-' || b[10] != 'T' || b[13] != ':' || b[16] != ':' || b[19] != '.' || b[26] != 'Z' {
		return time.Time{}, false
	}
	num := func(s []byte) (int, bool) {
		n := 0
		for _, c := range s {
			if c < '0' || c > '9' {
				return 0, false
			}
			n = n*10 + int(c-'0')
		}
		return n, true
	}
	y, ok1 := num(b[0:4])
	mo, ok2 := num(b[5:7])
	dd, ok3 := num(b[8:10])
	h, ok4 := num(b[11:13])
	mi, ok5 := num(b[14:16])
	s, ok6 := num(b[17:19])
	us, ok7 := num(b[20:26])
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6 && ok7) || mo < 1 || mo > 12 || dd < 1 || dd > 31 || h > 23 || mi > 59 || s > 59 {
		return time.Time{}, false
	}
	t := time.Date(y, time.Month(mo), dd, h, mi, s, us*1000, time.UTC)
	if t.Day() != dd {
		return time.Time{}, false // Feb 30 and friends: let time.Parse say no
	}
	return t, true
}

func (d *fastDec) userInfo(u *UserInfo) bool {
	return d.object(func(k []byte) bool {
		switch string(k) {
		case "username":
			return d.str(&u.Username)
		case "uid":
			return d.str(&u.UID)
		case "groups":
			return d.strings(&u.Groups)
		case "extra":
			if u.Extra == nil {
				u.Extra = map[string][]string{}
			}
			return d.object(func(k []byte) bool {
				key, ok := d.keyString(k)
				if !ok {
					return false
				}
				var v []string
				if !d.strings(&v) {
					return false
				}
				u.Extra[key] = v
				return true
			})
		}
		return d.unknown(k, "username", "uid", "groups", "extra")
	})
}

// unknown skips the value of a key that is not a field, unless encoding/json
// would match it to one of fields ignoring case.
func (d *fastDec) unknown(k []byte, fields ...string) bool {
	for _, f := range fields {
		if bytes.EqualFold(k, []byte(f)) {
			return false
		}
	}
	if bytes.IndexByte(k, '\\') >= 0 {
		return false // an escaped key could spell a field
	}
	_, ok := d.skip()
	return ok
}

func (d *fastDec) keyString(k []byte) (string, bool) {
	if bytes.IndexByte(k, '\\') < 0 {
		if v, ok := d.common[string(k)]; ok {
			return v, true
		}
		return string(k), true
	}
	return unescape(k)
}

// plainEventFields is how many of eventFields are an Event's own.
const plainEventFields = 19

var eventFields = []string{"kind", "apiVersion", "level", "auditID", "stage", "requestURI", "verb", "user",
	"impersonatedUser", "authenticationMetadata", "sourceIPs", "userAgent", "objectRef", "responseStatus",
	"requestObject", "responseObject", "requestReceivedTimestamp", "stageTimestamp", "annotations",
	// envelope keys: their presence means "not a plain event"
	"items", "records", "properties", "log_s", "message", "logEvents", "events", "protoPayload"}

func (d *fastDec) event(ev *Event) bool {
	return d.object(func(k []byte) bool { return d.eventKey(k, ev) })
}

// eventKey decodes the value of an Event's key k into ev.
func (d *fastDec) eventKey(k []byte, ev *Event) bool {
	switch string(k) {
	case "kind":
		return d.str(&ev.Kind)
	case "apiVersion":
		return d.str(&ev.APIVersion)
	case "level":
		var s string
		ok := d.str(&s)
		ev.Level = Level(s)
		return ok
	case "auditID":
		return d.str(&ev.AuditID)
	case "stage":
		var s string
		ok := d.str(&s)
		ev.Stage = Stage(s)
		return ok
	case "requestURI":
		return d.str(&ev.RequestURI)
	case "verb":
		return d.str(&ev.Verb)
	case "user":
		return d.userInfo(&ev.User)
	case "impersonatedUser":
		if ev.ImpersonatedUser == nil {
			ev.ImpersonatedUser = &UserInfo{}
		}
		return d.userInfo(ev.ImpersonatedUser)
	case "authenticationMetadata":
		if ev.AuthenticationMetadata == nil {
			ev.AuthenticationMetadata = &AuthenticationMetadata{}
		}
		return d.object(func(k []byte) bool {
			if string(k) == "impersonationConstraint" {
				return d.str(&ev.AuthenticationMetadata.ImpersonationConstraint)
			}
			return d.unknown(k, "impersonationConstraint")
		})
	case "sourceIPs":
		return d.strings(&ev.SourceIPs)
	case "userAgent":
		return d.str(&ev.UserAgent)
	case "objectRef":
		if ev.ObjectRef == nil {
			ev.ObjectRef = &ObjectReference{}
		}
		o := ev.ObjectRef
		return d.object(func(k []byte) bool {
			switch string(k) {
			case "resource":
				return d.str(&o.Resource)
			case "namespace":
				return d.str(&o.Namespace)
			case "name":
				return d.str(&o.Name)
			case "uid":
				return d.str(&o.UID)
			case "apiGroup":
				return d.str(&o.APIGroup)
			case "apiVersion":
				return d.str(&o.APIVersion)
			case "resourceVersion":
				return d.str(&o.ResourceVersion)
			case "subresource":
				return d.str(&o.Subresource)
			}
			return d.unknown(k, "resource", "namespace", "name", "uid", "apiGroup", "apiVersion", "resourceVersion", "subresource")
		})
	case "responseStatus":
		if ev.ResponseStatus == nil {
			ev.ResponseStatus = &Status{}
		}
		st := ev.ResponseStatus
		return d.object(func(k []byte) bool {
			switch string(k) {
			case "metadata":
				return d.rawValue(&st.Metadata)
			case "status":
				return d.str(&st.Status)
			case "message":
				return d.str(&st.Message)
			case "reason":
				return d.str(&st.Reason)
			case "details":
				return d.rawValue(&st.Details)
			case "code":
				start := d.i
				if !d.number() {
					return false
				}
				n, err := strconv.ParseInt(string(d.b[start:d.i]), 10, 32)
				if err != nil {
					return false
				}
				st.Code = int32(n)
				return true
			}
			return d.unknown(k, "metadata", "status", "message", "reason", "details", "code")
		})
	case "requestObject":
		return d.rawValue(&ev.RequestObject)
	case "responseObject":
		return d.rawValue(&ev.ResponseObject)
	case "requestReceivedTimestamp":
		return d.microTime(&ev.RequestReceivedTimestamp)
	case "stageTimestamp":
		return d.microTime(&ev.StageTimestamp)
	case "annotations":
		if ev.Annotations == nil {
			ev.Annotations = map[string]string{}
		}
		return d.object(func(k []byte) bool {
			key, ok := d.keyString(k)
			if !ok {
				return false
			}
			d.ws()
			var v string
			if !d.str(&v) {
				return false
			}
			ev.Annotations[key] = v
			return true
		})
	}
	return d.unknown(k, eventFields...)
}

// StoredUser decodes only the user of a stored event's text
// (StoredFields of its one key): detection keys
// on a user's groups, which no store column holds, and decoding a whole
// event to learn them was most of detect's time. ok is false where the
// fast decoder would not decode the event (a key matching a field only
// ignoring case, an envelope, a user that is not an object, ...): the
// caller then decodes it whole. On every event DecodeStored decodes, an
// ok answer is its User (FuzzStoredUser).
func StoredUser(raw []byte) (u UserInfo, ok bool) {
	var ev Event
	ok = StoredFields(raw, userKey, false, &ev)
	return ev.User, ok
}

var userKey = []string{"user"}

// StoredFields decodes only the values of keys (an Event's own JSON keys,
// such as "impersonatedUser" or "requestURI") of a stored event's text
// into ev, skipping every other value where DecodeStored would decode it:
// a store decides a filter that needs a field no column holds from those
// keys alone (query.Filter.EventKeys). ok is false where the fast decoder
// would not decode the event (a key matching a field only ignoring case,
// an envelope, a wrong type in a key decoded, ...): the caller then
// decodes it whole. On every event DecodeStored decodes, an ok answer's
// fields of keys are its (FuzzStoredFields). With alias, strings point
// into raw, which must then outlive ev's use.
func StoredFields(raw []byte, keys []string, alias bool, ev *Event) (ok bool) {
	*ev = Event{}
	if len(raw) == 0 || raw[0] != '{' {
		return false
	}
	d := fastDec{b: raw, common: common(), alias: alias}
	ok = d.object(func(k []byte) bool {
		if slices.Contains(keys, string(k)) {
			return d.eventKey(k, ev)
		}
		if slices.Contains(eventFields[:plainEventFields], string(k)) {
			return d.pass()
		}
		return d.unknown(k, eventFields...)
	})
	if ok {
		d.ws()
		ok = d.i == len(d.b)
	}
	return ok
}

// pass moves over one JSON value without checking it, for text that
// decoded once already (a stored event): a string to its closing quote,
// found with bytes.IndexByte, a container to its closing bracket outside
// strings, a number or literal to the next delimiter. It is skip at a
// fraction of the cost on long values (skip checks every byte of every
// string, 8 at a time): on valid JSON both end at the same byte. On text
// that is not JSON it may end anywhere, never past the end.
func (d *fastDec) pass() bool {
	d.ws()
	b := d.b
	if d.i >= len(b) {
		return false
	}
	switch b[d.i] {
	case '"':
		return d.passString()
	case '{', '[':
		depth := 0
		for ; d.i < len(b); d.i++ {
			switch b[d.i] {
			case '"':
				if !d.passString() {
					return false
				}
				d.i-- // the loop steps past the closing quote
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					d.i++
					return true
				}
			}
		}
		return false
	}
	start := d.i
scalar:
	for ; d.i < len(b); d.i++ {
		switch b[d.i] {
		case ',', '}', ']', ' ', '\t', '\n', '\r':
			break scalar
		}
	}
	return d.i > start
}

// passString moves past the string at d.i, whose escapes it does not
// check: a quote ends it unless an odd run of backslashes precedes it.
func (d *fastDec) passString() bool {
	b := d.b
	for i := d.i + 1; ; i++ {
		j := bytes.IndexByte(b[i:], '"')
		if j < 0 {
			return false
		}
		i += j
		k := i - 1
		for k > d.i && b[k] == '\\' {
			k--
		}
		if (i-1-k)%2 == 0 {
			d.i = i + 1
			return true
		}
	}
}

// common holds values that recur in nearly every event, so decoding them
// costs no allocation. It is built on first use, not at process start, and
// never written after.
var common = sync.OnceValue(func() map[string]string {
	m := map[string]string{}
	for _, v := range []string{
		"", "Event", APIVersionV1, APIVersionV1beta1,
		"None", "Metadata", "Request", "RequestResponse",
		"RequestReceived", "ResponseStarted", "ResponseComplete", "Panic",
		"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection", "post", "put", "head", "options",
		"v1", "v1beta1", "v2", "apps", "batch", "coordination.k8s.io", "discovery.k8s.io", "rbac.authorization.k8s.io",
		"events.k8s.io", "networking.k8s.io", "policy", "storage.k8s.io", "apiextensions.k8s.io", "admissionregistration.k8s.io",
		"authentication.k8s.io", "authorization.k8s.io", "autoscaling", "certificates.k8s.io", "flowcontrol.apiserver.k8s.io",
		"pods", "nodes", "leases", "endpoints", "endpointslices", "configmaps", "secrets", "services", "events", "namespaces",
		"serviceaccounts", "deployments", "replicasets", "daemonsets", "statefulsets", "jobs", "cronjobs",
		"roles", "rolebindings", "clusterroles", "clusterrolebindings", "persistentvolumeclaims", "persistentvolumes",
		"status", "exec", "attach", "portforward", "log", "binding", "eviction", "token", "scale", "proxy",
		"default", "kube-system", "kube-public", "kube-node-lease",
		"system:authenticated", "system:unauthenticated", "system:masters", "system:nodes", "system:serviceaccounts",
		"system:serviceaccounts:kube-system", "system:anonymous", "system:kube-scheduler", "system:kube-controller-manager", "system:apiserver",
		"authorization.k8s.io/decision", "authorization.k8s.io/reason", "allow", "forbid",
		"pod-security.kubernetes.io/enforce-policy", "Success", "Failure", "Forbidden", "NotFound", "AlreadyExists", "Conflict",
		"Unauthorized", "authentication.kubernetes.io/credential-id", "authentication.kubernetes.io/node-name",
		"authentication.kubernetes.io/node-uid", "authentication.kubernetes.io/pod-name", "authentication.kubernetes.io/pod-uid",
		"127.0.0.1", "::1",
	} {
		m[v] = v
	}
	return m
})
