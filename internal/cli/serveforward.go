package cli

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/kubetrail/kubetrail/internal/forward"
	"github.com/kubetrail/kubetrail/internal/query"
	"github.com/kubetrail/kubetrail/internal/store/local"
)

// forwarding is what serve runs for its --forward destinations: one
// forwarder each, from its own durable cursor in DATA/forward.
type forwarding struct {
	log    *slog.Logger
	fwds   []*forward.Forwarder
	dests  []*forward.Dest
	wg     sync.WaitGroup
	cancel context.CancelFunc
	err    error
	errMu  sync.Mutex
}

// drainForward is how long serve waits at shutdown for the forwarders to
// send what the store holds; what is left is sent at the next start.
const drainForward = 5 * time.Second

// openForwarding opens a forwarder per URL. A destination new to this
// data folder starts with the first event stored from now on (history
// is kubetrail forward's job); one seen before goes on from its cursor.
// They must be opened before serve accepts an event.
func openForwarding(db *local.DB, urls []string, filter string, log *slog.Logger) (*forwarding, error) {
	x := &forwarding{log: log}
	if len(urls) == 0 {
		if filter != "" {
			return nil, fmt.Errorf("--forward-filter needs a --forward destination")
		}
		return x, nil
	}
	now := time.Now()
	if filter != "" {
		if _, err := query.CompileAt(filter, now); err != nil {
			return nil, fmt.Errorf("--forward-filter: %w", err)
		}
	}
	reg := forward.NewRegistry(forward.Env{})
	ids := map[string]bool{}
	for _, raw := range urls {
		d, err := reg.Open(raw, filter, now)
		if err != nil {
			x.close()
			return nil, fmt.Errorf("--forward: %w", err)
		}
		if ids[d.ID] {
			d.Sender.Close()
			x.close()
			return nil, fmt.Errorf("--forward %s given twice", d.Name)
		}
		ids[d.ID] = true
		f, err := forward.New(db.Dir(), d, db.Start(), forward.Options{Log: log, Cursor: filepath.Join(db.Dir(), forward.Dir, d.ID+".cursor")})
		if err != nil {
			d.Sender.Close()
			x.close()
			return nil, err
		}
		x.fwds, x.dests = append(x.fwds, f), append(x.dests, d)
	}
	return x, nil
}

// start runs the forwarders; fail is called when one stops on an error
// (its cursor cannot be saved, the store cannot be read): serve stops
// rather than forward nothing without saying so.
func (x *forwarding) start(db *local.DB, fail func()) {
	var ctx context.Context
	ctx, x.cancel = context.WithCancel(context.Background())
	for i, f := range x.fwds {
		x.wg.Go(func() {
			if err := f.Run(ctx, db); err != nil {
				x.log.Error("forwarding stopped", "dest", x.dests[i].Name, "err", err)
				x.errMu.Lock()
				if x.err == nil {
					x.err = err
				}
				x.errMu.Unlock()
				fail()
			}
		})
	}
	if len(x.fwds) > 0 {
		x.log.Info("forwarding on", "destinations", len(x.fwds))
	}
}

// stop is called once the store is closed: each forwarder sends what the
// store holds, within drainForward, and saves its cursor.
func (x *forwarding) stop() error {
	if x.cancel != nil {
		done := make(chan struct{})
		go func() { x.wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(drainForward):
			x.cancel()
			<-done
		}
		x.cancel()
	}
	x.close()
	x.errMu.Lock()
	defer x.errMu.Unlock()
	return x.err
}

func (x *forwarding) close() {
	for _, d := range x.dests {
		d.Sender.Close()
	}
}
