package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"unicode/utf8"
)

// Record is one decoded event and the bytes kubetrail stores for it.
type Record struct {
	// Event is the decoded event.
	Event Event
	// Raw is the event as one line of JSON, exactly as received, in the form
	// the API server's log backend writes it: a complete Event. Webhook
	// EventList items arrive without kind and apiVersion; the decoder puts
	// them first, which gives back byte for byte the API server's log line
	// for the same event. Raw has no trailing newline and is owned by the
	// Record.
	Raw []byte
	// Format names the format the event arrived in (see the Format constants).
	Format Format
}

// Format names an input format the decoder recognises.
type Format string

// The input formats.
const (
	FormatEvent           Format = "event"            // one audit.k8s.io Event (v1 or v1beta1)
	FormatEventList       Format = "eventlist"        // an EventList, as the webhook backend sends
	FormatAKSEventHub     Format = "aks-eventhub"     // Azure diagnostic settings record, properties.log
	FormatAKSLogAnalytics Format = "aks-loganalytics" // AzureDiagnostics row with log_s
	FormatEKSCloudWatch   Format = "eks-cloudwatch"   // CloudWatch Logs event, one audit event per message
	FormatGKE             Format = "gke"              // Cloud Audit Logs LogEntry with protoPayload
)

// Problem is one input that could not be used, with where it was.
type Problem struct {
	// Source names the input: a file name, or "request body".
	Source string
	// Line is the 1-based line in Source; 0 when the input is not line based.
	Line int
	// Item is the 0-based position inside a list or array; -1 when none.
	Item int
	// Reason says what was wrong, in words a user can act on.
	Reason string
}

func (p Problem) String() string {
	var b strings.Builder
	b.WriteString(p.Source)
	if p.Line > 0 {
		fmt.Fprintf(&b, ":%d", p.Line)
	}
	if p.Item >= 0 {
		fmt.Fprintf(&b, ": item %d", p.Item)
	}
	b.WriteString(": ")
	b.WriteString(p.Reason)
	return b.String()
}

// Limits bound what one event may cost. The zero value means the defaults.
type Limits struct {
	// MaxEventBytes is the largest single event accepted, in bytes.
	MaxEventBytes int
	// MaxDepth is the deepest JSON nesting accepted inside one event.
	MaxDepth int
}

// Default limits. The API server's own default for a webhook batch is far
// below MaxEventBytes; a larger event is almost certainly not an audit event.
const (
	DefaultMaxEventBytes = 16 << 20
	DefaultMaxDepth      = 100
)

func (l Limits) withDefaults() Limits {
	if l.MaxEventBytes <= 0 {
		l.MaxEventBytes = DefaultMaxEventBytes
	}
	if l.MaxDepth <= 0 {
		l.MaxDepth = DefaultMaxDepth
	}
	return l
}

// Decoder turns bytes in any supported format into Records. It is cheap to
// create and safe for concurrent use (it holds only configuration).
type Decoder struct {
	limits Limits
}

// NewDecoder returns a decoder with the given limits.
func NewDecoder(l Limits) *Decoder { return &Decoder{limits: l.withDefaults()} }

// Emit receives each good record. Bad receives each problem. Neither may
// retain the slices of its argument beyond the call except Record.Raw, which
// the record owns.
type (
	Emit func(Record)
	Bad  func(Problem)
)

// DecodeBody decodes a whole request body or file held in memory: an Event,
// an EventList, a JSON array of events, a cloud export envelope, or JSON lines
// of any of these. Every good event is emitted even when others are bad.
func (d *Decoder) DecodeBody(source string, body []byte, emit Emit, bad Bad) {
	d.DecodeBodySized(source, body, nil, emit, bad)
}

// DecodeBodySized is DecodeBody that also tells items, when it is not nil,
// how many items a body that is one list holds (an EventList or a JSON
// array, whose item boundaries are all found, of up to 4096 items): at
// most once, before the first emit, so that a caller collecting the
// records can size its slice once instead of growing it. Some items may
// still be bad; JSON lines and other bodies are not counted.
func (d *Decoder) DecodeBodySized(source string, body []byte, items func(n int), emit Emit, bad Bad) {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		bad(Problem{Source: source, Item: -1, Reason: "empty body: expected an audit Event, an EventList or JSON lines"})
		return
	}
	if isSingleValue(trimmed) || isList(trimmed) {
		if trimmed[0] == '{' || trimmed[0] == '[' {
			d.decodeValue(loc{source: source, item: -1, items: items}, trimmed, "", emit, bad)
		} else {
			d.DecodeLine(source, 1, trimmed, emit, bad)
		}
		return
	}
	d.DecodeLines(source, trimmed, emit, bad)
}

