package local

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kubetrail/kubetrail/internal/trust"
	"github.com/kubetrail/kubetrail/internal/vfs"
	"github.com/kubetrail/kubetrail/internal/wal"
)

// suiteEvents is the store size of TestVerifyCatchesEverything:
// KUBETRAIL_VERIFY_EVENTS, else 10,000, which the race detector runs in
// make unit; make verify-suite (in make test, so CI) runs 100,000 without
// it, in about 35 s on 2 cores.
func suiteEvents(t *testing.T) int {
	n := 10000
	if s := os.Getenv("KUBETRAIL_VERIFY_EVENTS"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil || n < 4000 {
			t.Fatalf("KUBETRAIL_VERIFY_EVENTS=%q: want a count of at least 4000", s)
		}
	}
	return n
}

// suiteStore is the untouched store of the suite and what an auditor
// holds: the public key and a witness's copy of the checkpoints.
type suiteStore struct {
	dir, witness string
	pub          ed25519.PublicKey
	key          ed25519.PrivateKey
	chain        []ChainPoint
}

// buildSuiteStore stores n events in WAL segments of 1,000 (each sealed
// into its own segment, in groups and blocks small enough to have many),
// signs checkpoints at a quarter, half and all of them (as serve does),
// keeps a witness's copy, lets retention delete the oldest segment with a
// signed record, and stores one more batch left in the WAL: the folder is
// then copied while the store is open, as a crash would leave it.
func buildSuiteStore(t *testing.T, n int) *suiteStore {
	t.Helper()
	s := &suiteStore{dir: t.TempDir()}
	s.pub, s.key, _ = ed25519.GenerateKey(nil)
	build := t.TempDir()
	db := openSmall(t, build)
	appendAll(t, db, smallBatches(n/1000, 1000))
	waitSettled(t, build)
	var total int64
	for _, seg := range liveSegments(t, build) {
		st, _ := os.Stat(seg.path)
		total += st.Size()
	}
	rep := verifyTrust(t, build)
	cps := filepath.Join(build, "checkpoints")
	for _, p := range []ChainPoint{rep.Chain[len(rep.Chain)/4], rep.Chain[len(rep.Chain)/2], rep.Chain[len(rep.Chain)-1]} {
		if err := trust.Append(cps, trust.Sign(s.key, p.Events, p.WAL, p.Head, time.Now())); err != nil {
			t.Fatal(err)
		}
	}
	s.witness = filepath.Join(t.TempDir(), "witness")
	b, _ := os.ReadFile(cps)
	os.WriteFile(s.witness, b, 0o600)
	sign := func(rec string) string { return trust.SignRetired(s.key, rec) }
	if k, _, err := db.Enforce(Retention{MaxBytes: total - 1, Sign: sign}, time.Now()); k != 1 || err != nil {
		t.Fatalf("retention: %d %v", k, err)
	}
	db.Close()
	db, err := Open(build, Options{NoSync: true, SealAfter: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	appendAll(t, db, smallBatches(n/1000+1, 1000)[n/1000:])
	if err := os.CopyFS(s.dir, os.DirFS(build)); err != nil {
		t.Fatal(err)
	}
	s.chain = verifyTrust(t, s.dir).Chain
	return s
}

// findings is what kubetrail verify --pubkey --checkpoint prints for dir
// (internal/cli/verify.go puts the same parts together): damage, tampering,
// checkpoint and RETIRED record findings, as "PATH: reason" lines.
func (s *suiteStore) findings(t *testing.T, dir string) (lines, notes []string) {
	t.Helper()
	rep := verifyTrust(t, dir)
	for _, d := range append(rep.Damage, rep.Tamper...) {
		lines = append(lines, d.String())
	}
	for _, d := range rep.Notes {
		notes = append(notes, d.String())
	}
	own, err := trust.Read(filepath.Join(dir, "checkpoints"))
	if err != nil {
		return append(lines, err.Error()), notes
	}
	wit, _ := trust.Read(s.witness)
	points := make([]trust.Point, len(rep.Chain))
	for i, p := range rep.Chain {
		points[i] = trust.Point(p)
	}
	bad, cpNotes := trust.Check(own, wit, []ed25519.PublicKey{s.pub}, points)
	lines = append(lines, bad...)
	notes = append(notes, cpNotes...)
	recs := make([]trust.Retired, len(rep.Retired))
	for i, r := range rep.Retired {
		recs[i] = trust.Retired(r)
	}
	for _, f := range trust.CheckRetired(recs, []ed25519.PublicKey{s.pub}) {
		lines = append(lines, rep.RetiredPath+": "+f)
	}
	return lines, notes
}

// copyOf is a fresh copy of the untouched store.
func (s *suiteStore) copyOf(t *testing.T) string {
	t.Helper()
	d := t.TempDir()
	if err := os.CopyFS(d, os.DirFS(s.dir)); err != nil {
		t.Fatal(err)
	}
	return d
}

func flipByte(t *testing.T, path string, off int64) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if off < 0 {
		off += int64(len(b))
	}
	b[off] ^= 0x01
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestVerifyCatchesEverything is issue 14's suite: on a store of
// suiteEvents events, one byte flipped in every kind of file verify reads
// (and in every part of a segment), a segment deleted, the WAL cut, events
// swapped, modified, inserted and deleted, checkpoints re-signed, edited
// and rolled back, history rewritten consistently, a forged retirement:
// each is found, and named by the file it is in (and the event, where one
// event changed). An untouched store, and the same store after compaction
// and retention, give no finding. (No false alarm after a crash: the
// crash test's 793 points in crash_test.go.)
func TestVerifyCatchesEverything(t *testing.T) {
	n := suiteEvents(t)
	s := buildSuiteStore(t, n)
	if f, notes := s.findings(t, s.dir); len(f) != 0 {
		t.Fatalf("untouched store: %v", f)
	} else if !slices.ContainsFunc(notes, func(n string) bool { return strings.Contains(n, "1000 events not yet sealed") }) {
		t.Fatalf("untouched store: the WAL's batch is not noted: %v", notes)
	}
	segs := liveSegments(t, s.dir)
	mid := segs[len(segs)/2]
	walPath := filepath.Join(s.dir, walDir)
	ws, _ := wal.ListSegments(walPath)
	if len(ws) != 1 {
		t.Fatalf("%d WAL segments", len(ws))
	}
	walFile := filepath.Base(wal.SegmentPath(walPath, ws[0]))
	rel := func(dir, path string) string { return filepath.Join(dir, strings.TrimPrefix(path, s.dir+"/")) }

	// want runs change on a copy and wants a finding in the file named
	// (relative to the folder) holding each of says.
	want := func(t *testing.T, file string, change func(d string), says ...string) {
		t.Helper()
		d := s.copyOf(t)
		change(d)
		f, _ := s.findings(t, d)
		path := filepath.Join(d, file)
		for _, say := range says {
			if !slices.ContainsFunc(f, func(l string) bool { return strings.HasPrefix(l, path+":") && strings.Contains(l, say) }) {
				t.Fatalf("no finding in %s saying %q; findings: %v", file, say, f)
			}
		}
	}
	segRel := strings.TrimPrefix(mid.path, s.dir+"/")

	t.Run("one byte in each part of a segment", func(t *testing.T) {
		r, err := openSegment(vfs.OS, mid.path)
		if err != nil {
			t.Fatal(err)
		}
		m, metaOff, size := r.meta, r.metaOff, r.size
		r.close()
		parts := map[string]int64{
			"magic": 3, "text block": m.Blocks[0].Off + m.Blocks[0].Len/2,
			"last text block": m.Blocks[len(m.Blocks)-1].Off + 5,
			"group keys":      m.Groups[0].KeysOff + m.Groups[0].KeysLen/2,
			"time column":     m.Time.DictOff + m.Time.IDsLen/2, "received column": m.Received.DictOff + 9,
			"lengths column": m.Lengths.DictOff + m.Lengths.IDsLen - 2,
			"leaf prints":    m.Trust.PrintsOff + m.Trust.PrintsLen/2,
			"meta":           metaOff + 7, "meta trust section": size - 12 - 4 - 40, "trailer": size - 2,
		}
		for c, cm := range m.Columns {
			parts["column "+Column(c).String()] = cm.DictOff + (cm.DictLen+cm.IDsLen)/2
		}
		for name, off := range parts {
			t.Run(name, func(t *testing.T) {
				want(t, segRel, func(d string) { flipByte(t, rel(d, mid.path), off) }, "")
			})
		}
	})
	t.Run("one byte in the MANIFEST", func(t *testing.T) {
		// A digit of a segment's name: that segment is listed and missing.
		want(t, segRel, func(d string) {
			p := filepath.Join(d, segmentDir, "MANIFEST")
			b, _ := os.ReadFile(p)
			i := bytes.Index(b, []byte(filepath.Base(mid.path)))
			flipByte(t, p, int64(i+15))
		}, "not listed in MANIFEST")
	})
	t.Run("one byte in RETIRED", func(t *testing.T) {
		want(t, filepath.Join(segmentDir, retiredName), func(d string) {
			p := filepath.Join(d, segmentDir, retiredName)
			b, _ := os.ReadFile(p)
			flipByte(t, p, int64(bytes.LastIndexByte(b, ' ')-3)) // in HEAD
		}, "is not a retired segment record")
	})
	t.Run("one byte in checkpoints", func(t *testing.T) {
		want(t, "checkpoints", func(d string) {
			p := filepath.Join(d, "checkpoints")
			b, _ := os.ReadFile(p)
			flipByte(t, p, int64(bytes.Index(b, []byte(`"head":"`))+12))
		}, "checkpoints:1: signature does not verify")
	})
	t.Run("one byte in a WAL segment", func(t *testing.T) {
		want(t, filepath.Join(walDir, walFile), func(d string) {
			p := filepath.Join(d, walDir, walFile)
			st, _ := os.Stat(p)
			flipByte(t, p, st.Size()/2)
		}, "checksum")
	})
	t.Run("one byte in the WAL ledger", func(t *testing.T) {
		want(t, filepath.Join(walDir, ledgerName), func(d string) { flipByte(t, filepath.Join(d, walDir, ledgerName), 2) }, "")
	})
	t.Run("segment deleted with its MANIFEST line", func(t *testing.T) {
		next := segs[len(segs)/2+1]
		want(t, strings.TrimPrefix(next.path, s.dir+"/"), func(d string) {
			os.Remove(rel(d, mid.path))
			updateManifest(vfs.OS, filepath.Join(d, segmentDir), nil, []string{rel(d, mid.path)}, true)
		}, "hash chain broken")
	})
	t.Run("segment deleted", func(t *testing.T) {
		want(t, segRel, func(d string) { os.Remove(rel(d, mid.path)) }, "missing")
	})
	t.Run("segment truncated", func(t *testing.T) {
		want(t, segRel, func(d string) {
			p := rel(d, mid.path)
			st, _ := os.Stat(p)
			os.Truncate(p, st.Size()/2)
		}, "")
	})
	t.Run("WAL cut inside its last record", func(t *testing.T) {
		// What a crash leaves: noted as a torn tail, not tampering.
		d := s.copyOf(t)
		p := filepath.Join(d, walDir, walFile)
		st, _ := os.Stat(p)
		os.Truncate(p, st.Size()-100)
		f, notes := s.findings(t, d)
		if len(f) != 0 || !slices.ContainsFunc(notes, func(n string) bool { return strings.Contains(n, p+": ") && strings.Contains(n, "torn tail") }) {
			t.Fatalf("findings %v, notes %v: want a torn tail noted", f, notes)
		}
	})
	t.Run("WAL segment deleted", func(t *testing.T) {
		want(t, filepath.Join(walDir, walFile), func(d string) { os.Remove(filepath.Join(d, walDir, walFile)) }, "")
	})
	event := func(change func(evs []entry) []entry) func(d string) {
		return func(d string) { rewriteSegment(t, rel(d, mid.path), change) }
	}
	t.Run("two events swapped", func(t *testing.T) {
		want(t, segRel, event(func(evs []entry) []entry {
			evs[10], evs[500] = evs[500], evs[10]
			return evs
		}), fmt.Sprintf("events %d:10 (auditID", mid.first), fmt.Sprintf("and %d:500 (auditID", mid.first), "exchanged places")
	})
	t.Run("one event modified", func(t *testing.T) {
		want(t, segRel, event(func(evs []entry) []entry {
			evs[777].raw = bytes.Replace(evs[777].raw, []byte(`"pod-`), []byte(`"pox-`), 1)
			return evs
		}), fmt.Sprintf("event %d:777 (auditID", mid.first), "was modified or replaced")
	})
	t.Run("one event inserted", func(t *testing.T) {
		want(t, segRel, event(func(evs []entry) []entry { return slices.Insert(evs, 3, evs[9]) }), "")
	})
	t.Run("one event deleted", func(t *testing.T) {
		want(t, segRel, event(func(evs []entry) []entry { return slices.Delete(evs, 3, 4) }), "")
	})
	t.Run("history rewritten consistently", func(t *testing.T) {
		// The newest segment's event and root: only the checkpoint tells.
		last := segs[len(segs)-1]
		want(t, "checkpoints", func(d string) {
			rewrite(t, rel(d, last.path), func(evs []entry) []entry {
				evs[1].raw = bytes.Replace(evs[1].raw, []byte(`"pod-`), []byte(`"pox-`), 1)
				return evs
			}, reroot)
		}, "history was rewritten")
	})
	t.Run("checkpoints re-signed with another key", func(t *testing.T) {
		_, other, _ := ed25519.GenerateKey(nil)
		want(t, "checkpoints", func(d string) {
			p := filepath.Join(d, "checkpoints")
			lines, _ := trust.Read(p)
			os.Remove(p)
			for _, l := range lines {
				h, _ := hex.DecodeString(l.Head)
				trust.Append(p, trust.Sign(other, l.Events, l.WAL, [32]byte(h), l.Time))
			}
		}, "checkpoints:1: signature does not verify", "checkpoints:3: signature does not verify")
	})
	t.Run("checkpoints rolled back", func(t *testing.T) {
		// Named in the witness's copy: the checkpoints the folder lost.
		d := s.copyOf(t)
		p := filepath.Join(d, "checkpoints")
		b, _ := os.ReadFile(p)
		os.WriteFile(p, b[:bytes.IndexByte(b, '\n')+1], 0o600)
		f, _ := s.findings(t, d)
		for _, line := range []string{":2: ", ":3: "} {
			if !slices.ContainsFunc(f, func(l string) bool {
				return strings.HasPrefix(l, s.witness+line) && strings.Contains(l, "the witness holds this checkpoint")
			}) {
				t.Fatalf("no finding for witness line %s: %v", line, f)
			}
		}
	})
	t.Run("checkpoint edited", func(t *testing.T) {
		want(t, "checkpoints", func(d string) {
			p := filepath.Join(d, "checkpoints")
			lines, _ := trust.Read(p)
			os.Remove(p)
			for i, l := range lines {
				if i == 1 {
					l.Events--
				}
				b, _ := json.Marshal(l.Checkpoint)
				f, _ := os.OpenFile(p, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
				f.Write(append(b, '\n'))
				f.Close()
			}
		}, "checkpoints:2: signature does not verify")
	})
	t.Run("segment deleted as if by retention", func(t *testing.T) {
		// The attacker writes the record retention would, without the key.
		want(t, filepath.Join(segmentDir, retiredName), func(d string) {
			p := rel(d, segs[0].path)
			r, err := retiredOf(vfs.OS, p)
			if err != nil {
				t.Fatal(err)
			}
			if err := retire(vfs.OS, filepath.Join(d, segmentDir), []retiredSeg{r}, nil, true); err != nil {
				t.Fatal(err)
			}
			updateManifest(vfs.OS, filepath.Join(d, segmentDir), nil, []string{p}, true)
			os.Remove(p)
		}, "the record of "+filepath.Base(segs[0].path)+" is not signed")
	})

	t.Run("no false alarm after compaction and retention", func(t *testing.T) {
		d := s.copyOf(t)
		db, err := Open(d, Options{NoSync: true, layout: segLayout{groupBytes: 64 << 10, blockBytes: 8 << 10, blockEvents: 8}})
		if err != nil {
			t.Fatal(err)
		}
		// Segments merged three or so at a time.
		var biggest int64
		for _, seg := range liveSegments(t, d) {
			st, _ := os.Stat(seg.path)
			biggest = max(biggest, st.Size())
		}
		res, err := db.Compact(context.Background(), Compaction{Below: 3*biggest + 1, MaxSpan: 1 << 62})
		if err != nil || res.Outputs == 0 {
			t.Fatalf("compaction: %+v %v", res, err)
		}
		segs := liveSegments(t, d)
		if r, err := openSegment(vfs.OS, segs[0].path); err != nil || len(r.meta.Parts) < 2 || len(segs) < 2 {
			t.Fatalf("retention must delete a compacted segment and keep others: %d segments, %v", len(segs), err)
		} else {
			r.close()
		}
		st, _ := os.Stat(segs[0].path)
		var total int64
		for _, s := range segs {
			st, _ := os.Stat(s.path)
			total += st.Size()
		}
		if k, _, err := db.Enforce(Retention{MaxBytes: total - st.Size()/2, Sign: func(rec string) string { return trust.SignRetired(s.key, rec) }}, time.Now()); k != 1 || err != nil {
			t.Fatalf("retention: %d %v", k, err)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		if f, _ := s.findings(t, d); len(f) != 0 {
			t.Fatalf("after compaction and retention: %v", f)
		}
		// The chain through the compacted segments is the chain before,
		// but for the points inside the segment retention deleted.
		after := verifyTrust(t, d).Chain
		last := s.chain[len(s.chain)-1]
		for _, p := range after {
			if i := slices.IndexFunc(s.chain, func(q ChainPoint) bool { return q.WAL == p.WAL }); p.WAL <= last.WAL && p.Retired == 0 && (i < 0 || s.chain[i] != p) {
				t.Fatalf("after compaction the chain point of WAL segment %d changed", p.WAL)
			}
		}
		if !slices.ContainsFunc(after, func(p ChainPoint) bool { return p.WAL == last.WAL && p.Head == last.Head }) {
			t.Fatal("after compaction the newest chain point is gone")
		}
	})
}

// TestVerifyInParallelAsInSeries: Verify checks segments on GOMAXPROCS
// goroutines and reads each one's text once for its checksums and its
// Merkle roots; with one goroutine or four, over a store with two damaged
// segments and one whose events were modified, it reports the same
// findings, chain and totals, and tells progress every file in the same
// order, each once.
func TestVerifyInParallelAsInSeries(t *testing.T) {
	s := buildSuiteStore(t, 8000)
	d := s.copyOf(t)
	segs := liveSegments(t, d)
	if len(segs) < 5 {
		t.Fatalf("%d segments, want at least 5", len(segs))
	}
	// One byte in a text block of each: in the last block, the pass over
	// the text has read most events before it meets the damage.
	for i, seg := range []segmentFile{segs[1], segs[3]} {
		r, err := openSegment(vfs.OS, seg.path)
		if err != nil {
			t.Fatal(err)
		}
		b := r.meta.Blocks[i*(len(r.meta.Blocks)-1)]
		r.close()
		flipByte(t, seg.path, b.Off+b.Len/2)
	}
	rewriteSegment(t, segs[len(segs)-1].path, func(evs []entry) []entry {
		evs[7].raw = bytes.Replace(evs[7].raw, []byte(`"pod-`), []byte(`"pox-`), 1)
		return evs
	})
	run := func(procs int) (*VerifyReport, []string) {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
		var seen []string
		rep, err := Verify(d, func(p string) { seen = append(seen, p) })
		if err != nil {
			t.Fatal(err)
		}
		return rep, seen
	}
	one, seenOne := run(1)
	four, seenFour := run(4)
	// Damaged text is damage, not tampering: the roots of a segment
	// whose text cannot be read are not compared.
	if len(one.Damage) != 2 || one.Damage[0].Path != segs[1].path || one.Damage[1].Path != segs[3].path {
		t.Fatalf("damage %v: want segments %s and %s", one.Damage, segs[1].path, segs[3].path)
	}
	if len(one.Tamper) != 1 || one.Tamper[0].Path != segs[len(segs)-1].path || !strings.Contains(one.Tamper[0].Reason, "was modified or replaced") {
		t.Fatalf("tamper %v: want the modified event of %s only", one.Tamper, segs[len(segs)-1].path)
	}
	if !reflect.DeepEqual(one, four) {
		t.Fatalf("four goroutines report\n%+v\none reports\n%+v", four, one)
	}
	if !slices.Equal(seenOne, seenFour) {
		t.Fatalf("progress: four goroutines %v, one %v", seenFour, seenOne)
	}
	for i, seg := range segs {
		if !slices.Contains(seenOne, seg.path) {
			t.Fatalf("progress never told segment %d, %s: %v", i, seg.path, seenOne)
		}
	}
	if !slices.IsSorted(seenOne[len(seenOne)-len(segs):]) {
		t.Fatalf("progress told the segments out of order: %v", seenOne)
	}
}
