package query

import (
	"encoding/json"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kubetrail/kubetrail/internal/audit"
)

func mustTime(s string) audit.MicroTime {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return audit.MicroTime{Time: t}
}

// testNow is the "now" relative times resolve against in these tests.
var testNow = time.Date(2026, 1, 2, 16, 0, 0, 0, time.UTC)

// namedEvents are hand-built events covering every field, present and absent.
func namedEvents() map[string]*audit.Event {
	return map[string]*audit.Event{
		// Someone deletes secret "important" in production.
		"delete": {
			Level: audit.LevelRequestResponse, AuditID: "a1", Stage: audit.StageResponseComplete,
			RequestURI: "/api/v1/namespaces/production/secrets/important", Verb: "delete",
			User:      audit.UserInfo{Username: "attacker", UID: "u-1", Groups: []string{"system:authenticated", "devs"}},
			SourceIPs: []string{"203.0.113.9", "192.168.1.100"}, UserAgent: "kubectl/v1.30.0 (linux/amd64)",
			ObjectRef:                &audit.ObjectReference{Resource: "secrets", Namespace: "production", Name: "important", APIVersion: "v1", UID: "o-1", ResourceVersion: "42"},
			ResponseStatus:           &audit.Status{Code: 200, Status: "Success"},
			RequestObject:            json.RawMessage(`{"kind":"DeleteOptions","propagationPolicy":"Background"}`),
			ResponseObject:           json.RawMessage(`{"kind":"Status","status":"Success","details":{"name":"important"}}`),
			RequestReceivedTimestamp: mustTime("2026-01-02T15:04:05.100000Z"),
			StageTimestamp:           mustTime("2026-01-02T15:04:05.123456Z"),
			Annotations:              map[string]string{"authorization.k8s.io/decision": "allow", "authorization.k8s.io/reason": `RBAC: allowed by ClusterRoleBinding "admins"`},
		},
		// A node execs into a pod over WebSocket: verb get.
		"exec": {
			Level: audit.LevelMetadata, AuditID: "a2", Stage: audit.StageResponseStarted,
			RequestURI: "/api/v1/namespaces/kube-system/pods/etcd-0/exec?command=sh&stdin=true", Verb: "get",
			User:      audit.UserInfo{Username: "system:node:n1", Groups: []string{"system:nodes", "system:authenticated"}},
			SourceIPs: []string{"10.1.2.3"}, UserAgent: "kubectl/v1.31.0",
			ObjectRef:                &audit.ObjectReference{Resource: "pods", Subresource: "exec", Namespace: "kube-system", Name: "etcd-0", APIVersion: "v1"},
			ResponseStatus:           &audit.Status{Code: 101},
			RequestReceivedTimestamp: mustTime("2026-01-02T15:30:00Z"),
			StageTimestamp:           mustTime("2026-01-02T15:30:00.5Z"),
			Annotations:              map[string]string{"authorization.k8s.io/decision": "allow"},
		},
		// bob impersonates alice and is denied listing secrets cluster-wide.
		"denied": {
			Level: audit.LevelMetadata, AuditID: "a3", Stage: audit.StageResponseComplete,
			RequestURI: "/api/v1/secrets?limit=500", Verb: "list",
			User: audit.UserInfo{Username: "bob", Groups: []string{"system:authenticated"},
				Extra: map[string][]string{"authentication.kubernetes.io/pod-name": {"toolbox-1"}}},
			ImpersonatedUser:       &audit.UserInfo{Username: "alice", UID: "u-2", Groups: []string{"admins"}, Extra: map[string][]string{"scopes": {"view", "edit"}}},
			AuthenticationMetadata: &audit.AuthenticationMetadata{ImpersonationConstraint: "impersonate:user-info"},
			SourceIPs:              []string{"::ffff:10.9.8.7"}, UserAgent: "curl/8.5.0",
			ObjectRef:                &audit.ObjectReference{Resource: "secrets", APIVersion: "v1"},
			ResponseStatus:           &audit.Status{Code: 403, Status: "Failure", Reason: "Forbidden", Message: `secrets is forbidden: User "alice" cannot list resource "secrets"`},
			RequestReceivedTimestamp: mustTime("2026-01-02T15:45:00Z"),
			StageTimestamp:           mustTime("2026-01-02T15:45:00.001Z"),
			Annotations:              map[string]string{"authorization.k8s.io/decision": "forbid", "authorization.k8s.io/reason": ""},
		},
		// Failed authentication: no user, no objectRef, no stage timestamp.
		"anon": {
			Level: audit.LevelMetadata, AuditID: "a4", Stage: audit.StageResponseComplete,
			RequestURI: "/api", Verb: "get",
			SourceIPs: []string{"2001:db8::1"}, UserAgent: "Go-http-client/1.1",
			ResponseStatus:           &audit.Status{Code: 401, Status: "Failure", Reason: "Unauthorized"},
			RequestReceivedTimestamp: mustTime("2026-01-01T00:00:00Z"),
		},
		// The first stage of a create: no response status, IPs or annotations.
		"received": {
			Level: audit.LevelRequest, AuditID: "a1", Stage: audit.StageRequestReceived,
			RequestURI: "/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings", Verb: "create",
			User:           audit.UserInfo{Username: "system:serviceaccount:default:deployer"},
			ObjectRef:      &audit.ObjectReference{Resource: "rolebindings", Namespace: "default", Name: "rb", APIGroup: "rbac.authorization.k8s.io", APIVersion: "v1"},
			RequestObject:  json.RawMessage(`{"kind":"RoleBinding","roleRef":{"name":"cluster-admin"},"note":"kube-system"}`),
			StageTimestamp: mustTime("2026-01-02T14:00:00Z"),
		},
	}
}

