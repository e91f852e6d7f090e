package investigate

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"strings"
	"testing"

	"github.com/kubetrail/kubetrail/internal/store/local"
)

// runCases are, per investigation, parameters for Run and the typed query
// they must mean.
var runCases = []struct {
	name   string
	params string
	direct func(r *local.Reader) (Report, error)
}{
	{"who", "verb=deleted&resource=secret/important&namespace=production", func(r *local.Reader) (Report, error) {
		t, _ := ParseTarget("secret/important")
		return Who(r, WhoQuery{Verbs: Verbs("deleted"), Target: t, Namespace: "production"})
	}},
	{"who", "verb=*&resource=pods&name=web&stages=all&limit=3", func(r *local.Reader) (Report, error) {
		t, _ := ParseTarget("pods/web")
		return Who(r, WhoQuery{Target: t, AllStages: true, Scope: Scope{Limit: 3}})
	}},
	{"activity", "user=alice&where=" + url.QueryEscape("verb!=get"), func(r *local.Reader) (Report, error) {
		return Activity(r, ActivityQuery{User: "alice", Scope: Scope{Where: "verb!=get"}})
	}},
	{"history", "resource=deploy.apps&name=web&namespace=production", func(r *local.Reader) (Report, error) {
		t, _ := ParseTarget("deploy.apps/web")
		return History(r, HistoryQuery{Target: t, Namespace: "production", Diffs: true})
	}},
	{"history", "resource=deploy/web&reads=1&diff=0&stages=all", func(r *local.Reader) (Report, error) {
		t, _ := ParseTarget("deploy/web")
		return History(r, HistoryQuery{Target: t, Reads: true, AllStages: true})
	}},
	{"secrets", "", func(r *local.Reader) (Report, error) { return Secrets(r, SecretsQuery{}) }},
	{"execs", "stages=all", func(r *local.Reader) (Report, error) { return Execs(r, ExecsQuery{AllStages: true}) }},
	{"denied", "since=2026-11-23T10:00:21Z", func(r *local.Reader) (Report, error) {
		return Denied(r, DeniedQuery{Scope: Scope{Since: t0.Add(21e9).UnixMicro()}})
	}},
	{"rbac", "until=2026-11-23T10:00:51Z", func(r *local.Reader) (Report, error) {
		return RBAC(r, RBACQuery{Scope: Scope{Until: t0.Add(51e9).UnixMicro()}})
	}},
	{"from", "addr=192.168.0.0/16", func(r *local.Reader) (Report, error) { return From(r, FromQuery{Addr: "192.168.0.0/16"}) }},
}

// TestRunMeansTheTypedQueries runs each investigation by name and
// parameters and by its function, and prints both in every format; and
// sends each answer through JSON as the API does, which must print the
// same.
func TestRunMeansTheTypedQueries(t *testing.T) {
	r := openFixture(t, incident())
	for _, tc := range runCases {
		p, err := url.ParseQuery(tc.params)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Run(context.Background(), r, tc.name, p, t0.Add(100e9))
		if err != nil {
			t.Fatalf("%s?%s: %v", tc.name, tc.params, err)
		}
		want, err := tc.direct(r)
		if err != nil {
			t.Fatal(err)
		}
		if len(want.Records()) == 0 {
			t.Errorf("%s?%s: no records; the case tests little", tc.name, tc.params)
		}
		for _, format := range Formats {
			w := render(t, want, format)
			if g := render(t, got, format); g != w {
				t.Errorf("%s?%s -o %s:\n got %s\nwant %s", tc.name, tc.params, format, g, w)
			}
			tw := NarrowTable
			if format == "wide" {
				tw = WideTable
			}
			ans, err := NewAnswer(tc.name, got, tw)
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			enc := json.NewEncoder(&buf)
			enc.SetEscapeHTML(false)
			if err := enc.Encode(ans); err != nil {
				t.Fatal(err)
			}
			var back Answer
			if err := json.Unmarshal(buf.Bytes(), &back); err != nil {
				t.Fatal(err)
			}
			if g := render(t, back.Report(), format); g != w {
				t.Errorf("%s?%s -o %s through JSON:\n got %s\nwant %s", tc.name, tc.params, format, g, w)
			}
		}
	}
}

