package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// proc is a long-running child process (etcd, kube-apiserver, kubetrail)
// whose combined output goes to a log file; the last lines of that file are
// printed when the test fails.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{} // closed when the process has exited
	waitErr error         // valid after done is closed
	stopped bool
	// diesBySIGTERM marks a program that, after its own clean shutdown,
	// re-raises SIGTERM and so ends "killed by signal" (etcd does).
	diesBySIGTERM bool
}

// startProc starts bin with args and registers a cleanup that stops it.
// Cleanups run in reverse order, so processes started later stop first.
func startProc(t *testing.T, name, bin string, args ...string) *proc {
	t.Helper()
	logPath := filepath.Join(t.ArtifactDir(), name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	// If the test binary dies without running its cleanups (a -timeout
	// panic, a kill), take the child with it rather than leave an API
	// server running.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	p := &proc{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		if !p.stopped {
			if err := p.stop(30 * time.Second); err != nil {
				t.Logf("cleanup: %v", err)
			}
		}
		if t.Failed() {
			p.dumpLog(t, 40)
		}
	})
	return p
}

// exited reports whether the process has already exited.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM and waits up to timeout for the process to exit, then
// kills it. It returns an error when the process had to be killed or exited
// with a non-zero status.
func (p *proc) stop(timeout time.Duration) error {
	p.stopped = true
	if !p.exited() {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
	}
	select {
	case <-p.done:
	case <-time.After(timeout):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("%s did not exit within %s of SIGTERM; killed", p.name, timeout)
	}
	if p.waitErr != nil && !(p.diesBySIGTERM && killedBy(p.waitErr, syscall.SIGTERM)) {
		return fmt.Errorf("%s exited after SIGTERM: %w", p.name, p.waitErr)
	}
	return nil
}

func killedBy(err error, sig syscall.Signal) bool {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == sig
}

// dumpLog prints the last n lines of the process's output.
func (p *proc) dumpLog(t *testing.T, n int) {
	t.Helper()
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		t.Logf("%s log: %v", p.name, err)
		return
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	t.Logf("last %d lines of %s output (%s):\n%s", len(lines), p.name, p.logPath, strings.Join(lines, "\n"))
}

// grepLog returns the lines of the process's output that contain s.
func (p *proc) grepLog(s string) []string {
	f, err := os.Open(p.logPath)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		if strings.Contains(sc.Text(), s) {
			out = append(out, sc.Text())
		}
	}
	return out
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// waitReady polls check until it returns nil, the process exits, or the
// timeout passes; the last error is reported on failure.
func waitReady(t *testing.T, p *proc, timeout time.Duration, check func(context.Context) error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		if p.exited() {
			p.dumpLog(t, 60)
			t.Fatalf("%s exited before it was ready: %v", p.name, p.waitErr)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		last = check(ctx)
		cancel()
		if last == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	p.dumpLog(t, 60)
	t.Fatalf("%s not ready after %s: %v", p.name, timeout, last)
}

// httpGetOK returns nil when GET url with client answers 200.
func httpGetOK(ctx context.Context, client *http.Client, url, token string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return errors.New(resp.Status)
	}
	return nil
}
