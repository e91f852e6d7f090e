package alert

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kubetrail/kubetrail/internal/rules"
	"github.com/kubetrail/kubetrail/internal/wal"
)

// TestListOldestPagesWithoutGaps: paging with After and Oldest from 0,
// each page starting after the last seq of the previous one, gives every
// matching alert once, in order, through List and ListDir alike; and
// ListDir with After gives what List gives for every After, across
// segment boundaries (it skips segments it need not read).
// Planted bugs: Oldest keeping the newest matches (pages skip the middle);
// segmentsAfter returning segs[i+1:] (alerts after After in the segment
// that holds After are lost).
func TestListOldestPagesWithoutGaps(t *testing.T) {
	s := openT(t, t.TempDir(), StoreOptions{SegmentBytes: 1500})
	for i := 0; i < 40; i += 4 {
		appendN(t, s, i, 4)
	}
	for _, rule := range []string{"", "rule-2"} {
		q := Query{Oldest: true, Limit: 4}
		var want []uint64
		for i := 1; i <= 40; i++ {
			if rule == "" || (i-1)%3 == 2 {
				want = append(want, uint64(i))
			}
		}
		if rule != "" {
			q.Rules = []string{rule}
		}
		for name, list := range map[string]func(Query) ([]Alert, error){
			"List": s.List,
			"ListDir": func(q Query) ([]Alert, error) {
				out, _, err := ListDir(nil, s.dir, q)
				return out, err
			},
		} {
			var got []uint64
			q := q
			for pages := 0; pages < 20; pages++ {
				page, err := list(q)
				if err != nil {
					t.Fatal(err)
				}
				if len(page) > q.Limit {
					t.Fatalf("%s: a page of %d, limit %d", name, len(page), q.Limit)
				}
				got = append(got, seqs(page)...)
				if len(page) < q.Limit {
					break
				}
				q.After = page[len(page)-1].Seq
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("%s paging rule %q: %v, want %v", name, rule, got, want)
			}
		}
	}
	for after := uint64(0); after <= 41; after++ {
		q := Query{After: after, Limit: 100}
		a, _ := s.List(q)
		b, _, err := ListDir(nil, s.dir, q)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(seqs(a)) != fmt.Sprint(seqs(b)) {
			t.Errorf("After %d: List %v, ListDir %v", after, seqs(a), seqs(b))
		}
	}
	if n := len(s.segs); n < 4 {
		t.Fatalf("%d segments: want several, for the skip to be tested", n)
	}
}

// TestListDirReportsWhatOpenReports: a record whose checksum is good but
// which holds no alert, and a damaged record, are damage for ListDir as
// they are for OpenStore; ListDir with an After past the damaged segment
// does not read it (nor report it). Planted bug: ListDir skipping
// undecodable records silently (as it did) fails the first check.
func TestListDirReportsWhatOpenReports(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, StoreOptions{SegmentBytes: 1500})
	for i := 0; i < 20; i += 4 {
		appendN(t, s, i, 4)
	}
	first := wal.SegmentPath(dir, s.segs[0].num)
	s.Close()
	// A valid record that is not an alert, at the end of the first segment.
	f, err := os.OpenFile(first, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(wal.AppendRecord(nil, []byte(`{"rule":"no seq","severity":"high","time":"2026-05-01T12:00:00Z"}`)))
	f.Close()
	var offs []int64
	wal.Scan(first, func(off int64, _ []byte) error { offs = append(offs, off); return nil })
	flip(t, first, offs[1]+20)

	s2, rec, err := OpenStore(dir, StoreOptions{SegmentBytes: 1500})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	_, damage, err := ListDir(nil, dir, Query{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.Damage) != 2 || fmt.Sprint(damage) != fmt.Sprint(rec.Damage) {
		t.Errorf("ListDir damage\n%v\nOpenStore damage\n%v\nwant the same two", damage, rec.Damage)
	}
	if !strings.Contains(fmt.Sprint(damage), "record holds no alert") {
		t.Errorf("damage %v does not name the record that holds no alert", damage)
	}
	got, damage, err := ListDir(nil, dir, Query{After: 18})
	if err != nil || len(damage) != 0 || fmt.Sprint(seqs(got)) != "[19 20]" {
		t.Errorf("ListDir after 18: %v %v %v; want [19 20], the damaged first segment unread", seqs(got), damage, err)
	}
}

// TestStoreCountsAndRetainedDamage: Counts counts what this Store
// appended by rule, severity and source; damage in a segment that
// retention removed is no longer reported.
// Planted bugs: counting by rule only (severities merged); Retain leaving
// the damage of removed segments (answers report it forever).
func TestStoreCountsAndRetainedDamage(t *testing.T) {
	now := t0
	dir := t.TempDir()
	clock := func() time.Time { return now }
	s := openT(t, dir, StoreOptions{SegmentBytes: 1000, Now: clock})
	appendN(t, s, 0, 6)
	old := wal.SegmentPath(dir, s.segs[0].num)
	s.Close()
	var offs []int64
	wal.Scan(old, func(off int64, _ []byte) error { offs = append(offs, off); return nil })
	flip(t, old, offs[0]+20)

	s = openT(t, dir, StoreOptions{SegmentBytes: 1000, MaxAge: time.Hour, Now: clock})
	if len(s.Damage()) != 1 {
		t.Fatalf("damage %v, want the flipped record", s.Damage())
	}
	if _, err := s.Append([]rules.Alert{mkAlert("a", "u", rules.High, 1), mkAlert("a", "u", rules.High, 2), mkAlert("a", "u", rules.Low, 3),
		{Rule: "b", Severity: rules.Critical, Source: rules.SourceFalco, Time: t0}}); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(s.Counts()); got != "[{a low kubetrail 1} {a high kubetrail 2} {b critical falco 1}]" {
		t.Errorf("Counts() = %s", got)
	}
	now = now.Add(48 * time.Hour)
	for i := 0; i < 10; i++ {
		appendN(t, s, 10+i, 1)
	}
	if _, err := s.Retain(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(old); !os.IsNotExist(err) {
		t.Fatalf("%s: %v; want retention to have removed it", filepath.Base(old), err)
	}
	if d := s.Damage(); len(d) != 0 {
		t.Errorf("damage %v of a removed segment is still reported", d)
	}
}
