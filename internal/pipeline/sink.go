// Package pipeline defines the one interface every stage after decoding
// implements, and the decorators that wrap it (re-levelling, redaction,
// truncation, fan-out). A stage wraps a delegate Sink, like the API server's
// own audit backends, so each can be tested alone against a fake.
package pipeline

import (
	"context"
	"errors"
	"time"

	"github.com/kubetrail/kubetrail/internal/audit"
)

// Batch is a group of events from one source that is stored, and
// acknowledged, as a unit.
type Batch struct {
	// Cluster names the cluster the events came from.
	Cluster string
	// Received is when kubetrail received the batch.
	Received time.Time
	// Records are the events, in arrival order. A Sink must not modify them.
	Records []audit.Record
}

// Result reports what a Sink did with a batch.
type Result struct {
	// Stored is the number of events newly stored.
	Stored int
	// Duplicates is the number of events already stored before, for example
	// by an earlier delivery of the same batch; they were not stored again.
	Duplicates int
	// Rejected lists the events the sink will never store as they are
	// (an event over a server's size limit), with why, so that the caller
	// reports them and goes on with the rest: retrying them cannot help,
	// and waiting for them would cost every event after them.
	Rejected []Rejection
}

// Rejection is one event of a batch that a sink refused for good.
type Rejection struct {
	// Index is the event's index in Batch.Records.
	Index int
	// Reason says why, in words for a person.
	Reason string
}

// Sink takes batches of events. Append returns only when the batch is
// durable (or failed): a caller may acknowledge its sender as soon as Append
// returns nil. Append is safe for concurrent use and may block while earlier
// batches are being made durable; it honours ctx while waiting to start.
type Sink interface {
	Append(ctx context.Context, b *Batch) (Result, error)
}

// Errors a Sink returns so that receivers can tell the sender what to do.
var (
	// ErrOverloaded means the sink is busy: try again shortly (HTTP 429).
	ErrOverloaded = errors.New("overloaded: too many batches in flight")
	// ErrUnavailable means the sink cannot store anything now, for example
	// because the disk is full (HTTP 503).
	ErrUnavailable = errors.New("storage unavailable")
	// ErrClosed means the sink has shut down.
	ErrClosed = errors.New("sink closed")
)
