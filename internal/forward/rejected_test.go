package forward

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/kubetrail/kubetrail/internal/store/local"
)

// rejecting takes every batch and says it dropped one event of each, as
// an OTLP partial success does.
type rejecting struct {
	receiver
	rejected atomic.Uint64
}

func (r *rejecting) Send(ctx context.Context, evs []Event) error {
	r.rejected.Add(1)
	return r.receiver.Send(ctx, evs)
}

func (r *rejecting) Counts() (existing, rejected uint64) { return 0, r.rejected.Load() }

// syncBuffer is a log destination safe for the forwarder's goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestRejectedEventsLogged: events a destination accepted and then
// dropped (an OTLP partial success, which must not be retried) are not
// only counted but logged, with the audit IDs of the batch they were in,
// so that an operator can find what is missing downstream.
// Mutation it catches: deliver ignoring the Counter after a success.
func TestRejectedEventsLogged(t *testing.T) {
	db, err := local.Open(t.TempDir(), local.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	appendEvents(t, db, 0, 6)
	var logs syncBuffer
	rcv := &rejecting{}
	f, err := New(db.Dir(), testDest(rcv), local.Pos{}, Options{Log: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Once(context.Background(), local.ScanOptions{}); err != nil {
		t.Fatal(err)
	}
	if st := f.Stats(); st.Rejected != 2 || st.Events != 6 {
		t.Errorf("rejected %d, events %d; want 2 of 6", st.Rejected, st.Events)
	}
	out := logs.String()
	for _, want := range []string{"rejected=1 ", "first=id-0 last=id-3", "first=id-4 last=id-5"} {
		if !strings.Contains(out, want) {
			t.Errorf("the log lacks %q:\n%s", want, out)
		}
	}
}
