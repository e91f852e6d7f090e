package main

import (
	"bufio"
	"bytes"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// proc is a running kubetrail whose standard error is collected and whose
// memory is watched: a run past maxRSS is killed (and fails the test), so
// a broken limit cannot take the machine down with it.
type proc struct {
	cmd    *exec.Cmd
	stderr *syncBuffer
	waited chan struct{}
	// sampled is closed when the memory sampler has stopped: peak and
	// killed may be read after it.
	sampled chan struct{}
	peak    int64 // KiB, from /proc while it ran
	killed  bool  // by the memory guard
}

const maxRSS = 1 << 20 // KiB: 1 GiB

func start(t *testing.T, bin string, stdout io.Writer, args ...string) *proc {
	t.Helper()
	p := &proc{cmd: exec.Command(bin, args...), stderr: &syncBuffer{}, waited: make(chan struct{}), sampled: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = stdout, p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(p.sampled)
		for {
			select {
			case <-p.waited:
				return
			case <-time.After(20 * time.Millisecond):
			}
			if kib := rssKiB(p.cmd.Process.Pid); kib > p.peak {
				p.peak = kib
				if kib > maxRSS {
					p.killed = true
					p.cmd.Process.Kill()
					return
				}
			}
		}
	}()
	return p
}

// wait waits at most d for the process to end and returns its exit status
// (-1 when it did not end in time; it is killed then).
func (p *proc) wait(t *testing.T, d time.Duration) int {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(d):
		p.cmd.Process.Kill()
		<-done
		close(p.waited)
		<-p.sampled
		return -1
	}
	close(p.waited)
	<-p.sampled
	if p.killed {
		t.Fatalf("%v: killed at %d MiB of memory, past the test's guard", p.cmd.Args[1:], p.peak>>10)
	}
	return p.cmd.ProcessState.ExitCode()
}

func rssKiB(pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		// The high-water mark of the process's own memory since it
		// started (exec gives it a new address space).
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return n
		}
	}
	return 0
}

// TestSignalsStopCommands: a --jq program that would run for ever and an
// export into a slow reader both stop within two seconds of SIGINT or
// SIGTERM, exiting 130 or 143 (128 + the signal) and saying why. (Mutation
// tried: runJQ running the program under context.Background(), as before,
// leaves the jq cases running until the test kills them.)
func TestSignalsStopCommands(t *testing.T) {
	bin, _, data := importCorpus(t, 3000, 5)
	for _, c := range []struct {
		name string
		args []string
		sig  syscall.Signal
		code int
	}{
		{"jq SIGINT", []string{"query", "--data", data, "--jq", "last(range(1e15))", "--jq-timeout", "0"}, syscall.SIGINT, 130},
		{"jq SIGTERM", []string{"query", "--data", data, "--jq", "last(range(1e15))", "--jq-timeout", "0"}, syscall.SIGTERM, 143},
		{"jq sorted SIGINT", []string{"query", "--data", data, "--sort", "-time", "--jq", "last(range(1e15))", "--jq-timeout", "0"}, syscall.SIGINT, 130},
		{"export SIGINT", []string{"export", "--data", data}, syscall.SIGINT, 130},
		{"export SIGTERM", []string{"export", "--data", data}, syscall.SIGTERM, 143},
	} {
		t.Run(c.name, func(t *testing.T) {
			// Nothing is read until the signal is sent, so export is
			// held with megabytes left to write; then everything is, as
			// a pager would after the user pressed Ctrl-C.
			pr, pw := io.Pipe()
			p := start(t, bin, pw, c.args...)
			signalled := make(chan struct{})
			read := make(chan int64)
			go func() {
				<-signalled
				// The signal reaches the command's context through two
				// goroutines; on a loaded machine they have been seen to
				// run only after export, unblocked at once, had written
				// its last megabytes (exit 0 in 18 ms). A pager takes
				// longer than this to drain after Ctrl-C anyway.
				time.Sleep(300 * time.Millisecond)
				n, _ := io.Copy(io.Discard, pr)
				read <- n
			}()
			time.Sleep(700 * time.Millisecond)
			sent := time.Now()
			if err := p.cmd.Process.Signal(c.sig); err != nil {
				t.Fatal(err)
			}
			close(signalled)
			code := p.wait(t, 10*time.Second)
			took := time.Since(sent)
			pw.Close()
			<-read
			if code != c.code || took > 2*time.Second {
				t.Fatalf("exit %d after %v, want %d within 2s; stderr:\n%s", code, took, c.code, p.stderr.String())
			}
			want := "kubetrail: interrupted by " + map[syscall.Signal]string{syscall.SIGINT: "SIGINT", syscall.SIGTERM: "SIGTERM"}[c.sig]
			if got := strings.TrimSpace(p.stderr.String()); !strings.HasSuffix(got, want) {
				t.Fatalf("stderr %q, want it to end with %q", got, want)
			}
		})
	}
}

