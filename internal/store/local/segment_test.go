package local

import (
	"context"
	"encoding/binary"
	"encoding/json"
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

// writeTestSegment writes n generated events (every third with a name of
// its own, so the name dictionary is large) into one segment with small
// groups and blocks, and returns its path and the events in order.
func writeTestSegment(t *testing.T, dir string, n int) (string, []entry) {
	t.Helper()
	enc, _ := zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1))
	defer enc.Close()
	w, err := newSegmentWriter(vfs.OS, dir, 1, 1, enc, segLayout{groupBytes: 40 << 10, blockBytes: 5 << 10, blockEvents: 5}, nil)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(31, 32))
	var in []entry
	for i := 0; i < n; i++ {
		rec := genEvent(rng, i)
		if i%3 == 0 {
			rec = namedEvent(rng, i)
		}
		if i%101 == 0 {
			// A rare user, verb and resource: ids columns keep their
			// postings.
			ev := rec.Event
			ev.User.Username, ev.Verb = fmt.Sprintf("rare-%d", i%3), "deletecollection"
			if ev.ObjectRef != nil {
				ev.ObjectRef.Resource = "csidrivers"
			}
			raw, _ := json.Marshal(&ev)
			audit.NewDecoder(audit.Limits{}).DecodeBody("gen", raw, func(r audit.Record) { rec = r }, func(p audit.Problem) { t.Fatal(p.String()) })
		}
		e := entry{cluster: []string{"a", "b"}[i%2], received: int64(1000 + i/10), time: rec.Event.StageTimestamp.UnixMicro(), raw: rec.Raw}
		in = append(in, e)
		if err := w.add(e, false); err != nil {
			t.Fatal(err)
		}
	}
	path, err := w.finish(true)
	if err != nil {
		t.Fatal(err)
	}
	return path, in
}

