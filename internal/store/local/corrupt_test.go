package local

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/kubetrail/kubetrail/internal/audit"
	"github.com/kubetrail/kubetrail/internal/pipeline"
	"github.com/kubetrail/kubetrail/internal/query"
	"github.com/kubetrail/kubetrail/internal/vfs"
)

// longName makes the names of the damaged segment long.
const longName = "-replicaset-0123456789abcdef"

// storedEvent is one event as the corruption tests stored it: the naive
// list every answer is compared with.
type storedEvent struct {
	cluster string
	raw     string
	time    int64
	ev      audit.Event
	row     colRow
	seg     int // which segment holds it
}

// corruptStore writes the store the corruption tests damage: three
// segments of 100, 400 and 100 events with small groups and blocks; every
// event of the second (every other of the others) has a long name of its
// own, so its name column is kept as postings in several chunks, and a few users and verbs are rare, so ids columns keep rare
// postings. The segments are written directly, then the store is opened
// and closed once, which writes the MANIFEST of a folder that had none.
func corruptStore(t *testing.T) (dir string, segs []string, all []storedEvent) {
	t.Helper()
	dir = t.TempDir()
	segDir := filepath.Join(dir, segmentDir)
	os.MkdirAll(segDir, 0o700)
	enc, _ := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))
	defer enc.Close()
	rng := rand.New(rand.NewPCG(51, 52))
	for s, n := range []int{100, 400, 100} {
		w, err := newSegmentWriter(vfs.OS, segDir, uint64(s+1), uint64(s+1), enc, segLayout{groupBytes: 24 << 10, blockBytes: 3 << 10, blockEvents: 3}, nil)
		if err != nil {
			t.Fatal(err)
		}
		for j := 0; j < n; j++ {
			i := len(all)
			rec := genEvent(rng, i)
			switch {
			case s == 1:
				// Long names: the name column's postings take several
				// chunks.
				rec = namedEvent(rng, i)
				ev := rec.Event
				ev.ObjectRef.Name += longName
				rec = recordOf(t, &ev)
			case j%2 == 0:
				rec = namedEvent(rng, i)
			}
			if i%97 == 0 {
				ev := rec.Event
				ev.User.Username, ev.Verb = "rare-user", "deletecollection"
				rec = recordOf(t, &ev)
			}
			e := entry{cluster: []string{"a", "b"}[i%2], received: int64(1000 + i), time: rec.Event.StageTimestamp.UnixMicro(), raw: rec.Raw}
			if err := w.add(e, false); err != nil {
				t.Fatal(err)
			}
			st := storedEvent{cluster: e.cluster, raw: string(e.raw), time: e.time, seg: s}
			if err := audit.DecodeStored(e.raw, &st.ev); err != nil {
				t.Fatal(err)
			}
			columnValues(st.cluster, &st.ev, &st.row)
			all = append(all, st)
		}
		path, err := w.finish(true)
		if err != nil {
			t.Fatal(err)
		}
		segs = append(segs, path)
	}
	db, err := Open(dir, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if _, ok, _, _ := readManifest(vfs.OS, segDir); !ok {
		t.Fatal("Open wrote no MANIFEST for a folder without one")
	}
	return dir, segs, all
}

func recordOf(t *testing.T, ev *audit.Event) audit.Record {
	t.Helper()
	var rec audit.Record
	raw := mustJSON(t, ev)
	audit.NewDecoder(audit.Limits{}).DecodeBody("gen", raw, func(r audit.Record) { rec = r }, func(p audit.Problem) { t.Fatal(p.String()) })
	return rec
}

// segPart is one structure of a segment file, for the report of which
// structure a damaged byte lands in.
type segPart struct {
	off, n int64
	name   string
}

