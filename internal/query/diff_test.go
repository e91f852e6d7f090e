package query

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kubetrail/kubetrail/internal/audit"
)

// This file holds the differential test: random filters over random events,
// Filter.Match against a deliberately naive evaluator that interprets the
// tree directly, written without looking at the compiled matchers: its own
// field accessors, globs as regular expressions, IPs through package net,
// times compared as fixed-width strings.

// diffNow is the "now" relative times resolve against.
var diffNow = time.Date(2026, 1, 3, 0, 0, 0, 0, time.UTC)

var pools = struct {
	users, groups, verbs, resources, subresources, namespaces, names, apiGroups, apiVersions,
	statuses, reasons, messages, ips, uas, levels, stages, auditIDs, clusters, decisions,
	teams, scopes, bodies, texts, constraints []string
	codes []int32
}{
	users:        []string{"alice", "bob", "attacker", "system:node:n1", "system:node:n2", "system:serviceaccount:kube-system:coredns", "system:admin", ""},
	groups:       []string{"system:authenticated", "system:masters", "system:nodes", "devs", "admins", "system:serviceaccounts"},
	verbs:        []string{"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"},
	resources:    []string{"pods", "secrets", "configmaps", "roles", "rolebindings", "clusterroles", "deployments", "nodes", ""},
	subresources: []string{"", "", "", "exec", "attach", "portforward", "status", "log"},
	namespaces:   []string{"", "default", "kube-system", "production", "staging"},
	names:        []string{"", "important", "etcd-0", "coredns-abc", "web-1", "my pod"},
	apiGroups:    []string{"", "", "apps", "rbac.authorization.k8s.io"},
	apiVersions:  []string{"v1", "v1beta1"},
	statuses:     []string{"Success", "Failure", ""},
	reasons:      []string{"", "Forbidden", "NotFound", "Unauthorized", "AlreadyExists"},
	messages:     []string{"", `secrets "x" is forbidden`, "not found"},
	ips: []string{"10.0.0.1", "10.1.2.3", "10.200.0.5", "192.168.1.100", "192.168.5.5", "172.16.0.9", "203.0.113.9",
		"::1", "2001:db8::1", "2001:db8:1::9", "::ffff:10.0.0.7", "bogus", ""},
	uas:         []string{"kubectl/v1.30.0 (linux/amd64)", "curl/8.5.0", "kube-controller-manager/v1.31.0", "Go-http-client/1.1", ""},
	levels:      []string{"Metadata", "Metadata", "Request", "RequestResponse", "None", ""},
	stages:      []string{"RequestReceived", "ResponseStarted", "ResponseComplete", "ResponseComplete", "Panic"},
	auditIDs:    []string{"id-1", "id-2", "id-3", "id-4"},
	clusters:    []string{"c1", "c2", "prod-eu"},
	decisions:   []string{"allow", "forbid", ""},
	teams:       []string{"red", "blue", ""},
	scopes:      []string{"view", "edit"},
	constraints: []string{"", "impersonate:user-info", "impersonate-on:user-info:list"},
	bodies: []string{"", `{"kind":"Pod","spec":{"containers":[{"securityContext":{"privileged":true}}]}}`,
		`{"kind":"Secret","data":"REDACTED"}`, `{"note":"kube-system \"quoted\""}`},
	texts: []string{"kube-system", "important", "kubectl", "forbidden", "privileged", "alice", "exec", "REDACTED",
		"", "zzz", "red", `"quoted"`, "my pod", "/api/v1"},
	codes: []int32{0, 200, 201, 101, 401, 403, 404, 409, 500},
}