func TestMatch(t *testing.T) {
	events := namedEvents()
	names := make([]string, 0, len(events))
	for n := range events {
		names = append(names, n)
	}
	slices.Sort(names)
	f := func(src string, want ...string) {
		t.Helper()
		flt, err := CompileAt(src, testNow)
		if err != nil {
			t.Errorf("Compile(%q): %v", src, err)
			return
		}
		var got []string
		for _, n := range names {
			if flt.Match(events[n], "prod-eu") {
				got = append(got, n)
			}
		}
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("%s\n matched %v\n want    %v", src, got, want)
		}
	}
	all := []string{"anon", "delete", "denied", "exec", "received"}

	// The seed questions.
	f(`verb=delete resource=secrets ns=production name=important`, "delete")
	f(`user=attacker or ip in 192.168.0.0/16`, "delete")
	f(`subresource in (exec,attach)`, "exec")
	f(`code>=400 not user~"^system:"`, "anon", "denied")
	f(``, all...)

	// user, group, user.uid, user.extra
	f(`user=attacker`, "delete")
	f(`user!=attacker`, "anon", "denied", "exec", "received")
	f(`user=""`, "anon")
	f(`user=system:*`, "exec", "received")
	f(`user="system:*"`)
	f(`user=*:n1`, "exec")
	f(`user=*node*`, "exec")
	f(`user=system:*:deployer`, "received")
	f(`user=*`, all...)
	f(`user~"^system:(node|serviceaccount):"`, "exec", "received")
	f(`user!~"^system:"`, "anon", "delete", "denied")
	f(`user in (bob, attacker)`, "delete", "denied")
	f(`user not in (bob, attacker)`, "anon", "exec", "received")
	f(`group=system:authenticated`, "delete", "denied", "exec")
	f(`group!=system:authenticated`, "anon", "received")
	f(`group=devs`, "delete")
	f(`group=system:*`, "delete", "denied", "exec")
	f(`group in (admins, system:nodes)`, "exec")
	f(`group=""`)
	f(`user.uid=u-1`, "delete")
	f(`user.extra[authentication.kubernetes.io/pod-name]=toolbox-*`, "denied")
	f(`user.extra.authentication.kubernetes.io/pod-name=toolbox-1`, "denied")
	f(`user.extra[nope]=*`)

	// impersonation
	f(`as=alice`, "denied")
	f(`as!=""`, "denied")
	f(`as.group=admins`, "denied")
	f(`as.uid=u-2`, "denied")
	f(`as.extra[scopes]=edit`, "denied")
	f(`as.extra[scopes]!=edit`, "anon", "delete", "exec", "received")
	f(`impersonationConstraint=impersonate:*`, "denied")

	// objectRef
	f(`verb in (get, list)`, "anon", "denied", "exec")
	f(`resource=secrets`, "delete", "denied")
	f(`subresource=""`, "anon", "delete", "denied", "received")
	f(`ns=production`, "delete")
	f(`namespace=""`, "anon", "denied")
	f(`ns!=kube-system`, "anon", "delete", "denied", "received")
	f(`name=etcd-*`, "exec")
	f(`apigroup=rbac.authorization.k8s.io`, "received")
	f(`apigroup="" resource=*`, "anon", "delete", "denied", "exec")
	f(`apiversion=v1`, "delete", "denied", "exec", "received")
	f(`objectRef.uid=o-1`, "delete")
	f(`objectRef.resourceVersion=42`, "delete")
	f(`resource~role`, "received")

	// responseStatus
	f(`code=403`, "denied")
	f(`code!=403`, "anon", "delete", "exec", "received")
	f(`code<400`, "delete", "exec")
	f(`code<=401`, "anon", "delete", "exec")
	f(`code>401`, "denied")
	f(`code in (401,403)`, "anon", "denied")
	f(`code not in (401,403)`, "delete", "exec", "received")
	f(`not code>0`, "received")
	f(`status=Failure`, "anon", "denied")
	f(`reason=Forbidden`, "denied")
	f(`message~"cannot list"`, "denied")

	// source IPs: ip is any entry, peer the last.
	f(`ip=192.168.1.100`, "delete")
	f(`ip=203.0.113.9`, "delete")
	f(`peer=203.0.113.9`)
	f(`peer=192.168.1.100`, "delete")
	f(`ip in 10.0.0.0/8`, "denied", "exec")
	f(`ip=10.0.0.0/8`, "denied", "exec")
	f(`ip=10.9.8.7`, "denied")
	f(`ip=::ffff:10.9.8.7`, "denied")
	f(`ip in (2001:db8::/32, 203.0.113.0/24)`, "anon", "delete")
	f(`ip not in (10.0.0.0/8)`, "anon", "delete", "received")
	f(`ip!=192.168.1.100`, "anon", "denied", "exec", "received")
	f(`peer!=192.168.1.100`, "anon", "denied", "exec", "received")
	f(`peer in 192.168.0.0/16`, "delete")
	f(`ip=10.1.*`, "exec")
	f(`ip in (10.1.*, 2001:db8::1)`, "anon", "exec")
	f(`ip~"^::ffff:"`, "denied")
	f(`peer=""`, "received")
	f(`ip=::/0`, "anon")
	f(`ip=0.0.0.0/0`, "delete", "denied", "exec")

	// request metadata
	f(`ua~"^kubectl/"`, "delete", "exec")
	f(`useragent=curl/*`, "denied")
	f(`level=Metadata`, "anon", "denied", "exec")
	f(`level>=Request`, "delete", "received")
	f(`level<Request`, "anon", "denied", "exec")
	f(`level>Request`, "delete")
	f(`level<=None`)
	f(`level in (Request, RequestResponse)`, "delete", "received")
	f(`level=Request*`, "delete", "received")
	f(`stage=ResponseComplete`, "anon", "delete", "denied")
	f(`stage!=ResponseComplete`, "exec", "received")
	f(`uri=*/exec?*`, "exec")
	f(`uri~"command=sh"`, "exec")
	f(`auditid=a1`, "delete", "received")
	f(`cluster=prod-eu`, all...)
	f(`cluster=prod-*`, all...)
	f(`cluster!=prod-eu`)
	f(`decision=forbid`, "denied")
	f(`decision=""`, "anon", "received")
	f(`annotation[authorization.k8s.io/reason]~"RBAC"`, "delete")
	f(`annotation[authorization.k8s.io/reason]=""`, "anon", "denied", "exec", "received")
	f(`annotations["authorization.k8s.io/decision"]=allow`, "delete", "exec")

	// time is stageTimestamp, else requestReceivedTimestamp.
	f(`time>=2026-01-02T15:00:00Z`, "delete", "denied", "exec")
	f(`time>=2026-01-02T15:30:00.5Z`, "denied", "exec")
	f(`time>2026-01-02T15:30:00.5Z`, "denied")
	f(`time=2026-01-02T15:30:00.5Z`, "exec")
	f(`time!=2026-01-02T15:30:00.5Z`, "anon", "delete", "denied", "received")
	f(`time<=2026-01-02T15:04:05.123456Z`, "anon", "delete", "received")
	f(`time<2026-01-02`, "anon")
	f(`time>=2026-01-02 time<2026-01-03`, "delete", "denied", "exec", "received")
	f(`time>=2026-01-02T15:30`, "denied", "exec")
	f(`time>=2026-01-02T16:30:00+01:00`, "denied", "exec")
	f(`time>-1h`, "delete", "denied", "exec")
	f(`time>-30m`, "exec", "denied")
	f(`time>-1d`, "delete", "denied", "exec", "received")
	f(`time<-1d`, "anon")
	f(`time>-1h15m`, "delete", "denied", "exec")
	f(`received>-1h`, "delete", "denied", "exec")
	f(`received>=2000-01-01`, "anon", "delete", "denied", "exec")

	// bodies, free text
	f(`requestObject~"cluster-admin"`, "received")
	f(`requestObject=*DeleteOptions*`, "delete")
	f(`responseObject=""`, "anon", "denied", "exec", "received")
	f(`"kube-system"`, "exec", "received")
	f(`"important"`, "delete")
	f(`"propagationPolicy"`, "delete")
	f(`"toolbox"`)
	f(`"RBAC: allowed"`, "delete")
	f(`"cannot list"`, "denied")
	f(`"alice"`, "denied")
	f(`"curl"`, "denied")
	f(`"Kube-System"`)
	f(`""`, all...)

	// Boolean structure.
	f(`verb=get or verb=list resource=secrets`, "anon", "denied", "exec")
	f(`(verb=get or verb=list) resource=secrets`, "denied")
	f(`not verb=get`, "delete", "denied", "received")
	f(`not (verb=get or code=403)`, "delete", "received")
	f(`not not verb=get`, "anon", "exec")
	f(`verb=get and not ns=kube-system`, "anon")
	f(`!(code>=400) && stage=ResponseComplete || verb=create`, "delete", "received")
}