// segmentParts maps every byte of a (whole) segment to its structure.
func segmentParts(t *testing.T, path string) []segPart {
	t.Helper()
	r, err := openSegment(vfs.OS, path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.close()
	m := &r.meta
	parts := []segPart{{0, int64(len(segMagic)), "magic"}}
	for _, b := range m.Blocks {
		parts = append(parts, segPart{b.Off, b.Len, "text block"})
	}
	for _, g := range m.Groups {
		if g.KeysLen > 0 {
			parts = append(parts, segPart{g.KeysOff, g.KeysLen, "group keys"})
		}
		if g.HeadLen > 0 {
			parts = append(parts, segPart{g.HeadOff, g.HeadLen, "text head"})
		}
	}
	for c, cm := range m.Columns {
		name := Column(c).String()
		if cm.Kind == kindPostings {
			parts = append(parts, segPart{cm.DictOff, cm.DictLen, "chunk index (" + name + ")"},
				segPart{cm.DictOff + cm.DictLen, cm.IDsLen, "postings chunks (" + name + ")"})
			continue
		}
		parts = append(parts, segPart{cm.DictOff, cm.DictLen, "dictionary"}, segPart{cm.DictOff + cm.DictLen, cm.IDsLen, "ids"})
		if cm.RareLen > 0 {
			parts = append(parts, segPart{cm.DictOff + cm.DictLen + cm.IDsLen, cm.RareLen, "rare postings"})
		}
	}
	for _, cm := range []columnMeta{m.Time, m.Received, m.Lengths} {
		parts = append(parts, segPart{cm.DictOff, cm.IDsLen, cm.Name + " column"})
	}
	if m.AuditLen > 0 {
		parts = append(parts, segPart{m.AuditOff, m.AuditLen, "audit id table"})
	}
	parts = append(parts, segPart{r.metaOff, r.size - 12 - r.metaOff, "meta"}, segPart{r.size - 12, 4, "trailer"}, segPart{r.size - 8, 8, "trailer"})
	sort.Slice(parts, func(i, j int) bool { return parts[i].off < parts[j].off })
	at := int64(0)
	for _, p := range parts {
		if p.off != at {
			t.Fatalf("parts do not tile the file: %s at %d, expected %d", p.name, p.off, at)
		}
		at += p.n
	}
	return parts
}

func partAt(parts []segPart, off int64) string {
	for _, p := range parts {
		if off >= p.off && off < p.off+p.n {
			return p.name
		}
	}
	return "?"
}

// corruptQueries are the filters every damaged store is asked, with and
// without the events' text: full scans, dictionary and postings lookups
// (present, absent and before every value), rare postings, time ranges,
// and a text search that needs the events.
var corruptQueries = []string{
	"", "user=alice", "name=pod-2", "name=pod-402 or name=pod-999", "name=aaa", "name=pod-999999", "name=zzz",
	"name=pod-101" + longName, "name=pod-250" + longName, "name=pod-499" + longName, "name=pod-250", "name=pod-3",
	"verb=deletecollection", "ns=production verb=get", "group=system:masters", "code>=400", `"password"`,
	"time>=2026-11-20T02:00:00Z time<2026-11-20T05:00:00Z",
}

// checkAnswers asks the store in dir everything the commands ask and
// checks each answer: an error that names one of names, or exactly the
// events stored (want), or, with Damage naming one of names, exactly the
// events stored outside segment lost. It returns how many answers failed.
func checkAnswers(t *testing.T, label, dir string, all []storedEvent, lost int, names ...string) (failed int) {
	t.Helper()
	names = slices.Clone(names)
	for i, n := range names {
		names[i] = filepath.Base(n)
	}
	namesFile := func(s string) bool {
		for _, n := range names {
			if strings.Contains(s, n) {
				return true
			}
		}
		return false
	}
	// accept checks an answer: got (compared with what the selection
	// wants, with or without the lost segment), its error and its damage.
	accept := func(what string, err error, damage []Damage, got []string, want func(partial bool) []string) {
		t.Helper()
		if err != nil {
			if !namesFile(err.Error()) {
				t.Fatalf("%s: %s: error %q does not name the damaged file %v", label, what, err, names)
			}
			failed++
			return
		}
		partial := false
		for _, d := range damage {
			if !namesFile(d.String()) {
				t.Fatalf("%s: %s: damage %q names another file than %v", label, what, d, names)
			}
			partial = true
		}
		w := want(partial)
		if !slices.Equal(got, w) {
			i := 0
			for i < min(len(got), len(w)) && got[i] == w[i] {
				i++
			}
			var g, x string
			if i < len(got) {
				g = got[i]
			}
			if i < len(w) {
				x = w[i]
			}
			t.Fatalf("%s: %s: exit 0 (damage %v) with a wrong answer: %d rows, want %d; row %d is\n%.300q\nwant\n%.300q", label, what, damage, len(got), len(w), i, g, x)
		}
	}
	keep := func(partial bool, f func(s *storedEvent) bool) []string {
		var out []string
		for i := range all {
			s := &all[i]
			if partial && s.seg == lost {
				continue
			}
			if f(s) {
				out = append(out, s.raw)
			}
		}
		return out
	}
	now := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)

	// Export (Scan): every event in order.
	var exported []string
	err := Scan(dir, ScanOptions{}, func(s Stored) error { exported = append(exported, string(s.Raw)); return nil })
	var de *DamageError
	var damage []Damage
	if errors.As(err, &de) {
		err, damage = nil, de.List
	}
	accept("export", err, damage, exported, func(p bool) []string { return keep(p, func(*storedEvent) bool { return true }) })

	r, err := OpenReader(dir)
	if err != nil {
		accept("open", err, nil, nil, nil)
		return failed
	}
	defer r.Close()
	damage = r.Damaged()
	for _, src := range corruptQueries {
		var f *query.Filter
		if src != "" {
			if f, err = query.CompileAt(src, now); err != nil {
				t.Fatal(err)
			}
		}
		match := func(s *storedEvent) bool { return f == nil || f.Match(&s.ev, s.cluster) }
		// -o json: the events' text.
		var got []string
		err := r.Select(Selection{Filter: f, NeedEvent: true}, func(h *Hit) error { got = append(got, string(h.Raw)); return nil })
		accept(fmt.Sprintf("query %q -o json", src), err, damage, got, func(p bool) []string { return keep(p, match) })
		// -o wide: column values only, as the table printer reads them.
		got = got[:0]
		err = r.Select(Selection{Filter: f}, func(h *Hit) error {
			row := []string{h.Cluster, fmt.Sprint(h.Time)}
			for c := Column(0); c < NumColumns; c++ {
				row = append(row, h.Column(c))
			}
			got = append(got, strings.Join(row, "|"))
			return nil
		})
		sort.Strings(got)
		accept(fmt.Sprintf("query %q -o wide", src), err, damage, got, func(p bool) []string {
			var out []string
			for i := range all {
				s := &all[i]
				if (p && s.seg == lost) || !match(s) {
					continue
				}
				out = append(out, strings.Join(append([]string{s.cluster, fmt.Sprint(s.time)}, s.row[:]...), "|"))
			}
			sort.Strings(out)
			return out
		})
		// --count.
		n, err := r.CountMatching(Selection{Filter: f})
		accept(fmt.Sprintf("query %q --count", src), err, damage, []string{fmt.Sprint(n)}, func(p bool) []string { return []string{fmt.Sprint(len(keep(p, match)))} })
	}
	// stats, by several columns, with bytes and time buckets.
	hour := int64(time.Hour / time.Microsecond)
	for _, tc := range []struct {
		filter   string
		by       []Column
		interval int64
	}{
		{"", nil, 0}, {"", []Column{ColUser}, 0}, {"", []Column{ColName}, 0}, {"", []Column{ColGroups}, 0},
		{"", []Column{ColVerb, ColResource}, hour}, {"verb=get", []Column{ColNamespace}, 0},
		{"name=pod-2 or name=pod-403", []Column{ColCluster}, 0}, {`"password"`, []Column{ColCode}, 0},
	} {
		var f *query.Filter
		if tc.filter != "" {
			f, _ = query.CompileAt(tc.filter, now)
		}
		groups, _, err := r.StatsOf(Selection{Filter: f}, StatsOptions{By: tc.by, Interval: tc.interval, Bytes: true})
		var got []string
		for _, g := range groups {
			got = append(got, fmt.Sprint(g.Bucket, g.Key, g.Count, g.Bytes))
		}
		sort.Strings(got)
		accept(fmt.Sprintf("stats %q by %v", tc.filter, tc.by), err, damage, got, func(p bool) []string {
			type acc struct {
				bucket int64
				key    []string
				n, b   int64
			}
			m := map[string]*acc{}
			for i := range all {
				s := &all[i]
				if (p && s.seg == lost) || (f != nil && !f.Match(&s.ev, s.cluster)) {
					continue
				}
				a := &acc{}
				if tc.interval > 0 {
					a.bucket = floorTo(s.time, tc.interval)
				}
				for _, c := range tc.by {
					a.key = append(a.key, s.row[c])
				}
				k := fmt.Sprint(a.bucket, a.key)
				if m[k] == nil {
					m[k] = a
				}
				m[k].n++
				m[k].b += int64(len(s.raw))
			}
			var out []string
			for _, a := range m {
				out = append(out, fmt.Sprint(a.bucket, a.key, a.n, a.b))
			}
			sort.Strings(out)
			return out
		})
	}
	return failed
}

