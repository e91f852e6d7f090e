package alert

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Output sends notifications to one destination (a file, a webhook, Slack,
// Alertmanager, a syslog server). The dispatcher calls Send from one
// goroutine, never concurrently, with batches in store order.
type Output interface {
	// Send delivers alerts and returns nil only once the destination has
	// them, as far as its protocol can tell (an HTTP 2xx, an fsync, bytes
	// written to a TCP connection). On an error some of them may have
	// arrived: the dispatcher sends the whole batch again. Send must
	// return soon after ctx is done. alerts must not be kept after Send
	// returns.
	Send(ctx context.Context, alerts []Alert) error
	// Close releases the output's connections and files.
	Close() error
}

// Target is an output URL as a Factory sees it: the URL without its
// fragment, and the kubetrail settings written in the fragment
// (`#throttle=5m&group_by=user`). The fragment is never sent anywhere, so
// settings never clash with a peer's own query parameters.
type Target struct {
	// URL is the output URL, fragment removed.
	URL *url.URL
	// Params are the fragment's settings. A Factory takes the ones it
	// knows with Param; Open rejects any left.
	params url.Values
	used   map[string]bool
}

// Param returns the setting name from the fragment ("" when absent) and
// marks it known.
func (t *Target) Param(name string) string {
	if t.used == nil {
		t.used = map[string]bool{}
	}
	t.used[name] = true
	return t.params.Get(name)
}

// Factory makes an Output from a target. It must not connect: outputs
// connect on their first Send, so a peer that is down at start is retried
// like any failure.
type Factory func(t *Target) (Output, error)

// SchemeTable maps URL schemes to factories of some kind: the alert
// outputs' Registry and event forwarding's (internal/forward) are each one.
type SchemeTable[F any] struct {
	what      string
	factories map[string]F
}

// NewSchemeTable returns an empty table; what names its kind in panics.
func NewSchemeTable[F any](what string) SchemeTable[F] {
	return SchemeTable[F]{what: what, factories: map[string]F{}}
}

// Register adds a scheme ("webhook+https"); registering one twice is a bug.
func (t *SchemeTable[F]) Register(scheme string, f F) {
	if _, ok := t.factories[scheme]; ok {
		panic("BUG: " + t.what + " scheme registered twice: " + scheme)
	}
	t.factories[scheme] = f
}

// Lookup returns the factory of a scheme.
func (t *SchemeTable[F]) Lookup(scheme string) (F, bool) {
	f, ok := t.factories[scheme]
	return f, ok
}

// Schemes lists the registered schemes, sorted.
func (t *SchemeTable[F]) Schemes() []string {
	out := slices.Collect(maps.Keys(t.factories))
	slices.Sort(out)
	return out
}

// Registry maps URL schemes to alert output factories. Event forwarding
// has a registry of its own on the same SchemeTable, URL syntax and
// transports (internal/forward, ADR 0012).
type Registry struct {
	SchemeTable[Factory]
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{NewSchemeTable[Factory]("alert output")} }

// Spec is an opened output with its settings.
type Spec struct {
	Output Output
	// Name is safe to print and to log: the scheme and host (or a file's
	// path), never a path or query that may hold a token (Slack's
	// webhook URLs are secrets).
	Name string
	// ID is stable for the URL (fragment excluded): the name of the
	// dispatcher's cursor file.
	ID string
	// Dispatch holds the fragment's dispatcher settings over the
	// scheme's defaults.
	Dispatch DispatchConfig
}

// Open parses an output URL and makes its output. Settings in the
// fragment: throttle (a duration; 0 turns grouping off), group_by (a comma
// list of user, cluster, namespace, source, severity), batch (alerts per
// Send), and the scheme's own (docs/detection.md).
func (r *Registry) Open(raw string) (*Spec, error) {
	t, err := ParseTarget(raw)
	if err != nil {
		return nil, fmt.Errorf("output %w", err)
	}
	f, ok := r.Lookup(t.URL.Scheme)
	if !ok {
		return nil, fmt.Errorf("output URL %s: unknown scheme %q; want one of %s", t.Name(), t.URL.Scheme, strings.Join(r.Schemes(), ", "))
	}
	cfg := DefaultDispatchConfig(t.URL.Scheme)
	cfg.Name = t.Name()
	if err := cfg.parse(t); err != nil {
		return nil, fmt.Errorf("output URL %s: %w", t.Name(), err)
	}
	out, err := f(t)
	if err != nil {
		return nil, fmt.Errorf("output URL %s: %w", t.Name(), err)
	}
	if err := t.CheckUsed(); err != nil {
		out.Close()
		return nil, fmt.Errorf("output URL %s: %w", t.Name(), err)
	}
	return &Spec{Output: out, Name: t.Name(), ID: t.ID(), Dispatch: cfg}, nil
}

// ParseTarget reads a destination URL the way every kubetrail URL is read:
// the URL without its fragment, and the settings in the fragment. Alert
// outputs (Open) and event forwarding (internal/forward) both open their
// URLs with it, so they share one syntax (docs/adr/0009, 0012).
func ParseTarget(raw string) (*Target, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("URL: %w", err)
	}
	params, err := url.ParseQuery(u.Fragment)
	if err != nil {
		return nil, fmt.Errorf("URL %s: settings after #: %w", Redact(u), err)
	}
	base := *u
	base.Fragment, base.RawFragment = "", ""
	return &Target{URL: &base, params: params}, nil
}

