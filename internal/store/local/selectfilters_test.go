package local

import (
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

	"github.com/kubetrail/kubetrail/internal/audit"
	"github.com/kubetrail/kubetrail/internal/query"
	"github.com/kubetrail/kubetrail/internal/rules"
	"github.com/kubetrail/kubetrail/internal/rules/builtin"
	"github.com/kubetrail/kubetrail/internal/rules/engine"
	"github.com/kubetrail/kubetrail/internal/rules/falco"
	"github.com/kubetrail/kubetrail/internal/rules/native"
	"github.com/kubetrail/kubetrail/internal/testenv"
	"github.com/kubetrail/kubetrail/internal/vfs"
)

// scannedEvent is an event of a full scan, decoded.
type scannedEvent struct {
	cluster, raw string
	ev           audit.Event
}

func scanAll(t *testing.T, dir string) []scannedEvent {
	t.Helper()
	var all []scannedEvent
	if err := Scan(dir, ScanOptions{}, func(s Stored) error {
		all = append(all, scannedEvent{cluster: s.Cluster, raw: string(s.Raw)})
		return audit.DecodeStored(s.Raw, &all[len(all)-1].ev)
	}); err != nil {
		t.Fatal(err)
	}
	return all
}

// generatedStore is a folder of generated events in several v4 segments
// of several groups and blocks, the newest still in the WAL.
func generatedStore(t *testing.T) (string, *Reader) {
	t.Helper()
	return generatedStoreOf(t, 4)
}

// generatedStoreOf is generatedStore in segment format version.
func generatedStoreOf(t *testing.T, version int) (string, *Reader) {
	t.Helper()
	dir := t.TempDir()
	db, err := Open(dir, Options{WALSegmentBytes: 256 << 10, SegmentFormat: version, layout: segLayout{groupBytes: 48 << 10, blockBytes: 6 << 10, blockEvents: 6}})
	if err != nil {
		t.Fatal(err)
	}
	r, _ := readGenerated(t, dir, db, rand.New(rand.NewPCG(7, 8)), 31, func(b int) int { return []int{100, 100, 7}[b%3] }, 100)
	if len(r.segs) < 3 || len(r.head) == 0 {
		t.Fatalf("%d segments, %d events in the WAL: the test wants both", len(r.segs), len(r.head))
	}
	return dir, r
}

// TestSelectFiltersMatchesFullScan: SelectFilters gives, in stored order,
// exactly the events that match the restriction and one of the filters;
// what Known says of each filter is what the filter says of the whole
// event; the partial event holds the asked column fields with the whole
// event's values; Load gives the event's exact bytes, whether it was read
// ahead or not. Over v4 segments and the WAL, and over v3 and v2 segments
// (the fixtures).
// Mutations it catches: a filter with a residual marked 1 (Known wrong on
// every requestObject or auditid filter); an event with one filter's bit
// dropped (missing events); loading the wrong line of a group; a
// read-ahead giving the first event it holds instead of the one asked for.
func TestSelectFiltersMatchesFullScan(t *testing.T) {
	dir, r := generatedStore(t)
	checkSelectFilters(t, "v4", dir, r, rand.New(rand.NewPCG(9, 10)), 150)
	dir, r = generatedStoreOf(t, 5)
	if r.segs[0].r.meta.Version != 5 {
		t.Fatalf("a v5 store's segment is v%d", r.segs[0].r.meta.Version)
	}
	checkSelectFilters(t, "v5", dir, r, rand.New(rand.NewPCG(9, 10)), 150)
	for _, v := range []string{"v2", "v3"} {
		dir := copyFixture(t, v)
		r, err := OpenReader(dir)
		if err != nil {
			t.Fatal(err)
		}
		checkSelectFilters(t, v, dir, r, rand.New(rand.NewPCG(11, 12)), 40)
		r.Close()
	}
}

