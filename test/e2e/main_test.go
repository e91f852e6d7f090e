package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// The kubetrail binary under test is built once per `go test` run, lazily,
// by the first test that needs it; tests that only exercise the harness
// never pay for the build.
var kubetrailBuild struct {
	once sync.Once
	dir  string // temporary folder owned by TestMain
	path string
	err  error
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "kubetrail-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: create temp dir:", err)
		os.Exit(1)
	}
	kubetrailBuild.dir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// kubetrailBinary returns the path of the kubetrail binary under test:
// $KUBETRAIL_BIN if set, otherwise one built from the repository root.
// A build failure fails the test: the binary is what is being tested.
func kubetrailBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("KUBETRAIL_BIN"); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("KUBETRAIL_BIN=%s: %v", p, err)
		}
		return p
	}
	b := &kubetrailBuild
	b.once.Do(func() {
		root, err := filepath.Abs(filepath.Join("..", ".."))
		if err != nil {
			b.err = err
			return
		}
		out := filepath.Join(b.dir, "kubetrail")
		cmd := exec.Command("go", "build", "-o", out, "./cmd/kubetrail")
		cmd.Dir = root
		// The repository root is its own module; make sure no go.work or
		// the e2e module's flags leak into its build.
		cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-buildvcs=false")
		var buf bytes.Buffer
		cmd.Stdout, cmd.Stderr = &buf, &buf
		start := time.Now()
		if err := cmd.Run(); err != nil {
			b.err = fmt.Errorf("go build ./cmd/kubetrail in %s: %w\n%s", root, err, buf.String())
			return
		}
		b.path = out
		fmt.Fprintf(os.Stderr, "e2e: built kubetrail in %s\n", time.Since(start).Round(time.Millisecond))
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

// requireTool returns the path of an external program the test needs. When
// it is missing the test fails under CI (so a broken CI image cannot pass
// by skipping everything) and is skipped with instructions otherwise.
func requireTool(t *testing.T, path, howToGet string) string {
	t.Helper()
	if _, err := os.Stat(path); err == nil {
		return path
	}
	unavailable(t, fmt.Sprintf("%s not found; %s", path, howToGet))
	return ""
}

// unavailable ends a test whose environment lacks something: a failure
// under CI (so a broken CI image cannot pass by skipping everything), a
// skip with the reason otherwise.
func unavailable(t *testing.T, msg string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("CI is set and a required e2e dependency is missing: %s", msg)
	}
	t.Skip(msg)
}

// jqVersion is the jq that kubetrail's --jq output is proven byte for byte
// against (docs/query.md); the root module's internal/testenv pins the same.
const jqVersion = "jq-1.6"

// jqBinary returns the path of jq on PATH when it is jqVersion: with
// another jq, identical output would prove nothing about the promise.
func jqBinary(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("jq")
	if err != nil {
		unavailable(t, "jq is not on PATH; the --jq comparison needs "+jqVersion+" (Debian 12: apt-get install jq)")
	}
	out, err := exec.Command(p, "--version").Output()
	if err != nil {
		t.Fatalf("%s --version: %v", p, err)
	}
	if v := strings.TrimSpace(string(out)); v != jqVersion {
		unavailable(t, fmt.Sprintf("%s is %s; kubetrail's --jq output is proven byte for byte against %s only", p, v, jqVersion))
	}
	return p
}

// e2eBinDir is where build.sh puts kube-apiserver and etcd.
func e2eBinDir(t *testing.T) string {
	t.Helper()
	if d := os.Getenv("E2E_BIN_DIR"); d != "" {
		return d
	}
	d, err := filepath.Abs("bin")
	if err != nil {
		t.Fatal(err)
	}
	return d
}

const buildHint = "build it with `make e2e-deps` or `test/e2e/build.sh` (about 5-10 minutes cold)"

func kubeAPIServerBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("KUBE_APISERVER_BIN"); p != "" {
		return requireTool(t, p, "KUBE_APISERVER_BIN points at a missing file")
	}
	return requireTool(t, filepath.Join(e2eBinDir(t), "kube-apiserver"), buildHint)
}

func etcdBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("ETCD_BIN"); p != "" {
		return requireTool(t, p, "ETCD_BIN points at a missing file")
	}
	return requireTool(t, filepath.Join(e2eBinDir(t), "etcd"), buildHint)
}

func kubectlBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("KUBECTL"); p != "" {
		return requireTool(t, p, "KUBECTL points at a missing file")
	}
	// The one on PATH is what users run; build.sh builds one into bin/
	// only when there is none.
	p, err := exec.LookPath("kubectl")
	if err != nil {
		p = filepath.Join(e2eBinDir(t), "kubectl")
	}
	return requireTool(t, p, "put kubectl on PATH, or run test/e2e/build.sh, which builds one when PATH has none")
}
