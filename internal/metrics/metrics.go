// Package metrics is serve's /metrics: counters, gauges and a histogram
// written in the Prometheus text exposition format (version 0.0.4), the
// same bytes github.com/prometheus/client_golang's promhttp writes for
// them (docs/adr/0026). It exists so that every kubetrail process, whatever
// its command, does not pay client_golang's package initialisation
// (protobuf descriptors, procfs, expvar, the default registry's
// collectors: about 1.5 ms of each `kubetrail --version`); only serve
// builds a Registry.
package metrics

import (
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// Type is a metric family's type, as its # TYPE line says.
type Type string

// The types a family can have.
const (
	CounterType   Type = "counter"
	GaugeType     Type = "gauge"
	HistogramType Type = "histogram"
	SummaryType   Type = "summary"
)

// Label is one label of a metric.
type Label struct{ Name, Value string }

// Quantile is one quantile of a summary.
type Quantile struct{ Quantile, Value float64 }

// Bucket is one bucket of a histogram: how many observations were at
// most UpperBound (cumulative).
type Bucket struct {
	UpperBound float64
	Count      uint64
}

// Metric is one series of a family (a histogram's or a summary's several
// lines). Labels must be sorted by name.
type Metric struct {
	Labels []Label
	// Value is a counter's or a gauge's value.
	Value float64
	// Buckets (histogram), Quantiles (summary), Sum and Count (both).
	Buckets   []Bucket
	Quantiles []Quantile
	Sum       float64
	Count     uint64
}

// Family is a metric family as a scrape sees it.
type Family struct {
	Name, Help string
	Type       Type
	Metrics    []Metric
}

// Collector gives its families at each scrape. Collect may be called
// from several scrapes at once.
type Collector interface {
	Collect() []Family
}

// CollectorFunc is a Collector written as a function.
type CollectorFunc func() []Family

// Collect calls f.
func (f CollectorFunc) Collect() []Family { return f() }

// Registry is the set of collectors one /metrics serves. It is safe for
// concurrent use.
type Registry struct {
	mu         sync.Mutex
	collectors []Collector
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{} }

// Register adds collectors; a family given by several (a CounterFunc per
// label value) is written once, with all their series.
func (r *Registry) Register(cs ...Collector) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.collectors = append(r.collectors, cs...)
}

// Gather collects every family, merged by name, sorted by name, each
// family's series sorted by label values, families without a series left
// out: the order and the merging promhttp's registry does.
func (r *Registry) Gather() []Family {
	r.mu.Lock()
	cs := slices.Clone(r.collectors)
	r.mu.Unlock()
	byName := map[string]int{}
	var fams []Family
	for _, c := range cs {
		for _, f := range c.Collect() {
			if i, ok := byName[f.Name]; ok {
				fams[i].Metrics = append(fams[i].Metrics, f.Metrics...)
				continue
			}
			byName[f.Name] = len(fams)
			fams = append(fams, f)
		}
	}
	fams = slices.DeleteFunc(fams, func(f Family) bool { return len(f.Metrics) == 0 })
	slices.SortFunc(fams, func(a, b Family) int { return strings.Compare(a.Name, b.Name) })
	for _, f := range fams {
		slices.SortStableFunc(f.Metrics, compareLabelValues)
	}
	return fams
}

// compareLabelValues orders series as client_golang does: by their label
// values, label by label.
func compareLabelValues(a, b Metric) int {
	for i := range min(len(a.Labels), len(b.Labels)) {
		if c := strings.Compare(a.Labels[i].Value, b.Labels[i].Value); c != 0 {
			return c
		}
	}
	return len(a.Labels) - len(b.Labels)
}

// value is a float64 updated atomically.
type value struct{ bits atomic.Uint64 }

func (v *value) add(d float64) {
	for {
		old := v.bits.Load()
		if v.bits.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+d)) {
			return
		}
	}
}

func (v *value) load() float64 { return math.Float64frombits(v.bits.Load()) }

// Counter is a value that only goes up.
type Counter struct {
	name, help string
	v          value
}

// NewCounter returns a counter at 0; register it to export it.
func NewCounter(name, help string) *Counter { return &Counter{name: name, help: help} }

// Add adds d, which must not be negative.
func (c *Counter) Add(d float64) { c.v.add(d) }

// Inc adds 1.
func (c *Counter) Inc() { c.v.add(1) }

// Collect gives the counter's family.
func (c *Counter) Collect() []Family {
	return []Family{{Name: c.name, Help: c.help, Type: CounterType, Metrics: []Metric{{Value: c.v.load()}}}}
}

