package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// event is one audit event: the exact line it was read from, and the line
// parsed. Two events are the same when their lines are the same bytes:
// kubetrail promises to store and export the API server's own log line for
// every event it receives by webhook or from the log (docs/formats.md), so
// key order, spacing, escapes and number spelling must all survive.
type event struct {
	raw    string
	v      map[string]any
	source string // where it was read, "file:line"
}

// str returns the string at a dotted path such as "user.username", or "".
func (e event) str(path string) string {
	s, _ := e.get(path).(string)
	return s
}

// annotation returns the value of an annotation, whose key may hold dots.
func (e event) annotation(key string) string {
	m, _ := e.v["annotations"].(map[string]any)
	s, _ := m[key].(string)
	return s
}

// code returns responseStatus.code, or 0 when absent.
func (e event) code() int {
	f, _ := e.get("responseStatus.code").(float64)
	return int(f)
}

func (e event) get(path string) any {
	var cur any = e.v
	for _, k := range strings.Split(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[k]
	}
	return cur
}

// key identifies an event for humans: auditID and stage. It is not unique
// (a client may choose its Audit-ID), so it is only used to explain diffs.
func (e event) key() string { return e.str("auditID") + "/" + e.str("stage") }

// summary is a one-line description for failure messages.
func (e event) summary() string {
	sub := e.str("objectRef.subresource")
	if sub != "" {
		sub = "/" + sub
	}
	return fmt.Sprintf("%s %s user=%q verb=%s %s%s code=%d uri=%s (%s)",
		e.str("auditID"), e.str("stage"), e.str("user.username"), e.str("verb"),
		e.str("objectRef.resource"), sub, e.code(), e.str("requestURI"), e.source)
}

// parseEvents reads JSON lines; every non-empty line must be one object.
func parseEvents(t *testing.T, r io.Reader, source string) []event {
	t.Helper()
	var out []event
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 1<<20), 64<<20)
	for n := 1; sc.Scan(); n++ {
		// The line as written, without its newline: no trimming, so a
		// stray space or \r would count as a difference.
		line := sc.Bytes()
		if len(line) == 0 {
			continue
		}
		var v map[string]any
		if err := json.Unmarshal(line, &v); err != nil {
			t.Fatalf("%s:%d: not a JSON object: %v: %.200s", source, n, err, line)
		}
		out = append(out, event{raw: string(line), v: v, source: fmt.Sprintf("%s:%d", source, n)})
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("read %s: %v", source, err)
	}
	return out
}

// readAuditLog reads the API server's audit log at path together with the
// backups its rotation left beside it (audit-<timestamp>.log for
// audit.log), oldest first, and returns the events and the files read.
func readAuditLog(t *testing.T, path string) ([]event, []string) {
	t.Helper()
	ext := filepath.Ext(path)
	prefix := strings.TrimSuffix(path, ext) + "-"
	backups, err := filepath.Glob(prefix + "*" + ext)
	if err != nil {
		t.Fatal(err)
	}
	// The timestamp in a backup name sorts in time order.
	sort.Strings(backups)
	files := append(backups, path)
	var events []event
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatalf("open audit log: %v", err)
		}
		events = append(events, parseEvents(t, fh, filepath.Base(f))...)
		fh.Close()
	}
	return events, files
}

// assertSameEvents fails the test unless got and want hold the same lines,
// byte for byte, the same number of times, in any order. On a mismatch it
// lists what is missing from got and what is extra, pairing events that
// share auditID and stage and showing how they differ.
func assertSameEvents(t *testing.T, gotName string, got []event, wantName string, want []event) {
	t.Helper()
	count := map[string]int{}
	for _, e := range want {
		count[e.raw]++
	}
	for _, e := range got {
		count[e.raw]--
	}
	var missing, extra []event
	for _, e := range want {
		if count[e.raw] > 0 {
			count[e.raw]--
			missing = append(missing, e)
		}
	}
	for _, e := range got {
		if count[e.raw] < 0 {
			count[e.raw]++
			extra = append(extra, e)
		}
	}
	if len(missing) == 0 && len(extra) == 0 {
		t.Logf("%s and %s hold the same %d lines, byte for byte", gotName, wantName, len(want))
		return
	}

	var b strings.Builder
	fmt.Fprintf(&b, "%s (%d events) and %s (%d events) differ: %d missing from %s, %d extra in %s\n",
		gotName, len(got), wantName, len(want), len(missing), gotName, len(extra), gotName)
	const limit = 15
	extraByKey := map[string][]int{}
	for i, e := range extra {
		extraByKey[e.key()] = append(extraByKey[e.key()], i)
	}
	paired := map[int]bool{}
	for i, m := range missing {
		if i == limit {
			fmt.Fprintf(&b, "... and %d more missing\n", len(missing)-limit)
			break
		}
		fmt.Fprintf(&b, "MISSING %s\n", m.summary())
		if idx := extraByKey[m.key()]; len(idx) > 0 {
			j := idx[0]
			extraByKey[m.key()] = idx[1:]
			paired[j] = true
			if d := cmp.Diff(m.v, extra[j].v); d != "" {
				fmt.Fprintf(&b, "  %s has %s with the same auditID and stage; diff (-%s +%s):\n%s",
					gotName, extra[j].source, wantName, gotName, indent(d, "    "))
			} else {
				fmt.Fprintf(&b, "  %s has %s, the same JSON value in other bytes:\n    %-9s %s\n    %-9s %s\n",
					gotName, extra[j].source, wantName, m.raw, gotName, extra[j].raw)
			}
		}
	}
	shown := 0
	for j, e := range extra {
		if paired[j] {
			continue
		}
		if shown == limit {
			fmt.Fprintf(&b, "... and more extra\n")
			break
		}
		shown++
		fmt.Fprintf(&b, "EXTRA   %s\n", e.summary())
	}
	t.Error(b.String())
}

func indent(s, prefix string) string {
	lines := strings.SplitAfter(s, "\n")
	lines = slices.DeleteFunc(lines, func(l string) bool { return l == "" })
	for i, l := range lines {
		lines[i] = prefix + l
	}
	return strings.Join(lines, "")
}

// countBy returns how many events there are per value of the dotted path,
// formatted for t.Logf.
func countBy(events []event, path string) string {
	n := map[string]int{}
	for _, e := range events {
		n[e.str(path)]++
	}
	keys := make([]string, 0, len(n))
	for k := range n {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%d", k, n[k])
	}
	return strings.Join(parts, " ")
}
