package local

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/kubetrail/kubetrail/internal/trust"
	"github.com/kubetrail/kubetrail/internal/vfs"
)

// mth is RFC 6962's Merkle tree hash, written from section 2.1.
func mth(leaves [][]byte) hash {
	switch len(leaves) {
	case 0:
		return sha256.Sum256(nil)
	case 1:
		return leafHash(leaves[0])
	}
	k := 1
	for k*2 < len(leaves) {
		k *= 2
	}
	return nodeHash(mth(leaves[:k]), mth(leaves[k:]))
}

func TestMerkleIsRFC6962(t *testing.T) {
	var leaves [][]byte
	for n := 0; n <= 70; n++ {
		var m merkle
		for _, l := range leaves {
			m.add(l)
		}
		if m.root() != mth(leaves) {
			t.Fatalf("%d leaves: root differs from RFC 6962's", n)
		}
		leaves = append(leaves, []byte{byte(n), 'x'})
	}
	// The empty tree and the empty leaf, the known answers of RFC 6962
	// implementations (Certificate Transparency's test vectors).
	var m merkle
	if hex.EncodeToString(func() []byte { r := m.root(); return r[:] }()) != "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" {
		t.Fatal("empty tree")
	}
	m.add(nil)
	if r := m.root(); hex.EncodeToString(r[:]) != "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d" {
		t.Fatalf("empty leaf: %x", r)
	}
}

// tamperStore stores 3,000 events in 60 segments and closes the store.
func tamperStore(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	db := openSmall(t, dir)
	appendAll(t, db, smallBatches(60, 50))
	waitSettled(t, dir)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	return dir
}

