package jq

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/kubetrail/kubetrail/internal/audit"
)

// progGen writes random jq programs over audit events from the shapes
// analysts use: select with conditions on event paths (the values drawn
// from the corpus, so that they match), then a result built from paths,
// objects, arrays, deletions and updates.
type progGen struct {
	r      *rand.Rand
	values map[string][]string // path -> string values seen
}

var (
	strPaths = []string{".verb", ".user.username", ".objectRef.resource", ".objectRef.namespace", ".objectRef.name",
		".userAgent", ".level", ".stage", ".objectRef.subresource", ".objectRef.apiGroup", `.annotations["authorization.k8s.io/decision"]`,
		".impersonatedUser.username", ".requestURI", ".auditID"}
	anyPaths = []string{".user", ".objectRef", ".responseStatus", ".sourceIPs", ".user.groups", ".annotations",
		".requestObject.metadata", ".responseObject.kind", ".requestReceivedTimestamp", ".responseStatus.code", ".sourceIPs[0]"}
)

func (g *progGen) pick(list []string) string { return list[g.r.IntN(len(list))] }

func (g *progGen) lit(path string) string {
	vs := g.values[path]
	if len(vs) == 0 || g.r.IntN(8) == 0 {
		return `"no-such-value"`
	}
	return fmt.Sprintf("%q", vs[g.r.IntN(len(vs))])
}

func (g *progGen) cond(depth int) string {
	switch n := g.r.IntN(12); {
	case depth < 2 && n == 0:
		return g.cond(depth+1) + " and " + g.cond(depth+1)
	case depth < 2 && n == 1:
		return "(" + g.cond(depth+1) + " or " + g.cond(depth+1) + ")"
	case depth < 2 && n == 2:
		return "(" + g.cond(depth+1) + " | not)"
	case n == 3:
		return fmt.Sprintf(".responseStatus.code %s %d", g.pick([]string{">=", ">", "<", "<=", "==", "!="}), []int{200, 201, 400, 403, 404}[g.r.IntN(5)])
	case n == 4:
		return fmt.Sprintf(`any(.sourceIPs[]?; . == %s)`, g.lit(".sourceIPs[]"))
	case n == 5:
		p := g.pick(strPaths[:5])
		v := strings.Trim(g.lit(p), `"`)
		if len(v) > 3 {
			v = v[:3]
		}
		return fmt.Sprintf(`(%s | tostring | %s(%q))`, p, g.pick([]string{"startswith", "endswith", "test", "contains"}), v)
	case n == 6:
		return fmt.Sprintf(`.user.groups[]? == %s`, g.lit(".user.groups[]"))
	case n == 7:
		p := g.pick(strPaths[:4])
		return fmt.Sprintf(`(%s | IN(%s, %s))`, p, g.lit(p), g.lit(p))
	default:
		p := g.pick(strPaths)
		op := "=="
		if g.r.IntN(5) == 0 {
			op = "!="
		}
		return fmt.Sprintf("%s %s %s", p, op, g.lit(p))
	}
}

func (g *progGen) result() string {
	switch g.r.IntN(10) {
	case 0:
		return "."
	case 1:
		return g.pick(anyPaths)
	case 2:
		return fmt.Sprintf("{%s: %s, %s: %s}", g.pick([]string{"user", "who", "z"}), g.pick(strPaths), g.pick([]string{"time", "a", "verb"}), g.pick(anyPaths))
	case 3:
		return fmt.Sprintf("[%s, %s]", g.pick(strPaths), g.pick(anyPaths))
	case 4:
		return fmt.Sprintf("del(%s, .requestObject)", g.pick([]string{".user", ".annotations", ".sourceIPs", ".objectRef.name"}))
	case 5:
		return fmt.Sprintf(". + {%s: %s}", g.pick([]string{"cluster", "verb", "kind"}), g.pick(strPaths))
	case 6:
		return fmt.Sprintf("%s |= %s", g.pick([]string{".verb", ".user", ".objectRef.name", ".stageTimestamp"}), g.pick([]string{`"x"`, "length", "null", `{b: 1, a: 2}`}))
	case 7:
		return fmt.Sprintf("%s // %q", g.pick(strPaths), "none")
	case 8:
		return fmt.Sprintf("(.user | .extra = %s) , .objectRef", g.pick(strPaths))
	default:
		return fmt.Sprintf("%s, %s", g.pick(strPaths), g.pick(anyPaths))
	}
}

