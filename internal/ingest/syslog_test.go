package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/kubetrail/kubetrail/internal/pipeline"
)

// syslogSink keeps what it is given. fail, when set, decides the error of
// each Append (attempt counts from 1); block, when set, is waited on.
type syslogSink struct {
	mu      sync.Mutex
	batches []pipeline.Batch
	calls   int
	fail    func(attempt int) error
	called  chan struct{} // gets a value at each Append, when set
	block   chan struct{}
}

func (s *syslogSink) Append(ctx context.Context, b *pipeline.Batch) (pipeline.Result, error) {
	if s.called != nil {
		s.called <- struct{}{}
	}
	if s.block != nil {
		<-s.block
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if s.fail != nil {
		if err := s.fail(s.calls); err != nil {
			return pipeline.Result{}, err
		}
	}
	s.batches = append(s.batches, *b)
	return pipeline.Result{Stored: len(b.Records)}, nil
}

// stored returns "cluster raw" per stored event, in order.
func (s *syslogSink) stored() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, b := range s.batches {
		for _, r := range b.Records {
			out = append(out, b.Cluster+" "+string(r.Raw))
		}
	}
	return out
}

// lockedBuffer is a log destination safe for concurrent writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

type syslogRig struct {
	s      *Syslog
	logs   *lockedBuffer
	counts map[string]int
	mu     sync.Mutex
	stop   func()
}

func (r *syslogRig) count(key string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.counts[key]
}

// startSyslog runs listeners on loopback port 0 for each transport.
func startSyslog(t *testing.T, sink pipeline.Sink, cfg SyslogConfig, transports ...string) *syslogRig {
	t.Helper()
	return startSyslogWrapped(t, sink, cfg, nil, transports...)
}