// diffTimes are the instants events are stamped with, so that time=...
// filters find equal times.
var diffTimes = func() []time.Time {
	base := time.Date(2026, 1, 2, 12, 0, 0, 0, time.UTC)
	var out []time.Time
	for _, d := range []time.Duration{-72 * time.Hour, -30 * time.Hour, -13 * time.Hour, -1 * time.Hour, 0, 123456 * time.Microsecond,
		5 * time.Hour, 10*time.Hour + 30*time.Minute, 11*time.Hour + 45*time.Minute, 11*time.Hour + 59*time.Minute + 500*time.Millisecond} {
		out = append(out, base.Add(d))
	}
	return out
}()

func pick[T any](r *rand.Rand, xs []T) T { return xs[r.IntN(len(xs))] }

func randomEvent(r *rand.Rand) *audit.Event {
	ev := &audit.Event{
		Level: audit.Level(pick(r, pools.levels)), AuditID: pick(r, pools.auditIDs),
		Stage: audit.Stage(pick(r, pools.stages)), Verb: pick(r, pools.verbs),
		User:      audit.UserInfo{Username: pick(r, pools.users), UID: pick(r, []string{"", "uid-1", "uid-2"})},
		UserAgent: pick(r, pools.uas),
	}
	for range r.IntN(4) {
		ev.User.Groups = append(ev.User.Groups, pick(r, pools.groups))
	}
	if r.IntN(3) == 0 {
		ev.User.Extra = map[string][]string{"scopes": pools.scopes[:r.IntN(3)]}
	}
	if r.IntN(5) == 0 {
		ev.ImpersonatedUser = &audit.UserInfo{Username: pick(r, pools.users), Groups: []string{pick(r, pools.groups)}}
		if r.IntN(2) == 0 {
			ev.ImpersonatedUser.Extra = map[string][]string{"scopes": {pick(r, pools.scopes)}}
		}
		ev.AuthenticationMetadata = &audit.AuthenticationMetadata{ImpersonationConstraint: pick(r, pools.constraints)}
	}
	for range r.IntN(4) {
		ev.SourceIPs = append(ev.SourceIPs, pick(r, pools.ips))
	}
	if res := pick(r, pools.resources); res != "" {
		ev.ObjectRef = &audit.ObjectReference{
			Resource: res, Subresource: pick(r, pools.subresources), Namespace: pick(r, pools.namespaces),
			Name: pick(r, pools.names), APIGroup: pick(r, pools.apiGroups), APIVersion: pick(r, pools.apiVersions),
			UID: pick(r, []string{"", "obj-1"}), ResourceVersion: pick(r, []string{"", "1", "42"}),
		}
		ev.RequestURI = "/api/v1/namespaces/" + ev.ObjectRef.Namespace + "/" + res + "/" + ev.ObjectRef.Name
		if ev.ObjectRef.Subresource == "exec" {
			ev.RequestURI += "/exec?command=sh&stdin=true"
		}
	} else {
		ev.RequestURI = pick(r, []string{"/healthz", "/api", "/version?timeout=32s"})
	}
	if c := pick(r, pools.codes); c != 0 || r.IntN(4) == 0 {
		ev.ResponseStatus = &audit.Status{Code: c, Status: pick(r, pools.statuses), Reason: pick(r, pools.reasons), Message: pick(r, pools.messages)}
	}
	if b := pick(r, pools.bodies); b != "" {
		ev.RequestObject = json.RawMessage(b)
	}
	if b := pick(r, pools.bodies); b != "" && r.IntN(2) == 0 {
		ev.ResponseObject = json.RawMessage(b)
	}
	switch r.IntN(8) {
	case 0: // no times at all
	case 1: // received only
		ev.RequestReceivedTimestamp = audit.MicroTime{Time: pick(r, diffTimes)}
	default:
		ev.RequestReceivedTimestamp = audit.MicroTime{Time: pick(r, diffTimes)}
		ev.StageTimestamp = audit.MicroTime{Time: pick(r, diffTimes)}
	}
	if r.IntN(5) > 0 {
		ev.Annotations = map[string]string{}
		if d := pick(r, pools.decisions); d != "" {
			ev.Annotations["authorization.k8s.io/decision"] = d
		}
		if tm := pick(r, pools.teams); tm != "" {
			ev.Annotations["example.com/team"] = tm
		}
	}
	return ev
}