// DecodeLines decodes JSON lines held in memory, numbering lines from 1.
func (d *Decoder) DecodeLines(source string, data []byte, emit Emit, bad Bad) {
	line := 0
	for len(data) > 0 {
		line++
		i := bytes.IndexByte(data, '\n')
		var l []byte
		if i < 0 {
			l, data = data, nil
		} else {
			l, data = data[:i], data[i+1:]
		}
		d.DecodeLine(source, line, l, emit, bad)
	}
}

// DecodeLine decodes one line of a JSON-lines input. Blank lines are
// skipped. A line may hold an Event, an EventList or any cloud envelope.
func (d *Decoder) DecodeLine(source string, lineNo int, line []byte, emit Emit, bad Bad) {
	d.decodeLine(loc{source: source, line: lineNo, item: -1}, line, emit, bad)
}

// DecodeOwnedLine is DecodeLine for a line whose bytes the caller gives
// away: a Record may keep them as its stored form, uncopied (an import
// copied every event once more than it needed), so the caller must never
// modify them afterwards.
func (d *Decoder) DecodeOwnedLine(source string, lineNo int, line []byte, emit Emit, bad Bad) {
	d.decodeLine(loc{source: source, line: lineNo, item: -1, owned: true}, line, emit, bad)
}

func (d *Decoder) decodeLine(at loc, line []byte, emit Emit, bad Bad) {
	line = bytes.TrimSpace(line)
	if len(line) == 0 {
		return
	}
	if line[0] != '{' && line[0] != '[' {
		// CloudWatch Logs exports write "TIMESTAMP MESSAGE" per line.
		if sp := bytes.IndexByte(line, ' '); sp > 0 && sp < 40 && bytes.HasPrefix(bytes.TrimSpace(line[sp:]), []byte("{")) && looksLikeTimestamp(line[:sp]) {
			d.decodeValue(at, bytes.TrimSpace(line[sp:]), "", emit, bad)
			return
		}
		bad(at.problem(fmt.Sprintf("not JSON: line starts with %q", clip(line, 20))))
		return
	}
	d.decodeValue(at, line, "", emit, bad)
}

type loc struct {
	source string
	line   int
	item   int
	// nest counts the lists this value is inside, to bound recursion.
	nest int
	// owned says that the bytes decoded belong to the Records made from
	// them (DecodeOwnedLine), which may keep them in place.
	owned bool
	// items, when set, is told the item count of the list at this
	// location (DecodeBodySized); the items' own locations have none.
	items func(n int)
}

// count tells l's items callback, if any, that its list holds n items.
func (l loc) count(n int) {
	if l.items != nil {
		l.items(n)
	}
}

// in returns the location of item i of the list at l.
func (l loc) in(i int) loc {
	return loc{source: l.source, line: l.line, item: i, nest: l.nest + 1, owned: l.owned}
}

func (l loc) problem(reason string) Problem {
	return Problem{Source: l.source, Line: l.line, Item: l.item, Reason: reason}
}

// envelope decodes an Event and every supported wrapper in one pass; which
// fields are set tells the format.
type envelope struct {
	Event
	Items      []json.RawMessage `json:"items"`
	Records    []json.RawMessage `json:"records"`
	Properties *struct {
		Log *string `json:"log"`
	} `json:"properties"`
	LogS         *string           `json:"log_s"`
	Message      *string           `json:"message"`
	LogEvents    []cloudWatchEvent `json:"logEvents"`
	Events       []cloudWatchEvent `json:"events"`
	ProtoPayload json.RawMessage   `json:"protoPayload"`
}

type cloudWatchEvent struct {
	Message string `json:"message"`
}