// startSyslogWrapped is startSyslog with the stream listeners wrapped.
func startSyslogWrapped(t *testing.T, sink pipeline.Sink, cfg SyslogConfig, wrap func(net.Listener) net.Listener, transports ...string) *syslogRig {
	t.Helper()
	r := &syslogRig{logs: &lockedBuffer{}, counts: map[string]int{}}
	for _, tr := range transports {
		cfg.Listen = append(cfg.Listen, tr+"://127.0.0.1:0")
	}
	cfg.Logger = slog.New(slog.NewTextHandler(r.logs, nil))
	cfg.Count = func(tr, result string, n int) {
		r.mu.Lock()
		r.counts[tr+" "+result] += n
		r.mu.Unlock()
	}
	s, err := NewSyslog(sink, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	if wrap != nil {
		for i := range s.streams {
			s.streams[i].ln = wrap(s.streams[i].ln)
		}
	}
	r.s = s
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	var once sync.Once
	r.stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(r.stop)
	return r
}

func (r *syslogRig) addr(t *testing.T, transport string) string {
	t.Helper()
	for _, a := range r.s.Addrs() {
		if tr, addr, _ := ParseSyslogListen(a); tr == transport {
			return addr
		}
	}
	t.Fatalf("no %s listener", transport)
	return ""
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func rfc5424(msg string) string { return "<110>1 2026-11-23T10:00:00Z node1 kube-audit - - - " + msg }
func rfc3164(msg string) string { return "<110>Nov 23 10:00:00 node1 kube-audit: " + msg }

// bigLine is an audit log line of more than n bytes.
func bigLine(id string, n int) string {
	l := line(id)
	return l[:len(l)-1] + `,"annotations":{"pad":"` + strings.Repeat("p", n) + `"}}`
}

func octets(m string) string { return fmt.Sprintf("%d %s", len(m), m) }

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// TestSyslogMessages: every framing, both formats and the envelopes
// forwarders put around the line give back the line byte for byte, in the
// cluster the structured data names or the default.
func TestSyslogMessages(t *testing.T) {
	sink := &syslogSink{}
	r := startSyslog(t, sink, SyslogConfig{DefaultCluster: "dflt"}, "tcp")
	c, err := net.Dial("tcp", r.addr(t, "tcp"))
	if err != nil {
		t.Fatal(err)
	}
	stream := octets(rfc5424(line("a"))) +
		rfc3164(line("b")) + "\n" +
		octets(`<110>1 2026-11-23T10:00:00Z node1 kube-audit - - [kubetrail@32473 cluster="prod"] `+"\xEF\xBB\xBF"+line("c")) +
		rfc3164("@cee: "+line("d")) + "\r\n" +
		octets(rfc5424("@cee:"+`{"MESSAGE":`+jsonString(line("e"))+`,"_HOSTNAME":"node1","PRIORITY":"6"}`)) +
		octets(rfc3164(`{"log":`+jsonString(line("f")+"\n")+`,"stream":"stdout"}`)) +
		octets(rfc3164(`{"message":`+jsonString(line("g"))+`}`)) +
		octets(rfc3164(item("h"))) // a webhook item: kind and apiVersion put first
	c.Write([]byte(stream))
	c.Close()
	want := []string{"dflt " + line("a"), "dflt " + line("b"), "prod " + line("c"), "dflt " + line("d"),
		"dflt " + line("e"), "dflt " + line("f"), "dflt " + line("g"), "dflt " + line("h")}
	waitFor(t, "8 events", func() bool { return len(sink.stored()) >= len(want) })
	if d := cmp.Diff(want, sink.stored()); d != "" {
		t.Errorf("stored (-want +got):\n%s\nlogs:\n%s", d, r.logs)
	}
	if n := r.count("tcp stored"); n != 8 {
		t.Errorf("counted %d stored, want 8", n)
	}
}

// TestSyslogUDP: one message per datagram.
func TestSyslogUDP(t *testing.T) {
	sink := &syslogSink{}
	r := startSyslog(t, sink, SyslogConfig{}, "udp")
	c, err := net.Dial("udp", r.addr(t, "udp"))
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte(rfc5424(line("u1"))))
	c.Write([]byte(rfc3164(line("u2")) + "\n"))
	c.Write([]byte("\xff\xfe garbage"))
	waitFor(t, "2 events", func() bool { return len(sink.stored()) == 2 })
	waitFor(t, "the garbage named", func() bool { return strings.Contains(r.logs.String(), "not a syslog message") })
	if !strings.Contains(r.logs.String(), "peer="+c.LocalAddr().String()) {
		t.Errorf("the log does not name the sender %s:\n%s", c.LocalAddr(), r.logs)
	}
}

// TestSyslogBadInput: each kind of bad input is skipped with a logged
// reason naming the sender, and the good frames around it on the same
// connection are stored.
func TestSyslogBadInput(t *testing.T) {
	good1, good2 := octets(rfc5424(line("good-1"))), rfc3164(line("good-2"))+"\n"
	ev := rfc5424(line("x"))
	cases := []struct {
		name, bad, reason string
	}{
		{"frame longer than its count", fmt.Sprintf("%d %s", len(ev)-40, ev), "not a syslog frame"},
		{"missing count", ev, ""},
		{"garbage count", "12ab " + ev, "is not a number followed by a space"},
		{"binary garbage", "\x00\xff\xfe\x80\x01\x7f<<>>\x00", "not a syslog frame"},
		{"not an audit event", octets(rfc5424(`{"hello":"world"}`)), "not an audit event: missing auditID"},
		{"invalid cluster", octets(`<14>1 - - - - - [kubetrail@32473 cluster="a b"] ` + line("y")), "is not a valid cluster name"},
		{"cut by the sender", octets(rfc3164(bigLine("z", 9000))[:8192]), "may have been cut by its sender"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sink := &syslogSink{}
			r := startSyslog(t, sink, SyslogConfig{MaxMessageBytes: 64 << 10}, "tcp")
			c, err := net.Dial("tcp", r.addr(t, "tcp"))
			if err != nil {
				t.Fatal(err)
			}
			c.Write([]byte(good1 + tc.bad + good2))
			c.Close()
			got := func() []string {
				var out []string
				for _, s := range sink.stored() {
					if strings.Contains(s, `"good-`) {
						out = append(out, s)
					}
				}
				return out
			}
			waitFor(t, "both good events", func() bool { return len(got()) == 2 })
			if tc.reason == "" { // a missing count is no harm: newline framing takes over
				if n := len(sink.stored()); n != 3 {
					t.Errorf("stored %d events, want 3: %q", n, sink.stored())
				}
				return
			}
			peer := "peer=" + c.LocalAddr().String()
			waitFor(t, "the reason logged", func() bool { return strings.Contains(r.logs.String(), tc.reason) })
			for _, l := range strings.Split(r.logs.String(), "\n") {
				if strings.Contains(l, tc.reason) && !strings.Contains(l, peer) {
					t.Errorf("log line without the sender's address (%s): %s", peer, l)
				}
			}
		})
	}
}

