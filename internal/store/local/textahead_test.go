package local

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/kubetrail/kubetrail/internal/audit"
	"github.com/kubetrail/kubetrail/internal/pipeline"
	"github.com/kubetrail/kubetrail/internal/query"
	"github.com/kubetrail/kubetrail/internal/vfs"
)

// aheadStore writes three segments of the given version, of 150 events
// each, in small groups and blocks, so that a selection spans many groups
// of several segments. It returns the folder and the segments' paths.
func aheadStore(t *testing.T, version int) (string, []string) {
	t.Helper()
	dir := t.TempDir()
	segDir := filepath.Join(dir, segmentDir)
	if err := os.MkdirAll(segDir, 0o700); err != nil {
		t.Fatal(err)
	}
	enc, _ := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))
	defer enc.Close()
	rng := rand.New(rand.NewPCG(7, 8))
	var paths []string
	for s := range 3 {
		w, err := newSegmentWriter(vfs.OS, segDir, uint64(s+1), uint64(s+1), enc, segLayout{groupBytes: 12 << 10, blockBytes: 3 << 10, blockEvents: 3, version: version}, nil)
		if err != nil {
			t.Fatal(err)
		}
		for j := range 150 {
			i := s*150 + j
			rec := genEvent(rng, i)
			e := entry{cluster: []string{"a", "b"}[i%2], received: int64(1000 + i), time: rec.Event.StageTimestamp.UnixMicro(), raw: rec.Raw}
			if err := w.add(e, false); err != nil {
				t.Fatal(err)
			}
		}
		path, err := w.finish(true)
		if err != nil {
			t.Fatal(err)
		}
		paths = append(paths, path)
	}
	r, err := OpenReader(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for _, s := range r.segs {
		if s.r.meta.Version != version || len(s.r.meta.Groups) < 4 {
			t.Fatalf("segment of version %d with %d groups: want version %d and several groups", s.r.meta.Version, len(s.r.meta.Groups), version)
		}
	}
	return dir, paths
}

// selectedAhead is what a Select gave: each hit as a line, then its error.
func selectedAhead(t *testing.T, dir string, workers int, sel Selection, stopAt int) ([]string, error) {
	t.Helper()
	got, _, err := selectedLimited(t, dir, workers, aheadLimits{}, sel, stopAt)
	return got, err
}

// splitLimits read the small groups of aheadStore in parts of about two
// events, decoded two at a time.
var splitLimits = aheadLimits{jobBytes: 2 << 10, chunkEvents: 2}

