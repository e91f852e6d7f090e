package trust

import (
	"context"
	"crypto/ed25519"
	"log/slog"
	"time"
)

// Signer appends signed checkpoints of a store's chain to a file.
type Signer struct {
	// Key signs; Path is the checkpoints file (DATA/checkpoints).
	Key  ed25519.PrivateKey
	Path string
	// Head returns the chain's head now; false when there is nothing to
	// sign. It must be safe to call while the store is written.
	Head func() (Point, bool)
	// Access, when set, returns the access log's head, made durable
	// first: a checkpoint must never sign lines a machine crash can
	// still take back. The checkpoints are then format 2.
	Access func() (AccessHead, error)
	Log    *slog.Logger
	// last and lastAccess are what this Signer signed last.
	last       Point
	lastAccess AccessHead
}

// Checkpoint signs the chain's head (and the access log's) and appends
// it, unless it is the one this Signer signed last: an idle server does
// not grow the file.
func (s *Signer) Checkpoint(now time.Time) error {
	p, ok := s.Head()
	if s.Access == nil {
		if !ok || p == s.last {
			return nil
		}
		if err := Append(s.Path, Sign(s.Key, p.Events, p.WAL, p.Head, now)); err != nil {
			return err
		}
		s.last = p
		return nil
	}
	acc, err := s.Access()
	if err != nil {
		return err
	}
	if !ok {
		// No event head to sign: the access log's alone (Events 0).
		p = Point{}
	}
	if (p == s.last && acc == s.lastAccess) || (p == Point{} && acc.Lines == 0) {
		return nil
	}
	if err := Append(s.Path, SignAccess(s.Key, p, acc, now)); err != nil {
		return err
	}
	s.last, s.lastAccess = p, acc
	return nil
}

// Run signs a checkpoint every interval until ctx ends. The caller signs
// the last one after the store has sealed everything (on shutdown).
func (s *Signer) Run(ctx context.Context, every time.Duration) {
	if every <= 0 {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			if err := s.Checkpoint(now); err != nil {
				s.Log.Error("cannot append a signed checkpoint; the next interval tries again", "path", s.Path, "err", err)
			}
		}
	}
}