// decodeValue decodes one JSON value at the given location. apiVersion is the
// version of the enclosing list, for items that carry none.
func (d *Decoder) decodeValue(at loc, raw []byte, apiVersion string, emit Emit, bad Bad) {
	if len(raw) > d.limits.MaxEventBytes && raw[0] == '{' && !bytes.Contains(raw[:min(len(raw), 4096)], []byte(`"items"`)) {
		bad(at.problem(fmt.Sprintf("event is %d bytes, over the %d-byte limit", len(raw), d.limits.MaxEventBytes)))
		return
	}
	if (raw[0] == '[' || raw[0] == '{') && at.nest >= d.limits.MaxDepth {
		bad(at.problem(fmt.Sprintf("lists nested deeper than %d levels", d.limits.MaxDepth)))
		return
	}
	if raw[0] == '[' {
		// Find every boundary first, then decode: a body whose
		// boundaries cannot all be found is refused whole, by the strict
		// decoder below, and emits nothing. The boundaries are kept
		// (scanning a webhook body twice cost a tenth of its decoding).
		var found itemList
		if arrayItems(raw, found.add) {
			if !found.many {
				at.count(len(found.items))
				d.decodeItems(at, found.items, apiVersion, emit, bad)
				return
			}
			i := 0
			arrayItems(raw, func(it []byte) {
				d.decodeItem(at.in(i), it, apiVersion, emit, bad)
				i++
			})
			return
		}
		var items []json.RawMessage
		if err := json.Unmarshal(raw, &items); err != nil {
			bad(at.problem(d.explainJSONError(raw, err)))
			return
		}
		for i, it := range items {
			d.decodeItem(at.in(i), it, apiVersion, emit, bad)
		}
		return
	}
	if raw[0] == '{' {
		var found itemList
		if v, ok := eventListItems(raw, found.add); ok {
			if v == "" {
				v = apiVersion
			}
			if !found.many {
				at.count(len(found.items))
				d.decodeItems(at, found.items, v, emit, bad)
				return
			}
			i := 0
			eventListItems(raw, func(it []byte) {
				d.decodeItem(at.in(i), it, v, emit, bad)
				i++
			})
			return
		}
		if d.decodeOwned(at, raw, apiVersion, emit, bad) {
			return
		}
	}
	var env envelope
	if err := json.Unmarshal(raw, &env); err != nil {
		bad(at.problem(d.explainJSONError(raw, err)))
		return
	}
	switch {
	case env.Items != nil || env.Kind == "EventList":
		v := env.APIVersion
		if v == "" {
			v = apiVersion
		}
		if env.Kind != "" && env.Kind != "EventList" {
			bad(at.problem(fmt.Sprintf("kind %q has items; expected kind EventList", env.Kind)))
			return
		}
		for i, it := range env.Items {
			d.decodeItem(at.in(i), it, v, emit, bad)
		}
	case env.Records != nil:
		for i, it := range env.Records {
			d.decodeItem(at.in(i), it, apiVersion, emit, bad)
		}
	case env.Properties != nil && env.Properties.Log != nil:
		d.decodeEmbedded(at, *env.Properties.Log, FormatAKSEventHub, emit, bad)
	case env.LogS != nil:
		d.decodeEmbedded(at, *env.LogS, FormatAKSLogAnalytics, emit, bad)
	case env.Message != nil:
		d.decodeEmbedded(at, *env.Message, FormatEKSCloudWatch, emit, bad)
	case env.LogEvents != nil || env.Events != nil:
		evs := env.LogEvents
		if evs == nil {
			evs = env.Events
		}
		for i, ev := range evs {
			d.decodeEmbedded(at.in(i), ev.Message, FormatEKSCloudWatch, emit, bad)
		}
	case env.ProtoPayload != nil:
		rec, err := fromGKE(raw)
		if err != nil {
			bad(at.problem("GKE log entry: " + err.Error()))
			return
		}
		emit(rec)
	default:
		d.finish(at, &env.Event, raw, apiVersion, maxDepth(raw, d.limits.MaxDepth), emit, bad)
	}
}

// maxHeader is the longest "kind"/"apiVersion" header the stored form may
// need in front of an item's bytes.
var maxHeader = len(eventPrefix) + len(APIVersionV1beta1) + 2

