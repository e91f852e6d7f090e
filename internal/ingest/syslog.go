package ingest

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"sync"
	"time"

	"github.com/kubetrail/kubetrail/internal/audit"
	"github.com/kubetrail/kubetrail/internal/pipeline"
	"github.com/kubetrail/kubetrail/internal/syslog"
)

// SyslogSDID is the structured-data element a sender uses to name the
// cluster of an RFC 5424 message: [kubetrail@32473 cluster="prod"]. 32473
// is the example enterprise number of RFC 5612, as for kubetrail's alerts
// (alert@32473).
const SyslogSDID = "kubetrail@32473"

// Syslog defaults.
const (
	DefaultSyslogMaxMessageBytes = 4 << 20
	DefaultSyslogMaxConns        = 128
	DefaultSyslogIdleTimeout     = 10 * time.Minute
	DefaultSyslogFrameTimeout    = time.Minute
)

// Results a syslog message can have, for SyslogConfig.Count.
const (
	SyslogStored    = "stored"    // an event newly stored
	SyslogDuplicate = "duplicate" // an event already stored
	SyslogInvalid   = "invalid"   // not a syslog message, or no usable audit event in it
	SyslogSkipped   = "skipped"   // a frame over the size limit, or bytes that are no frame
	SyslogRefused   = "refused"   // an event the store refused for good
	SyslogUnstored  = "unstored"  // read but not stored: the store failed until shutdown
	SyslogDropped   = "dropped"   // UDP only: the queue to the store was full
	SyslogForbidden = "forbidden" // TLS only: the sender's certificate may not write the event's cluster, or may not send at all
)

// batchMaxEvents bounds one batch of a connection; batches also end when
// no whole frame is buffered.
const batchMaxEvents = 1000

// readBufferBytes is each connection's read buffer. A batch holds the
// whole frames already buffered, so the buffer sets how many events share
// one fsync: 64 KiB held about 50 of the bench corpus's events, and 512
// KiB (about 400, the API server's webhook batch) stored 200k events
// 1.4-1.5x faster in alternating runs (bench/run's syslog row).
const readBufferBytes = 512 << 10

// SyslogConfig configures the syslog listeners.
type SyslogConfig struct {
	// Listen are the addresses: tcp://HOST:PORT, tls://HOST:PORT or
	// udp://HOST:PORT.
	Listen []string
	// TLS serves the tls:// listeners; it must be set when there is one.
	TLS *tls.Config
	// DefaultCluster names the cluster of messages whose structured data
	// names none (SyslogSDID's cluster parameter).
	DefaultCluster string
	// MaxMessageBytes bounds one message; a larger frame is read past
	// without being held, and reported.
	MaxMessageBytes int
	// MaxConns bounds the TCP and TLS connections open at once; more wait
	// in the kernel's accept backlog.
	MaxConns int
	// IdleTimeout closes a connection on which no frame starts for this
	// long; FrameTimeout closes one whose frame (or TLS handshake) takes
	// longer than this to arrive.
	IdleTimeout, FrameTimeout time.Duration
	// Limits bound each event.
	Limits audit.Limits
	// Logger receives what was skipped and why, with the peer's address.
	Logger *slog.Logger
	// Count, when set, is told how many messages of a transport (tcp, tls,
	// udp) had a result (one of the Syslog* results).
	Count func(transport, result string, n int)
	// Connections, when set, is told of each connection opened (+1) and
	// closed (-1).
	Connections func(transport string, delta int)
	// Authorize, when set, is asked about each tls:// connection once its
	// handshake is done, with the sender's verified certificate in cs.
	// An error closes the connection (logged, counted forbidden). Else
	// the returned function, when not nil, is asked about each event's
	// cluster; an event whose cluster it refuses is skipped, logged and
	// counted forbidden. It must be safe for concurrent use.
	Authorize func(cs tls.ConnectionState) (cluster func(name string) bool, err error)
}