// --- random filters ---

type genField struct {
	name, key string
	kind      kind
	pool      []string
}

func genFields() []genField {
	codes := []string{"100", "101", "200", "201", "399", "400", "401", "403", "404", "500", "599"}
	var times []string
	for _, t := range diffTimes {
		times = append(times, t.Format("2006-01-02T15:04:05.000000Z"))
	}
	times = append(times, "2026-01-02", "2026-01-01", "-1h", "-30m", "-2d", "-1d12h", "-90s", "-1w")
	ipVals := append(slices.Clone(pools.ips[:len(pools.ips)-2]), "", "::ffff:192.168.1.100", "10.0.0.0/8", "10.1.0.0/16", "192.168.0.0/16",
		"0.0.0.0/0", "2001:db8::/32", "::/0", "203.0.113.9/32", "::ffff:10.0.0.0/104", "10.*", "*::*", "192.168.1.*")
	return []genField{
		{name: "user", kind: kString, pool: pools.users},
		{name: "group", kind: kStrings, pool: pools.groups},
		{name: "user.uid", kind: kString, pool: []string{"", "uid-1", "uid-2"}},
		{name: "user.extra", key: "scopes", kind: kStrings, pool: pools.scopes},
		{name: "user.extra", key: "missing", kind: kStrings, pool: pools.scopes},
		{name: "as", kind: kString, pool: pools.users},
		{name: "as.group", kind: kStrings, pool: pools.groups},
		{name: "as.extra", key: "scopes", kind: kStrings, pool: pools.scopes},
		{name: "verb", kind: kString, pool: pools.verbs},
		{name: "resource", kind: kString, pool: pools.resources},
		{name: "subresource", kind: kString, pool: pools.subresources},
		{name: "ns", kind: kString, pool: pools.namespaces},
		{name: "name", kind: kString, pool: pools.names},
		{name: "apigroup", kind: kString, pool: pools.apiGroups},
		{name: "apiversion", kind: kString, pool: pools.apiVersions},
		{name: "objectRef.uid", kind: kString, pool: []string{"", "obj-1"}},
		{name: "objectRef.resourceVersion", kind: kString, pool: []string{"", "1", "42"}},
		{name: "code", kind: kCode, pool: codes},
		{name: "status", kind: kString, pool: pools.statuses},
		{name: "reason", kind: kString, pool: pools.reasons},
		{name: "message", kind: kString, pool: pools.messages},
		{name: "ip", kind: kIP, pool: ipVals},
		{name: "peer", kind: kPeer, pool: ipVals},
		{name: "ua", kind: kString, pool: pools.uas},
		{name: "level", kind: kLevel, pool: pools.levels[:5]},
		{name: "stage", kind: kString, pool: pools.stages},
		{name: "uri", kind: kString, pool: []string{"/healthz", "/api", "/version?timeout=32s", "/api/v1/namespaces/kube-system/pods/etcd-0/exec?command=sh&stdin=true"}},
		{name: "auditid", kind: kString, pool: pools.auditIDs},
		{name: "cluster", kind: kString, pool: pools.clusters},
		{name: "decision", kind: kString, pool: pools.decisions},
		{name: "annotation", key: "example.com/team", kind: kString, pool: pools.teams},
		{name: "annotation", key: "authorization.k8s.io/decision", kind: kString, pool: pools.decisions},
		{name: "time", kind: kTime, pool: times},
		{name: "received", kind: kTime, pool: times},
		{name: "impersonationConstraint", kind: kString, pool: pools.constraints},
		{name: "requestObject", kind: kBody, pool: pools.bodies},
		{name: "responseObject", kind: kBody, pool: pools.bodies},
	}
}

