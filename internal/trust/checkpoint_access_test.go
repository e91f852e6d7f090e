package trust

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestCheckpointSignsAccessHead: a format 2 checkpoint carries the access
// log's head, and verify checks the log against it: cut below it, its
// last line edited, or rewritten consistently from some line on (every
// link recomputed), each is named on the checkpoint's line; format 1
// checkpoints in the same file still verify; stripping the access fields
// or the format breaks the signature.
// Mutations it catches: Message not covering the access fields (the
// stripped checkpoint verifies), CheckAccess not comparing the signed
// head (the rewrite and the edited last line pass), a signer that leaves
// the head out (no checkpoint is format 2).
func TestCheckpointSignsAccessHead(t *testing.T) {
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	good := chainLines(accessBodies(20), 1, [32]byte{})
	dir := t.TempDir()
	cps := filepath.Join(dir, "checkpoints")
	logPath := filepath.Join(dir, "access.log")
	lines := good[:10]
	s := &Signer{Key: key, Path: cps, Head: func() (Point, bool) { return Point{}, false }, Access: func() (AccessHead, error) {
		return AccessHead{Lines: int64(len(lines)), Hash: AccessLineHash([]byte(lines[len(lines)-1]))}, nil
	}}
	Append(cps, Sign(key, 0, 0, [32]byte{}, time.Now())) // format 1, from before
	now := time.Now()
	for _, n := range []int{10, 10, 20} {
		lines = good[:n]
		if err := s.Checkpoint(now); err != nil {
			t.Fatal(err)
		}
		now = now.Add(time.Second)
	}
	own, err := Read(cps)
	if err != nil || len(own) != 3 || own[1].V != 2 || own[1].AccessLines != 10 || own[2].AccessLines != 20 {
		t.Fatalf("checkpoints: %+v %v (want format 1, then format 2 at 10 and 20 lines; nothing for an idle log)", own, err)
	}
	check := func(t *testing.T, lines []string, cps []Line, want string) {
		t.Helper()
		os.WriteFile(logPath, []byte(strings.Join(lines, "\n")+"\n"), 0o600)
		acc, err := CheckAccessLog(logPath, AccessCounts(cps))
		if err != nil {
			t.Fatal(err)
		}
		out, _ := CheckAccess(cps, nil, []ed25519.PublicKey{pub}, nil, acc)
		got := strings.Join(out, "\n")
		if want == "" && got != "" || !strings.Contains(got, want) {
			t.Fatalf("findings %q, want %q", got, want)
		}
	}
	check(t, good, own[1:], "")
	check(t, good[:15], own[1:], cps+":3: the checkpoint (signed ")
	check(t, good[:15], own[1:], "covers 20 access log lines, the log holds 15")
	edited := slices.Clone(good)
	edited[19] = strings.Replace(edited[19], `"who":"u19"`, `"who":"u0"`, 1)
	check(t, edited, own[1:], cps+":3: the access log no longer extends this checkpoint (20 lines")
	bodies := accessBodies(20)
	bodies[14] = strings.Replace(bodies[14], `"who":"u14"`, `"who":"u0"`, 1)
	rewritten := append(slices.Clone(good[:14]), chainLines(bodies[14:], 15, AccessLineHash([]byte(good[13])))...)
	check(t, rewritten, own[1:], ":20, its line 20, is not the line it signed")

	stripped := own[2]
	stripped.V, stripped.AccessLines, stripped.AccessHead = 0, 0, ""
	check(t, good, []Line{own[1], stripped}, cps+":3: signature does not verify")
	noV := own[2]
	noV.V = 0
	check(t, good, []Line{noV}, "signature does not verify")
	var buf bytes.Buffer
	json.NewEncoder(&buf).Encode(own[2].Checkpoint)
	if !strings.Contains(buf.String(), `"v":2,`) || !strings.Contains(buf.String(), `"accessLines":20,"accessHead":"`) {
		t.Fatalf("format 2 line: %s", buf.String())
	}
}
