package jq

import (
	"context"
	"fmt"
	"runtime/debug"
	"runtime/metrics"
	"sync/atomic"
	"time"
)

// Limits bound one program's runs. A jq program can ask for any amount of
// time and memory with a few characters ([range(1e12)], def f: 1+f; f), and
// gojq has neither an allocation hook nor a recursion limit: a Watchdog
// samples the time and the heap while a run is in progress and cancels the
// run's context past a limit. gojq checks the context between the
// instructions it executes, so the run stops within one instruction (a
// builtin such as sort over a huge array finishes its call first).
type Limits struct {
	// Timeout is the longest the program may run on one event; 0 means
	// no limit. The whole command's time is the user's to bound (--limit,
	// Ctrl-C): a query over a large store is long for good reasons.
	Timeout time.Duration
	// MaxMemory is the most heap the process may hold while the program
	// runs, in bytes; 0 means no limit. The Go runtime's soft memory limit
	// is set to it too, so that garbage is collected before a run is
	// blamed for it.
	MaxMemory uint64
}

// The limits --jq runs with unless told otherwise: far above what a
// program over one audit event needs (microseconds and a few KiB), far
// below what takes a machine down.
const (
	DefaultTimeout   = 10 * time.Second
	DefaultMaxMemory = 2 << 30
)

// LimitError is the cause of a run's cancellation when it passed a limit.
type LimitError struct {
	// Memory is true when the heap passed MaxMemory, false when the run
	// passed Timeout.
	Memory bool
	// Limits are the limits the run had.
	Limits Limits
}

func (e *LimitError) Error() string {
	if e.Memory {
		return fmt.Sprintf("the program used more than %s of memory", sizeString(e.Limits.MaxMemory))
	}
	return fmt.Sprintf("the program ran longer than %s on one event", e.Limits.Timeout)
}

// Watchdog enforces Limits on the runs of programs made one at a time,
// from one goroutine, each between Begin and End.
type Watchdog struct {
	limits   Limits
	ctx      context.Context
	cancel   context.CancelCauseFunc
	begun    atomic.Int64 // unix nanoseconds the run in progress began at; 0 between runs
	stop     chan struct{}
	stopped  chan struct{}
	oldLimit int64
}

// sampleEvery is how often the watchdog looks at the clock and the heap:
// at the 430 MB/s at which def f: 1+f; f allocates, 10 ms is 4 MB past
// the limit, and 100 samples a second cost nothing measurable.
const sampleEvery = 10 * time.Millisecond

// heapMetric is the heap memory taken by objects, live or not yet swept.
const heapMetric = "/memory/classes/heap/objects:bytes"

// Watch starts a watchdog for runs under parent. Runs must use Context;
// Stop must be called when they are over.
func Watch(parent context.Context, l Limits) *Watchdog {
	w := &Watchdog{limits: l, stop: make(chan struct{}), stopped: make(chan struct{}), oldLimit: -1}
	w.ctx, w.cancel = context.WithCancelCause(parent)
	if l.MaxMemory > 0 {
		w.oldLimit = debug.SetMemoryLimit(int64(min(l.MaxMemory, 1<<62)))
	}
	if l.Timeout <= 0 && l.MaxMemory == 0 {
		close(w.stopped)
		return w
	}
	go w.watch()
	return w
}

// Context is the context every run must be given: it is cancelled with a
// *LimitError cause when a run passes a limit, and when parent is. Runs
// must use it from one goroutine at a time.
//
// Besides the watchdog's ticker, the context itself checks the limits
// every probeEvery calls of its Done method, which gojq makes before each
// instruction: a program that allocates as fast as it can is then stopped
// within a few thousand instructions of passing MaxMemory whatever the
// scheduler does with the ticker's goroutine on a busy machine (seen: a
// loaded 2-core machine let [range(1e12)] reach 274 MiB past a 64 MiB
// limit between two ticks).
func (w *Watchdog) Context() context.Context {
	if w.limits.Timeout <= 0 && w.limits.MaxMemory == 0 {
		return w.ctx
	}
	return &probeCtx{Context: w.ctx, w: w, sample: []metrics.Sample{{Name: heapMetric}}}
}

// probeEvery is how many instructions a run executes between two checks of
// its limits from inside the run: reading the heap metric costs about a
// microsecond, which is a few hundred instructions.
const probeEvery = 4096

type probeCtx struct {
	context.Context
	w      *Watchdog
	n      int
	sample []metrics.Sample
}

func (c *probeCtx) Done() <-chan struct{} {
	if c.n++; c.n%probeEvery == 0 {
		c.w.check(time.Now(), c.sample)
	}
	return c.Context.Done()
}

// Begin marks the start of a run.
func (w *Watchdog) Begin() { w.begun.Store(time.Now().UnixNano()) }

// End marks the end of a run.
func (w *Watchdog) End() { w.begun.Store(0) }

// Err returns the *LimitError a run passed, the cause of the parent's
// cancellation, or nil.
func (w *Watchdog) Err() error {
	if w.ctx.Err() == nil {
		return nil
	}
	return context.Cause(w.ctx)
}

// Stop ends the watchdog and restores the runtime's memory limit.
func (w *Watchdog) Stop() {
	select {
	case <-w.stopped:
	default:
		close(w.stop)
		<-w.stopped
	}
	w.cancel(nil)
	if w.oldLimit >= 0 {
		debug.SetMemoryLimit(w.oldLimit)
	}
}

func (w *Watchdog) watch() {
	defer close(w.stopped)
	t := time.NewTicker(sampleEvery)
	defer t.Stop()
	sample := []metrics.Sample{{Name: heapMetric}}
	for {
		select {
		case <-w.stop:
			return
		case <-w.ctx.Done():
			return
		case now := <-t.C:
			if w.check(now, sample) {
				return
			}
		}
	}
}

// check cancels the run in progress, and reports true, when it has passed
// a limit at now. sample is the caller's own buffer.
func (w *Watchdog) check(now time.Time, sample []metrics.Sample) bool {
	begun := w.begun.Load()
	if begun == 0 {
		return false
	}
	if w.limits.Timeout > 0 && now.UnixNano()-begun > int64(w.limits.Timeout) {
		w.cancel(&LimitError{Limits: w.limits})
		return true
	}
	if w.limits.MaxMemory > 0 {
		metrics.Read(sample)
		if sample[0].Value.Kind() == metrics.KindUint64 && sample[0].Value.Uint64() > w.limits.MaxMemory {
			w.cancel(&LimitError{Memory: true, Limits: w.limits})
			return true
		}
	}
	return false
}

// sizeString prints a byte count as the flags take it: 2GiB, 512MiB.
func sizeString(n uint64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	i := 0
	for n >= 1024 && n%1024 == 0 && i < len(units)-1 {
		n /= 1024
		i++
	}
	return fmt.Sprintf("%d%s", n, units[i])
}