func checkSelectFilters(t *testing.T, what, dir string, r *Reader, rng *rand.Rand, n int) {
	t.Helper()
	all := scanAll(t, dir)
	now := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)
	fields := []string{"user", "verb", "ns", "code", "decision", "as", "group", "uri"}
	undecided, decided, loaded := 0, 0, 0
	for k := 0; k < n; k++ {
		var filters []*query.Filter
		for j := 0; j <= rng.IntN(4); j++ {
			f, err := query.CompileAt(genFilter(rng, 2), now)
			if err != nil {
				t.Fatal(err)
			}
			filters = append(filters, f)
		}
		if k%5 == 0 {
			// A body condition, which a read-ahead decides from the text.
			f, _ := query.CompileAt(`requestObject~"\"pass(word)?\":|absent" verb!=watch`, now)
			filters = append(filters, f)
		}
		var sel Selection
		switch k % 4 {
		case 1:
			sel.Filter, _ = query.CompileAt("ns=production", now)
		case 2:
			sel.Filter, _ = query.CompileAt(`"password"`, now) // a restriction the columns cannot decide
		case 3:
			sel.Since = time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC).UnixMicro()
		}
		var want []int
		for i, s := range all {
			t := s.ev.Time().UnixMicro()
			if (sel.Filter != nil && !sel.Filter.Match(&s.ev, s.cluster)) || (sel.Since != 0 && t < sel.Since) {
				continue
			}
			if slices.ContainsFunc(filters, func(f *query.Filter) bool { return f.Match(&s.ev, s.cluster) }) {
				want = append(want, i)
			}
		}
		var got []int
		next, given := 0, 0 // the full scan's index of the next event that may come
		opts := LazyOptions{Filters: filters, Fields: fields}
		if k%3 != 0 {
			// Read ahead some events: some of them are then not loaded
			// (k odd), and some events loaded were not read ahead.
			opts.ReadAhead = func(known []int8) bool { return known[0] >= 0 }
		}
		err := r.SelectFilters(sel, opts, func(h *Hit) error {
			var partial audit.Event
			wasPartial := h.Partial
			if wasPartial {
				partial = *h.Event
				// Load every event (k even) or one in three (k odd).
				if given++; k%2 == 0 || given%3 == 0 {
					loaded++
					if err := h.Load(); err != nil {
						return err
					}
				}
			}
			// Find the event by its place in stored order (an event given
			// that may match nothing is allowed: it must then be decided).
			i := next
			for i < len(all) && (all[i].cluster != h.Cluster || all[i].ev.Time().UnixMicro() != h.Time ||
				(h.Raw != nil && all[i].raw != string(h.Raw))) {
				i++
			}
			if i == len(all) {
				return fmt.Errorf("an event the full scan does not have after %d: %s", next, h.Raw)
			}
			next = i + 1
			s := &all[i]
			got = append(got, i)
			for j, f := range filters {
				m := f.Match(&s.ev, s.cluster)
				switch kn := h.known(j); {
				case kn == 0:
					undecided++
				case (kn > 0) != m:
					return fmt.Errorf("filter %q: Known %d, the event says %v: %s", f, kn, m, s.raw)
				default:
					decided++
				}
			}
			if wasPartial {
				for _, name := range []string{"user", "verb", "ns", "code", "decision", "as"} {
					fd, _ := query.LookupField(name)
					if w, g := query.FieldValues(fd, &s.ev, s.cluster), query.FieldValues(fd, &partial, s.cluster); !slices.Equal(w, g) {
						return fmt.Errorf("field %s: partial event has %q, the event %q", name, g, w)
					}
				}
			}
			return nil
		})
		if err != nil {
			t.Fatalf("%s: filters %v, selection %v: %v", what, filters, sel.Filter, err)
		}
		// Every event that matches is given.
		var gotMatching []int
		for _, i := range got {
			if slices.ContainsFunc(filters, func(f *query.Filter) bool { return f.Match(&all[i].ev, all[i].cluster) }) {
				gotMatching = append(gotMatching, i)
			}
		}
		if !slices.Equal(gotMatching, want) {
			t.Fatalf("%s: filters %v, selection %v: %d events match, the full scan finds %d", what, filters, sel.Filter, len(gotMatching), len(want))
		}
	}
	if undecided == 0 || decided < undecided || loaded == 0 {
		t.Errorf("%s: %d answers decided, %d undecided, %d loaded: the test proves little", what, decided, undecided, loaded)
	}
}

