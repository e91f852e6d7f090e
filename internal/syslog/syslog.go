// Package syslog writes RFC 5424 syslog messages and sends them over TCP or
// TLS with octet-counting framing (RFC 6587 section 3.4.1, the framing RFC
// 5425 requires over TLS). It is the one syslog client of kubetrail:
// alert outputs and event forwarding both use it (docs/adr/0009).
package syslog

import (
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Severities (RFC 5424 section 6.2.1) that kubetrail uses.
const (
	Crit    = 2
	Err     = 3
	Warning = 4
	Notice  = 5
	Info    = 6
)

// Facilities by name (RFC 5424 table 1, with the names rsyslog and
// syslog-ng use).
var facilities = map[string]int{
	"kern": 0, "user": 1, "mail": 2, "daemon": 3, "auth": 4, "syslog": 5, "lpr": 6, "news": 7,
	"uucp": 8, "cron": 9, "authpriv": 10, "ftp": 11, "ntp": 12, "security": 13, "audit": 13, "console": 14,
	"solaris-cron": 15, "local0": 16, "local1": 17, "local2": 18, "local3": 19, "local4": 20, "local5": 21,
	"local6": 22, "local7": 23,
}

// ParseFacility reads a facility name (authpriv, local0...) or number.
func ParseFacility(s string) (int, bool) {
	if n, err := strconv.Atoi(s); err == nil && n >= 0 && n <= 23 {
		return n, true
	}
	n, ok := facilities[strings.ToLower(s)]
	return n, ok
}

// Message is one RFC 5424 message. Empty header fields are written as
// the nil value "-"; characters a field may not hold are replaced by '_'
// and fields are cut to their maximum length, so any input gives a valid
// message.
type Message struct {
	Facility, Severity int
	Time               time.Time
	Hostname, AppName  string
	ProcID, MsgID      string
	// Data is the structured data, in order.
	Data []Element
	// Msg is the free-form message, UTF-8 (invalid bytes are replaced).
	Msg string
}

// Element is one SD-ELEMENT: an SD-ID (name@PEN for private ones) and its
// parameters.
type Element struct {
	ID     string
	Params []Param
}

// Param is one SD-PARAM.
type Param struct{ Name, Value string }

// Append appends m as an RFC 5424 SYSLOG-MSG (no framing) to dst.
func Append(dst []byte, m *Message) []byte {
	pri := min(max(m.Facility, 0), 23)*8 + min(max(m.Severity, 0), 7)
	dst = append(dst, '<')
	dst = strconv.AppendInt(dst, int64(pri), 10)
	dst = append(dst, ">1 "...)
	if m.Time.IsZero() {
		dst = append(dst, '-')
	} else {
		// TIME-SECFRAC holds at most six digits.
		dst = m.Time.UTC().AppendFormat(dst, "2006-01-02T15:04:05.000000Z07:00")
	}
	dst = append(dst, ' ')
	dst = appendHeaderField(dst, m.Hostname, 255)
	dst = append(dst, ' ')
	dst = appendHeaderField(dst, m.AppName, 48)
	dst = append(dst, ' ')
	dst = appendHeaderField(dst, m.ProcID, 128)
	dst = append(dst, ' ')
	dst = appendHeaderField(dst, m.MsgID, 32)
	dst = append(dst, ' ')
	if len(m.Data) == 0 {
		dst = append(dst, '-')
	}
	for _, e := range m.Data {
		dst = append(dst, '[')
		dst = appendSDName(dst, e.ID)
		for _, p := range e.Params {
			dst = append(dst, ' ')
			dst = appendSDName(dst, p.Name)
			dst = append(dst, '=', '"')
			dst = appendParamValue(dst, p.Value)
			dst = append(dst, '"')
		}
		dst = append(dst, ']')
	}
	if m.Msg != "" {
		dst = append(dst, ' ')
		dst = append(dst, strings.ToValidUTF8(m.Msg, "\uFFFD")...)
	}
	return dst
}

// appendHeaderField writes a header field: PRINTUSASCII (33..126), at
// most max characters, "-" when empty.
func appendHeaderField(dst []byte, s string, max int) []byte {
	if s == "" {
		return append(dst, '-')
	}
	for i := 0; i < len(s) && i < max; i++ {
		c := s[i]
		if c < 33 || c > 126 {
			c = '_'
		}
		dst = append(dst, c)
	}
	return dst
}

// appendSDName writes an SD-NAME: printable US-ASCII but '=', ' ', ']' and
// '"', at most 32 characters.
func appendSDName(dst []byte, s string) []byte {
	if s == "" {
		return append(dst, '_')
	}
	for i := 0; i < len(s) && i < 32; i++ {
		c := s[i]
		if c < 33 || c > 126 || c == '=' || c == ']' || c == '"' {
			c = '_'
		}
		dst = append(dst, c)
	}
	return dst
}

// appendParamValue writes a PARAM-VALUE: UTF-8, with '"', '\' and ']'
// escaped by a backslash (RFC 5424 section 6.3.3).
func appendParamValue(dst []byte, s string) []byte {
	for _, r := range strings.ToValidUTF8(s, "\uFFFD") {
		switch r {
		case '"', '\\', ']':
			dst = append(dst, '\\', byte(r))
		default:
			dst = utf8.AppendRune(dst, r)
		}
	}
	return dst
}

// AppendFrame appends msg with octet-counting framing: its length in
// bytes, a space, the message. Unlike newline framing it carries
// messages that hold newlines unchanged.
func AppendFrame(dst, msg []byte) []byte {
	dst = strconv.AppendInt(dst, int64(len(msg)), 10)
	dst = append(dst, ' ')
	return append(dst, msg...)
}