func verifyTrust(t *testing.T, dir string) *VerifyReport {
	t.Helper()
	rep, err := Verify(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// rewriteSegment replaces the segment at path by one holding the events
// change returns, with the same WAL range, parts, trust section and (when
// the count is the same) leaf prints, and every checksum right: what an
// attacker who knows the format and edits events does.
func rewriteSegment(t *testing.T, path string, change func([]entry) []entry) {
	t.Helper()
	rewrite(t, path, change, keepPrints)
}

// How rewrite treats what is sealed with the events.
type rewriteMode int

const (
	keepPrints rewriteMode = iota // the old prints and roots
	newPrints                     // prints of the changed events, the old roots
	reroot                        // prints and the (one) root of the changed events
)

// rewrite is rewriteSegment with the prints and roots mode says.
func rewrite(t *testing.T, path string, change func([]entry) []entry, mode rewriteMode) {
	t.Helper()
	r, err := openSegment(vfs.OS, path)
	if err != nil {
		t.Fatal(err)
	}
	dec, _ := zstd.NewReader(nil)
	defer dec.Close()
	var evs []entry
	if err := r.scan(dec, nil, func(e entry) error {
		e.raw = slices.Clone(e.raw)
		evs = append(evs, e)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	prints, err := r.readPrints(dec)
	if err != nil {
		t.Fatal(err)
	}
	meta := r.meta
	r.close()
	evs = change(evs)
	enc, _ := zstd.NewWriter(nil)
	w, err := newSegmentWriter(vfs.OS, filepath.Dir(path), meta.WALFirst, meta.WALLast, enc, segLayout{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		if err := w.add(e, false); err != nil {
			t.Fatal(err)
		}
	}
	w.meta.Parts, w.meta.Trust = meta.Parts, meta.Trust
	if mode == keepPrints && len(prints) == len(w.prints) {
		w.prints = prints
	}
	if mode == reroot {
		forged := *meta.Trust
		forged.Roots = []hash{w.tree.root()}
		w.meta.Trust = &forged
	}
	if _, err := w.finish(true); err != nil {
		t.Fatal(err)
	}
	if d := verifySegment(vfs.OS, path); len(d) != 0 {
		t.Fatalf("rewritten segment fails its checksums: %v", d)
	}
}

func liveSegments(t *testing.T, dir string) []segmentFile {
	t.Helper()
	segs, err := listSegments(vfs.OS, filepath.Join(dir, segmentDir))
	if err != nil {
		t.Fatal(err)
	}
	return segs
}

// wantTamper asserts that verify finds exactly one thing altered, in the
// file named, with a reason holding want, and no damage.
func wantTamper(t *testing.T, rep *VerifyReport, path, want string) {
	t.Helper()
	if len(rep.Damage) != 0 {
		t.Fatalf("damage %v: checksums were meant to hold", rep.Damage)
	}
	if len(rep.Tamper) != 1 || rep.Tamper[0].Path != path || !strings.Contains(rep.Tamper[0].Reason, want) {
		t.Fatalf("tamper findings %v, want one in %s saying %q", rep.Tamper, path, want)
	}
}

func TestVerifyFindsTampering(t *testing.T) {
	dir := tamperStore(t)
	rep := verifyTrust(t, dir)
	if len(rep.Damage)+len(rep.Tamper) != 0 || len(rep.Chain) != 60 || rep.Chain[59].Events != 3000 {
		t.Fatalf("untouched store: damage %v, tamper %v, %d chain points", rep.Damage, rep.Tamper, len(rep.Chain))
	}
	for _, n := range rep.Notes {
		if strings.Contains(n.Reason, "not covered") || strings.Contains(n.Reason, "not linked") {
			t.Fatalf("untouched store: %v", n)
		}
	}
	copyStore := func(t *testing.T) string {
		t.Helper()
		to := t.TempDir()
		if err := os.CopyFS(to, os.DirFS(dir)); err != nil {
			t.Fatal(err)
		}
		return to
	}
	t.Run("modified event", func(t *testing.T) {
		d := copyStore(t)
		s := liveSegments(t, d)[20]
		var id string
		rewriteSegment(t, s.path, func(evs []entry) []entry {
			evs[7].raw = bytes.Replace(evs[7].raw, []byte(`"pod-`), []byte(`"pox-`), 1)
			id = auditIDOf(evs[7].raw)
			return evs
		})
		// Named by its position and auditID, not only its range.
		wantTamper(t, verifyTrust(t, d), s.path, fmt.Sprintf("events 0-49 (WAL segment %d) do not give the Merkle root sealed with them: an event was modified, inserted, deleted or reordered; event %d:7 (auditID %q, segment ordinal 7) was modified or replaced", s.first, s.first, id))
	})
	t.Run("modified event and its leaf print", func(t *testing.T) {
		// The prints rewritten too: the root still tells, the event
		// cannot be named.
		d := copyStore(t)
		seg := liveSegments(t, d)[20].path
		rewrite(t, seg, func(evs []entry) []entry {
			evs[7].raw = bytes.Replace(evs[7].raw, []byte(`"pod-`), []byte(`"pox-`), 1)
			return evs
		}, newPrints)
		wantTamper(t, verifyTrust(t, d), seg, "reordered; every event still gives the leaf print sealed with it, so the one changed cannot be named")
	})
	t.Run("swapped events", func(t *testing.T) {
		d := copyStore(t)
		s := liveSegments(t, d)[30]
		rewriteSegment(t, s.path, func(evs []entry) []entry {
			evs[3], evs[4] = evs[4], evs[3]
			return evs
		})
		wantTamper(t, verifyTrust(t, d), s.path, fmt.Sprintf("modified, inserted, deleted or reordered; events %d:3 (auditID", s.first))
		wantTamper(t, verifyTrust(t, d), s.path, ") exchanged places")
	})
	t.Run("altered leaf prints", func(t *testing.T) {
		// Events untouched, prints changed: the root holds, the prints
		// do not, and that is tampering too.
		d := copyStore(t)
		seg := liveSegments(t, d)[25].path
		rewrite(t, seg, func(evs []entry) []entry {
			evs[2].raw = bytes.Replace(evs[2].raw, []byte(`"pod-`), []byte(`"pox-`), 1)
			return evs
		}, newPrints)
		rewriteSegment(t, seg, func(evs []entry) []entry {
			evs[2].raw = bytes.Replace(evs[2].raw, []byte(`"pox-`), []byte(`"pod-`), 1)
			return evs
		})
		wantTamper(t, verifyTrust(t, d), seg, "give the Merkle root sealed with them, but 1 of their leaf prints differ: the prints were altered")
	})
	t.Run("deleted event", func(t *testing.T) {
		d := copyStore(t)
		seg := liveSegments(t, d)[5].path
		rewriteSegment(t, seg, func(evs []entry) []entry { return evs[1:] })
		// The segment's parts now say 50 events where 49 are: the meta
		// check refuses it before the roots are computed.
		rep := verifyTrust(t, d)
		if len(rep.Damage)+len(rep.Tamper) == 0 {
			t.Fatal("a deleted event went unnoticed")
		}
	})
	t.Run("deleted segment and its MANIFEST line", func(t *testing.T) {
		d := copyStore(t)
		segs := liveSegments(t, d)
		gone := segs[10].path
		if err := os.Remove(gone); err != nil {
			t.Fatal(err)
		}
		segDir := filepath.Join(d, segmentDir)
		if err := updateManifest(vfs.OS, segDir, nil, []string{gone}, true); err != nil {
			t.Fatal(err)
		}
		wantTamper(t, verifyTrust(t, d), segs[11].path, "hash chain broken")
	})
	t.Run("deleted first segment", func(t *testing.T) {
		d := copyStore(t)
		segs := liveSegments(t, d)
		os.Remove(segs[0].path)
		updateManifest(vfs.OS, filepath.Join(d, segmentDir), nil, []string{segs[0].path}, true)
		wantTamper(t, verifyTrust(t, d), segs[1].path, "not recorded in RETIRED")
	})
	t.Run("reordered segments", func(t *testing.T) {
		// Two segments' events exchanged, each file keeping its name and
		// trust section: each one's roots no longer hold.
		d := copyStore(t)
		segs := liveSegments(t, d)
		a, b := segs[40].path, segs[41].path
		var evA, evB []entry
		rewriteSegment(t, a, func(e []entry) []entry { evA = e; return e })
		rewriteSegment(t, b, func(e []entry) []entry { evB = e; return e })
		rewriteSegment(t, a, func([]entry) []entry { return evB })
		rewriteSegment(t, b, func([]entry) []entry { return evA })
		rep := verifyTrust(t, d)
		if len(rep.Tamper) != 2 || rep.Tamper[0].Path != a || rep.Tamper[1].Path != b {
			t.Fatalf("tamper %v, want %s and %s", rep.Tamper, a, b)
		}
	})
	t.Run("compaction and retention", func(t *testing.T) {
		d := copyStore(t)
		db := openSmall(t, d)
		defer db.Close()
		res, err := db.Compact(context.Background(), Compaction{Below: 64 << 10})
		if err != nil || res.Outputs == 0 {
			t.Fatalf("compaction: %+v %v", res, err)
		}
		after := verifyTrust(t, d)
		if len(after.Damage)+len(after.Tamper) != 0 {
			t.Fatalf("after compaction: damage %v, tamper %v", after.Damage, after.Tamper)
		}
		// The chain goes through a compacted segment as through its
		// inputs: the same heads after the same WAL segments.
		if !slices.Equal(after.Chain, rep.Chain) {
			t.Fatalf("compaction changed the chain: %d points, want %d", len(after.Chain), len(rep.Chain))
		}
		segs := liveSegments(t, d)
		if len(segs) < 2 {
			t.Fatalf("%d segments after compaction", len(segs))
		}
		// Retention of the oldest segment is recorded: no finding.
		var total int64
		for _, s := range segs {
			st, _ := os.Stat(s.path)
			total += st.Size()
		}
		n, _, err := db.Enforce(Retention{MaxBytes: total - 1}, time.Now())
		if err != nil || n != 1 {
			t.Fatalf("retention: %d, %v", n, err)
		}
		ret := verifyTrust(t, d)
		if len(ret.Damage)+len(ret.Tamper) != 0 {
			t.Fatalf("after retention: damage %v, tamper %v", ret.Damage, ret.Tamper)
		}
		// The same deletion without the record is tampering.
		if err := os.Remove(filepath.Join(d, segmentDir, retiredName)); err != nil {
			t.Fatal(err)
		}
		wantTamper(t, verifyTrust(t, d), segs[1].path, "not recorded in RETIRED")
	})
}

// TestCheckpointCatchesAConsistentRewrite rewrites the newest segment's
// event and its Merkle root, as an attacker who knows the format would:
// the roots and the chain hold (nothing links after the newest segment),
// and only a checkpoint signed before, held by a witness, tells.
func TestCheckpointCatchesAConsistentRewrite(t *testing.T) {
	dir := tamperStore(t)
	_, key, _ := ed25519.GenerateKey(nil)
	rep := verifyTrust(t, dir)
	last := rep.Chain[len(rep.Chain)-1]
	cp := trust.Line{Checkpoint: trust.Sign(key, last.Events, last.WAL, last.Head, time.Now()), File: "witness", N: 1}
	points := func(r *VerifyReport) []trust.Point {
		var out []trust.Point
		for _, p := range r.Chain {
			out = append(out, trust.Point(p))
		}
		return out
	}
	if f, _ := trust.Check(nil, []trust.Line{cp}, []ed25519.PublicKey{key.Public().(ed25519.PublicKey)}, points(rep)); len(f) != 1 || !strings.Contains(f[0], "data folder's checkpoints file does not") {
		t.Fatalf("untouched store, checkpoint only with the witness: %v", f)
	}
	segs := liveSegments(t, dir)
	path := segs[len(segs)-1].path
	rewrite(t, path, func(evs []entry) []entry {
		evs[0].raw = bytes.Replace(evs[0].raw, []byte(`"pod-`), []byte(`"pox-`), 1)
		return evs
	}, reroot)
	after := verifyTrust(t, dir)
	if len(after.Tamper) != 0 || len(after.Damage) != 0 {
		t.Fatalf("a consistent rewrite was meant to pass the roots and the chain: %v %v", after.Tamper, after.Damage)
	}
	f, _ := trust.Check([]trust.Line{cp}, nil, []ed25519.PublicKey{key.Public().(ed25519.PublicKey)}, points(after))
	if len(f) != 1 || !strings.Contains(f[0], "history was rewritten") {
		t.Fatalf("checkpoint findings %v, want the rewrite", f)
	}
}
