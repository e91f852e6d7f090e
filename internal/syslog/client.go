package syslog

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"
)

// DefaultTimeout bounds a connect and a write when ctx has no deadline.
const DefaultTimeout = 10 * time.Second

// Client sends framed messages to one syslog server over TCP, or TLS when
// TLS is set. It connects on the first Send and again after an error.
// Send must not be called concurrently.
//
// TCP syslog has no acknowledgement: Send returns once the bytes are
// written to the connection. Before writing on a connection it already
// had, Send checks that the server has not closed it, which catches the
// common loss (a server restart or idle timeout between sends); a server
// that dies after the write and before it reads can still lose them.
type Client struct {
	// Addr is host:port.
	Addr string
	// TLS, when set, makes the connection TLS with this configuration.
	TLS *tls.Config

	mu   sync.Mutex
	conn net.Conn
	buf  []byte
}

// Send writes the messages, each framed with octet counting, in one write.
// On an error the connection is closed: the caller sends them again.
func (c *Client) Send(ctx context.Context, msgs ...[]byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn != nil && !c.alive() {
		c.conn.Close()
		c.conn = nil
	}
	if c.conn == nil {
		if err := c.dial(ctx); err != nil {
			return err
		}
	}
	c.buf = c.buf[:0]
	for _, m := range msgs {
		c.buf = AppendFrame(c.buf, m)
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(DefaultTimeout)
	}
	c.conn.SetWriteDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { c.conn.SetWriteDeadline(time.Unix(1, 0)) })
	_, err := c.conn.Write(c.buf)
	stop()
	if err != nil {
		c.conn.Close()
		c.conn = nil
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("syslog write to %s: %w", c.Addr, err)
	}
	return nil
}

func (c *Client) dial(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, DefaultTimeout)
	defer cancel()
	var err error
	if c.TLS != nil {
		d := &tls.Dialer{Config: c.TLS}
		c.conn, err = d.DialContext(ctx, "tcp", c.Addr)
	} else {
		var d net.Dialer
		c.conn, err = d.DialContext(ctx, "tcp", c.Addr)
	}
	if err != nil {
		c.conn = nil
		return fmt.Errorf("syslog connect to %s: %w", c.Addr, err)
	}
	return nil
}

// alive reports whether the server has not closed the connection: a read
// that would block means it is open (syslog servers never write).
func (c *Client) alive() bool {
	var b [1]byte
	c.conn.SetReadDeadline(time.Now().Add(time.Millisecond))
	_, err := c.conn.Read(b[:])
	c.conn.SetReadDeadline(time.Time{})
	return err != nil && errors.Is(err, os.ErrDeadlineExceeded)
}

// Close closes the connection, if any.
func (c *Client) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == nil {
		return nil
	}
	err := c.conn.Close()
	c.conn = nil
	return err
}
