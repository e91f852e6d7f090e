package local

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/kubetrail/kubetrail/internal/vfs"
)

// TestSelectAheadReaderReused checks that one Reader, asked again after a
// caller stopped part way (with other selections between), gives each
// selection the events a fresh serial read gives: the read-ahead's slots
// and their kept heads carry nothing stale from one Select to the next.
func TestSelectAheadReaderReused(t *testing.T) {
	for _, version := range []int{4, 5} {
		dir, _ := aheadStore(t, version)
		sels := aheadSelections(t)
		want := make([][]string, len(sels))
		for k, sel := range sels {
			w, err := selectedAhead(t, dir, 1, sel, -1)
			if err != nil {
				t.Fatal(err)
			}
			want[k] = w
		}
		for _, workers := range []int{1, 2, 3} {
			r, err := OpenReader(dir)
			if err != nil {
				t.Fatal(err)
			}
			r.textWorkers = workers
			for round, stopAt := range []int{3, 77, -1, 151, 0, 299, -1, 5} {
				for k, sel := range sels {
					k := (k + round) % len(sels)
					sel = sels[k]
					var got []string
					err := r.Select(sel, func(h *Hit) error {
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
					w := want[k]
					if stopAt >= 0 && stopAt < len(w) {
						if !errors.Is(err, errStopped) {
							t.Fatalf("v%d %d workers round %d sel %d: %v", version, workers, round, k, err)
						}
						w = w[:stopAt]
					} else if err != nil {
						t.Fatal(err)
					}
					if !slices.Equal(got, w) {
						t.Fatalf("v%d %d workers round %d sel %d (%v): %d events differ from the fresh serial read's %d", version, workers, round, k, sel.Filter, len(got), len(w))
					}
				}
			}
			r.Close()
		}
	}
}

// TestSelectAheadDamageAtEnds checks a damaged head or block in the first
// group of the first segment, or the last group of the last, the same way
// as TestSelectAheadDamage, and that the Reader that failed, asked again,
// answers as a fresh serial read does.
func TestSelectAheadDamageAtEnds(t *testing.T) {
	for _, version := range []int{4, 5} {
		for _, where := range []string{"first head", "first block", "last head", "last block"} {
			if version == 4 && strings.HasSuffix(where, "head") {
				continue
			}
			dir, paths := aheadStore(t, version)
			victim := paths[0]
			if strings.HasPrefix(where, "last") {
				victim = paths[len(paths)-1]
			}
			sr, err := openSegment(vfs.OS, victim)
			if err != nil {
				t.Fatal(err)
			}
			m := sr.meta
			sr.close()
			g := m.Groups[0]
			if strings.HasPrefix(where, "last") {
				g = m.Groups[len(m.Groups)-1]
			}
			b := m.Blocks[g.Block0]
			off := b.Off + b.Len/2
			if strings.HasSuffix(where, "head") {
				off = g.HeadOff + g.HeadLen/2
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
				if sel.Filter == nil && serr == nil {
					t.Fatalf("v%d, damaged %s: no error", version, where)
				}
				for _, workers := range []int{2, 3} {
					r, err := OpenReader(dir)
					if err != nil {
						t.Fatal(err)
					}
					r.textWorkers = workers
					for round := range 2 {
						var got []string
						err := r.Select(sel, func(h *Hit) error {
							line := fmt.Sprintf("%s %d %d %d %s", h.Cluster, h.Time, h.Received, h.ord, h.Raw)
							if h.Event != nil {
								line += " event " + h.Event.AuditID + " " + string(h.Event.RequestObject)
							}
							got = append(got, line+" user="+h.Column(ColUser))
							return nil
						})
						if fmt.Sprint(err) != fmt.Sprint(serr) || !slices.Equal(got, serial) {
							t.Fatalf("v%d, damaged %s, %v, %d workers, round %d: %d events and %v; the serial read gave %d and %v", version, where, sel.Filter, workers, round, len(got), err, len(serial), serr)
						}
					}
					r.Close()
				}
			}
		}
	}
}
