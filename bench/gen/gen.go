package main

import (
	"bufio"
	"container/heap"
	"fmt"
	"io"
	"math/rand/v2"
	"time"
)

// config is what the command line chooses. Equal configs give
// byte-identical corpora.
type config struct {
	events int       // lines to write
	seed   uint64    // drives every random choice
	start  time.Time // first possible timestamp
	days   float64   // length of the covered period
}

// generator writes one corpus. It is single-threaded: all state, including
// the random source, is owned by it.
type generator struct {
	cfg   config
	r     *rand.Rand
	w     *world
	clk   *clock
	queue eventQueue
	seq   uint64
	now   int64 // the current slot's time: no line may be scheduled before it
	rv    int64 // the cluster's resourceVersion, bumped by every write

	machine     table
	machineActs []action
	human       table
	humanActs   []action

	// operatorID is the Audit-ID the payments operator sets itself; it
	// reuses it now and then (a client bug the corpus must contain).
	operatorID string

	tc  stampCache
	buf []byte
	st  *stats
	out *bufio.Writer
}

// action simulates one client operation starting at g.now. It must schedule
// its first line exactly at g.now and the others later.
type action struct {
	weight uint64
	name   string
	run    func(g *generator)
}

// generate writes cfg.events lines to w and returns their statistics.
func generate(w io.Writer, cfg config) (*stats, error) {
	if cfg.events < 0 {
		return nil, fmt.Errorf("events must not be negative, got %d", cfg.events)
	}
	if !(cfg.days > 0 && cfg.days <= maxDays) {
		return nil, fmt.Errorf("days must be in (0, %d], got %g", maxDays, cfg.days)
	}
	g := &generator{
		cfg: cfg,
		r:   rand.New(rand.NewPCG(cfg.seed, cfg.seed^0x6b75626574726169)),
		w:   newWorld(),
		clk: newClock(cfg),
		rv:  4_000_000 + int64(mix64(cfg.seed)%1_000_000),
		st:  newStats(),
		out: bufio.NewWriterSize(w, 1<<20),
		buf: make([]byte, 0, 64<<10),
	}
	g.operatorID = g.uuid()
	g.setupActions()

	incident := -1
	if cfg.events >= minIncidentEvents {
		incident = cfg.events * 62 / 100
	}
	for i := 0; i < cfg.events; i++ {
		t, human := g.clk.slot(int64(i), g.r)
		if i == incident {
			g.now = t
			g.incident()
		} else if g.queue.Len() == 0 || g.queue[0].stageAt > t {
			g.now = t
			if human {
				g.humanActs[g.human.pick(g.r)].run(g)
			} else {
				g.machineActs[g.machine.pick(g.r)].run(g)
			}
		}
		e := heap.Pop(&g.queue).(*event)
		if e.stageAt > t {
			panic(fmt.Sprintf("BUG: line at %d emitted in slot %d at %d", e.stageAt, i, t))
		}
		g.buf = appendEvent(g.buf[:0], e, &g.tc)
		g.st.add(e, len(g.buf))
		if _, err := g.out.Write(g.buf); err != nil {
			return nil, fmt.Errorf("write corpus: %w", err)
		}
	}
	if err := g.out.Flush(); err != nil {
		return nil, fmt.Errorf("write corpus: %w", err)
	}
	return g.st, nil
}

// maxDays bounds the period so that the clock's integer arithmetic cannot
// overflow.
const maxDays = 3660

// minIncidentEvents is the smallest corpus that contains the scripted
// incident (see incident.go).
const minIncidentEvents = 1000

// uuid returns a random UUIDv4 from the seeded source.
func (g *generator) uuid() string {
	var b [36]byte
	return string(appendUUID(b[:0], g.r.Uint64(), g.r.Uint64()))
}

// between returns a uniform integer in [lo, hi].
func (g *generator) between(lo, hi int64) int64 { return lo + g.r.Int64N(hi-lo+1) }