// TestCorruptSegment damages one segment of a small store in every way a
// disk or an operator can (every k-th byte flipped plus the first, middle
// and last byte of each structure, cut short, deleted, renamed, copied
// over another's range) and asks the store everything the commands ask:
// each answer is an error naming the file, or every stored event, or every
// event outside the damaged segment with Damage naming it. Never a wrong
// answer without a word. verifySegment must find every flip that the
// readers are not immune to.
//
// Planted bugs it catches: Hit.Column ignoring a dictionary read error
// (the NAME "-" rows), the chunk index's first values not checked
// against their chunks, decodeFrame accepting a frame without checksum.
func TestCorruptSegment(t *testing.T) {
	dir, segs, all := corruptStore(t)
	victim := segs[1]
	if checkAnswers(t, "intact", dir, all, -1) != 0 {
		t.Fatal("the intact store fails")
	}
	if d := verifySegment(vfs.OS, victim); d != nil {
		t.Fatalf("verify on an intact segment: %v", d)
	}
	if d := checkManifest(vfs.OS, dir); d != nil {
		t.Fatalf("checkManifest on an intact folder: %v", d)
	}
	orig, err := os.ReadFile(victim)
	if err != nil {
		t.Fatal(err)
	}
	parts := segmentParts(t, victim)
	// The offsets: every k-th byte (every 7k-th in text blocks, which are
	// most of the file and all alike: zstd frames of events), and the
	// first, middle and last byte of each part, so that each structure is
	// hit however small.
	k := int64(37)
	switch {
	case raceOn:
		// The test is sequential: the race detector only slows it.
		k = 97
	case testing.Short():
		k = 97
	}
	// The byte flipped at each offset is XORed with 0x5a, but for the
	// byte of each zstd frame's header that says the frame ends with a
	// checksum: only that bit is flipped, which would turn the check off.
	offs := map[int64]byte{}
	for o := int64(0); o < int64(len(orig)); o += k {
		if partAt(parts, o) != "text block" || o%(7*k) == 0 {
			offs[o] = 0x5a
		}
	}
	for _, p := range parts {
		offs[p.off], offs[p.off+p.n/2], offs[p.off+p.n-1] = 0x5a, 0x5a, 0x5a
		switch {
		case strings.HasPrefix(p.name, "chunk index") || p.name == "magic" || p.name == "trailer":
			// No checksum covers these: every byte.
			for o := p.off; o < p.off+p.n; o++ {
				offs[o] = 0x5a
			}
		case p.name != "meta":
			offs[p.off+4] = 1 << 2
		}
	}
	sorted := make([]int64, 0, len(offs))
	for o := range offs {
		sorted = append(sorted, o)
	}
	slices.Sort(sorted)
	if raceOn {
		// A tenth, and one in each kind of structure.
		seen := map[string]bool{}
		sample := sorted[:0]
		for i, o := range sorted {
			if p := partAt(parts, o); !seen[p] || i%10 == 0 {
				seen[p] = true
				sample = append(sample, o)
			}
		}
		sorted = sample
	}
	type tally struct{ flips, failed, verified int }
	byPart := map[string]*tally{}
	for _, off := range sorted {
		part := partAt(parts, off)
		b := slices.Clone(orig)
		b[off] ^= offs[off]
		if err := os.WriteFile(victim, b, 0o600); err != nil {
			t.Fatal(err)
		}
		tl := byPart[part]
		if tl == nil {
			tl = &tally{}
			byPart[part] = tl
		}
		tl.flips++
		label := fmt.Sprintf("byte %d (%s) flipped", off, part)
		tl.failed += checkAnswers(t, label, dir, all, -1, victim)
		if d := verifySegment(vfs.OS, victim); len(d) > 0 {
			tl.verified++
			if !strings.Contains(d[0].String(), filepath.Base(victim)) {
				t.Fatalf("%s: verify names another file: %v", label, d)
			}
		}
	}
	os.WriteFile(victim, orig, 0o600)
	names := make([]string, 0, len(byPart))
	for n := range byPart {
		names = append(names, n)
	}
	sort.Strings(names)
	var report []string
	for _, n := range names {
		tl := byPart[n]
		report = append(report, fmt.Sprintf("%s: %d flips, %d failed answers, %d found by verify", n, tl.flips, tl.failed, tl.verified))
		// Every structure but a few header bytes of zstd frames (whose
		// flips leave the content and its checksum whole) must be noticed.
		if tl.verified*10 < tl.flips*9 {
			t.Errorf("%s: verify found only %d of %d flips", n, tl.verified, tl.flips)
		}
		// A v5 group's text has a CRC-32C over every byte of each part.
		if (n == "text head" || n == "text block") && tl.verified != tl.flips {
			t.Errorf("%s: verify found only %d of %d flips", n, tl.verified, tl.flips)
		}
	}
	for _, want := range []string{"magic", "text head", "text block", "dictionary", "ids", "rare postings", "chunk index (name)", "postings chunks (name)", "time column", "received column", "lengths column", "meta", "trailer"} {
		if byPart[want] == nil {
			t.Errorf("no flip landed in the %s", want)
		}
	}
	t.Log("flips by structure:\n" + strings.Join(report, "\n"))
}

