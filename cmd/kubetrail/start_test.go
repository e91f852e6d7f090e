package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// allInitBounds are what every package of the kubetrail binary together
// (the standard library's, third-party and kubetrail's) may allocate in
// its initialisation, counted by GODEBUG=inittrace=1: counts, not
// milliseconds, so a busy machine cannot fail the test. At a7425c8 the
// binary's inits make 2,587 allocations of 312,448 bytes (gojq's builtin
// table 1,669 and 148,632 of them); with client_golang linked they made
// 4,130 of 525,744.
const (
	maxAllInitAllocs = 3200
	maxAllInitBytes  = 400 << 10
)

// notLinked are import paths (prefixes) the binary must not link: each
// brings package initialisation every command pays, for what only one
// command (serve's /metrics) needs or none does. internal/metrics writes
// /metrics in their place.
var notLinked = []string{
	"github.com/prometheus/",     // client_golang: default registry, Go and process collectors, regexps
	"google.golang.org/protobuf", // descriptors registered at init
	"expvar",                     // registers /debug/vars on http.DefaultServeMux at init
}

// TestStartLinksNoCostlyInit starts the real binary (`--version`, which
// does nothing but start) with GODEBUG=inittrace=1 and bounds what all
// package inits together allocate, and checks with go list that none of
// notLinked is linked. (Mutation tried: a blank import of
// github.com/prometheus/client_golang/prometheus and .../collectors in
// internal/server: 4,133 allocations, 525,840 bytes, and the go list
// check fail here.)
func TestStartLinksNoCostlyInit(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 100 {
		t.Fatalf("go list -deps gave %d packages, want the binary's", len(deps))
	}
	for _, d := range deps {
		for _, bad := range notLinked {
			if strings.HasPrefix(d, bad) {
				t.Errorf("the binary links %s: its package init runs at every start of every command (docs/adr/0026-process-start.md)", d)
			}
		}
	}

	bin, err := buildOnce()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--version")
	cmd.Env = append(os.Environ(), "GODEBUG=inittrace=1")
	trace, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("kubetrail --version: %v\n%s", err, trace)
	}
	var inits, allocs, bytes int
	for _, line := range strings.Split(string(trace), "\n") {
		if _, b, a, ok := parseInitTrace(line); ok {
			inits++
			allocs += a
			bytes += b
		}
	}
	if inits < 50 {
		t.Fatalf("inittrace named %d packages, want the binary's; output:\n%s", inits, trace)
	}
	if allocs > maxAllInitAllocs || bytes > maxAllInitBytes {
		t.Errorf("the binary's package inits allocate %d times (%d bytes) at every start, over %d (%d bytes): a newly linked dependency or package-level work; see GODEBUG=inittrace=1 kubetrail --version", allocs, bytes, maxAllInitAllocs, maxAllInitBytes)
	}
}

// Every kubetrail process pays for the package initialisation of the whole
// binary, whatever its command (issue 12: `--version` and a count of an
// empty store under 2 ms). These tests keep kubetrail's own packages from
// doing work at start that a command may not need: it belongs in a
// sync.OnceValue next to its first use. Third-party packages (gojq's
// builtins, klauspost's CRC tables) are bounded only together, by
// TestStartLinksNoCostlyInit: their work is the price of linking them, so
// the question is which of them the binary links (docs/adr/0026).

// initBounds are what all of kubetrail's packages together, and any one of
// them, may allocate while the process starts. Today the total is about 126
// allocations and 18 KiB: small map literals and the sync.OnceValue closures.
const (
	maxInitAllocs      = 200
	maxInitBytes       = 32 << 10
	maxPackageAllocs   = 40
	maxPackageBytes    = 8 << 10
	ownPackagePrefix   = "github.com/kubetrail/kubetrail/internal/"
	minOwnPackagesSeen = 10
)