// known is Known[j], with whole hits (the WAL's) deciding nothing.
func (h *Hit) known(j int) int8 {
	if h.Known == nil {
		return 0
	}
	return h.Known[j]
}

// differentialRules exercises what lazy evaluation changes: conditions
// the columns decide and those they cannot (bodies, audit IDs, URIs),
// excepts of both kinds, thresholds by a column and by a field that is
// not one, sequences whose later steps match many events or are grouped
// by a field that is not a column (first, so that no other rule has read
// the event before it), and alerts once per request.
const differentialRules = `
- name: By URI
  sequence:
    within: 1h
    by: uri
    steps:
    - verb=get code=404
    - resource=secrets
- name: Secrets by people
  condition: resource=secrets verb in (get,list) not user~"^system:"
- name: Body
  condition: '"password" level>=Request'
- name: Body, tuned
  condition: 'requestObject~"Secret" verb=create'
- name: Body, tuned
  except: ['user=alice', 'auditid~"7$"']
- name: Denials
  condition: code in (401,403)
  threshold: {count: 3, window: 10m, by: [user]}
- name: Denials by URI
  condition: code>=400
  threshold: {count: 4, window: 1h, by: [uri, verb]}
- name: Exec once
  condition: subresource in (exec,attach) stage in (ResponseStarted,ResponseComplete)
  once: request
- name: Denied then writes
  sequence:
    within: 20m
    by: user
    steps:
    - code=403 not user~"^system:"
    - verb in (create,update,patch,delete) code<400
    - resource=secrets code<400
`

// TestLazyRulesMatchWholeEvents: the built-in pack and rules written to
// exercise lazy evaluation raise exactly the same alerts, in the same
// order, over SelectFilters' lazy events as over every stored event read
// whole, and the lazy run reads fewer events.
// Mutations it catches: a sequence step taking the time and audit ID of
// an event not read yet (an alert names an empty audit ID); Known trusted
// for a filter with a residual; a key read from a partial event that
// lacks it (By URI starts no group).
func TestLazyRulesMatchWholeEvents(t *testing.T) {
	dir, r := generatedStore(t)
	all := scanAll(t, dir)
	for _, pack := range []string{"builtin", "differential"} {
		load := func() *native.Evaluator {
			if pack == "builtin" {
				ev, probs := native.Load(builtin.Rules())
				if len(probs) > 0 {
					t.Fatal(probs)
				}
				return ev
			}
			ev, probs := native.Load(nil, rules.File{Name: "d.yaml", Data: []byte(differentialRules)})
			if len(probs) > 0 {
				t.Fatal(probs)
			}
			return ev
		}
		want := wholeAlerts(all, load().Eval)
		lazy := load()
		got, given, loads := lazyAlerts(t, r, LazyOptions{Filters: lazy.Filters(), Fields: lazy.KeyFields(), ReadAhead: lazy.WillRead}, lazy.Eval)
		if len(want) < 20 {
			t.Fatalf("%s: %d alerts: the test proves little", pack, len(want))
		}
		sameAlerts(t, pack, got, want)
		if loads >= given || given >= len(all) {
			t.Errorf("%s: %d events given of %d, %d read: nothing was spared", pack, given, len(all), loads)
		}
		t.Logf("%s: %d alerts; %d of %d events given, %d read", pack, len(want), given, len(all), loads)
	}
}