// TestCorruptSegmentFiles cuts the segment short, deletes it, renames it,
// and copies it over another's range.
func TestCorruptSegmentFiles(t *testing.T) {
	dir, segs, all := corruptStore(t)
	victim := segs[1]
	orig, _ := os.ReadFile(victim)
	segDir := filepath.Join(dir, segmentDir)
	restore := func() {
		for _, e := range must(os.ReadDir(segDir)) {
			if _, _, ok := segmentRange(e.Name()); ok {
				os.Remove(filepath.Join(segDir, e.Name()))
			}
		}
		for _, s := range segs {
			if s != victim {
				os.WriteFile(s, must(os.ReadFile(s+".keep")), 0o600)
			}
		}
		os.WriteFile(victim, orig, 0o600)
	}
	for _, s := range segs {
		os.WriteFile(s+".keep", must(os.ReadFile(s)), 0o600)
	}
	for _, n := range []int{0, 7, 8, 20, len(orig) / 3, len(orig) - 13, len(orig) - 12, len(orig) - 1} {
		os.WriteFile(victim, orig[:n], 0o600)
		if checkAnswers(t, fmt.Sprintf("cut to %d bytes", n), dir, all, 1, victim) == 0 {
			t.Errorf("cut to %d bytes: no answer failed", n)
		}
		if len(verifySegment(vfs.OS, victim)) == 0 {
			t.Errorf("cut to %d bytes: verify finds nothing", n)
		}
	}
	restore()

	// Deleted: every answer leaves its events out and says so.
	os.Remove(victim)
	if checkAnswers(t, "deleted", dir, all, 1, victim) != 0 {
		t.Error("deleted: an answer failed instead of reporting the missing file")
	}
	r, err := OpenReader(dir)
	if err != nil {
		t.Fatal(err)
	}
	if d := r.Damaged(); len(d) != 1 || !strings.Contains(d[0].Reason, "missing") {
		t.Errorf("deleted: Damaged() = %v", d)
	}
	r.Close()
	if d := checkManifest(vfs.OS, dir); len(d) != 1 || d[0].Path != victim {
		t.Errorf("deleted: checkManifest = %v", d)
	}
	restore()

	// Renamed to another range: its name and meta disagree, and its
	// listed name is missing.
	moved := filepath.Join(segDir, segmentName(9, 9))
	os.Rename(victim, moved)
	checkAnswers(t, "renamed", dir, all, 1, victim, moved)
	if len(verifySegment(vfs.OS, moved)) == 0 {
		t.Error("renamed: verify finds nothing")
	}
	restore()

	// Renamed to a range that holds the others': it seems to supersede
	// them, hiding them, but its name and meta disagree.
	over := filepath.Join(segDir, segmentName(1, 3))
	os.Rename(segs[2], over)
	if checkAnswers(t, "renamed over others", dir, all, 2, segs[2], over) == 0 {
		t.Error("renamed over others: no answer failed")
	}
	restore()

	// Copied over part of another's range: the two would count WAL 2
	// twice.
	os.WriteFile(filepath.Join(segDir, segmentName(2, 3)), must(os.ReadFile(segs[2])), 0o600)
	if checkAnswers(t, "copied", dir, all, 1, segmentName(2, 3)) == 0 {
		t.Error("copied over another's range: no answer failed")
	}
	restore()
	if checkAnswers(t, "restored", dir, all, -1) != 0 {
		t.Fatal("restored store fails")
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestDecodeFrameWantsChecksum refuses a zstd frame written without a
// content checksum: nothing would check what it decodes to.
func TestDecodeFrameWantsChecksum(t *testing.T) {
	plain := []byte(strings.Repeat("kubetrail ", 100))
	dec, _ := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
	defer dec.Close()
	for _, crc := range []bool{true, false} {
		enc, _ := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1), zstd.WithEncoderCRC(crc))
		got, err := decodeFrame(dec, enc.EncodeAll(plain, nil), nil)
		enc.Close()
		if crc && (err != nil || string(got) != string(plain)) {
			t.Errorf("with a checksum: %v", err)
		}
		if !crc && err == nil {
			t.Error("a frame without a checksum was decoded")
		}
	}
}