// Name is the target as it may be printed (Redact): never a token.
func (t *Target) Name() string { return Redact(t.URL) }

// ID is stable for the URL (fragment excluded) and safe as a file name.
func (t *Target) ID() string { return outputID(t.URL) }

// CheckUsed returns an error naming a fragment setting that no Param call
// asked for: a misspelt setting must not be silently ignored.
func (t *Target) CheckUsed() error {
	var unknown []string
	for k := range t.params {
		if !t.used[k] {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	slices.Sort(unknown)
	return fmt.Errorf("unknown setting %q after #", unknown[0])
}

// Redact returns scheme://host of u, or scheme://path for a file: what may
// be printed without leaking a token in a path or query.
func Redact(u *url.URL) string {
	if u.Host == "" {
		return u.Scheme + "://" + u.Path
	}
	s := u.Scheme + "://" + u.Host
	if u.Path != "" && u.Path != "/" || u.RawQuery != "" {
		s += "/..."
	}
	return s
}

var idUnsafe = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`[^A-Za-z0-9.-]+`) })

func outputID(u *url.URL) string {
	sum := sha256.Sum256([]byte(u.String()))
	name := u.Scheme + "-" + u.Host
	if u.Host == "" {
		name = u.Scheme + "-" + u.Path
	}
	name = strings.Trim(idUnsafe().ReplaceAllString(name, "_"), "_")
	if len(name) > 60 {
		name = name[:60]
	}
	return name + "-" + hex.EncodeToString(sum[:6])
}

func (c *DispatchConfig) parse(t *Target) error {
	if v := t.Param("throttle"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			return fmt.Errorf("throttle=%q: want a duration such as 1m, or 0 to send every alert", v)
		}
		c.Throttle.Window = d
	}
	if v := t.Param("group_by"); v != "" {
		fields := strings.Split(v, ",")
		for _, f := range fields {
			if !slices.Contains(groupFields, f) {
				return fmt.Errorf("group_by=%q: %q is not one of %s", v, f, strings.Join(groupFields, ", "))
			}
		}
		c.Throttle.GroupBy = fields
	}
	if v := t.Param("batch"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 10000 {
			return fmt.Errorf("batch=%q: want a number of alerts from 1 to 10000", v)
		}
		c.Batch = n
	}
	return nil
}