// Vec is a family of counters or gauges told apart by label values; a
// series exists from its first Add on.
type Vec struct {
	name, help string
	typ        Type
	labels     []string
	mu         sync.Mutex
	series     map[string]*series
}

type series struct {
	labels []Label
	v      value
}

// NewCounterVec returns a family of counters with the labels named.
func NewCounterVec(name, help string, labels ...string) *Vec {
	return &Vec{name: name, help: help, typ: CounterType, labels: labels, series: map[string]*series{}}
}

// NewGaugeVec returns a family of gauges with the labels named.
func NewGaugeVec(name, help string, labels ...string) *Vec {
	return &Vec{name: name, help: help, typ: GaugeType, labels: labels, series: map[string]*series{}}
}

// Add adds d to the series of these label values, one per label name in
// order; a counter's d must not be negative.
func (v *Vec) Add(d float64, values ...string) {
	if len(values) != len(v.labels) {
		panic("BUG: metric " + v.name + " given " + strings.Join(values, ",") + " for labels " + strings.Join(v.labels, ","))
	}
	key := strings.Join(values, "\xff")
	v.mu.Lock()
	s, ok := v.series[key]
	if !ok {
		s = &series{}
		for i, n := range v.labels {
			s.labels = append(s.labels, Label{n, values[i]})
		}
		slices.SortFunc(s.labels, func(a, b Label) int { return strings.Compare(a.Name, b.Name) })
		v.series[key] = s
	}
	v.mu.Unlock()
	s.v.add(d)
}

// Collect gives the family with one series per label values seen.
func (v *Vec) Collect() []Family {
	v.mu.Lock()
	defer v.mu.Unlock()
	f := Family{Name: v.name, Help: v.help, Type: v.typ}
	for _, s := range v.series {
		f.Metrics = append(f.Metrics, Metric{Labels: s.labels, Value: s.v.load()})
	}
	return []Family{f}
}

// Func is a counter or a gauge whose value is read at each scrape.
type Func struct {
	name, help string
	typ        Type
	labels     []Label
	f          func() float64
}

// NewCounterFunc returns a counter read from f at each scrape, with the
// constant labels given (sorted here).
func NewCounterFunc(name, help string, f func() float64, labels ...Label) *Func {
	return newFunc(name, help, CounterType, f, labels)
}

// NewGaugeFunc returns a gauge read from f at each scrape.
func NewGaugeFunc(name, help string, f func() float64, labels ...Label) *Func {
	return newFunc(name, help, GaugeType, f, labels)
}

func newFunc(name, help string, typ Type, f func() float64, labels []Label) *Func {
	labels = slices.Clone(labels)
	slices.SortFunc(labels, func(a, b Label) int { return strings.Compare(a.Name, b.Name) })
	return &Func{name: name, help: help, typ: typ, labels: labels, f: f}
}

// Collect reads the value.
func (f *Func) Collect() []Family {
	return []Family{{Name: f.name, Help: f.help, Type: f.typ, Metrics: []Metric{{Labels: f.labels, Value: f.f()}}}}
}

// Histogram counts observations into buckets.
type Histogram struct {
	name, help string
	bounds     []float64
	mu         sync.Mutex
	counts     []uint64 // per bucket, not cumulative; the last is +Inf's
	sum        float64
	count      uint64
}

// NewHistogram returns a histogram with these upper bounds (increasing;
// +Inf is added).
func NewHistogram(name, help string, bounds []float64) *Histogram {
	return &Histogram{name: name, help: help, bounds: bounds, counts: make([]uint64, len(bounds)+1)}
}

// ExponentialBuckets returns n bounds: start, start*factor, ...
func ExponentialBuckets(start, factor float64, n int) []float64 {
	b := make([]float64, n)
	for i := range b {
		b[i] = start
		start *= factor
	}
	return b
}

// Observe counts v.
func (h *Histogram) Observe(v float64) {
	i, _ := slices.BinarySearch(h.bounds, v) // the first bound >= v: buckets are "le"
	h.mu.Lock()
	h.counts[i]++
	h.sum += v
	h.count++
	h.mu.Unlock()
}

// Collect gives the cumulative buckets, the sum and the count.
func (h *Histogram) Collect() []Family {
	h.mu.Lock()
	defer h.mu.Unlock()
	m := Metric{Sum: h.sum, Count: h.count}
	var cum uint64
	for i, b := range h.bounds {
		cum += h.counts[i]
		m.Buckets = append(m.Buckets, Bucket{b, cum})
	}
	return []Family{{Name: h.name, Help: h.help, Type: HistogramType, Metrics: []Metric{m}}}
}