// decodeOwned is the fast path for one plain event: it copies the bytes
// once into a buffer with room in front for the kind/apiVersion header,
// decodes from that copy with strings and bodies pointing into it (no
// further allocation for them), and builds the stored form in place. The
// Record owns the buffer; nothing may modify it afterwards. Bytes the
// caller gave away (at.owned) are decoded and kept where they are, unless
// the event needs the header. It reports false when the fast decoder
// cannot take the input.
func (d *Decoder) decodeOwned(at loc, raw []byte, apiVersion string, emit Emit, bad Bad) bool {
	if bytes.IndexByte(raw, '\n') >= 0 || bytes.IndexByte(raw, '\r') >= 0 {
		return false // compaction would move bytes under the strings
	}
	var buf, body []byte
	if at.owned {
		body = raw // buf stays nil: no room for a header in front
	} else {
		buf = make([]byte, maxHeader-1+len(raw))
		body = buf[maxHeader-1:]
		copy(body, raw)
	}
	var ev Event
	dec := fastDec{b: body, alias: true, common: common()}
	if !dec.event(&ev) {
		return false
	}
	dec.ws()
	if dec.i != len(dec.b) {
		return false
	}
	if !utf8.Valid(body) {
		bad(at.problem(fmt.Sprintf("invalid UTF-8 at byte %d", invalidUTF8At(body))))
		return true
	}
	if dec.maxDepth > d.limits.MaxDepth {
		bad(at.problem(fmt.Sprintf("JSON nested deeper than %d levels", d.limits.MaxDepth)))
		return true
	}
	if reason := checkEvent(&ev, apiVersion); reason != "" {
		bad(at.problem(reason + describeKeys(body)))
		return true
	}
	stored := body
	if ev.Kind == "" && ev.APIVersion == "" {
		if buf == nil {
			// The header needs room in front: decode a copy that has it.
			at.owned = false
			return d.decodeOwned(at, raw, apiVersion, emit, bad)
		}
		v := apiVersion
		if v == "" {
			v = APIVersionV1
		}
		ev.Kind, ev.APIVersion = "Event", v
		// The header replaces the body's opening brace: "{" + header + ","
		// + the rest, or just header + "}" for an empty object (which
		// validation has already refused).
		hdr := len(eventPrefix) + len(v) + 2 // ..."v",
		start := maxHeader - 1 + 1 - hdr
		n := copy(buf[start:], eventPrefix)
		n += copy(buf[start+n:], v)
		buf[start+n] = '"'
		buf[start+n+1] = ','
		stored = buf[start:]
		if rest := bytes.TrimLeft(body[1:], " \t"); len(rest) > 0 && rest[0] == '}' {
			return false // no members: leave it to the general path
		}
	}
	emit(Record{Event: ev, Raw: stored, Format: FormatEvent})
	return true
}

// finish checks a decoded event, builds its stored form and emits it. The
// checks are per event, not per container, so that one bad item costs only
// itself.
func (d *Decoder) finish(at loc, ev *Event, raw []byte, apiVersion string, depth int, emit Emit, bad Bad) {
	if !utf8.Valid(raw) {
		bad(at.problem(fmt.Sprintf("invalid UTF-8 at byte %d", invalidUTF8At(raw))))
		return
	}
	if depth > d.limits.MaxDepth {
		bad(at.problem(fmt.Sprintf("JSON nested deeper than %d levels", d.limits.MaxDepth)))
		return
	}
	rec, reason := d.finishEvent(ev, raw, apiVersion)
	if reason != "" {
		bad(at.problem(reason + describeKeys(raw)))
		return
	}
	emit(rec)
}

// decodeItem decodes one element of a list or array: normally an Event, but
// Event Hub record arrays and nested lists go through decodeValue.
func (d *Decoder) decodeItem(at loc, raw json.RawMessage, apiVersion string, emit Emit, bad Bad) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' {
		bad(at.problem(fmt.Sprintf("expected a JSON object, found %q", clip(raw, 20))))
		return
	}
	d.decodeValue(at, raw, apiVersion, emit, bad)
}

// itemList keeps the items a list's first scan finds, up to
// maxKeptItems: a list of more (a hostile body of a million empty items)
// is scanned a second time instead, which costs time, not memory.
type itemList struct {
	items [][]byte
	many  bool
}

const maxKeptItems = 4096

func (l *itemList) add(it []byte) {
	if len(l.items) < maxKeptItems {
		l.items = append(l.items, it)
	} else {
		l.many = true
	}
}

// decodeItems decodes the items of one list.
func (d *Decoder) decodeItems(at loc, items [][]byte, apiVersion string, emit Emit, bad Bad) {
	for i, it := range items {
		d.decodeItem(at.in(i), it, apiVersion, emit, bad)
	}
}