func (c SyslogConfig) withDefaults() SyslogConfig {
	if c.DefaultCluster == "" {
		c.DefaultCluster = "default"
	}
	if c.MaxMessageBytes <= 0 {
		c.MaxMessageBytes = DefaultSyslogMaxMessageBytes
	}
	if c.MaxConns <= 0 {
		c.MaxConns = DefaultSyslogMaxConns
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = DefaultSyslogIdleTimeout
	}
	if c.FrameTimeout <= 0 {
		c.FrameTimeout = DefaultSyslogFrameTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Count == nil {
		c.Count = func(string, string, int) {}
	}
	if c.Connections == nil {
		c.Connections = func(string, int) {}
	}
	return c
}

// ParseSyslogListen splits a --syslog-listen value into its transport
// (tcp, tls, udp) and host:port.
func ParseSyslogListen(s string) (transport, addr string, err error) {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
		return "", "", fmt.Errorf("--syslog-listen %q: want tcp://HOST:PORT, tls://HOST:PORT or udp://HOST:PORT", s)
	}
	switch u.Scheme {
	case "tcp", "tls", "udp":
	default:
		return "", "", fmt.Errorf("--syslog-listen %q: unknown transport %q: want tcp, tls or udp", s, u.Scheme)
	}
	if _, _, err := net.SplitHostPort(u.Host); err != nil {
		return "", "", fmt.Errorf("--syslog-listen %q: %w", s, err)
	}
	return u.Scheme, u.Host, nil
}

// Syslog receives audit events as syslog messages (RFC 5424 or RFC 3164,
// octet-counted or newline-framed) over TCP, TLS and UDP and stores them
// into a pipeline.Sink. Over TCP and TLS the events read from a
// connection are durable before more is read from it (docs/ingest.md).
type Syslog struct {
	sink pipeline.Sink
	cfg  SyslogConfig
	dec  *audit.Decoder

	streams []streamListener
	packets []packetListener
	slots   chan struct{} // one per open connection

	mu    sync.Mutex
	conns map[*timedConn]struct{}
	wg    sync.WaitGroup
}

type streamListener struct {
	transport string
	ln        net.Listener
}

type packetListener struct {
	pc net.PacketConn
}

// NewSyslog returns listeners for cfg.Listen that store into sink; Listen
// binds them.
func NewSyslog(sink pipeline.Sink, cfg SyslogConfig) (*Syslog, error) {
	cfg = cfg.withDefaults()
	for _, l := range cfg.Listen {
		tr, _, err := ParseSyslogListen(l)
		if err != nil {
			return nil, err
		}
		if tr == "tls" && cfg.TLS == nil {
			return nil, fmt.Errorf("--syslog-listen %s needs --tls-cert and --tls-key", l)
		}
	}
	if !ClusterNamePattern().MatchString(cfg.DefaultCluster) {
		return nil, fmt.Errorf("--syslog-cluster %q is not a valid name (letters, digits, '.', '_', '-'; at most 63)", cfg.DefaultCluster)
	}
	return &Syslog{sink: sink, cfg: cfg, dec: audit.NewDecoder(cfg.Limits),
		slots: make(chan struct{}, cfg.MaxConns), conns: map[*timedConn]struct{}{}}, nil
}

// Listen binds every address. On an error the ones bound are closed.
func (s *Syslog) Listen() error {
	for _, l := range s.cfg.Listen {
		tr, addr, _ := ParseSyslogListen(l)
		var err error
		if tr == "udp" {
			var pc net.PacketConn
			if pc, err = net.ListenPacket("udp", addr); err == nil {
				s.packets = append(s.packets, packetListener{pc: pc})
			}
		} else {
			var ln net.Listener
			if ln, err = net.Listen("tcp", addr); err == nil {
				if tr == "tls" {
					ln = tls.NewListener(ln, s.cfg.TLS)
				}
				s.streams = append(s.streams, streamListener{transport: tr, ln: ln})
			}
		}
		if err != nil {
			s.closeListeners()
			return fmt.Errorf("--syslog-listen %s: %w", l, err)
		}
	}
	return nil
}

// Addrs returns the bound addresses as URLs, in the order of
// SyslogConfig.Listen by transport: streams first, then UDP.
func (s *Syslog) Addrs() []string {
	var out []string
	for _, l := range s.streams {
		out = append(out, l.transport+"://"+l.ln.Addr().String())
	}
	for _, p := range s.packets {
		out = append(out, "udp://"+p.pc.LocalAddr().String())
	}
	return out
}

