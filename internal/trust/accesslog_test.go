package trust

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// chainLines links lines as the access log's writer does: each gets seq
// (from first) and prev (the hash of the line before, prev0 for the
// first).
func chainLines(bodies []string, first int64, prev0 [32]byte) []string {
	out := make([]string, len(bodies))
	prev := prev0
	for i, b := range bodies {
		out[i] = fmt.Sprintf(`%s,"seq":%d,"prev":"%s"}`, strings.TrimSuffix(b, "}"), first+int64(i), hex.EncodeToString(prev[:]))
		prev = AccessLineHash([]byte(out[i]))
	}
	return out
}

func accessBodies(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf(`{"time":"2026-12-05T10:00:%02dZ","who":"u%d","endpoint":"GET /api/v1/events","params":{"filter":["verb=delete"]},"status":200,"results":%d}`, i%60, i, i)
	}
	return out
}

func writeLog(t *testing.T, lines []string, tail string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "access.log")
	s := strings.Join(lines, "\n")
	if len(lines) > 0 {
		s += "\n"
	}
	if err := os.WriteFile(p, []byte(s+tail), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestCheckAccessLog alters a chained log of 20 lines as someone with
// disk access would, once per case: verify must name the line (FILE:LINE)
// and what was done, and say nothing of an untouched log, a log written
// partly before the chain, or a torn last line.
// Mutations it catches: a checker that does not compare prev with the
// line before (every case but the untouched ones passes silently), that
// reports a torn last line as a finding, or that names the line after an
// edited one.
func TestCheckAccessLog(t *testing.T) {
	good := chainLines(accessBodies(20), 1, [32]byte{})
	del := func(i, n int) []string { return slices.Delete(slices.Clone(good), i, i+n) }
	ins := func(i int, l string) []string { return slices.Insert(slices.Clone(good), i, l) }
	set := func(i int, l string) []string { s := slices.Clone(good); s[i] = l; return s }
	forged := chainLines([]string{`{"who":"mallory"}`}, 7, AccessLineHash([]byte(good[5])))[0]
	swapped := slices.Clone(good)
	swapped[6], swapped[7] = swapped[7], swapped[6]
	moved := slices.Insert(slices.Delete(slices.Clone(good), 2, 3), 9, good[2])
	var unlinked map[string]any
	json.Unmarshal([]byte(good[6]), &unlinked)
	delete(unlinked, "seq")
	delete(unlinked, "prev")
	ub, _ := json.Marshal(unlinked)
	otherPrev := strings.Replace(good[6], `"prev":"`, `"prev":"ff`, 1)
	otherPrev = otherPrev[:strings.LastIndex(otherPrev, `"`)-2] + `"}`

	f := func(name string, lines []string, tail string, want ...string) {
		t.Run(name, func(t *testing.T) {
			p := writeLog(t, lines, tail)
			rep, err := CheckAccessLog(p, nil)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, f := range rep.Findings {
				got = append(got, strings.TrimPrefix(f, p))
			}
			if len(got) != len(want) {
				t.Fatalf("findings %q, want %d: %q", got, len(want), want)
			}
			for i := range want {
				if !strings.HasPrefix(got[i], want[i]) && !strings.Contains(got[i], want[i]) {
					t.Errorf("finding %q, want %q", got[i], want[i])
				}
			}
		})
	}
	f("untouched", good, "")
	f("line 7 edited", set(6, strings.Replace(good[6], `"results":6`, `"results":0`, 1)), "", ":7: edited: its hash is not the one the next line")
	f("line 7's link edited", set(6, otherPrev), "", ":7: edited: its link does not match the line before it")
	f("line 7 deleted", del(6, 1), "", ":7: 1 lines deleted before it: seq jumps from 6 to 8")
	f("lines 7-9 deleted", del(6, 3), "", ":7: 3 lines deleted before it")
	f("line 1 deleted", del(0, 1), "", ":1: 1 lines deleted before it")
	f("forged line inserted", ins(6, forged), "", ":7: inserted")
	f("unchained line inserted", ins(6, `{"who":"mallory"}`), "", ":7: inserted")
	f("lines 7 and 8 exchanged", swapped, "", ":7: reordered: seq 8 stands before seq 7")
	f("line 3 moved after line 10", moved, "", ":3: 1 lines deleted before it", ":10: out of order: seq 3 after seq 10")
	f("line 7's link removed", set(6, string(ub)), "", ":7: no chain link")
	f("line 7 not JSON", set(6, "{garbage"), "", ":7: not a JSON object")
	f("forged line before the last", ins(19, chainLines([]string{`{"who":"mallory"}`}, 20, AccessLineHash([]byte(good[18])))[0]), "", ":20: two lines claim seq 20, this one and ")
	f("torn NUL bytes of a machine crash", good, "\x00\x00\x00\x00")

	t.Run("notes", func(t *testing.T) {
		old := accessBodies(5)
		lines := append(slices.Clone(old), chainLines(accessBodies(3), 6, AccessLineHash([]byte(old[4])))...)
		p := writeLog(t, lines, `{"ti`)
		rep, err := CheckAccessLog(p, nil)
		if err != nil || len(rep.Findings) != 0 || rep.Lines != 8 {
			t.Fatalf("a log chained after 5 old lines: %v %q, %d lines", err, rep.Findings, rep.Lines)
		}
		n := strings.Join(rep.Notes, "\n")
		if !strings.Contains(n, p+":9: torn last line") || !strings.Contains(n, p+":1-5: 5 lines written before the access log was chained") {
			t.Fatalf("notes: %q", rep.Notes)
		}
	})
}

// TestAccessTail: the writer continues the chain from the last complete
// line (a seq it carries, or the count of an unchained log) and learns how
// many torn bytes to cut.
// Mutation it catches: counting the torn bytes as a line, or taking the
// torn line's hash as the head.
func TestAccessTail(t *testing.T) {
	good := chainLines(accessBodies(1000), 1, [32]byte{})
	f := func(name string, lines []string, tail string, want AccessHead) {
		t.Run(name, func(t *testing.T) {
			s := strings.Join(lines, "\n")
			if len(lines) > 0 {
				s += "\n"
			}
			s += tail
			head, torn, err := AccessTail(strings.NewReader(s), int64(len(s)))
			if err != nil || head != want || torn != int64(len(tail)) {
				t.Fatalf("AccessTail: %v %d torn %d, want %v %d", err, head.Lines, torn, want, len(tail))
			}
		})
	}
	f("empty", nil, "", AccessHead{})
	f("only torn", nil, `{"x":`, AccessHead{})
	f("chained", good, "", AccessHead{Lines: 1000, Hash: AccessLineHash([]byte(good[999]))})
	f("chained and torn", good, strings.Repeat("x", 70<<10), AccessHead{Lines: 1000, Hash: AccessLineHash([]byte(good[999]))})
	old := accessBodies(700)
	f("unchained", old, "", AccessHead{Lines: 700, Hash: AccessLineHash([]byte(old[699]))})
}

// TestCheckAccessLogNamesEveryChange edits, deletes, inserts (forged with
// a good link) or swaps each line but the last of a 40-line log in turn:
// every change gets a finding, and the first finding names the line
// changed, or for a deletion the line that took its place.
// Mutation it catches: the same as TestCheckAccessLog, over every
// position (the first line, the last two, which the lookahead sees
// differently, included).
func TestCheckAccessLogNamesEveryChange(t *testing.T) {
	good := chainLines(accessBodies(40), 1, [32]byte{})
	for i := range len(good) - 1 {
		edited := slices.Clone(good)
		edited[i] = strings.Replace(edited[i], `"endpoint"`, `"endpoint2"`, 1)
		swapped := slices.Clone(good)
		swapped[i], swapped[i+1] = swapped[i+1], swapped[i]
		prev := [32]byte{}
		if i > 0 {
			prev = AccessLineHash([]byte(good[i-1]))
		}
		forged := chainLines([]string{`{"who":"mallory"}`}, int64(i+1), prev)[0]
		for _, c := range []struct {
			op    string
			lines []string
		}{
			{"edited", edited},
			{"deleted", slices.Delete(slices.Clone(good), i, i+1)},
			{"inserted", slices.Insert(slices.Clone(good), i, forged)},
			{"swapped", swapped},
		} {
			p := writeLog(t, c.lines, "")
			rep, err := CheckAccessLog(p, nil)
			if err != nil {
				t.Fatal(err)
			}
			if want := fmt.Sprintf("%s:%d: ", p, i+1); len(rep.Findings) == 0 || !strings.HasPrefix(rep.Findings[0], want) {
				t.Errorf("line %d %s: findings %q, want the first to start %q", i+1, c.op, rep.Findings, want)
			}
		}
	}
}
