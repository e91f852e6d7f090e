package alert

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kubetrail/kubetrail/internal/rules"
	"github.com/kubetrail/kubetrail/internal/vfs"
	"github.com/kubetrail/kubetrail/internal/wal"
)

var t0 = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

func mkAlert(rule, user string, sev rules.Severity, i int) rules.Alert {
	return rules.Alert{Rule: rule, Severity: sev, Source: rules.SourceKubetrail, AuditIDs: []string{fmt.Sprintf("id-%d", i)},
		User: user, Message: fmt.Sprintf("%s did thing %d", user, i), Time: t0.Add(time.Duration(i) * time.Second),
		Cluster: "prod", Namespace: "default"}
}

func openT(t *testing.T, dir string, opts StoreOptions) *Store {
	t.Helper()
	s, _, err := OpenStore(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func appendN(t *testing.T, s *Store, from, n int) []Alert {
	t.Helper()
	var in []rules.Alert
	for i := from; i < from+n; i++ {
		in = append(in, mkAlert(fmt.Sprintf("rule-%d", i%3), fmt.Sprintf("user-%d", i%2), rules.Severity(i%5), i))
	}
	out, err := s.Append(in)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func seqs(as []Alert) []uint64 {
	var out []uint64
	for _, a := range as {
		out = append(out, a.Seq)
	}
	return out
}

func TestStoreNumbersReadsAndReopens(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, StoreOptions{SegmentBytes: 2000, Recent: 4})
	var got []Alert
	for i := 0; i < 30; i += 3 {
		got = append(got, appendN(t, s, i, 3)...)
	}
	if got[0].Seq != 1 || got[29].Seq != 30 || got[0].Stored.IsZero() {
		t.Fatalf("seqs %v..%v stored %v, want 1..30 and a stored time", got[0].Seq, got[29].Seq, got[0].Stored)
	}
	check := func(s *Store, after uint64, max int, want string) {
		t.Helper()
		r, err := s.Read(after, max)
		if err != nil {
			t.Fatal(err)
		}
		if g := fmt.Sprint(seqs(r)); g != want {
			t.Errorf("Read(%d, %d) = %s, want %s", after, max, g, want)
		}
	}
	check(s, 0, 3, "[1 2 3]")      // from disk (Recent is 4)
	check(s, 27, 10, "[28 29 30]") // from memory
	check(s, 30, 10, "[]")
	if n := len(s.segs); n < 3 {
		t.Fatalf("%d segments, want rotation to have made several", n)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, rec, err := OpenStore(dir, StoreOptions{SegmentBytes: 2000})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if rec.Alerts != 30 || len(rec.Damage) != 0 {
		t.Errorf("recovery %+v, want 30 alerts and no damage", rec)
	}
	check(s2, 10, 2, "[11 12]")
	more := appendN(t, s2, 30, 1)
	if more[0].Seq != 31 {
		t.Errorf("after reopen the next seq is %d, want 31", more[0].Seq)
	}
	r, _ := s2.Read(12, 1)
	if r[0].Rule != "rule-0" || r[0].User != "user-0" || r[0].Severity != rules.Medium || r[0].Namespace != "default" ||
		r[0].AuditIDs[0] != "id-12" || !r[0].Time.Equal(t0.Add(12*time.Second)) {
		t.Errorf("alert 13 read back as %+v", r[0])
	}
}

func TestStoreList(t *testing.T) {
	s := openT(t, t.TempDir(), StoreOptions{SegmentBytes: 1500})
	appendN(t, s, 0, 40)
	f := func(q Query, want string) {
		t.Helper()
		got, err := s.List(q)
		if err != nil {
			t.Fatal(err)
		}
		if g := fmt.Sprint(seqs(got)); g != want {
			t.Errorf("List(%+v) = %s, want %s", q, g, want)
		}
		got, _, err = ListDir(nil, s.dir, q)
		if err != nil {
			t.Fatal(err)
		}
		if g := fmt.Sprint(seqs(got)); g != want {
			t.Errorf("ListDir(%+v) = %s, want %s", q, g, want)
		}
	}
	f(Query{Limit: 3}, "[38 39 40]")
	f(Query{Rules: []string{"rule-1"}, Limit: 2}, "[35 38]") // alert i is seq i+1
	f(Query{MinSeverity: rules.Critical, Limit: 100}, "[5 10 15 20 25 30 35 40]")
	f(Query{Since: t0.Add(10 * time.Second), Until: t0.Add(13 * time.Second)}, "[11 12 13]")
	f(Query{After: 37}, "[38 39 40]")
	f(Query{Sources: []string{"sigma"}}, "[]")
}

// flip changes one byte of a file on disk.
func flip(t *testing.T, path string, off int64) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[off] ^= 0x40
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestStoreDamageCostsOnlyItsRecord: a flipped byte in the middle of a
// record is reported at Open and costs that alert alone; a torn tail is
// cut. Planted bug: treating damage as the end of the segment (stop at the
// first bad record) loses alerts 4..10 and fails here.
func TestStoreDamageCostsOnlyItsRecord(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, StoreOptions{})
	appendN(t, s, 0, 10)
	seg := wal.SegmentPath(dir, s.segs[0].num)
	s.Close()
	// Find the third record's offset and damage its payload.
	var offs []int64
	if _, err := wal.Scan(seg, func(off int64, _ []byte) error { offs = append(offs, off); return nil }); err != nil {
		t.Fatal(err)
	}
	flip(t, seg, offs[2]+20)
	// And leave a torn tail: half a record.
	f, _ := os.OpenFile(seg, os.O_APPEND|os.O_WRONLY, 0)
	f.Write(wal.AppendRecord(nil, []byte(`{"rule":"x"}`))[:9])
	f.Close()

	s2, rec, err := OpenStore(dir, StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if len(rec.Damage) != 1 || rec.Damage[0].Offset != offs[2] || rec.TornBytes != 9 {
		t.Fatalf("recovery %+v, want one damaged record at %d and a 9-byte torn tail", rec, offs[2])
	}
	got, err := s2.Read(0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if g := fmt.Sprint(seqs(got)); g != "[1 2 4 5 6 7 8 9 10]" {
		t.Errorf("alerts after damage %s, want all but 3", g)
	}
}

// TestStoreNeverReusesANumberHiddenByDamage: when the newest alerts are
// damaged, their numbers might have been delivered already, so new alerts
// must get higher ones. Planted bug: next = last valid + 1 gives 9 here.
func TestStoreNeverReusesANumberHiddenByDamage(t *testing.T) {
	dir := t.TempDir()
	s := openT(t, dir, StoreOptions{})
	appendN(t, s, 0, 10)
	seg := wal.SegmentPath(dir, s.segs[0].num)
	s.Close()
	var offs []int64
	wal.Scan(seg, func(off int64, _ []byte) error { offs = append(offs, off); return nil })
	flip(t, seg, offs[8]+20) // alert 9: damaged, with a valid alert 10 after it
	flip(t, seg, offs[9]+20) // alert 10: the newest, damaged too
	s2 := openT(t, dir, StoreOptions{})
	out := appendN(t, s2, 10, 1)
	if out[0].Seq <= 10 {
		t.Errorf("new alert got seq %d: a damaged alert's number may be given twice", out[0].Seq)
	}
}

func TestStoreRetention(t *testing.T) {
	now := t0
	clock := func() time.Time { return now }
	dir := t.TempDir()
	s := openT(t, dir, StoreOptions{SegmentBytes: 1000, MaxAge: time.Hour, Now: clock})
	for i := 0; i < 10; i += 2 {
		appendN(t, s, i, 2)
	}
	now = now.Add(2 * time.Hour)
	for i := 10; i < 20; i += 2 {
		appendN(t, s, i, 2)
	}
	removed, err := s.Retain()
	if err != nil {
		t.Fatal(err)
	}
	got, _ := s.Read(0, 100)
	if removed == 0 || got[0].Seq > 11 || got[0].Seq == 1 || s.First() != got[0].Seq {
		t.Errorf("removed %d, oldest left %d, First %d: want the old segments gone and none of the new ones", removed, got[0].Seq, s.First())
	}
	// Everything expires: the newest segment holding alerts stays, so
	// numbers keep increasing after a restart.
	now = now.Add(10 * time.Hour)
	if _, err := s.Retain(); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s2 := openT(t, dir, StoreOptions{SegmentBytes: 1000, MaxAge: time.Hour, Now: clock})
	if out := appendN(t, s2, 20, 1); out[0].Seq != 21 {
		t.Errorf("after everything expired and a restart, next seq %d, want 21", out[0].Seq)
	}
	// By size: at most MaxBytes (plus the segments always kept).
	s3 := openT(t, t.TempDir(), StoreOptions{SegmentBytes: 1000, MaxBytes: 3000, Now: clock})
	for i := 0; i < 60; i += 2 {
		appendN(t, s3, i, 2)
	}
	if _, err := s3.Retain(); err != nil {
		t.Fatal(err)
	}
	var total int64
	ents, _ := os.ReadDir(s3.dir)
	for _, e := range ents {
		if filepath.Ext(e.Name()) != ".wal" {
			continue // the numbers file: 8 KiB, never removed
		}
		fi, _ := e.Info()
		total += fi.Size()
	}
	if total > 3000+2*1300 || s3.First() < 20 {
		t.Errorf("after size retention the folder holds %d bytes, oldest %d", total, s3.First())
	}
}

// storeCrashRun appends alerts in small batches; now and then a write
// fills the disk part way or a sync fails (the store then refuses Appends
// until a restart), and the process restarts: killed (what it wrote stays
// in the file system, synced or not, as in the page cache) or by a power
// loss (keeping a random part of what was not synced). A reader beside
// the store (ListDir, as `alerts --follow` on the folder) looks after
// every step and at every failure, seeing unsynced alerts too. After each
// restart it reopens the store and checks that every alert whose Append
// returned is there with its number and content, that no damage is
// reported (a crash only leaves a torn tail), that new alerts get numbers
// above every acknowledged one, and that no number the reader saw ever
// stands for another alert.
func storeCrashRun(ff *vfs.Faults, mem *vfs.MemFS, seed uint64) string {
	rng := rand.New(rand.NewPCG(seed, seed^0x51))
	fill := &fillingFS{FS: mem}
	ff.SetFS(fill) // ff sees the store's calls, fill fails some below it
	opts := StoreOptions{FS: ff, SegmentBytes: 900}
	const dir = "/data/alerts"
	seen := map[uint64]string{} // what the reader found under each number
	var bad string
	saw := func(a *Alert, who string) {
		id := a.Rule + a.AuditIDs[0]
		if was, ok := seen[a.Seq]; ok && was != id && bad == "" {
			bad = fmt.Sprintf("number %d, which a reader saw as alert %s, %s alert %s", a.Seq, was, who, id)
		}
		seen[a.Seq] = id
	}
	look := func() {
		list, _, err := ListDir(fill, dir, Query{Oldest: true, Limit: 1 << 20})
		if err != nil && bad == "" {
			bad = "reader: " + err.Error()
		}
		for i := range list {
			saw(&list[i], "now reads as")
		}
	}
	fill.during = look
	s, _, err := OpenStore(dir, opts)
	if err != nil {
		return "first open: " + err.Error()
	}
	acked := map[uint64]string{}
	var maxAcked uint64
	i := 0
	batch := func() []rules.Alert {
		var in []rules.Alert
		for range 1 + rng.IntN(3) {
			in = append(in, mkAlert("r"+strings.Repeat("x", rng.IntN(30)), "u", rules.High, i))
			i++
		}
		return in
	}
	restart := func(step int, kill bool) string {
		if !kill {
			// Each file keeps a random part of what it was given since
			// its last sync, or none of it.
			mem = mem.CrashKeeping(func(_, unsynced int) int { return rng.IntN(2) * rng.IntN(unsynced+1) })
			fill.FS = mem
		}
		var rec Recovery
		s, rec, err = OpenStore(dir, opts)
		if err != nil {
			return fmt.Sprintf("step %d: open after a restart: %v", step, err)
		}
		if len(rec.Damage) > 0 {
			return fmt.Sprintf("step %d: damage after a restart: %v", step, rec.Damage)
		}
		got, err := s.Read(0, 1<<20)
		if err != nil {
			return err.Error()
		}
		have := map[uint64]string{}
		for _, a := range got {
			have[a.Seq] = a.Rule + a.AuditIDs[0]
		}
		for seq, want := range acked {
			if have[seq] != want {
				return fmt.Sprintf("step %d: acknowledged alert %d (%s) lost or changed: %q", step, seq, want, have[seq])
			}
		}
		return ""
	}
	for step := 0; step < 60 && bad == ""; step++ {
		switch r := rng.IntN(20); {
		case r < 13:
			out, err := s.Append(batch())
			if err != nil {
				return fmt.Sprintf("step %d: append: %v", step, err)
			}
			for k := range out {
				if out[k].Seq <= maxAcked {
					return fmt.Sprintf("step %d: seq %d given again (acknowledged up to %d)", step, out[k].Seq, maxAcked)
				}
				saw(&out[k], "is given to")
				acked[out[k].Seq], maxAcked = out[k].Rule+out[k].AuditIDs[0], out[k].Seq
			}
		case r < 17:
			// The disk fills in the middle of the write, or the sync fails:
			// the reader looks then; the store refuses Appends until the
			// restart, which comes before it writes again.
			if r < 15 {
				fill.room = rng.IntN(700)
				fill.arm(&fill.armed)
			} else {
				fill.arm(&fill.syncArmed)
			}
			out, err := s.Append(batch())
			if err == nil {
				if !fill.syncArmed {
					return fmt.Sprintf("step %d: an Append whose write or sync failed succeeded", step)
				}
				// A planted bug removed the sync: the Append went through.
				fill.syncArmed = false
				for k := range out {
					saw(&out[k], "is given to")
					acked[out[k].Seq], maxAcked = out[k].Rule+out[k].AuditIDs[0], out[k].Seq
				}
				continue
			}
			fill.armed, fill.syncArmed = false, false
			if err := restart(step, rng.IntN(2) == 0); err != "" {
				return err
			}
		default:
			if err := restart(step, r == 17); err != "" {
				return err
			}
		}
		look()
	}
	return bad
}

// TestStoreCrashKeepsEveryAcknowledgedAlert runs storeCrashRun over many
// seeds, then drops each sync site in turn (vfs.Faults): every one must
// make some run fail, or the test would not notice it missing.
func TestStoreCrashKeepsEveryAcknowledgedAlert(t *testing.T) {
	const seeds = 40
	runAll := func(ff *vfs.Faults) string {
		for seed := uint64(1); seed <= seeds; seed++ {
			mem := vfs.NewStrictMem()
			ff.SetFS(mem)
			if err := storeCrashRun(ff, mem, seed); err != "" {
				return fmt.Sprintf("seed %d: %s", seed, err)
			}
		}
		return ""
	}
	ff := vfs.NewFaults(vfs.NewStrictMem())
	if err := runAll(ff); err != "" {
		t.Fatal(err)
	}
	sites := ff.Sites()
	want := []string{"rename alert.(*numbers).open", "sync alert.(*Store).syncTail", "sync alert.(*numbers).open", "sync alert.(*numbers).set",
		"sync wal.(*Log).Sync", "sync wal.cut", "syncdir alert.(*numbers).open", "syncdir wal.(*Log).openSegment", "syncdir wal.Open"}
	if strings.Join(sites, ",") != strings.Join(want, ",") {
		t.Errorf("sync sites %q, want %q: a new one needs a planted-bug run here", sites, want)
	}
	for _, site := range sites {
		if site == "sync wal.cut" {
			continue // syncTail syncs the segment cut too; the wal's crash test plants it
		}
		ff.Drop(site)
		if err := runAll(ff); err == "" {
			t.Errorf("with %q removed, no crash lost anything: the test does not check it", site)
		} else {
			t.Logf("with %q removed: %s", site, strings.SplitN(err, "\n", 2)[0])
		}
	}
	ff.Drop("")
}

func TestStoreCreatesItsFolder(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "alerts")
	s := openT(t, dir, StoreOptions{})
	appendN(t, s, 0, 1)
	if _, err := os.Stat(dir); err != nil {
		t.Fatal(err)
	}
}
