package local

import (
	"encoding/binary"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kubetrail/kubetrail/internal/pipeline"
	"github.com/kubetrail/kubetrail/internal/vfs"
)

// Byte accounting of a data folder (docs/adr/0023, issue 12): where a
// segment's bytes go, part by part, so that what to cut is measured, not
// guessed. TestSegmentPartsTile checks the accounting on small v4 and v5
// stores; TestByteAccounting prints it for the folder named by
// KUBETRAIL_BENCH_DATA, with each part beside `zstd -3` of the raw log
// when KUBETRAIL_BENCH_ZSTD gives that size in bytes:
//
//	KUBETRAIL_BENCH_DATA=/tmp/data KUBETRAIL_BENCH_ZSTD=178677350 \
//	  go test ./internal/store/local -run TestByteAccounting -v

// byteRun is a named run of a segment file's bytes.
type byteRun struct {
	name    string
	off, n  int64
	inMeta  bool // a share of the meta, measured by size: off is nominal
	section string
}

// accountSegment returns the parts of a v3-v5 segment, in file order; they
// tile the file (checked: an error otherwise). A v5 block is split into
// its rows (with the chunk length before them and their CRC) and its
// bodies (with their CRC); the meta into its groups, blocks and columns
// tables, its trust section and the rest, by how much each adds to it.
func accountSegment(r *segmentReader) ([]byteRun, error) {
	m := &r.meta
	if m.Version < 3 {
		return nil, fmt.Errorf("segment version %d: no accounting", m.Version)
	}
	parts := []byteRun{{name: "magic", section: "other", n: int64(len(segMagic))}}
	add := func(section, name string, off, n int64) {
		if n > 0 {
			parts = append(parts, byteRun{section: section, name: name, off: off, n: n})
		}
	}
	for _, g := range m.Groups {
		add("text", "text head", g.HeadOff, g.HeadLen)
		for _, b := range m.Blocks[g.Block0 : g.Block0+g.Blocks] {
			if m.Version < 5 {
				add("text", "text blocks (v4 zstd lines)", b.Off, b.Len)
				continue
			}
			rows, err := v5RowsLen(r, b)
			if err != nil {
				return nil, err
			}
			add("text", "text rows", b.Off, rows)
			add("text", "text bodies", b.Off+rows, b.Len-rows)
		}
		add("keys", "group keys", g.KeysOff, g.KeysLen)
	}
	for _, c := range m.Columns {
		if c.Kind == kindPostings {
			add("columns", "col "+c.Name+" postings index", c.DictOff, c.DictLen)
			add("columns", "col "+c.Name+" postings chunks", c.DictOff+c.DictLen, c.IDsLen)
			continue
		}
		add("columns", "col "+c.Name+" dict", c.DictOff, c.DictLen)
		add("columns", "col "+c.Name+" ids", c.DictOff+c.DictLen, c.IDsLen)
		add("columns", "col "+c.Name+" rare", c.DictOff+c.DictLen+c.IDsLen, c.RareLen)
	}
	add("times", "time column", m.Time.DictOff, m.Time.IDsLen)
	add("times", "received column", m.Received.DictOff, m.Received.IDsLen)
	add("times", "lengths column", m.Lengths.DictOff, m.Lengths.IDsLen)
	if t := m.Trust; t != nil {
		add("trust", "leaf prints", t.PrintsOff, t.PrintsLen)
	}
	add("auditids", "audit id table", m.AuditOff, m.AuditLen)
	// The meta, by what each table adds to it.
	full := int64(len(m.appendBinary(nil)))
	without := func(f func(*segmentMeta)) int64 {
		c := *m
		f(&c)
		return full - int64(len(c.appendBinary(nil)))
	}
	shares := []struct {
		name string
		n    int64
	}{
		{"meta groups table", without(func(c *segmentMeta) { c.Groups = nil })},
		{"meta blocks table", without(func(c *segmentMeta) { c.Blocks = nil })},
		{"meta columns table", without(func(c *segmentMeta) { c.Columns = nil })},
		{"meta trust (Merkle roots, chain head)", without(func(c *segmentMeta) { c.Trust = nil })},
	}
	off, rest := r.metaOff, full
	for _, s := range shares {
		parts = append(parts, byteRun{section: "meta", name: s.name, off: off, n: s.n, inMeta: true})
		off += s.n
		rest -= s.n
	}
	parts = append(parts, byteRun{section: "meta", name: "meta rest", off: off, n: rest, inMeta: true})
	parts = append(parts, byteRun{section: "other", name: "trailer", off: r.size - 12, n: 12})
	slices.SortStableFunc(parts, func(a, b byteRun) int { return int(a.off - b.off) })
	at := int64(0)
	for _, p := range parts {
		if p.off != at {
			return nil, fmt.Errorf("%s: part %q at %d, the one before ended at %d", r.f.Name(), p.name, p.off, at)
		}
		at += p.n
	}
	if at != r.size {
		return nil, fmt.Errorf("%s: parts end at %d, the file at %d", r.f.Name(), at, r.size)
	}
	return parts, nil
}