// TestStartAllocatesLittle runs this test binary (which links every
// package the kubetrail binary links) again with GODEBUG=inittrace=1 and
// bounds what kubetrail's packages allocate in their initialisation.
// (Mutation tried: ClusterNamePattern's regexp, {0,62} and all, as a
// package-level regexp.MustCompile in internal/ingest: 852 allocations,
// 58 KiB, fails here.)
func TestStartAllocatesLittle(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, "-test.run=^$")
	cmd.Env = append(os.Environ(), "GODEBUG=inittrace=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s -test.run=^$: %v\n%s", self, err, out)
	}
	var seen, allocs, bytes int
	for _, line := range strings.Split(string(out), "\n") {
		pkg, b, a, ok := parseInitTrace(line)
		if !ok || !strings.HasPrefix(pkg, ownPackagePrefix) {
			continue
		}
		seen++
		allocs += a
		bytes += b
		if a > maxPackageAllocs || b > maxPackageBytes {
			t.Errorf("%s allocates %d times (%d bytes) at process start, over %d (%d bytes): make its package-level work lazy (sync.OnceValue)", pkg, a, b, maxPackageAllocs, maxPackageBytes)
		}
	}
	if seen < minOwnPackagesSeen {
		t.Fatalf("inittrace named %d of kubetrail's packages, want at least %d; output:\n%s", seen, minOwnPackagesSeen, out)
	}
	if allocs > maxInitAllocs || bytes > maxInitBytes {
		t.Errorf("kubetrail's packages allocate %d times (%d bytes) at process start, over %d (%d bytes)", allocs, bytes, maxInitAllocs, maxInitBytes)
	}
}

// parseInitTrace reads one line of GODEBUG=inittrace=1, e.g.
// "init net/http @6.8 ms, 0.027 ms clock, 4712 bytes, 49 allocs".
func parseInitTrace(line string) (pkg string, bytes, allocs int, ok bool) {
	f := strings.Fields(line)
	if len(f) != 11 || f[0] != "init" || f[8] != "bytes," || f[10] != "allocs" {
		return "", 0, 0, false
	}
	b, err1 := strconv.Atoi(f[7])
	a, err2 := strconv.Atoi(f[9])
	return f[1], b, a, err1 == nil && err2 == nil
}

// costlyAtStart are calls that must not run in a package-level variable's
// initialiser: each compiles or builds something (a regexp with a bounded
// repetition such as {0,62} compiles to hundreds of allocations) that only
// some commands use.
var costlyAtStart = map[string]bool{
	"regexp.MustCompile": true, "regexp.Compile": true, "regexp.MustCompilePOSIX": true,
	"template.Must": true, "template.New": true,
	"json.Unmarshal": true, "yaml.Unmarshal": true, "x509.ParseCertificate": true,
}

// TestNoCostlyPackageVars finds the calls of costlyAtStart in the
// initialisers of package-level variables of kubetrail's own code (not in
// the function literals a sync.OnceValue runs later, but in those called
// right away), small ones included that the allocation bound above lets
// through. crc32.MakeTable(crc32.Castagnoli) is not among them: it returns
// one table the standard library builds once per process, and
// klauspost/compress builds it at start already. (Mutation tried: `var
// walName = regexp.MustCompile(...)` in internal/wal fails here.)
func TestNoCostlyPackageVars(t *testing.T) {
	fset := token.NewFileSet()
	files := 0
	for _, dir := range []string{"../../internal", "."} {
		err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			f, err := parser.ParseFile(fset, path, nil, 0)
			if err != nil {
				return err
			}
			files++
			for _, decl := range f.Decls {
				g, ok := decl.(*ast.GenDecl)
				if !ok || g.Tok != token.VAR {
					continue
				}
				for _, spec := range g.Specs {
					for _, v := range spec.(*ast.ValueSpec).Values {
						for _, call := range costlyCalls(v) {
							t.Errorf("%s: package-level %s runs at every process start; build it on first use (sync.OnceValue)", fset.Position(call.Pos()), call.name)
						}
					}
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if files < 100 {
		t.Fatalf("parsed %d files, want kubetrail's sources", files)
	}
}

type costlyCall struct {
	name string
	ast.Node
}

// costlyCalls lists the calls of costlyAtStart that evaluating e runs: it
// enters function literals only where they are called on the spot.
func costlyCalls(e ast.Expr) []costlyCall {
	var found []costlyCall
	ast.Inspect(e, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.FuncLit:
			return false
		case *ast.CallExpr:
			if lit, ok := n.Fun.(*ast.FuncLit); ok {
				ast.Inspect(lit.Body, func(m ast.Node) bool {
					if c, ok := m.(*ast.CallExpr); ok && costlyAtStart[callName(c)] {
						found = append(found, costlyCall{callName(c), c})
					}
					return true
				})
			}
			if name := callName(n); costlyAtStart[name] {
				found = append(found, costlyCall{name, n})
			}
		}
		return true
	})
	return found
}

// callName is "pkg.Func" for a call of a qualified function.
func callName(c *ast.CallExpr) string {
	sel, ok := c.Fun.(*ast.SelectorExpr)
	if !ok {
		return ""
	}
	id, ok := sel.X.(*ast.Ident)
	if !ok {
		return ""
	}
	return id.Name + "." + sel.Sel.Name
}
