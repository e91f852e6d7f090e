package main

import (
	"strconv"
	"time"
	"unicode/utf8"
)

// This file writes audit events as JSON by appending to a byte slice. The
// output must be byte-for-byte what the kube-apiserver's log backend writes:
// it encodes an audit.k8s.io/v1 Event with encoding/json's Encoder, so field
// order is the Go struct order, omitempty applies as in the upstream struct
// tags, map keys are sorted, and strings are escaped with HTML escaping on.

const hexDigits = "0123456789abcdef"

// jsonSafe[b] reports whether encoding/json writes the ASCII byte b as is
// inside a string when HTML escaping is on (the Encoder default). It is a
// read-only lookup table.
var jsonSafe = func() (t [utf8.RuneSelf]bool) {
	for b := 0x20; b < utf8.RuneSelf; b++ {
		t[b] = true
	}
	for _, b := range []byte{'"', '\\', '<', '>', '&'} {
		t[b] = false
	}
	return t
}()

// appendString appends s as a JSON string exactly as encoding/json does:
// \" \\ \b \f \n \r \t get short escapes, other control bytes and <, >, &
// get \u00XX, invalid UTF-8 becomes \ufffd, and U+2028/U+2029 are escaped.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		b := s[i]
		if b < utf8.RuneSelf {
			if jsonSafe[b] {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '"', '\\':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xf])
			}
			i++
			start = i
			continue
		}
		c, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case c == utf8.RuneError && size == 1:
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
		case c == '\u2028' || c == '\u2029':
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[c&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// stampCache remembers the formatted second of the last timestamp, because
// consecutive events almost always fall in the same second.
type stampCache struct {
	sec    int64
	prefix []byte // "2006-01-02T15:04:05."
}

// appendMicroTime appends a quoted metav1.MicroTime: RFC 3339 in UTC with
// exactly six fractional digits, as "2006-01-02T15:04:05.000000Z".
func (c *stampCache) appendMicroTime(dst []byte, us int64) []byte {
	sec, frac := us/1e6, us%1e6
	if frac < 0 {
		sec, frac = sec-1, frac+1e6
	}
	if c.prefix == nil || sec != c.sec {
		c.sec = sec
		c.prefix = time.Unix(sec, 0).UTC().AppendFormat(c.prefix[:0], "2006-01-02T15:04:05")
		c.prefix = append(c.prefix, '.')
	}
	dst = append(dst, '"')
	dst = append(dst, c.prefix...)
	var d [6]byte
	for i := 5; i >= 0; i-- {
		d[i] = byte('0' + frac%10)
		frac /= 10
	}
	dst = append(dst, d[:]...)
	return append(dst, 'Z', '"')
}

// appendUser appends an authentication/v1 UserInfo. Every field is
// omitempty, so a failed authentication (nil user) is written as {}.
func appendUser(dst []byte, u *userInfo) []byte {
	dst = append(dst, '{')
	if u == nil {
		return append(dst, '}')
	}
	comma := false
	sep := func() {
		if comma {
			dst = append(dst, ',')
		}
		comma = true
	}
	if u.username != "" {
		sep()
		dst = append(dst, `"username":`...)
		dst = appendString(dst, u.username)
	}
	if u.uid != "" {
		sep()
		dst = append(dst, `"uid":`...)
		dst = appendString(dst, u.uid)
	}
	if len(u.groups) > 0 {
		sep()
		dst = append(dst, `"groups":`...)
		dst = appendStrings(dst, u.groups)
	}
	if len(u.extra) > 0 {
		sep()
		dst = append(dst, `"extra":{`...)
		for i, x := range u.extra {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendString(dst, x.key)
			dst = append(dst, ':')
			dst = appendStrings(dst, x.values)
		}
		dst = append(dst, '}')
	}
	return append(dst, '}')
}

func appendStrings(dst []byte, ss []string) []byte {
	dst = append(dst, '[')
	for i, s := range ss {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendString(dst, s)
	}
	return append(dst, ']')
}

// appendObjectRef appends an audit/v1 ObjectReference; every field is
// omitempty.
func appendObjectRef(dst []byte, o *objectRef) []byte {
	dst = append(dst, '{')
	comma := false
	field := func(key, v string) {
		if v == "" {
			return
		}
		if comma {
			dst = append(dst, ',')
		}
		comma = true
		dst = append(dst, key...)
		dst = appendString(dst, v)
	}
	field(`"resource":`, o.resource)
	field(`"namespace":`, o.namespace)
	field(`"name":`, o.name)
	field(`"uid":`, o.uid)
	field(`"apiGroup":`, o.apiGroup)
	field(`"apiVersion":`, o.apiVersion)
	field(`"resourceVersion":`, o.resourceVersion)
	field(`"subresource":`, o.subresource)
	return append(dst, '}')
}

// appendStatus appends a meta/v1 Status as the audit code copies it: no
// kind/apiVersion, an always-present empty ListMeta ("metadata":{}, since
// encoding/json never omits a struct), then the omitempty fields.
func appendStatus(dst []byte, s *status) []byte {
	dst = append(dst, `{"metadata":{}`...)
	if s.status != "" {
		dst = append(dst, `,"status":`...)
		dst = appendString(dst, s.status)
	}
	if s.message != "" {
		dst = append(dst, `,"message":`...)
		dst = appendString(dst, s.message)
	}
	if s.reason != "" {
		dst = append(dst, `,"reason":`...)
		dst = appendString(dst, s.reason)
	}
	if s.details != nil {
		dst = append(dst, `,"details":`...)
		dst = appendDetails(dst, s.details)
	}
	if s.code != 0 {
		dst = append(dst, `,"code":`...)
		dst = strconv.AppendInt(dst, int64(s.code), 10)
	}
	return append(dst, '}')
}

// appendDetails appends a meta/v1 StatusDetails (name, group, kind, uid; all
// omitempty, so an empty one is {}).
func appendDetails(dst []byte, d *statusDetails) []byte {
	dst = append(dst, '{')
	comma := false
	field := func(key, v string) {
		if v == "" {
			return
		}
		if comma {
			dst = append(dst, ',')
		}
		comma = true
		dst = append(dst, key...)
		dst = appendString(dst, v)
	}
	field(`"name":`, d.name)
	field(`"group":`, d.group)
	field(`"kind":`, d.kind)
	field(`"uid":`, d.uid)
	return append(dst, '}')
}

// appendEvent appends one event and the newline that json.Encoder.Encode
// writes after it. Field order and omitempty follow
// k8s.io/apiserver/pkg/apis/audit/v1.Event.
func appendEvent(dst []byte, e *event, tc *stampCache) []byte {
	dst = append(dst, `{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":`...)
	dst = appendString(dst, e.level)
	dst = append(dst, `,"auditID":`...)
	dst = appendString(dst, e.auditID)
	dst = append(dst, `,"stage":`...)
	dst = appendString(dst, e.stage)
	dst = append(dst, `,"requestURI":`...)
	dst = appendString(dst, e.requestURI)
	dst = append(dst, `,"verb":`...)
	dst = appendString(dst, e.verb)
	dst = append(dst, `,"user":`...)
	dst = appendUser(dst, e.user)
	if e.impersonated != nil {
		dst = append(dst, `,"impersonatedUser":`...)
		dst = appendUser(dst, e.impersonated)
	}
	if e.constraint != "" {
		dst = append(dst, `,"authenticationMetadata":{"impersonationConstraint":`...)
		dst = appendString(dst, e.constraint)
		dst = append(dst, '}')
	}
	if len(e.sourceIPs) > 0 {
		dst = append(dst, `,"sourceIPs":`...)
		dst = appendStrings(dst, e.sourceIPs)
	}
	if e.userAgent != "" {
		dst = append(dst, `,"userAgent":`...)
		dst = appendString(dst, e.userAgent)
	}
	if e.objectRef != nil {
		dst = append(dst, `,"objectRef":`...)
		dst = appendObjectRef(dst, e.objectRef)
	}
	if e.responseStatus != nil {
		dst = append(dst, `,"responseStatus":`...)
		dst = appendStatus(dst, e.responseStatus)
	}
	if len(e.requestObject) > 0 {
		dst = append(dst, `,"requestObject":`...)
		dst = append(dst, e.requestObject...)
	}
	if len(e.responseObject) > 0 {
		dst = append(dst, `,"responseObject":`...)
		dst = append(dst, e.responseObject...)
	}
	dst = append(dst, `,"requestReceivedTimestamp":`...)
	dst = tc.appendMicroTime(dst, e.received)
	dst = append(dst, `,"stageTimestamp":`...)
	dst = tc.appendMicroTime(dst, e.stageAt)
	if len(e.annotations) > 0 {
		dst = append(dst, `,"annotations":{`...)
		for i, a := range e.annotations {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendString(dst, a.key)
			dst = append(dst, ':')
			dst = appendString(dst, a.value)
		}
		dst = append(dst, '}')
	}
	return append(dst, '}', '\n')
}

// jb builds a compact JSON document (a request or response body) by
// appending; it inserts the commas. Bodies are produced the way the API
// server produces them: struct fields in Go order, map keys sorted.
type jb struct {
	b    []byte
	more bool // a value was written at this level, so the next one needs a comma
}

func (j *jb) sep() {
	if j.more {
		j.b = append(j.b, ',')
	}
}

func (j *jb) open() *jb     { j.sep(); j.b = append(j.b, '{'); j.more = false; return j }
func (j *jb) close() *jb    { j.b = append(j.b, '}'); j.more = true; return j }
func (j *jb) openArr() *jb  { j.sep(); j.b = append(j.b, '['); j.more = false; return j }
func (j *jb) closeArr() *jb { j.b = append(j.b, ']'); j.more = true; return j }
func (j *jb) key(k string) *jb {
	j.sep()
	j.b = appendString(j.b, k)
	j.b = append(j.b, ':')
	j.more = false
	return j
}
func (j *jb) str(v string) *jb { j.sep(); j.b = appendString(j.b, v); j.more = true; return j }
func (j *jb) num(v int64) *jb  { j.sep(); j.b = strconv.AppendInt(j.b, v, 10); j.more = true; return j }
func (j *jb) boolean(v bool) *jb {
	j.sep()
	j.b = strconv.AppendBool(j.b, v)
	j.more = true
	return j
}

// raw appends an already-encoded compact JSON value.
func (j *jb) raw(v string) *jb { j.sep(); j.b = append(j.b, v...); j.more = true; return j }

func (j *jb) kstr(k, v string) *jb { return j.key(k).str(v) }
func (j *jb) knum(k string, v int64) *jb {
	return j.key(k).num(v)
}
func (j *jb) kbool(k string, v bool) *jb { return j.key(k).boolean(v) }
func (j *jb) kobj(k string) *jb          { return j.key(k).open() }
func (j *jb) karr(k string) *jb          { return j.key(k).openArr() }

// kstrs writes a key with an array of strings.
func (j *jb) kstrs(k string, vs ...string) *jb {
	j.karr(k)
	for _, v := range vs {
		j.str(v)
	}
	return j.closeArr()
}

// kmap writes a map[string]string given as key, value pairs, with the keys
// sorted as encoding/json sorts them.
func (j *jb) kmap(k string, kv ...string) *jb {
	j.kobj(k)
	var order [8]int
	idx := order[:0]
	for i := 0; i+1 < len(kv); i += 2 {
		idx = append(idx, i)
	}
	for a := 1; a < len(idx); a++ {
		for b := a; b > 0 && kv[idx[b]] < kv[idx[b-1]]; b-- {
			idx[b], idx[b-1] = idx[b-1], idx[b]
		}
	}
	for _, i := range idx {
		j.kstr(kv[i], kv[i+1])
	}
	return j.close()
}
