package syslog

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
)

// Formats of a received message.
const (
	RFC5424 = "rfc5424"
	RFC3164 = "rfc3164"
)

// Received is one message read off the wire. Its slices point into the
// bytes given to Parse.
type Received struct {
	// Format is RFC5424 or RFC3164.
	Format             string
	Facility, Severity int
	// Hostname and AppName are the header's (for RFC 3164: the host and
	// the tag, when they could be told apart), "" when absent.
	Hostname, AppName string
	// Data is the structured data (RFC 5424 only), in order.
	Data []Element
	// Msg is the free-form message with a leading UTF-8 BOM and the
	// surrounding whitespace removed.
	Msg []byte
}

// Param returns the value of parameter name in the first element with
// the given SD-ID.
func (m *Received) Param(id, name string) (string, bool) {
	for _, e := range m.Data {
		if e.ID != id {
			continue
		}
		for _, p := range e.Params {
			if p.Name == name {
				return p.Value, true
			}
		}
	}
	return "", false
}

var bom = []byte("\xEF\xBB\xBF")

// Parse reads one message without its framing: RFC 5424 when the version
// "1" follows the PRI, else RFC 3164 (BSD syslog, as rsyslog's and
// syslog-ng's traditional formats write it). Only the PRI is required of
// RFC 3164, whose header is loosely defined; its message starts at the
// first '{' or "@cee:" of the first 1 KiB after the timestamp, which is
// where the JSON of an audit event is, else after the tag.
func Parse(b []byte) (Received, error) {
	var m Received
	pri, rest, err := parsePRI(b)
	if err != nil {
		return m, err
	}
	m.Facility, m.Severity = pri/8, pri%8
	if len(rest) >= 2 && rest[0] == '1' && rest[1] == ' ' {
		m.Format = RFC5424
		return m, parse5424(&m, rest[2:])
	}
	m.Format = RFC3164
	parse3164(&m, rest)
	return m, nil
}

func parsePRI(b []byte) (int, []byte, error) {
	if len(b) == 0 || b[0] != '<' {
		return 0, nil, fmt.Errorf("not a syslog message: starts with %q, not a <PRI>", clip(b, 12))
	}
	end := bytes.IndexByte(b[:min(len(b), 5)], '>')
	if end < 2 {
		return 0, nil, fmt.Errorf("not a syslog message: bad <PRI> in %q", clip(b, 12))
	}
	pri, err := strconv.Atoi(string(b[1:end]))
	if err != nil || pri > 191 || pri < 0 {
		return 0, nil, fmt.Errorf("not a syslog message: bad <PRI> in %q", clip(b, 12))
	}
	return pri, b[end+1:], nil
}

// parse5424 reads what follows "<PRI>1 ": TIMESTAMP HOSTNAME APP-NAME
// PROCID MSGID STRUCTURED-DATA [MSG].
func parse5424(m *Received, b []byte) error {
	var fields [5][]byte
	for i := range fields {
		sp := bytes.IndexByte(b, ' ')
		if sp <= 0 {
			return errors.New("RFC 5424 header cut short: want TIMESTAMP HOSTNAME APP-NAME PROCID MSGID STRUCTURED-DATA")
		}
		fields[i], b = b[:sp], b[sp+1:]
	}
	nilv := func(f []byte) string {
		if string(f) == "-" {
			return ""
		}
		return string(f)
	}
	m.Hostname, m.AppName = nilv(fields[1]), nilv(fields[2])
	rest, err := parseSD(m, b)
	if err != nil {
		return err
	}
	if len(rest) > 0 && rest[0] != ' ' {
		return fmt.Errorf("RFC 5424: want a space after the structured data, found %q", clip(rest, 12))
	}
	m.Msg = bytes.TrimSpace(bytes.TrimPrefix(bytes.TrimLeft(rest, " "), bom))
	return nil
}