// TestRetryWhileSegmentCorrupt re-sends a stored batch while the segment
// holding it is damaged: de-duplication cannot read it, so the batch is
// refused as unavailable (the webhook answers 503 and the sender retries)
// instead of being stored twice. Once an operator moves the segment into
// quarantine, the retry is stored, once. Planted bug: storing the event
// when the segment cannot be read (as before) stores the retry twice.
func TestRetryWhileSegmentCorrupt(t *testing.T) {
	dir := t.TempDir()
	b := smallBatches(1, 40)[0]
	db := openSmall(t, dir)
	appendAll(t, db, []*pipeline.Batch{b})
	db.Close()
	segs, _ := listSegments(vfs.OS, filepath.Join(dir, segmentDir))
	if len(segs) != 1 {
		t.Fatalf("%d segments, want 1", len(segs))
	}
	data, _ := os.ReadFile(segs[0].path)
	r, _ := openSegment(vfs.OS, segs[0].path)
	blk := r.meta.Blocks[0]
	r.close()
	data[blk.Off+blk.Len/2] ^= 0x5a
	os.WriteFile(segs[0].path, data, 0o600)

	// Reopened, so its keys are not in memory: they must be read.
	db = openSmall(t, dir)
	defer func() { db.Close() }()
	for k := 0; k < 2; k++ {
		res, err := db.Append(context.Background(), b)
		if !errors.Is(err, pipeline.ErrUnavailable) || !strings.Contains(err.Error(), filepath.Base(segs[0].path)) {
			t.Fatalf("retry %d while the segment is damaged: %+v, %v; want ErrUnavailable naming the segment", k, res, err)
		}
	}
	if n := db.Stats().Stored.Load(); n != 0 {
		t.Fatalf("%d events stored while de-duplication could not read the segment", n)
	}

	// The operator sets the segment aside.
	if _, err := quarantine(vfs.OS, dir, filepath.Base(segs[0].path), data, "checksum fails"); err != nil {
		t.Fatal(err)
	}
	os.Remove(segs[0].path)
	res, err := db.Append(context.Background(), b)
	if err != nil || res.Stored != 40 {
		t.Fatalf("retry after quarantine: %+v, %v; want 40 stored", res, err)
	}
	if res, err := db.Append(context.Background(), b); err != nil || res.Duplicates != 40 {
		t.Fatalf("second retry: %+v, %v; want 40 duplicates", res, err)
	}
	db.Close()
	var n int
	err = Scan(dir, ScanOptions{}, func(Stored) error { n++; return nil })
	var de *DamageError
	if !errors.As(err, &de) || n != 40 {
		t.Fatalf("Scan: %d events, %v; want 40 and the quarantined segment reported", n, err)
	}
}

