package textcodec

import (
	"encoding/binary"
	"time"
)

// A leaf's value is written as one of these kinds. The encoder picks a
// kind only when decoding it gives the very same bytes back, so a value
// that merely looks like a UUID (upper case) or a time (another
// precision) stays a string.
const (
	kindString byte = iota // the bytes, in the string stream
	kindUUID               // 16 bytes in the fixed stream
	kindTime               // microseconds since the block's previous time, zigzag, in the number stream
	kindInt                // a canonical decimal integer, zigzag, in the number stream
	kindTailID             // a string ending in a UUID: the head as a string, the UUID in the fixed stream
	kindURI                // requestURI: the URI guessed from objectRef (guess 0), then the rest as a string
	// kindURI+1 and kindURI+2 are guesses 1 and 2; see guessURI.
	kindLast = kindURI + 2
	// kindBody is a request or response body kept apart (Rows with
	// BodiesApart): its offset and length in the block's body frame, in
	// the number stream.
	kindBody = kindLast + 1
)

const hexDigits = "0123456789abcdef"

// parseUUID reads a canonical lower-case UUID.
func parseUUID(v []byte) (u [16]byte, ok bool) {
	if len(v) != 36 || v[8] != '-' || v[13] != '-' || v[18] != '-' || v[23] != '-' {
		return u, false
	}
	// The digit pairs' offsets, unrolled by group rather than testing
	// for a dash at every pair, and each digit's value looked up rather
	// than tested for ranges: UUIDs were a tenth of encoding.
	bad := byte(0)
	for k, i := range [16]byte{0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34} {
		hi, lo := unhexTable[v[i]], unhexTable[v[i+1]]
		bad |= hi | lo
		u[k] = hi<<4 | lo
	}
	return u, bad < 16
}

// unhexTable is each byte's value as a lower-case hexadecimal digit, 255
// for a byte that is none. It is never written.
var unhexTable = func() (t [256]byte) {
	for c := range t {
		t[c] = 255
	}
	for c := byte('0'); c <= '9'; c++ {
		t[c] = c - '0'
	}
	for c := byte('a'); c <= 'f'; c++ {
		t[c] = c - 'a' + 10
	}
	return t
}()

func appendUUID(dst []byte, u []byte) []byte {
	for k, c := range u {
		if k == 4 || k == 6 || k == 8 || k == 10 {
			dst = append(dst, '-')
		}
		dst = append(dst, hexDigits[c>>4], hexDigits[c&15])
	}
	return dst
}

// microLayout is how the API server writes requestReceivedTimestamp and
// stageTimestamp (metav1.MicroTime, always UTC).
const microLayout = "2006-01-02T15:04:05.000000Z"

// parseMicro reads a time written as microLayout; ok only when writing it
// back (appendMicro, as the decoder does) gives v, so a date time.Date
// would normalize (a 30 February, a 24th hour) is no time. It reads the
// digits itself: time.Parse and AppendFormat were a ninth of encoding.
// Rather than writing the time back and comparing, it checks what makes
// the two differ, the separators and each field's range: the writing was
// a twentieth of encoding (TestParseMicroAsTimeParse holds it to
// time.Parse and Format).
func parseMicro(v []byte) (int64, bool) {
	if len(v) != len(microLayout) || v[4] != '-' || v[7] != '-' || v[10] != 'T' || v[13] != ':' ||
		v[16] != ':' || v[19] != '.' || v[26] != 'Z' {
		return 0, false
	}
	y, ok1 := digits(v[0:4])
	mo, ok2 := digits(v[5:7])
	d, ok3 := digits(v[8:10])
	h, ok4 := digits(v[11:13])
	mi, ok5 := digits(v[14:16])
	s, ok6 := digits(v[17:19])
	us, ok7 := digits(v[20:26])
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6 && ok7) {
		return 0, false
	}
	if mo < 1 || mo > 12 || d < 1 || d > daysIn(mo, y) || h > 23 || mi > 59 || s > 59 {
		return 0, false // time.Date would normalize it: written back, another text
	}
	return time.Date(y, time.Month(mo), d, h, mi, s, us*1000, time.UTC).UnixMicro(), true
}

