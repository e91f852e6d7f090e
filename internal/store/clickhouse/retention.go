package clickhouse

import (
	"context"
	"fmt"
	"io"
	"slices"
	"time"
)

// Enforce drops the days (partitions) of the events table whose every
// event is older than maxAge before now: a day goes once its end is past
// the cutoff, so up to a day more than maxAge is kept. It works on 18.16,
// which has no TTL, and on current releases alike (ALTER TABLE ... DROP
// PARTITION), and returns the days dropped (YYYY-MM-DD). Events without a
// time are in day 1970-01-01 and go with it. On a cluster it drops the
// days of every shard's events_local (retentionTargets).
func (s *Store) Enforce(ctx context.Context, maxAge time.Duration, now time.Time) ([]string, error) {
	if maxAge <= 0 {
		return nil, nil
	}
	targets, err := s.retentionTargets(ctx)
	if err != nil {
		return nil, err
	}
	cutoff := now.Add(-maxAge)
	seen := map[string]bool{}
	var dropped []string
	for _, t := range targets {
		days, err := t.dropDays(ctx, cutoff)
		for _, d := range days {
			if !seen[d] {
				seen[d] = true
				dropped = append(dropped, d)
			}
		}
		if err != nil {
			return dropped, err
		}
	}
	slices.Sort(dropped)
	return dropped, nil
}

// partitionTable is a table whose days retention drops, on one server.
type partitionTable struct {
	c         *client
	db, table string
}

// retentionTargets are the tables that hold the events' rows: events on
// one server; on a cluster, events_local on the first server of every
// shard (a Distributed table has no parts, and a replicated table drops a
// partition on every replica of its shard).
func (s *Store) retentionTargets(ctx context.Context) ([]partitionTable, error) {
	cfg := s.c.cfg
	if cfg.Cluster == "" {
		engine, err := tableEngine(ctx, s.c, s.db, "events")
		if err != nil {
			return nil, err
		}
		if engine == "Distributed" {
			return nil, fmt.Errorf("%s.events at %s is a Distributed table: give the store URL its ?cluster=NAME, so that retention reaches the events_local of every shard", s.db, cfg.Endpoint)
		}
		return []partitionTable{{s.c, s.db, "events"}}, nil
	}
	reps, err := clusterEndpoints(ctx, cfg)
	if err != nil {
		return nil, err
	}
	var out []partitionTable
	for _, r := range reps {
		if r.replica != 1 {
			continue
		}
		sc := cfg
		sc.Endpoint = r.endpoint
		out = append(out, partitionTable{newClient(sc), s.db, "events_local"})
	}
	return out, nil
}

// dropDays drops the days of t that ended before cutoff and returns them.
func (t partitionTable) dropDays(ctx context.Context, cutoff time.Time) ([]string, error) {
	name := t.db + "." + t.table
	var days []string
	sql := "SELECT DISTINCT partition FROM system.parts WHERE database = " + quote(t.db) + " AND table = " + quote(t.table) + " AND active ORDER BY partition FORMAT RowBinary"
	err := t.c.query(ctx, sql, func(body io.Reader) error {
		r := newRowReader(body)
		for r.more() {
			days = append(days, r.string())
		}
		return r.err
	})
	if err != nil {
		return nil, fmt.Errorf("list the days of %s at %s: %w", name, t.c.cfg.Endpoint, err)
	}
	var dropped []string
	for _, d := range days {
		day, err := time.Parse(time.DateOnly, d)
		if err != nil {
			return dropped, fmt.Errorf("%s at %s has partition %q, want a day (YYYY-MM-DD)", name, t.c.cfg.Endpoint, d)
		}
		if day.Add(24 * time.Hour).After(cutoff) {
			continue
		}
		if err := t.c.exec(ctx, "ALTER TABLE "+name+" DROP PARTITION "+quote(d)); err != nil {
			return dropped, fmt.Errorf("drop day %s of %s at %s: %w", d, name, t.c.cfg.Endpoint, err)
		}
		dropped = append(dropped, d)
	}
	return dropped, nil
}

// RunRetention enforces maxAge every interval until ctx ends, logging
// failures through logf.
func (s *Store) RunRetention(ctx context.Context, maxAge, interval time.Duration, logf func(dropped []string, err error)) {
	if maxAge <= 0 {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		dropped, err := s.Enforce(ctx, maxAge, time.Now())
		if ctx.Err() != nil {
			return
		}
		if len(dropped) > 0 || err != nil {
			logf(dropped, err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
