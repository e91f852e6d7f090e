package clickhouse

import (
	"context"
	"fmt"
	"io"
	"time"
)

// Enforce drops the days (partitions) of the events table whose every
// event is older than maxAge before now: a day goes once its end is past
// the cutoff, so up to a day more than maxAge is kept. It works on 18.16,
// which has no TTL, and on current releases alike (ALTER TABLE ... DROP
// PARTITION), and returns the days dropped (YYYY-MM-DD). Events without a
// time are in day 1970-01-01 and go with it.
func (s *Store) Enforce(ctx context.Context, maxAge time.Duration, now time.Time) ([]string, error) {
	if maxAge <= 0 {
		return nil, nil
	}
	var days []string
	sql := "SELECT DISTINCT partition FROM system.parts WHERE database = " + quote(s.db) + " AND table = 'events' AND active ORDER BY partition FORMAT RowBinary"
	err := s.c.query(ctx, sql, func(body io.Reader) error {
		r := newRowReader(body)
		for r.more() {
			days = append(days, r.string())
		}
		return r.err
	})
	if err != nil {
		return nil, fmt.Errorf("list the days of %s.events: %w", s.db, err)
	}
	cutoff := now.Add(-maxAge)
	var dropped []string
	for _, d := range days {
		day, err := time.Parse(time.DateOnly, d)
		if err != nil {
			return dropped, fmt.Errorf("%s.events has partition %q, want a day (YYYY-MM-DD)", s.db, d)
		}
		if day.Add(24 * time.Hour).After(cutoff) {
			continue
		}
		if err := s.c.exec(ctx, "ALTER TABLE "+s.db+".events DROP PARTITION "+quote(d)); err != nil {
			return dropped, fmt.Errorf("drop day %s of %s.events: %w", d, s.db, err)
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
