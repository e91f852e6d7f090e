package pipeline

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sort"
	"sync/atomic"

	"github.com/kubetrail/kubetrail/internal/audit"
	"github.com/kubetrail/kubetrail/internal/policy"
)

// PolicyResult says what an ingest-time policy did with one event. Every
// event gets exactly one.
type PolicyResult int

// The results, in the order of PolicyResults.
const (
	// PolicyKept: kept at the level it was recorded at, which is the
	// policy's (managedFields may have been removed from its bodies).
	PolicyKept PolicyResult = iota
	// PolicyDroppedLevelNone: the policy logs the request at level None.
	PolicyDroppedLevelNone
	// PolicyDroppedStage: the policy omits the event's stage.
	PolicyDroppedStage
	// PolicyStripped: kept at the policy's level, lower than recorded; the
	// bodies above it were removed and the level rewritten.
	PolicyStripped
	// PolicyBelowLevel: kept as recorded, at a level lower than the
	// policy's: what was not logged cannot be added back.
	PolicyBelowLevel
	numPolicyResults
)

// PolicyResults lists every result, in order.
var PolicyResults = [numPolicyResults]PolicyResult{PolicyKept, PolicyDroppedLevelNone, PolicyDroppedStage, PolicyStripped, PolicyBelowLevel}

// String gives the result as /metrics labels it.
func (r PolicyResult) String() string {
	switch r {
	case PolicyKept:
		return "kept"
	case PolicyDroppedLevelNone:
		return "dropped_level_none"
	case PolicyDroppedStage:
		return "dropped_stage"
	case PolicyStripped:
		return "stripped"
	case PolicyBelowLevel:
		return "below_level"
	}
	return fmt.Sprintf("PolicyResult(%d)", int(r))
}

// Dropped reports whether events with this result are not handed on.
func (r PolicyResult) Dropped() bool {
	return r == PolicyDroppedLevelNone || r == PolicyDroppedStage
}

// PolicyCounts counts events by PolicyResult.
type PolicyCounts [numPolicyResults]int64

// Releveler applies an audit policy to recorded events as the API server
// would have applied it when writing them (docs/ingest.md, "Policy at
// ingest"). It is safe for concurrent use.
type Releveler struct {
	ev *policy.Evaluator
	// counts are of events handed on (or dropped) in batches the next
	// stage accepted, for /metrics.
	counts [numPolicyResults]atomic.Int64
}

// NewReleveler compiles p, which the caller has loaded and validated.
func NewReleveler(p *policy.Policy) *Releveler {
	return &Releveler{ev: policy.NewEvaluator(p)}
}

// Counts returns how many events got each result in batches handed on
// successfully since the Releveler was made.
func (r *Releveler) Counts() PolicyCounts {
	var c PolicyCounts
	for i := range c {
		c[i] = r.counts[i].Load()
	}
	return c
}

// levelRank orders levels as the API server does; a level it does not
// know ranks with None.
func levelRank(l audit.Level) int {
	switch l {
	case audit.LevelMetadata:
		return 1
	case audit.LevelRequest:
		return 2
	case audit.LevelRequestResponse:
		return 3
	}
	return 0
}

// Apply decides rec's request under the policy and returns the event as
// the API server would have written it: nothing (a dropped result), or rec
// with the bodies above the applied level removed, its level set to the
// applied level (the lower of the policy's and the recorded one) and, when
// the policy says so, managedFields removed from the bodies kept. The raw
// bytes are edited in place: an event the policy does not change is
// returned as it is, bytes included, and changed is false. rec itself is
// not modified. An error means the event's bytes could not be walked: the
// caller must not store it.
func (r *Releveler) Apply(rec audit.Record) (out audit.Record, res PolicyResult, changed bool, err error) {
	ev := &rec.Event
	d := r.ev.Evaluate(policy.RequestFromEvent(ev))
	if d.Level == audit.LevelNone {
		return rec, PolicyDroppedLevelNone, false, nil
	}
	if slices.Contains(d.OmitStages, ev.Stage) {
		return rec, PolicyDroppedStage, false, nil
	}
	res, applied := PolicyKept, ev.Level
	switch want, got := levelRank(d.Level), levelRank(ev.Level); {
	case want < got:
		res, applied = PolicyStripped, d.Level
	case want > got:
		res = PolicyBelowLevel
	}
	omitMF := d.OmitManagedFields && mayHoldManagedFields(rec.Raw)
	if res != PolicyStripped && !omitMF {
		return rec, res, false, nil
	}
	raw, changed, err := relevelEvent(rec.Raw, applied, res == PolicyStripped, omitMF, ev.Verb == "patch")
	if err != nil || !changed {
		return rec, res, false, err
	}
	var nev audit.Event
	if err := audit.DecodeStored(raw, &nev); err != nil {
		return rec, res, false, fmt.Errorf("event under the policy does not decode: %w", err)
	}
	return audit.Record{Event: nev, Raw: raw, Format: rec.Format}, res, true, nil
}