type gen struct {
	r      *rand.Rand
	fields []genField
}

func (g *gen) expr(depth int) Expr {
	if depth == 0 || g.r.IntN(10) < 4 {
		return g.leaf()
	}
	n := 2 + g.r.IntN(3)
	terms := make([]Expr, n)
	for i := range terms {
		terms[i] = g.expr(depth - 1)
	}
	switch g.r.IntN(5) {
	case 0, 1:
		return &And{Terms: terms}
	case 2, 3:
		return &Or{Terms: terms}
	}
	return &Not{X: terms[0]}
}

func (g *gen) leaf() Expr {
	if g.r.IntN(12) == 0 {
		t := pick(g.r, pools.texts)
		if g.r.IntN(2) == 0 && len(t) > 2 {
			i := g.r.IntN(len(t) - 1)
			t = t[i : i+1+g.r.IntN(len(t)-i-1)]
		}
		return &Text{Text: t}
	}
	f := pick(g.r, g.fields)
	c := &Cmp{Field: Field{Name: f.name, Key: f.key}}
	var ops []Op
	switch f.kind {
	case kCode:
		ops = []Op{OpEq, OpNe, OpLt, OpLe, OpGt, OpGe, OpIn, OpNotIn}
	case kTime:
		ops = []Op{OpEq, OpNe, OpLt, OpLe, OpGt, OpGe}
	case kLevel:
		ops = []Op{OpEq, OpNe, OpMatch, OpNotMatch, OpIn, OpNotIn, OpLt, OpLe, OpGt, OpGe}
	default:
		ops = []Op{OpEq, OpNe, OpMatch, OpNotMatch, OpIn, OpNotIn}
	}
	c.Op = pick(g.r, ops)
	switch c.Op {
	case OpIn, OpNotIn:
		for range 1 + g.r.IntN(4) {
			c.Values = append(c.Values, g.value(f, OpEq))
		}
	default:
		c.Values = []Value{g.value(f, c.Op)}
	}
	return c
}

var regexpMeta = regexp.MustCompile(`[\\.+*?()|\[\]{}^$]`)

func (g *gen) value(f genField, op Op) Value {
	v := pick(g.r, f.pool)
	switch {
	case f.kind == kCode || f.kind == kTime || f.kind == kIP || f.kind == kPeer:
		if op == OpMatch || op == OpNotMatch {
			return Value{Text: pick(g.r, []string{`^10\.`, `::`, `^192\.168\.1\.100$`, `bogus`, `.`})}
		}
		return Value{Text: v, Glob: strings.Contains(v, "*")}
	case f.kind == kLevel && op.ordered():
		return Value{Text: pick(g.r, levelOrder[:])}
	case op == OpMatch || op == OpNotMatch:
		return Value{Text: g.regexpFrom(v)}
	case (f.name == "level" || f.name == "stage") && g.r.IntN(4) > 0:
		return Value{Text: v}
	case f.name == "level" || f.name == "stage":
		return Value{Text: pick(g.r, []string{"Request*", "*Response*", "Re*se*", "*"}), Glob: true}
	}
	switch g.r.IntN(8) {
	case 0, 1:
		// A glob made from a pool value.
		if v == "" {
			return Value{Text: "*", Glob: true}
		}
		i := g.r.IntN(len(v))
		j := i + g.r.IntN(len(v)-i+1)
		var p string
		switch g.r.IntN(4) {
		case 0:
			p = v[:i] + "*"
		case 1:
			p = "*" + v[j:]
		case 2:
			p = "*" + v[i:j] + "*"
		default:
			p = v[:i] + "*" + v[j:]
			if g.r.IntN(2) == 0 && j < len(v) {
				k := j + g.r.IntN(len(v)-j)
				p = v[:i] + "*" + v[j:k] + "*" + v[k:]
			}
		}
		if isBare(p) {
			return Value{Text: p, Glob: true}
		}
		return Value{Text: p} // quoted: a literal star
	case 2:
		return Value{Text: strings.ToUpper(v)}
	}
	return Value{Text: v}
}

