package forward

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/kubetrail/kubetrail/internal/alert"
	"github.com/kubetrail/kubetrail/internal/store/local"
)

// splunk sends to Splunk's HTTP Event Collector (HEC) event endpoint:
// one JSON object per event, concatenated, each with the event as
// "event", its stageTimestamp as "time" and the sourcetype
// kube:apiserver:audit. With ack=true it waits for the indexer
// acknowledgement of each batch (HEC's ackId, polled on
// /services/collector/ack), so a batch counts as delivered only once it
// is indexed, not merely received.
type splunk struct {
	*httpDest
	header     http.Header
	source     string
	sourcetype string
	index      string
	host       string
	ack        bool
	ackTimeout time.Duration
	buf        []byte
	// indexed is what HEC took of a batch it refused for an invalid
	// event: the store positions from the batch's first event up to the
	// invalid one (excluded). HEC indexes the events before the one it
	// names in invalid-event-number; the Forwarder sends the batch again
	// and those must not be indexed twice at every retry.
	indexed struct{ from, to local.Pos }
}

func newSplunk(t *alert.Target, env Env) (Sender, error) {
	h, err := newHTTPDest(t, env)
	if err != nil {
		return nil, err
	}
	s := &splunk{httpDest: h, header: http.Header{}, source: "kubetrail", sourcetype: "kube:apiserver:audit",
		host: env.Hostname, ackTimeout: 2 * time.Minute}
	token := h.token
	if token == "" && h.hasUser {
		// splunk+https://TOKEN@host:8088 or https://x:TOKEN@host:8088.
		token = h.user
		if h.password != "" {
			token = h.password
		}
	}
	if token == "" {
		return nil, errors.New("no HEC token: give it as splunk+https://TOKEN@HOST:8088 or #token_file=PATH")
	}
	s.header.Set("Authorization", "Splunk "+token)
	for name, p := range map[string]*string{"source": &s.source, "sourcetype": &s.sourcetype, "index": &s.index, "host": &s.host} {
		if v := t.Param(name); v != "" {
			*p = v
		}
	}
	switch v := t.Param("ack"); v {
	case "", "false":
	case "true":
		s.ack = true
		s.header.Set("X-Splunk-Request-Channel", newChannel())
	default:
		return nil, fmt.Errorf("ack=%q: want true or false", v)
	}
	if v := t.Param("ack_timeout"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("ack_timeout=%q: want a duration such as 2m", v)
		}
		s.ackTimeout = d
	}
	return s, nil
}

// newChannel returns a random UUID (version 4): HEC's channel, which
// scopes acknowledgement IDs.
func newChannel() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// hecEvent is one HEC event's metadata; the event itself is appended raw.
type hecEvent struct {
	Time       json.Number       `json:"time"`
	Host       string            `json:"host,omitempty"`
	Source     string            `json:"source"`
	Sourcetype string            `json:"sourcetype"`
	Index      string            `json:"index,omitempty"`
	Fields     map[string]string `json:"fields,omitempty"`
}

func (s *splunk) Send(ctx context.Context, evs []Event) error {
	for len(evs) > 0 && !evs[0].Pos.Less(s.indexed.from) && evs[0].Pos.Less(s.indexed.to) {
		evs = evs[1:] // indexed when HEC refused this batch the last time
	}
	if len(evs) == 0 {
		return nil
	}
	b := s.buf[:0]
	for i := range evs {
		e := &evs[i]
		meta := hecEvent{Time: hecTime(e.Time()), Host: s.host, Source: s.source, Sourcetype: s.sourcetype, Index: s.index}
		if e.Cluster != "" {
			meta.Fields = map[string]string{"cluster": e.Cluster}
		}
		m, err := json.Marshal(&meta)
		if err != nil {
			return err
		}
		// {"time":...,"sourcetype":...,"event":RAW}
		b = append(b, m[:len(m)-1]...)
		b = append(b, `,"event":`...)
		b = append(b, e.Raw...)
		b = append(b, "}\n"...)
	}
	s.buf = b
	resp, err := s.post(ctx, s.endpoint("/services/collector/event"), "application/json", s.header, b)
	if err != nil {
		return s.invalidEvent(evs, err)
	}
	var ans struct {
		Code  int    `json:"code"`
		Text  string `json:"text"`
		AckID *int64 `json:"ackId"`
	}
	if err := json.Unmarshal(resp, &ans); err != nil {
		return fmt.Errorf("POST %s: the answer is not HEC's JSON: %w", s.name, err)
	}
	if ans.Code != 0 {
		return fmt.Errorf("POST %s: HEC code %d: %s", s.name, ans.Code, ans.Text)
	}
	if !s.ack {
		return nil
	}
	if ans.AckID == nil {
		return fmt.Errorf("POST %s: ack=true but HEC answered no ackId: turn indexer acknowledgement on for the token", s.name)
	}
	return s.waitAck(ctx, *ans.AckID)
}

// invalidEvent names the event of a refused batch that HEC's answer
// calls invalid ({"text":"Invalid data format","code":6,
// "invalid-event-number":N}, N counted from 0) by its audit ID, and
// remembers that the events before it were indexed. Any other error is
// returned as it is.
func (s *splunk) invalidEvent(evs []Event, err error) error {
	var se *statusError
	if !errors.As(err, &se) || se.code != http.StatusBadRequest {
		return err
	}
	var ans struct {
		Invalid *int `json:"invalid-event-number"`
	}
	if json.Unmarshal([]byte(se.msg), &ans) != nil || ans.Invalid == nil || *ans.Invalid < 0 || *ans.Invalid >= len(evs) {
		return err
	}
	n := *ans.Invalid
	if n > 0 {
		s.indexed.from, s.indexed.to = evs[0].Pos, evs[n].Pos
	}
	return fmt.Errorf("%w (event %d of the batch, auditID %s, store position %s; the %d before it were indexed and are not sent again)",
		err, n, evs[n].Ev.AuditID, evs[n].Pos, n)
}

// hecTime is epoch seconds with microseconds, as HEC's time field takes.
func hecTime(t time.Time) json.Number {
	us := t.UnixMicro()
	sec, frac := us/1e6, us%1e6
	if frac < 0 {
		sec, frac = sec-1, frac+1e6
	}
	return json.Number(fmt.Sprintf("%d.%06d", sec, frac))
}

// waitAck polls the acknowledgement endpoint until the batch is indexed.
// An ack that does not come within ack_timeout fails the Send: the batch
// is sent again (HEC may then index it twice; at least once).
func (s *splunk) waitAck(ctx context.Context, id int64) error {
	deadline := time.Now().Add(s.ackTimeout)
	body := []byte(`{"acks":[` + strconv.FormatInt(id, 10) + `]}`)
	wait := 100 * time.Millisecond
	for {
		resp, err := s.post(ctx, s.endpoint("/services/collector/ack"), "application/json", s.header, body)
		if err == nil {
			var ans struct {
				Acks map[string]bool `json:"acks"`
			}
			if jerr := json.Unmarshal(resp, &ans); jerr != nil {
				err = fmt.Errorf("POST %s ack: the answer is not HEC's JSON: %w", s.name, jerr)
			} else if ans.Acks[strconv.FormatInt(id, 10)] {
				return nil
			}
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = errors.New("not indexed")
			}
			return fmt.Errorf("HEC %s: ackId %d not acknowledged within %s (sending the batch again): %w", s.name, id, s.ackTimeout, err)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		wait = min(2*wait, 5*time.Second)
	}
}