// TestSelectFiltersDamagedText: a damaged text block fails SelectFilters
// with the segment's error when an event of it is loaded, read ahead or
// not, and the read-ahead's goroutine ends.
// Mutation it catches: the read-ahead's error dropped (the event comes
// back empty).
func TestSelectFiltersDamagedText(t *testing.T) {
	dir, r := generatedStore(t)
	r.Close()
	segs, err := filepath.Glob(filepath.Join(dir, segmentDir, "*.kts"))
	if err != nil || len(segs) == 0 {
		t.Fatalf("segments: %v %v", segs, err)
	}
	sr, err := openSegment(vfs.OS, segs[0])
	if err != nil {
		t.Fatal(err)
	}
	b := sr.meta.Blocks[len(sr.meta.Blocks)/2]
	sr.close()
	data, err := os.ReadFile(segs[0])
	if err != nil {
		t.Fatal(err)
	}
	data[b.Off+b.Len/2] ^= 0x5a
	if err := os.WriteFile(segs[0], data, 0o600); err != nil {
		t.Fatal(err)
	}
	all, err := query.Compile("not verb=x")
	if err != nil {
		t.Fatal(err)
	}
	for _, ahead := range []bool{false, true} {
		r, err := OpenReader(dir)
		if err != nil {
			t.Fatal(err)
		}
		opts := LazyOptions{Filters: []*query.Filter{all}}
		if ahead {
			opts.ReadAhead = func([]int8) bool { return true }
		}
		err = r.SelectFilters(Selection{}, opts, func(h *Hit) error { return h.Load() })
		r.Close()
		var se *SegmentError
		if !errors.As(err, &se) || !strings.Contains(se.Part, "text block") {
			t.Errorf("read ahead %v: %v, want the damaged text block's error", ahead, err)
		}
	}
}