// chance reports true with probability per/1000.
func (g *generator) chance(per int) bool { return g.r.IntN(1000) < per }

// nextRV bumps and returns the cluster's resourceVersion, as a write does.
func (g *generator) nextRV() int64 {
	g.rv += g.between(1, 12)
	return g.rv
}

// schedule queues a line. Lines before the current slot would break the
// corpus's time order.
func (g *generator) schedule(e *event) {
	if e.stageAt < g.now {
		panic(fmt.Sprintf("BUG: line scheduled at %d before now %d", e.stageAt, g.now))
	}
	g.seq++
	e.seq = g.seq
	heap.Push(&g.queue, e)
}

// eventQueue orders pending lines by stage time, then by scheduling order.
type eventQueue []*event

func (q eventQueue) Len() int { return len(q) }
func (q eventQueue) Less(i, j int) bool {
	if q[i].stageAt != q[j].stageAt {
		return q[i].stageAt < q[j].stageAt
	}
	return q[i].seq < q[j].seq
}
func (q eventQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *eventQueue) Push(x any)   { *q = append(*q, x.(*event)) }
func (q *eventQueue) Pop() any {
	old := *q
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*q = old[:len(old)-1]
	return e
}

// call describes one API request; do turns it into its audit lines.
type call struct {
	a    *actor
	verb string
	uri  string
	ref  *objectRef // nil for a non-resource request
	code int        // HTTP status; 0 means 200

	// st is the response Status when the handler returned one (failures,
	// deletes); nil means only the code is recorded.
	st *status
	// level overrides the simulated policy (see policyLevel).
	level    string
	reqBody  []byte // requestObject, written at Request level and above
	respBody []byte // responseObject, written at RequestResponse level

	impersonated *userInfo
	constraint   string
	ips          []string     // nil means the actor's address
	ann          []annotation // more annotations (admission, latency)
	auditID      string       // a client-set Audit-ID; "" means a fresh one
	reason       string       // overrides the actor's authorization reason
	latency      int64        // µs until the response; 0 means typical
	duration     int64        // long-running requests: µs from start to end
}

// do schedules the lines of request c, whose first line is at time at, and
// returns the time of its last line.
func (g *generator) do(at int64, c *call) int64 {
	if c.code == 0 {
		c.code = 200
	}
	level, logReceived := c.level, false
	if level == "" {
		level, logReceived = policyLevel(c.a.class, c.verb, c.ref)
	}
	if level == levelMetadata {
		c.reqBody, c.respBody = nil, nil
	} else if level == levelRequest {
		c.respBody = nil
	}
	if c.code >= 400 {
		// Authorization and validation fail before the body is decoded.
		c.reqBody, c.respBody = nil, nil
	}
	id := c.auditID
	if id == "" {
		id = g.uuid()
	}
	lat := c.latency
	if lat == 0 {
		lat = g.latency(c.verb, c.code)
	}
	long := longRunning(c.verb, c.ref)
	ips := c.ips
	if ips == nil {
		ips = []string{c.a.ip}
	}

	base := event{
		level:      level,
		auditID:    id,
		requestURI: c.uri,
		verb:       c.verb,
		user:       c.a.user,
		sourceIPs:  ips,
		userAgent:  c.a.ua,
		objectRef:  c.ref,
		class:      c.a.class,
	}

	if c.code == 401 {
		// Failed authentication: the API server audits with an empty user
		// and emits only ResponseStarted, from the response writer.
		e := base
		e.user = nil
		e.class = classUnauthenticated
		e.stage = stageResponseStarted
		e.responseStatus = &status{status: "Failure", message: "Unauthorized", reason: "Unauthorized", code: 401}
		e.received, e.stageAt = at-lat, at
		g.schedule(&e)
		return at
	}

	st := c.st
	if st == nil {
		st = &status{}
	}
	st.code = c.code
	ann := make([]annotation, 0, 2+len(c.ann))
	if c.code == 403 {
		ann = append(ann, annotation{annDecision, "forbid"}, annotation{annReason, ""})
	} else {
		reason := c.reason
		if reason == "" {
			reason = c.a.reason
		}
		ann = append(ann, annotation{annDecision, "allow"}, annotation{annReason, reason})
	}
	ann = append(ann, c.ann...)
	sortAnnotations(ann)

	received := at - lat
	t := at
	if logReceived {
		// The RequestReceived line comes from the audit filter, before
		// impersonation and authorization: no impersonated user, no
		// annotations, no status.
		e := base
		e.stage = stageRequestReceived
		e.received, e.stageAt = at, at
		g.schedule(&e)
		received, t = at, at+lat
	}
	full := base
	full.impersonated = c.impersonated
	full.constraint = c.constraint
	full.responseStatus = st
	full.annotations = ann
	full.received = received
	if long {
		started := full
		started.stage = stageResponseStarted
		started.stageAt = t
		g.schedule(&started)
		d := c.duration
		if d == 0 {
			d = g.between(2_000, 60_000)
		}
		t += d
	}
	done := full
	done.stage = stageResponseComplete
	done.stageAt = t
	done.requestObject = c.reqBody
	done.responseObject = c.respBody
	g.schedule(&done)
	return t
}