// TestSyslogHugeFrame: a 100 MB frame is skipped, named with its size
// and sender, without the server holding it; the next frame is stored.
func TestSyslogHugeFrame(t *testing.T) {
	sink := &syslogSink{}
	r := startSyslog(t, sink, SyslogConfig{}, "tcp")
	c, err := net.Dial("tcp", r.addr(t, "tcp"))
	if err != nil {
		t.Fatal(err)
	}
	const size = 100 << 20
	fmt.Fprintf(c, "%s%d <14>1 - - - - - - ", octets(rfc5424(line("before"))), size)
	chunk := make([]byte, 1<<20)
	for sent := 18; sent < size; sent += len(chunk) {
		c.Write(chunk[:min(len(chunk), size-sent)])
	}
	c.Write([]byte(octets(rfc5424(line("after")))))
	c.Close()
	waitFor(t, "2 events", func() bool { return len(sink.stored()) == 2 })
	want := fmt.Sprintf("a frame of %d bytes is over the 4194304-byte message limit; skipped", size)
	if !strings.Contains(r.logs.String(), want) || !strings.Contains(r.logs.String(), "peer="+c.LocalAddr().String()) {
		t.Errorf("log does not say %q with the sender:\n%s", want, r.logs)
	}
	if r.count("tcp skipped") != 1 {
		t.Errorf("counts: %v", r.counts)
	}
}

// TestSyslogSlowSender: a sender that stops inside a frame is cut off
// after the frame timeout, and one that sends nothing after the idle
// timeout; what it sent before is kept, and why is logged.
func TestSyslogSlowSender(t *testing.T) {
	sink := &syslogSink{}
	r := startSyslog(t, sink, SyslogConfig{FrameTimeout: 300 * time.Millisecond, IdleTimeout: 600 * time.Millisecond}, "tcp")
	ev := octets(rfc5424(line("slow")))
	for _, partial := range []string{ev[:30], ""} {
		c, err := net.Dial("tcp", r.addr(t, "tcp"))
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte(octets(rfc5424(line("first"))) + partial))
		began := time.Now()
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if n, err := c.Read(make([]byte, 1)); err != io.EOF {
			t.Fatalf("partial %q: read %d, %v; want the server to close the connection", partial, n, err)
		}
		took := time.Since(began)
		if want := 300 * time.Millisecond; partial == "" {
			want = 600 * time.Millisecond
			if took < want {
				t.Errorf("an idle connection was closed after %v, before the idle timeout", took)
			}
		} else if took > 590*time.Millisecond {
			t.Errorf("a stalled frame held the connection for %v; the frame timeout is %v", took, want)
		}
		peer := "peer=" + c.LocalAddr().String()
		waitFor(t, "the timeout logged", func() bool {
			return strings.Contains(r.logs.String(), "connection closed: it was idle") && strings.Contains(r.logs.String(), peer)
		})
		c.Close()
	}
	if got := len(sink.stored()); got != 2 {
		t.Errorf("stored %d events, want the first of each connection", got)
	}
}

// countingListener counts the bytes the server reads from its
// connections.
type countingListener struct {
	net.Listener
	read *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	return countingConn{c, l.read}, err
}

type countingConn struct {
	net.Conn
	read *atomic.Int64
}

func (c countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.read.Add(int64(n))
	return n, err
}