// TestSelectFiltersAcrossSegments: while the caller is given one segment's
// events, the next segment's columns are read and its read-ahead started;
// every hit still holds its own event: its time, cluster and partial
// fields, and what Load gives (read ahead, or not), are the full scan's
// event at its place, also at the first and last events of each segment,
// where the caller dawdles so that the next segment is surely under way.
// A caller that stops midway leaves no goroutine behind, and the reader
// then answers the same again.
// Mutations it catches: a read-ahead given the previous segment (hands
// that segment's event at the ordinal); the caller's segment's columns
// released when the next one is read (no lag); the next segment's
// read-ahead not waiting for this one's to end before it uses the same
// text readers (an event's text is cut short).
func TestSelectFiltersAcrossSegments(t *testing.T) {
	dir, r := generatedStore(t)
	all := scanAll(t, dir)
	every, err := query.Compile("not verb=x")
	if err != nil {
		t.Fatal(err)
	}
	// The full scan's index of each segment's first event.
	var firsts []int
	n := 0
	for _, s := range r.segs {
		firsts = append(firsts, n)
		n += s.r.meta.Count
	}
	errStop := errors.New("stop")
	for _, ahead := range []bool{true, false} {
		for _, stopAt := range []int{-1, firsts[1] + 3} {
			before := runtime.NumGoroutine()
			opts := LazyOptions{Filters: []*query.Filter{every}, Fields: []string{"user", "verb"}}
			if ahead {
				opts.ReadAhead = func([]int8) bool { return true }
			}
			i := 0
			err := r.SelectFilters(Selection{}, opts, func(h *Hit) error {
				if i == stopAt {
					return errStop
				}
				s := &all[i]
				if h.Partial {
					if h.Event.User.Username != s.ev.User.Username || h.Event.Verb != s.ev.Verb {
						return fmt.Errorf("event %d: partial event of %s %s, the event's are %s %s", i, h.Event.User.Username, h.Event.Verb, s.ev.User.Username, s.ev.Verb)
					}
					if slices.Contains(firsts, i) || slices.Contains(firsts, i+1) {
						time.Sleep(20 * time.Millisecond)
					}
					if err := h.Load(); err != nil {
						return err
					}
				}
				if h.Cluster != s.cluster || h.Time != s.ev.Time().UnixMicro() || string(h.Raw) != s.raw {
					return fmt.Errorf("event %d (ahead %v): hit of %s at %d holds %s, want %s", i, ahead, h.Cluster, h.Time, h.Raw, s.raw)
				}
				i++
				return nil
			})
			switch {
			case stopAt < 0 && err != nil:
				t.Fatal(err)
			case stopAt < 0 && i != len(all):
				t.Fatalf("ahead %v: %d events given, the store holds %d", ahead, i, len(all))
			case stopAt >= 0 && !errors.Is(err, errStop):
				t.Fatalf("ahead %v: stopped at %d: %v", ahead, stopAt, err)
			}
			for k := 0; runtime.NumGoroutine() > before; k++ {
				if k == 100 {
					t.Fatalf("ahead %v, stopped at %d: %d goroutines before, %d after", ahead, stopAt, before, runtime.NumGoroutine())
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
	}
}

// TestReadAheadDecidesOnKeys: a filter on a field no column holds (the
// impersonated user) is decided by the read-ahead from the event's key
// alone: the hit's Known says whether it matches, as the whole event
// does, and an event it rules out is not decoded.
// Mutations it catches: decideOnKeys doing nothing (every answer
// undecided, every event decoded); a plan's rest holding only its first
// undecided conjunct.
func TestReadAheadDecidesOnKeys(t *testing.T) {
	// as.group has no column: a conjunct of two fields is decided on
	// neither. The second filter has two such conjuncts, each deciding
	// some events, beside one the columns decide.
	for k := range 4 {
		version, src := 4+k%2, []string{`as.group=g1 or as~"."`, `(as.group=g1 or as~".") and (as.group=g2 or as~"^[a-m]") and verb!=watch`}[k/2]
		dir, r := generatedStoreOf(t, version)
		all := scanAll(t, dir)
		f, err := query.Compile(src)
		if err != nil {
			t.Fatal(err)
		}
		byRaw := map[string]bool{}
		for _, s := range all {
			byRaw[s.raw] = f.Match(&s.ev, s.cluster)
		}
		ruledOut, matched := 0, 0
		err = r.SelectFilters(Selection{}, LazyOptions{Filters: []*query.Filter{f}, ReadAhead: func(known []int8) bool { return known[0] >= 0 }},
			func(h *Hit) error {
				if !h.Partial {
					return nil // the WAL's
				}
				kn, sl := h.Known[0], h.ahead
				if sl == nil {
					return fmt.Errorf("v%d: event %d was not read ahead", version, h.ord)
				}
				decoded := sl.decoded
				if err := h.Load(); err != nil {
					return err
				}
				switch m := byRaw[string(h.Raw)]; {
				case kn == 0:
					return fmt.Errorf("v%d: undecided after the read-ahead: %s", version, h.Raw)
				case (kn > 0) != m:
					return fmt.Errorf("v%d: Known %d, the event says %v: %s", version, kn, m, h.Raw)
				case kn < 0 && decoded:
					return fmt.Errorf("v%d: an event ruled out was decoded: %s", version, h.Raw)
				case kn < 0:
					ruledOut++
				default:
					matched++
				}
				return nil
			})
		if err != nil {
			t.Fatal(err)
		}
		if ruledOut == 0 || matched == 0 {
			t.Fatalf("v%d: %d ruled out, %d matched: the test proves little", version, ruledOut, matched)
		}
	}
}

// TestLazyEngineMatchesWholeEvents: an engine with Sigma rules (SigmaHQ's,
// with and without the built-in pack), Falco's rules (first and all
// matching, alone and with the others) is given lazy events, its Sigma
// and Falco rules only those their prefilters may match, and raises
// exactly the alerts, in the same order, that it raises over every stored
// event read whole; it reads fewer events.
// Mutations it catches: the Sigma rules skipped on a lazy event whatever
// the store decided; the prefilters' answers read from the native rules'
// places in Known; the Falco rules' read from the Sigma rules' places.
func TestLazyEngineMatchesWholeEvents(t *testing.T) {
	dir, r := generatedStoreOf(t, 5)
	all := scanAll(t, dir)
	sigmaFiles, _, err := engine.ReadPaths([]string{filepath.Join(testenv.SharedDir(t), "rulesets", "sigma")})
	if err != nil {
		t.Fatal(err)
	}
	falcoFiles, _, err := engine.ReadPaths([]string{filepath.Join(testenv.SharedDir(t), "rulesets", "falco")})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name       string
		files      []rules.File
		builtinToo bool
		matching   falco.Matching
		prefix     string // of the rules whose alerts must be many
	}{
		{"sigma and pack", sigmaFiles, true, falco.MatchFirst, "Kubernetes"},
		{"sigma", sigmaFiles, false, falco.MatchFirst, "Kubernetes"},
		{"falco", falcoFiles, false, falco.MatchFirst, ""},
		{"falco, all matching", falcoFiles, false, falco.MatchAll, ""},
		{"everything", append(slices.Clip(sigmaFiles), falcoFiles...), true, falco.MatchAll, "Disallowed"},
	} {
		load := func() *engine.Engine {
			eng, probs := engine.Load(c.files, engine.Options{Builtin: c.builtinToo, Falco: falco.Options{Matching: c.matching}})
			for _, p := range probs {
				if !p.Warning {
					t.Fatal(p)
				}
			}
			return eng
		}
		want := wholeAlerts(all, load().Eval)
		lazy := load()
		plan, ok := lazy.Lazy()
		if !ok {
			t.Fatalf("%s: no lazy plan", c.name)
		}
		got, given, loads := lazyAlerts(t, r, LazyOptions{Filters: plan.Filters, Fields: plan.Fields, ReadAhead: plan.WillRead}, lazy.Eval)
		many := 0
		for _, w := range want {
			if strings.HasPrefix(w, c.prefix) {
				many++
			}
		}
		if many < 20 {
			t.Fatalf("%s: %d alerts of rules %s*: the test proves little", c.name, many, c.prefix)
		}
		sameAlerts(t, c.name, got, want)
		if loads >= given || given >= len(all) {
			t.Errorf("%s: %d events given of %d, %d read: nothing was spared", c.name, given, len(all), loads)
		}
	}
}

// wholeAlerts is what eval raises over every event of all, read whole,
// one line per alert.
func wholeAlerts(all []scannedEvent, eval func(*rules.Event) []rules.Alert) []string {
	var out []string
	for i := range all {
		s := &all[i]
		for _, a := range eval(&rules.Event{Ev: &s.ev, Raw: []byte(s.raw), Cluster: s.cluster}) {
			out = append(out, fmt.Sprintf("%s %v %s %s", a.Rule, a.AuditIDs, a.User, a.Message))
		}
	}
	return out
}

// lazyAlerts is what eval raises over SelectFilters' lazy events, with
// how many events were given and how many of them read whole.
func lazyAlerts(t *testing.T, r *Reader, opts LazyOptions, eval func(*rules.Event) []rules.Alert) (out []string, given, loads int) {
	t.Helper()
	err := r.SelectFilters(Selection{}, opts, func(h *Hit) error {
		given++
		e := rules.Event{Ev: h.Event, Raw: h.Raw, Cluster: h.Cluster}
		if h.Partial {
			e.Lazy = &rules.Lazy{Fields: h.Fields, Known: h.Known, Read: func() (*audit.Event, []byte, error) {
				loads++
				err := h.Load()
				return h.Event, h.Raw, err
			}}
		}
		for _, a := range eval(&e) {
			out = append(out, fmt.Sprintf("%s %v %s %s", a.Rule, a.AuditIDs, a.User, a.Message))
		}
		if e.Lazy != nil {
			return e.Lazy.Err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out, given, loads
}

// sameAlerts fails t when got and want differ, naming the first alert
// that does.
func sameAlerts(t *testing.T, what string, got, want []string) {
	t.Helper()
	if slices.Equal(got, want) {
		return
	}
	for i := range min(len(got), len(want)) {
		if got[i] != want[i] {
			t.Fatalf("%s: alert %d of %d (whole: %d):\n lazy  %s\n whole %s", what, i, len(got), len(want), got[i], want[i])
		}
	}
	t.Fatalf("%s: %d alerts lazily, %d over whole events", what, len(got), len(want))
}