func (g *gen) regexpFrom(v string) string {
	q := regexpMeta.ReplaceAllStringFunc(v, func(s string) string { return `\` + s })
	if v == "" {
		return pick(g.r, []string{`^$`, ``, `.`, `^a`})
	}
	i := g.r.IntN(len(q))
	switch g.r.IntN(5) {
	case 0:
		return "^" + q
	case 1:
		return q + "$"
	case 2:
		return "(?i)" + strings.ToUpper(q)
	case 3:
		return q + "|" + regexpMeta.ReplaceAllStringFunc(pick(g.r, pools.users), func(s string) string { return `\` + s })
	}
	for i > 0 && q[i-1] == '\\' {
		i--
	}
	return q[:i]
}

// --- the naive evaluator ---

type naive struct {
	re map[string]*regexp.Regexp // cache, for speed only
}

func (n *naive) regexp(s string) *regexp.Regexp {
	if re, ok := n.re[s]; ok {
		return re
	}
	re := regexp.MustCompile(s)
	n.re[s] = re
	return re
}

func (n *naive) eval(e Expr, ev *audit.Event, cluster string) bool {
	switch e := e.(type) {
	case nil:
		return true
	case *And:
		for _, t := range e.Terms {
			if !n.eval(t, ev, cluster) {
				return false
			}
		}
		return true
	case *Or:
		for _, t := range e.Terms {
			if n.eval(t, ev, cluster) {
				return true
			}
		}
		return false
	case *Not:
		return !n.eval(e.X, ev, cluster)
	case *Text:
		hay := []string{ev.RequestURI, ev.UserAgent, ev.User.Username, string(ev.RequestObject), string(ev.ResponseObject)}
		if ev.ImpersonatedUser != nil {
			hay = append(hay, ev.ImpersonatedUser.Username)
		}
		if ev.ObjectRef != nil {
			hay = append(hay, ev.ObjectRef.Namespace, ev.ObjectRef.Name)
		}
		if ev.ResponseStatus != nil {
			hay = append(hay, ev.ResponseStatus.Message)
		}
		for _, v := range ev.Annotations {
			hay = append(hay, v)
		}
		for _, h := range hay {
			if strings.Contains(h, e.Text) {
				return true
			}
		}
		return false
	case *Cmp:
		name := e.Field.Name
		vals := naiveValues(name, e.Field.Key, ev, cluster)
		neg := e.Op == OpNe || e.Op == OpNotMatch || e.Op == OpNotIn
		any := false
		for _, v := range vals {
			for _, want := range e.Values {
				if n.test(name, e.Op, v, want) {
					any = true
				}
			}
		}
		return any != neg
	}
	panic(fmt.Sprintf("naive: %T", e))
}

// naiveValues reads a field the long way: every value it has, as strings;
// times as fixed-width UTC strings, which sort like the times.
func naiveValues(name, key string, ev *audit.Event, cluster string) []string {
	or := ev.ObjectRef
	if or == nil {
		or = &audit.ObjectReference{}
	}
	st := ev.ResponseStatus
	if st == nil {
		st = &audit.Status{}
	}
	imp := ev.ImpersonatedUser
	if imp == nil {
		imp = &audit.UserInfo{}
	}
	one := func(s string) []string { return []string{s} }
	ts := func(t time.Time) []string {
		if t.IsZero() {
			return nil
		}
		return one(t.UTC().Format("2006-01-02T15:04:05.000000000Z"))
	}
	switch name {
	case "user":
		return one(ev.User.Username)
	case "group":
		return ev.User.Groups
	case "user.uid":
		return one(ev.User.UID)
	case "user.extra":
		return ev.User.Extra[key]
	case "as":
		return one(imp.Username)
	case "as.group":
		return imp.Groups
	case "as.uid":
		return one(imp.UID)
	case "as.extra":
		return imp.Extra[key]
	case "verb":
		return one(ev.Verb)
	case "resource":
		return one(or.Resource)
	case "subresource":
		return one(or.Subresource)
	case "ns":
		return one(or.Namespace)
	case "name":
		return one(or.Name)
	case "apigroup":
		return one(or.APIGroup)
	case "apiversion":
		return one(or.APIVersion)
	case "objectRef.uid":
		return one(or.UID)
	case "objectRef.resourceVersion":
		return one(or.ResourceVersion)
	case "code":
		if st.Code == 0 {
			return nil
		}
		return one(strconv.Itoa(int(st.Code)))
	case "status":
		return one(st.Status)
	case "reason":
		return one(st.Reason)
	case "message":
		return one(st.Message)
	case "ip":
		return ev.SourceIPs
	case "peer":
		if len(ev.SourceIPs) == 0 {
			return one("")
		}
		return one(ev.SourceIPs[len(ev.SourceIPs)-1])
	case "ua":
		return one(ev.UserAgent)
	case "level":
		return one(string(ev.Level))
	case "stage":
		return one(string(ev.Stage))
	case "uri":
		return one(ev.RequestURI)
	case "auditid":
		return one(ev.AuditID)
	case "cluster":
		return one(cluster)
	case "decision":
		return one(ev.Annotations["authorization.k8s.io/decision"])
	case "annotation":
		return one(ev.Annotations[key])
	case "time":
		if !ev.StageTimestamp.IsZero() {
			return ts(ev.StageTimestamp.Time)
		}
		return ts(ev.RequestReceivedTimestamp.Time)
	case "received":
		return ts(ev.RequestReceivedTimestamp.Time)
	case "impersonationConstraint":
		if ev.AuthenticationMetadata == nil {
			return one("")
		}
		return one(ev.AuthenticationMetadata.ImpersonationConstraint)
	case "requestObject":
		return one(string(ev.RequestObject))
	case "responseObject":
		return one(string(ev.ResponseObject))
	}
	panic("naive: unknown field " + name)
}

var naiveAgo = map[string]time.Duration{
	"-1h": time.Hour, "-30m": 30 * time.Minute, "-2d": 48 * time.Hour, "-1d12h": 36 * time.Hour,
	"-90s": 90 * time.Second, "-1w": 7 * 24 * time.Hour,
}

func (n *naive) test(field string, op Op, v string, want Value) bool {
	switch op {
	case OpMatch, OpNotMatch:
		return n.regexp(want.Text).MatchString(v)
	}
	switch field {
	case "code":
		a, _ := strconv.Atoi(v)
		b, _ := strconv.Atoi(want.Text)
		return cmpOrdered(op, a, b)
	case "level":
		if op.ordered() {
			a := slices.Index(levelOrder[:], v)
			b := slices.Index(levelOrder[:], want.Text)
			return a >= 0 && cmpOrdered(op, a, b)
		}
	case "time", "received":
		var t time.Time
		if d, ok := naiveAgo[want.Text]; ok {
			t = diffNow.Add(-d)
		} else if x, err := time.Parse(time.RFC3339Nano, want.Text); err == nil {
			t = x
		} else if x, err := time.Parse("2006-01-02", want.Text); err == nil {
			t = x
		} else {
			panic("naive: time " + want.Text)
		}
		return cmpOrdered(op, v, t.UTC().Format("2006-01-02T15:04:05.000000000Z"))
	case "ip", "peer":
		if !want.Glob && want.Text != "" {
			ip := net.ParseIP(v)
			if ip == nil {
				return false
			}
			if strings.Contains(want.Text, "/") {
				_, ipnet, err := net.ParseCIDR(want.Text)
				if err != nil {
					panic(err)
				}
				return ipnet.Contains(ip)
			}
			return ip.Equal(net.ParseIP(want.Text))
		}
	}
	if want.Glob {
		parts := strings.Split(want.Text, "*")
		for i := range parts {
			parts[i] = regexp.QuoteMeta(parts[i])
		}
		return n.regexp(`(?s)^` + strings.Join(parts, ".*") + `$`).MatchString(v)
	}
	return v == want.Text
}

func cmpOrdered[T int | string](op Op, a, b T) bool {
	switch op {
	case OpEq, OpNe, OpIn, OpNotIn:
		return a == b
	case OpLt:
		return a < b
	case OpLe:
		return a <= b
	case OpGt:
		return a > b
	case OpGe:
		return a >= b
	}
	panic("naive: op " + op.String())
}

func TestDifferential(t *testing.T) {
	const nFilters, nEvents = 600, 300
	r := rand.New(rand.NewPCG(7, 11))
	events := make([]*audit.Event, nEvents)
	clusters := make([]string, nEvents)
	for i := range events {
		events[i] = randomEvent(r)
		clusters[i] = pick(r, pools.clusters)
	}
	g := &gen{r: r, fields: genFields()}
	ref := &naive{re: map[string]*regexp.Regexp{}}
	mixed := 0
	for i := range nFilters {
		e := g.expr(3)
		src := Canonical(e)
		f, err := CompileAt(src, diffNow)
		if err != nil {
			t.Fatalf("filter %d does not compile: %s\n%v", i, src, err)
		}
		// The canonical text is a fixed point.
		if again := canonicalOf(t, f.String()); again != f.String() {
			t.Fatalf("canonical text not stable:\n%s\n%s", f.String(), again)
		}
		hits := 0
		for j, ev := range events {
			got, want := f.Match(ev, clusters[j]), ref.eval(e, ev, clusters[j])
			if got != want {
				b, _ := json.Marshal(ev)
				t.Fatalf("filter %s\non cluster %s, event %s\nMatch = %v, naive = %v", src, clusters[j], b, got, want)
			}
			if got {
				hits++
				checkPlan(t, f, ev, clusters[j])
			}
		}
		if hits > 0 && hits < nEvents {
			mixed++
		}
	}
	// The test only means something if most filters split the events.
	if mixed < nFilters/3 {
		t.Errorf("only %d of %d filters matched some but not all events", mixed, nFilters)
	}
	t.Logf("%d filters x %d events; %d filters matched some but not all", nFilters, nEvents, mixed)
}

// checkPlan checks that what RequiredValues and TimeRange promise holds
// for an event the filter matched.
func checkPlan(t *testing.T, f *Filter, ev *audit.Event, cluster string) {
	t.Helper()
	for _, fld := range []Field{{Name: "user"}, {Name: "group"}, {Name: "ns"}, {Name: "verb"}, {Name: "name"}, {Name: "code"},
		{Name: "ip"}, {Name: "peer"}, {Name: "level"}, {Name: "user.extra", Key: "scopes"}, {Name: "annotation", Key: "example.com/team"}} {
		want, ok := f.RequiredValues(fld)
		if !ok {
			continue
		}
		has := slices.Clone(naiveValues(fld.Name, fld.Key, ev, cluster))
		if fld.Name == "ip" || fld.Name == "peer" {
			for i, v := range has {
				has[i] = NormalizeIP(v)
			}
		}
		if !slices.ContainsFunc(has, func(v string) bool { return slices.Contains(want, v) }) {
			t.Fatalf("filter %s matched an event whose %s is %q, outside RequiredValues %q", f, fld, has, want)
		}
	}
	from, to := f.TimeRange()
	if tm := ev.Time(); !tm.IsZero() && ((!from.IsZero() && tm.Before(from)) || (!to.IsZero() && tm.After(to))) {
		t.Fatalf("filter %s matched an event at %s, outside TimeRange %s..%s", f, tm, from, to)
	}
}