// longRunning mirrors the API server's check: watches and the streaming
// subresources keep the connection open and get a ResponseStarted line.
func longRunning(verb string, ref *objectRef) bool {
	if verb == "watch" {
		return true
	}
	if ref == nil {
		return false
	}
	switch ref.subresource {
	case "exec", "attach", "portforward", "log", "proxy":
		return true
	}
	return false
}

// latency draws the time from request received to response, in µs: a few
// milliseconds for most requests, tens for writes and lists, with a tail.
func (g *generator) latency(verb string, code int) int64 {
	var l int64
	switch verb {
	case "get":
		l = g.between(300, 4_000)
	case "list":
		l = g.between(1_500, 40_000)
	case "watch":
		l = g.between(500, 3_000)
	case "create", "update", "patch", "delete":
		l = g.between(2_000, 18_000)
	default:
		l = g.between(500, 5_000)
	}
	if code >= 400 {
		l = g.between(150, 1_500)
	}
	if g.chance(8) {
		l *= g.between(4, 40) // etcd hiccup, slow webhook, big list
	}
	return l
}

// policyLevel is the audit policy the corpus was recorded under (also
// described in README.md). First match wins:
//  1. writes to roles, rolebindings, clusterroles, clusterrolebindings:
//     RequestResponse, with the RequestReceived stage;
//  2. secrets: Metadata (writes also with RequestReceived); serviceaccounts/
//     token, tokenreviews and *subjectaccessreviews: Metadata;
//  3. pods/exec, pods/attach, pods/portforward: Request;
//  4. reads, and everything by kubelets except pods/status: Metadata;
//  5. kubelets' pods/status patches: Request;
//  6. writes to deployments (and /scale), configmaps and pods:
//     RequestResponse;
//  7. everything else (leases, endpoints, events, nodes...): Metadata.
//
// Every rule except 1 and 2 omits the RequestReceived stage.
func policyLevel(cl class, verb string, ref *objectRef) (level string, logReceived bool) {
	if ref == nil {
		return levelMetadata, false
	}
	write := verb == "create" || verb == "update" || verb == "patch" || verb == "delete" || verb == "deletecollection"
	switch ref.resource {
	case "roles", "rolebindings", "clusterroles", "clusterrolebindings":
		if write {
			return levelRequestResponse, true
		}
	case "secrets":
		return levelMetadata, write
	case "tokenreviews", "subjectaccessreviews", "selfsubjectaccessreviews":
		return levelMetadata, false
	}
	if ref.resource == "serviceaccounts" && ref.subresource == "token" {
		return levelMetadata, false
	}
	if ref.resource == "pods" && (ref.subresource == "exec" || ref.subresource == "attach" || ref.subresource == "portforward") {
		return levelRequest, false
	}
	if !write {
		return levelMetadata, false
	}
	if cl == classKubelet {
		if ref.resource == "pods" && ref.subresource == "status" {
			return levelRequest, false
		}
		return levelMetadata, false
	}
	switch ref.resource {
	case "deployments":
		if ref.subresource == "" || ref.subresource == "scale" {
			return levelRequestResponse, false
		}
	case "configmaps", "pods":
		if ref.subresource == "" {
			return levelRequestResponse, false
		}
	}
	return levelMetadata, false
}