// v5RowsLen returns how many of a v5 block's bytes are its rows: the
// chunk length, the rows' zstd frame and its CRC (textcodec's layout with
// BodiesApart); the bodies' frame and CRC follow.
func v5RowsLen(r *segmentReader, b blockMeta) (int64, error) {
	var head [binary.MaxVarintLen64]byte
	h := head[:min(int64(len(head)), b.Len)]
	if err := r.readAt(h, b.Off); err != nil {
		return 0, err
	}
	l, n := binary.Uvarint(h)
	if n <= 0 || int64(n)+int64(l) > b.Len {
		return 0, fmt.Errorf("%s: text block at %d: rows chunk length is damaged", r.f.Name(), b.Off)
	}
	rows := int64(n) + int64(l)
	if rows < b.Len {
		// The bodies are a zstd frame: a wrong length lands elsewhere.
		var z [4]byte
		if err := r.readAt(z[:], b.Off+rows); err != nil {
			return 0, err
		}
		if binary.LittleEndian.Uint32(z[:]) != zstdMagic {
			return 0, fmt.Errorf("%s: text block at %d: no bodies frame after its rows", r.f.Name(), b.Off)
		}
	}
	return rows, nil
}

// byteAccount sums a folder's bytes by part name over its segments, and
// its other files by name.
type byteAccount struct {
	events, segments int
	segBytes         int64
	parts            map[string]int64
	section          map[string]string
	files            map[string]int64 // other files: MANIFEST, checkpoints, WAL, keys
	versions         map[int]int
}

func accountFolder(dir string) (*byteAccount, error) {
	a := &byteAccount{parts: map[string]int64{}, section: map[string]string{}, files: map[string]int64{}, versions: map[int]int{}}
	segs, err := listSegments(vfs.OS, filepath.Join(dir, segmentDir))
	if err != nil {
		return nil, err
	}
	live := map[string]bool{}
	for _, s := range segs {
		r, err := openSegment(vfs.OS, s.path)
		if err != nil {
			return nil, err
		}
		parts, err := accountSegment(r)
		r.close()
		if err != nil {
			return nil, err
		}
		a.events += r.meta.Count
		a.segments++
		a.segBytes += r.size
		a.versions[r.meta.Version]++
		for _, p := range parts {
			a.parts[p.name] += p.n
			a.section[p.name] = p.section
		}
		live[s.path] = true
	}
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || live[path] {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		if strings.HasPrefix(rel, "wal"+string(filepath.Separator)) {
			rel = "wal/*"
		}
		a.files[rel] += info.Size()
		return nil
	})
	return a, err
}

// table renders the account: by part, by section, and the folder, in
// bytes, bytes per event, share of the folder and, with zstd3 > 0, as a
// multiple of `zstd -3` of the raw log.
func (a *byteAccount) table(zstd3 int64) string {
	var sb strings.Builder
	var folder int64 = a.segBytes
	for _, n := range a.files {
		folder += n
	}
	row := func(name string, n int64) {
		x := ""
		if zstd3 > 0 {
			x = fmt.Sprintf(" | %.4f", float64(n)/float64(zstd3))
		}
		fmt.Fprintf(&sb, "| %s | %s | %.2f | %.1f%%%s |\n", name, commas(n), float64(n)/float64(max(a.events, 1)), 100*float64(n)/float64(folder), x)
	}
	header := func(first string) {
		fmt.Fprintf(&sb, "\n| %s | bytes | B/event | of folder |", first)
		if zstd3 > 0 {
			sb.WriteString(" x zstd -3 |")
		}
		sb.WriteString("\n|---|---|---|---|")
		if zstd3 > 0 {
			sb.WriteString("---|")
		}
		sb.WriteString("\n")
	}
	fmt.Fprintf(&sb, "%d events in %d segments (versions %v)\n", a.events, a.segments, a.versions)
	header("part")
	names := make([]string, 0, len(a.parts))
	for n := range a.parts {
		names = append(names, n)
	}
	slices.SortFunc(names, func(x, y string) int { return int(a.parts[y] - a.parts[x]) })
	for _, n := range names {
		row(n, a.parts[n])
	}
	header("section")
	secs := map[string]int64{}
	for n, b := range a.parts {
		secs[a.section[n]] += b
	}
	cols := map[string]int64{}
	for n, b := range a.parts {
		if f := strings.Fields(n); f[0] == "col" {
			cols[f[1]] += b
		}
	}
	for _, s := range []string{"text", "keys", "columns", "times", "trust", "auditids", "meta", "other"} {
		row(s, secs[s])
	}
	row("segments", a.segBytes)
	files := make([]string, 0, len(a.files))
	for f := range a.files {
		files = append(files, f)
	}
	slices.Sort(files)
	for _, f := range files {
		row(f, a.files[f])
	}
	row("folder", folder)
	header("column (all its parts)")
	cnames := make([]string, 0, len(cols))
	for c := range cols {
		cnames = append(cnames, c)
	}
	slices.SortFunc(cnames, func(x, y string) int { return int(cols[y] - cols[x]) })
	for _, c := range cnames {
		row(c, cols[c])
	}
	return sb.String()
}