// TestMatchDoesNotAllocate holds Match to its contract on typical filters.
func TestMatchDoesNotAllocate(t *testing.T) {
	events := namedEvents()
	for _, bf := range benchFilters {
		src := bf.src
		flt, err := CompileAt(src, testNow)
		if err != nil {
			t.Fatal(err)
		}
		for name, ev := range events {
			if n := testing.AllocsPerRun(20, func() { flt.Match(ev, "c") }); n != 0 {
				t.Errorf("%s on %s: %v allocations per Match, want 0", src, name, n)
			}
		}
	}
}

func TestGlob(t *testing.T) {
	f := func(pattern, s string, want bool) {
		t.Helper()
		if got := compileGlob(pattern).test(s); got != want {
			t.Errorf("glob %q on %q = %v, want %v", pattern, s, got, want)
		}
	}
	f("abc", "abc", true)
	f("abc", "abcd", false)
	f("*", "", true)
	f("**", "x", true)
	f("a*", "a", true)
	f("a*", "ba", false)
	f("*a", "ba", true)
	f("*a*", "bab", true)
	f("*a*", "bbb", false)
	f("a*a", "a", false)
	f("a*a", "aa", true)
	f("a*b*c", "abc", true)
	f("a*b*c", "aXbYc", true)
	f("a*b*c", "acb", false)
	f("a*b*b*c", "abbc", true)
	f("a*b*b*c", "abc", false)
	f("a**c", "ac", true)
	f("*b*c*", "xbxcx", true)
	f("*b*c*", "xcxbx", false)
	f("a*bc*bc", "abcbc", true)
	f("a*bc*bc", "abcbcbc", true)
	f("a*bc*bc", "abcb", false)
}