// TestOpenQuarantinesDamagedSegment restarts a store one of whose segments
// has a damaged meta: Open moves it into quarantine (bytes kept, counted),
// takes it out of the manifest, and starts; readers answer from the rest
// and report the quarantined file. Planted bug: failing Open (as before)
// stops ingest.
func TestOpenQuarantinesDamagedSegment(t *testing.T) {
	dir := t.TempDir()
	batches := smallBatches(3, 20)
	db := openSmall(t, dir)
	appendAll(t, db, batches)
	db.Close()
	segs, _ := listSegments(vfs.OS, filepath.Join(dir, segmentDir))
	if len(segs) != 3 {
		t.Fatalf("%d segments, want 3", len(segs))
	}
	victim := segs[1].path
	data, _ := os.ReadFile(victim)
	data[len(data)-14] ^= 1 // in the meta
	os.WriteFile(victim, data, 0o600)

	db, err := Open(dir, Options{WALSegmentBytes: 1, NoSync: true})
	if err != nil {
		t.Fatalf("Open with a damaged segment: %v", err)
	}
	defer db.Close()
	if n := db.Stats().Quarantined.Load(); n != 1 {
		t.Errorf("Quarantined = %d, want 1", n)
	}
	kept, err := os.ReadFile(filepath.Join(dir, quarantineDir, filepath.Base(victim)))
	if err != nil || !slices.Equal(kept, data) {
		t.Fatalf("the quarantined bytes: %v", err)
	}
	if _, err := os.Stat(victim); !os.IsNotExist(err) {
		t.Errorf("the damaged segment is still in the segments folder: %v", err)
	}
	if d := checkManifest(vfs.OS, dir); d != nil {
		t.Errorf("checkManifest: %v", d)
	}
	r, err := db.OpenReader()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if d := r.Damaged(); len(d) != 1 || !strings.Contains(d[0].Path, quarantineDir) || !strings.Contains(d[0].Reason, "checksum") {
		t.Errorf("Damaged() = %v", d)
	}
	if n := r.Count(); n != 40 {
		t.Errorf("%d events readable, want the 40 of the intact segments", n)
	}
	// Ingest goes on, and the quarantined segment's events, sent again,
	// are stored again.
	if res, err := db.Append(context.Background(), batches[1]); err != nil || res.Stored != 20 {
		t.Errorf("re-sent the quarantined events: %+v, %v", res, err)
	}
}