// TestAnswerKeepsBytes checks that records survive the API's JSON byte
// for byte, characters HTML escaping would change included: the answer
// must be encoded without it, as the server does.
func TestAnswerKeepsBytes(t *testing.T) {
	ev := req(1, "a<b>&c", "get", "/api/v1/namespaces/d/configmaps/c?x=<y>").Obj("configmaps", "d", "c").Code(200, "allow")
	ev.Ev.UserAgent = "curl/8.5.0 <\u2028>"
	r := openFixture(t, []*evb{ev, req(2, "z", "get", "/version")})
	rep, err := Run(context.Background(), r, "activity", url.Values{"user": {"a<b>&c"}}, t0)
	if err != nil {
		t.Fatal(err)
	}
	for _, format := range Formats {
		tw := NarrowTable
		if format == "wide" {
			tw = WideTable
		}
		ans, _ := NewAnswer("activity", rep, tw)
		var b bytes.Buffer
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false)
		enc.Encode(ans)
		var back Answer
		if err := json.Unmarshal(b.Bytes(), &back); err != nil {
			t.Fatal(err)
		}
		if g, w := render(t, back.Report(), format), render(t, rep, format); g != w {
			t.Errorf("-o %s:\n got %s\nwant %s", format, g, w)
		}
	}
	if !strings.Contains(render(t, rep, "jsonl"), `"user":"a<b>&c"`) {
		t.Errorf("jsonl escapes HTML: %s", render(t, rep, "jsonl"))
	}
}

func TestRunParamErrors(t *testing.T) {
	r := openFixture(t, incident()[:1])
	f := func(name, params, wantParam, wantMsg string) {
		t.Helper()
		p, err := url.ParseQuery(params)
		if err != nil {
			t.Fatal(err)
		}
		_, err = Run(context.Background(), r, name, p, t0)
		pe, ok := IsParamError(err)
		if !ok || pe.Param != wantParam || !strings.Contains(err.Error(), wantMsg) {
			t.Errorf("%s?%s: error %v, want one about %s saying %q", name, params, err, wantParam, wantMsg)
		}
	}
	f("who", "verb=get", "resource", "required")
	f("who", "resource=a/b/c/d", "resource", "want RESOURCE")
	f("who", "resource=secret/x&name=y", "name", "given twice")
	f("who", "resource=secret&name=a(b*", "name", "cannot hold")
	f("who", "resource=secret&namespace=a b*", "namespace", "cannot hold")
	f("who", "resource=secret&namspace=x", "namspace", "takes no parameter")
	f("who", "resource=secret&verb=get&verb=list", "verb", "given 2 times")
	f("who", "resource=secret&since=yesterday", "since", "RFC 3339")
	f("who", "resource=secret&until=2026-13-01", "until", "RFC 3339")
	f("who", "resource=secret&limit=-1", "limit", "a number")
	f("who", "resource=secret&stages=some", "stages", "want all")
	f("who", "resource=secret&where=usr%3Dx", "where", `unknown field "usr"`)
	f("activity", "", "user", "required")
	f("activity", "user=a b*", "user", "cannot hold")
	f("history", "resource=deploy", "name", "required")
	f("history", "resource=deploy/web&reads=maybe", "reads", "want 1 or 0")
	f("history", "resource=deploy/web&diff=2", "diff", "want 1 or 0")
	f("secrets", "stages=all", "stages", "takes no parameter")
	f("denied", "limit=x", "limit", "a number")
	f("denied", "stages=all", "stages", "takes no parameter")
	f("from", "", "addr", "required")
	f("from", "addr=10.0.0.0/33", "addr", "CIDR")
	if _, err := Run(context.Background(), r, "whom", nil, t0); err == nil || !strings.Contains(err.Error(), "there are timeline, who, activity") {
		t.Errorf("unknown investigation: %v", err)
	}
	_, err := Run(context.Background(), r, "who", url.Values{"resource": {"secret"}, "where": {"usr=x"}}, t0)
	if qe, ok := IsQueryError(err); !ok || qe.Col != 1 {
		t.Errorf("a where mistake keeps its column: %v", err)
	}
}

// TestRunStopsWhenCancelled: an investigation whose context is cancelled
// stops reading and returns the cancellation's cause (the CLI's signal, an
// API client gone), not a report on part of the events. (Mutation tried:
// collect not looking at the context returns the report and nil.)
func TestRunStopsWhenCancelled(t *testing.T) {
	r := openFixture(t, []*evb{req(1, "alice", "get", "/version"), req(2, "alice", "get", "/api")})
	ctx, cancel := context.WithCancelCause(context.Background())
	cause := errors.New("interrupted by SIGINT")
	cancel(cause)
	for _, name := range Names {
		p := url.Values{}
		for _, k := range Params(name) {
			switch k {
			case "user":
				p.Set(k, "alice")
			case "resource":
				p.Set(k, "pods/web")
			case "addr":
				p.Set(k, "10.0.0.0/8")
			}
		}
		if rep, err := Run(ctx, r, name, p, t0); !errors.Is(err, cause) {
			t.Errorf("%s: %v, %v; want the cause", name, rep, err)
		}
	}
}
