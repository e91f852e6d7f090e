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
	Log  *slog.Logger
	last Point
}

// Checkpoint signs the chain's head and appends it, unless it is the one
// this Signer signed last: an idle store does not grow the file.
func (s *Signer) Checkpoint(now time.Time) error {
	p, ok := s.Head()
	if !ok || p == s.last {
		return nil
	}
	if err := Append(s.Path, Sign(s.Key, p.Events, p.WAL, p.Head, now)); err != nil {
		return err
	}
	s.last = p
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
