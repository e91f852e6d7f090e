package investigate

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// normalizeBody returns an object body as indented JSON lines with sorted
// keys, leaving out what changes on every write without saying anything
// about the object: metadata.managedFields and metadata.resourceVersion.
// kind is the body's kind; ok is false when the body is not a JSON object.
func normalizeBody(raw []byte) (lines []string, kind string, ok bool) {
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil, "", false
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber() // keep numbers exactly as written
	var obj map[string]any
	if err := dec.Decode(&obj); err != nil || obj == nil {
		return nil, "", false
	}
	kind, _ = obj["kind"].(string)
	if md, ok := obj["metadata"].(map[string]any); ok {
		delete(md, "managedFields")
		delete(md, "resourceVersion")
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(obj); err != nil {
		return nil, "", false
	}
	return strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n"), kind, true
}

// indentJSON pretty-prints any JSON body (a patch may be an array).
func indentJSON(raw []byte) []string {
	var buf bytes.Buffer
	if err := json.Indent(&buf, bytes.TrimSpace(raw), "", "  "); err != nil {
		return []string{string(raw)}
	}
	return strings.Split(buf.String(), "\n")
}

// diffOp is one line of an edit script: ' ' kept, '-' removed, '+' added.
type diffOp struct {
	kind byte
	line string
}

// maxDiffCells bounds the work of the line diff (lines of a times lines of
// b, after common prefix and suffix are set aside); beyond it the changed
// middle is shown as removed and added whole.
const maxDiffCells = 4 << 20

// diffLines computes a shortest edit script from a to b by longest common
// subsequence.
func diffLines(a, b []string) []diffOp {
	pre := 0
	for pre < len(a) && pre < len(b) && a[pre] == b[pre] {
		pre++
	}
	suf := 0
	for suf < len(a)-pre && suf < len(b)-pre && a[len(a)-1-suf] == b[len(b)-1-suf] {
		suf++
	}
	var ops []diffOp
	for _, l := range a[:pre] {
		ops = append(ops, diffOp{' ', l})
	}
	am, bm := a[pre:len(a)-suf], b[pre:len(b)-suf]
	n, m := len(am), len(bm)
	if n*m > maxDiffCells {
		for _, l := range am {
			ops = append(ops, diffOp{'-', l})
		}
		for _, l := range bm {
			ops = append(ops, diffOp{'+', l})
		}
	} else {
		// lcs[i*(m+1)+j] is the length of the LCS of am[i:] and bm[j:].
		lcs := make([]int32, (n+1)*(m+1))
		for i := n - 1; i >= 0; i-- {
			for j := m - 1; j >= 0; j-- {
				if am[i] == bm[j] {
					lcs[i*(m+1)+j] = lcs[(i+1)*(m+1)+j+1] + 1
				} else {
					lcs[i*(m+1)+j] = max(lcs[(i+1)*(m+1)+j], lcs[i*(m+1)+j+1])
				}
			}
		}
		i, j := 0, 0
		for i < n || j < m {
			switch {
			case i < n && j < m && am[i] == bm[j]:
				ops = append(ops, diffOp{' ', am[i]})
				i++
				j++
			case j == m || (i < n && lcs[(i+1)*(m+1)+j] >= lcs[i*(m+1)+j+1]):
				ops = append(ops, diffOp{'-', am[i]})
				i++
			default:
				ops = append(ops, diffOp{'+', bm[j]})
				j++
			}
		}
	}
	for _, l := range a[len(a)-suf:] {
		ops = append(ops, diffOp{' ', l})
	}
	return ops
}

// unifiedDiff returns the hunks of a unified diff from a to b with ctx
// lines of context ("@@ -3,7 +3,8 @@", then lines prefixed ' ', '-', '+');
// nil when a and b are equal.
func unifiedDiff(a, b []string, ctx int) []string {
	ops := diffLines(a, b)
	// ai[k], bi[k]: line numbers (0-based) in a and b before op k.
	ai, bi := make([]int, len(ops)+1), make([]int, len(ops)+1)
	for k, op := range ops {
		ai[k+1], bi[k+1] = ai[k], bi[k]
		if op.kind != '+' {
			ai[k+1]++
		}
		if op.kind != '-' {
			bi[k+1]++
		}
	}
	var out []string
	for k := 0; k < len(ops); {
		if ops[k].kind == ' ' {
			k++
			continue
		}
		// A hunk: from ctx lines before this change to ctx lines after the
		// last change that is within 2*ctx kept lines of the one before.
		start := max(0, k-ctx)
		end := k
		for e := k; e < len(ops); e++ {
			if ops[e].kind != ' ' {
				end = e + 1
			} else if e-end >= 2*ctx {
				break
			}
		}
		end = min(len(ops), end+ctx)
		out = append(out, fmt.Sprintf("@@ -%s +%s @@", hunkRange(ai[start], ai[end]-ai[start]), hunkRange(bi[start], bi[end]-bi[start])))
		for _, op := range ops[start:end] {
			out = append(out, string(op.kind)+op.line)
		}
		k = end
	}
	return out
}

// hunkRange writes a unified diff range: 1-based start and length.
func hunkRange(start, n int) string {
	if n == 0 {
		return fmt.Sprintf("%d,0", start)
	}
	if n == 1 {
		return fmt.Sprint(start + 1)
	}
	return fmt.Sprintf("%d,%d", start+1, n)
}
