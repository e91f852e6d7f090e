package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/kubetrail/kubetrail/internal/alert"
	"github.com/kubetrail/kubetrail/internal/alert/output"
	"github.com/kubetrail/kubetrail/internal/detector"
	"github.com/kubetrail/kubetrail/internal/store/clickhouse"
	"github.com/kubetrail/kubetrail/internal/vfs"
)

// followFlags are detect's flags for the shared-store reader.
type followFlags struct {
	follow  bool
	store   string
	outputs []string
}

func (f *followFlags) add(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.BoolVarP(&f.follow, "follow", "f", false, "with --store clickhouse://...: evaluate every event the collectors store, once, from a durable cursor in --data, until stopped; alerts are kept in DATA/alerts (run one such reader per store)")
	fl.StringVar(&f.store, "store", "", "with --follow: the ClickHouse store the collectors fill (clickhouse://HOST:8123/DB)")
	fl.StringArrayVar(&f.outputs, "alert-output", nil, "with --follow: send alerts to this URL, at least once (repeatable), as serve --alert-output does")
}

// check refuses flags that mean nothing to the reader, or a reader
// without its store.
func (f *followFlags) check(cmd *cobra.Command, args []string) error {
	if !f.follow {
		if f.store != "" || len(f.outputs) > 0 {
			return errors.New("--store and --alert-output are for detect --follow (kubetrail detect --follow --store clickhouse://...)")
		}
		return nil
	}
	if f.store == "" {
		return errors.New("--follow reads a shared store: give --store clickhouse://HOST:8123/DB (on the embedded store, serve runs the rules on every event)")
	}
	if len(args) > 0 {
		return errors.New("--follow reads the store, not FILE arguments")
	}
	for _, n := range []string{"since", "until", "limit", "output", "namespace"} {
		if fl := cmd.Flags().Lookup(n); fl != nil && fl.Changed {
			return fmt.Errorf("--%s does not apply to --follow, which evaluates every event once and stores its alerts (list them with kubetrail alerts)", n)
		}
	}
	return nil
}

// detectFollow runs the rules over a ClickHouse store's events in arrival
// order until ctx ends: one reader per store, so that rules run once per
// event whatever the number of collectors. The data folder is locked (the
// same lock as the embedded store's), holds the alert store, the cursor
// and the outputs' cursors.
func detectFollow(ctx context.Context, e *env, rf *ruleFlags, f *followFlags, dir string) error {
	log := e.logger()
	eng, err := rf.load(e)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create data folder: %w", err)
	}
	unlock, err := vfs.OS.Lock(dir, vfs.LockExclusiveNow)
	if err != nil {
		return fmt.Errorf("data folder %s is in use by another kubetrail process (%w): run one detect --follow per store, each with its own --data", dir, err)
	}
	defer unlock()
	cfg, err := clickhouse.ParseURL(f.store)
	if err != nil {
		return fmt.Errorf("--store: %w", err)
	}
	st, err := clickhouse.Open(ctx, cfg)
	if err != nil {
		return fmt.Errorf("--store: %w", err)
	}
	defer st.Close()
	adir := filepath.Join(dir, alert.StoreDir)
	store, rec, err := alert.OpenStore(adir, alert.StoreOptions{})
	if err != nil {
		return err
	}
	defer store.Close()
	for _, d := range rec.Damage {
		log.Error("alert store holds damaged bytes; the alerts around them are kept", "damage", d.String())
	}
	reg := output.NewRegistry(output.Env{})
	var disps []*alert.Dispatcher
	for _, raw := range f.outputs {
		spec, err := reg.Open(raw)
		if err != nil {
			return fmt.Errorf("--alert-output: %w", err)
		}
		defer spec.Output.Close()
		d, err := alert.OpenDispatcher(store, spec.Output, nil, filepath.Join(dir, alert.CursorDir), spec.ID, spec.Dispatch)
		if err != nil {
			return fmt.Errorf("--alert-output: %w", err)
		}
		disps = append(disps, d)
	}
	det, err := detector.OpenArrivals(st, eng, store, adir, detector.ArrivalsOptions{Log: log})
	if err != nil {
		return err
	}
	log.Info("detection reads the store", "endpoint", cfg.Endpoint, "database", cfg.Database, "cursor", filepath.Join(adir, detector.ArrivalsCursorFile), "outputs", len(disps))
	outCtx, outEnd := context.WithCancel(context.Background())
	defer outEnd()
	var wg sync.WaitGroup
	errs := make(chan error, len(disps))
	for _, d := range disps {
		wg.Go(func() {
			if err := d.Run(outCtx); err != nil && !errors.Is(err, context.Canceled) {
				errs <- err
			}
		})
	}
	err = det.Run(ctx)
	drainAlerts(store, disps)
	outEnd()
	wg.Wait()
	close(errs)
	if err == nil {
		err = <-errs
	}
	log.Info("detection stopped", "evaluated", det.Evaluated.Load(), "suppressed", det.Suppressed.Load())
	return err
}

// drainAlerts gives the outputs drainOutputs to deliver the alerts stored
// last, as serve does at shutdown; what is left is sent at the next start.
func drainAlerts(store *alert.Store, disps []*alert.Dispatcher) {
	deadline := time.Now().Add(drainOutputs)
	last, _ := store.Last()
	for _, d := range disps {
		for d.Stats().Cursor < last && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
	}
}
