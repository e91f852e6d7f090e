package investigate

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/kubetrail/kubetrail/internal/audit"
	"github.com/kubetrail/kubetrail/internal/investigate/investigatetest"
	"github.com/kubetrail/kubetrail/internal/pipeline"
	"github.com/kubetrail/kubetrail/internal/store/local"
)

// The fixture is investigatetest's incident.
var (
	t0       = investigatetest.T0
	req      = investigatetest.Req
	incident = investigatetest.Incident
)

type evb = investigatetest.Event

// openFixture stores events in a fresh store and opens a reader on it.
// The second half of the events arrives first and is sealed into segments;
// the first half stays in the WAL, so Select serves both, out of time order.
func openFixture(t *testing.T, evs []*evb) *local.Reader {
	t.Helper()
	dir := t.TempDir()
	recs, err := investigatetest.Records(evs)
	if err != nil {
		t.Fatal(err)
	}
	half := len(recs) / 2
	for i, part := range [][]audit.Record{recs[half:], recs[:half]} {
		db, err := local.Open(dir, local.Options{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := db.Append(context.Background(), &pipeline.Batch{Cluster: "prod", Received: time.Now(), Records: part}); err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			if err := db.Close(); err != nil { // seals the WAL into a segment
				t.Fatal(err)
			}
			continue
		}
		t.Cleanup(func() { db.Close() })
	}
	r, err := local.OpenReader(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	if r.Count() != len(recs) {
		t.Fatalf("the store holds %d events, want %d", r.Count(), len(recs))
	}
	return r
}

// summary is a request in one line, for comparisons.
func summary(q *Request) string {
	s := fmt.Sprintf("%g %s %s %s", q.Time.Sub(t0).Seconds(), userOrNone(q.User), q.Verb, q.object())
	if q.Namespace != "" {
		s += " -n " + q.Namespace
	}
	if q.As != "" {
		s += " as " + q.As
	}
	return s + " " + q.Stage + " " + q.result()
}

// render prints a report in a format.
func render(t *testing.T, rep Report, format string) string {
	t.Helper()
	var b strings.Builder
	if err := Write(&b, rep, format); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// openRecorded stores the incident a real kube-apiserver recorded
// (investigatetest.RecordedLog) and opens a reader on it.
func openRecorded(t *testing.T) *local.Reader {
	t.Helper()
	data := investigatetest.RecordedLines(t)
	var recs []audit.Record
	audit.NewDecoder(audit.Limits{}).DecodeLines("incident.log", data,
		func(r audit.Record) { recs = append(recs, r) },
		func(p audit.Problem) { t.Fatalf("recorded log: %s", p.String()) })
	dir := t.TempDir()
	db, err := local.Open(dir, local.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Append(context.Background(), &pipeline.Batch{Cluster: "rec", Received: time.Now(), Records: recs}); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := local.OpenReader(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}