func TestRequiredValues(t *testing.T) {
	f := func(src, field string, want ...string) {
		t.Helper()
		flt, err := CompileAt(src, testNow)
		if err != nil {
			t.Fatalf("Compile(%q): %v", src, err)
		}
		fld, ok := LookupField(field)
		if !ok {
			fld = Field{Name: field}
		}
		got, ok := flt.RequiredValues(fld)
		gotS := "none"
		if ok {
			gotS = "[" + strings.Join(got, " ") + "]"
		}
		wantS := "none"
		if want != nil {
			wantS = "[" + strings.Join(want, " ") + "]"
		}
		if gotS != wantS {
			t.Errorf("RequiredValues(%q, %s) = %s, want %s", src, field, gotS, wantS)
		}
	}
	none := []string(nil)
	empty := []string{}
	f(`verb=delete resource=secrets ns=production name=important`, "ns", "production")
	f(`verb=delete resource=secrets ns=production name=important`, "name", "important")
	f(`verb=delete resource=secrets`, "ns", none...)
	f(`ns in (a, b, c) ns in (b, c, d)`, "ns", "b", "c")
	f(`ns=a ns=b`, "ns", empty...)
	f(`ns=a or ns=b`, "namespace", "a", "b")
	f(`ns=a or user=b`, "ns", none...)
	f(`(ns=a or ns=b) verb=get`, "ns", "a", "b")
	f(`ns=a*`, "ns", none...)
	f(`ns="a*"`, "ns", "a*")
	f(`ns!=a`, "ns", none...)
	f(`not ns=a`, "ns", none...)
	f(`ns~a`, "ns", none...)
	f(`group=a group=b`, "group", "a")
	f(`group in (a, b, c) group=d`, "group", "d")
	f(`ip=::ffff:10.0.0.1`, "ip", "10.0.0.1")
	f(`ip in (10.0.0.1, 2001:DB8::1)`, "ip", "10.0.0.1", "2001:db8::1")
	f(`ip in (10.0.0.1, 10.0.0.0/8)`, "ip", none...)
	f(`peer=10.0.0.1`, "ip", none...)
	f(`peer=10.0.0.1`, "peer", "10.0.0.1")
	f(`code in (403, 0401)`, "code", "401", "403")
	f(`annotation[a]=x annotation[b]=y`, "annotations.b", "y")
	f(`annotations.a=x`, "annotations.b", none...)
	f(`user=a`, "nope", none...)
	f(``, "user", none...)
	if got, ok := RequiredValues(&Cmp{Field: Field{Name: "annotation", Key: "a"}, Op: OpEq, Values: []Value{{Text: "x"}}},
		Field{Name: "annotations", Key: "a"}); !ok || !slices.Equal(got, []string{"x"}) {
		t.Errorf("RequiredValues on a hand-built tree = %v, %v", got, ok)
	}
}