// TestManifestFollowsTheSegments checks that sealing, compaction and
// retention keep the manifest equal to the segments folder, and that a
// segment deleted behind the store's back is reported by every reader and
// by checkManifest, also after a restart. Planted bug: retention deleting
// before (or without) taking segments out of the manifest makes them
// "missing".
func TestManifestFollowsTheSegments(t *testing.T) {
	dir := t.TempDir()
	db := openSmall(t, dir)
	defer func() { db.Close() }()
	appendAll(t, db, smallBatches(12, 10))
	waitSettled(t, dir)
	if d := checkManifest(vfs.OS, dir); d != nil {
		t.Fatalf("after sealing: %v", d)
	}
	if _, err := db.Compact(context.Background(), Compaction{Below: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	if d := checkManifest(vfs.OS, dir); d != nil {
		t.Fatalf("after compaction: %v", d)
	}
	appendAll(t, db, smallBatches(3, 5)[1:])
	waitSettled(t, dir)
	if n, _, err := db.Enforce(Retention{MaxBytes: 1}, time.Now()); err != nil || n == 0 {
		t.Fatalf("retention deleted %d: %v", n, err)
	}
	if d := checkManifest(vfs.OS, dir); d != nil {
		t.Fatalf("after retention: %v", d)
	}
	appendAll(t, db, smallBatches(6, 5)[3:])
	waitSettled(t, dir)
	segs, _ := listSegments(vfs.OS, filepath.Join(dir, segmentDir))
	if len(segs) < 2 {
		t.Fatalf("%d segments, want 2 or more", len(segs))
	}
	os.Remove(segs[0].path)
	for k := 0; k < 2; k++ {
		if d := checkManifest(vfs.OS, dir); len(d) != 1 || d[0].Path != segs[0].path {
			t.Fatalf("deleted (restart %d): checkManifest = %v", k, d)
		}
		r, err := db.OpenReader()
		if err != nil {
			t.Fatal(err)
		}
		d := r.Damaged()
		r.Close()
		if len(d) != 1 || d[0].Path != segs[0].path {
			t.Fatalf("deleted (restart %d): Damaged() = %v", k, d)
		}
		// A restart must not forget it.
		db.Close()
		db = openSmall(t, dir)
	}
}

// TestCorruptV5Frames flips a byte in each kind of v5 text frame of one
// group at a time (the group's head, a block's rows frame, its bodies
// frame, their CRCs): reading every event of the segment one by one, the
// events of the damaged head's group, or of the damaged block, fail with
// an error naming the file and the part, and every other event comes
// back exactly; verify names the file and the part.
// (Mutation tried: textV5 returning the codec's error unwrapped fails
// it, the error naming no file.)
func TestCorruptV5Frames(t *testing.T) {
	_, segs, _ := corruptStore(t)
	victim := segs[1]
	orig, err := os.ReadFile(victim)
	if err != nil {
		t.Fatal(err)
	}
	dec, _ := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
	defer dec.Close()
	r, err := openSegment(vfs.OS, victim)
	if err != nil {
		t.Fatal(err)
	}
	m := r.meta
	if m.Version != 5 || len(m.Groups) < 3 {
		t.Fatalf("version %d, %d groups: want v5 and several groups", m.Version, len(m.Groups))
	}
	var want []string
	if err := r.scan(dec, nil, func(e entry) error { want = append(want, string(e.raw)); return nil }); err != nil {
		t.Fatal(err)
	}
	r.close()
	// flip is a damaged byte and the events it must cost: [lo, hi) in
	// storage positions of the segment.
	type flip struct {
		what   string
		off    int64
		lo, hi int
	}
	var flips []flip
	bodies := 0
	for gi, g := range m.Groups {
		if gi%2 == 1 {
			continue // leave intact groups between the damaged ones
		}
		flips = append(flips, flip{"text head", g.HeadOff + g.HeadLen/2, g.First, g.First + g.Count}, flip{"text head crc", g.HeadOff + g.HeadLen - 1, g.First, g.First + g.Count})
		for _, b := range m.Blocks[g.Block0 : g.Block0+g.Blocks] {
			rows, k := binary.Uvarint(orig[b.Off:])
			rowsEnd := b.Off + int64(k) + int64(rows)
			flips = append(flips, flip{"rows frame", b.Off + int64(k) + 1, b.First, b.First + b.Count}, flip{"rows crc", rowsEnd - 1, b.First, b.First + b.Count})
			if rowsEnd < b.Off+b.Len {
				bodies++
				flips = append(flips, flip{"bodies frame", rowsEnd + (b.Off+b.Len-rowsEnd)/2, b.First, b.First + b.Count}, flip{"bodies crc", b.Off + b.Len - 1, b.First, b.First + b.Count})
			}
		}
	}
	if bodies == 0 {
		t.Fatal("no block has bodies: the test flips no bodies frame")
	}
	for _, f := range flips {
		b := slices.Clone(orig)
		b[f.off] ^= 0x5a
		if err := os.WriteFile(victim, b, 0o600); err != nil {
			t.Fatal(err)
		}
		r, err := openSegment(vfs.OS, victim)
		if err != nil {
			t.Fatal(err)
		}
		// The storage position of each event, to know which it must cost.
		var pos []int32
		tr := newTextReader(dec)
		for _, g := range m.Groups {
			if err := tr.positions(r, g, nil, true); err != nil {
				t.Fatal(err)
			}
			for _, p := range tr.pos {
				pos = append(pos, int32(g.First)+p)
			}
		}
		one := newOneText(dec)
		lost := 0
		for ord := range m.Count {
			raw, err := one.text(r, ord, nil)
			inDamage := int(pos[ord]) >= f.lo && int(pos[ord]) < f.hi
			var se *SegmentError
			switch {
			case inDamage && err == nil:
				t.Fatalf("%s at %d: event %d read from a damaged frame", f.what, f.off, ord)
			case inDamage && (!errors.As(err, &se) || se.Path != victim || !strings.HasPrefix(se.Part, "text ")):
				t.Fatalf("%s at %d: event %d: %v: want an error naming the file and the text part", f.what, f.off, ord, err)
			case inDamage:
				lost++
			case err != nil:
				t.Fatalf("%s at %d: event %d of an intact frame: %v", f.what, f.off, ord, err)
			case string(raw) != want[ord]:
				t.Fatalf("%s at %d: event %d differs", f.what, f.off, ord)
			}
		}
		r.close()
		if lost != f.hi-f.lo {
			t.Fatalf("%s at %d: %d events lost, want %d", f.what, f.off, lost, f.hi-f.lo)
		}
		d := verifySegment(vfs.OS, victim)
		if len(d) == 0 || d[0].Path != victim || !strings.Contains(d[0].Reason, "text ") {
			t.Fatalf("%s at %d: verify: %v", f.what, f.off, d)
		}
	}
}