func (g *progGen) program() string {
	switch g.r.IntN(4) {
	case 0:
		return g.result()
	case 1:
		return "select(" + g.cond(0) + ")"
	case 2:
		return "select(" + g.cond(0) + ") | select(" + g.cond(0) + ") | " + g.result()
	default:
		return "select(" + g.cond(0) + ") | " + g.result()
	}
}

// TestGeneratedProgramsMatchJQ runs 150 generated programs over the corpus
// with --jq's machinery and with jq: the same bytes, and every pushed-down
// filter holds on every event a program prints for.
func TestGeneratedProgramsMatchJQ(t *testing.T) {
	if testing.Short() {
		t.Skip("runs jq 150 times")
	}
	jqPath(t)
	all := loadCorpus(t)
	lines := append(all[:1200:1200], all[len(all)-2:]...)
	input := bytes.Join(lines, nil)
	events := make([]audit.Event, len(lines))
	g := &progGen{r: rand.New(rand.NewPCG(7, 11)), values: map[string][]string{}}
	seen := map[string]bool{}
	for i, l := range lines {
		if err := audit.DecodeStored(bytes.TrimSuffix(l, []byte("\n")), &events[i]); err != nil {
			t.Fatal(err)
		}
		ev := &events[i]
		add := func(p, v string) {
			if v != "" && !seen[p+"\x00"+v] {
				seen[p+"\x00"+v] = true
				g.values[p] = append(g.values[p], v)
			}
		}
		add(".verb", ev.Verb)
		add(".user.username", ev.User.Username)
		add(".userAgent", ev.UserAgent)
		add(".level", string(ev.Level))
		add(".stage", string(ev.Stage))
		add(".requestURI", ev.RequestURI)
		add(".auditID", ev.AuditID)
		add(`.annotations["authorization.k8s.io/decision"]`, ev.Annotations["authorization.k8s.io/decision"])
		if ev.ImpersonatedUser != nil {
			add(".impersonatedUser.username", ev.ImpersonatedUser.Username)
		}
		if o := ev.ObjectRef; o != nil {
			add(".objectRef.resource", o.Resource)
			add(".objectRef.namespace", o.Namespace)
			add(".objectRef.name", o.Name)
			add(".objectRef.subresource", o.Subresource)
			add(".objectRef.apiGroup", o.APIGroup)
		}
		for _, ip := range ev.SourceIPs {
			add(".sourceIPs[]", ip)
		}
		for _, gr := range ev.User.Groups {
			add(".user.groups[]", gr)
		}
	}
	printing, pushed := 0, 0
	for range 150 {
		src := g.program()
		p, err := Compile(src, time.Now())
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		want := runJQ(t, src, input)
		have := runProgram(t, p, lines)
		if !bytes.Equal(want, have) {
			t.Errorf("program %s", src)
			compareLines(t, want, have)
		}
		if len(want) > 0 {
			printing++
		}
		f := p.Filter()
		if f == nil {
			continue
		}
		pushed++
		for i, l := range lines {
			if _, n, _ := p.Run(context.Background(), bytes.TrimSuffix(l, []byte("\n")), nil); n > 0 && !f.Match(&events[i], "") {
				t.Fatalf("%s: push-down %s drops event %d, which the program prints for", src, f, i)
			}
		}
	}
	// A generator that drifted to programs printing nothing, or none the
	// push-down applies to, would make the comparisons above vacuous.
	if printing < 50 || pushed < 30 {
		t.Fatalf("150 programs: only %d printed something and %d had a push-down; the generator no longer tests much", printing, pushed)
	}
	t.Logf("150 programs: %d printed something, %d had a push-down", printing, pushed)
}