func TestTimeRange(t *testing.T) {
	f := func(src, from, to string) {
		t.Helper()
		flt, err := CompileAt(src, testNow)
		if err != nil {
			t.Fatalf("Compile(%q): %v", src, err)
		}
		gf, gt := flt.TimeRange()
		s := func(t time.Time) string {
			if t.IsZero() {
				return "-"
			}
			return t.UTC().Format(time.RFC3339)
		}
		if s(gf) != from || s(gt) != to {
			t.Errorf("TimeRange(%q) = %s..%s, want %s..%s", src, s(gf), s(gt), from, to)
		}
	}
	f(`verb=get`, "-", "-")
	f(`time>-2h`, "2026-01-02T14:00:00Z", "-")
	f(`time>-2h time<-1h`, "2026-01-02T14:00:00Z", "2026-01-02T15:00:00Z")
	f(`time>=2026-01-01 time>=2026-01-02 time<=2026-02-01`, "2026-01-02T00:00:00Z", "2026-02-01T00:00:00Z")
	f(`time=2026-01-05T01:02:03Z`, "2026-01-05T01:02:03Z", "2026-01-05T01:02:03Z")
	f(`time>=2026-01-01 or time>=2026-01-05`, "2026-01-01T00:00:00Z", "-")
	f(`time>=2026-01-01 or verb=get`, "-", "-")
	f(`(time>=2026-01-01 time<2026-01-02) or (time>=2026-01-05 time<2026-01-06)`, "2026-01-01T00:00:00Z", "2026-01-06T00:00:00Z")
	f(`not time>=2026-01-01`, "-", "-")
	f(`time!=2026-01-01`, "-", "-")
	f(`received>=2026-01-01`, "-", "-")
}

func TestCompileRegexp(t *testing.T) {
	f := func(re string, want strTest) {
		t.Helper()
		got := compileRegexp(regexp.MustCompile(re))
		if _, isRe := want.(regexT); isRe {
			if _, ok := got.(regexT); !ok {
				t.Errorf("compileRegexp(%q) = %#v, want the regexp", re, got)
			}
			return
		}
		if got != want {
			t.Errorf("compileRegexp(%q) = %#v, want %#v", re, got, want)
		}
	}
	f(`kubectl`, containsT{"kubectl"})
	f(`^system:`, prefixT{"system:"})
	f(`\.local$`, suffixT{".local"})
	f(`^exact$`, exactT{"exact"})
	f(`a\*b`, containsT{"a*b"})
	f(``, regexT{})
	f(`(?i)kubectl`, regexT{})
	f(`(?m)^system:`, regexT{})
	f(`^a|b`, regexT{})
	f(`^a.b$`, regexT{})
	f(`^$`, regexT{})
	f(`a+`, regexT{})
}

// TestMatchConcurrent lets the race detector check that Match only reads.
func TestMatchConcurrent(t *testing.T) {
	events := namedEvents()
	var filters []*Filter
	for _, bf := range benchFilters {
		filters = append(filters, mustCompile(t, bf.src))
	}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 50 {
				for _, f := range filters {
					for _, ev := range events {
						f.Match(ev, "c")
					}
				}
			}
		})
	}
	wg.Wait()
}

func mustCompile(t *testing.T, src string) *Filter {
	t.Helper()
	f, err := CompileAt(src, testNow)
	if err != nil {
		t.Fatalf("Compile(%q): %v", src, err)
	}
	return f
}