// TestJQLimits: programs that ask for unbounded memory or time stop at
// the limit with exit status 5 and a message naming the flag to raise,
// without the memory ever coming near what the machine has. (Mutations
// tried: a Watchdog that never samples the heap lets [range(1e12)] reach
// the test's 1 GiB guard; one that ignores Timeout runs last(range(1e15))
// until the test kills it.)
func TestJQLimits(t *testing.T) {
	bin, _, data := importCorpus(t, 200, 6)
	for _, c := range []struct {
		prog  string
		flags []string
		want  string
	}{
		{"[range(1e12)]", []string{"--jq-max-memory", "64MiB"}, "used more than 64MiB of memory (--jq-max-memory;"},
		{"def f: 1+f; f", []string{"--jq-max-memory", "64MiB"}, "used more than 64MiB of memory (--jq-max-memory;"},
		{"range(1e12)", []string{"--jq-max-memory", "64MiB"}, "used more than 64MiB of memory (--jq-max-memory;"},
		{"last(range(1e15))", []string{"--jq-timeout", "300ms"}, "ran longer than 300ms on one event (--jq-timeout;"},
		{"last(range(1e15))", []string{"--sort", "time", "--jq-timeout", "300ms"}, "ran longer than 300ms on one event (--jq-timeout;"},
	} {
		began := time.Now()
		p := start(t, bin, io.Discard, append([]string{"query", "--data", data, "--jq", c.prog}, c.flags...)...)
		code := p.wait(t, 20*time.Second)
		took := time.Since(began)
		stderr := p.stderr.String()
		if code != 5 || !strings.Contains(stderr, c.want) || took > 10*time.Second {
			t.Errorf("%s %v: exit %d after %v, stderr %q; want 5 saying %q", c.prog, c.flags, code, took, stderr, c.want)
		}
		// 64 MiB of heap, the runtime and the store's buffers (80-95 MiB seen).
		// (Not the rusage of wait4: Go starts a child with vfork, and its
		// ru_maxrss counts the test process's own memory, 270-510 MiB
		// under -race, before exec.)
		if peak := p.peak; c.flags[0] == "--jq-max-memory" && peak > 200<<10 {
			t.Errorf("%s: peak RSS %d MiB with --jq-max-memory 64MiB", c.prog, peak>>10)
		}
	}
	// The defaults are on without flags (2GiB is too much to reach in a
	// test on a shared machine: --help says what they are).
	out, err := exec.Command(bin, "query", "--help").Output()
	if err != nil || !bytes.Contains(out, []byte(`--jq-max-memory string   with --jq: the most memory the process may hold while the program runs (0: no limit) (default "2GiB")`)) ||
		!bytes.Contains(out, []byte(`--jq-timeout duration    with --jq: the longest the program may run on one event (0: no limit) (default 10s)`)) {
		t.Errorf("query --help: %v\n%s", err, out)
	}
}