func sortAnnotations(a []annotation) {
	for i := 1; i < len(a); i++ {
		for j := i; j > 0 && a[j].key < a[j-1].key; j-- {
			a[j], a[j-1] = a[j-1], a[j]
		}
	}
}

// clock spreads the corpus over the period with a diurnal shape. The
// period is cut in one-minute bins; each bin has a machine weight (nearly
// flat) and a human weight (office hours, quieter at weekends). Line i
// falls in the i-th of N equal slices of the total weight, at a uniform
// random point inside it, so times never decrease and the gaps jitter.
type clock struct {
	startUS int64
	spanUS  int64
	machine []int64 // per bin
	humanW  []int64 // per bin
	cum     []int64 // cumulative total weight at the end of each bin
	total   int64
	n       int64
	bin     int // bin of the previous slot; slots only move forward
}

const binUS = 60_000_000

// humanProfile is the relative human activity per hour of day (UTC).
var humanProfile = [25]int64{4, 3, 2, 2, 2, 3, 8, 20, 55, 90, 100, 95, 70, 85, 100, 95, 85, 60, 35, 22, 15, 10, 7, 5, 4}

func newClock(cfg config) *clock {
	c := &clock{
		startUS: cfg.start.UnixMicro(),
		spanUS:  int64(cfg.days * 86400e6),
		n:       int64(cfg.events),
	}
	if c.spanUS < 1 {
		c.spanUS = 1
	}
	bins := int((c.spanUS + binUS - 1) / binUS)
	c.machine = make([]int64, bins)
	c.humanW = make([]int64, bins)
	c.cum = make([]int64, bins)
	for b := 0; b < bins; b++ {
		at := time.UnixMicro(c.startUS + int64(b)*binUS).UTC()
		h, m := at.Hour(), int64(at.Minute())
		p := humanProfile[h]*60 + (humanProfile[h+1]-humanProfile[h])*m // ×60
		if wd := at.Weekday(); wd == time.Saturday || wd == time.Sunday {
			p /= 4
		}
		// Machines: flat, plus a little more churn in office hours.
		mw := int64(60_000) + p*6
		hw := p * humanWeight
		if length := c.spanUS - int64(b)*binUS; length < binUS {
			mw = mw * length / binUS
			hw = hw * length / binUS
			if mw+hw == 0 {
				mw = 1
			}
		}
		c.machine[b], c.humanW[b] = mw, hw
		c.total += mw + hw
		c.cum[b] = c.total
	}
	return c
}

// humanWeight scales human activity against machine activity.
const humanWeight = 5

// slot returns the time of line i and whether a new action at that time is
// a human one.
func (c *clock) slot(i int64, r *rand.Rand) (int64, bool) {
	// i*total/n + jitter within the slice; the product fits in int64 for
	// any realistic corpus (total is below 2^40 for a year).
	lo := i * c.total / c.n
	hi := (i + 1) * c.total / c.n
	x := lo
	if hi > lo {
		x += r.Int64N(hi - lo)
	}
	for c.bin < len(c.cum)-1 && c.cum[c.bin] <= x {
		c.bin++
	}
	b := c.bin
	before := int64(0)
	if b > 0 {
		before = c.cum[b-1]
	}
	w := c.machine[b] + c.humanW[b]
	length := min(int64(binUS), c.spanUS-int64(b)*binUS)
	at := c.startUS + int64(b)*binUS + (x-before)*length/w
	human := r.Int64N(w) < c.humanW[b]
	return at, human
}
