// Command gen writes a deterministic, realistic corpus of Kubernetes
// API-server audit events: JSON lines exactly as the kube-apiserver's log
// backend writes them (audit.k8s.io/v1 Event). The same flags always give
// the same bytes. See bench/README.md for the mix it produces.
//
//	go run ./bench/gen --events 1000000 --seed 1 --stats > audit.log
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "gen:", err)
		}
		os.Exit(2)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("gen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	events := fs.Int("events", 10000, "number of audit lines to write")
	seed := fs.Uint64("seed", 1, "seed of every random choice; equal flags give identical output")
	start := fs.String("start", "2026-11-01T00:00:00Z", "start of the covered period (RFC 3339)")
	days := fs.Float64("days", 3, "length of the covered period in days")
	showStats := fs.Bool("stats", false, "print the distribution summary to stderr")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	t0, err := time.Parse(time.RFC3339Nano, *start)
	if err != nil {
		return fmt.Errorf("--start: %w", err)
	}
	began := time.Now()
	st, err := generate(stdout, config{events: *events, seed: *seed, start: t0, days: *days})
	if err != nil {
		return err
	}
	if *showStats {
		st.write(stderr, time.Since(began))
	}
	return nil
}