// selectedLimited is selectedAhead with the read-ahead's limits set to
// lim, and gives what the read-ahead held at most.
func selectedLimited(t *testing.T, dir string, workers int, lim aheadLimits, sel Selection, stopAt int) ([]string, aheadPeak, error) {
	t.Helper()
	r, err := OpenReader(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	r.textWorkers = workers
	r.textLimits = lim
	var got []string
	err = r.Select(sel, func(h *Hit) error {
		if len(got) == stopAt {
			return errStopped
		}
		line := fmt.Sprintf("%s %d %d %d %s", h.Cluster, h.Time, h.Received, h.ord, h.Raw)
		if h.Event != nil {
			line += " event " + h.Event.AuditID + " " + string(h.Event.RequestObject)
		}
		got = append(got, line+" user="+h.Column(ColUser))
		return nil
	})
	return got, r.textPeak, err
}

var errStopped = errors.New("stopped")

// aheadSelections are what the read-ahead is asked: every event, a few
// per group, one with a residual, with the bytes, the event, or neither's
// bodies.
func aheadSelections(t *testing.T) []Selection {
	var sels []Selection
	for _, q := range []string{"", "resource=secrets", "verb=delete user=alice", `"password"`, "name=nothing-has-this"} {
		var f *query.Filter
		if q != "" {
			var err error
			if f, err = query.Compile(q); err != nil {
				t.Fatal(err)
			}
		}
		sels = append(sels, Selection{Filter: f, NeedRaw: true}, Selection{Filter: f, NeedEvent: true}, Selection{Filter: f, NeedEvent: true, NoBodies: true})
	}
	return sels
}

// TestSelectAheadOrder checks that reading ahead on several goroutines
// gives the events the serial read gives, in the stored order (Scan's),
// across groups and segments. (Delivering the jobs in the order the
// workers finish them, not the order queued, fails it.)
func TestSelectAheadOrder(t *testing.T) {
	for _, version := range []int{4, 5} {
		dir, _ := aheadStore(t, version)
		var stored []Stored
		if err := Scan(dir, ScanOptions{}, func(s Stored) error {
			s.Raw = slices.Clone(s.Raw)
			stored = append(stored, s)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		for _, sel := range aheadSelections(t) {
			serial, err := selectedAhead(t, dir, 1, sel, -1)
			if err != nil {
				t.Fatal(err)
			}
			// The serial read is the oracle: check it against Scan and the
			// filter first.
			var want []string
			for _, st := range stored {
				var ev audit.Event
				if err := audit.DecodeStored(st.Raw, &ev); err != nil {
					t.Fatal(err)
				}
				if sel.Filter == nil || sel.Filter.Match(&ev, st.Cluster) {
					want = append(want, string(st.Raw))
				}
			}
			if len(serial) != len(want) {
				t.Fatalf("v%d %v: the serial read gave %d events, Scan and the filter %d", version, sel.Filter, len(serial), len(want))
			}
			for k, line := range serial {
				if sel.NoBodies {
					break // v5 events come without their bodies
				}
				if !strings.Contains(line, want[k]) {
					t.Fatalf("v%d %v: event %d of the serial read is not Scan's", version, sel.Filter, k)
				}
			}
			for _, workers := range []int{2, 3, 8} {
				for _, lim := range []aheadLimits{{}, splitLimits} {
					got, _, err := selectedLimited(t, dir, workers, lim, sel, -1)
					if err != nil {
						t.Fatal(err)
					}
					if !slices.Equal(got, serial) {
						t.Fatalf("v%d %v, %d workers, limits %+v: %d events differ from the serial read's %d", version, sel.Filter, workers, lim, len(got), len(serial))
					}
				}
			}
		}
	}
}

// TestSelectAheadHoldsBytes checks that the read-ahead bounds what it
// holds by bytes, not by groups: a v5 group whose events are decoded is
// read in parts of at most the job bytes (and an event), so the jobs in
// flight hold at most a slot's worth each, and the events decoded are
// held a few chunks at a time, not a group's at once. (Reading whole
// groups, as textJobs did before, fails it by the largest job; decoding
// a job's events in one chunk fails it by the events.)
func TestSelectAheadHoldsBytes(t *testing.T) {
	dir, _ := aheadStore(t, 5)
	r, err := OpenReader(dir)
	if err != nil {
		t.Fatal(err)
	}
	var perEvent, group int64
	for _, s := range r.segs {
		for _, g := range s.r.meta.Groups {
			perEvent = max(perEvent, g.RawBytes/int64(g.Count)+1)
			group = max(group, g.RawBytes)
		}
	}
	r.Close()
	lim := splitLimits
	if group < 3*lim.jobBytes {
		t.Fatalf("groups of at most %d bytes: the test wants groups several parts long", group)
	}
	for _, workers := range []int{2, 3} {
		got, peak, err := selectedLimited(t, dir, workers, lim, Selection{NeedEvent: true}, -1)
		if err != nil || len(got) != 450 {
			t.Fatalf("%d events and %v: want 450", len(got), err)
		}
		slots := int64(workers + 1)
		if peak.job > lim.jobBytes+perEvent || peak.held > slots*(lim.jobBytes+perEvent) {
			t.Fatalf("%d workers: a job of %d bytes and %d bytes in flight: want at most %d and %d (groups of up to %d)", workers, peak.job, peak.held, lim.jobBytes+perEvent, slots*(lim.jobBytes+perEvent), group)
		}
		if most := 2 * workers * lim.chunkEvents; peak.events > most || peak.events == 0 {
			t.Fatalf("%d workers: %d events decoded at once: want 1 to %d", workers, peak.events, most)
		}
	}
	// Whole groups, decoded a chunk at a time.
	_, peak, err := selectedLimited(t, dir, 2, aheadLimits{chunkEvents: 2}, Selection{NeedEvent: true}, -1)
	if err != nil || peak.events > 8 || peak.job < group/2 {
		t.Fatalf("whole groups: a job of %d bytes, %d events decoded at once, %v: want groups and at most 8 events", peak.job, peak.events, err)
	}
}

// TestSelectAheadPartsFailAsWhole checks that a group read in parts
// fails where the whole group's read fails, before any of its events is
// given, when the damaged block is one the first part does not read.
// (Leaving the first part's check of the other parts' blocks out fails
// it: the first part's events come before the error.)
func TestSelectAheadPartsFailAsWhole(t *testing.T) {
	dir, paths := aheadStore(t, 5)
	victim := paths[1]
	sr, err := openSegment(vfs.OS, victim)
	if err != nil {
		t.Fatal(err)
	}
	m := sr.meta
	gi := len(m.Groups) / 2
	g := m.Groups[gi]
	var first *textJob
	for _, j := range textJobs(sr, 0, m.Count, nil, nil, false, nil, splitLimits.jobBytes) {
		if j.whole != nil && j.lo == g.First {
			first = j
		}
	}
	dec, _ := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
	defer dec.Close()
	tr := newTextReader(dec)
	if first == nil {
		t.Fatal("the group is not read in parts")
	}
	if err := tr.positions(sr, g, nil, true); err != nil {
		t.Fatal(err)
	}
	sr.close()
	read := make([]bool, g.Blocks)
	for o := first.lo; o < first.hi; o++ {
		read[int(tr.pos[o-g.First])/3] = true
	}
	bi := slices.Index(read, false)
	if bi < 0 {
		t.Fatal("the first part reads every block of its group")
	}
	b := m.Blocks[g.Block0+bi]
	raw, err := os.ReadFile(victim)
	if err != nil {
		t.Fatal(err)
	}
	raw[b.Off+b.Len/2] ^= 0x5a
	if err := os.WriteFile(victim, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	sel := Selection{NeedEvent: true}
	serial, serr := selectedAhead(t, dir, 1, sel, -1)
	if serr == nil {
		t.Fatal("the serial read met no damage")
	}
	got, _, err := selectedLimited(t, dir, 3, splitLimits, sel, -1)
	if fmt.Sprint(err) != fmt.Sprint(serr) || !slices.Equal(got, serial) {
		t.Fatalf("in parts: %d events and %v; the serial read gave %d and %v", len(got), err, len(serial), serr)
	}
}

// TestSelectAheadStopsEarly checks that a caller that stops is given the
// same events as from the serial read, that no read-ahead goroutine is
// left, and that at most a slot per worker and one more groups were read
// (stop does not wait for the rest). (A stop that lets the workers read
// every job queued, or that does not wait for them, fails it.)
func TestSelectAheadStopsEarly(t *testing.T) {
	dir, _ := aheadStore(t, 5)
	sel := Selection{NeedRaw: true}
	all, err := selectedAhead(t, dir, 1, sel, -1)
	if err != nil {
		t.Fatal(err)
	}
	for _, stopAt := range []int{0, 1, 7, 150, 151, len(all) - 1} {
		before := runtime.NumGoroutine()
		r, err := OpenReader(dir)
		if err != nil {
			t.Fatal(err)
		}
		r.textWorkers = 2
		n := 0
		err = r.Select(sel, func(h *Hit) error {
			if n == stopAt {
				return errStopped
			}
			if fmt.Sprintf("%s %d %d %d %s", h.Cluster, h.Time, h.Received, h.ord, h.Raw) != all[n][:len(all[n])-len(" user="+h.Column(ColUser))] {
				t.Fatalf("stop at %d: event %d differs", stopAt, n)
			}
			n++
			return nil
		})
		if !errors.Is(err, errStopped) || n != stopAt {
			t.Fatalf("stop at %d: %v after %d events", stopAt, err, n)
		}
		if stopAt == 0 && r.textRead > 3 {
			t.Fatalf("stopped at the first event, %d groups were read: want at most 3 (2 workers)", r.textRead)
		}
		if len(r.textSlots) > 3 || (stopAt > 0 && len(r.textSlots) == 0) {
			t.Fatalf("stop at %d: %d text slots kept, want 1 to 3", stopAt, len(r.textSlots))
		}
		r.Close()
		for k := 0; runtime.NumGoroutine() > before; k++ {
			if k == 100 {
				t.Fatalf("stop at %d: %d goroutines before, %d after", stopAt, before, runtime.NumGoroutine())
			}
			time.Sleep(time.Millisecond)
		}
	}
}

// TestSelectAheadDamage checks that a damaged group, or a damaged column
// of a segment that comes later, fails the read ahead with the error the
// serial read gives, after the same events. (Dropping a job's error, or
// giving a planning error before the events of the segments before it,
// fails it.)
func TestSelectAheadDamage(t *testing.T) {
	for _, version := range []int{4, 5} {
		for _, what := range []string{"text block", "time column"} {
			dir, paths := aheadStore(t, version)
			victim := paths[1]
			sr, err := openSegment(vfs.OS, victim)
			if err != nil {
				t.Fatal(err)
			}
			m := sr.meta
			sr.close()
			off := m.Time.DictOff + m.Time.IDsLen/2
			if what == "text block" {
				g := m.Groups[len(m.Groups)/2]
				b := m.Blocks[g.Block0+g.Blocks/2]
				off = b.Off + b.Len/2
			}
			raw, err := os.ReadFile(victim)
			if err != nil {
				t.Fatal(err)
			}
			raw[off] ^= 0x5a
			if err := os.WriteFile(victim, raw, 0o600); err != nil {
				t.Fatal(err)
			}
			for _, sel := range aheadSelections(t) {
				serial, serr := selectedAhead(t, dir, 1, sel, -1)
				if sel.Filter == nil && (serr == nil || len(serial) < 150) {
					t.Fatalf("v%d, damaged %s: the serial read gave %d events and %v: want the first segment's and an error", version, what, len(serial), serr)
				}
				for _, workers := range []int{2, 3, -3} {
					lim := aheadLimits{}
					if workers < 0 {
						workers, lim = -workers, splitLimits
					}
					got, _, err := selectedLimited(t, dir, workers, lim, sel, -1)
					if fmt.Sprint(err) != fmt.Sprint(serr) || !slices.Equal(got, serial) {
						t.Fatalf("v%d, damaged %s, %v, %d workers, limits %+v: %d events and %v; the serial read gave %d and %v", version, what, sel.Filter, workers, lim, len(got), err, len(serial), serr)
					}
					var se *SegmentError
					if err != nil && (!errors.As(err, &se) || se.Path != victim) {
						t.Fatalf("v%d, damaged %s: %v: want a SegmentError naming %s", version, what, err, victim)
					}
				}
			}
		}
	}
}

// scanned is what a Scan gave: each event as a line, then its error.
func scanned(dir string, opts ScanOptions, stopAt int) ([]string, error) {
	var got []string
	err := Scan(dir, opts, func(s Stored) error {
		if len(got) == stopAt {
			return errStopped
		}
		got = append(got, fmt.Sprintf("%v %s %d %d %s", s.Pos, s.Cluster, s.Time, s.Received, s.Raw))
		return nil
	})
	return got, err
}

// TestScanAhead checks that Scan reading ahead gives the events, and the
// error of a damaged group after the same events, that the serial read
// gives, and leaves no goroutine when its caller stops. (Dropping a
// job's error fails it.)
func TestScanAhead(t *testing.T) {
	for _, version := range []int{4, 5} {
		dir, paths := aheadStore(t, version)
		all, err := scanned(dir, ScanOptions{workers: 1}, -1)
		if err != nil || len(all) != 450 {
			t.Fatalf("v%d: %d events, %v", version, len(all), err)
		}
		mid := all[200] // a time in the second segment
		var midTime int64
		fmt.Sscanf(mid[strings.Index(mid, " ")+3:], "%d", &midTime)
		for k, opts := range []ScanOptions{{}, {Cluster: "a"}, {From: Pos{WAL: 2, Ord: 70}}, {Since: midTime, Until: midTime + 3e8}} {
			opts.workers = 1
			serial, err := scanned(dir, opts, -1)
			if err != nil || len(serial) == 0 || (k > 0 && len(serial) >= len(all)) {
				t.Fatalf("v%d %+v: the serial read gave %d events of %d, %v", version, opts, len(serial), len(all), err)
			}
			for _, w := range []int{2, 3} {
				opts.workers = w
				got, err := scanned(dir, opts, -1)
				if err != nil || !slices.Equal(got, serial) {
					t.Fatalf("v%d %+v: %d events and %v; the serial read gave %d", version, opts, len(got), err, len(serial))
				}
			}
		}
		before := runtime.NumGoroutine()
		if got, err := scanned(dir, ScanOptions{workers: 2}, 5); !errors.Is(err, errStopped) || !slices.Equal(got, all[:5]) {
			t.Fatalf("v%d: stopped after 5: %d events, %v", version, len(got), err)
		}
		if runtime.NumGoroutine() > before {
			t.Fatalf("v%d: %d goroutines before a Scan stopped early, %d after", version, before, runtime.NumGoroutine())
		}
		sr, err := openSegment(vfs.OS, paths[1])
		if err != nil {
			t.Fatal(err)
		}
		g := sr.meta.Groups[len(sr.meta.Groups)/2]
		b := sr.meta.Blocks[g.Block0+g.Blocks/2]
		sr.close()
		raw, err := os.ReadFile(paths[1])
		if err != nil {
			t.Fatal(err)
		}
		raw[b.Off+b.Len/2] ^= 0x5a
		if err := os.WriteFile(paths[1], raw, 0o600); err != nil {
			t.Fatal(err)
		}
		serial, serr := scanned(dir, ScanOptions{workers: 1}, -1)
		got, err := scanned(dir, ScanOptions{workers: 2}, -1)
		if serr == nil || len(serial) < 150 || fmt.Sprint(err) != fmt.Sprint(serr) || !slices.Equal(got, serial) {
			t.Fatalf("v%d, damaged group: %d events and %v; the serial read gave %d and %v", version, len(got), err, len(serial), serr)
		}
	}
}

// TestScanAheadColumns checks that Scan reading ahead across segments
// gives the events in the serial read's order, and that a segment whose
// columns are damaged (found when Scan plans it, while the segment before
// is still being given) fails it after every event before it, as the
// serial read does. (Returning the planning error at once, or giving a
// segment's groups in the order the workers finish them, fails it.)
func TestScanAheadColumns(t *testing.T) {
	for _, version := range []int{4, 5} {
		dir, paths := aheadStore(t, version)
		sr, err := openSegment(vfs.OS, paths[1])
		if err != nil {
			t.Fatal(err)
		}
		c := sr.meta.Time
		sr.close()
		raw, err := os.ReadFile(paths[1])
		if err != nil {
			t.Fatal(err)
		}
		raw[c.DictOff+c.DictLen/2] ^= 0x5a
		if err := os.WriteFile(paths[1], raw, 0o600); err != nil {
			t.Fatal(err)
		}
		serial, serr := scanned(dir, ScanOptions{workers: 1}, -1)
		if serr == nil || len(serial) != 150 {
			t.Fatalf("v%d, damaged times: the serial read gave %d events and %v: want the first segment's 150 and an error", version, len(serial), serr)
		}
		for _, w := range []int{2, 3, 8} {
			got, err := scanned(dir, ScanOptions{workers: w}, -1)
			if fmt.Sprint(err) != fmt.Sprint(serr) || !slices.Equal(got, serial) {
				t.Fatalf("v%d, damaged times, %d workers: %d events and %v; the serial read gave %d and %v", version, w, len(got), err, len(serial), serr)
			}
		}
	}
}

// TestScanBatches checks that ScanBatches gives Scan's events in Scan's
// order, with its error after the same events, reading ahead or not, and
// that each batch's Raws are still whole when its fn is called. (Batches
// kept past a text group, whose buffers a worker then reuses, or WAL
// events batched past their record, fail it.)
func TestScanBatches(t *testing.T) {
	batched := func(dir string, opts ScanOptions) ([]string, error) {
		var got []string
		err := ScanBatches(dir, opts, func(batch []Stored) error {
			if len(batch) == 0 {
				return errors.New("an empty batch")
			}
			for _, s := range batch {
				got = append(got, fmt.Sprintf("%v %s %d %d %s", s.Pos, s.Cluster, s.Time, s.Received, s.Raw))
			}
			return nil
		})
		return got, err
	}
	for _, version := range []int{4, 5} {
		dir, paths := aheadStore(t, version)
		// A store whose events are in its WAL (its writer still open):
		// Scan reads them record by record.
		wdir := t.TempDir()
		db, err := Open(wdir, Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		rng := rand.New(rand.NewPCG(9, 9))
		for i := range 4 {
			var recs []audit.Record
			for j := range 30 {
				recs = append(recs, genEvent(rng, i*30+j))
			}
			if _, err := db.Append(context.Background(), &pipeline.Batch{Cluster: "c", Received: time.Now(), Records: recs}); err != nil {
				t.Fatal(err)
			}
		}
		for _, workers := range []int{1, 2, 3} {
			for _, opts := range []ScanOptions{{}, {Cluster: "b"}, {From: Pos{WAL: 2, Ord: 70}}, {FS: vfs.OS}} {
				if opts.FS != nil {
					dir := wdir
					opts.workers = workers
					want, werr := scanned(dir, opts, -1)
					got, err := batched(dir, opts)
					if werr != nil || err != nil || len(want) != 120 || !slices.Equal(got, want) {
						t.Fatalf("WAL: ScanBatches gave %d events and %v; Scan %d and %v", len(got), err, len(want), werr)
					}
					continue
				}
				opts.workers = workers
				want, werr := scanned(dir, opts, -1)
				got, err := batched(dir, opts)
				if werr != nil || err != nil || len(want) < 100 || !slices.Equal(got, want) {
					t.Fatalf("v%d %+v: ScanBatches gave %d events and %v; Scan %d and %v", version, opts, len(got), err, len(want), werr)
				}
			}
		}
		sr, err := openSegment(vfs.OS, paths[1])
		if err != nil {
			t.Fatal(err)
		}
		g := sr.meta.Groups[1]
		b := sr.meta.Blocks[g.Block0]
		sr.close()
		raw, err := os.ReadFile(paths[1])
		if err != nil {
			t.Fatal(err)
		}
		raw[b.Off+b.Len/2] ^= 0x5a
		if err := os.WriteFile(paths[1], raw, 0o600); err != nil {
			t.Fatal(err)
		}
		for _, workers := range []int{1, 2} {
			want, werr := scanned(dir, ScanOptions{workers: workers}, -1)
			got, err := batched(dir, ScanOptions{workers: workers})
			if werr == nil || fmt.Sprint(err) != fmt.Sprint(werr) || !slices.Equal(got, want) {
				t.Fatalf("v%d, damaged group, %d workers: ScanBatches gave %d events and %v; Scan %d and %v", version, workers, len(got), err, len(want), werr)
			}
		}
	}
}

// TestSelectNoTimes: with NoTimes, Select gives the same events, with the
// same bytes and decoded events, without decoding the segments' time
// columns (their hits carry no times); bounds still apply.
// Mutation it catches: planText reading the time columns whatever
// NoTimes says.
func TestSelectNoTimes(t *testing.T) {
	for _, version := range []int{4, 5} {
		dir, _ := generatedStoreOf(t, version)
		f, err := query.Compile(`verb in (get,list) or "password"`)
		if err != nil {
			t.Fatal(err)
		}
		run := func(noTimes bool, since int64) (out []string, timed int) {
			r, err := OpenReader(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			r.textWorkers = 2 // the read-ahead, which honours NoTimes, on any machine
			sel := Selection{Filter: f, NeedEvent: true, NoTimes: noTimes, Since: since}
			err = r.Select(sel, func(h *Hit) error {
				out = append(out, h.Cluster+" "+string(h.Raw)+" "+h.Event.AuditID)
				if h.seg != nil && (h.Time != 0 || h.Received != 0 || h.seg.recvs != nil) {
					timed++
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			return out, timed
		}
		since := time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC).UnixMicro()
		for _, s := range []int64{0, since} {
			want, timed := run(false, s)
			got, timedNo := run(true, s)
			if len(want) < 20 || timed == 0 {
				t.Fatalf("v%d: %d events, %d with times: the test proves little", version, len(want), timed)
			}
			if !slices.Equal(got, want) {
				t.Fatalf("v%d since %d: %d events with NoTimes, %d without", version, s, len(got), len(want))
			}
			if timedNo != 0 {
				t.Errorf("v%d since %d: %d hits of segments had times read with NoTimes", version, s, timedNo)
			}
		}
	}
}