// daysIn returns the number of days of month mo (1 to 12) of year y in
// the proleptic Gregorian calendar, time's.
func daysIn(mo, y int) int {
	switch mo {
	case 2:
		if y%4 == 0 && (y%100 != 0 || y%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// digits reads b as a decimal number of ASCII digits only.
func digits(b []byte) (int, bool) {
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// appendMicro writes a time as microLayout, digit by digit: time's
// AppendFormat was an eighth of the decoding time.
func appendMicro(dst []byte, us int64) []byte {
	t := time.UnixMicro(us).UTC()
	if y := t.Year(); y < 0 || y > 9999 {
		return t.AppendFormat(dst, microLayout)
	}
	y, mo, d := t.Date()
	h, mi, s := t.Clock()
	dst = appendDigits(dst, y, 4)
	dst = appendDigits(append(dst, '-'), int(mo), 2)
	dst = appendDigits(append(dst, '-'), d, 2)
	dst = appendDigits(append(dst, 'T'), h, 2)
	dst = appendDigits(append(dst, ':'), mi, 2)
	dst = appendDigits(append(dst, ':'), s, 2)
	dst = appendDigits(append(dst, '.'), t.Nanosecond()/1000, 6)
	return append(dst, 'Z')
}

// secCache keeps the text of the day a time was last written in
// ("2006-01-02T"): writing the date digit by digit was a tenth of
// rendering a group, and a group's events (in storage order, not in
// time order) fall in a few days.
type secCache struct {
	day  int64
	ok   bool
	text [11]byte
}

// appendMicro is appendMicro, writing the clock and the microseconds
// from the time's offset in the day when the day is the one written
// last.
func (c *secCache) appendMicro(dst []byte, us int64) []byte {
	const usDay = 86_400_000_000
	day, in := us/usDay, us%usDay
	if in < 0 {
		day, in = day-1, in+usDay
	}
	if !c.ok || c.day != day {
		var scratch [32]byte
		full := appendMicro(scratch[:0], day*usDay)
		if len(full) != len(microLayout) {
			c.ok = false
			return appendMicro(dst, us)
		}
		copy(c.text[:], full)
		c.day, c.ok = day, true
	}
	sec, frac := in/1e6, in%1e6
	var tail [16]byte // "15:04:05.000000Z"
	put2 := func(at int, v int64) { tail[at], tail[at+1] = byte('0'+v/10), byte('0'+v%10) }
	put2(0, sec/3600)
	put2(3, sec/60%60)
	put2(6, sec%60)
	tail[2], tail[5], tail[8], tail[15] = ':', ':', '.', 'Z'
	for i := 14; i >= 9; i-- {
		tail[i] = byte('0' + frac%10)
		frac /= 10
	}
	return append(append(dst, c.text[:]...), tail[:]...)
}

// appendDigits writes v's last n decimal digits, zero-padded.
func appendDigits(dst []byte, v, n int) []byte {
	for i := n - 1; i >= 0; i-- {
		dst = append(dst, 0)
	}
	for i := len(dst) - 1; i >= len(dst)-n; i-- {
		dst[i] = byte('0' + v%10)
		v /= 10
	}
	return dst
}

// maxIntLen is the length of the longest integer parseInt reads: a sign
// and 18 digits.
const maxIntLen = 19

// parseInt reads a decimal integer written without a plus sign or
// leading zeros, small enough that no overflow can occur.
func parseInt(v []byte) (int64, bool) {
	neg := len(v) > 0 && v[0] == '-'
	d := v
	if neg {
		d = v[1:]
	}
	if len(d) == 0 || len(d) > maxIntLen-1 || (d[0] == '0' && len(d) > 1) || (neg && d[0] == '0') {
		return 0, false
	}
	var n int64
	for _, c := range d {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	if neg {
		n = -n
	}
	return n, true
}

func zigzag(v int64) uint64   { return uint64(v<<1) ^ uint64(v>>63) }
func unzigzag(u uint64) int64 { return int64(u>>1) ^ -int64(u&1) }

// The objectRef fields a requestURI is guessed from, by column path.
const (
	refResource = iota
	refNamespace
	refName
	refGroup
	refVersion
	refSubresource
	nRef
)

var refPaths = [nRef]string{
	"$.objectRef.resource", "$.objectRef.namespace", "$.objectRef.name",
	"$.objectRef.apiGroup", "$.objectRef.apiVersion", "$.objectRef.subresource",
}

const uriPath = "$.requestURI"

// setRef keeps v as the objectRef field of column col, if it is one and
// the event has not already given it: the first of duplicate keys counts,
// for the encoder and the decoder alike. v must not be nil, even when
// empty: nil means the field is missing.
func setRef(ref *[nRef][]byte, cols *[nRef]int, col int, v []byte) {
	for k, c := range cols {
		if col == c && ref[k] == nil {
			if v == nil {
				panic("BUG: textcodec: nil objectRef value")
			}
			ref[k] = v
		}
	}
}

// guessURI appends the path the API server's request info parser would
// have read objectRef from (k8s.io/apiserver/pkg/endpoints/request):
// guess 0 is the whole object path (get, update, delete, subresources),
// guess 1 stops at the resource (create and list, whose objectRef may
// still name the created object), guess 2 is a namespace's own path
// (objectRef.namespace is the namespace's name). ref[k] is nil when the
// event has no such field. ok is false when no guess can be made.
func guessURI(dst []byte, ref *[nRef][]byte, guess int) ([]byte, bool) {
	if ref[refResource] == nil || ref[refVersion] == nil {
		return dst, false
	}
	if len(ref[refGroup]) == 0 {
		dst = append(append(dst, "/api/"...), ref[refVersion]...)
	} else {
		dst = append(append(append(dst, "/apis/"...), ref[refGroup]...), '/')
		dst = append(dst, ref[refVersion]...)
	}
	if guess == 2 {
		if string(ref[refResource]) != "namespaces" || len(ref[refName]) == 0 {
			return dst, false
		}
		dst = append(append(dst, "/namespaces/"...), ref[refName]...)
	} else {
		if len(ref[refNamespace]) > 0 {
			dst = append(append(dst, "/namespaces/"...), ref[refNamespace]...)
		}
		dst = append(append(dst, '/'), ref[refResource]...)
		if guess == 1 {
			return dst, true
		}
		if len(ref[refName]) > 0 {
			dst = append(append(dst, '/'), ref[refName]...)
		}
	}
	if len(ref[refSubresource]) > 0 {
		dst = append(append(dst, '/'), ref[refSubresource]...)
	}
	return dst, true
}

// reader reads varints and byte runs from a stream, remembering the
// first shortfall so callers check once.
type reader struct {
	b   []byte
	bad bool
}

func (r *reader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.bad = true
		r.b = nil
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) bytes(n uint64) []byte {
	if n > uint64(len(r.b)) {
		r.bad = true
		r.b = nil
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

// chunk reads a length-prefixed byte run.
func (r *reader) chunk() []byte { return r.bytes(r.uvarint()) }

func appendChunk(dst, v []byte) []byte {
	return append(binary.AppendUvarint(dst, uint64(len(v))), v...)
}
