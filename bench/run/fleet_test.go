package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// TestSendSyslog: the corpus split over connections reaches the listener
// as octet-counted RFC 5424 frames, every line once, none cut, also with
// lines longer than the readers' buffers and parts smaller than a line.
func TestSendSyslog(t *testing.T) {
	var lines []string
	for i := range 50 {
		l := fmt.Sprintf(`{"auditID":"id-%02d","x":"%s"}`, i, strings.Repeat("a", i*i))
		if i == 17 {
			l = fmt.Sprintf(`{"auditID":"id-%02d","x":"%s"}`, i, strings.Repeat("b", 3<<20)) // over bufio's and lineStarts' buffers
		}
		lines = append(lines, l)
	}
	path := filepath.Join(t.TempDir(), "audit.log")
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, conns := range []int{1, 4, 7, 60} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		var got []string
		var wg sync.WaitGroup
		accepted := make(chan struct{})
		go func() {
			// sendSyslog dials once per part, an empty part too; each
			// connection is accepted before the listener closes, so that
			// none is reset in the backlog.
			defer close(accepted)
			for range conns {
				c, err := ln.Accept()
				if err != nil {
					t.Error(err)
					return
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer c.Close()
					msgs, err := readFrames(c)
					if err != nil {
						t.Error(err)
					}
					mu.Lock()
					got = append(got, msgs...)
					mu.Unlock()
				}()
			}
		}()
		if err := sendSyslog(ln.Addr().String(), path, conns); err != nil {
			t.Fatal(err)
		}
		<-accepted
		ln.Close()
		wg.Wait()
		want := slices.Clone(lines)
		slices.Sort(want)
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("%d connections: the listener got %d messages, want the file's %d lines each once", conns, len(got), len(want))
		}
	}
}

// readFrames reads octet-counted frames and returns each message after
// syslogPrefix, which every frame must carry.
func readFrames(r io.Reader) ([]string, error) {
	br := bufio.NewReader(r)
	var msgs []string
	for {
		n, err := br.ReadString(' ')
		if err == io.EOF && n == "" {
			return msgs, nil
		}
		if err != nil {
			return msgs, err
		}
		size, err := strconv.Atoi(strings.TrimSuffix(n, " "))
		if err != nil {
			return msgs, fmt.Errorf("frame count %q: %w", n, err)
		}
		b := make([]byte, size)
		if _, err := io.ReadFull(br, b); err != nil {
			return msgs, err
		}
		msg, ok := strings.CutPrefix(string(b), syslogPrefix)
		if !ok {
			return msgs, fmt.Errorf("frame without the RFC 5424 header: %.80q", b)
		}
		msgs = append(msgs, msg)
	}
}

// TestSumIgnoresOrderOnly: the export check tells a multiset of lines
// from another, whatever the order.
func TestSumIgnoresOrderOnly(t *testing.T) {
	f := func(s string) sum {
		t.Helper()
		got, err := sumLines(strings.NewReader(s))
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	if f("a\nb\nc\n") != f("c\na\nb") {
		t.Error("the same lines in another order sum differently")
	}
	for _, other := range []string{"a\nb\n", "a\nb\nc\nc\n", "a\nb\nd\n", "a\nb\nc \n"} {
		if f("a\nb\nc\n") == f(other) {
			t.Errorf("%q sums as a\\nb\\nc", other)
		}
	}
}

// TestParseBench reads the metrics of go test -bench lines, sub-benchmark
// names with + and spaces turned to _, and the GOMAXPROCS suffix.
func TestParseBench(t *testing.T) {
	out := `goos: linux
BenchmarkForward/syslog+tcp-2         	       1	 385912345 ns/op	    129555 events/s
BenchmarkForward/webhook_eventlist-2  	       1	 185912345 ns/op	    269413 events/s
BenchmarkForward/syslog+tcp-2         	       1	 385912345 ns/op	    102314 events/s
BenchmarkBacklogMemory/destination_down-2	       1	60000000000 ns/op	   6771500 backlog-events	     20.31 live-heap-first-s-MiB	 95315 stored-events/s
PASS
ok  	github.com/kubetrail/kubetrail/internal/forward	70.1s
`
	got := parseBench(out)
	f := func(name, unit string, want ...float64) {
		t.Helper()
		if v := got[name][unit]; !slices.Equal(v, want) {
			t.Errorf("%s %s = %v, want %v", name, unit, v, want)
		}
	}
	f("BenchmarkForward/syslog+tcp", "events/s", 129555, 102314)
	f("BenchmarkForward/webhook_eventlist", "events/s", 269413)
	f("BenchmarkBacklogMemory/destination_down", "backlog-events", 6771500)
	f("BenchmarkBacklogMemory/destination_down", "live-heap-first-s-MiB", 20.31)
	f("BenchmarkBacklogMemory/destination_down", "stored-events/s", 95315)
	if med, rest := medianRest([]float64{3, 1, 2}); med != 2 || rest != "3, 1" {
		t.Errorf("medianRest(3, 1, 2) = %v, %q; want 2, \"3, 1\"", med, rest)
	}
}