// commas writes n with thousands separators.
func commas(n int64) string {
	s := strconv.FormatInt(n, 10)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// TestByteAccounting prints the byte accounting of the folder named by
// KUBETRAIL_BENCH_DATA (see the top of this file).
func TestByteAccounting(t *testing.T) {
	dir := os.Getenv("KUBETRAIL_BENCH_DATA")
	if dir == "" {
		t.Skip("KUBETRAIL_BENCH_DATA names no data folder")
	}
	var zstd3 int64
	if s := os.Getenv("KUBETRAIL_BENCH_ZSTD"); s != "" {
		var err error
		if zstd3, err = strconv.ParseInt(s, 10, 64); err != nil {
			t.Fatalf("KUBETRAIL_BENCH_ZSTD: %v", err)
		}
	}
	a, err := accountFolder(dir)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Print(a.table(zstd3))
}

// TestSegmentPartsTile accounts small v4 and v5 stores: the parts tile
// every segment (accountSegment checks it), the parts a format has are
// there and no other's, and each column and table is counted.
func TestSegmentPartsTile(t *testing.T) {
	for _, version := range []int{4, segVersion} {
		dir := t.TempDir()
		db, err := Open(dir, Options{NoSync: true, WALSegmentBytes: 256 << 10, layout: segLayout{groupBytes: 32 << 10, blockBytes: 4 << 10, blockEvents: 4, version: version}})
		if err != nil {
			t.Fatal(err)
		}
		rng := rand.New(rand.NewPCG(91, uint64(version)))
		var batches []*pipeline.Batch
		for b := 0; b < 12; b++ {
			batch := &pipeline.Batch{Cluster: "default", Received: time.Date(2026, 11, 28, 0, 0, b, 0, time.UTC)}
			for i := 0; i < 100; i++ {
				// genEvent's have bodies, benchEvent's many names (a
				// postings column).
				rec := genEvent(rng, b*100+i)
				if i%2 == 1 {
					rec = benchEvent(rng, b*100+i)
				}
				batch.Records = append(batch.Records, rec)
			}
			batches = append(batches, batch)
		}
		appendAll(t, db, batches)
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		a, err := accountFolder(dir)
		if err != nil {
			t.Fatalf("v%d: %v", version, err)
		}
		if a.versions[version] != a.segments || a.segments < 2 || a.events != 1200 {
			t.Fatalf("v%d: %d events in segments of versions %v", version, a.events, a.versions)
		}
		want := []string{"text head", "text rows", "text bodies"}
		notWant := "text blocks (v4 zstd lines)"
		if version == 4 {
			want, notWant = []string{notWant}, "text rows"
		}
		want = append(want, "group keys", "time column", "received column", "lengths column", "leaf prints",
			"audit id table", "meta groups table", "meta blocks table", "meta columns table",
			"meta trust (Merkle roots, chain head)", "meta rest", "col user dict", "col user ids", "col name postings chunks")
		for _, p := range want {
			if a.parts[p] <= 0 {
				t.Errorf("v%d: no bytes of %q: %v", version, p, a.parts)
			}
		}
		if a.parts[notWant] != 0 {
			t.Errorf("v%d: %d bytes of %q", version, a.parts[notWant], notWant)
		}
		if tab := a.table(0); !strings.Contains(tab, "| folder | "+commas(a.segBytes+a.files["segments/MANIFEST"]+a.files["wal/*"])) {
			t.Errorf("v%d: the table's folder is not the segments, MANIFEST and WAL:\n%s", version, tab)
		}
	}
}
