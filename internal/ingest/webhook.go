// Package ingest brings audit events in: the API server's webhook batches,
// audit.log files (import and live tail) and, later, syslog and cloud
// exports. Every receiver decodes with internal/audit and hands batches to a
// pipeline.Sink, acknowledging its sender only when the sink returns.
package ingest

import (
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/kubetrail/kubetrail/internal/audit"
	"github.com/kubetrail/kubetrail/internal/pipeline"
)

// WebhookConfig configures the webhook receiver.
type WebhookConfig struct {
	// MaxBodyBytes bounds one request body, after decompression when it
	// is gzip-encoded; a larger one gets 413.
	MaxBodyBytes int64
	// MaxInflightBytes bounds the memory all webhook requests hold at
	// once: their bodies as they are read and their decoded events until
	// they are stored. A request that would pass it gets 429 with
	// Retry-After, unless it alone needs more, which gets 413. It must be
	// at least four times MaxBodyBytes; the default is the larger of
	// DefaultMaxInflightBytes and eight times MaxBodyBytes.
	MaxInflightBytes int64
	// Limits bound each event inside a body.
	Limits audit.Limits
	// DefaultCluster tags batches that name no cluster.
	DefaultCluster string
	// Observe, when set, is told the outcome of each request.
	Observe func(WebhookOutcome)
}

// DefaultMaxBodyBytes is the default bound on one webhook request body. The
// API server's default batch is 400 events; at RequestResponse level an
// event rarely passes 64 KiB.
const DefaultMaxBodyBytes = 32 << 20

// DefaultMaxInflightBytes is the default memory budget of all webhook
// requests together: eight bodies of the default maximum with their events,
// or hundreds of the API server's usual batches of well under 1 MiB.
const DefaultMaxInflightBytes = 256 << 20

// MaxListedRejections is how many rejected items an answer lists; the rest
// are only counted, so that a body of a million bad items gets a short
// answer rather than one thirty times its size.
const MaxListedRejections = 20

// recordOverhead is what one decoded event costs beyond its bytes: the
// audit.Record (392 bytes) and the store's key, time and column row
// (about 330), rounded up for strings and maps built from it.
const recordOverhead = 1024

// recordSize is what the slice of a batch's records costs per record.
const recordSize = int64(unsafe.Sizeof(audit.Record{}))

// Check reports a configuration that cannot work.
func (c WebhookConfig) Check() error {
	c = c.withDefaults()
	if c.MaxInflightBytes < 4*c.MaxBodyBytes {
		return fmt.Errorf("--max-inflight-bytes (%d) must be at least four times --max-body-bytes (%d): a body and its decoded events must fit in it", c.MaxInflightBytes, c.MaxBodyBytes)
	}
	return nil
}

func (c WebhookConfig) withDefaults() WebhookConfig {
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.MaxInflightBytes <= 0 {
		c.MaxInflightBytes = max(DefaultMaxInflightBytes, 8*c.MaxBodyBytes)
	}
	if c.DefaultCluster == "" {
		c.DefaultCluster = "default"
	}
	return c
}

// WebhookOutcome describes one handled request, for metrics.
type WebhookOutcome struct {
	Code       int
	Bytes      int64
	Stored     int
	Duplicates int
	Rejected   int
}

// Webhook is the http.Handler for POST /ingest/webhook.
type Webhook struct {
	sink pipeline.Sink
	cfg  WebhookConfig
	dec  *audit.Decoder
	mem  budget
	// bodies holds *[]byte: body buffers of answered requests, for the
	// next to read into (a new buffer is zeroed and grown by copying, a
	// twentieth of the handler's CPU). A body may be reused once it is
	// decoded: every Record copies the bytes it keeps.
	bodies sync.Pool
}

// NewWebhook returns a receiver that stores into sink.
func NewWebhook(sink pipeline.Sink, cfg WebhookConfig) *Webhook {
	cfg = cfg.withDefaults()
	return &Webhook{sink: sink, cfg: cfg, dec: audit.NewDecoder(cfg.Limits), mem: budget{max: cfg.MaxInflightBytes}}
}

// WebhookResponse is the JSON body of every webhook answer.
type WebhookResponse struct {
	// Stored is the number of events newly stored.
	Stored int `json:"stored"`
	// Duplicates is the number of events that were already stored.
	Duplicates int `json:"duplicates"`
	// Rejected lists the first MaxListedRejections parts of the body that
	// could not be used.
	Rejected []Rejection `json:"rejected,omitempty"`
	// RejectedCount counts every part of the body that could not be used.
	RejectedCount int `json:"rejectedCount,omitempty"`
	// RejectedNotListed is how many of them Rejected leaves out.
	RejectedNotListed int `json:"rejectedNotListed,omitempty"`
	// Error says why the request as a whole failed.
	Error string `json:"error,omitempty"`
}