// TestSyslogDurableBeforeReadingOn: what was read from a connection is
// stored before anything more is read from it, and a store that fails is
// retried (the sender waits) rather than the events dropped.
// Mutations it catches: reading the next frame before storing what was
// read (no Append comes for the first frame), storing in the background
// while reading on (the bytes read pass the first frame while its Append
// is held), and giving up on a failed Append (the first event is missing).
func TestSyslogDurableBeforeReadingOn(t *testing.T) {
	sink := &syslogSink{called: make(chan struct{}, 100), block: make(chan struct{})}
	fails := 3
	sink.fail = func(attempt int) error {
		if attempt <= fails {
			return fmt.Errorf("%w: injected", pipeline.ErrUnavailable)
		}
		return nil
	}
	var read atomic.Int64
	r := startSyslogWrapped(t, sink, SyslogConfig{}, func(ln net.Listener) net.Listener { return countingListener{ln, &read} }, "tcp")
	var release sync.Once
	unblock := func() { release.Do(func() { close(sink.block) }) }
	t.Cleanup(unblock) // before the listener stops, even when the test fails
	c, err := net.Dial("tcp", r.addr(t, "tcp"))
	if err != nil {
		t.Fatal(err)
	}
	f1, f2 := octets(rfc5424(line("one"))), octets(rfc5424(line("two")))
	c.Write([]byte(f1))
	select {
	case <-sink.called: // the first Append is waiting
	case <-time.After(5 * time.Second):
		t.Fatal("the first frame was not stored while nothing more was sent: the listener waits to read more before storing")
	}
	c.Write([]byte(f2))
	time.Sleep(200 * time.Millisecond)
	if n := read.Load(); n != int64(len(f1)) {
		t.Fatalf("read %d bytes while the first frame (%d bytes) was not yet stored", n, len(f1))
	}
	unblock()
	waitFor(t, "both events", func() bool { return len(sink.stored()) == 2 })
	if d := cmp.Diff([]string{"default " + line("one"), "default " + line("two")}, sink.stored()); d != "" {
		t.Errorf("stored (-want +got):\n%s", d)
	}
	if !strings.Contains(r.logs.String(), "cannot store; not reading from the connection") {
		t.Errorf("the failing store was not logged:\n%s", r.logs)
	}
}

// TestSyslogUnstoredAtShutdown: events read while the store fails until
// shutdown are not lost silently: the count is logged as an error and
// counted.
func TestSyslogUnstoredAtShutdown(t *testing.T) {
	sink := &syslogSink{fail: func(int) error { return fmt.Errorf("%w: disk full", pipeline.ErrUnavailable) }}
	r := startSyslog(t, sink, SyslogConfig{}, "tcp")
	c, err := net.Dial("tcp", r.addr(t, "tcp"))
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte(octets(rfc5424(line("one"))) + octets(rfc5424(line("two")))))
	waitFor(t, "the failure logged", func() bool { return strings.Contains(r.logs.String(), "cannot store") })
	r.stop()
	if !strings.Contains(r.logs.String(), "could not be stored before shutdown") || r.count("tcp unstored") != 2 {
		t.Errorf("unstored events not reported (counts %v):\n%s", r.counts, r.logs)
	}
}

// TestSyslogMaxConnections: beyond the limit a connection waits, and is
// served once another closes.
func TestSyslogMaxConnections(t *testing.T) {
	sink := &syslogSink{}
	r := startSyslog(t, sink, SyslogConfig{MaxConns: 1}, "tcp")
	c1, err := net.Dial("tcp", r.addr(t, "tcp"))
	if err != nil {
		t.Fatal(err)
	}
	c1.Write([]byte(octets(rfc5424(line("one")))))
	waitFor(t, "the first event", func() bool { return len(sink.stored()) == 1 })
	c2, err := net.Dial("tcp", r.addr(t, "tcp"))
	if err != nil {
		t.Fatal(err)
	}
	c2.Write([]byte(octets(rfc5424(line("two")))))
	time.Sleep(200 * time.Millisecond)
	if n := len(sink.stored()); n != 1 {
		t.Fatalf("a connection beyond --syslog-max-connections was served (%d events)", n)
	}
	c1.Close()
	waitFor(t, "the second event once the first connection closed", func() bool { return len(sink.stored()) == 2 })
	if !strings.Contains(r.logs.String(), "all connections in use") {
		t.Errorf("the limit was not logged:\n%s", r.logs)
	}
}

func TestParseSyslogListen(t *testing.T) {
	for in, want := range map[string]string{
		"tcp://127.0.0.1:514": "tcp 127.0.0.1:514", "tls://[::1]:6514": "tls [::1]:6514", "udp://:514": "udp :514",
		"http://x:1": "unknown transport", "tcp://x": "missing port", "127.0.0.1:514": "want tcp://HOST:PORT", "tcp://x:1/path": "want tcp://",
	} {
		tr, addr, err := ParseSyslogListen(in)
		got := tr + " " + addr
		if err != nil {
			got = err.Error()
		}
		if !strings.Contains(got, want) {
			t.Errorf("%s: %q, want %q", in, got, want)
		}
	}
}