// mayHoldManagedFields is the pre-check for omitManagedFields: the API
// server never escapes a letter, but a key written with \u escapes is the
// same key to a JSON reader, so such an event is walked too.
func mayHoldManagedFields(raw []byte) bool {
	return bytes.Contains(raw, []byte("managedFields")) || bytes.Contains(raw, []byte(`\u00`))
}

// relevelEvent edits one event's JSON: with lower set, it sets the level
// member to level and removes the bodies that level does not log; with
// omitMF, it removes managedFields from the bodies kept, as the API server
// does (not from a patch's request body, which it logs as sent).
func relevelEvent(raw []byte, level audit.Level, lower, omitMF, patch bool) ([]byte, bool, error) {
	ms, _, err := members(raw, skipWS(raw, 0), 0)
	if err != nil {
		return nil, false, fmt.Errorf("event: %w", err)
	}
	drop := make([]bool, len(ms))
	for i, m := range ms {
		key := raw[m.k0:m.k1]
		switch {
		case lower && keyIs(key, "responseObject"):
			drop[i] = levelRank(level) < levelRank(audit.LevelRequestResponse)
		case lower && keyIs(key, "requestObject"):
			drop[i] = levelRank(level) < levelRank(audit.LevelRequest)
		}
	}
	ed := &editor{in: raw}
	lead := 0 // a leading run of dropped members goes with the key that follows it
	for lead < len(ms) && drop[lead] {
		lead++
	}
	switch {
	case lead == len(ms) && lead > 0:
		ed.replace(ms[0].k0, ms[lead-1].v1, nil)
	case lead > 0:
		ed.replace(ms[0].k0, ms[lead].k0, nil)
	}
	for i := lead; i < len(ms); i++ {
		m := ms[i]
		key := raw[m.k0:m.k1]
		switch {
		case drop[i]:
			ed.replace(ms[i-1].v1, m.v1, nil) // the comma before it, and it
		case lower && keyIs(key, "level"):
			ed.replace(m.v0, m.v1, []byte(`"`+string(level)+`"`))
		case omitMF && keyIs(key, "responseObject"), omitMF && !patch && keyIs(key, "requestObject"):
			if err := omitManagedFields(ed, m.v0); err != nil {
				return nil, false, fmt.Errorf("%s: %w", key, err)
			}
		}
	}
	out, changed := ed.result()
	return out, changed, nil
}

// keyExact reports whether the JSON string key is name, compared as the
// API server's decoder compares keys of an object: exactly.
func keyExact(key []byte, name string) bool {
	if bytes.IndexByte(key, '\\') < 0 {
		return len(key) == len(name)+2 && string(key[1:len(key)-1]) == name
	}
	s, ok := unquote(key)
	return ok && s == name
}

