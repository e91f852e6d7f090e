package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/kubetrail/kubetrail/internal/alert"
	"github.com/kubetrail/kubetrail/internal/alert/output"
	"github.com/kubetrail/kubetrail/internal/detector"
	"github.com/kubetrail/kubetrail/internal/store/local"
)

// detection is what serve runs beside its server when rules are on: the
// alert store, the detector that fills it, and one dispatcher per output.
type detection struct {
	log    *slog.Logger
	store  *alert.Store
	det    *detector.Detector
	disps  []*alert.Dispatcher
	outs   []alert.Output
	names  []string
	rules  int
	ctx    context.Context
	cancel context.CancelFunc
	detWG  sync.WaitGroup
	outWG  sync.WaitGroup
	outCtx context.Context
	outEnd context.CancelFunc
	err    error
	errMu  sync.Mutex
}

// drainOutputs is how long serve waits at shutdown for the outputs to
// deliver what the detector stored last; what is left is sent at the next
// start.
const drainOutputs = 5 * time.Second

// drainDetector bounds the wait for the detector at shutdown (it may be
// retrying a full disk).
const drainDetector = 10 * time.Second

// openDetection loads the rules (refusing to start on a rule error), opens
// the alert store in DATA/alerts and a dispatcher per output URL, and the
// detector. Outputs are opened before the detector runs: a new output
// starts after the newest stored alert.
func openDetection(e *env, db *local.DB, rf *ruleFlags, outputs []string, log *slog.Logger) (*detection, error) {
	eng, err := rf.load(e)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(db.Dir(), alert.StoreDir)
	store, rec, err := alert.OpenStore(dir, alert.StoreOptions{})
	if err != nil {
		return nil, err
	}
	for _, d := range rec.Damage {
		log.Error("alert store holds damaged bytes; the alerts around them are kept", "damage", d.String())
	}
	x := &detection{log: log, store: store}
	for _, n := range eng.Rules() {
		if n.Enabled {
			x.rules++
		}
	}
	reg := output.NewRegistry(output.Env{})
	for _, raw := range outputs {
		spec, err := reg.Open(raw)
		if err == nil {
			var d *alert.Dispatcher
			d, err = alert.OpenDispatcher(store, spec.Output, nil, filepath.Join(db.Dir(), alert.CursorDir), spec.ID, spec.Dispatch)
			if err == nil {
				x.disps, x.names = append(x.disps, d), append(x.names, spec.Name)
				x.outs = append(x.outs, spec.Output)
				continue
			}
			spec.Output.Close()
		}
		x.closeStore()
		return nil, fmt.Errorf("--alert-output: %w", err)
	}
	x.det, err = detector.Open(db, eng, store, dir, detector.Options{Log: log})
	if err != nil {
		x.closeStore()
		return nil, err
	}
	return x, nil
}

// start runs the detector and the dispatchers; fail is called if the
// detector stops on an error (serve then stops: detection that silently
// ended would be worse than none).
func (x *detection) start(fail func()) {
	x.ctx, x.cancel = context.WithCancel(context.Background())
	x.outCtx, x.outEnd = context.WithCancel(context.Background())
	x.detWG.Go(func() {
		if err := x.det.Run(x.ctx); err != nil {
			x.log.Error("detection stopped", "err", err)
			x.setErr(err)
			fail()
		}
	})
	for i, d := range x.disps {
		x.outWG.Go(func() {
			if err := d.Run(x.outCtx); err != nil && !errors.Is(err, context.Canceled) {
				x.log.Error("alert output stopped", "output", x.names[i], "err", err)
				x.setErr(err)
				fail()
			}
		})
	}
}

func (x *detection) setErr(err error) {
	x.errMu.Lock()
	if x.err == nil {
		x.err = err
	}
	x.errMu.Unlock()
}

// stop is called once the event store is closed, which ends the live
// stream: the detector evaluates what it had received, saves its cursor
// and ends (within drainDetector; what it had not evaluated is evaluated
// at the next start). Then the dispatchers get drainOutputs to deliver
// the alerts stored last, and the alert store is closed. stop returns the
// first error the detector or an output stopped on.
func (x *detection) stop() error {
	done := make(chan struct{})
	go func() { x.detWG.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(drainDetector):
		x.cancel()
		<-done
	}
	x.cancel()
	deadline := time.Now().Add(drainOutputs)
	last, _ := x.store.Last()
	for _, d := range x.disps {
		for d.Stats().Cursor < last && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
	}
	x.outEnd()
	x.outWG.Wait()
	x.closeStore()
	x.errMu.Lock()
	defer x.errMu.Unlock()
	return x.err
}

func (x *detection) closeStore() {
	for _, o := range x.outs {
		o.Close()
	}
	x.store.Close()
}