// decodeEmbedded decodes an event carried as a JSON string inside a cloud
// provider's envelope.
func (d *Decoder) decodeEmbedded(at loc, s string, f Format, emit Emit, bad Bad) {
	b := bytes.TrimSpace([]byte(s))
	if len(b) == 0 || b[0] != '{' {
		bad(at.problem(fmt.Sprintf("%s: embedded log is not a JSON object: %q", f, clip(b, 40))))
		return
	}
	d.decodeValue(at, b, "", func(r Record) {
		if r.Format == FormatEvent {
			r.Format = f
		}
		emit(r)
	}, bad)
}

// finishEvent validates a decoded event and builds its stored form.
func (d *Decoder) finishEvent(ev *Event, raw []byte, apiVersion string) (Record, string) {
	if reason := checkEvent(ev, apiVersion); reason != "" {
		return Record{}, reason
	}
	out := storedForm(raw, ev, apiVersion)
	return Record{Event: *ev, Raw: out, Format: FormatEvent}, ""
}

// checkEvent says what makes a decoded event unusable, or "".
func checkEvent(ev *Event, apiVersion string) string {
	if reason := validate(ev); reason != "" {
		return reason
	}
	if ev.Kind != "" && ev.Kind != "Event" {
		return fmt.Sprintf("kind %q is not an audit Event", ev.Kind)
	}
	if ev.APIVersion != "" && ev.APIVersion != APIVersionV1 && ev.APIVersion != APIVersionV1beta1 {
		return fmt.Sprintf("apiVersion %q is not %s or %s", ev.APIVersion, APIVersionV1, APIVersionV1beta1)
	}
	if ev.Kind == "" && ev.APIVersion == "" && apiVersion != "" && apiVersion != APIVersionV1 && apiVersion != APIVersionV1beta1 {
		return fmt.Sprintf("the list's apiVersion %q is not %s or %s", apiVersion, APIVersionV1, APIVersionV1beta1)
	}
	return ""
}

func validate(ev *Event) string {
	var missing []string
	if ev.AuditID == "" {
		missing = append(missing, "auditID")
	}
	if ev.Stage == "" {
		missing = append(missing, "stage")
	}
	if ev.Level == "" {
		missing = append(missing, "level")
	}
	if ev.StageTimestamp.IsZero() && ev.RequestReceivedTimestamp.IsZero() {
		missing = append(missing, "stageTimestamp")
	}
	if len(missing) > 0 {
		return "not an audit event: missing " + strings.Join(missing, ", ")
	}
	switch ev.Level {
	case LevelNone, LevelMetadata, LevelRequest, LevelRequestResponse:
	default:
		return fmt.Sprintf("level %q is not one of None, Metadata, Request, RequestResponse", ev.Level)
	}
	return ""
}

var eventPrefix = []byte(`{"kind":"Event","apiVersion":"`)

// storedForm returns the one-line complete form of an event's bytes: the
// input itself when it is already one line and carries kind and apiVersion,
// else compacted and with kind and apiVersion put first, as the API server's
// log backend writes them.
func storedForm(raw []byte, ev *Event, listAPIVersion string) []byte {
	var out []byte
	if bytes.IndexByte(raw, '\n') >= 0 || bytes.IndexByte(raw, '\r') >= 0 {
		var buf bytes.Buffer
		buf.Grow(len(raw))
		if err := json.Compact(&buf, raw); err == nil {
			raw = buf.Bytes()
		}
	}
	if ev.Kind == "" && ev.APIVersion == "" {
		v := listAPIVersion
		if v == "" {
			v = APIVersionV1
		}
		ev.Kind, ev.APIVersion = "Event", v
		out = make([]byte, 0, len(raw)+len(eventPrefix)+len(v)+2)
		out = append(out, eventPrefix...)
		out = append(out, v...)
		out = append(out, '"')
		rest := bytes.TrimSpace(raw[1:])
		if len(rest) > 0 && rest[0] != '}' {
			out = append(out, ',')
		}
		return append(out, rest...)
	}
	out = make([]byte, len(raw))
	copy(out, raw)
	return out
}

// isSingleValue reports whether b holds exactly one JSON value (possibly
// spanning lines) rather than JSON lines.
func isSingleValue(b []byte) bool {
	if b[0] == '[' {
		return true
	}
	if bytes.IndexByte(b, '\n') < 0 {
		return true
	}
	// Several lines are one pretty-printed value only when they parse as
	// one; anything else is read line by line, so that one bad line costs
	// only itself.
	return json.Valid(b)
}