// TestSegmentRoundTrip writes a segment and reads back, in arrival order,
// its events and every column: ids, counts, postings and lengths.
func TestSegmentRoundTrip(t *testing.T) {
	data := t.TempDir()
	os.MkdirAll(filepath.Join(data, segmentDir), 0o700)
	path, in := writeTestSegment(t, filepath.Join(data, segmentDir), 3000)
	r, err := openSegment(vfs.OS, path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.close()
	m := r.meta
	if m.Version != segVersion || m.Count != len(in) || len(m.Groups) < 5 || len(m.Blocks) < 4*len(m.Groups) {
		t.Fatalf("version %d, %d events in %d groups and %d blocks: the test wants several of each", m.Version, m.Count, len(m.Groups), len(m.Blocks))
	}
	if m.Columns[ColName].Kind != kindPostings || m.Columns[ColVerb].Kind != kindIDs {
		t.Fatalf("name is stored as kind %d, verb as %d", m.Columns[ColName].Kind, m.Columns[ColVerb].Kind)
	}
	dec, _ := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
	defer dec.Close()
	var got []entry
	if err := r.scan(dec, nil, func(e entry) error {
		e.raw = slices.Clone(e.raw)
		got = append(got, e)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(in) {
		t.Fatalf("%d events read, %d written", len(got), len(in))
	}
	for i := range in {
		if got[i].cluster != in[i].cluster || got[i].time != in[i].time || got[i].received != in[i].received || string(got[i].raw) != string(in[i].raw) {
			t.Fatalf("event %d differs:\n got %+v\nwant %+v", i, got[i], in[i])
		}
	}
	// The text is not stored in arrival order: sorted by user, verb and
	// resource within each group.
	t0 := newTextReader(dec)
	h, err := t0.openHead(r, m.Groups[0])
	if err != nil {
		t.Fatal(err)
	}
	var b0 []string
	if err := h.ReadBlock(0, t0.loadBlock(r, m.Blocks[0]), []int{0, 1}, func(_ int, line []byte) error {
		b0 = append(b0, string(line))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if b0[0] == string(in[0].raw) && b0[1] == string(in[1].raw) {
		t.Error("the first block holds the events in arrival order")
	}

	var want [NumColumns][]string
	var ev audit.Event
	var row colRow
	for _, e := range in {
		if err := audit.DecodeStored(e.raw, &ev); err != nil {
			t.Fatal(err)
		}
		columnValues(e.cluster, &ev, &row)
		for c := range row {
			want[c] = append(want[c], row[c])
		}
	}
	for c := Column(0); c < NumColumns; c++ {
		d, err := r.readDict(dec, c, nil)
		if err != nil {
			t.Fatalf("%s: %v", c, err)
		}
		ids, err := r.readIDs(dec, c, d, nil, nil)
		if err != nil {
			t.Fatalf("%s: %v", c, err)
		}
		counts := map[string]uint32{}
		for i, id := range ids {
			if d.values[id] != want[c][i] {
				t.Fatalf("%s of event %d: %q, want %q", c, i, d.values[id], want[c][i])
			}
			counts[want[c][i]]++
		}
		if !sort.StringsAreSorted(d.values) || len(d.values) != len(counts) {
			t.Fatalf("%s: dictionary of %d values, not sorted or not the %d used", c, len(d.values), len(counts))
		}
		for id, v := range d.values {
			if d.counts[id] != counts[v] {
				t.Fatalf("%s=%q: count %d, want %d", c, v, d.counts[id], counts[v])
			}
		}
	}
	lens, err := r.readLengths(dec, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, e := range in {
		if int(lens[i]) != len(e.raw) {
			t.Fatalf("length of event %d: %d, want %d", i, lens[i], len(e.raw))
		}
	}

	// Postings and lookups through a reader's view, for every name.
	rd := &Reader{dec: dec, text: newTextReader(dec)}
	s := &segView{r: r}
	rd.use(s)
	byName := map[string][]int32{}
	for i, v := range want[ColName] {
		byName[v] = append(byName[v], int32(i))
	}
	for v, ords := range byName {
		f, ok, err := rd.find(s, ColName, v)
		if err != nil || !ok || f.count != int64(len(ords)) {
			t.Fatalf("find name=%q: %+v %v %v, want %d events", v, f, ok, err, len(ords))
		}
		p, err := rd.postings(s, ColName, f.id, nil)
		if err != nil || !slices.Equal(p, ords) {
			t.Fatalf("postings of name=%q: %v %v, want %v", v, p, err, ords)
		}
	}
	for _, v := range []string{"", "a", "pod-", "pod-99999", "zzz", "\xff"} {
		if _, ok, _ := rd.find(s, ColName, v); ok != (byName[v] != nil) {
			t.Errorf("find name=%q: found %v", v, ok)
		}
	}

	// The rare values' postings of ids columns.
	rareCols := 0
	for c := Column(0); c < NumColumns; c++ {
		if m.Columns[c].Kind != kindIDs || m.Columns[c].RareLen == 0 {
			continue
		}
		rareCols++
		byValue := map[string][]int32{}
		for i, v := range want[c] {
			byValue[v] = append(byValue[v], int32(i))
		}
		for v, ords := range byValue {
			f, ok, err := rd.find(s, c, v)
			if err != nil || !ok || f.count != int64(len(ords)) {
				t.Fatalf("find %s=%q: %+v %v %v, want %d events", c, v, f, ok, err, len(ords))
			}
			if !hasPostings(&m, c, f.count) {
				if isRare(len(ords), m.Count) {
					t.Fatalf("%s=%q is rare but has no postings", c, v)
				}
				continue
			}
			p, err := rd.postings(s, c, f.id, nil)
			if err != nil || !slices.Equal(p, ords) {
				t.Fatalf("postings of %s=%q: %v %v, want %v", c, v, p, err, ords)
			}
		}
	}
	if rareCols < 3 {
		t.Errorf("%d ids columns keep rare postings, want at least user, verb and resource", rareCols)
	}

	// Questions answered from postings, rare values' and names', agree
	// with a full scan.
	full, err := OpenReader(data)
	if err != nil {
		t.Fatal(err)
	}
	defer full.Close()
	checkSelect(t, data, full, rand.New(rand.NewPCG(3, 3)), 40,
		"verb=deletecollection", "user=rare-1 verb=deletecollection", "resource=csidrivers user in (rare-0,rare-2,alice)",
		"verb=deletecollection name=pod-303", "name in (pod-0,pod-1,pod-2) verb in (get,deletecollection)",
		"user=rare-1 resource=csidrivers verb=deletecollection time>=2026-11-20T05:00:00Z")
	f, _ := compileOrNil("user=rare-1 verb=deletecollection")
	full.use(nil)
	if _, err := full.CountMatching(Selection{Filter: f}); err != nil {
		t.Fatal(err)
	}
	if sv := full.segs[0]; sv.rare[ColUser] == nil || sv.rare[ColVerb] == nil || sv.ids[ColUser] != nil || sv.ids[ColVerb] != nil {
		t.Error("user=rare-1 verb=deletecollection was not answered from the rare values' postings alone")
	}

	// Any set of events, in arrival order, reading only their blocks.
	rng := rand.New(rand.NewPCG(1, 1))
	for k := 0; k < 50; k++ {
		var want []int32
		for i := range in {
			if rng.IntN(1+k*10) == 0 {
				want = append(want, int32(i))
			}
		}
		var seen []int32
		err := rd.text.events(r, 0, m.Count, want, nil, rd.idsOf(s), func(i int, raw []byte) error {
			if string(raw) != string(in[i].raw) {
				t.Fatalf("event %d: wrong text", i)
			}
			seen = append(seen, int32(i))
			return nil
		})
		if err != nil || !slices.Equal(seen, want) {
			t.Fatalf("events %v read as %v (%v)", want, seen, err)
		}
	}
}

// TestSegmentDamage checks that a damaged meta or a text order that does
// not agree with the columns is reported, not read as other events.
func TestSegmentDamage(t *testing.T) {
	dir := t.TempDir()
	path, _ := writeTestSegment(t, dir, 600)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	metaLen := int(binary.LittleEndian.Uint32(data[len(data)-12:]))
	metaAt := len(data) - 12 - metaLen

	flipped := slices.Clone(data)
	flipped[metaAt+10] ^= 0x40
	bad := filepath.Join(dir, "bad.kts")
	os.WriteFile(bad, flipped, 0o600)
	if _, err := openSegment(vfs.OS, bad); err == nil || !strings.Contains(err.Error(), "checksum") {
		t.Errorf("a flipped meta byte: %v", err)
	}

	// A meta whose first group's order hash is wrong, checksum redone.
	r, err := openSegment(vfs.OS, path)
	if err != nil {
		t.Fatal(err)
	}
	m := r.meta
	r.close()
	m.Groups[0].Order ^= 1
	meta := m.appendBinary(nil)
	out := append(slices.Clone(data[:metaAt]), meta...)
	out = binary.LittleEndian.AppendUint32(out, uint32(len(meta)))
	out = append(out, segTrailer...)
	os.WriteFile(bad, out, 0o600)
	r, err = openSegment(vfs.OS, bad)
	if err != nil {
		t.Fatal(err)
	}
	defer r.close()
	dec, _ := zstd.NewReader(nil)
	defer dec.Close()
	err = r.scan(dec, nil, func(entry) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "damaged") {
		t.Errorf("a wrong order hash: %v", err)
	}
}

// copyFixture copies the segments of an older format kept in
// testdata/VERSION into a new data folder: v2 (written by kubetrail at
// aa37925: JSON meta, arrival-order blocks, Bloom filters on large name
// dictionaries, a compacted segment with parts) or v3 (written at cfc90c1:
// groups sorted without their keys stored, a compacted segment with
// parts; see each folder's README.md).
func copyFixture(t *testing.T, version string) string {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join("testdata", version, segmentDir)
	ents, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(dir, segmentDir), 0o700)
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, segmentDir, e.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestReadV2Segments reads the v2 fixture, alone, beside v3 segments, and
// after compaction rewrote it as v3: every answer agrees with a full scan.
func TestReadV2Segments(t *testing.T) {
	dir := copyFixture(t, "v2")
	before := exportAll(t, dir)
	if len(before) != 2700 {
		t.Fatalf("the fixture holds %d events, want 2700", len(before))
	}
	r, err := OpenReader(dir)
	if err != nil {
		t.Fatal(err)
	}
	blooms, parts := 0, 0
	for _, s := range r.segs {
		if s.r.meta.Version != 2 {
			t.Fatalf("%s: version %d", s.r.f.Name(), s.r.meta.Version)
		}
		if s.r.meta.Columns[ColName].BloomLen > 0 {
			blooms++
		}
		parts += len(s.r.meta.Parts)
	}
	if blooms == 0 || parts == 0 {
		t.Fatalf("%d Bloom filters, %d parts: the fixture should have both", blooms, parts)
	}
	extra := []string{"name=pod-7", "name=pod-1000", "name=pod-99999", "name in (pod-5,pod-1200) cluster=prod", "time<2026-11-20T12:00:00Z verb=get"}
	checkSelect(t, dir, r, rand.New(rand.NewPCG(41, 42)), 100, extra...)
	checkStats(t, dir, r)
	r.Close()

	// v3 segments beside them, then one compaction into v3.
	db, err := Open(dir, Options{NoSync: true, WALSegmentBytes: 1, layout: segLayout{groupBytes: 64 << 10, blockBytes: 8 << 10, blockEvents: 8}})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	batches := smallBatches(4, 50)
	if stored, _ := appendAll(t, db, batches); stored != 200 {
		t.Fatalf("%d stored, want 200", stored)
	}
	waitSettled(t, dir)
	all := exportAll(t, dir)
	r, err = db.OpenReader()
	if err != nil {
		t.Fatal(err)
	}
	checkSelect(t, dir, r, rand.New(rand.NewPCG(43, 44)), 60, extra...)
	checkStats(t, dir, r)
	r.Close()
	res, err := db.Compact(context.Background(), Compaction{Below: 4 << 20, MaxSpan: 30 * 24 * time.Hour})
	if err != nil || res.Inputs < 3 {
		t.Fatalf("compaction: %+v %v", res, err)
	}
	if got := exportAll(t, dir); !slices.Equal(got, all) {
		t.Fatalf("compaction changed the events: %d before, %d after", len(all), len(got))
	}
	r, err = OpenReader(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.segs[0].r.meta.Version != segVersion {
		t.Fatalf("compacted segment has version %d", r.segs[0].r.meta.Version)
	}
	checkSelect(t, dir, r, rand.New(rand.NewPCG(45, 46)), 60, extra...)
	checkStats(t, dir, r)
	if stored, dups := appendAll(t, db, batches); stored != 0 || dups != 200 {
		t.Fatalf("re-sent after compaction: %d stored, %d duplicates", stored, dups)
	}
}

// TestReadV3Segments reads the v3 fixture, alone, beside segments of the
// current version, and after compaction rewrote it so: every answer, the events' text among
// them (read by putting each group in order from its columns), agrees
// with a full scan.
func TestReadV3Segments(t *testing.T) {
	dir := copyFixture(t, "v3")
	before := exportAll(t, dir)
	if len(before) != 1800 {
		t.Fatalf("the fixture holds %d events, want 1800", len(before))
	}
	r, err := OpenReader(dir)
	if err != nil {
		t.Fatal(err)
	}
	groups, parts := 0, 0
	for _, s := range r.segs {
		if s.r.meta.Version != 3 {
			t.Fatalf("%s: version %d", s.r.f.Name(), s.r.meta.Version)
		}
		groups += len(s.r.meta.Groups)
		parts += len(s.r.meta.Parts)
	}
	if groups < 10 || parts == 0 {
		t.Fatalf("%d groups, %d parts: the fixture should have many groups and parts", groups, parts)
	}
	extra := []string{"name=pod-7", "name=pod-100", "user=alice", "verb=delete ns=production", "time<2026-11-20T12:00:00Z verb=get"}
	checkSelect(t, dir, r, rand.New(rand.NewPCG(51, 52)), 100, extra...)
	checkStats(t, dir, r)
	for _, s := range r.segs {
		if d := verifySegmentReader(s.r); len(d) > 0 {
			t.Fatalf("verify: %v", d)
		}
	}
	r.Close()

	// Current segments beside them, then one compaction into the current
	// version.
	db, err := Open(dir, Options{NoSync: true, WALSegmentBytes: 1, layout: segLayout{groupBytes: 64 << 10, blockBytes: 8 << 10, blockEvents: 8}})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// Events the fixture does not hold (smallBatches' are in it).
	rng := rand.New(rand.NewPCG(61, 62))
	var batches []*pipeline.Batch
	for b := 0; b < 4; b++ {
		batch := &pipeline.Batch{Cluster: "default", Received: time.Date(2026, 11, 25, 0, 0, b, 0, time.UTC)}
		for i := 0; i < 50; i++ {
			batch.Records = append(batch.Records, genEvent(rng, 10000+b*50+i))
		}
		batches = append(batches, batch)
	}
	if stored, _ := appendAll(t, db, batches); stored != 200 {
		t.Fatalf("%d stored, want 200", stored)
	}
	waitSettled(t, dir)
	all := exportAll(t, dir)
	r, err = db.OpenReader()
	if err != nil {
		t.Fatal(err)
	}
	versions := map[int]int{}
	for _, s := range r.segs {
		versions[s.r.meta.Version]++
	}
	if versions[3] != 2 || versions[segVersion] != 4 {
		t.Fatalf("segments by version: %v, want 2 of v3 and 4 of v%d", versions, segVersion)
	}
	checkSelect(t, dir, r, rand.New(rand.NewPCG(53, 54)), 60, extra...)
	checkStats(t, dir, r)
	r.Close()
	res, err := db.Compact(context.Background(), Compaction{Below: 4 << 20, MaxSpan: 30 * 24 * time.Hour})
	if err != nil || res.Inputs < 3 {
		t.Fatalf("compaction: %+v %v", res, err)
	}
	if got := exportAll(t, dir); !slices.Equal(got, all) {
		t.Fatalf("compaction changed the events: %d before, %d after", len(all), len(got))
	}
	r, err = OpenReader(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for _, s := range r.segs {
		if s.r.meta.Version != segVersion {
			t.Fatalf("after compaction %s has version %d", s.r.f.Name(), s.r.meta.Version)
		}
	}
	checkSelect(t, dir, r, rand.New(rand.NewPCG(55, 56)), 60, extra...)
	checkStats(t, dir, r)
}

// TestReadV4Segments reads the v4 fixture (testdata/v4: text as lines in
// zstd blocks, a compacted segment with parts, Merkle roots, leaf prints
// and the audit ID table), alone and verified, beside v5 segments, and
// after compaction rewrote it all as v5: every answer, the events' text
// and audit ID lookups among them, agrees with a full scan, and export
// gives the same bytes.
func TestReadV4Segments(t *testing.T) {
	dir := copyFixture(t, "v4")
	before := exportAll(t, dir)
	if len(before) != 2400 {
		t.Fatalf("the fixture holds %d events, want 2400", len(before))
	}
	r, err := OpenReader(dir)
	if err != nil {
		t.Fatal(err)
	}
	groups, parts := 0, 0
	for _, s := range r.segs {
		if s.r.meta.Version != 4 || s.r.meta.Trust == nil || s.r.meta.AuditLen == 0 {
			t.Fatalf("%s: version %d, trust %v, audit table %d bytes", s.r.f.Name(), s.r.meta.Version, s.r.meta.Trust != nil, s.r.meta.AuditLen)
		}
		groups += len(s.r.meta.Groups)
		parts += len(s.r.meta.Parts)
	}
	if groups < 10 || parts == 0 {
		t.Fatalf("%d groups, %d parts: the fixture should have many groups and parts", groups, parts)
	}
	extra := []string{"name=pod-7", "name=pod-100", "user=alice", "verb=delete ns=production", "time<2026-11-20T12:00:00Z verb=get"}
	checkSelect(t, dir, r, rand.New(rand.NewPCG(71, 72)), 100, extra...)
	checkStats(t, dir, r)
	for _, s := range r.segs {
		if d := verifySegmentReader(s.r); len(d) > 0 {
			t.Fatalf("verify: %v", d)
		}
	}
	r.Close()

	db, err := Open(dir, Options{NoSync: true, WALSegmentBytes: 1, layout: segLayout{groupBytes: 64 << 10, blockBytes: 8 << 10, blockEvents: 8}})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rng := rand.New(rand.NewPCG(73, 74))
	var batches []*pipeline.Batch
	for b := 0; b < 4; b++ {
		batch := &pipeline.Batch{Cluster: "default", Received: time.Date(2026, 11, 28, 0, 0, b, 0, time.UTC)}
		for i := 0; i < 50; i++ {
			batch.Records = append(batch.Records, genEvent(rng, 40000+b*50+i))
		}
		batches = append(batches, batch)
	}
	if stored, _ := appendAll(t, db, batches); stored != 200 {
		t.Fatalf("%d stored, want 200", stored)
	}
	waitSettled(t, dir)
	all := exportAll(t, dir)
	if !slices.Equal(all[:len(before)], before) {
		t.Fatal("the v4 segments' export changed beside v5 segments")
	}
	r, err = db.OpenReader()
	if err != nil {
		t.Fatal(err)
	}
	versions := map[int]int{}
	for _, s := range r.segs {
		versions[s.r.meta.Version]++
	}
	if versions[4] != 4 || versions[segVersion] != 4 || segVersion != 5 {
		t.Fatalf("segments by version: %v, want 4 of v4 and 4 of v5", versions)
	}
	checkSelect(t, dir, r, rand.New(rand.NewPCG(75, 76)), 60, extra...)
	checkStats(t, dir, r)
	r.Close()
	res, err := db.Compact(context.Background(), Compaction{Below: 4 << 20, MaxSpan: 30 * 24 * time.Hour})
	if err != nil || res.Inputs < 3 {
		t.Fatalf("compaction: %+v %v", res, err)
	}
	if got := exportAll(t, dir); !slices.Equal(got, all) {
		t.Fatalf("compaction changed the events: %d before, %d after", len(all), len(got))
	}
	r, err = OpenReader(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	v5 := 0
	for _, s := range r.segs {
		if s.r.meta.Version == segVersion {
			v5++
		}
		if d := verifySegmentReader(s.r); len(d) > 0 {
			t.Fatalf("verify after compaction: %v", d)
		}
	}
	if v5 == 0 {
		t.Fatal("compaction wrote no v5 segment")
	}
	checkSelect(t, dir, r, rand.New(rand.NewPCG(77, 78)), 60, extra...)
	checkStats(t, dir, r)
}

// checkStats compares StatsOf, with bytes, with sums from a full scan.
func checkStats(t *testing.T, dir string, r *Reader) {
	t.Helper()
	hour := int64(time.Hour / time.Microsecond)
	for _, tc := range []struct {
		filter   string
		by       []Column
		interval int64
	}{
		{"", nil, 0}, {"", []Column{ColUser}, 0}, {"", []Column{ColName}, 0}, {"", []Column{ColUser, ColVerb}, hour},
		{"verb=get", []Column{ColResource}, 0}, {"name=pod-7 or name=pod-1000", []Column{ColCluster}, 0},
		{"code>=400", nil, 24 * hour}, {`"password"`, []Column{ColNamespace}, 0},
	} {
		f, err := compileOrNil(tc.filter)
		if err != nil {
			t.Fatal(err)
		}
		type acc struct{ n, size int64 }
		want := map[string]acc{}
		Scan(dir, ScanOptions{}, func(s Stored) error {
			var ev audit.Event
			audit.DecodeStored(s.Raw, &ev)
			if f != nil && !f.Match(&ev, s.Cluster) {
				return nil
			}
			var row colRow
			columnValues(s.Cluster, &ev, &row)
			var k []string
			if tc.interval > 0 {
				k = append(k, time.UnixMicro(floorTo(s.Time, tc.interval)).String())
			}
			for _, c := range tc.by {
				k = append(k, row[c])
			}
			a := want[strings.Join(k, "\x00")]
			a.n++
			a.size += int64(len(s.Raw))
			want[strings.Join(k, "\x00")] = a
			return nil
		})
		groups, _, err := r.StatsOf(Selection{Filter: f}, StatsOptions{By: tc.by, Interval: tc.interval, Bytes: true})
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]acc{}
		for _, g := range groups {
			var k []string
			if tc.interval > 0 {
				k = append(k, time.UnixMicro(g.Bucket).String())
			}
			k = append(k, g.Key...)
			got[strings.Join(k, "\x00")] = acc{g.Count, g.Bytes}
		}
		if len(got) != len(want) {
			t.Fatalf("%q by %v: %d groups, a full scan %d", tc.filter, tc.by, len(got), len(want))
		}
		for k, w := range want {
			if got[k] != w {
				t.Fatalf("%q by %v: group %q is %+v, a full scan %+v", tc.filter, tc.by, k, got[k], w)
			}
		}
	}
}

// compileOrNil compiles a filter; "" is no filter.
func compileOrNil(src string) (*query.Filter, error) {
	if src == "" {
		return nil, nil
	}
	return query.CompileAt(src, time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC))
}