// parseSD reads "-" or one or more [SD-ID PARAM="VALUE"...] elements and
// returns what follows.
func parseSD(m *Received, b []byte) ([]byte, error) {
	if len(b) == 0 {
		return nil, errors.New("RFC 5424 header cut short: no STRUCTURED-DATA")
	}
	if b[0] == '-' {
		return b[1:], nil
	}
	for len(b) > 0 && b[0] == '[' {
		var e Element
		i := 1
		for i < len(b) && b[i] != ' ' && b[i] != ']' {
			i++
		}
		e.ID = string(b[1:i])
		for i < len(b) && b[i] == ' ' {
			eq := bytes.IndexByte(b[i+1:], '=')
			if eq <= 0 || i+1+eq+1 >= len(b) || b[i+1+eq+1] != '"' {
				return nil, fmt.Errorf("RFC 5424 structured data [%s]: want NAME=\"VALUE\"", clip([]byte(e.ID), 32))
			}
			p := Param{Name: string(b[i+1 : i+1+eq])}
			j := i + 1 + eq + 2
			var val []byte
			for ; j < len(b) && b[j] != '"'; j++ {
				if b[j] == '\\' && j+1 < len(b) && (b[j+1] == '"' || b[j+1] == '\\' || b[j+1] == ']') {
					j++
				}
				val = append(val, b[j])
			}
			if j >= len(b) {
				return nil, fmt.Errorf("RFC 5424 structured data [%s]: a value never ends", clip([]byte(e.ID), 32))
			}
			p.Value = string(val)
			e.Params = append(e.Params, p)
			i = j + 1
		}
		if i >= len(b) || b[i] != ']' || e.ID == "" {
			return nil, errors.New("RFC 5424 structured data: an element never ends")
		}
		m.Data = append(m.Data, e)
		b = b[i+1:]
	}
	if m.Data == nil {
		return nil, fmt.Errorf("RFC 5424: want '-' or '[' for the structured data, found %q", clip(b, 12))
	}
	return b, nil
}

var months = []string{"Jan ", "Feb ", "Mar ", "Apr ", "May ", "Jun ", "Jul ", "Aug ", "Sep ", "Oct ", "Nov ", "Dec "}

// parse3164 reads what follows the PRI of a BSD syslog message:
// [TIMESTAMP] [HOSTNAME] TAG[PID]: MSG.
func parse3164(m *Received, b []byte) {
	// "Mmm dd hh:mm:ss " (RFC 3164) or an RFC 3339 timestamp (rsyslog's
	// high-precision forwarding format).
	if len(b) >= 16 && isMonth(b) && b[15] == ' ' && b[9] == ':' && b[12] == ':' {
		b = b[16:]
	} else if sp := bytes.IndexByte(b, ' '); sp >= 19 && b[0] >= '0' && b[0] <= '9' && b[10] == 'T' {
		b = b[sp+1:]
	}
	head := b[:min(len(b), 1024)]
	start := -1
	if i := bytes.IndexByte(head, '{'); i >= 0 {
		start = i
	}
	if i := bytes.Index(head, []byte("@cee:")); i >= 0 && (start < 0 || i < start) {
		start = i
	}
	var words [][]byte
	if start >= 0 {
		words = bytes.Fields(b[:start])
		m.Msg = bytes.TrimSpace(b[start:])
	} else {
		// HOSTNAME TAG: MSG, or TAG: MSG when the host is left out.
		rest := b
		for len(words) < 2 {
			sp := bytes.IndexByte(rest, ' ')
			if sp < 0 {
				break
			}
			words = append(words, rest[:sp])
			rest = rest[sp+1:]
			if w := words[len(words)-1]; len(w) > 0 && w[len(w)-1] == ':' {
				break
			}
		}
		m.Msg = bytes.TrimSpace(rest)
	}
	switch len(words) {
	case 0:
	case 1:
		m.AppName = tagName(words[0])
	default:
		m.Hostname, m.AppName = string(words[0]), tagName(words[1])
	}
}

func isMonth(b []byte) bool {
	for _, mo := range months {
		if bytes.HasPrefix(b, []byte(mo)) {
			return true
		}
	}
	return false
}

// tagName strips a tag's "[PID]" and ":".
func tagName(w []byte) string {
	w = bytes.TrimSuffix(w, []byte(":"))
	if i := bytes.IndexByte(w, '['); i > 0 {
		w = w[:i]
	}
	return string(w)
}

func clip(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "..."
	}
	return string(b)
}