// isList reports whether b is one EventList or JSON array whose items'
// boundaries can all be found, even if some items are malformed: such a
// body spanning lines is one value, not JSON lines.
func isList(b []byte) bool {
	if b[0] == '[' {
		return arrayItems(b, nil)
	}
	_, ok := eventListItems(b, nil)
	return ok
}

// explainJSONError words a decoding error; it names nesting past the
// limit as such rather than as encoding/json's own depth error.
func (d *Decoder) explainJSONError(raw []byte, err error) string {
	if maxDepth(raw, d.limits.MaxDepth) > d.limits.MaxDepth && strings.Contains(err.Error(), "exceeded max depth") {
		return fmt.Sprintf("JSON nested deeper than %d levels", d.limits.MaxDepth)
	}
	return describeJSONError(raw, err)
}

// describeJSONError turns a decoding error into a message that says where
// and, for the common cases, why.
func describeJSONError(raw []byte, err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		if strings.Contains(syn.Error(), "unexpected end") {
			msg := fmt.Sprintf("truncated JSON: input ends after %d bytes", len(raw))
			if len(raw) == 16384 || len(raw) == 16385 {
				msg += " (exactly 16 KiB: a container runtime or log shipper cut the line)"
			}
			return msg
		}
		return fmt.Sprintf("invalid JSON at byte %d: %s", syn.Offset, syn.Error())
	case errors.As(err, &typ):
		field := strings.TrimPrefix(typ.Field, "Event.")
		if field == "" {
			return fmt.Sprintf("expected %s, found a JSON %s at byte %d", typ.Type, typ.Value, typ.Offset)
		}
		return fmt.Sprintf("field %q: expected %s, found a JSON %s", field, jsonKind(typ.Type.Kind().String()), typ.Value)
	default:
		if strings.Contains(err.Error(), "unexpected end of JSON input") {
			return fmt.Sprintf("truncated JSON: input ends after %d bytes", len(raw))
		}
		return "invalid JSON: " + err.Error()
	}
}

func jsonKind(goKind string) string {
	switch goKind {
	case "string":
		return "a string"
	case "struct", "map":
		return "an object"
	case "slice", "array":
		return "an array"
	case "bool":
		return "a boolean"
	default:
		return "a number"
	}
}

// describeKeys lists an object's top-level keys, to help a user see what
// they fed in.
func describeKeys(raw []byte) string {
	var m map[string]json.RawMessage
	if json.Unmarshal(raw, &m) != nil || len(m) == 0 {
		return ""
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if len(keys) > 8 {
		keys = append(keys[:8], "...")
	}
	return " (top-level keys: " + strings.Join(keys, ", ") + ")"
}

// maxDepth returns the deepest nesting in b, stopping early past limit.
func maxDepth(b []byte, limit int) int {
	depth, deepest := 0, 0
	inString := false
	for i := 0; i < len(b); i++ {
		c := b[i]
		if inString {
			switch c {
			case '\\':
				i++
			case '"':
				inString = false
			}
			continue
		}
		switch c {
		case '"':
			inString = true
		case '{', '[':
			depth++
			if depth > deepest {
				deepest = depth
				if deepest > limit {
					return deepest
				}
			}
		case '}', ']':
			depth--
		}
	}
	return deepest
}

func invalidUTF8At(b []byte) int {
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n <= 1 {
			return i
		}
		i += n
	}
	return -1
}

func looksLikeTimestamp(b []byte) bool {
	return len(b) >= 10 && b[0] >= '0' && b[0] <= '9' && b[4] == '-'
}

func clip(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "..."
	}
	return string(b)
}

// DecodeStored decodes one stored event (a Record's Raw) into ev. It takes
// the fast path when it can; ev may alias raw for its request and response
// bodies only as copies, so raw may be reused after the call.
func DecodeStored(raw []byte, ev *Event) error {
	*ev = Event{}
	if len(raw) > 0 && raw[0] == '{' {
		if _, ok := fastDecodeEvent(raw, ev); ok {
			return nil
		}
	}
	*ev = Event{}
	if err := json.Unmarshal(raw, ev); err != nil {
		return fmt.Errorf("stored event: %s", describeJSONError(raw, err))
	}
	return nil
}