func (s *Syslog) closeListeners() {
	for _, l := range s.streams {
		l.ln.Close()
	}
	for _, p := range s.packets {
		p.pc.Close()
	}
}

// Run serves the bound listeners until ctx ends. Then it stops accepting
// and reading, stores what each connection has read, closes the
// connections and returns.
func (s *Syslog) Run(ctx context.Context) error {
	for _, l := range s.streams {
		s.wg.Go(func() { s.accept(ctx, l) })
	}
	for _, p := range s.packets {
		s.wg.Go(func() { s.serveUDP(ctx, p.pc) })
	}
	<-ctx.Done()
	s.closeListeners()
	s.mu.Lock()
	for c := range s.conns {
		c.stop()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

func (s *Syslog) accept(ctx context.Context, l streamListener) {
	log := s.cfg.Logger.With("transport", l.transport, "listen", l.ln.Addr().String())
	for {
		select {
		case s.slots <- struct{}{}:
		default:
			log.Warn("syslog: all connections in use (--syslog-max-connections); new ones wait in the accept backlog", "max", s.cfg.MaxConns)
			select {
			case s.slots <- struct{}{}:
			case <-ctx.Done():
				return
			}
		}
		c, err := l.ln.Accept()
		if err != nil {
			<-s.slots
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			log.Warn("syslog: accept", "err", err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		tc := &timedConn{Conn: c, idle: s.cfg.IdleTimeout, frame: s.cfg.FrameTimeout}
		s.mu.Lock()
		if ctx.Err() != nil {
			s.mu.Unlock()
			c.Close()
			<-s.slots
			return
		}
		s.conns[tc] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			defer func() { <-s.slots }()
			s.cfg.Connections(l.transport, 1)
			defer s.cfg.Connections(l.transport, -1)
			s.serveConn(ctx, l.transport, tc)
			s.mu.Lock()
			delete(s.conns, tc)
			s.mu.Unlock()
			c.Close()
		}()
	}
}

// timedConn bounds every read: a frame must arrive within the frame
// timeout of its start, and a new frame must start within the idle
// timeout. stop ends reading for good.
type timedConn struct {
	net.Conn
	idle, frame time.Duration
	fr          *syslog.FrameReader
	frameStart  time.Time // when the frame being read began to arrive

	mu      sync.Mutex
	stopped bool
}

var errStopped = errors.New("kubetrail is shutting down")

func (c *timedConn) Read(p []byte) (int, error) {
	now := time.Now()
	deadline := now.Add(c.idle)
	if c.fr != nil && c.fr.InFrame() {
		if c.frameStart.IsZero() {
			c.frameStart = now
		}
		deadline = c.frameStart.Add(c.frame)
	}
	c.mu.Lock()
	if c.stopped {
		c.mu.Unlock()
		return 0, errStopped
	}
	c.Conn.SetReadDeadline(deadline)
	c.mu.Unlock()
	n, err := c.Conn.Read(p)
	if err != nil && c.isStopped() {
		err = errStopped
	}
	return n, err
}

func (c *timedConn) stop() {
	c.mu.Lock()
	c.stopped = true
	c.Conn.SetReadDeadline(time.Now())
	c.mu.Unlock()
}

func (c *timedConn) isStopped() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stopped
}

// maxLoggedProblems is how many problems one connection (or one UDP
// listener a minute) logs one by one; the rest are counted and summed up.
const maxLoggedProblems = 10

// reader turns one stream's frames into batches.
type reader struct {
	s         *Syslog
	transport string
	log       *slog.Logger
	frame     int // frames read, for naming them in problems
	problems  int
	batches   []*pipeline.Batch // in order of arrival, a new one when the cluster changes
	events    int
	// allow, when set, says whether the sender may write a cluster.
	allow func(cluster string) bool
}

func (s *Syslog) serveConn(ctx context.Context, transport string, c *timedConn) {
	log := s.cfg.Logger.With("transport", transport, "peer", c.RemoteAddr().String())
	var allow func(string) bool
	if tc, ok := c.Conn.(*tls.Conn); ok {
		hctx, cancel := context.WithTimeout(ctx, s.cfg.FrameTimeout)
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			log.Warn("syslog: TLS handshake failed; connection closed", "err", err)
			return
		}
		if s.cfg.Authorize != nil {
			if allow, err = s.cfg.Authorize(tc.ConnectionState()); err != nil {
				s.cfg.Count(transport, SyslogForbidden, 1)
				log.Warn("syslog: sender not allowed; connection closed", "err", err)
				return
			}
		}
	}
	fr := syslog.NewFrameReader(c, readBufferBytes, s.cfg.MaxMessageBytes)
	c.fr = fr
	r := &reader{s: s, transport: transport, log: log, allow: allow}
	defer r.summary()
	for {
		c.frameStart = time.Time{}
		f, err := fr.Next()
		r.take(f)
		// Batch what is already here, store it, then read on.
		for err == nil && fr.Ready() && r.events < batchMaxEvents {
			c.frameStart = time.Time{}
			f, err = fr.Next()
			r.take(f)
		}
		if !r.store(ctx) {
			return
		}
		if err != nil {
			r.end(err)
			return
		}
	}
}

// take adds a frame's event to the batch of its cluster, or logs why it
// cannot.
func (r *reader) take(f syslog.Frame) {
	if f.Reason != "" {
		r.problem(SyslogSkipped, f.Reason)
	}
	if f.Msg == nil {
		return
	}
	r.frame++
	r.s.decode(f.Msg, func(cluster string, rec audit.Record) {
		if r.allow != nil && !r.allow(cluster) {
			r.problem(SyslogForbidden, fmt.Sprintf("cluster %q: the sender's certificate may not write this cluster", cluster))
			return
		}
		// A new batch when the cluster changes keeps the arrival order.
		var b *pipeline.Batch
		if n := len(r.batches); n > 0 && r.batches[n-1].Cluster == cluster {
			b = r.batches[n-1]
		} else {
			b = &pipeline.Batch{Cluster: cluster, Received: time.Now()}
			r.batches = append(r.batches, b)
		}
		b.Records = append(b.Records, rec)
		r.events++
	}, func(reason string) { r.problem(SyslogInvalid, reason) })
}

func (r *reader) problem(result, reason string) {
	r.s.cfg.Count(r.transport, result, 1)
	r.problems++
	switch {
	case r.problems <= maxLoggedProblems:
		r.log.Warn("syslog: skipped", "frame", r.frame, "reason", reason)
	case r.problems == maxLoggedProblems+1:
		r.log.Warn("syslog: more problems on this connection are counted, not logged", "frame", r.frame, "reason", reason)
	}
}

func (r *reader) summary() {
	if r.problems > maxLoggedProblems {
		r.log.Warn("syslog: connection closed after problems", "problems", r.problems, "frames", r.frame)
	}
}

// end logs why a connection ended, unless it ended cleanly.
func (r *reader) end(err error) {
	var ne net.Error
	switch {
	case errors.Is(err, errStopped), errors.Is(err, net.ErrClosed), errors.Is(err, io.EOF):
	case errors.Is(err, io.ErrUnexpectedEOF):
		r.log.Warn("syslog: the sender closed the connection inside a frame; that frame is lost", "frame", r.frame+1)
	case errors.As(err, &ne) && ne.Timeout():
		r.log.Warn("syslog: connection closed: it was idle past --syslog-idle-timeout, or a frame took longer than the frame timeout to arrive", "frame", r.frame+1, "err", err)
	default:
		r.log.Warn("syslog: connection closed on a read error", "frame", r.frame+1, "err", err)
	}
}

// store appends the batches read so far. A failing store is retried
// without reading on, so the sender waits; false means the events could
// not be stored before shutdown and the connection must close.
func (r *reader) store(ctx context.Context) bool {
	defer func() { r.batches, r.events = r.batches[:0], 0 }()
	for i, b := range r.batches {
		if !r.s.append(ctx, r.log, r.transport, b) {
			for _, rest := range r.batches[i+1:] {
				r.s.cfg.Count(r.transport, SyslogUnstored, len(rest.Records))
			}
			return false
		}
	}
	return true
}

// append stores one batch, retrying with backoff until it is stored or
// kubetrail shuts down; it reports whether it was stored.
func (s *Syslog) append(ctx context.Context, log *slog.Logger, transport string, b *pipeline.Batch) bool {
	wait := 100 * time.Millisecond
	for attempt := 0; ; attempt++ {
		res, err := s.sink.Append(context.WithoutCancel(ctx), b)
		if err == nil {
			s.cfg.Count(transport, SyslogStored, res.Stored)
			s.cfg.Count(transport, SyslogDuplicate, res.Duplicates)
			for _, rj := range res.Rejected {
				s.cfg.Count(transport, SyslogRefused, 1)
				log.Error("syslog: the store refused an event for good", "auditID", b.Records[rj.Index].Event.AuditID, "reason", rj.Reason)
			}
			if attempt > 0 {
				log.Info("syslog: the store takes events again; reading on", "attempts", attempt+1)
			}
			return true
		}
		if errors.Is(err, pipeline.ErrClosed) || ctx.Err() != nil {
			s.cfg.Count(transport, SyslogUnstored, len(b.Records))
			log.Error("syslog: events read from the connection could not be stored before shutdown; closing it (the sender does not resend them: TCP syslog has no acknowledgement)",
				"events", len(b.Records), "err", err)
			return false
		}
		if attempt == 0 {
			log.Warn("syslog: cannot store; not reading from the connection until the store takes the batch (the sender waits)", "events", len(b.Records), "err", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// decode finds the audit events in one syslog message and the cluster
// they belong to.
func (s *Syslog) decode(msg []byte, emit func(cluster string, rec audit.Record), bad func(reason string)) {
	m, err := syslog.Parse(msg)
	if err != nil {
		bad(err.Error())
		return
	}
	cluster := s.cfg.DefaultCluster
	if v, ok := m.Param(SyslogSDID, "cluster"); ok {
		if !ClusterNamePattern().MatchString(v) {
			bad(fmt.Sprintf("[%s cluster=%q] is not a valid cluster name (letters, digits, '.', '_', '-'; at most 63)", SyslogSDID, v))
			return
		}
		cluster = v
	}
	payload := unwrapSyslogPayload(m.Msg)
	if len(payload) == 0 {
		bad(fmt.Sprintf("%s message from %q has no message text", m.Format, m.AppName))
		return
	}
	n := 0
	s.dec.DecodeLine("message", 0, payload, func(rec audit.Record) {
		n++
		emit(cluster, rec)
	}, func(p audit.Problem) {
		reason := p.Reason
		if !bytes.HasSuffix(payload, []byte("}")) && len(msg) >= 1024 {
			reason += fmt.Sprintf(" (the %d-byte message may have been cut by its sender: rsyslog cuts at maxMessageSize, 8 KiB by default)", len(msg))
		}
		bad(reason)
	})
}

// unwrapSyslogPayload takes the audit event's JSON out of what forwarders
// put around it: rsyslog's "@cee:" cookie, and JSON envelopes that carry
// the line as a string (journald's MESSAGE, and message, msg or log as
// syslog-ng, Fluent Bit, Vector and Docker write them). An object that
// holds "auditID" is an event already, and is left as it is.
func unwrapSyslogPayload(b []byte) []byte {
	for range 2 {
		if rest, ok := bytes.CutPrefix(b, []byte("@cee:")); ok {
			b = bytes.TrimSpace(rest)
		}
		if len(b) == 0 || b[0] != '{' || bytes.Contains(b, []byte(`"auditID"`)) {
			return b
		}
		var env struct {
			Message *string `json:"message"` // matches MESSAGE too
			Msg     *string `json:"msg"`
			Log     *string `json:"log"`
		}
		if json.Unmarshal(b, &env) != nil {
			return b
		}
		var inner *string
		for _, v := range []*string{env.Message, env.Msg, env.Log} {
			if v != nil {
				inner = v
				break
			}
		}
		if inner == nil {
			return b
		}
		b = bytes.TrimSpace([]byte(*inner))
	}
	return b
}
