package forward

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/kubetrail/kubetrail/internal/audit"
	"github.com/kubetrail/kubetrail/internal/store/local"
)

// TestEventWithoutStageTimestamp: an event without stageTimestamp goes out
// with its requestReceivedTimestamp as its time, as the store, query and
// the detectors take it, in every destination's time field; with the zero
// time a Kafka record is older than any retention.ms (and deleted at
// once), Splunk files it in 1 BC and OTLP sends an overflowed number.
// Mutation it catches: Event.Time returning StageTimestamp alone.
func TestEventWithoutStageTimestamp(t *testing.T) {
	received := t0.Add(90*time.Second + 123456*time.Microsecond)
	raw := fmt.Sprintf(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"no-stage-time","stage":"RequestReceived","requestURI":"/api/v1/pods","verb":"list","user":{"username":"alice"},"requestReceivedTimestamp":%q}`,
		received.Format(time.RFC3339Nano))
	var recs []audit.Record
	audit.NewDecoder(audit.Limits{}).DecodeBody("test", []byte(raw), func(r audit.Record) { recs = append(recs, r) },
		func(p audit.Problem) { t.Fatal(p.String()) })
	if len(recs) != 1 {
		t.Fatalf("%d records", len(recs))
	}
	evs := []Event{{Raw: recs[0].Raw, Ev: &recs[0].Event, Cluster: "prod"}}
	if got := evs[0].Time(); !got.Equal(received) {
		t.Errorf("Event.Time %s, want the received time %s", got, received)
	}
	if got := Message(&evs[0], 10, "h", "kubetrail").Time; !got.Equal(received) {
		t.Errorf("syslog TIMESTAMP %s, want %s", got, received)
	}

	answers := map[string]string{
		"splunk":        `{"text":"Success","code":0}`,
		"elasticsearch": `{"errors":false,"items":[{"create":{"_id":"x","status":201}}]}`,
		"otlp":          `{}`,
	}
	wants := map[string]string{
		"splunk":        fmt.Sprintf(`"time":%d.123456,`, received.Unix()),
		"elasticsearch": `"@timestamp":"` + received.Format("2006-01-02T15:04:05.000000Z") + `"`,
		"otlp":          fmt.Sprintf(`"timeUnixNano":"%d"`, received.UnixNano()),
	}
	for scheme, answer := range answers {
		var body string
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			body = string(b)
			io.WriteString(w, answer)
		}))
		u := scheme + "+" + strings.Replace(srv.URL, "://", "://token@", 1)
		d, err := NewRegistry(Env{}).Open(u, "", time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if err := d.Sender.Send(context.Background(), evs); err != nil {
			t.Errorf("%s: %v", scheme, err)
		}
		d.Sender.Close()
		srv.Close()
		if !strings.Contains(body, wants[scheme]) {
			t.Errorf("%s: the body does not hold %s:\n%s", scheme, wants[scheme], body)
		}
	}
}

// TestFailedItemNamesItsEvent: an event a destination refuses alone (an
// Elasticsearch item with a mapping error, a Kafka record too large)
// blocks the destination until someone acts, so the error, which the
// forwarder logs on every retry, names the event by its audit ID.
// Mutation it catches: the error naming only the status.
func TestFailedItemNamesItsEvent(t *testing.T) {
	evs := []Event{}
	for i := 1; i <= 3; i++ {
		r := ev(i, "get")
		evs = append(evs, Event{Raw: r.Raw, Ev: &r.Event, Cluster: "prod"})
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, `{"errors":true,"items":[{"create":{"status":201}},{"create":{"status":400,"error":{"type":"mapper_parsing_exception","reason":"failed to parse"}}},{"create":{"status":201}}]}`)
	}))
	defer srv.Close()
	d, err := NewRegistry(Env{}).Open("elasticsearch+"+srv.URL, "", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	defer d.Sender.Close()
	err = d.Sender.Send(context.Background(), evs)
	if err == nil || !strings.Contains(err.Error(), "auditID id-2") || !strings.Contains(err.Error(), "mapper_parsing_exception") {
		t.Errorf("Send: %v; want the failed item's auditID id-2 and its reason", err)
	}
}

// TestSplunkInvalidEventNamed: HEC refuses a batch with 400 and
// invalid-event-number 1 (counted from 0), having indexed event 0. The
// error names event 1's audit ID, and the batch sent again leaves out
// event 0, so it is not indexed once more at every retry.
// Mutation it catches: returning the 400 as it is (event 0 sent again,
// no audit ID in the error).
func TestSplunkInvalidEventNamed(t *testing.T) {
	var evs []Event
	for i := 1; i <= 3; i++ {
		r := ev(i, "get")
		evs = append(evs, Event{Raw: r.Raw, Ev: &r.Event, Cluster: "prod", Pos: local.Pos{WAL: 7, Ord: i}})
	}
	var got [][]string // audit IDs of each request
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var ids []string
		dec := json.NewDecoder(r.Body)
		for dec.More() {
			var e struct{ Event struct{ AuditID string } }
			if err := dec.Decode(&e); err != nil {
				t.Error(err)
				return
			}
			ids = append(ids, e.Event.AuditID)
		}
		got = append(got, ids)
		if len(got) == 1 {
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, `{"text":"Invalid data format","code":6,"invalid-event-number":1}`)
			return
		}
		io.WriteString(w, `{"text":"Success","code":0}`)
	}))
	defer srv.Close()
	d, err := NewRegistry(Env{}).Open(strings.Replace(srv.URL, "http://", "splunk+http://tok@", 1), "", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	defer d.Sender.Close()
	err = d.Sender.Send(context.Background(), evs)
	if err == nil || !strings.Contains(err.Error(), "auditID id-2") || !strings.Contains(err.Error(), "Invalid data format") {
		t.Errorf("Send: %v; want the invalid event's auditID id-2 and HEC's text", err)
	}
	if err := d.Sender.Send(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
	if want := [][]string{{"id-1", "id-2", "id-3"}, {"id-2", "id-3"}}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("requests carried %v; want %v (id-1 indexed by the first)", got, want)
	}
}

// TestElasticAnnotationKeysCollide: annotation keys that are one once '.'
// becomes '_' (a.b beside a_b, and x.y_z beside x_y.z) keep every value:
// a key with no '.' keeps its name, the rewritten ones take _2, _3.
// Mutation it catches: writing every rewritten key to its underscored
// name (one value overwrites the other, which one by map order).
func TestElasticAnnotationKeysCollide(t *testing.T) {
	ann := map[string]string{"a.b": "dotted", "a_b": "plain", "x.y_z": "1", "x_y.z": "2", "k8s.io/x": "v"}
	raw, _ := json.Marshal(map[string]any{"auditID": "id-1", "annotations": ann})
	want := map[string]string{"a_b": "plain", "a_b_2": "dotted", "x_y_z": "1", "x_y_z_2": "2", "k8s_io/x": "v"}
	for range 20 { // map order varies: a lost value shows within a few runs
		out, err := underscoreAnnotations(raw, ann)
		if err != nil {
			t.Fatal(err)
		}
		var got struct{ Annotations map[string]string }
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(got.Annotations) != fmt.Sprint(want) {
			t.Fatalf("annotations %v; want %v", got.Annotations, want)
		}
	}
}
