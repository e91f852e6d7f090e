package local

import (
	"fmt"
	"testing"
	"time"

	"github.com/kubetrail/kubetrail/internal/audit"
	"github.com/kubetrail/kubetrail/internal/pipeline"
	"github.com/kubetrail/kubetrail/internal/query"
)

// TestSelectFiltersSkippedSegment: while the caller is given one
// segment's events, the next segment, of which no event may match, is
// passed over and the one after it read; the caller's segment keeps its
// columns all along: each hit's partial fields and time are its event's,
// also when the caller dawdles on every event.
// Mutation it catches (the bug it was written for): the segment passed
// over made current by use, so that reading the one after it released
// the caller's segment's columns, whose buffers that one's then reused:
// partial events held another segment's users, hits its times (and -race
// saw the buffers written under the caller).
func TestSelectFiltersSkippedSegment(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(dir, Options{NoSync: true, WALSegmentBytes: 1, SegmentFormat: 5, layout: segLayout{groupBytes: 32 << 10, blockBytes: 4 << 10, blockEvents: 8}})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// Segment b holds 40 events of users b-0 ... b-7 (in an order of its
	// own), a second apart from its own start; the odd ones' verbs match
	// no filter.
	base := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	dec := audit.NewDecoder(audit.Limits{})
	for b := range 8 {
		batch := &pipeline.Batch{Cluster: "c", Received: base}
		verb := "get"
		if b%2 == 1 {
			verb = "list"
		}
		for i := range 40 {
			ts := base.Add(time.Duration(b)*time.Hour + time.Duration(i)*time.Second).Format(time.RFC3339Nano)
			line := fmt.Sprintf(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Metadata","auditID":"%d-%d","stage":"ResponseComplete","requestURI":"/x","verb":%q,"user":{"username":"%d-%d"},"requestReceivedTimestamp":%q,"stageTimestamp":%q}`,
				b, i, verb, b, (i*(b+3))%8, ts, ts)
			dec.DecodeLine("t", 1, []byte(line), func(r audit.Record) { batch.Records = append(batch.Records, r) }, func(p audit.Problem) { t.Fatal(p) })
		}
		if _, err := db.Append(t.Context(), batch); err != nil {
			t.Fatal(err)
		}
	}
	waitSettled(t, dir)
	if n := segmentCount(t, dir); n < 6 {
		t.Fatalf("%d segments: the test wants one per batch", n)
	}
	r, err := OpenReader(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	all := scanAll(t, dir)
	byTime := map[int64]*scannedEvent{}
	for i := range all {
		byTime[all[i].ev.Time().UnixMicro()] = &all[i]
	}
	f, err := query.Compile("verb=get")
	if err != nil {
		t.Fatal(err)
	}
	for _, ahead := range []bool{false, true} {
		opts := LazyOptions{Filters: []*query.Filter{f}, Fields: []string{"user", "verb"}}
		if ahead {
			opts.ReadAhead = func([]int8) bool { return true }
		}
		given := 0
		err := r.SelectFilters(Selection{}, opts, func(h *Hit) error {
			given++
			time.Sleep(200 * time.Microsecond) // the next segments are read meanwhile
			s, ok := byTime[h.Time]
			switch {
			case !ok || s.ev.Verb != "get":
				return fmt.Errorf("hit %d: time %d, no event of verb get has it", given, h.Time)
			case h.Partial && (h.Event.User.Username != s.ev.User.Username || h.Event.Verb != "get"):
				return fmt.Errorf("hit %d at %d: partial event of %s %s, the event's are %s get", given, h.Time, h.Event.User.Username, h.Event.Verb, s.ev.User.Username)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("read ahead %v: %v", ahead, err)
		}
		if given != 160 {
			t.Fatalf("read ahead %v: %d hits, want 160", ahead, given)
		}
	}
}
