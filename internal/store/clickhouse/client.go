// Package clickhouse is kubetrail's store on ClickHouse, spoken to over
// ClickHouse's HTTP interface with net/http: inserts and answers in
// RowBinary, statements as text in which every value is a literal made by
// quote (docs/adr/0013-clickhouse-store-phase-1.md). It works with Debian's
// ClickHouse 18.16 and with current releases.
package clickhouse

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// client runs statements over the HTTP interface. It is safe for
// concurrent use.
type client struct {
	cfg  Config
	http *http.Client
	// insertTimeout bounds each insert attempt (InsertTimeout; tests
	// shorten it).
	insertTimeout time.Duration
}

// ErrUnreachable wraps every failure to reach the server (refused, reset,
// timed out), as opposed to an error the server answered with.
var ErrUnreachable = errors.New("ClickHouse is not reachable")

// errInsertTimeout marks an insert abandoned after insertTimeout: a
// collector sends that batch again in smaller inserts.
var errInsertTimeout = errors.New("insert timed out")

// exec runs a statement that returns nothing worth reading.
func (c *client) exec(ctx context.Context, sql string) error {
	return c.do(ctx, sql, nil, func(io.Reader) error { return nil })
}

// query runs sql and hands its answer to read. The server buffers the
// whole answer before sending it (wait_end_of_query), so that an error
// met half-way is an HTTP error and never the tail of a RowBinary stream.
func (c *client) query(ctx context.Context, sql string, read func(io.Reader) error) error {
	return c.do(ctx, sql, nil, read)
}

// insert sends rows in RowBinary for an INSERT ... FORMAT RowBinary
// statement. ClickHouse answers 200 once the rows are written to a part.
func (c *client) insert(ctx context.Context, sql string, rows []byte) error {
	return c.do(ctx, sql, bytes.NewReader(rows), func(io.Reader) error { return nil })
}

// do runs sql; with data, sql is an INSERT whose rows data holds (sent
// as they are read: a data that fails makes the request fail).
func (c *client) do(ctx context.Context, sql string, data io.Reader, read func(io.Reader) error) error {
	var body io.Reader
	u := c.cfg.Endpoint + "/?wait_end_of_query=1"
	if data != nil {
		// The statement goes in the URL and the rows in the body.
		u += "&query=" + url.QueryEscape(sql)
		body = data
	} else {
		body = strings.NewReader(sql)
	}
	if data != nil {
		// Into a Distributed table (a cluster), the insert otherwise
		// returns once the rows are queued on this server for the shards;
		// into any other table the setting changes nothing.
		u += "&insert_distributed_sync=1"
	}
	rctx := ctx
	if data != nil && c.insertTimeout > 0 {
		var cancel context.CancelFunc
		rctx, cancel = context.WithTimeout(ctx, c.insertTimeout)
		defer cancel()
	}
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, u, body)
	if err != nil {
		return err
	}
	if c.cfg.User != "" {
		req.SetBasicAuth(c.cfg.User, c.cfg.Password)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if rctx.Err() != nil {
			return fmt.Errorf("%w at %s: an insert took longer than %v and was abandoned, to be retried with a new arrival stamp: %w", ErrUnreachable, c.cfg.Endpoint, c.insertTimeout, errInsertTimeout)
		}
		return fmt.Errorf("%w at %s (is clickhouse-server running there?): %v", ErrUnreachable, c.cfg.Endpoint, unwrapURLError(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		return &ServerError{Status: resp.StatusCode, Code: serverCode(msg), Message: cleanMessage(msg)}
	}
	if err := read(resp.Body); err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	return err
}

// InsertTimeout bounds each insert attempt, from its arrival stamp to
// ClickHouse's answer. A reader after a cursor looks FollowMargin back,
// so rows must become visible within it of their stamp: an insert that
// takes longer is abandoned and sent again with a new stamp (copies of
// rows that the abandoned one still wrote count once, dedupe.go). A
// collector whose insert times out sends the same rows again in inserts
// of half the size, down to one row (Collector.shipOnce).
const InsertTimeout = 20 * time.Second

// ServerError is an error ClickHouse answered with.
type ServerError struct {
	Status  int    // HTTP status
	Code    int    // ClickHouse's error code, 0 when the answer had none
	Message string // the server's message, trimmed
}

func (e *ServerError) Error() string { return "clickhouse: " + e.Message }

// Error codes the store tells apart.
const (
	codeUnknownTable    = 60
	codeUnknownDatabase = 81
)

var codeRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^Code: (\d+)`) })

func serverCode(msg []byte) int {
	m := codeRE().FindSubmatch(msg)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// cleanMessage keeps the part of ClickHouse's answer a person needs: 18.16
// writes "Code: 60, e.displayText() = DB::Exception: Table x doesn't
// exist., e.what() = DB::Exception".
func cleanMessage(msg []byte) string {
	s := strings.TrimSpace(string(msg))
	if i := strings.Index(s, "e.displayText() = "); i >= 0 {
		s = s[i+len("e.displayText() = "):]
	}
	if i := strings.Index(s, ", e.what() = "); i >= 0 {
		s = s[:i]
	}
	s = strings.TrimPrefix(s, "DB::Exception: ")
	return strings.TrimSpace(s)
}

func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
