package clickhouse

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"

	"github.com/kubetrail/kubetrail/internal/pipeline"
	"github.com/kubetrail/kubetrail/internal/store/local"
)

// A collector whose store URL names its cluster (?cluster=NAME) inserts
// each row into the events_local of the shard the Distributed table would
// send it to: slot keyHash(key) mod the shards' total weight, the shards
// taking their weight of slots in order, as ClickHouse's Distributed
// insert does. Through the Distributed table, the server a collector
// talks to parses every row and sends the other shards' rows on, where
// they are parsed again: 4.27-4.70 CPU-s of ClickHouse for 200k events
// from two collectors on two shards, against 3.19-3.63 s routed here
// (docs/benchmarks-by-hand.md). Copies of an event still meet on one
// shard, whichever way each was inserted (internal/store's
// TestCollectorInsertsIntoShards).

// shardRouter is where a sharded insert's rows go.
type shardRouter struct {
	// slots maps a slot (keyHash mod len(slots)) to a shard.
	slots []int
	// replicas are each shard's servers, in system.clusters' order.
	replicas [][]*client
	// next is, per shard, the replica the next insert goes to; a failed
	// insert moves it on. Each shard's insert touches its own element.
	next []int
}

// newShardRouter reads the shards of cfg.Cluster, their weights and
// their servers (at the host system.clusters names and the port of the
// store URL, as setup reaches them). A store without events_local (one
// server named with ?cluster=, set up without it) has no shards to route
// to: the router is nil, and the collector inserts into the events table.
func newShardRouter(ctx context.Context, cfg Config) (*shardRouter, error) {
	base := newClient(cfg)
	engine, err := tableEngine(ctx, base, cfg.Database, "events_local")
	if err != nil || engine == "" {
		return nil, err
	}
	u, err := url.Parse(cfg.Endpoint)
	if err != nil {
		return nil, fmt.Errorf("BUG: endpoint %q: %w", cfg.Endpoint, err)
	}
	r := &shardRouter{}
	last := -1
	sql := "SELECT toUInt64(shard_num), toUInt64(shard_weight), host_name FROM system.clusters WHERE cluster = " + quote(cfg.Cluster) + " ORDER BY shard_num, replica_num FORMAT RowBinary"
	err = base.query(ctx, sql, func(body io.Reader) error {
		rr := newRowReader(body)
		for rr.more() {
			shard, weight, host := int(rr.u64()), int(rr.u64()), rr.string()
			if rr.err != nil {
				break
			}
			sc := cfg
			sc.Endpoint = u.Scheme + "://" + net.JoinHostPort(host, u.Port())
			if shard != last {
				last = shard
				r.replicas = append(r.replicas, nil)
				r.next = append(r.next, 0)
				for range weight {
					r.slots = append(r.slots, len(r.replicas)-1)
				}
			}
			i := len(r.replicas) - 1
			r.replicas[i] = append(r.replicas[i], newClient(sc))
		}
		return rr.err
	})
	if err != nil {
		return nil, fmt.Errorf("read cluster %s from system.clusters at %s: %w", cfg.Cluster, cfg.Endpoint, err)
	}
	if len(r.slots) == 0 {
		return nil, fmt.Errorf("ClickHouse at %s has no cluster %q with a shard of weight above 0 in its remote_servers", cfg.Endpoint, cfg.Cluster)
	}
	return r, nil
}

// shardOf returns the shard of a stamped or unstamped row's key; rows as
// appendRows writes them begin day (2 bytes), cluster (a string), key.
func (r *shardRouter) shardOf(row []byte) (int, error) {
	if len(row) < 2 {
		return 0, errors.New("rows: a row too short for its key")
	}
	n, w := binary.Uvarint(row[2:])
	if w <= 0 || uint64(len(row)-2-w) < n+16 {
		return 0, errors.New("rows: a row too short for its key")
	}
	var k local.Key
	copy(k[:], row[2+w+int(n):])
	return r.slots[keyHash(k)%uint64(len(r.slots))], nil
}

// insertSharded sends the rows of the segments at paths, stamped by st,
// to their shards, one insert per shard at once, and returns the
// segments in which it met damage. It fails unless every shard took its
// part: the segments then stay and are sent again whole, and the shards
// that took theirs hold copies, which every answer counts once.
func (c *Collector) insertSharded(ctx context.Context, r *shardRouter, paths []string, win *window, st *stamper) ([]string, error) {
	n := len(r.replicas)
	prs, ws := make([]*io.PipeReader, n), make([]*bufio.Writer, n)
	pws := make([]*io.PipeWriter, n)
	for i := range n {
		prs[i], pws[i] = io.Pipe()
		ws[i] = bufio.NewWriterSize(pws[i], 1<<20)
	}
	var damaged []string
	written := make(chan error, 1)
	go func() {
		var err error
		damaged, err = c.scanSegments(paths, win, func(rows []byte) error { return st.writeRouted(ws, rows, r.shardOf) })
		for i := range n {
			if err == nil {
				err = ws[i].Flush()
			}
		}
		for _, pw := range pws {
			pw.CloseWithError(err) // nil: the bodies end
		}
		written <- err
	}()
	errs := make(chan error, n)
	sql := "INSERT INTO " + c.st.db + ".events_local (" + insertColumns() + ") FORMAT RowBinary"
	for i := range n {
		go func() {
			cl := r.replicas[i][r.next[i]]
			err := cl.do(ctx, sql, bigChunks{prs[i]}, func(io.Reader) error { return nil })
			prs[i].CloseWithError(errors.New("insert ended")) // unblocks the writer
			if err != nil {
				r.next[i] = (r.next[i] + 1) % len(r.replicas[i])
				if errors.Is(err, ErrUnreachable) {
					err = fmt.Errorf("%w: %w", pipeline.ErrUnavailable, err)
				} else {
					err = fmt.Errorf("insert into %s.events_local at %s: %w", c.st.db, cl.cfg.Endpoint, err)
				}
			}
			errs <- err
		}()
	}
	var err error
	for range n {
		if e := <-errs; err == nil {
			err = e
		}
	}
	if werr := <-written; werr != nil && err == nil {
		// A request read a body cut short; it must not count as sent.
		err = werr
	}
	return damaged, err
}

// writeRouted writes every row of rows (as appendRows wrote them) to the
// writer of its shard, stamped.
func (st *stamper) writeRouted(ws []*bufio.Writer, rows []byte, shardOf func([]byte) (int, error)) error {
	for off := 0; off < len(rows); {
		if len(rows)-off < rowLenBytes {
			return fmt.Errorf("rows: %d stray bytes at %d", len(rows)-off, off)
		}
		n := int(binary.LittleEndian.Uint32(rows[off:]))
		if n > len(rows)-off-rowLenBytes {
			return fmt.Errorf("rows: a row of %d bytes at %d runs past the end (%d)", n, off, len(rows))
		}
		shard, err := shardOf(rows[off+rowLenBytes : off+rowLenBytes+n])
		if err != nil {
			return err
		}
		if err := st.write(ws[shard], rows[off:off+rowLenBytes+n]); err != nil {
			return err
		}
		off += rowLenBytes + n
	}
	return nil
}