// Rejection is one unusable part of a request body.
type Rejection struct {
	Line   int    `json:"line,omitempty"`
	Item   *int   `json:"item,omitempty"`
	Reason string `json:"reason"`
}

// ClusterNamePattern is what a cluster name may look like.
var ClusterNamePattern = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`) })

func (h *Webhook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var resp WebhookResponse
	code, n := h.serve(w, r, &resp)
	if h.cfg.Observe != nil {
		h.cfg.Observe(WebhookOutcome{Code: code, Bytes: n, Stored: resp.Stored, Duplicates: resp.Duplicates, Rejected: resp.RejectedCount})
	}
	writeJSON(w, code, &resp)
}

func (h *Webhook) serve(w http.ResponseWriter, r *http.Request, resp *WebhookResponse) (int, int64) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		resp.Error = "method " + r.Method + " not allowed: send audit events with POST"
		return http.StatusMethodNotAllowed, 0
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || !jsonMediaType(mt) {
			resp.Error = fmt.Sprintf("Content-Type %q is not JSON: send application/json (an EventList, an Event or an array) or application/x-ndjson", ct)
			return http.StatusUnsupportedMediaType, 0
		}
	}
	cluster := r.URL.Query().Get("cluster")
	if cluster == "" {
		cluster = h.cfg.DefaultCluster
	} else if !ClusterNamePattern().MatchString(cluster) {
		resp.Error = fmt.Sprintf("cluster %q is not a valid name (letters, digits, '.', '_', '-'; at most 63)", cluster)
		return http.StatusBadRequest, 0
	}
	received := time.Now()
	var held int64 // bytes of the budget this request holds
	defer func() { h.mem.give(&held, held) }()
	body, n, err := h.readBody(w, r, &held)
	if err != nil {
		return refuse(w, resp, err), n
	}
	batch := &pipeline.Batch{Cluster: cluster, Received: received}
	var over error // set when the decoded events do not fit the budget
	var pending int64
	h.dec.DecodeBodySized("request body", body, func(n int) {
		// One slice for a list's records instead of one per doubling
		// (a tenth of the handler's CPU), when the budget has room for
		// it beside what each event takes as it is decoded.
		if h.mem.take(&held, int64(n)*recordSize) == nil {
			batch.Records = make([]audit.Record, 0, n)
		}
	}, func(rec audit.Record) {
		if over != nil {
			return
		}
		// Take from the budget in steps, not per event.
		if pending += int64(len(rec.Raw)) + recordOverhead; pending >= 64<<10 {
			over, pending = h.mem.take(&held, pending), 0
		}
		batch.Records = append(batch.Records, rec)
	}, func(p audit.Problem) {
		resp.RejectedCount++
		if len(resp.Rejected) >= MaxListedRejections {
			resp.RejectedNotListed++
			return
		}
		rj := Rejection{Line: p.Line, Reason: p.Reason}
		if p.Item >= 0 {
			item := p.Item
			rj.Item = &item
		}
		resp.Rejected = append(resp.Rejected, rj)
	})
	h.recycle(body)
	if over == nil {
		over = h.mem.take(&held, pending)
	}
	if over != nil {
		batch.Records = nil
		return refuse(w, resp, over), n
	}
	if len(batch.Records) == 0 {
		resp.Error = "no usable audit event in the body"
		if resp.RejectedCount == 1 {
			resp.Error += ": " + resp.Rejected[0].Reason
		}
		return http.StatusBadRequest, n
	}
	res, err := h.sink.Append(r.Context(), batch)
	resp.Stored, resp.Duplicates = res.Stored, res.Duplicates
	switch {
	case err == nil:
		return http.StatusOK, n
	case errors.Is(err, pipeline.ErrOverloaded):
		w.Header().Set("Retry-After", "1")
		resp.Error = err.Error() + "; nothing was stored, retry"
		return http.StatusTooManyRequests, n
	case errors.Is(err, pipeline.ErrUnavailable), errors.Is(err, pipeline.ErrClosed):
		w.Header().Set("Retry-After", "5")
		resp.Error = err.Error() + "; nothing was stored, retry"
		return http.StatusServiceUnavailable, n
	default:
		resp.Error = err.Error()
		return http.StatusServiceUnavailable, n
	}
}

func jsonMediaType(mt string) bool {
	switch mt {
	case "application/json", "application/x-ndjson", "application/jsonl", "application/x-jsonlines", "text/plain":
		return true
	}
	return strings.HasSuffix(mt, "+json")
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}
