package jq

import (
	"context"
	"errors"
	"runtime/debug"
	"testing"
	"time"
)

// TestWatchdogTimeout: a run past Timeout is cancelled with a *LimitError
// cause, between runs the clock does not count, and Stop gives the runtime
// its memory limit back. (Mutation tried: End not clearing the start time
// makes the idle case fail.)
func TestWatchdogTimeout(t *testing.T) {
	p, err := Compile("last(range(1e15))", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	before := debug.SetMemoryLimit(-1)
	w := Watch(context.Background(), Limits{Timeout: 50 * time.Millisecond, MaxMemory: 1 << 40})
	if got := debug.SetMemoryLimit(-1); got != 1<<40 {
		t.Errorf("memory limit while watching: %d", got)
	}
	// Idle longer than the timeout between runs: no limit passed.
	w.Begin()
	w.End()
	time.Sleep(150 * time.Millisecond)
	if err := w.Err(); err != nil {
		t.Fatalf("idle: %v", err)
	}
	start := time.Now()
	w.Begin()
	_, _, err = p.Run(w.Context(), []byte(`{}`), nil)
	w.End()
	var le *LimitError
	if err == nil || !errors.As(w.Err(), &le) || le.Memory || time.Since(start) > 2*time.Second {
		t.Fatalf("run: %v, cause %v after %v", err, w.Err(), time.Since(start))
	}
	if le.Error() != "the program ran longer than 50ms on one event" {
		t.Errorf("message %q", le.Error())
	}
	w.Stop()
	if got := debug.SetMemoryLimit(-1); got != before {
		t.Errorf("memory limit after Stop: %d, want %d", got, before)
	}
}