// omitManagedFields removes metadata.managedFields from the body at
// ed.in[i] as k8s.io/apiserver's copyWithoutManagedFields does: from the
// object itself, from each item of a list (an object whose "items" is an
// array), and from the object of each row of a meta.k8s.io Table. As
// there, a list with an item that is not an object is left whole.
func omitManagedFields(ed *editor, i int) error {
	b := ed.in
	if b[i] != '{' {
		return nil
	}
	ms, _, err := members(b, i, 1)
	if err != nil {
		return err
	}
	var list []int // start of each list item, or of each row's object
	kind, apiVersion := "", ""
	for _, m := range ms {
		key := b[m.k0:m.k1]
		switch {
		case keyExact(key, "kind") && b[m.v0] == '"':
			kind, _ = unquote(b[m.v0:m.v1])
		case keyExact(key, "apiVersion") && b[m.v0] == '"':
			apiVersion, _ = unquote(b[m.v0:m.v1])
		}
	}
	table := kind == "Table" && bytes.HasPrefix([]byte(apiVersion), []byte("meta.k8s.io/"))
	for _, m := range ms {
		key := b[m.k0:m.k1]
		switch {
		case keyExact(key, "items") && b[m.v0] == '[' && !table:
			items, err := elements(b, m.v0)
			if err != nil {
				return err
			}
			for _, it := range items {
				if b[it] != '{' {
					return nil // the API server gives up on the whole body
				}
			}
			list = append(list, items...)
		case keyExact(key, "rows") && b[m.v0] == '[' && table:
			rows, err := elements(b, m.v0)
			if err != nil {
				return err
			}
			for _, row := range rows {
				if b[row] != '{' {
					continue
				}
				rms, _, err := members(b, row, 2)
				if err != nil {
					return err
				}
				for _, rm := range rms {
					if keyExact(b[rm.k0:rm.k1], "object") && b[rm.v0] == '{' {
						list = append(list, rm.v0)
					}
				}
			}
		}
	}
	// Edits must come in order: the object's own metadata, and its list,
	// in the order they are written.
	starts := []int{i}
	starts = append(starts, list...)
	edits := make([][2]int, 0, len(starts))
	for _, s := range starts {
		r, ok, err := managedFieldsRange(b, s)
		if err != nil {
			return err
		}
		if ok {
			edits = append(edits, r)
		}
	}
	sort.Slice(edits, func(a, c int) bool { return edits[a][0] < edits[c][0] })
	for _, r := range edits {
		ed.replace(r[0], r[1], nil)
	}
	return nil
}

// managedFieldsRange finds metadata.managedFields in the object at b[i]
// and returns the bytes that removing it deletes (with its comma).
func managedFieldsRange(b []byte, i int) ([2]int, bool, error) {
	ms, _, err := members(b, i, 2)
	if err != nil {
		return [2]int{}, false, err
	}
	var meta *member
	for k := range ms {
		if keyExact(b[ms[k].k0:ms[k].k1], "metadata") {
			meta = &ms[k] // the last one is the one a decoder keeps
		}
	}
	if meta == nil || b[meta.v0] != '{' {
		return [2]int{}, false, nil
	}
	mms, _, err := members(b, meta.v0, 3)
	if err != nil {
		return [2]int{}, false, err
	}
	for k := range mms {
		if !keyExact(b[mms[k].k0:mms[k].k1], "managedFields") {
			continue
		}
		switch {
		case len(mms) == 1:
			return [2]int{mms[k].k0, mms[k].v1}, true, nil
		case k == 0:
			return [2]int{mms[0].k0, mms[1].k0}, true, nil
		default:
			return [2]int{mms[k-1].v1, mms[k].v1}, true, nil
		}
	}
	return [2]int{}, false, nil
}

// elements returns the start of each element of the array at b[i].
func elements(b []byte, i int) ([]int, error) {
	var out []int
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == ']' {
		return nil, nil
	}
	for {
		out = append(out, i)
		j, err := skipValue(b, i, 2)
		if err != nil {
			return nil, err
		}
		if j = skipWS(b, j); j >= len(b) {
			return nil, errRedactSyntax
		}
		switch b[j] {
		case ']':
			return out, nil
		case ',':
			i = skipWS(b, j+1)
		default:
			return nil, errRedactSyntax
		}
	}
}

// relevelSink is the decorator: it applies the policy to every event of a
// batch before its delegate sees it.
type relevelSink struct {
	next Sink
	r    *Releveler
}

var _ Sink = (*relevelSink)(nil)

// NewRelevel returns a Sink that hands next every batch as the policy of r
// would have had the API server write it: events it drops are left out,
// the others re-levelled. Events the policy leaves alone reach next
// unchanged, bytes included. An event whose bytes cannot be walked is
// rejected (not stored as it was); the rest of its batch goes on.
func NewRelevel(next Sink, r *Releveler) Sink { return &relevelSink{next: next, r: r} }

// Append applies the policy and hands on. See Sink.
func (s *relevelSink) Append(ctx context.Context, b *Batch) (Result, error) {
	var counts PolicyCounts
	res, err := rewriteBatch(ctx, s.next, b, func(rec audit.Record, out *audit.Record) (bool, bool, string) {
		var (
			r       PolicyResult
			changed bool
			err     error
		)
		if *out, r, changed, err = s.r.Apply(rec); err != nil {
			return false, false, "cannot apply the ingest policy: " + err.Error()
		}
		counts[r]++
		return !r.Dropped(), changed, ""
	})
	if err == nil {
		s.add(&counts)
	}
	return res, err
}

func (s *relevelSink) add(c *PolicyCounts) {
	for i, n := range c {
		if n > 0 {
			s.r.counts[i].Add(n)
		}
	}
}
